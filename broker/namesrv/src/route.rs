//! The route table: which brokers are alive, which broker groups form which cluster, and
//! which queues every topic has on every broker group.
//!
//! Producers and consumers learn where a topic lives only from here, so this module keeps
//! RocketMQ's `RouteInfoManager` semantics exactly:
//!
//! - **Broker live table**, keyed by `(cluster, brokerAddr)`: last registration or
//!   heartbeat time, heartbeat timeout (120 s unless the broker says otherwise), the
//!   broker's last `DataVersion`, its connection and its HA address.
//! - **Broker address table**, keyed by brokerName: the group's addresses by broker id
//!   (id 0 is the master). An address appears under one id only: a slave promoted to
//!   master on the same `ip:port` replaces its old entry.
//! - **Cluster table**: cluster → broker names.
//! - **Topic queue table**: topic → brokerName → `QueueData`. Only the master (id 0), or
//!   the lowest-id slave while no master is registered ("prime slave", only for brokers
//!   that send `enableActingMaster`), writes it, and only on its first registration or
//!   when its `DataVersion` changed. In acting-master mode the prime slave's queues lose
//!   the write bit.
//! - Filter servers and static-topic mappings are ignored (always empty in replies).
//!
//! A broker leaves when it unregisters, when its connection closes, or when a periodic
//! scan finds it silent for longer than its timeout. When the last address of a broker
//! group goes, the group, its queue data (topics left without queues are dropped) and —
//! once empty — its cluster go too. While only slaves of a group remain, the queue data
//! stays, so consumers can still read from them (clients only send to id 0).
//!
//! Every operation takes one lock over all tables, so readers never see a half-applied
//! registration. Time comes from an injected [`Clock`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use flotilla_remoting::Channel;
use flotilla_remoting::perm;
use flotilla_remoting::protocol::{
    BrokerData, ClusterInfo, DataVersion, QueueData, TopicConfig, TopicConfigSerializeWrapper,
    TopicList, TopicRouteData,
};
use parking_lot::RwLock;
use tracing::{info, warn};

use crate::clock::Clock;

/// The master's broker id.
pub const MASTER_ID: i64 = 0;

/// Heartbeat timeout of brokers that do not send `heartbeatTimeoutMillis` (2 minutes).
pub const DEFAULT_BROKER_TIMEOUT_MILLIS: i64 = 120_000;

/// A route-table operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A broker registered with a broker id that another address holds with a newer
    /// `stateVersion` (controller mode: a stale master must not take the id back).
    #[error(
        "broker {broker_name} id {broker_id} at {broker_addr} rejected: {current_addr} holds \
         that id with stateVersion {current_state_version} > {state_version}"
    )]
    StaleStateVersion {
        /// The broker group.
        broker_name: String,
        /// The contested id.
        broker_id: i64,
        /// The rejected address.
        broker_addr: String,
        /// The address holding the id.
        current_addr: String,
        /// The holder's state version.
        current_state_version: i64,
        /// The rejected registration's state version.
        state_version: i64,
    },
    /// REGISTER_TOPIC_IN_NAMESRV named a broker group that is not registered.
    #[error("topic {topic}: broker {broker_name} is not registered")]
    UnknownBroker {
        /// The topic.
        topic: String,
        /// The unknown broker group.
        broker_name: String,
    },
}

impl RouteError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::StaleStateVersion { .. } => "BROKER_STATE_VERSION_STALE",
            Self::UnknownBroker { .. } => "BROKER_NOT_REGISTERED",
        }
    }
}

/// Behaviour switches of the route table (namesrv config keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteOptions {
    /// `deleteTopicWithBrokerRegistration`: a registration that changed the data version
    /// also removes the group's queues of topics the broker no longer lists.
    pub delete_topic_with_broker_registration: bool,
    /// `supportActingMaster`: in routes of a group without master whose queues are
    /// read-only and which enabled acting master, the lowest-id slave is shown as id 0.
    pub support_acting_master: bool,
}

/// One REGISTER_BROKER request, decoded.
#[derive(Debug, Clone, Default)]
pub struct BrokerRegistration {
    /// `clusterName`.
    pub cluster_name: String,
    /// `brokerAddr` (`ip:port`).
    pub broker_addr: String,
    /// `brokerName` (the group).
    pub broker_name: String,
    /// `brokerId` (0 = master).
    pub broker_id: i64,
    /// `haServerAddr`.
    pub ha_server_addr: String,
    /// `__ZONE_NAME`, if sent.
    pub zone_name: Option<String>,
    /// `heartbeatTimeoutMillis`, if sent.
    pub heartbeat_timeout_millis: Option<i64>,
    /// `enableActingMaster`; `None` for old brokers that do not send it.
    pub enable_acting_master: Option<bool>,
    /// The topics and their data version.
    pub topic_config: TopicConfigSerializeWrapper,
}

/// What a registering broker is told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterResult {
    /// The group master's address (only for slaves, when the master is registered).
    pub master_addr: Option<String>,
    /// The master's HA address (same condition).
    pub ha_server_addr: Option<String>,
}

/// A broker removed by the expiry scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredBroker {
    /// Cluster.
    pub cluster_name: String,
    /// Address.
    pub broker_addr: String,
    /// Milliseconds since it was last heard from.
    pub silent_millis: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct BrokerAddrInfo {
    cluster: String,
    addr: String,
}

#[derive(Debug, Clone)]
struct BrokerLiveInfo {
    last_update_millis: i64,
    timeout_millis: i64,
    data_version: DataVersion,
    channel: Option<Channel>,
    ha_server_addr: String,
}

#[derive(Debug, Default)]
struct Tables {
    /// topic → brokerName → queues.
    topic_queue: BTreeMap<String, BTreeMap<String, QueueData>>,
    /// brokerName → group.
    broker_addr: BTreeMap<String, BrokerData>,
    /// cluster → brokerNames.
    cluster_addr: BTreeMap<String, BTreeSet<String>>,
    /// (cluster, addr) → liveness.
    broker_live: HashMap<BrokerAddrInfo, BrokerLiveInfo>,
}

/// The nameserver's route table. Cheap to share behind an `Arc`.
pub struct RouteInfoManager {
    tables: RwLock<Tables>,
    options: RwLock<RouteOptions>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RouteInfoManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.tables.read();
        f.debug_struct("RouteInfoManager")
            .field("topics", &t.topic_queue.len())
            .field("broker_groups", &t.broker_addr.len())
            .field("live_brokers", &t.broker_live.len())
            .finish()
    }
}

impl RouteInfoManager {
    /// An empty table reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>, options: RouteOptions) -> Self {
        Self {
            tables: RwLock::new(Tables::default()),
            options: RwLock::new(options),
            clock,
        }
    }

    /// The current switches.
    pub fn options(&self) -> RouteOptions {
        *self.options.read()
    }

    /// Replaces the switches (UPDATE_NAMESRV_CONFIG).
    pub fn set_options(&self, options: RouteOptions) {
        *self.options.write() = options;
    }

    /// Registers (or refreshes) a broker; see the module docs for who writes queue data.
    pub fn register_broker(
        &self,
        reg: BrokerRegistration,
        channel: Option<Channel>,
    ) -> Result<RegisterResult, RouteError> {
        let options = self.options();
        let now = self.clock.now_millis();
        let mut guard = self.tables.write();
        let t = &mut *guard;
        let key = BrokerAddrInfo {
            cluster: reg.cluster_name.clone(),
            addr: reg.broker_addr.clone(),
        };
        let data_version = reg.topic_config.data_version;

        // Another address holding this id with a newer state version wins (checked before
        // anything changes, so a refused registration leaves no trace).
        if let Some(bd) = t.broker_addr.get(&reg.broker_name)
            && let Some(current) = bd.broker_addrs.get(&reg.broker_id)
            && current != &reg.broker_addr
            && let Some(live) = t.broker_live.get(&BrokerAddrInfo {
                cluster: reg.cluster_name.clone(),
                addr: current.clone(),
            })
            && live.data_version.state_version > data_version.state_version
        {
            let err = RouteError::StaleStateVersion {
                broker_name: reg.broker_name.clone(),
                broker_id: reg.broker_id,
                broker_addr: reg.broker_addr.clone(),
                current_addr: current.clone(),
                current_state_version: live.data_version.state_version,
                state_version: data_version.state_version,
            };
            t.broker_live.remove(&key);
            warn!(error = %err, "registration refused");
            return Err(err);
        }

        t.cluster_addr
            .entry(reg.cluster_name.clone())
            .or_default()
            .insert(reg.broker_name.clone());

        let mut register_first = false;
        let bd = t
            .broker_addr
            .entry(reg.broker_name.clone())
            .or_insert_with(|| {
                register_first = true;
                BrokerData {
                    cluster: reg.cluster_name.clone(),
                    broker_name: reg.broker_name.clone(),
                    broker_addrs: BTreeMap::new(),
                    zone_name: reg.zone_name.clone(),
                    enable_acting_master: false,
                }
            });
        bd.enable_acting_master = reg.enable_acting_master.unwrap_or(false);
        if bd.zone_name.is_none() {
            bd.zone_name.clone_from(&reg.zone_name);
        }
        // One address, one id: a slave promoted to master on the same ip:port replaces
        // its old entry.
        bd.broker_addrs
            .retain(|id, addr| *id == reg.broker_id || addr != &reg.broker_addr);
        let old_addr = bd
            .broker_addrs
            .insert(reg.broker_id, reg.broker_addr.clone());
        register_first |= old_addr.as_deref().is_none_or(str::is_empty);

        let is_master = reg.broker_id == MASTER_ID;
        let is_prime_slave = reg.enable_acting_master.is_some()
            && !is_master
            && bd.broker_addrs.keys().next() == Some(&reg.broker_id);
        let acting_master = bd.enable_acting_master;

        if is_master || is_prime_slave {
            let version_changed = t
                .broker_live
                .get(&key)
                .is_none_or(|live| live.data_version != data_version);
            if version_changed || register_first {
                let table = &reg.topic_config.topic_config_table;
                if options.delete_topic_with_broker_registration
                    && reg
                        .topic_config
                        .topic_queue_mapping_info_map
                        .as_ref()
                        .is_none_or(BTreeMap::is_empty)
                {
                    remove_topics_not_in(&mut t.topic_queue, &reg.broker_name, table);
                }
                for (name, tc) in table {
                    let mut tc = tc.clone();
                    if tc.topic_name.is_empty() {
                        tc.topic_name.clone_from(name);
                    }
                    if is_prime_slave && acting_master {
                        tc.perm &= !perm::WRITE;
                    }
                    update_queue_data(&mut t.topic_queue, &reg.broker_name, &tc);
                }
            }
        }

        let prev = t.broker_live.insert(
            key,
            BrokerLiveInfo {
                last_update_millis: now,
                timeout_millis: reg
                    .heartbeat_timeout_millis
                    .filter(|t| *t > 0)
                    .unwrap_or(DEFAULT_BROKER_TIMEOUT_MILLIS),
                data_version,
                channel,
                ha_server_addr: reg.ha_server_addr.clone(),
            },
        );
        if prev.is_none() {
            info!(
                cluster = %reg.cluster_name,
                broker = %reg.broker_name,
                id = reg.broker_id,
                addr = %reg.broker_addr,
                "new broker registered"
            );
        }

        let mut result = RegisterResult::default();
        if !is_master
            && let Some(master) = t
                .broker_addr
                .get(&reg.broker_name)
                .and_then(|bd| bd.broker_addrs.get(&MASTER_ID))
            && let Some(live) = t.broker_live.get(&BrokerAddrInfo {
                cluster: reg.cluster_name.clone(),
                addr: master.clone(),
            })
        {
            result.master_addr = Some(master.clone());
            result.ha_server_addr = Some(live.ha_server_addr.clone());
        }
        Ok(result)
    }

    /// Removes a broker (UNREGISTER_BROKER). Returns whether it was registered.
    pub fn unregister_broker(
        &self,
        cluster_name: &str,
        broker_addr: &str,
        broker_name: &str,
        broker_id: i64,
    ) -> bool {
        let mut t = self.tables.write();
        let removed = unregister_locked(&mut t, cluster_name, broker_addr, broker_name);
        if removed {
            info!(
                cluster = cluster_name,
                broker = broker_name,
                id = broker_id,
                addr = broker_addr,
                "broker unregistered"
            );
        }
        removed
    }

    /// Refreshes a broker's timestamp (BROKER_HEARTBEAT, QUERY_DATA_VERSION). Returns
    /// whether the broker is registered.
    pub fn heartbeat(&self, cluster_name: &str, broker_addr: &str) -> bool {
        let now = self.clock.now_millis();
        let mut t = self.tables.write();
        let key = BrokerAddrInfo {
            cluster: cluster_name.to_string(),
            addr: broker_addr.to_string(),
        };
        match t.broker_live.get_mut(&key) {
            Some(live) => {
                live.last_update_millis = now;
                true
            }
            None => false,
        }
    }

    /// Whether `version` differs from the one the broker last registered (true for an
    /// unknown broker).
    pub fn is_data_version_changed(
        &self,
        cluster_name: &str,
        broker_addr: &str,
        version: &DataVersion,
    ) -> bool {
        self.broker_data_version(cluster_name, broker_addr)
            .is_none_or(|v| v != *version)
    }

    /// The data version a broker last registered.
    pub fn broker_data_version(
        &self,
        cluster_name: &str,
        broker_addr: &str,
    ) -> Option<DataVersion> {
        let t = self.tables.read();
        t.broker_live
            .get(&BrokerAddrInfo {
                cluster: cluster_name.to_string(),
                addr: broker_addr.to_string(),
            })
            .map(|l| l.data_version)
    }

    /// Number of live brokers.
    pub fn live_broker_count(&self) -> usize {
        self.tables.read().broker_live.len()
    }

    /// Whether a broker is in the live table.
    pub fn is_live(&self, cluster_name: &str, broker_addr: &str) -> bool {
        self.tables
            .read()
            .broker_live
            .contains_key(&BrokerAddrInfo {
                cluster: cluster_name.to_string(),
                addr: broker_addr.to_string(),
            })
    }

    /// The route of `topic` (GET_ROUTEINFO_BY_TOPIC), or `None` when no registered broker
    /// group has queues for it. `orderTopicConf` is left empty (the caller fills it).
    pub fn topic_route(&self, topic: &str) -> Option<TopicRouteData> {
        let support_acting_master = self.options().support_acting_master;
        let t = self.tables.read();
        let queues = t.topic_queue.get(topic)?;
        let mut route = TopicRouteData {
            queue_datas: queues.values().cloned().collect(),
            ..TopicRouteData::default()
        };
        route.broker_datas = queues
            .keys()
            .filter_map(|name| t.broker_addr.get(name).cloned())
            .collect();
        drop(t);
        if route.queue_datas.is_empty() || route.broker_datas.is_empty() {
            return None;
        }
        if support_acting_master {
            apply_acting_master(&mut route);
        }
        Some(route)
    }

    /// Every broker group and cluster (GET_BROKER_CLUSTER_INFO).
    pub fn cluster_info(&self) -> ClusterInfo {
        let t = self.tables.read();
        ClusterInfo {
            broker_addr_table: t.broker_addr.clone(),
            cluster_addr_table: t.cluster_addr.clone(),
        }
    }

    /// Deletes a topic's route (DELETE_TOPIC_IN_NAMESRV): everywhere, or only on the broker
    /// groups of `cluster`. Returns whether anything was removed.
    pub fn delete_topic(&self, topic: &str, cluster: Option<&str>) -> bool {
        let mut guard = self.tables.write();
        let t = &mut *guard;
        let removed = match cluster {
            None => t.topic_queue.remove(topic).is_some(),
            Some(cluster) => {
                let Some(names) = t.cluster_addr.get(cluster) else {
                    return false;
                };
                let Some(queues) = t.topic_queue.get_mut(topic) else {
                    return false;
                };
                let before = queues.len();
                queues.retain(|name, _| !names.contains(name));
                let removed = queues.len() != before;
                if queues.is_empty() {
                    t.topic_queue.remove(topic);
                }
                removed
            }
        };
        if removed {
            info!(topic, cluster, "topic route deleted");
        }
        removed
    }

    /// Adds queue data for `topic` (REGISTER_TOPIC_IN_NAMESRV). Every named broker group
    /// must be registered; otherwise nothing changes.
    pub fn register_topic(
        &self,
        topic: &str,
        queue_datas: Vec<QueueData>,
    ) -> Result<(), RouteError> {
        if queue_datas.is_empty() {
            return Ok(());
        }
        let mut t = self.tables.write();
        if let Some(qd) = queue_datas
            .iter()
            .find(|qd| !t.broker_addr.contains_key(&qd.broker_name))
        {
            return Err(RouteError::UnknownBroker {
                topic: topic.to_string(),
                broker_name: qd.broker_name.clone(),
            });
        }
        let queues = t.topic_queue.entry(topic.to_string()).or_default();
        for qd in queue_datas {
            queues.insert(qd.broker_name.clone(), qd);
        }
        info!(topic, "topic registered");
        Ok(())
    }

    /// Clears the write bit on every queue of `broker_name` (WIPE_WRITE_PERM_OF_BROKER).
    /// Returns the number of topics the group has queues for.
    pub fn wipe_write_perm(&self, broker_name: &str) -> usize {
        self.operate_write_perm(broker_name, |p| p & !perm::WRITE)
    }

    /// Restores read+write on every queue of `broker_name` (ADD_WRITE_PERM_OF_BROKER).
    /// Returns the number of topics the group has queues for.
    pub fn add_write_perm(&self, broker_name: &str) -> usize {
        self.operate_write_perm(broker_name, |_| perm::READ_WRITE)
    }

    fn operate_write_perm(&self, broker_name: &str, f: impl Fn(i32) -> i32) -> usize {
        let mut t = self.tables.write();
        let mut count = 0;
        for queues in t.topic_queue.values_mut() {
            if let Some(qd) = queues.get_mut(broker_name) {
                qd.perm = f(qd.perm);
                count += 1;
            }
        }
        info!(
            broker = broker_name,
            topics = count,
            "write permission changed"
        );
        count
    }

    /// Every topic (GET_ALL_TOPIC_LIST_FROM_NAMESERVER).
    pub fn all_topics(&self) -> TopicList {
        TopicList {
            topic_list: self.tables.read().topic_queue.keys().cloned().collect(),
            broker_addr: None,
        }
    }

    /// Topics with queues on any broker group of `cluster` (GET_TOPICS_BY_CLUSTER).
    pub fn topics_by_cluster(&self, cluster: &str) -> TopicList {
        let t = self.tables.read();
        let mut list = TopicList::default();
        if let Some(names) = t.cluster_addr.get(cluster) {
            for (topic, queues) in &t.topic_queue {
                if queues.keys().any(|n| names.contains(n)) {
                    list.topic_list.insert(topic.clone());
                }
            }
        }
        list
    }

    /// Removes every broker silent for longer than its timeout, closing its connection.
    pub fn scan_not_active_brokers(&self) -> Vec<ExpiredBroker> {
        let now = self.clock.now_millis();
        let mut t = self.tables.write();
        let expired: Vec<(BrokerAddrInfo, BrokerLiveInfo)> = t
            .broker_live
            .iter()
            .filter(|(_, l)| l.last_update_millis.saturating_add(l.timeout_millis) < now)
            .map(|(k, l)| (k.clone(), l.clone()))
            .collect();
        let mut out = Vec::with_capacity(expired.len());
        for (key, live) in expired {
            let silent = now - live.last_update_millis;
            warn!(
                cluster = %key.cluster,
                addr = %key.addr,
                silent_ms = silent,
                timeout_ms = live.timeout_millis,
                "broker expired"
            );
            if let Some(ch) = &live.channel {
                ch.close();
            }
            remove_by_addr(&mut t, &key);
            out.push(ExpiredBroker {
                cluster_name: key.cluster,
                broker_addr: key.addr,
                silent_millis: silent,
            });
        }
        out
    }

    /// The connection `channel_id` closed: removes every broker registered over it (a
    /// broker that re-registered over a newer connection is kept). Returns how many.
    pub fn on_channel_closed(&self, channel_id: u64) -> usize {
        let mut t = self.tables.write();
        let keys: Vec<BrokerAddrInfo> = t
            .broker_live
            .iter()
            .filter(|(_, l)| l.channel.as_ref().is_some_and(|c| c.id() == channel_id))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            info!(cluster = %key.cluster, addr = %key.addr, conn = channel_id, "broker connection closed");
            remove_by_addr(&mut t, key);
        }
        keys.len()
    }
}

/// Removes a broker known only by `(cluster, addr)` (expiry, closed connection): finds its
/// group in the cluster's broker groups.
fn remove_by_addr(t: &mut Tables, key: &BrokerAddrInfo) {
    let name = t.cluster_addr.get(&key.cluster).and_then(|names| {
        names
            .iter()
            .find(|n| {
                t.broker_addr
                    .get(*n)
                    .is_some_and(|bd| bd.broker_addrs.values().any(|a| a == &key.addr))
            })
            .cloned()
    });
    match name {
        Some(name) => {
            unregister_locked(t, &key.cluster, &key.addr, &name);
        }
        None => {
            t.broker_live.remove(key);
        }
    }
}

/// The unregistration itself (lock held). Returns whether anything was removed.
fn unregister_locked(t: &mut Tables, cluster: &str, addr: &str, broker_name: &str) -> bool {
    let live = t.broker_live.remove(&BrokerAddrInfo {
        cluster: cluster.to_string(),
        addr: addr.to_string(),
    });
    let mut group_removed = false;
    let mut group_reduced = false;
    if let Some(bd) = t.broker_addr.get_mut(broker_name) {
        let before = bd.broker_addrs.len();
        bd.broker_addrs.retain(|_, a| a != addr);
        group_reduced = bd.broker_addrs.len() != before;
        if bd.broker_addrs.is_empty() {
            t.broker_addr.remove(broker_name);
            group_removed = true;
        }
    }
    if group_removed {
        if let Some(names) = t.cluster_addr.get_mut(cluster) {
            names.remove(broker_name);
            if names.is_empty() {
                t.cluster_addr.remove(cluster);
                info!(cluster, "cluster removed: no broker left");
            }
        }
        t.topic_queue.retain(|topic, queues| {
            queues.remove(broker_name);
            if queues.is_empty() {
                info!(topic, "topic removed: no broker group left");
            }
            !queues.is_empty()
        });
    } else if group_reduced {
        // In acting-master mode, a group that lost its master stops taking writes.
        let no_master = t
            .broker_addr
            .get(broker_name)
            .is_some_and(|bd| bd.enable_acting_master && !bd.broker_addrs.contains_key(&MASTER_ID));
        if no_master {
            for queues in t.topic_queue.values_mut() {
                if let Some(qd) = queues.get_mut(broker_name) {
                    qd.perm &= !perm::WRITE;
                }
            }
        }
    }
    live.is_some() || group_reduced
}

fn update_queue_data(
    topic_queue: &mut BTreeMap<String, BTreeMap<String, QueueData>>,
    broker_name: &str,
    tc: &TopicConfig,
) {
    let qd = QueueData {
        broker_name: broker_name.to_string(),
        read_queue_nums: tc.read_queue_nums,
        write_queue_nums: tc.write_queue_nums,
        perm: tc.perm,
        topic_sys_flag: tc.topic_sys_flag,
    };
    let queues = topic_queue.entry(tc.topic_name.clone()).or_default();
    match queues.get(broker_name) {
        Some(existing) if *existing == qd => {}
        existing => {
            if existing.is_none() && queues.is_empty() {
                info!(topic = %tc.topic_name, broker = broker_name, "new topic registered");
            } else {
                info!(topic = %tc.topic_name, broker = broker_name, ?qd, "topic queue data updated");
            }
            queues.insert(broker_name.to_string(), qd);
        }
    }
}

fn remove_topics_not_in(
    topic_queue: &mut BTreeMap<String, BTreeMap<String, QueueData>>,
    broker_name: &str,
    keep: &BTreeMap<String, TopicConfig>,
) {
    topic_queue.retain(|topic, queues| {
        if !keep.contains_key(topic) && queues.remove(broker_name).is_some() {
            info!(
                topic,
                broker = broker_name,
                "topic removed with broker registration"
            );
        }
        !queues.is_empty()
    });
}

/// Shows the lowest-id slave as id 0 in groups without master whose queues are read-only
/// and which enabled acting master.
fn apply_acting_master(route: &mut TopicRouteData) {
    let needs = route
        .broker_datas
        .iter()
        .any(|bd| !bd.broker_addrs.is_empty() && !bd.broker_addrs.contains_key(&MASTER_ID));
    if !needs {
        return;
    }
    for bd in &mut route.broker_datas {
        if bd.broker_addrs.is_empty()
            || bd.broker_addrs.contains_key(&MASTER_ID)
            || !bd.enable_acting_master
        {
            continue;
        }
        let read_only = route
            .queue_datas
            .iter()
            .find(|qd| qd.broker_name == bd.broker_name)
            .is_some_and(|qd| !perm::is_writeable(qd.perm));
        if read_only && let Some((_, addr)) = bd.broker_addrs.pop_first() {
            bd.broker_addrs.insert(MASTER_ID, addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn wrapper(counter: i64, topics: &[(&str, i32, i32)]) -> TopicConfigSerializeWrapper {
        let mut w = TopicConfigSerializeWrapper {
            data_version: DataVersion {
                state_version: 0,
                timestamp: 1_000 + counter,
                counter,
            },
            ..TopicConfigSerializeWrapper::default()
        };
        for (name, queues, p) in topics {
            let mut tc = TopicConfig::new(*name, *queues);
            tc.perm = *p;
            w.topic_config_table.insert(name.to_string(), tc);
        }
        w
    }

    fn reg(name: &str, id: i64, addr: &str, w: TopicConfigSerializeWrapper) -> BrokerRegistration {
        BrokerRegistration {
            cluster_name: "C".into(),
            broker_addr: addr.into(),
            broker_name: name.into(),
            broker_id: id,
            ha_server_addr: format!("{addr}-ha"),
            zone_name: None,
            heartbeat_timeout_millis: None,
            enable_acting_master: Some(false),
            topic_config: w,
        }
    }

    fn manager() -> (Arc<ManualClock>, RouteInfoManager) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let m = RouteInfoManager::new(clock.clone(), RouteOptions::default());
        (clock, m)
    }

    fn perm_of(m: &RouteInfoManager, topic: &str, broker: &str) -> Option<i32> {
        m.topic_route(topic)?
            .queue_datas
            .iter()
            .find(|q| q.broker_name == broker)
            .map(|q| q.perm)
    }

    #[test]
    fn master_registration_builds_routes_and_cluster_info() {
        let (_, m) = manager();
        let r = m
            .register_broker(
                reg("b1", 0, "10.0.0.1:10911", wrapper(1, &[("T", 4, 6)])),
                None,
            )
            .unwrap();
        assert_eq!(r, RegisterResult::default(), "a master is told nothing");
        let route = m.topic_route("T").unwrap();
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.queue_datas[0].read_queue_nums, 4);
        assert_eq!(route.broker_datas[0].master_addr(), Some("10.0.0.1:10911"));
        assert_eq!(route.broker_datas[0].cluster, "C");
        assert!(m.topic_route("nope").is_none());
        let ci = m.cluster_info();
        assert_eq!(ci.cluster_addr_table["C"].len(), 1);
        assert!(ci.broker_addr_table.contains_key("b1"));
        assert!(m.is_live("C", "10.0.0.1:10911"));
    }

    #[test]
    fn slave_does_not_write_queue_data_and_learns_master() {
        let (_, m) = manager();
        m.register_broker(reg("b1", 0, "m:1", wrapper(1, &[("T", 4, 6)])), None)
            .unwrap();
        let r = m
            .register_broker(
                reg("b1", 1, "s:1", wrapper(9, &[("T", 8, 6), ("X", 2, 6)])),
                None,
            )
            .unwrap();
        assert_eq!(r.master_addr.as_deref(), Some("m:1"));
        assert_eq!(r.ha_server_addr.as_deref(), Some("m:1-ha"));
        let route = m.topic_route("T").unwrap();
        assert_eq!(
            route.queue_datas[0].read_queue_nums, 4,
            "slave's topics ignored"
        );
        assert!(m.topic_route("X").is_none());
        assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
    }

    #[test]
    fn prime_slave_writes_until_master_arrives() {
        let (_, m) = manager();
        // Two slaves, no master: only the lowest id writes.
        m.register_broker(reg("b1", 2, "s2:1", wrapper(1, &[("T2", 2, 6)])), None)
            .unwrap();
        // id 2 was the lowest when it registered.
        assert!(m.topic_route("T2").is_some());
        m.register_broker(reg("b1", 1, "s1:1", wrapper(1, &[("T1", 1, 6)])), None)
            .unwrap();
        assert!(m.topic_route("T1").is_some(), "id 1 is now the prime slave");
        // id 2 is no longer prime: its new version is not written.
        m.register_broker(reg("b1", 2, "s2:1", wrapper(2, &[("T3", 1, 6)])), None)
            .unwrap();
        assert!(m.topic_route("T3").is_none());
        // The master arrives and takes over; slaves are told its address.
        m.register_broker(reg("b1", 0, "m:1", wrapper(5, &[("T", 4, 6)])), None)
            .unwrap();
        m.register_broker(reg("b1", 1, "s1:1", wrapper(2, &[("T4", 1, 6)])), None)
            .unwrap();
        assert!(
            m.topic_route("T4").is_none(),
            "not prime once the master is there"
        );
        // Old brokers (no enableActingMaster) are never prime slaves.
        let (_, m2) = manager();
        let mut r = reg("b9", 1, "s:9", wrapper(1, &[("T", 1, 6)]));
        r.enable_acting_master = None;
        m2.register_broker(r, None).unwrap();
        assert!(m2.topic_route("T").is_none());
    }

    #[test]
    fn acting_master_prime_slave_loses_write_and_is_shown_as_master() {
        let clock = Arc::new(ManualClock::new(0));
        let m = RouteInfoManager::new(
            clock,
            RouteOptions {
                support_acting_master: true,
                ..RouteOptions::default()
            },
        );
        let mut r = reg("b1", 1, "s1:1", wrapper(1, &[("T", 4, 6)]));
        r.enable_acting_master = Some(true);
        m.register_broker(r, None).unwrap();
        let route = m.topic_route("T").unwrap();
        assert_eq!(route.queue_datas[0].perm, perm::READ);
        assert_eq!(route.broker_datas[0].master_addr(), Some("s1:1"));
        assert!(!route.broker_datas[0].broker_addrs.contains_key(&1));
        // Without supportActingMaster the route shows the real ids.
        m.set_options(RouteOptions::default());
        let route = m.topic_route("T").unwrap();
        assert_eq!(
            route.broker_datas[0]
                .broker_addrs
                .get(&1)
                .map(String::as_str),
            Some("s1:1")
        );
    }

    #[test]
    fn queue_data_changes_only_with_data_version() {
        let (_, m) = manager();
        m.register_broker(reg("b1", 0, "m:1", wrapper(1, &[("T", 4, 6)])), None)
            .unwrap();
        assert!(!m.is_data_version_changed("C", "m:1", &wrapper(1, &[]).data_version));
        assert!(m.is_data_version_changed("C", "m:1", &wrapper(2, &[]).data_version));
        assert!(m.is_data_version_changed("C", "other:1", &wrapper(1, &[]).data_version));
        // Same version, different content: ignored (the broker did not bump its version).
        m.register_broker(reg("b1", 0, "m:1", wrapper(1, &[("T", 8, 6)])), None)
            .unwrap();
        assert_eq!(
            m.topic_route("T").unwrap().queue_datas[0].read_queue_nums,
            4
        );
        // A wiped perm survives a same-version re-registration.
        m.wipe_write_perm("b1");
        m.register_broker(reg("b1", 0, "m:1", wrapper(1, &[("T", 4, 6)])), None)
            .unwrap();
        assert_eq!(perm_of(&m, "T", "b1"), Some(perm::READ));
        // New version: applied.
        m.register_broker(reg("b1", 0, "m:1", wrapper(2, &[("T", 8, 6)])), None)
            .unwrap();
        let qd = &m.topic_route("T").unwrap().queue_datas[0];
        assert_eq!((qd.read_queue_nums, qd.perm), (8, 6));
        assert_eq!(m.broker_data_version("C", "m:1").unwrap().counter, 2);
        // Topics dropped by the broker stay unless deleteTopicWithBrokerRegistration.
        m.register_broker(reg("b1", 0, "m:1", wrapper(3, &[("U", 1, 6)])), None)
            .unwrap();
        assert!(m.topic_route("T").is_some());
        m.set_options(RouteOptions {
            delete_topic_with_broker_registration: true,
            ..RouteOptions::default()
        });
        m.register_broker(reg("b1", 0, "m:1", wrapper(4, &[("U", 1, 6)])), None)
            .unwrap();
        assert!(m.topic_route("T").is_none());
        assert!(m.topic_route("U").is_some());
    }

    #[test]
    fn first_registration_after_restart_writes_even_with_same_version() {
        let (_, m) = manager();
        m.register_broker(reg("b1", 0, "m:1", wrapper(1, &[("T", 4, 6)])), None)
            .unwrap();
        assert!(m.unregister_broker("C", "m:1", "b1", 0));
        assert!(m.topic_route("T").is_none());
        m.register_broker(reg("b1", 0, "m:1", wrapper(1, &[("T", 4, 6)])), None)
            .unwrap();
        assert!(m.topic_route("T").is_some());
    }

    #[test]
    fn promoted_slave_on_same_address_replaces_its_old_id() {
        let (_, m) = manager();
        m.register_broker(reg("b1", 1, "x:1", wrapper(1, &[])), None)
            .unwrap();
        m.register_broker(reg("b1", 0, "x:1", wrapper(1, &[("T", 1, 6)])), None)
            .unwrap();
        let bd = &m.cluster_info().broker_addr_table["b1"];
        assert_eq!(bd.broker_addrs.len(), 1);
        assert_eq!(bd.master_addr(), Some("x:1"));
    }

    #[test]
    fn stale_state_version_is_refused() {
        let (_, m) = manager();
        let mut w = wrapper(1, &[("T", 1, 6)]);
        w.data_version.state_version = 5;
        m.register_broker(reg("b1", 0, "new:1", w), None).unwrap();
        let err = m
            .register_broker(reg("b1", 0, "old:1", wrapper(1, &[("T", 1, 6)])), None)
            .unwrap_err();
        assert_eq!(err.code(), "BROKER_STATE_VERSION_STALE");
        assert_eq!(
            m.cluster_info().broker_addr_table["b1"].master_addr(),
            Some("new:1")
        );
        assert!(!m.is_live("C", "old:1"));
    }

    #[test]
    fn unregistering_the_last_broker_drops_group_topics_and_cluster() {
        let (_, m) = manager();
        m.register_broker(
            reg("b1", 0, "m1:1", wrapper(1, &[("T", 4, 6), ("Only1", 1, 6)])),
            None,
        )
        .unwrap();
        m.register_broker(reg("b1", 1, "s1:1", wrapper(1, &[])), None)
            .unwrap();
        m.register_broker(reg("b2", 0, "m2:1", wrapper(1, &[("T", 4, 6)])), None)
            .unwrap();
        // Master of b1 leaves: its slave keeps the group (and its queues) readable.
        assert!(m.unregister_broker("C", "m1:1", "b1", 0));
        let route = m.topic_route("T").unwrap();
        assert_eq!(route.queue_datas.len(), 2);
        let b1 = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == "b1")
            .unwrap();
        assert_eq!(b1.master_addr(), None);
        assert_eq!(
            perm_of(&m, "T", "b1"),
            Some(6),
            "no acting master: perm unchanged"
        );
        // The slave leaves: the group and its queue data go; a topic only b1 had goes.
        assert!(m.unregister_broker("C", "s1:1", "b1", 1));
        assert!(m.topic_route("Only1").is_none());
        assert_eq!(m.topic_route("T").unwrap().queue_datas.len(), 1);
        assert!(!m.cluster_info().broker_addr_table.contains_key("b1"));
        assert!(m.cluster_info().cluster_addr_table.contains_key("C"));
        assert!(m.unregister_broker("C", "m2:1", "b2", 0));
        assert!(m.cluster_info().cluster_addr_table.is_empty());
        assert!(m.all_topics().topic_list.is_empty());
        assert!(
            !m.unregister_broker("C", "m2:1", "b2", 0),
            "second time: nothing"
        );
    }

    #[test]
    fn acting_master_group_losing_master_loses_write() {
        let (_, m) = manager();
        let mut r = reg("b1", 0, "m:1", wrapper(1, &[("T", 4, 6)]));
        r.enable_acting_master = Some(true);
        m.register_broker(r, None).unwrap();
        let mut r = reg("b1", 1, "s:1", wrapper(1, &[]));
        r.enable_acting_master = Some(true);
        m.register_broker(r, None).unwrap();
        m.unregister_broker("C", "m:1", "b1", 0);
        assert_eq!(perm_of(&m, "T", "b1"), Some(perm::READ));
    }

    #[test]
    fn expiry_uses_the_clock_and_the_broker_timeout() {
        let (clock, m) = manager();
        let mut short = reg("b1", 0, "m1:1", wrapper(1, &[("T", 4, 6)]));
        short.heartbeat_timeout_millis = Some(10_000);
        m.register_broker(short, None).unwrap();
        m.register_broker(reg("b2", 0, "m2:1", wrapper(1, &[("T", 4, 6)])), None)
            .unwrap();
        clock.advance(10_000);
        assert!(
            m.scan_not_active_brokers().is_empty(),
            "exactly at the timeout: alive"
        );
        clock.advance(5_000);
        assert!(m.heartbeat("C", "m2:1"));
        let expired = m.scan_not_active_brokers();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].broker_addr, "m1:1");
        assert_eq!(expired[0].silent_millis, 15_000);
        assert_eq!(m.topic_route("T").unwrap().queue_datas.len(), 1);
        // Heartbeats keep b2 alive past the default timeout from its registration.
        clock.advance(100_000);
        assert!(m.heartbeat("C", "m2:1"));
        clock.advance(100_000);
        assert!(m.scan_not_active_brokers().is_empty());
        assert!(m.heartbeat("C", "m2:1"));
        clock.advance(DEFAULT_BROKER_TIMEOUT_MILLIS);
        assert!(m.scan_not_active_brokers().is_empty());
        clock.advance(1);
        assert_eq!(m.scan_not_active_brokers().len(), 1);
        assert!(m.topic_route("T").is_none());
        assert_eq!(m.live_broker_count(), 0);
        assert!(!m.heartbeat("C", "m2:1"), "unknown broker");
    }

    #[test]
    fn wipe_and_add_write_perm() {
        let (_, m) = manager();
        m.register_broker(
            reg(
                "b1",
                0,
                "m:1",
                wrapper(
                    1,
                    &[("T", 4, 6), ("U", 4, perm::READ_WRITE | perm::INHERIT)],
                ),
            ),
            None,
        )
        .unwrap();
        m.register_broker(reg("b2", 0, "m2:1", wrapper(1, &[("T", 4, 6)])), None)
            .unwrap();
        assert_eq!(m.wipe_write_perm("b1"), 2);
        assert_eq!(perm_of(&m, "T", "b1"), Some(perm::READ));
        assert_eq!(perm_of(&m, "U", "b1"), Some(perm::READ | perm::INHERIT));
        assert_eq!(perm_of(&m, "T", "b2"), Some(6), "other groups untouched");
        assert_eq!(m.add_write_perm("b1"), 2);
        assert_eq!(perm_of(&m, "T", "b1"), Some(perm::READ_WRITE));
        assert_eq!(perm_of(&m, "U", "b1"), Some(perm::READ_WRITE));
        assert_eq!(m.wipe_write_perm("nope"), 0);
    }

    #[test]
    fn delete_and_register_topic() {
        let (_, m) = manager();
        m.register_broker(reg("b1", 0, "m:1", wrapper(1, &[("T", 4, 6)])), None)
            .unwrap();
        let mut other = reg("b2", 0, "m2:1", wrapper(1, &[("T", 4, 6)]));
        other.cluster_name = "D".into();
        m.register_broker(other, None).unwrap();
        assert_eq!(m.topics_by_cluster("D").topic_list.len(), 1);
        assert!(m.topics_by_cluster("nope").topic_list.is_empty());
        // Only cluster D's share goes.
        assert!(m.delete_topic("T", Some("D")));
        let route = m.topic_route("T").unwrap();
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.queue_datas[0].broker_name, "b1");
        assert!(!m.delete_topic("T", Some("nope")));
        assert!(m.delete_topic("T", None));
        assert!(m.topic_route("T").is_none());
        assert!(!m.delete_topic("T", None));

        let qd = QueueData {
            broker_name: "b2".into(),
            read_queue_nums: 2,
            write_queue_nums: 2,
            perm: 6,
            topic_sys_flag: 0,
        };
        m.register_topic("R", vec![qd.clone()]).unwrap();
        assert_eq!(m.topic_route("R").unwrap().broker_datas[0].cluster, "D");
        let bad = QueueData {
            broker_name: "ghost".into(),
            ..qd.clone()
        };
        let err = m.register_topic("S", vec![qd, bad]).unwrap_err();
        assert_eq!(err.code(), "BROKER_NOT_REGISTERED");
        assert!(m.topic_route("S").is_none(), "nothing half-registered");
        let all = m.all_topics();
        assert_eq!(
            all.topic_list.into_iter().collect::<Vec<_>>(),
            vec!["R".to_string()]
        );
    }

    #[test]
    fn standard_and_legacy_route_json() {
        let (_, m) = manager();
        m.register_broker(reg("b1", 0, "m:1", wrapper(1, &[("T", 4, 6)])), None)
            .unwrap();
        m.register_broker(reg("b1", 1, "s:1", wrapper(1, &[])), None)
            .unwrap();
        let route = m.topic_route("T").unwrap();
        let std = String::from_utf8(route.encode_standard().unwrap()).unwrap();
        assert!(
            std.contains(r#""brokerAddrs":{"0":"m:1","1":"s:1"}"#),
            "{std}"
        );
        assert!(std.contains(r#""filterServerTable":{}"#));
        let legacy = String::from_utf8(route.encode_legacy().unwrap()).unwrap();
        assert!(
            legacy.contains(r#""brokerAddrs":{0:"m:1",1:"s:1"}"#),
            "{legacy}"
        );
        let back: TopicRouteData =
            flotilla_remoting::protocol::decode_body(legacy.as_bytes()).unwrap();
        assert_eq!(back, route);
    }
}

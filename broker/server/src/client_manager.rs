//! Producer and consumer connections per group, from heartbeats.
//!
//! Consumers rebalance queues among the members of their group, which they learn from
//! GET_CONSUMER_LIST_BY_GROUP; when membership changes the broker pushes
//! NOTIFY_CONSUMER_IDS_CHANGED (oneway, on each member's own connection) so they rebalance
//! at once instead of at their next 20 s tick. A member leaves when it unregisters, when
//! its connection closes, or when no heartbeat arrived for `channelExpiredTimeout` (120 s).
//! Connections are keyed by the transport's connection id, so one client process with
//! several groups on one connection is tracked once per group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use flotilla_remoting::protocol::{Connection, ConsumerConnection, ConsumerData, SubscriptionData};
use flotilla_remoting::{Channel, LanguageCode, RemotingCommand, request_code};
use parking_lot::Mutex;

/// One client connection of a group.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The connection.
    pub channel: Channel,
    /// Client id (`ip@pid#…`).
    pub client_id: String,
    /// Client language.
    pub language: LanguageCode,
    /// Client protocol version.
    pub version: i32,
    /// Last heartbeat.
    pub last_update: Instant,
}

/// A consumer group's members and subscriptions.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroupInfo {
    /// Members by connection id.
    pub clients: HashMap<u64, ClientInfo>,
    /// topic → subscription (latest heartbeat wins).
    pub subscriptions: BTreeMap<String, SubscriptionData>,
    /// Consume type.
    pub consume_type: String,
    /// Message model.
    pub message_model: String,
    /// Where new consumers start.
    pub consume_from_where: String,
}

/// Client tracking failures (none reach the wire today; kept for the module contract).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The notification could not be sent.
    #[error("cannot notify {client}: {reason}")]
    Notify {
        /// Client id.
        client: String,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Notify { .. } => "CLIENT_NOTIFY_FAILED",
        }
    }
}

/// Tracks producers and consumers.
#[derive(Default)]
pub struct ClientManager {
    consumers: Mutex<HashMap<String, ConsumerGroupInfo>>,
    producers: Mutex<HashMap<String, HashMap<u64, ClientInfo>>>,
    watched: Mutex<HashSet<u64>>,
    /// Groups whose members are not notified (notifyConsumerIdsChangedEnable=false).
    pub quiet_groups: Mutex<HashSet<String>>,
}

impl ClientManager {
    /// A new, empty manager.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn watch(self: &Arc<Self>, channel: &Channel) {
        if !self.watched.lock().insert(channel.id()) {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let ch = channel.clone();
        tokio::spawn(async move {
            ch.closed().await;
            if let Some(m) = weak.upgrade() {
                m.watched.lock().remove(&ch.id());
                m.channel_closed(ch.id());
            }
        });
    }

    /// Records a consumer heartbeat; notifies the group when a member joined.
    pub fn register_consumer(self: &Arc<Self>, info: ClientInfo, data: &ConsumerData) {
        self.watch(&info.channel);
        let joined = {
            let mut groups = self.consumers.lock();
            let g = groups.entry(data.group_name.clone()).or_default();
            // Kept by Java name whatever form the client sent (the C++ client sends ordinals).
            let name = |v: Option<String>| v.unwrap_or_default();
            g.consume_type = name(data.consume_type.map(|v| v.to_string()));
            g.message_model = name(data.message_model.map(|v| v.to_string()));
            g.consume_from_where = name(data.consume_from_where.map(|v| v.to_string()));
            for s in &data.subscription_data_set {
                let newer = g
                    .subscriptions
                    .get(&s.topic)
                    .is_none_or(|old| old.sub_version <= s.sub_version);
                if newer {
                    g.subscriptions.insert(s.topic.clone(), s.clone());
                }
            }
            let id = info.channel.id();
            tracing::debug!(group = %data.group_name, conn = id, client_id = %info.client_id, "consumer heartbeat");
            match g.clients.get_mut(&id) {
                Some(existing) => {
                    existing.last_update = info.last_update;
                    existing.client_id = info.client_id;
                    false
                }
                None => {
                    g.clients.insert(id, info);
                    true
                }
            }
        };
        if joined {
            tracing::info!(group = %data.group_name, "consumer joined");
            self.notify_group(&data.group_name);
        }
    }

    /// Records a producer heartbeat.
    pub fn register_producer(self: &Arc<Self>, group: &str, info: ClientInfo) {
        self.watch(&info.channel);
        let mut p = self.producers.lock();
        p.entry(group.to_string())
            .or_default()
            .insert(info.channel.id(), info);
    }

    /// A connection of a producer of `group` to ask about a transaction (the one heard from
    /// last), if one is connected.
    pub fn producer_channel(&self, group: &str) -> Option<Channel> {
        self.producers
            .lock()
            .get(group)?
            .values()
            .filter(|c| !c.channel.is_closed())
            .max_by_key(|c| c.last_update)
            .map(|c| c.channel.clone())
    }

    /// The connections of producer group `group` (GET_PRODUCER_CONNECTION_LIST).
    pub fn producers(&self, group: &str) -> Vec<ClientInfo> {
        self.producers
            .lock()
            .get(group)
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default()
    }

    /// UNREGISTER_CLIENT for a consumer group.
    pub fn unregister_consumer(self: &Arc<Self>, group: &str, conn: u64, client_id: &str) {
        let left = {
            let mut groups = self.consumers.lock();
            let Some(g) = groups.get_mut(group) else {
                return;
            };
            let before = g.clients.len();
            g.clients
                .retain(|id, c| *id != conn && c.client_id != client_id);
            let left = g.clients.len() != before;
            if g.clients.is_empty() {
                groups.remove(group);
            }
            left
        };
        if left {
            tracing::info!(group, client_id, "consumer left");
            self.notify_group(group);
        }
    }

    /// UNREGISTER_CLIENT for a producer group.
    pub fn unregister_producer(&self, group: &str, conn: u64) {
        let mut p = self.producers.lock();
        if let Some(g) = p.get_mut(group) {
            g.remove(&conn);
            if g.is_empty() {
                p.remove(group);
            }
        }
    }

    /// A connection closed: it leaves every group.
    pub fn channel_closed(self: &Arc<Self>, conn: u64) {
        let mut changed = Vec::new();
        {
            let mut groups = self.consumers.lock();
            groups.retain(|name, g| {
                if g.clients.remove(&conn).is_some() {
                    changed.push(name.clone());
                }
                !g.clients.is_empty()
            });
        }
        self.producers.lock().retain(|_, g| {
            g.remove(&conn);
            !g.is_empty()
        });
        for g in changed {
            tracing::info!(group = %g, conn, "consumer connection closed");
            self.notify_group(&g);
        }
    }

    /// Drops members without a heartbeat for `timeout`; returns how many were dropped.
    pub fn scan_expired(self: &Arc<Self>, timeout: Duration) -> usize {
        let now = Instant::now();
        let mut changed = Vec::new();
        let mut dropped = 0;
        {
            let mut groups = self.consumers.lock();
            groups.retain(|name, g| {
                let before = g.clients.len();
                g.clients.retain(|_, c| {
                    now.duration_since(c.last_update) < timeout && !c.channel.is_closed()
                });
                if g.clients.len() != before {
                    dropped += before - g.clients.len();
                    changed.push(name.clone());
                }
                !g.clients.is_empty()
            });
        }
        self.producers.lock().retain(|_, g| {
            g.retain(|_, c| now.duration_since(c.last_update) < timeout && !c.channel.is_closed());
            !g.is_empty()
        });
        for g in changed {
            self.notify_group(&g);
        }
        dropped
    }

    /// Client ids of a group's members.
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        let groups = self.consumers.lock();
        let mut ids: Vec<String> = groups
            .get(group)
            .map(|g| g.clients.values().map(|c| c.client_id.clone()).collect())
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The live connection of client `client_id` in consumer group `group` (the one heard
    /// from last when it has several), for requests the broker relays to that client.
    pub fn find_consumer(&self, group: &str, client_id: &str) -> Option<ClientInfo> {
        self.consumers
            .lock()
            .get(group)?
            .clients
            .values()
            .filter(|c| c.client_id == client_id && !c.channel.is_closed())
            .max_by_key(|c| c.last_update)
            .cloned()
    }

    /// A group's info.
    pub fn consumer_group(&self, group: &str) -> Option<ConsumerGroupInfo> {
        self.consumers.lock().get(group).cloned()
    }

    /// The subscription expression and its type that `group` registered for `topic` by
    /// heartbeat, if any (what a pull without the subscription flag filters by).
    pub fn subscription(&self, group: &str, topic: &str) -> Option<(String, String)> {
        self.consumers
            .lock()
            .get(group)
            .and_then(|g| g.subscriptions.get(topic))
            .map(|s| (s.sub_string.clone(), s.expression_type.clone()))
    }

    /// Every online consumer group name.
    pub fn consumer_groups(&self) -> Vec<String> {
        self.consumers.lock().keys().cloned().collect()
    }

    /// Number of producer and consumer connections (runtime info).
    pub fn counts(&self) -> (usize, usize) {
        let p = self.producers.lock().values().map(HashMap::len).sum();
        let c = self
            .consumers
            .lock()
            .values()
            .map(|g| g.clients.len())
            .sum();
        (p, c)
    }

    /// GET_CONSUMER_CONNECTION_LIST body.
    pub fn connection_list(&self, group: &str) -> Option<ConsumerConnection> {
        let g = self.consumer_group(group)?;
        Some(ConsumerConnection {
            connection_set: g
                .clients
                .values()
                .map(|c| Connection {
                    client_id: c.client_id.clone(),
                    client_addr: c.channel.remote_addr().to_string(),
                    language: c.language.name().to_string(),
                    version: c.version,
                })
                .collect(),
            subscription_table: g.subscriptions.clone(),
            consume_type: g.consume_type.clone(),
            message_model: g.message_model.clone(),
            consume_from_where: g.consume_from_where.clone(),
        })
    }

    /// Sends NOTIFY_CONSUMER_IDS_CHANGED to every member of `group` (oneway, best effort).
    pub fn notify_group(&self, group: &str) {
        if self.quiet_groups.lock().contains(group) {
            return;
        }
        let channels: Vec<Channel> = self
            .consumers
            .lock()
            .get(group)
            .map(|g| g.clients.values().map(|c| c.channel.clone()).collect())
            .unwrap_or_default();
        for ch in channels {
            let group = group.to_string();
            tokio::spawn(async move {
                let cmd = RemotingCommand::request(request_code::NOTIFY_CONSUMER_IDS_CHANGED)
                    .with_ext("consumerGroup", &group);
                if let Err(e) = ch.invoke_oneway(cmd).await {
                    tracing::debug!(group, error = %e, "notify consumer ids changed failed");
                }
            });
        }
    }
}

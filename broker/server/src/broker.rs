//! The broker: shared state, startup, background services and shutdown.
//!
//! [`Broker`] owns the message store, the metadata managers, client tracking, long polling,
//! the delay scheduler and the nameserver registrar; request processors borrow it through an
//! `Arc`. [`start`] opens everything in dependency order (store, metadata, system topics,
//! listener, background tasks) and returns a [`BrokerHandle`] whose `shutdown` reverses it:
//! unregister from nameservers, stop accepting, persist offsets, close the store cleanly.
//! The live configuration is an `Arc<BrokerConfig>` swapped on UPDATE_BROKER_CONFIG, so
//! the hot paths read it without holding a lock across awaits.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_message_store::{MessageInner, MessageStore, PutResult, PutStatus, StoreConfig};
use flotilla_remoting::protocol::MessageQueue;
use flotilla_remoting::{RemotingServer, ServerConfig};
use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use crate::client_manager::ClientManager;
use crate::config::{BrokerConfig, BrokerRole, ConfigError};
use crate::consumer_offset::ConsumerOffsetManager;
use crate::error::BrokerError;
use crate::long_polling::LongPolling;
use crate::register::Registrar;
use crate::replication::{GateOutcome, ReplicationGate};

use crate::schedule::ScheduleService;
use crate::stats::Stats;
use crate::subscription_group::SubscriptionGroupManager;
use crate::topic_config::TopicConfigManager;

/// The broker's shared state.
pub struct Broker {
    cfg: RwLock<Arc<BrokerConfig>>,
    /// The config the broker started with: what restart-only keys were built from.
    boot_cfg: Arc<BrokerConfig>,
    config_path: Option<PathBuf>,
    /// The message store.
    pub store: MessageStore,
    /// Topics.
    pub topics: TopicConfigManager,
    /// Consumer groups.
    pub groups: SubscriptionGroupManager,
    /// Committed offsets.
    pub offsets: ConsumerOffsetManager,
    /// Producer/consumer connections.
    pub clients: Arc<ClientManager>,
    /// Held pulls.
    pub long_polling: Arc<LongPolling>,
    /// Nameserver registration.
    pub registrar: Registrar,
    /// Delayed delivery.
    pub schedule: ScheduleService,
    /// Timer messages: the due-time index and its checkpoint.
    pub timer: crate::timer::TimerService,
    /// Transactional messages: resolved half messages, the check-back loop.
    pub transactions: crate::transaction::TransactionService,
    /// Counters.
    pub stats: Stats,
    /// Replication hook on the send path.
    pub gate: Arc<dyn ReplicationGate>,
    /// Classic HA state (slave progress on a master, the followed master on a slave).
    pub ha: Arc<crate::ha::HaState>,
    /// The DLedger engine in DLedger mode (`enableDLegerCommitLog=true`).
    pub dledger: Option<Arc<crate::dledger::DLedgerRuntime>>,
    /// This broker's address as written in message ids.
    pub store_host: SocketAddr,
    /// Orderly-consumption queue locks.
    pub locks: QueueLocks,
    /// Start time (ms).
    pub boot_ms: i64,
    /// Cancelled at shutdown.
    pub stop: CancellationToken,
    config_write: tokio::sync::Mutex<()>,
}

/// Queue locks for orderly consumers (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ): one client per
/// queue per group, expiring after 60 s without renewal.
#[derive(Default)]
pub struct QueueLocks {
    table: Mutex<HashMap<String, GroupLocks>>,
}

/// Queue → (owner client id, last lock time) of one group.
type GroupLocks = HashMap<MessageQueue, (String, Instant)>;

const LOCK_EXPIRY: Duration = Duration::from_secs(60);

impl QueueLocks {
    /// Locks what it can of `mqs` for `client`; returns the queues now held by `client`.
    pub fn lock(&self, group: &str, client: &str, mqs: &[MessageQueue]) -> Vec<MessageQueue> {
        let mut t = self.table.lock();
        let g = t.entry(group.to_string()).or_default();
        let now = Instant::now();
        let mut ok = Vec::new();
        for mq in mqs {
            match g.get_mut(mq) {
                Some((owner, at)) if owner == client || now.duration_since(*at) > LOCK_EXPIRY => {
                    *owner = client.to_string();
                    *at = now;
                    ok.push(mq.clone());
                }
                Some(_) => {}
                None => {
                    g.insert(mq.clone(), (client.to_string(), now));
                    ok.push(mq.clone());
                }
            }
        }
        ok
    }

    /// Releases `client`'s locks on `mqs`.
    pub fn unlock(&self, group: &str, client: &str, mqs: &[MessageQueue]) {
        let mut t = self.table.lock();
        if let Some(g) = t.get_mut(group) {
            for mq in mqs {
                if g.get(mq).is_some_and(|(owner, _)| owner == client) {
                    g.remove(mq);
                }
            }
        }
    }
}

/// Property names the broker sets or reads.
pub mod props {
    /// Delay level.
    pub const DELAY: &str = "DELAY";
    /// Original topic of a scheduled message.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// Original queue of a scheduled message.
    pub const REAL_QID: &str = "REAL_QID";
    /// Original topic of a retried message.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// Message id of the first delivery of a retried message.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    /// Max reconsume times carried with a retried message.
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    /// Client-side unique id.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// Tags.
    pub const TAGS: &str = "TAGS";
    /// The broker's `regionId`, stamped on every message it stores (as Java does); a
    /// tracing consumer takes the trace's region from it and drops a trace without one.
    pub const MSG_REGION: &str = "MSG_REGION";
    /// The broker's `traceOn`, stamped on every message it stores: `false` tells tracing
    /// clients not to trace it.
    pub const TRACE_SWITCH: &str = "TRACE_ON";
}

/// Removes one property from an encoded properties string.
pub fn remove_property(properties: &str, key: &str) -> String {
    let mut out = String::with_capacity(properties.len());
    for pair in properties.split('\u{2}') {
        if pair.is_empty() {
            continue;
        }
        if pair.split_once('\u{1}').is_some_and(|(k, _)| k == key) {
            continue;
        }
        out.push_str(pair);
        out.push('\u{2}');
    }
    out
}

/// Sets one property in an encoded properties string (replacing an old value).
pub fn set_property(properties: &str, key: &str, value: &str) -> String {
    let mut out = remove_property(properties, key);
    out.push_str(key);
    out.push('\u{1}');
    out.push_str(value);
    out.push('\u{2}');
    out
}

impl Broker {
    /// The live configuration.
    pub fn config(&self) -> Arc<BrokerConfig> {
        self.cfg.read().clone()
    }

    /// The `-c` file, if any.
    pub fn config_path(&self) -> Option<&PathBuf> {
        self.config_path.as_ref()
    }

    /// The role and brokerId this broker has now: from the config, or in DLedger mode from
    /// the engine (leader: SYNC_MASTER / 0, else SLAVE / `1 + index in dLegerPeers`).
    pub fn effective_role(&self) -> (BrokerRole, i64) {
        match &self.dledger {
            Some(d) => d.effective_role(),
            None => {
                let c = self.config();
                (c.broker_role, c.broker_id)
            }
        }
    }

    /// Whether this broker is a master now (see [`Broker::effective_role`]).
    pub fn is_master(&self) -> bool {
        self.effective_role().0 != BrokerRole::Slave
    }

    /// A queue's max offset as consumers may see it (stops at [`Broker::read_bound`]).
    pub fn max_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        if self.dledger.is_some() {
            self.store
                .max_offset_in_queue_below(topic, queue_id, self.read_bound())
        } else {
            self.store.max_offset_in_queue(topic, queue_id)
        }
    }

    /// CommitLog offset below which records may be shown to consumers: everything
    /// (`i64::MAX`) without DLedger, the confirm (commit) offset with it.
    pub fn read_bound(&self) -> i64 {
        if self.dledger.is_some() {
            self.store.confirm_offset()
        } else {
            i64::MAX
        }
    }

    /// Applies UPDATE_BROKER_CONFIG: validates, refuses keys that would only apply after a
    /// restart (naming them), persists to the `-c` file, swaps the live config, and
    /// re-registers / switches nameservers when those keys changed.
    pub async fn update_config(
        &self,
        updates: &BTreeMap<String, String>,
    ) -> Result<Arc<BrokerConfig>, ConfigError> {
        let _serial = self.config_write.lock().await;
        let old = self.config();
        let new = Arc::new(old.updated_live(&self.boot_cfg, updates)?);
        if let Some(path) = &self.config_path {
            let path = path.clone();
            let up = updates.clone();
            tokio::task::spawn_blocking(move || crate::config::persist(&path, &up))
                .await
                .map_err(|e| ConfigError::Inconsistent(format!("persist task failed: {e}")))??;
        }
        *self.cfg.write() = new.clone();
        tracing::info!(keys = ?updates.keys().collect::<Vec<_>>(), "broker config updated");
        if old.namesrv_addr != new.namesrv_addr {
            self.registrar
                .namesrvs_changed(self, &old.namesrv_addr, &new.namesrv_addr);
        }
        if old.broker_permission != new.broker_permission
            && let Err(e) = self.topics.bump_data_version()
        {
            tracing::warn!(error = %e, "could not persist the topic data version");
        }
        if old.broker_permission != new.broker_permission || old.namesrv_addr != new.namesrv_addr {
            self.registrar.trigger();
        }
        Ok(new)
    }

    /// Stores messages (after moving delayed ones to the schedule topic) and waits for
    /// replication; counts them.
    pub async fn put(&self, mut batch: Vec<MessageInner>) -> PutResult {
        let cfg = self.config();
        if !self.is_master() {
            // A slave's CommitLog is its master's copy: nothing else may write to it.
            return PutResult::failed(PutStatus::ServiceNotAvailable);
        }
        for m in &mut batch {
            self.schedule.maybe_delay(m, &cfg);
        }
        let n = batch.len() as u64;
        let bytes: u64 = batch.iter().map(|m| m.body.len() as u64).sum();
        if !self.gate.before_append() {
            // DLedger: not the leader (or lease lost, or handing over) — never append.
            self.stats
                .put_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return PutResult::failed(PutStatus::ServiceNotAvailable);
        }
        let mut r = if batch.len() == 1 {
            match batch.pop() {
                Some(m) => self.store.put_message(m).await,
                None => PutResult::failed(PutStatus::MessageIllegal),
            }
        } else {
            self.store.put_messages(batch).await
        };
        if matches!(r.status, PutStatus::PutOk | PutStatus::FlushDiskTimeout) {
            self.stats.on_put(n, bytes);
            if !self.gate.is_noop()
                && let Some(a) = &r.append
            {
                let end = a.wrote_offset + a.wrote_bytes as i64;
                match self.gate.after_append(end).await {
                    GateOutcome::Ok => {}
                    GateOutcome::FlushSlaveTimeout => r.status = PutStatus::FlushSlaveTimeout,
                    GateOutcome::SlaveNotAvailable => r.status = PutStatus::SlaveNotAvailable,
                    GateOutcome::NotLeader => {
                        // Not acknowledged: without `append` the reply is an error, and the
                        // client retries on the new master once its route is refreshed.
                        r.status = PutStatus::ServiceNotAvailable;
                        r.append = None;
                    }
                }
            }
        } else {
            self.stats
                .put_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
}

/// A running broker.
pub struct BrokerHandle {
    /// The shared state.
    pub broker: Arc<Broker>,
    server: RemotingServer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BrokerHandle {
    /// The bound listen address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Clean shutdown: unregister, stop serving, persist offsets, close the store.
    pub async fn shutdown(self) {
        let b = self.broker.clone();
        b.stop.cancel();
        b.registrar.unregister_all(&b).await;
        self.server.shutdown().await;
        if let Some(d) = &b.dledger {
            d.engine.shutdown().await;
        }
        for t in self.tasks {
            t.abort();
        }
        if let Err(e) = b.offsets.persist() {
            tracing::error!(error = %e, code = e.code(), "cannot persist consumer offsets");
        }
        if let Err(e) = b.schedule.persist() {
            tracing::error!(error = %e, "cannot persist delay offsets");
        }
        let b2 = b.clone();
        if let Ok(Err(e)) =
            tokio::task::spawn_blocking(move || crate::timer::persist_with_flush(&b2)).await
        {
            tracing::error!(error = %e, code = e.code(), "cannot persist the timer store");
        }
        let store = b.store.clone();
        match tokio::task::spawn_blocking(move || store.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, code = e.code(), "store shutdown failed"),
            Err(e) => tracing::error!(error = %e, "store shutdown task failed"),
        }
        tracing::info!("broker stopped");
    }
}

/// Opens the store and metadata, binds the listener and starts the background services.
pub async fn start(
    cfg: BrokerConfig,
    config_path: Option<PathBuf>,
) -> Result<BrokerHandle, BrokerError> {
    let ha = crate::ha::HaState::new(&cfg);
    let gate = ha.gate_for(&cfg);
    start_inner(cfg, config_path, gate, ha).await
}

/// [`start`] with a replication gate (HA / DLedger plug in here).
pub async fn start_with_gate(
    cfg: BrokerConfig,
    config_path: Option<PathBuf>,
    gate: Arc<dyn ReplicationGate>,
) -> Result<BrokerHandle, BrokerError> {
    let ha = crate::ha::HaState::new(&cfg);
    start_inner(cfg, config_path, gate, ha).await
}

async fn start_inner(
    cfg: BrokerConfig,
    config_path: Option<PathBuf>,
    gate: Arc<dyn ReplicationGate>,
    ha: Arc<crate::ha::HaState>,
) -> Result<BrokerHandle, BrokerError> {
    for k in cfg.unknown_keys() {
        tracing::warn!(key = %k, "unknown config key kept (reported by GET_BROKER_CONFIG)");
    }
    let ip: IpAddr = cfg
        .broker_ip1
        .parse()
        .map_err(|_| ConfigError::InvalidValue {
            key: "brokerIP1".into(),
            value: cfg.broker_ip1.clone(),
            expected: "an IP address".into(),
        })?;
    let store_host = SocketAddr::new(ip, cfg.listen_port);
    // ACL 1.0 before anything opens: a file that cannot be used stops the start.
    let acl = match &cfg.acl_file {
        Some(path) => {
            let p = path.clone();
            let file = tokio::task::spawn_blocking(move || flotilla_acl::AclFile::load(p))
                .await
                .map_err(|e| BrokerError::Task(e.to_string()))??;
            tracing::info!(file = %path.display(), "ACL 1.0 on: every request is checked");
            Some(file)
        }
        None => None,
    };
    let root = cfg.store_path_root_dir.clone();
    let mut sc = StoreConfig::new(root.clone());
    sc.commitlog_file_size = cfg.mapped_file_size_commit_log;
    sc.cq_entries_per_file = u32::try_from(cfg.mapped_file_size_consume_queue / 20)
        .unwrap_or(300_000)
        .max(1);
    sc.flush = cfg.flush_disk_type;
    sc.sync_flush_timeout = cfg.sync_flush_timeout;
    sc.flush_interval = cfg.flush_interval_commit_log;
    sc.flush_least_bytes = cfg.flush_commit_log_least_pages.saturating_mul(4096);
    sc.flush_thorough_interval = cfg.flush_commit_log_thorough_interval;
    sc.max_message_size = cfg.max_message_size.saturating_add(64 * 1024);
    sc.file_reserved_hours = cfg.file_reserved_time;
    sc.delete_when = cfg.delete_when.clone();
    sc.disk_full_ratio = f64::from(cfg.disk_space_warning_level_ratio) / 100.0;
    sc.disk_force_clean_ratio = f64::from(cfg.disk_space_clean_forcibly_ratio) / 100.0;
    sc.disk_max_used_ratio =
        (f64::from(cfg.disk_max_used_space_ratio) / 100.0).min(sc.disk_force_clean_ratio);
    sc.store_host = store_host;
    sc.page_cache_window = cfg.page_cache_window.resolve(
        crate::page_cache::broker_memory(),
        cfg.ha.access_message_in_memory_max_ratio,
    );
    if let Some(w) = sc.page_cache_window {
        tracing::info!(
            bytes = w,
            "CommitLog page cache bounded behind the flushed offset"
        );
    }
    let store = tokio::task::spawn_blocking(move || MessageStore::open(sc))
        .await
        .map_err(|e| BrokerError::Task(e.to_string()))??;
    let (dledger, gate) = match &cfg.dledger {
        Some(keys) => {
            // Consumers never see bytes a new leader could truncate: an unset confirm offset
            // means "nothing committed yet", and the engine moves it to its commit offset.
            store.set_confirm_strict(true);
            let mut ecfg = keys.engine_config(&root.join("dledger"));
            ecfg.listen = Some(crate::dledger::listen_addr(keys, &cfg.broker_ip1)?);
            let engine = flotilla_dledger::DLedger::start(ecfg, store.clone()).await?;
            let rt = crate::dledger::DLedgerRuntime::new(engine, keys);
            let gate: Arc<dyn ReplicationGate> =
                Arc::new(crate::dledger::DLedgerGate::new(rt.clone()));
            (Some(rt), gate)
        }
        None => (None, gate),
    };
    let meta = |e: &dyn std::fmt::Display| BrokerError::Metadata(e.to_string());
    let topics = TopicConfigManager::load(&root).map_err(|e| meta(&e))?;
    topics
        .init_system_topics(
            cfg.auto_create_topic_enable,
            cfg.default_topic_queue_nums,
            cfg.message_delay_level.len(),
            cfg.cluster_topic_enable
                .then_some(cfg.broker_cluster_name.as_str()),
            cfg.broker_topic_enable.then_some(cfg.broker_name.as_str()),
        )
        .map_err(|e| meta(&e))?;
    let groups = SubscriptionGroupManager::load(&root).map_err(|e| meta(&e))?;
    let offsets = ConsumerOffsetManager::load(&root).map_err(|e| meta(&e))?;
    let schedule = ScheduleService::load(&root).map_err(|e| meta(&e))?;
    let timer = crate::timer::TimerService::load(&root).map_err(|e| meta(&e))?;
    let bind = format!("{}:{}", cfg.bind_address, cfg.listen_port);
    let inner_credentials = cfg.inner_credentials.clone();
    let acl_interval = cfg.acl_watch_interval;
    let broker = Arc::new(Broker {
        boot_cfg: Arc::new(cfg.clone()),
        cfg: RwLock::new(Arc::new(cfg)),
        config_path,
        store,
        topics,
        groups,
        offsets,
        clients: ClientManager::new(),
        long_polling: Arc::new(LongPolling::default()),
        registrar: Registrar::new(inner_credentials),
        schedule,
        timer,
        transactions: crate::transaction::TransactionService::new(),
        stats: Stats::default(),
        gate,
        ha,
        dledger,
        store_host,
        locks: QueueLocks::default(),
        boot_ms: crate::topic_config::now_ms(),
        stop: CancellationToken::new(),
        config_write: tokio::sync::Mutex::new(()),
    });
    let processor = Arc::new(crate::processor::BrokerProcessor::new(broker.clone()));
    let mut server_cfg = ServerConfig::default();
    // Many small pipelined requests per connection, but never more than 64 MiB of request
    // bytes of one connection in flight (not 8192 × the frame cap); over either limit a
    // request is answered SYSTEM_BUSY.
    server_cfg.channel.max_inflight_per_connection = 8192;
    server_cfg.channel.max_inflight_bytes_per_connection = 64 * 1024 * 1024;
    let mut builder = RemotingServer::builder()
        .config(server_cfg)
        .register_codes(crate::processor::HANDLED_CODES, processor);
    if let Some(file) = &acl {
        builder = builder.hook(Arc::new(flotilla_acl::AclHook::new(
            flotilla_acl::Scope::Broker,
            file.clone(),
        )));
    }
    let server = builder
        .bind(bind.clone())
        .await
        .map_err(|source| BrokerError::Bind { addr: bind, source })?;
    let mut tasks = vec![
        tokio::spawn(
            broker
                .long_polling
                .clone()
                .run(broker.store.subscribe_arrivals()),
        ),
        tokio::spawn(Registrar::run(broker.clone())),
        tokio::spawn(housekeeping(broker.clone())),
    ];
    if let Some(file) = &acl {
        tasks.push(file.spawn_watch(acl_interval, broker.stop.clone()));
    }
    // Delayed delivery writes to the CommitLog: only a master runs it (in DLedger mode it
    // runs everywhere and idles while this member is not the leader).
    if broker.config().is_master() || broker.dledger.is_some() {
        tasks.push(tokio::spawn(ScheduleService::run(broker.clone())));
        tasks.push(tokio::spawn(crate::timer::TimerService::run(
            broker.clone(),
        )));
        tasks.push(tokio::spawn(crate::transaction::TransactionService::run(
            broker.clone(),
        )));
    }
    if let Some(d) = &broker.dledger {
        tasks.push(tokio::spawn(crate::dledger::run_role_watch(
            broker.clone(),
            d.clone(),
        )));
        tasks.push(tokio::spawn(crate::dledger::run_metadata_follow(
            broker.clone(),
            d.clone(),
        )));
    }
    match crate::ha::spawn(&broker).await {
        Ok(t) => tasks.extend(t),
        Err(e) => {
            broker.stop.cancel();
            server.shutdown().await;
            for t in tasks {
                t.abort();
            }
            return Err(e);
        }
    }
    let c = broker.config();
    tracing::info!(
        addr = %server.local_addr(),
        broker = %c.broker_name,
        cluster = %c.broker_cluster_name,
        role = broker.effective_role().0.name(),
        dledger = c.dledger.is_some(),
        namesrv = ?c.namesrv_addr,
        "broker started"
    );
    Ok(BrokerHandle {
        broker,
        server,
        tasks,
    })
}

/// Periodic chores: offset persistence, client expiry, rate sampling.
async fn housekeeping(b: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_flush = Instant::now();
    let mut last_scan = Instant::now();
    let mut last_sample = Instant::now();
    loop {
        tokio::select! {
            () = b.stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let cfg = b.config();
        if last_sample.elapsed() >= Duration::from_secs(1) {
            b.stats.sample(last_sample.elapsed());
            last_sample = Instant::now();
        }
        if last_flush.elapsed() >= cfg.flush_consumer_offset_interval {
            last_flush = Instant::now();
            let b2 = b.clone();
            let r = tokio::task::spawn_blocking(move || {
                let a = b2.offsets.persist().map_err(|e| e.to_string());
                let d = b2.schedule.persist().map_err(|e| e.to_string());
                a.and(d)
            })
            .await;
            if let Ok(Err(e)) = r {
                tracing::error!(error = %e, "cannot persist offsets");
            }
        }
        if last_scan.elapsed() >= Duration::from_secs(10) {
            last_scan = Instant::now();
            let n = b.clients.scan_expired(cfg.channel_expired_timeout);
            if n > 0 {
                tracing::info!(dropped = n, "expired client connections");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_edits() {
        let p = "TAGS\u{1}a\u{2}DELAY\u{1}3\u{2}KEYS\u{1}k\u{2}";
        let r = remove_property(p, "DELAY");
        assert_eq!(r, "TAGS\u{1}a\u{2}KEYS\u{1}k\u{2}");
        let s = set_property(&r, "TAGS", "b");
        assert_eq!(s, "KEYS\u{1}k\u{2}TAGS\u{1}b\u{2}");
        assert_eq!(remove_property("", "X"), "");
    }

    #[test]
    fn queue_locks() {
        let l = QueueLocks::default();
        let mq = MessageQueue::new("T", "b", 0);
        assert_eq!(l.lock("g", "c1", std::slice::from_ref(&mq)).len(), 1);
        assert!(l.lock("g", "c2", std::slice::from_ref(&mq)).is_empty());
        l.unlock("g", "c1", std::slice::from_ref(&mq));
        assert_eq!(l.lock("g", "c2", std::slice::from_ref(&mq)).len(), 1);
    }
}

//! Classic master/slave HA: a slave broker keeps a byte-identical copy of its master's
//! CommitLog, builds its own ConsumeQueues and index from it, follows the master's metadata,
//! and serves reads; a SYNC_MASTER answers a send only once slaves hold it.
//!
//! # Why this shape
//!
//! RocketMQ's classic HA is deliberately simple: the CommitLog *is* the replication log. The
//! master ships raw CommitLog bytes and the slave appends them at the same offsets
//! (`MessageStore::append_raw`, which validates and dispatches every complete record to the
//! slave's own ConsumeQueues and index), so the slave's offsets, message ids and files are
//! the master's. There is no election: a slave never becomes master here (that is DLedger's
//! job, in its own crate); it keeps the data and serves it when clients read from it.
//!
//! # Parts
//!
//! | module | job |
//! |---|---|
//! | [`wire`] | the frame and report codecs (Java-compatible, panic-free on any input) |
//! | [`master`] | the HA listener (`listenPort + 1` or `haListenPort`) and one streaming task per slave |
//! | [`slave`] | the HA client: connect, report, apply frames, reconnect |
//! | [`sync_gate`] | the SYNC_MASTER [`crate::replication::ReplicationGate`] |
//! | [`metadata_sync`] | the slave's periodic pull of topics, groups and offsets from its master |
//!
//! # Protocol (see [`wire`])
//!
//! The slave connects to `haMasterAddress`, or to the `haServerAddr` the nameserver returned
//! in the REGISTER_BROKER reply, and reports its CommitLog max offset (8 bytes) at once,
//! after every applied frame, and every `haSendHeartbeatInterval` (5 s). The master sends
//! nothing before the first report; then it streams from the reported offset — or, for a
//! report of 0, from the start of its last CommitLog file (an empty slave starts its own log
//! there) — in frames of at most `haTransferBatchSize` (32 KiB), with a size-0 heartbeat
//! every heartbeat interval when idle. Either side drops a connection silent for
//! `haHousekeepingInterval` (20 s). A slave receiving an offset other than its own end
//! drops the connection and reconnects, which re-reports and so re-positions the master.
//!
//! # SYNC_MASTER
//!
//! [`sync_gate::SyncGate`] waits after each append until enough slaves have reported an
//! offset at or past the append's end. "Enough" is `inSyncReplicas - 1` slaves when that key
//! is set (it counts the master, as in Java), and otherwise every slave that is connected and
//! in sync (within `haMaxGapNotInSync` of the append) — and always at least one: unlike
//! Java, whose default of 1 silently turns SYNC_MASTER into ASYNC_MASTER, a SYNC_MASTER here
//! never acknowledges a write held by the master alone. With no slave connected the send is
//! answered SLAVE_NOT_AVAILABLE at once; when the acks do not arrive within
//! `flotillaHaWaitTimeoutMills` (default `syncFlushTimeout`) it is FLUSH_SLAVE_TIMEOUT. Both
//! still carry the message id: the message is stored on the master, as in Java.
//!
//! # Slave behaviour
//!
//! A slave refuses writes (NO_PERMISSION on sends; the store path refuses any put), does
//! not run delayed delivery, registers with its `brokerId > 0`, mirrors the master's
//! topics, subscription groups and consumer offsets every `flotillaSlaveSyncIntervalMills`
//! (3 s) and at start, and serves pulls. With `slaveReadEnable=true` the master's pull
//! response names the group's `whichBrokerWhenConsumeSlowly` in `suggestWhichBrokerId` when
//! the consumer is further behind than `flotillaSlaveReadLagBytes` (default: Java's
//! `accessMessageInMemoryMaxRatio` (40 %) of physical memory) and a slave is connected.
//!
//! GET_BROKER_RUNTIME_INFO reports the replication state ([`runtime_info`]): on a master
//! `haConnectionCount`, `flotillaHaInSyncSlaves`, `slaveFallBehindMuch` (bytes the slowest
//! connected slave lags) and the per-slave ack offsets; on a slave the master it follows,
//! whether it is connected, its lag and when metadata last synced.

pub mod master;
pub mod metadata_sync;
pub mod slave;
pub mod sync_gate;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::broker::Broker;
use crate::config::{BrokerConfig, BrokerRole, ConfigError};
use crate::error::BrokerError;
use crate::replication::{NoReplication, ReplicationGate};

/// HA errors (logged by the services; a failed session is retried).
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// The peer violated the wire format, or the socket failed.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// Connecting to the master failed or timed out.
    #[error("cannot connect to master HA address {addr}: {reason}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The master closed the connection.
    #[error("the HA peer closed the connection")]
    Closed,
    /// Nothing was heard from the peer within the housekeeping interval.
    #[error("the HA peer was silent for {0:?}")]
    Silent(Duration),
    /// The master sent data for an offset other than the slave's CommitLog end.
    #[error("master sent offset {master} but this slave's CommitLog ends at {ours}")]
    OffsetMismatch {
        /// Offset in the frame.
        master: i64,
        /// The slave's end.
        ours: i64,
    },
    /// The slave asked for data the master no longer (or never) had.
    #[error("slave asked for offset {asked}, the master keeps {min}..{max}")]
    OffsetUnavailable {
        /// Requested offset.
        asked: i64,
        /// The master's min offset.
        min: i64,
        /// The master's max offset.
        max: i64,
    },
    /// The store refused the replicated bytes.
    #[error("store: {0}")]
    Store(#[from] flotilla_message_store::StoreError),
    /// A blocking task failed.
    #[error("internal task failed: {0}")]
    Task(String),
    /// A metadata request to the master failed.
    #[error("metadata sync from {addr}: {reason}")]
    MetadataSync {
        /// The master's remoting address.
        addr: String,
        /// Why.
        reason: String,
    },
}

impl HaError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Wire(e) => e.code(),
            Self::Connect { .. } => "HA_CONNECT_FAILED",
            Self::Closed => "HA_CLOSED",
            Self::Silent(_) => "HA_PEER_SILENT",
            Self::OffsetMismatch { .. } => "HA_OFFSET_MISMATCH",
            Self::OffsetUnavailable { .. } => "HA_OFFSET_UNAVAILABLE",
            Self::Store(e) => e.code(),
            Self::Task(_) => "HA_TASK_FAILED",
            Self::MetadataSync { .. } => "HA_METADATA_SYNC_FAILED",
        }
    }
}

/// The HA keys of `broker.conf`, parsed (defaults live in `config.rs`'s key table).
#[derive(Debug, Clone, PartialEq)]
pub struct HaConfig {
    /// `haListenPort`: the master's HA port (`None`: `listenPort + 1`).
    pub listen_port: Option<u16>,
    /// `haMasterAddress`: where a slave connects (`None`: ask the nameserver).
    pub master_address: Option<String>,
    /// `haSendHeartbeatInterval`: slave report / master heartbeat period when idle.
    pub heartbeat_interval: Duration,
    /// `haHousekeepingInterval`: a connection silent this long is dropped.
    pub housekeeping_interval: Duration,
    /// `haTransferBatchSize`: largest frame payload the master sends.
    pub transfer_batch_size: usize,
    /// `haMaxGapNotInSync`: a slave further behind than this is not in sync.
    pub max_gap_not_in_sync: i64,
    /// `inSyncReplicas`: copies (master included) a SYNC_MASTER write needs (`None`: all
    /// in-sync slaves, at least one).
    pub in_sync_replicas: Option<usize>,
    /// `flotillaHaWaitTimeoutMills`: how long a SYNC_MASTER send waits for acks (`None`:
    /// `syncFlushTimeout`).
    pub wait_timeout: Option<Duration>,
    /// `slaveReadEnable`: redirect slow consumers to a slave.
    pub slave_read_enable: bool,
    /// `accessMessageInMemoryMaxRatio` (percent of physical memory).
    pub access_message_in_memory_max_ratio: u32,
    /// `flotillaSlaveReadLagBytes`: lag (bytes) above which a consumer is redirected.
    pub slave_read_lag_bytes: Option<u64>,
    /// `flotillaSlaveSyncIntervalMills`: how often a slave pulls metadata from its master.
    pub metadata_sync_interval: Duration,
}

fn bad(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

impl HaConfig {
    /// Parses the HA keys; `raw(key)` gives the trimmed value or the key's default.
    pub fn parse(raw: impl Fn(&str) -> String) -> Result<Self, ConfigError> {
        fn num<T: std::str::FromStr>(
            raw: &impl Fn(&str) -> String,
            key: &str,
            expected: &str,
        ) -> Result<Option<T>, ConfigError> {
            let v = raw(key);
            if v.is_empty() {
                return Ok(None);
            }
            v.parse().map(Some).map_err(|_| bad(key, &v, expected))
        }
        let ms = |key: &str| -> Result<Duration, ConfigError> {
            let v: u64 = num(&raw, key, "milliseconds (a positive integer)")?
                .filter(|v| *v > 0)
                .ok_or_else(|| bad(key, &raw(key), "milliseconds (a positive integer)"))?;
            Ok(Duration::from_millis(v))
        };
        let master_address = Some(raw("haMasterAddress")).filter(|s| !s.is_empty());
        if let Some(a) = &master_address
            && !a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            return Err(bad("haMasterAddress", a, "host:port"));
        }
        let batch: usize = num(&raw, "haTransferBatchSize", "a size in bytes")?.unwrap_or(0);
        if !(1024..=wire::MAX_ACCEPTED_FRAME).contains(&batch) {
            return Err(bad(
                "haTransferBatchSize",
                &batch.to_string(),
                "a size between 1024 and 16777216 bytes",
            ));
        }
        let gap: i64 = num(&raw, "haMaxGapNotInSync", "a size in bytes")?.unwrap_or(-1);
        if gap <= 0 {
            return Err(bad(
                "haMaxGapNotInSync",
                &raw("haMaxGapNotInSync"),
                "a positive size in bytes",
            ));
        }
        let isr: Option<usize> = num(&raw, "inSyncReplicas", "a replica count 1..16")?;
        if isr.is_some_and(|n| !(1..=16).contains(&n)) {
            return Err(bad(
                "inSyncReplicas",
                &raw("inSyncReplicas"),
                "a replica count 1..16",
            ));
        }
        let wait_timeout = match num::<u64>(&raw, "flotillaHaWaitTimeoutMills", "milliseconds")? {
            Some(0) => {
                return Err(bad(
                    "flotillaHaWaitTimeoutMills",
                    "0",
                    "a positive number of milliseconds",
                ));
            }
            other => other.map(Duration::from_millis),
        };
        let sre = raw("slaveReadEnable");
        let slave_read_enable = match sre.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(bad("slaveReadEnable", &sre, "true or false")),
        };
        let ratio: u32 =
            num(&raw, "accessMessageInMemoryMaxRatio", "a percentage 0..100")?.unwrap_or(40);
        if ratio > 100 {
            return Err(bad(
                "accessMessageInMemoryMaxRatio",
                &ratio.to_string(),
                "a percentage 0..100",
            ));
        }
        Ok(Self {
            listen_port: num(&raw, "haListenPort", "a TCP port 1..65535")?,
            master_address,
            heartbeat_interval: ms("haSendHeartbeatInterval")?,
            housekeeping_interval: ms("haHousekeepingInterval")?,
            transfer_batch_size: batch,
            max_gap_not_in_sync: gap,
            in_sync_replicas: isr,
            wait_timeout,
            slave_read_enable,
            access_message_in_memory_max_ratio: ratio,
            slave_read_lag_bytes: num(&raw, "flotillaSlaveReadLagBytes", "a size in bytes")?,
            metadata_sync_interval: ms("flotillaSlaveSyncIntervalMills")?,
        })
    }
}

/// One connected slave as the master sees it.
#[derive(Debug, Clone)]
pub struct SlaveProgress {
    /// The slave's address.
    pub addr: SocketAddr,
    /// The slave's last reported CommitLog max offset (-1 before its first report).
    pub acked: i64,
}

/// The slave side's view of its master.
#[derive(Debug, Clone, Default)]
struct FollowState {
    /// Remoting address of the master, from the nameserver.
    master_addr: Option<String>,
    /// HA address of the master, from the nameserver.
    master_ha_addr: Option<String>,
    /// The HA address of the current session, if connected.
    connected_to: Option<String>,
    /// When metadata last synced (ms), and whether the last attempt worked.
    metadata_synced_ms: i64,
    metadata_last_ok: bool,
}

/// Replication state shared by the HA services, the send gate, pulls and runtime info.
pub struct HaState {
    cfg: HaConfig,
    role: BrokerRole,
    slaves: Mutex<HashMap<u64, SlaveProgress>>,
    next_id: AtomicU64,
    acks: watch::Sender<u64>,
    follow: Mutex<FollowState>,
    /// Fired when the master's address becomes known or changes (wakes the slave client).
    pub master_changed: Notify,
    /// Highest master offset a slave has seen in a frame (its view of the master's end).
    master_seen: AtomicI64,
}

impl HaState {
    /// The state for a broker with `cfg`.
    pub fn new(cfg: &BrokerConfig) -> Arc<Self> {
        let (acks, _) = watch::channel(0);
        Arc::new(Self {
            cfg: cfg.ha.clone(),
            role: cfg.broker_role,
            slaves: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            acks,
            follow: Mutex::new(FollowState::default()),
            master_changed: Notify::new(),
            master_seen: AtomicI64::new(0),
        })
    }

    /// The replication gate this broker's role asks for.
    pub fn gate_for(self: &Arc<Self>, cfg: &BrokerConfig) -> Arc<dyn ReplicationGate> {
        if cfg.broker_role == BrokerRole::SyncMaster && !dledger_mode(cfg) {
            Arc::new(sync_gate::SyncGate::new(
                self.clone(),
                self.cfg.in_sync_replicas,
                self.cfg.wait_timeout.unwrap_or(cfg.sync_flush_timeout),
                self.cfg.max_gap_not_in_sync,
            ))
        } else {
            Arc::new(NoReplication)
        }
    }

    /// The HA configuration.
    pub fn config(&self) -> &HaConfig {
        &self.cfg
    }

    // ---- master side

    /// Records a new slave connection; returns its id.
    pub(crate) fn add_slave(&self, addr: SocketAddr) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.slaves
            .lock()
            .insert(id, SlaveProgress { addr, acked: -1 });
        self.acks.send_modify(|v| *v = v.wrapping_add(1));
        id
    }

    /// Records a slave's report.
    pub(crate) fn slave_ack(&self, id: u64, offset: i64) {
        if let Some(s) = self.slaves.lock().get_mut(&id) {
            s.acked = s.acked.max(offset);
        }
        self.acks.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Forgets a closed slave connection.
    pub(crate) fn remove_slave(&self, id: u64) {
        self.slaves.lock().remove(&id);
        self.acks.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Connected slaves.
    pub fn slaves(&self) -> Vec<SlaveProgress> {
        let mut v: Vec<SlaveProgress> = self.slaves.lock().values().cloned().collect();
        v.sort_by_key(|s| s.addr);
        v
    }

    /// Slaves connected and within `haMaxGapNotInSync` of `master_max`.
    pub fn in_sync_count(&self, master_max: i64) -> usize {
        self.slaves
            .lock()
            .values()
            .filter(|s| s.acked >= 0 && master_max - s.acked <= self.cfg.max_gap_not_in_sync)
            .count()
    }

    // ---- slave side

    /// Takes the master addresses from a REGISTER_BROKER reply (slaves only).
    pub fn on_register_reply(&self, master_addr: Option<&str>, ha_addr: Option<&str>) {
        if self.role != BrokerRole::Slave {
            return;
        }
        let clean = |s: Option<&str>| {
            s.map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let (m, h) = (clean(master_addr), clean(ha_addr));
        if m.is_none() && h.is_none() {
            return;
        }
        let changed = {
            let mut f = self.follow.lock();
            let changed = f.master_addr != m || f.master_ha_addr != h;
            f.master_addr = m;
            f.master_ha_addr = h;
            changed
        };
        if changed {
            tracing::info!(master = ?master_addr, ha = ?ha_addr, "master address from the nameserver");
            self.master_changed.notify_waiters();
        }
    }

    /// Where the slave's HA client connects: `haMasterAddress`, else the nameserver's.
    pub fn master_ha_addr(&self) -> Option<String> {
        self.cfg
            .master_address
            .clone()
            .or_else(|| self.follow.lock().master_ha_addr.clone())
    }

    /// The master's remoting address: the nameserver's, else derived from
    /// `haMasterAddress` (its port minus one, the HA default).
    pub fn master_addr(&self) -> Option<String> {
        if let Some(m) = self.follow.lock().master_addr.clone() {
            return Some(m);
        }
        let ha = self.cfg.master_address.as_ref()?;
        let (host, port) = ha.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        Some(format!("{host}:{}", port.checked_sub(1)?))
    }

    pub(crate) fn set_connected(&self, to: Option<String>) {
        self.follow.lock().connected_to = to;
    }

    pub(crate) fn saw_master_offset(&self, end: i64) {
        self.master_seen.fetch_max(end, Ordering::Relaxed);
    }

    pub(crate) fn metadata_synced(&self, ok: bool) {
        let mut f = self.follow.lock();
        f.metadata_last_ok = ok;
        if ok {
            f.metadata_synced_ms = crate::topic_config::now_ms();
        }
    }
}

impl HaState {
    /// When metadata last synced from the master / DLedger leader (ms, 0 = never) and
    /// whether the last attempt worked.
    pub fn metadata_sync_state(&self) -> (i64, bool) {
        let f = self.follow.lock();
        (f.metadata_synced_ms, f.metadata_last_ok)
    }
}

/// Whether DLedger replaces classic HA for this broker.
fn dledger_mode(cfg: &BrokerConfig) -> bool {
    cfg.dledger.is_some()
}

/// Starts the HA services of `b`'s role: the HA listener on masters, the HA client and
/// metadata sync on slaves.
pub async fn spawn(b: &Arc<Broker>) -> Result<Vec<tokio::task::JoinHandle<()>>, BrokerError> {
    let cfg = b.config();
    if dledger_mode(&cfg) {
        return Ok(Vec::new());
    }
    if cfg.is_master() {
        let port =
            b.ha.cfg
                .listen_port
                .unwrap_or_else(|| cfg.listen_port.saturating_add(1));
        let addr = format!("{}:{port}", cfg.bind_address);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| BrokerError::Bind {
                addr: addr.clone(),
                source,
            })?;
        tracing::info!(addr = %addr, "HA service listening");
        Ok(vec![tokio::spawn(master::run(b.clone(), listener))])
    } else {
        Ok(vec![
            tokio::spawn(slave::run(b.clone())),
            tokio::spawn(metadata_sync::run(b.clone())),
        ])
    }
}

/// Adds the replication keys to GET_BROKER_RUNTIME_INFO.
pub fn runtime_info(b: &Broker, t: &mut BTreeMap<String, String>) {
    if b.dledger.is_some() {
        return;
    }
    let max = b.store.commitlog_max_offset();
    let ha = &b.ha;
    if ha.role == BrokerRole::Slave {
        let f = ha.follow.lock().clone();
        let seen = ha.master_seen.load(Ordering::Relaxed);
        t.insert(
            "flotillaHaMasterAddr".into(),
            ha.master_ha_addr().unwrap_or_default(),
        );
        t.insert(
            "flotillaHaConnected".into(),
            f.connected_to.is_some().to_string(),
        );
        t.insert("flotillaHaMasterMaxOffset".into(), seen.to_string());
        t.insert(
            "slaveFallBehindMuch".into(),
            (seen - max).max(0).to_string(),
        );
        t.insert(
            "flotillaMetadataSyncedAt".into(),
            f.metadata_synced_ms.to_string(),
        );
        t.insert(
            "flotillaMetadataSyncOk".into(),
            f.metadata_last_ok.to_string(),
        );
        return;
    }
    let slaves = ha.slaves();
    let behind = slaves
        .iter()
        .map(|s| max - s.acked.max(0))
        .max()
        .unwrap_or(0)
        .max(0);
    t.insert("haConnectionCount".into(), slaves.len().to_string());
    t.insert(
        "flotillaHaInSyncSlaves".into(),
        ha.in_sync_count(max).to_string(),
    );
    t.insert("slaveFallBehindMuch".into(), behind.to_string());
    t.insert(
        "flotillaHaSlaveAckOffsets".into(),
        slaves
            .iter()
            .map(|s| format!("{}={}", s.addr, s.acked))
            .collect::<Vec<_>>()
            .join(";"),
    );
}

/// The broker id a pull response suggests (`suggestWhichBrokerId`), when it is not the
/// master: on a master with `slaveReadEnable`, a connected slave, and a consumer whose last
/// returned message (at `last_phys`) lags the CommitLog end by more than the threshold, the
/// group's `whichBrokerWhenConsumeSlowly`.
pub fn suggest_broker_id(b: &Broker, group: &str, last_phys: i64) -> Option<i64> {
    let ha = &b.ha;
    if ha.role == BrokerRole::Slave || !ha.cfg.slave_read_enable || b.dledger.is_some() {
        return None;
    }
    let threshold = ha.cfg.slave_read_lag_bytes.unwrap_or_else(|| {
        crate::page_cache::broker_memory() / 100
            * u64::from(ha.cfg.access_message_in_memory_max_ratio)
    });
    let behind = u64::try_from(b.store.commitlog_max_offset() - last_phys).unwrap_or(0);
    if behind <= threshold || ha.slaves.lock().is_empty() {
        return None;
    }
    let id = b
        .groups
        .get(group)
        .map_or(1, |g| g.which_broker_when_consume_slowly);
    (id != 0).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha_keys_parse_and_validate() {
        let c = BrokerConfig::default();
        assert_eq!(c.ha.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(c.ha.transfer_batch_size, 32 * 1024);
        assert_eq!(c.ha.in_sync_replicas, None);
        assert!(!c.ha.slave_read_enable);
        let c = BrokerConfig::parse(
            "brokerRole=SLAVE\nbrokerId=1\nhaMasterAddress=127.0.0.1:10912\ninSyncReplicas=2\n\
             flotillaHaWaitTimeoutMills=700\nslaveReadEnable=true\nflotillaSlaveReadLagBytes=10\n",
        )
        .unwrap();
        assert_eq!(c.ha.master_address.as_deref(), Some("127.0.0.1:10912"));
        assert_eq!(c.ha.in_sync_replicas, Some(2));
        assert_eq!(c.ha.wait_timeout, Some(Duration::from_millis(700)));
        assert!(c.unknown_keys().is_empty(), "{:?}", c.unknown_keys());
        let state = HaState::new(&c);
        assert_eq!(state.master_addr().as_deref(), Some("127.0.0.1:10911"));
        for (text, key) in [
            ("haMasterAddress=nohost", "haMasterAddress"),
            ("inSyncReplicas=0", "inSyncReplicas"),
            ("haTransferBatchSize=10", "haTransferBatchSize"),
            ("slaveReadEnable=maybe", "slaveReadEnable"),
            ("haSendHeartbeatInterval=0", "haSendHeartbeatInterval"),
            ("flotillaHaWaitTimeoutMills=0", "flotillaHaWaitTimeoutMills"),
        ] {
            let e = BrokerConfig::parse(text).unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn register_reply_sets_master_on_slaves_only() {
        let slave = HaState::new(&BrokerConfig::parse("brokerRole=SLAVE\nbrokerId=1").unwrap());
        assert_eq!(slave.master_ha_addr(), None);
        slave.on_register_reply(Some("10.0.0.1:10911"), Some("10.0.0.1:10912"));
        assert_eq!(slave.master_ha_addr().as_deref(), Some("10.0.0.1:10912"));
        assert_eq!(slave.master_addr().as_deref(), Some("10.0.0.1:10911"));
        slave.on_register_reply(Some(""), None);
        assert_eq!(slave.master_addr().as_deref(), Some("10.0.0.1:10911"));
        let master = HaState::new(&BrokerConfig::default());
        master.on_register_reply(Some("10.0.0.1:10911"), Some("10.0.0.1:10912"));
        assert_eq!(master.master_ha_addr(), None);
    }

    #[test]
    fn in_sync_counts_gap() {
        let c = BrokerConfig::parse("haMaxGapNotInSync=100").unwrap();
        let s = HaState::new(&c);
        let a = s.add_slave("127.0.0.1:1".parse().unwrap());
        let b = s.add_slave("127.0.0.1:2".parse().unwrap());
        assert_eq!(s.in_sync_count(50), 0, "no report yet");
        s.slave_ack(a, 1000);
        s.slave_ack(b, 850);
        assert_eq!(s.in_sync_count(1000), 1);
        assert_eq!(s.in_sync_count(900), 2);
        s.remove_slave(a);
        assert_eq!(s.slaves().len(), 1);
    }
}

//! The broker's configuration: RocketMQ's `broker.conf` keys, typed and validated.
//!
//! Operators (and the Flotilla agent) configure a broker with the same properties file a
//! Java broker reads, so existing configs keep working. [`BrokerConfig::from_properties`]
//! parses every known key, keeps unknown keys (they are logged at start and returned by
//! GET_BROKER_CONFIG, never fatal), and turns an invalid value into a
//! [`ConfigError::InvalidValue`] naming the key. Runtime changes (UPDATE_BROKER_CONFIG) go
//! through [`BrokerConfig::updated`], which validates the merged set the same way, and
//! [`persist`] rewrites the `-c` file atomically (temp file + rename), keeping comments and
//! the keys it does not change.
//!
//! A runtime change is never accepted silently. Each known key is either *live* — every
//! reader takes it from the broker's current config at use, so the new value holds from the
//! next request on — or *restart-only*, because something was built from it at start (the
//! store's files and flush and retention settings, the listener, HA and DLedger state, the
//! schedule's delivery tasks). [`BrokerConfig::updated_live`] answers a change of a
//! restart-only key, or of a key this broker does not know, with an error naming the key
//! ([`ConfigError::RestartRequired`], [`ConfigError::UnknownKey`]) instead of SUCCESS; a
//! key sent with its current value is a no-op and passes. Features this broker does not
//! have refuse to start rather than run open or wrong: 5.x's ACL 2.0 switches
//! (`authenticationEnabled`/`authorizationEnabled`) are [`ConfigError::Unsupported`].
//!
//! ACL 1.0 is supported (`flotilla_acl`): `aclEnable=true` checks every request against
//! `<rocketmqHome>/conf/plain_acl.yml` (Java's file; `rocketmqHome` defaults to
//! `ROCKETMQ_HOME`, and Java's system property `rocketmq.acl.plain.file` is read here as a
//! key naming another file, relative to the home or absolute). The switch and the file's
//! place are restart-only, as in Java; the file's content is re-read live every
//! `flotillaAclWatchIntervalMills`. The broker signs its own requests (registration with
//! nameservers, metadata sync from its master or DLedger leader) with RocketMQ 5's
//! `innerClientAuthenticationCredentials` (`{"accessKey":"…","secretKey":"…"}`), the key
//! Java 5.x's `BrokerOuterAPI` signs with (4.9's broker signed nothing); GET_BROKER_CONFIG
//! shows that key redacted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_message_store::config::FlushDiskType;

use crate::properties;

/// A configuration problem; startup fails with it, UPDATE_BROKER_CONFIG answers with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A known key has a value of the wrong shape or out of range.
    #[error("invalid value {value:?} for {key}: expected {expected}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// Keys contradict each other (e.g. a SLAVE with brokerId 0).
    #[error("inconsistent configuration: {0}")]
    Inconsistent(String),
    /// The config file could not be read or written.
    #[error("config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The key may not be changed at runtime (`configBlackList`).
    #[error("{0} may not be changed at runtime")]
    Forbidden(String),
    /// UPDATE_BROKER_CONFIG changed a key that only takes effect at the next start.
    #[error(
        "{key} cannot be changed while the broker runs ({why}); change it in the config file and restart"
    )]
    RestartRequired {
        /// The key.
        key: String,
        /// What was built from it at start.
        why: &'static str,
    },
    /// UPDATE_BROKER_CONFIG named a key this broker does not know, so it would apply nothing.
    #[error("{0} is not a key this broker knows; nothing would apply it")]
    UnknownKey(String),
    /// The config asks for a feature this broker does not have.
    #[error("{key}={value} is not supported: {why}")]
    Unsupported {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What is missing.
        why: &'static str,
    },
}

impl ConfigError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidValue { .. } => "CONFIG_INVALID_VALUE",
            Self::Inconsistent(_) => "CONFIG_INCONSISTENT",
            Self::Io { .. } => "CONFIG_IO",
            Self::Forbidden(_) => "CONFIG_FORBIDDEN",
            Self::RestartRequired { .. } => "CONFIG_RESTART_REQUIRED",
            Self::UnknownKey(_) => "CONFIG_UNKNOWN_KEY",
            Self::Unsupported { .. } => "CONFIG_UNSUPPORTED",
        }
    }
}

/// The replication role of this broker (`brokerRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerRole {
    /// Master that answers after the local write.
    #[default]
    AsyncMaster,
    /// Master that answers a send only once slaves hold it (see `crate::ha`).
    SyncMaster,
    /// Slave: follows its master's CommitLog and metadata, refuses writes, serves reads.
    Slave,
}

impl BrokerRole {
    /// The Java enum name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AsyncMaster => "ASYNC_MASTER",
            Self::SyncMaster => "SYNC_MASTER",
            Self::Slave => "SLAVE",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "ASYNC_MASTER" => Some(Self::AsyncMaster),
            "SYNC_MASTER" => Some(Self::SyncMaster),
            "SLAVE" => Some(Self::Slave),
            _ => None,
        }
    }
}

/// The default delay levels (RocketMQ's `messageDelayLevel`).
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// Keys that may never be changed through UPDATE_BROKER_CONFIG.
pub const CONFIG_BLACKLIST: &[&str] = &["configBlackList", "brokerConfigPath"];

/// Keys that take effect at runtime: every reader takes them from [`Broker::config`]
/// (`crate::broker::Broker::config`) at use. Every other known key is restart-only.
///
/// - `namesrvAddr`: the registrar switches nameservers at once; `brokerPermission`:
///   re-registration at once; the registration loop re-reads its period and timeout.
/// - `maxMessageSize`: the send path checks it; the store's own limit was sized at start,
///   so only values up to the one the broker started with are live.
/// - `messageDelayLevel`: due times and level delays are read per message, but the delivery
///   tasks were started per level, so only as many levels as at start are live.
/// - the rest are read by the send, pull, heartbeat and housekeeping paths per request.
pub const LIVE_KEYS: &[&str] = &[
    "namesrvAddr",
    "brokerPermission",
    "autoCreateTopicEnable",
    "autoCreateSubscriptionGroup",
    "maxMessageSize",
    "defaultTopicQueueNums",
    "registerNameServerPeriod",
    "registerBrokerTimeoutMills",
    "messageDelayLevel",
    "longPollingEnable",
    "shortPollingTimeMills",
    "channelExpiredTimeout",
    "regionId",
    "traceOn",
    "maxReconsumeTimes",
    "flushConsumerOffsetInterval",
    "transactionTimeOut",
    "transactionCheckMax",
    "transactionCheckInterval",
    "timerWheelEnable",
    "timerMaxDelaySec",
    "timerPrecisionMs",
];

/// Why a restart-only key cannot change at runtime (the remark of the refusal).
fn restart_reason(key: &str) -> &'static str {
    match key {
        "brokerClusterName" | "brokerName" | "brokerId" | "brokerRole" => {
            "the broker's identity and role are fixed at start"
        }
        "listenPort" | "bindAddress" | "brokerIP1" | "brokerIP2" => {
            "the listener and the advertised address are set up at start"
        }
        "storePathRootDir"
        | "flushDiskType"
        | "syncFlushTimeout"
        | "flushIntervalCommitLog"
        | "flushCommitLogLeastPages"
        | "flushCommitLogThoroughInterval"
        | "deleteWhen"
        | "fileReservedTime"
        | "diskMaxUsedSpaceRatio"
        | "diskSpaceCleanForciblyRatio"
        | "diskSpaceWarningLevelRatio"
        | "mappedFileSizeCommitLog"
        | "mappedFileSizeConsumeQueue"
        | "flotillaCommitLogPageCacheWindow" => "the message store is opened with it at start",
        "clusterTopicEnable" | "brokerTopicEnable" => "the system topics are created at start",
        "traceTopicEnable" => "the trace topic is not managed by this broker",
        "aclEnable" | "rocketmqHome" | ACL_FILE_KEY | "flotillaAclWatchIntervalMills" => {
            "the ACL is set up with it at start (plain_acl.yml itself is re-read live)"
        }
        INNER_CREDENTIALS_KEY => "the broker's outbound clients are set up with it at start",
        k if k.starts_with("ha")
            || k.starts_with("flotillaHa")
            || k.starts_with("flotillaSlave")
            || k == "inSyncReplicas"
            || k == "slaveReadEnable"
            || k == "accessMessageInMemoryMaxRatio" =>
        {
            "replication is set up with it at start"
        }
        k if k.contains("DLeger") => "the DLedger group is set up with it at start",
        _ => "it is read once at start",
    }
}

/// Keys that turn on a feature this broker does not have: starting with them `true` would
/// run a broker that looks protected or complete and is not.
const UNSUPPORTED_WHEN_TRUE: &[(&str, &str)] = &[
    (
        "authenticationEnabled",
        "this broker has no ACL 2.0 authentication (users and policies); it would accept \
         every request. ACL 1.0 is supported: aclEnable=true with conf/plain_acl.yml",
    ),
    (
        "authorizationEnabled",
        "this broker has no ACL 2.0 authorization (users and policies); it would allow \
         every request. ACL 1.0 is supported: aclEnable=true with conf/plain_acl.yml",
    ),
];

/// The key naming the ACL file (Java's system property `rocketmq.acl.plain.file`).
pub const ACL_FILE_KEY: &str = "rocketmq.acl.plain.file";
/// The key with the credentials this broker signs its own requests with.
pub const INNER_CREDENTIALS_KEY: &str = "innerClientAuthenticationCredentials";

/// Every key this broker understands, with its default, in GET_BROKER_CONFIG order.
const KNOWN: &[(&str, &str)] = &[
    ("brokerClusterName", "DefaultCluster"),
    ("brokerName", "broker-a"),
    ("brokerId", "0"),
    ("namesrvAddr", ""),
    ("listenPort", "10911"),
    ("bindAddress", "0.0.0.0"),
    ("brokerIP1", "127.0.0.1"),
    ("brokerIP2", ""),
    ("storePathRootDir", ""),
    ("brokerRole", "ASYNC_MASTER"),
    ("flushDiskType", "ASYNC_FLUSH"),
    ("syncFlushTimeout", "5000"),
    // ASYNC_FLUSH's flusher (RocketMQ's MessageStoreConfig keys): it wakes every
    // flushIntervalCommitLog ms and flushes when flushCommitLogLeastPages pages (4 KiB) are
    // dirty, or whatever is dirty once flushCommitLogThoroughInterval ms have passed.
    ("flushIntervalCommitLog", "500"),
    ("flushCommitLogLeastPages", "4"),
    ("flushCommitLogThoroughInterval", "10000"),
    ("deleteWhen", "04"),
    ("fileReservedTime", "72"),
    ("diskMaxUsedSpaceRatio", "75"),
    // RocketMQ 5's store keys (percent): above the first, the oldest CommitLog files are
    // deleted even if not expired; at the second, writes are refused.
    ("diskSpaceCleanForciblyRatio", "85"),
    ("diskSpaceWarningLevelRatio", "90"),
    ("autoCreateTopicEnable", "true"),
    ("autoCreateSubscriptionGroup", "true"),
    ("brokerPermission", "6"),
    ("maxMessageSize", "4194304"),
    ("mappedFileSizeCommitLog", "1073741824"),
    ("mappedFileSizeConsumeQueue", "6000000"),
    ("defaultTopicQueueNums", "8"),
    ("registerNameServerPeriod", "30000"),
    ("registerBrokerTimeoutMills", "24000"),
    ("messageDelayLevel", DEFAULT_DELAY_LEVELS),
    ("longPollingEnable", "true"),
    ("shortPollingTimeMills", "1000"),
    ("channelExpiredTimeout", "120000"),
    ("clusterTopicEnable", "true"),
    ("brokerTopicEnable", "true"),
    ("traceTopicEnable", "false"),
    ("regionId", "DefaultRegion"),
    ("traceOn", "true"),
    ("maxReconsumeTimes", "16"),
    ("flushConsumerOffsetInterval", "5000"),
    // Transactional messages (see `crate::transaction`): a half message is first checked
    // back after transactionTimeOut ms, every transactionCheckInterval ms, at most
    // transactionCheckMax times.
    ("transactionTimeOut", "6000"),
    ("transactionCheckMax", "15"),
    ("transactionCheckInterval", "30000"),
    // Timer messages (see `crate::timer`; Java's MessageStoreConfig keys): refused when the
    // wheel is off or the due time is more than timerMaxDelaySec ahead; due times are
    // rounded down to timerPrecisionMs.
    ("timerWheelEnable", "true"),
    ("timerMaxDelaySec", "259200"),
    ("timerPrecisionMs", "1000"),
    // Page cache kept behind the CommitLog's flushed offset (see `crate::page_cache`):
    // "" = accessMessageInMemoryMaxRatio of the broker's memory, "0" = no bound, else bytes.
    ("flotillaCommitLogPageCacheWindow", ""),
    // Classic HA (see `crate::ha`); "" = unset.
    ("haListenPort", ""),
    ("haMasterAddress", ""),
    ("haSendHeartbeatInterval", "5000"),
    ("haHousekeepingInterval", "20000"),
    ("haTransferBatchSize", "32768"),
    ("haMaxGapNotInSync", "268435456"),
    ("inSyncReplicas", ""),
    ("flotillaHaWaitTimeoutMills", ""),
    ("slaveReadEnable", "false"),
    ("accessMessageInMemoryMaxRatio", "40"),
    ("flotillaSlaveReadLagBytes", ""),
    ("flotillaSlaveSyncIntervalMills", "3000"),
    // DLedger mode (see `crate::dledger`); "" = unset / engine default.
    ("enableDLegerCommitLog", "false"),
    ("dLegerGroup", ""),
    ("dLegerPeers", ""),
    ("dLegerSelfId", ""),
    ("flotillaDLegerElectionTimeoutMills", ""),
    ("flotillaDLegerHeartbeatIntervalMills", ""),
    ("flotillaDLegerLeaseMills", ""),
    ("flotillaDLegerCommitTimeoutMills", ""),
    // ACL 1.0 (see the module docs); "" = unset.
    ("aclEnable", "false"),
    ("rocketmqHome", ""),
    (ACL_FILE_KEY, ""),
    ("flotillaAclWatchIntervalMills", "1000"),
    (INNER_CREDENTIALS_KEY, ""),
];

/// The typed broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `brokerClusterName`.
    pub broker_cluster_name: String,
    /// `brokerName` (the broker group).
    pub broker_name: String,
    /// `brokerId`: 0 = master, > 0 = slave.
    pub broker_id: i64,
    /// `namesrvAddr`, split on `;`.
    pub namesrv_addr: Vec<String>,
    /// `listenPort`.
    pub listen_port: u16,
    /// `bindAddress` (Flotilla): the address the listener binds.
    pub bind_address: String,
    /// `brokerIP1`: the address advertised to nameservers and in message ids.
    pub broker_ip1: String,
    /// `storePathRootDir`.
    pub store_path_root_dir: PathBuf,
    /// `brokerRole`.
    pub broker_role: BrokerRole,
    /// `flushDiskType`.
    pub flush_disk_type: FlushDiskType,
    /// `syncFlushTimeout` (ms).
    pub sync_flush_timeout: Duration,
    /// `flushIntervalCommitLog` (ms): how often ASYNC_FLUSH's flusher wakes.
    pub flush_interval_commit_log: Duration,
    /// `flushCommitLogLeastPages`: dirty pages (4 KiB) before ASYNC_FLUSH flushes.
    pub flush_commit_log_least_pages: u64,
    /// `flushCommitLogThoroughInterval` (ms): ASYNC_FLUSH flushes any dirty bytes this often.
    pub flush_commit_log_thorough_interval: Duration,
    /// `deleteWhen`.
    pub delete_when: String,
    /// `fileReservedTime` (hours).
    pub file_reserved_time: u32,
    /// `diskMaxUsedSpaceRatio` (percent).
    pub disk_max_used_space_ratio: u32,
    /// `diskSpaceCleanForciblyRatio` (percent): force-delete the oldest files above this.
    pub disk_space_clean_forcibly_ratio: u32,
    /// `diskSpaceWarningLevelRatio` (percent): refuse writes at this disk usage.
    pub disk_space_warning_level_ratio: u32,
    /// `autoCreateTopicEnable`.
    pub auto_create_topic_enable: bool,
    /// `autoCreateSubscriptionGroup`.
    pub auto_create_subscription_group: bool,
    /// `brokerPermission`.
    pub broker_permission: i32,
    /// `maxMessageSize` (bytes).
    pub max_message_size: usize,
    /// `mappedFileSizeCommitLog` (bytes).
    pub mapped_file_size_commit_log: u64,
    /// `mappedFileSizeConsumeQueue` (bytes; a multiple of 20).
    pub mapped_file_size_consume_queue: u64,
    /// `defaultTopicQueueNums`.
    pub default_topic_queue_nums: i32,
    /// `registerNameServerPeriod`.
    pub register_name_server_period: Duration,
    /// `registerBrokerTimeoutMills`.
    pub register_broker_timeout: Duration,
    /// `messageDelayLevel`, parsed.
    pub message_delay_level: Vec<Duration>,
    /// `longPollingEnable`.
    pub long_polling_enable: bool,
    /// `shortPollingTimeMills`.
    pub short_polling_time: Duration,
    /// `channelExpiredTimeout`.
    pub channel_expired_timeout: Duration,
    /// `clusterTopicEnable`: create a topic named after the cluster.
    pub cluster_topic_enable: bool,
    /// `brokerTopicEnable`: create a topic named after the broker.
    pub broker_topic_enable: bool,
    /// `regionId` (MSG_REGION in send responses).
    pub region_id: String,
    /// `traceOn` (TRACE_ON in send responses).
    pub trace_on: bool,
    /// `maxReconsumeTimes`: default retries before DLQ when the group and request say nothing.
    pub max_reconsume_times: i32,
    /// `flushConsumerOffsetInterval`.
    pub flush_consumer_offset_interval: Duration,
    /// `transactionTimeOut`: age of a half message before its first check-back.
    pub transaction_timeout: Duration,
    /// `transactionCheckMax`: check-backs before a half message is given up.
    pub transaction_check_max: i32,
    /// `transactionCheckInterval`: time between check rounds.
    pub transaction_check_interval: Duration,
    /// `timerWheelEnable`: timer messages are accepted (else refused with SYSTEM_ERROR).
    pub timer_wheel_enable: bool,
    /// `timerMaxDelaySec`: the furthest a timer message may be due.
    pub timer_max_delay_sec: i64,
    /// `timerPrecisionMs`: due times are rounded down to a multiple of it (at least 1).
    pub timer_precision_ms: i64,
    /// `flotillaCommitLogPageCacheWindow`: page cache kept behind the flushed offset.
    pub page_cache_window: crate::page_cache::PageCacheWindow,
    /// Classic HA keys (`haMasterAddress`, `inSyncReplicas`, `slaveReadEnable`, …).
    pub ha: crate::ha::HaConfig,
    /// DLedger mode (`enableDLegerCommitLog=true`): the group, peers and timings.
    pub dledger: Option<crate::dledger::DLedgerKeys>,
    /// `aclEnable=true`: the file every request is checked against (else `None`).
    pub acl_file: Option<PathBuf>,
    /// `flotillaAclWatchIntervalMills`: how often the ACL file is re-read.
    pub acl_watch_interval: Duration,
    /// `innerClientAuthenticationCredentials`: what this broker signs its own requests with.
    pub inner_credentials: Option<flotilla_remoting::SessionCredentials>,
    /// Every key as given (file + updates), unknown ones included.
    pub given: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        // The defaults are valid by construction (tested below).
        Self::from_properties(&BTreeMap::new()).expect("the built-in defaults are valid")
    }
}

fn invalid(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

struct Reader<'a> {
    given: &'a BTreeMap<String, String>,
}

impl Reader<'_> {
    fn raw(&self, key: &str) -> String {
        match self.given.get(key) {
            Some(v) => v.trim().to_string(),
            None => KNOWN
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, d)| (*d).to_string())
                .unwrap_or_default(),
        }
    }
    fn string(&self, key: &str) -> String {
        self.raw(key)
    }
    fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        let v = self.raw(key);
        match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid(key, &v, "true or false")),
        }
    }
    fn int<T: std::str::FromStr>(&self, key: &str, expected: &str) -> Result<T, ConfigError> {
        let v = self.raw(key);
        v.parse().map_err(|_| invalid(key, &v, expected))
    }
    fn millis(&self, key: &str) -> Result<Duration, ConfigError> {
        let ms: u64 = self.int(key, "milliseconds (a non-negative integer)")?;
        Ok(Duration::from_millis(ms))
    }
}

/// Parses one delay such as `100ms`, `1s`, `2m`, `1h`, `1d`.
pub fn parse_delay(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => return None,
    };
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// Parses `messageDelayLevel` (space-separated delays).
pub fn parse_delay_levels(s: &str) -> Option<Vec<Duration>> {
    let levels: Option<Vec<Duration>> = s.split_whitespace().map(parse_delay).collect();
    levels.filter(|l| !l.is_empty())
}

impl BrokerConfig {
    /// Builds a config from properties; missing keys take RocketMQ's defaults.
    pub fn from_properties(given: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        for (key, why) in UNSUPPORTED_WHEN_TRUE {
            if let Some(v) = given.get(*key)
                && v.trim().eq_ignore_ascii_case("true")
            {
                return Err(ConfigError::Unsupported {
                    key: (*key).to_string(),
                    value: v.trim().to_string(),
                    why,
                });
            }
        }
        let r = Reader { given };
        let namesrv_addr: Vec<String> = r
            .string("namesrvAddr")
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        for a in &namesrv_addr {
            let ok = a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(invalid(
                    "namesrvAddr",
                    a,
                    "host:port entries separated by ';'",
                ));
            }
        }
        let role_raw = r.string("brokerRole");
        let broker_role = BrokerRole::parse(&role_raw).ok_or_else(|| {
            invalid(
                "brokerRole",
                &role_raw,
                "ASYNC_MASTER, SYNC_MASTER or SLAVE",
            )
        })?;
        let flush_raw = r.string("flushDiskType");
        let flush_disk_type = match flush_raw.to_ascii_uppercase().as_str() {
            "ASYNC_FLUSH" => FlushDiskType::Async,
            "SYNC_FLUSH" => FlushDiskType::Sync,
            _ => {
                return Err(invalid(
                    "flushDiskType",
                    &flush_raw,
                    "ASYNC_FLUSH or SYNC_FLUSH",
                ));
            }
        };
        let store_root = r.string("storePathRootDir");
        let store_path_root_dir = if store_root.is_empty() {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join("store")
        } else {
            PathBuf::from(store_root)
        };
        let delay_raw = r.string("messageDelayLevel");
        let message_delay_level = parse_delay_levels(&delay_raw).ok_or_else(|| {
            invalid(
                "messageDelayLevel",
                &delay_raw,
                "space-separated delays such as \"100ms 1s 5m 2h\"",
            )
        })?;
        let broker_permission: i32 = r.int("brokerPermission", "a permission 0..15 (6 = RW)")?;
        if !(0..=15).contains(&broker_permission) {
            return Err(invalid(
                "brokerPermission",
                &broker_permission.to_string(),
                "a permission 0..15 (6 = RW)",
            ));
        }
        let listen_port: u16 = r.int("listenPort", "a TCP port 1..65535")?;
        if listen_port < 3 {
            return Err(invalid(
                "listenPort",
                &listen_port.to_string(),
                "a TCP port 3..65535",
            ));
        }
        let max_message_size: usize = r.int("maxMessageSize", "a size in bytes")?;
        if max_message_size == 0 {
            return Err(invalid("maxMessageSize", "0", "a positive size in bytes"));
        }
        let mapped: u64 = r.int("mappedFileSizeCommitLog", "a size in bytes")?;
        if !(4096..=(i32::MAX as u64)).contains(&mapped) {
            return Err(invalid(
                "mappedFileSizeCommitLog",
                &mapped.to_string(),
                "a size between 4096 and 2147483647 bytes",
            ));
        }
        let cq: u64 = r.int("mappedFileSizeConsumeQueue", "a size in bytes")?;
        if cq < 20 {
            return Err(invalid(
                "mappedFileSizeConsumeQueue",
                &cq.to_string(),
                "at least 20 bytes",
            ));
        }
        let queues: i32 = r.int("defaultTopicQueueNums", "a queue count 1..1024")?;
        if !(1..=1024).contains(&queues) {
            return Err(invalid(
                "defaultTopicQueueNums",
                &queues.to_string(),
                "a queue count 1..1024",
            ));
        }
        let broker_id: i64 = r.int("brokerId", "an integer broker id")?;
        let delete_when = r.string("deleteWhen");
        if delete_when
            .split(';')
            .any(|h| h.trim().parse::<u32>().map_or(true, |h| h > 23))
        {
            return Err(invalid(
                "deleteWhen",
                &delete_when,
                "hours 0..23 separated by ';'",
            ));
        }
        let ratio: u32 = r.int("diskMaxUsedSpaceRatio", "a percentage 10..95")?;
        let pct = |key: &str| -> Result<u32, ConfigError> {
            let v: u32 = r.int(key, "a percentage 10..99")?;
            if (10..=99).contains(&v) {
                Ok(v)
            } else {
                Err(invalid(key, &v.to_string(), "a percentage 10..99"))
            }
        };
        let forcibly = pct("diskSpaceCleanForciblyRatio")?;
        let warning = pct("diskSpaceWarningLevelRatio")?;
        if forcibly > warning {
            return Err(ConfigError::Inconsistent(format!(
                "diskSpaceCleanForciblyRatio ({forcibly}) must not exceed \
                 diskSpaceWarningLevelRatio ({warning})"
            )));
        }
        let broker_name = r.string("brokerName");
        if broker_name.is_empty() {
            return Err(invalid("brokerName", "", "a non-empty name"));
        }
        let cfg = BrokerConfig {
            broker_cluster_name: r.string("brokerClusterName"),
            broker_name,
            broker_id,
            namesrv_addr,
            listen_port,
            bind_address: r.string("bindAddress"),
            broker_ip1: r.string("brokerIP1"),
            store_path_root_dir,
            broker_role,
            flush_disk_type,
            sync_flush_timeout: r.millis("syncFlushTimeout")?,
            flush_interval_commit_log: r
                .millis("flushIntervalCommitLog")?
                .max(Duration::from_millis(1)),
            flush_commit_log_least_pages: r.int(
                "flushCommitLogLeastPages",
                "a page count (a non-negative integer)",
            )?,
            flush_commit_log_thorough_interval: r.millis("flushCommitLogThoroughInterval")?,
            delete_when,
            file_reserved_time: r.int("fileReservedTime", "hours (a non-negative integer)")?,
            disk_max_used_space_ratio: ratio.clamp(10, 95),
            disk_space_clean_forcibly_ratio: forcibly,
            disk_space_warning_level_ratio: warning,
            auto_create_topic_enable: r.bool("autoCreateTopicEnable")?,
            auto_create_subscription_group: r.bool("autoCreateSubscriptionGroup")?,
            broker_permission,
            max_message_size,
            mapped_file_size_commit_log: mapped,
            mapped_file_size_consume_queue: cq,
            default_topic_queue_nums: queues,
            register_name_server_period: r
                .millis("registerNameServerPeriod")?
                .max(Duration::from_millis(100)),
            register_broker_timeout: r.millis("registerBrokerTimeoutMills")?,
            message_delay_level,
            long_polling_enable: r.bool("longPollingEnable")?,
            short_polling_time: r.millis("shortPollingTimeMills")?,
            channel_expired_timeout: r.millis("channelExpiredTimeout")?,
            cluster_topic_enable: r.bool("clusterTopicEnable")?,
            broker_topic_enable: r.bool("brokerTopicEnable")?,
            region_id: r.string("regionId"),
            trace_on: r.bool("traceOn")?,
            max_reconsume_times: r.int("maxReconsumeTimes", "a count 0..1000")?,
            flush_consumer_offset_interval: r.millis("flushConsumerOffsetInterval")?,
            transaction_timeout: r.millis("transactionTimeOut")?,
            transaction_check_max: r.int("transactionCheckMax", "a count 0..1000000")?,
            transaction_check_interval: r.millis("transactionCheckInterval")?,
            timer_wheel_enable: r.bool("timerWheelEnable")?,
            timer_max_delay_sec: r
                .int::<u32>("timerMaxDelaySec", "seconds (a non-negative integer)")?
                .into(),
            timer_precision_ms: {
                let p: u32 = r.int("timerPrecisionMs", "milliseconds (a positive integer)")?;
                if p == 0 {
                    return Err(invalid(
                        "timerPrecisionMs",
                        "0",
                        "milliseconds (a positive integer)",
                    ));
                }
                p.into()
            },
            page_cache_window: {
                let v = r.raw("flotillaCommitLogPageCacheWindow");
                crate::page_cache::PageCacheWindow::parse(&v).ok_or_else(|| {
                    invalid(
                        "flotillaCommitLogPageCacheWindow",
                        &v,
                        "bytes (at least 16777216), 0 for no bound, or empty for automatic",
                    )
                })?
            },
            ha: crate::ha::HaConfig::parse(|k| r.raw(k))?,
            dledger: None,
            acl_file: if r.bool("aclEnable")? {
                let home = r.raw("rocketmqHome");
                let file = r.raw(ACL_FILE_KEY);
                Some(
                    flotilla_acl::acl_file_path(Some(&home), Some(&file))
                        .map_err(|e| ConfigError::Inconsistent(e.to_string()))?,
                )
            } else {
                None
            },
            acl_watch_interval: r
                .millis("flotillaAclWatchIntervalMills")?
                .max(Duration::from_millis(10)),
            inner_credentials: {
                let v = r.raw(INNER_CREDENTIALS_KEY);
                if v.is_empty() {
                    None
                } else {
                    Some(
                        flotilla_remoting::SessionCredentials::from_json(&v).map_err(|e| {
                            invalid(INNER_CREDENTIALS_KEY, "<redacted>", &e.to_string())
                        })?,
                    )
                }
            },
            given: given.clone(),
        };
        let mut cfg = cfg;
        if r.bool("enableDLegerCommitLog")? {
            let keys = crate::dledger::DLedgerKeys::parse(|k| r.raw(k), &cfg.broker_name)?;
            // As in Java: the id comes from the role DLedger gives this member (0 while
            // leader, a slave id while follower), never from the file.
            cfg.broker_id = -1;
            cfg.broker_role = BrokerRole::Slave;
            cfg.dledger = Some(keys);
        }
        if cfg.broker_ip1.is_empty() {
            return Err(invalid("brokerIP1", "", "an IP address"));
        }
        if cfg.dledger.is_some() {
            return Ok(cfg);
        }
        match cfg.broker_role {
            BrokerRole::Slave if cfg.broker_id <= 0 => {
                return Err(ConfigError::Inconsistent(format!(
                    "brokerRole=SLAVE needs brokerId > 0, got {}",
                    cfg.broker_id
                )));
            }
            BrokerRole::AsyncMaster | BrokerRole::SyncMaster if cfg.broker_id != 0 => {
                return Err(ConfigError::Inconsistent(format!(
                    "brokerRole={} needs brokerId=0, got {}",
                    cfg.broker_role.name(),
                    cfg.broker_id
                )));
            }
            _ => {}
        }
        Ok(cfg)
    }

    /// Parses properties text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::from_properties(&properties::parse(text))
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Keys given that this broker does not know (kept, reported, otherwise ignored).
    pub fn unknown_keys(&self) -> Vec<String> {
        self.given
            .keys()
            .filter(|k| !KNOWN.iter().any(|(n, _)| n == k))
            .cloned()
            .collect()
    }

    /// A new config with `updates` merged in, validated as a whole.
    pub fn updated(&self, updates: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        if let Some(k) = updates
            .keys()
            .find(|k| CONFIG_BLACKLIST.contains(&k.as_str()))
        {
            return Err(ConfigError::Forbidden(k.clone()));
        }
        let mut merged = self.given.clone();
        for (k, v) in updates {
            merged.insert(k.clone(), v.clone());
        }
        Self::from_properties(&merged)
    }

    /// A new config with `updates` merged in, for a broker that started with `boot`:
    /// validated as [`Self::updated`], and refused (naming the key) when an update would
    /// not take effect until a restart or names a key nothing reads. Keys sent with their
    /// current effective value change nothing and pass.
    pub fn updated_live(
        &self,
        boot: &BrokerConfig,
        updates: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let next = self.updated(updates)?;
        let now = self.effective();
        for (key, value) in updates {
            let known = KNOWN.iter().any(|(k, _)| k == key);
            if !known {
                // Already in the file (kept and reported): re-sending it changes nothing.
                if self.given.get(key).map(|v| v.trim()) == Some(value.trim()) {
                    continue;
                }
                return Err(ConfigError::UnknownKey(key.clone()));
            }
            let unchanged = now.get(key).map(|v| v.trim()) == Some(value.trim());
            if unchanged {
                continue;
            }
            if !LIVE_KEYS.contains(&key.as_str()) {
                return Err(ConfigError::RestartRequired {
                    key: key.clone(),
                    why: restart_reason(key),
                });
            }
        }
        if next.max_message_size > boot.max_message_size {
            return Err(ConfigError::RestartRequired {
                key: "maxMessageSize".into(),
                why: "the store's record limit was sized at start; only smaller values are live",
            });
        }
        if next.message_delay_level.len() > boot.message_delay_level.len() {
            return Err(ConfigError::RestartRequired {
                key: "messageDelayLevel".into(),
                why: "delivery runs one task per level started at start; more levels than \
                      that need a restart (changing the delays of existing levels is live)",
            });
        }
        Ok(next)
    }

    /// Every effective key (known keys with their value or default, then unknown keys).
    pub fn effective(&self) -> BTreeMap<String, String> {
        let r = Reader { given: &self.given };
        let mut out = BTreeMap::new();
        for (k, _) in KNOWN {
            out.insert((*k).to_string(), r.raw(k));
        }
        out.insert(
            "storePathRootDir".to_string(),
            self.store_path_root_dir.display().to_string(),
        );
        for k in self.unknown_keys() {
            if let Some(v) = self.given.get(&k) {
                out.insert(k, v.clone());
            }
        }
        out
    }

    /// GET_BROKER_CONFIG body: every effective key as properties text.
    pub fn render(&self) -> String {
        let mut all = self.effective();
        if let Some(v) = all.get_mut(INNER_CREDENTIALS_KEY)
            && !v.is_empty()
        {
            // A secret: never sent back to whoever asks for the config.
            *v = "<redacted>".to_string();
        }
        properties::render(&all)
    }

    /// The address clients and nameservers reach this broker at (`brokerIP1:listenPort`).
    pub fn broker_addr(&self) -> String {
        format!("{}:{}", self.broker_ip1, self.listen_port)
    }

    /// The HA address (`brokerIP2` or `brokerIP1`, port `listenPort + 1`).
    pub fn ha_server_addr(&self) -> String {
        let ip = if self
            .given
            .get("brokerIP2")
            .is_some_and(|s| !s.trim().is_empty())
        {
            self.given
                .get("brokerIP2")
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        } else {
            self.broker_ip1.clone()
        };
        let port = self
            .ha
            .listen_port
            .map_or(u32::from(self.listen_port) + 1, u32::from);
        format!("{ip}:{port}")
    }

    /// Whether this broker is configured as a master. In DLedger mode the role changes at
    /// runtime: ask [`crate::broker::Broker::is_master`] instead.
    pub fn is_master(&self) -> bool {
        self.broker_role != BrokerRole::Slave
    }
}

/// Rewrites `path` with `updates` applied, atomically (temp file in the same directory,
/// fsync, rename, fsync of the directory), keeping comments and other keys.
pub fn persist(path: &Path, updates: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let text = properties::rewrite(&old, updates);
    write_atomic(path, text.as_bytes()).map_err(io)
}

/// Writes `bytes` to `path` atomically (temp file + fsync + rename + directory fsync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = BrokerConfig::default();
        assert_eq!(c.broker_cluster_name, "DefaultCluster");
        assert_eq!(c.listen_port, 10911);
        assert_eq!(c.broker_permission, 6);
        assert_eq!(c.message_delay_level.len(), 18);
        assert_eq!(c.message_delay_level[17], Duration::from_secs(7200));
        assert_eq!(c.register_name_server_period, Duration::from_secs(30));
        assert!(c.auto_create_topic_enable);
    }

    #[test]
    fn parses_rocketmq_broker_conf() {
        let c = BrokerConfig::parse(
            "brokerClusterName = C1\nbrokerName=broker-b\nbrokerId=0\n\
             namesrvAddr=127.0.0.1:9876; 127.0.0.1:9877\nlistenPort=20911\n\
             storePathRootDir=/tmp/x\nbrokerRole=SYNC_MASTER\nflushDiskType=SYNC_FLUSH\n\
             deleteWhen=04;05\nfileReservedTime=48\nautoCreateTopicEnable=false\n\
             brokerIP1=10.0.0.1\nbrokerPermission=4\nmaxMessageSize=1024\n\
             mappedFileSizeCommitLog=1048576\ndefaultTopicQueueNums=4\n\
             messageDelayLevel=100ms 200ms 1s\nfooBar=baz\n",
        )
        .unwrap();
        assert_eq!(c.broker_cluster_name, "C1");
        assert_eq!(c.namesrv_addr, vec!["127.0.0.1:9876", "127.0.0.1:9877"]);
        assert_eq!(c.listen_port, 20911);
        assert_eq!(c.broker_role, BrokerRole::SyncMaster);
        assert_eq!(c.flush_disk_type, FlushDiskType::Sync);
        assert!(!c.auto_create_topic_enable);
        assert_eq!(c.broker_addr(), "10.0.0.1:20911");
        assert_eq!(c.broker_permission, 4);
        assert_eq!(
            c.message_delay_level,
            vec![
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_secs(1)
            ]
        );
        assert_eq!(c.unknown_keys(), vec!["fooBar".to_string()]);
        let rendered = properties::parse(&c.render());
        assert_eq!(rendered["fooBar"], "baz");
        assert_eq!(rendered["brokerName"], "broker-b");
        assert_eq!(rendered["regionId"], "DefaultRegion");
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (text, key) in [
            ("listenPort=abc", "listenPort"),
            ("brokerRole=MASTER", "brokerRole"),
            ("flushDiskType=SOMETIMES", "flushDiskType"),
            ("autoCreateTopicEnable=yes", "autoCreateTopicEnable"),
            ("namesrvAddr=nohost", "namesrvAddr"),
            ("brokerPermission=99", "brokerPermission"),
            ("messageDelayLevel=1x", "messageDelayLevel"),
            ("deleteWhen=25", "deleteWhen"),
            ("mappedFileSizeCommitLog=10", "mappedFileSizeCommitLog"),
            (
                "flotillaCommitLogPageCacheWindow=1048576",
                "flotillaCommitLogPageCacheWindow",
            ),
            (
                "diskSpaceWarningLevelRatio=100",
                "diskSpaceWarningLevelRatio",
            ),
        ] {
            let e = BrokerConfig::parse(text).unwrap_err();
            assert_eq!(e.code(), "CONFIG_INVALID_VALUE", "{text}");
            assert!(e.to_string().contains(key), "{e}");
        }
        let c = BrokerConfig::parse("flotillaCommitLogPageCacheWindow=268435456").unwrap();
        assert_eq!(
            c.page_cache_window,
            crate::page_cache::PageCacheWindow::Bytes(256 << 20)
        );
        let e =
            BrokerConfig::parse("diskSpaceCleanForciblyRatio=95\ndiskSpaceWarningLevelRatio=90")
                .unwrap_err();
        assert_eq!(e.code(), "CONFIG_INCONSISTENT");
        let e = BrokerConfig::parse("brokerRole=SLAVE\nbrokerId=0").unwrap_err();
        assert_eq!(e.code(), "CONFIG_INCONSISTENT");
        assert!(BrokerConfig::parse("brokerRole=SLAVE\nbrokerId=1").is_ok());
    }

    #[test]
    fn updates_validate_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.conf");
        std::fs::write(
            &path,
            "# hi\nbrokerName=b\nnamesrvAddr=127.0.0.1:1\ncustom=1\n",
        )
        .unwrap();
        let c = BrokerConfig::load(&path).unwrap();
        let mut up = BTreeMap::new();
        up.insert(
            "namesrvAddr".to_string(),
            "127.0.0.1:2;127.0.0.1:3".to_string(),
        );
        let c2 = c.updated(&up).unwrap();
        assert_eq!(c2.namesrv_addr.len(), 2);
        persist(&path, &up).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# hi\nbrokerName=b\nnamesrvAddr=127.0.0.1:2;127.0.0.1:3\ncustom=1\n")
        );
        let mut bad = BTreeMap::new();
        bad.insert("brokerPermission".to_string(), "x".to_string());
        assert!(c.updated(&bad).is_err());
        let mut forbidden = BTreeMap::new();
        forbidden.insert("brokerConfigPath".to_string(), "/etc".to_string());
        assert_eq!(
            c.updated(&forbidden).unwrap_err().code(),
            "CONFIG_FORBIDDEN"
        );
    }

    fn kv(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn runtime_updates_apply_live_keys_and_refuse_the_rest_by_name() {
        let boot = BrokerConfig::parse(
            "brokerName=b\nmessageDelayLevel=1s 2s 3s\nmaxMessageSize=1048576\nfooBar=1\n",
        )
        .unwrap();
        // Live keys apply.
        let live = kv(&[
            ("brokerPermission", "4"),
            ("autoCreateTopicEnable", "false"),
            ("messageDelayLevel", "100ms 200ms 300ms"),
            ("maxMessageSize", "65536"),
        ]);
        let next = boot.updated_live(&boot, &live).unwrap();
        assert_eq!(next.broker_permission, 4);
        assert!(!next.auto_create_topic_enable);
        assert_eq!(next.message_delay_level[0], Duration::from_millis(100));
        // Every known key that is not live is refused, naming the key, when it changes.
        for (k, default) in KNOWN {
            if LIVE_KEYS.contains(k) || CONFIG_BLACKLIST.contains(k) {
                continue;
            }
            let value = match *k {
                "brokerRole" => "SYNC_MASTER",
                "flushDiskType" => "SYNC_FLUSH",
                "deleteWhen" => "05",
                "namesrvAddr" => continue,
                "enableDLegerCommitLog"
                | "aclEnable"
                | "slaveReadEnable"
                | "clusterTopicEnable"
                | "brokerTopicEnable"
                | "traceTopicEnable" => {
                    if *default == "true" {
                        "false"
                    } else {
                        "true"
                    }
                }
                "brokerIP1" | "bindAddress" | "brokerIP2" => "127.0.0.2",
                "haMasterAddress" => "127.0.0.1:1",
                "dLegerPeers" | "dLegerGroup" | "dLegerSelfId" | "storePathRootDir" => "x",
                "flotillaCommitLogPageCacheWindow" => "0",
                _ => "77",
            };
            match boot.updated_live(&boot, &kv(&[(k, value)])) {
                Err(ConfigError::RestartRequired { key, .. }) => assert_eq!(key, *k),
                // A value the key cannot take (alone) is refused as invalid first: refused too.
                Err(ConfigError::InvalidValue { .. } | ConfigError::Inconsistent(_)) => {}
                other => panic!("{k}={value}: {other:?}"),
            }
        }
        // The same value as now is a no-op, for live, restart-only and kept unknown keys.
        let same = kv(&[
            ("brokerName", "b"),
            ("listenPort", "10911"),
            ("fooBar", "1"),
        ]);
        assert!(boot.updated_live(&boot, &same).is_ok());
        let e = boot
            .updated_live(&boot, &kv(&[("listenPort", "20911")]))
            .unwrap_err();
        assert_eq!(e.code(), "CONFIG_RESTART_REQUIRED");
        assert!(
            e.to_string().starts_with("listenPort cannot be changed"),
            "{e}"
        );
        let e = boot
            .updated_live(&boot, &kv(&[("noSuchKey", "1")]))
            .unwrap_err();
        assert_eq!(e.code(), "CONFIG_UNKNOWN_KEY");
        assert!(e.to_string().contains("noSuchKey"));
        // Live only within what was built at start.
        let e = boot
            .updated_live(&boot, &kv(&[("maxMessageSize", "4194304")]))
            .unwrap_err();
        assert!(e.to_string().starts_with("maxMessageSize"), "{e}");
        let e = boot
            .updated_live(&boot, &kv(&[("messageDelayLevel", "1s 2s 3s 4s")]))
            .unwrap_err();
        assert!(e.to_string().starts_with("messageDelayLevel"), "{e}");
    }

    #[test]
    fn acl_2_refuses_to_start_acl_1_is_a_restart_key() {
        for key in ["authenticationEnabled", "authorizationEnabled"] {
            let e = BrokerConfig::parse(&format!("{key}=true")).unwrap_err();
            assert_eq!(e.code(), "CONFIG_UNSUPPORTED");
            assert!(
                e.to_string()
                    .starts_with(&format!("{key}=true is not supported")),
                "{e}"
            );
            assert!(BrokerConfig::parse(&format!("{key}=false")).is_ok());
        }
        // ACL 1.0: the file under rocketmqHome (or named by Java's property).
        let c = BrokerConfig::parse("aclEnable=true\nrocketmqHome=/opt/mq\n").unwrap();
        assert_eq!(
            c.acl_file,
            Some(PathBuf::from("/opt/mq/conf/plain_acl.yml"))
        );
        let c =
            BrokerConfig::parse("aclEnable=true\nrocketmq.acl.plain.file=/etc/acl.yml\n").unwrap();
        assert_eq!(c.acl_file, Some(PathBuf::from("/etc/acl.yml")));
        assert_eq!(BrokerConfig::default().acl_file, None);
        let boot = BrokerConfig::default();
        let e = boot
            .updated_live(&boot, &kv(&[("aclEnable", "true"), ("rocketmqHome", "/x")]))
            .unwrap_err();
        assert_eq!(e.code(), "CONFIG_RESTART_REQUIRED");
    }

    #[test]
    fn inner_credentials_parse_and_are_redacted() {
        let c = BrokerConfig::parse(
            "innerClientAuthenticationCredentials={\"accessKey\":\"broker01\",\"secretKey\":\"s3cret-key\"}\n",
        )
        .unwrap();
        let creds = c.inner_credentials.clone().unwrap();
        assert_eq!(creds.access_key, "broker01");
        assert!(!c.render().contains("s3cret-key"));
        let e = BrokerConfig::parse("innerClientAuthenticationCredentials=nope\n").unwrap_err();
        assert_eq!(e.code(), "CONFIG_INVALID_VALUE");
        assert!(!e.to_string().contains("nope"));
    }
}

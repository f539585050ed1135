//! Nameserver settings: defaults, RocketMQ `namesrv.properties` keys, runtime updates.
//!
//! Operators bring RocketMQ config files, so `-c` accepts Java's properties format and
//! key names (`listenPort`, `kvConfigPath`, `scanNotActiveBrokerInterval`, …). Keys we do
//! not implement (Netty thread counts and the like) are reported to the caller, which logs
//! them; they never stop the start. A few keys can change at runtime through
//! UPDATE_NAMESRV_CONFIG ([`RuntimeConfig`]); the path of the KV file and the config
//! black list cannot (as in Java).
//!
//! Unlike Java, the default bind address is `127.0.0.1`, never the wildcard.
//!
//! ACL (Flotilla; Java's nameserver has none): `aclEnable=true` — the broker's key, in
//! Java's style — checks every request against the broker's ACL 1.0 file,
//! `<rocketmqHome>/conf/plain_acl.yml` (`rocketmqHome` defaulting to `ROCKETMQ_HOME`;
//! `rocketmq.acl.plain.file` names another, relative to the home or absolute), re-read
//! every `flotillaAclWatchIntervalMills`. Requests that change nameserver state need an
//! admin account; reads stay open (see `flotilla_acl::check`). These keys and
//! `rocketmqHome` are fixed at start: UPDATE_NAMESRV_CONFIG refuses them (black list).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::route::RouteOptions;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9876";

/// Default interval of the expiry scan.
pub const DEFAULT_SCAN_INTERVAL: Duration = Duration::from_secs(5);

/// Keys UPDATE_NAMESRV_CONFIG refuses (Java's `configBlackList` default).
pub const CONFIG_BLACK_LIST: &[&str] = &[
    "configBlackList",
    "configStorePath",
    "kvConfigPath",
    // Flotilla: the ACL is set up at start; an anonymous update must not turn it off.
    "aclEnable",
    "rocketmqHome",
    ACL_FILE_KEY,
    "flotillaAclWatchIntervalMills",
];

/// The key naming the ACL file (Java's system property `rocketmq.acl.plain.file`).
pub const ACL_FILE_KEY: &str = "rocketmq.acl.plain.file";

/// A setting has a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The value does not parse as the key's type.
    #[error("invalid value {value:?} for {key}: expected {expected}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
}

impl ConfigError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidValue { .. } => "CONFIG_INVALID_VALUE",
            Self::Read { .. } => "CONFIG_READ_FAILED",
        }
    }
}

/// Settings that UPDATE_NAMESRV_CONFIG may change while running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `scanNotActiveBrokerInterval` (ms in properties): how often expired brokers are
    /// removed.
    pub scan_interval: Duration,
    /// `orderMessageEnable`: routes carry `orderTopicConf` from the `ORDER_TOPIC_CONFIG`
    /// namespace. Default true (Java: false), so a stored order config is never ignored.
    pub order_message_enable: bool,
    /// `enableAllTopicList`: GET_ALL_TOPIC_LIST_FROM_NAMESERVER answers.
    pub enable_all_topic_list: bool,
    /// `enableTopicList`: GET_TOPICS_BY_CLUSTER answers.
    pub enable_topic_list: bool,
    /// Route-table switches (`deleteTopicWithBrokerRegistration`, `supportActingMaster`).
    pub route: RouteOptions,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            scan_interval: DEFAULT_SCAN_INTERVAL,
            order_message_enable: true,
            enable_all_topic_list: true,
            enable_topic_list: true,
            route: RouteOptions::default(),
        }
    }
}

/// Everything the nameserver needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesrvConfig {
    /// `host:port` to bind (`bindAddress` + `listenPort` in properties).
    pub listen: String,
    /// `kvConfigPath`.
    pub kv_config_path: PathBuf,
    /// `rocketmqHome`: where `conf/plain_acl.yml` is (else `ROCKETMQ_HOME`).
    pub rocketmq_home: Option<String>,
    /// `aclEnable`: check every request against `plain_acl.yml`.
    pub acl_enable: bool,
    /// `rocketmq.acl.plain.file`: the ACL file, relative to the home or absolute.
    pub acl_file: Option<String>,
    /// `flotillaAclWatchIntervalMills`: how often the ACL file is re-read.
    pub acl_watch_interval: Duration,
    /// The runtime-changeable part.
    pub runtime: RuntimeConfig,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            kv_config_path: default_kv_config_path(),
            rocketmq_home: None,
            acl_enable: false,
            acl_file: None,
            acl_watch_interval: Duration::from_secs(1),
            runtime: RuntimeConfig::default(),
        }
    }
}

/// `$HOME/namesrv/kvConfig.json` (`./namesrv/kvConfig.json` without `HOME`), as Java.
pub fn default_kv_config_path() -> PathBuf {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join("namesrv").join("kvConfig.json")
}

/// Parses Java properties text: `key=value`, `key:value` or `key value` lines; `#` and `!`
/// start comments; surrounding whitespace is trimmed; a trailing `\` continues a line.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            logical.push_str(cont);
            continue;
        }
        logical.push_str(line);
        let entry = std::mem::take(&mut logical);
        if let Some((k, v)) = split_entry(&entry) {
            out.insert(k, v);
        }
    }
    if let Some((k, v)) = split_entry(&logical) {
        out.insert(k, v);
    }
    out
}

fn split_entry(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let idx = line.find(['=', ':', ' ', '\t']);
    let (k, v) = match idx {
        Some(i) => {
            let (k, rest) = line.split_at(i);
            let rest = rest.trim_start();
            let rest = rest
                .strip_prefix('=')
                .or_else(|| rest.strip_prefix(':'))
                .unwrap_or(rest);
            (k, rest.trim())
        }
        None => (line, ""),
    };
    Some((k.trim().to_string(), v.to_string()))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            expected: "true or false",
        }),
    }
}

fn parse_u64(key: &str, value: &str, expected: &'static str) -> Result<u64, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        })
}

impl RuntimeConfig {
    /// Applies one key; `Ok(false)` when the key is not a runtime key.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        match key {
            "scanNotActiveBrokerInterval" => {
                let ms = parse_u64(key, value, "milliseconds > 0")?;
                if ms == 0 {
                    return Err(ConfigError::InvalidValue {
                        key: key.to_string(),
                        value: value.to_string(),
                        expected: "milliseconds > 0",
                    });
                }
                self.scan_interval = Duration::from_millis(ms);
            }
            "orderMessageEnable" => self.order_message_enable = parse_bool(key, value)?,
            "enableAllTopicList" => self.enable_all_topic_list = parse_bool(key, value)?,
            "enableTopicList" => self.enable_topic_list = parse_bool(key, value)?,
            "deleteTopicWithBrokerRegistration" => {
                self.route.delete_topic_with_broker_registration = parse_bool(key, value)?;
            }
            "supportActingMaster" => self.route.support_acting_master = parse_bool(key, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn write(&self, out: &mut BTreeMap<String, String>) {
        out.insert(
            "scanNotActiveBrokerInterval".into(),
            self.scan_interval.as_millis().to_string(),
        );
        out.insert(
            "orderMessageEnable".into(),
            self.order_message_enable.to_string(),
        );
        out.insert(
            "enableAllTopicList".into(),
            self.enable_all_topic_list.to_string(),
        );
        out.insert("enableTopicList".into(), self.enable_topic_list.to_string());
        out.insert(
            "deleteTopicWithBrokerRegistration".into(),
            self.route.delete_topic_with_broker_registration.to_string(),
        );
        out.insert(
            "supportActingMaster".into(),
            self.route.support_acting_master.to_string(),
        );
    }
}

impl NamesrvConfig {
    /// Applies RocketMQ namesrv properties. Returns the keys it does not know (to be
    /// logged); a known key with a bad value is an error.
    pub fn apply_properties(
        &mut self,
        props: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, ConfigError> {
        let mut unknown = Vec::new();
        let (mut host, mut port) = split_listen(&self.listen);
        for (key, value) in props {
            match key.as_str() {
                "listenPort" => {
                    let p = parse_u64(key, value, "a port number")?;
                    port = u16::try_from(p)
                        .map_err(|_| ConfigError::InvalidValue {
                            key: key.clone(),
                            value: value.clone(),
                            expected: "a port number",
                        })?
                        .to_string();
                }
                "bindAddress" => value.trim().clone_into(&mut host),
                "kvConfigPath" => self.kv_config_path = PathBuf::from(value.trim()),
                "rocketmqHome" => self.rocketmq_home = Some(value.trim().to_string()),
                "aclEnable" => self.acl_enable = parse_bool(key, value)?,
                ACL_FILE_KEY => {
                    self.acl_file = Some(value.trim().to_string()).filter(|v| !v.is_empty());
                }
                "flotillaAclWatchIntervalMills" => {
                    let ms = parse_u64(key, value, "milliseconds")?;
                    self.acl_watch_interval = Duration::from_millis(ms.max(10));
                }
                _ => {
                    if !self.runtime.apply(key, value)? {
                        unknown.push(key.clone());
                    }
                }
            }
        }
        self.listen = join_listen(&host, &port);
        Ok(unknown)
    }

    /// The settings as properties (GET_NAMESRV_CONFIG), sorted by key.
    pub fn to_properties(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let (host, port) = split_listen(&self.listen);
        out.insert("bindAddress".into(), host);
        out.insert("listenPort".into(), port);
        out.insert(
            "kvConfigPath".into(),
            self.kv_config_path.display().to_string(),
        );
        if let Some(home) = &self.rocketmq_home {
            out.insert("rocketmqHome".into(), home.clone());
        }
        out.insert("aclEnable".into(), self.acl_enable.to_string());
        if let Some(f) = &self.acl_file {
            out.insert(ACL_FILE_KEY.into(), f.clone());
        }
        out.insert(
            "flotillaAclWatchIntervalMills".into(),
            self.acl_watch_interval.as_millis().to_string(),
        );
        out.insert("configBlackList".into(), CONFIG_BLACK_LIST.join(";"));
        self.runtime.write(&mut out);
        out
    }
}

/// Properties as text, one `key=value` per line.
pub fn properties_to_string(props: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (k, v) in props {
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('\n');
    }
    s
}

fn split_listen(listen: &str) -> (String, String) {
    match listen.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.to_string(),
        ),
        None => (listen.to_string(), "9876".to_string()),
    }
}

fn join_listen(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_like_java() {
        let p = parse_properties(
            "# comment\n! also\nlistenPort=19876\n  kvConfigPath : /x/kv.json\nrocketmqHome /opt/mq\n\
             serverWorkerThreads=8\nlong=a\\\n  b\nempty=\n",
        );
        assert_eq!(p["listenPort"], "19876");
        assert_eq!(p["kvConfigPath"], "/x/kv.json");
        assert_eq!(p["rocketmqHome"], "/opt/mq");
        assert_eq!(p["long"], "ab");
        assert_eq!(p["empty"], "");
        assert_eq!(p.len(), 6);
    }

    #[test]
    fn apply_known_and_report_unknown_keys() {
        let mut c = NamesrvConfig::default();
        assert_eq!(c.listen, "127.0.0.1:9876");
        let p = parse_properties(
            "listenPort=19876\nscanNotActiveBrokerInterval=250\nserverWorkerThreads=8\n\
             orderMessageEnable=false\nsupportActingMaster=true\nkvConfigPath=/tmp/kv.json",
        );
        let unknown = c.apply_properties(&p).unwrap();
        assert_eq!(unknown, vec!["serverWorkerThreads".to_string()]);
        assert_eq!(c.listen, "127.0.0.1:19876");
        assert_eq!(c.runtime.scan_interval, Duration::from_millis(250));
        assert!(!c.runtime.order_message_enable);
        assert!(c.runtime.route.support_acting_master);
        assert_eq!(c.kv_config_path, PathBuf::from("/tmp/kv.json"));
        let props = c.to_properties();
        assert_eq!(props["listenPort"], "19876");
        assert_eq!(props["scanNotActiveBrokerInterval"], "250");
        assert!(properties_to_string(&props).contains("supportActingMaster=true\n"));

        let bad = parse_properties("listenPort=99999");
        let err = c.apply_properties(&bad).unwrap_err();
        assert_eq!(err.code(), "CONFIG_INVALID_VALUE");
        let bad = parse_properties("enableTopicList=maybe");
        assert!(c.apply_properties(&bad).is_err());
        let bad = parse_properties("scanNotActiveBrokerInterval=0");
        assert!(c.apply_properties(&bad).is_err());

        let mut v6 = NamesrvConfig {
            listen: "[::1]:9876".into(),
            ..NamesrvConfig::default()
        };
        v6.apply_properties(&parse_properties("listenPort=1"))
            .unwrap();
        assert_eq!(v6.listen, "[::1]:1");
    }
}

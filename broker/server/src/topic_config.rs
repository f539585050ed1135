//! The broker's topic table (`config/topics.json`): lookups on the send/pull paths,
//! auto-creation, admin changes, and the view registered with nameservers.
//!
//! Every change bumps the table's DataVersion, is persisted atomically before it is
//! acknowledged, and fires [`TopicConfigManager::changed`] so the registration loop
//! re-registers at once (producers learn new topics and permissions within a second rather
//! than at the next 30 s period). Reads are lock-light (`RwLock` read of a map).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use flotilla_message_store::metadata::{self, DataVersion, TopicConfig, TopicConfigTable};
use flotilla_remoting::perm;
use parking_lot::RwLock;
use tokio::sync::Notify;

/// The template topic producers name for auto-creation.
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";
/// Where delayed messages wait (one queue per delay level).
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// Prefix of per-group retry topics.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of per-group dead-letter topics.
pub const DLQ_PREFIX: &str = "%DLQ%";

/// Topic table failures.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The table could not be persisted.
    #[error("cannot persist topics.json: {0}")]
    Persist(#[from] metadata::MetadataError),
    /// The config is invalid (queue counts, perm).
    #[error("invalid topic config: {0}")]
    Invalid(String),
}

impl TopicError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Persist(_) => "TOPIC_PERSIST_FAILED",
            Self::Invalid(_) => "TOPIC_INVALID",
        }
    }
}

/// The retry topic of a consumer group.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// The dead-letter topic of a consumer group.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// Owns the topic table.
pub struct TopicConfigManager {
    path: PathBuf,
    table: RwLock<TopicConfigTable>,
    /// Fired after every change (wakes the registration loop).
    pub changed: Arc<Notify>,
}

impl TopicConfigManager {
    /// Loads `config/topics.json` under `root` (empty table when absent).
    pub fn load(root: &std::path::Path) -> Result<Self, TopicError> {
        let path = metadata::topics_path(root);
        let table = metadata::load_json::<TopicConfigTable>(&path)?.unwrap_or_default();
        Ok(Self {
            path,
            table: RwLock::new(table),
            changed: Arc::new(Notify::new()),
        })
    }

    /// Creates the system topics a broker always has (TBW102 when auto-create is on,
    /// SCHEDULE_TOPIC_XXXX, rmq_sys_wheel_timer, the cluster and broker topics).
    pub fn init_system_topics(
        &self,
        auto_create: bool,
        default_queues: i32,
        delay_levels: usize,
        cluster: Option<&str>,
        broker: Option<&str>,
    ) -> Result<(), TopicError> {
        let mut t = self.table.write();
        let mut dirty = false;
        let mut ensure = |cfg: TopicConfig| {
            if !t.topic_config_table.contains_key(&cfg.topic_name) {
                t.topic_config_table.insert(cfg.topic_name.clone(), cfg);
                dirty = true;
            }
        };
        if auto_create {
            let mut tbw = TopicConfig::new(AUTO_CREATE_TOPIC_KEY, default_queues);
            tbw.perm = perm::READ_WRITE | perm::INHERIT;
            ensure(tbw);
        }
        let levels = i32::try_from(delay_levels).unwrap_or(18).max(1);
        ensure(TopicConfig::new(SCHEDULE_TOPIC, levels));
        ensure(TopicConfig::new(crate::timer::TIMER_TOPIC, 1));
        for name in [cluster, broker].into_iter().flatten() {
            let mut c = TopicConfig::new(name, 1);
            c.perm = perm::READ_WRITE | perm::INHERIT;
            ensure(c);
        }
        // The schedule topic needs one queue per level even if the levels grew.
        if let Some(s) = t.topic_config_table.get_mut(SCHEDULE_TOPIC)
            && s.read_queue_nums < levels
        {
            s.read_queue_nums = levels;
            s.write_queue_nums = levels;
            dirty = true;
        }
        if !t.topic_config_table.contains_key(AUTO_CREATE_TOPIC_KEY) && !auto_create {
            // nothing: TBW102 stays absent so producers cannot auto-create
        }
        if dirty {
            t.data_version.next_version(now_ms());
            metadata::save_json(&self.path, &*t)?;
        }
        Ok(())
    }

    /// One topic's config.
    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.table.read().topic_config_table.get(topic).cloned()
    }

    /// Runs `f` on the config without cloning it.
    pub fn with<R>(&self, topic: &str, f: impl FnOnce(&TopicConfig) -> R) -> Option<R> {
        self.table.read().topic_config_table.get(topic).map(f)
    }

    /// Whether the topic exists.
    pub fn contains(&self, topic: &str) -> bool {
        self.table.read().topic_config_table.contains_key(topic)
    }

    /// Creates or replaces a topic (UPDATE_AND_CREATE_TOPIC). Returns whether it changed.
    pub fn upsert(&self, cfg: TopicConfig) -> Result<bool, TopicError> {
        if cfg.read_queue_nums < 0 || cfg.write_queue_nums < 0 {
            return Err(TopicError::Invalid(
                "queue counts must not be negative".into(),
            ));
        }
        if cfg.read_queue_nums > 65_535 || cfg.write_queue_nums > 65_535 {
            return Err(TopicError::Invalid(
                "queue counts must be at most 65535".into(),
            ));
        }
        if !perm::is_valid(cfg.perm) {
            return Err(TopicError::Invalid(format!(
                "perm {} is not 0..15",
                cfg.perm
            )));
        }
        {
            let mut t = self.table.write();
            if t.topic_config_table.get(&cfg.topic_name) == Some(&cfg) {
                return Ok(false);
            }
            t.topic_config_table.insert(cfg.topic_name.clone(), cfg);
            t.data_version.next_version(now_ms());
            metadata::save_json(&self.path, &*t)?;
        }
        self.changed.notify_one();
        Ok(true)
    }

    /// Creates `topic` with `queues` queues and `perm` unless it exists; returns its config.
    pub fn create_if_absent(
        &self,
        topic: &str,
        queues: i32,
        perm_bits: i32,
    ) -> Result<TopicConfig, TopicError> {
        if let Some(c) = self.get(topic) {
            return Ok(c);
        }
        let mut cfg = TopicConfig::new(topic, queues.max(1));
        cfg.perm = perm_bits;
        {
            let mut t = self.table.write();
            if let Some(c) = t.topic_config_table.get(topic) {
                return Ok(c.clone());
            }
            t.topic_config_table.insert(topic.to_string(), cfg.clone());
            t.data_version.next_version(now_ms());
            metadata::save_json(&self.path, &*t)?;
        }
        tracing::info!(topic, queues, perm = perm_bits, "topic created");
        self.changed.notify_one();
        Ok(cfg)
    }

    /// Auto-creates `topic` from the template `default_topic` on the send path: allowed only
    /// when the template exists and has the INHERIT bit. Queue count is the smaller of the
    /// request's and the template's write queues.
    pub fn create_from_template(
        &self,
        topic: &str,
        default_topic: &str,
        request_queues: i32,
    ) -> Result<Option<TopicConfig>, TopicError> {
        let Some(tpl) = self.get(default_topic) else {
            return Ok(None);
        };
        if !perm::is_inherited(tpl.perm) {
            return Ok(None);
        }
        let queues = request_queues.clamp(1, tpl.write_queue_nums.max(1));
        let perm_bits = tpl.perm & !perm::INHERIT;
        self.create_if_absent(topic, queues, perm_bits).map(Some)
    }

    /// Removes a topic. Returns whether it existed.
    pub fn delete(&self, topic: &str) -> Result<bool, TopicError> {
        let removed = {
            let mut t = self.table.write();
            let removed = t.topic_config_table.remove(topic).is_some();
            if removed {
                t.data_version.next_version(now_ms());
                metadata::save_json(&self.path, &*t)?;
            }
            removed
        };
        if removed {
            self.changed.notify_one();
        }
        Ok(removed)
    }

    /// A snapshot of the table.
    pub fn snapshot(&self) -> TopicConfigTable {
        self.table.read().clone()
    }

    /// Every topic name.
    pub fn names(&self) -> Vec<String> {
        self.table
            .read()
            .topic_config_table
            .keys()
            .cloned()
            .collect()
    }

    /// Moves the table's data version on without changing a topic. The broker calls this
    /// when its `brokerPermission` changes: the perms it registers are masked by it, and a
    /// nameserver only takes queue data from a registration with a newer data version.
    pub fn bump_data_version(&self) -> Result<(), TopicError> {
        {
            let mut t = self.table.write();
            t.data_version.next_version(now_ms());
            metadata::save_json(&self.path, &*t)?;
        }
        self.changed.notify_one();
        Ok(())
    }

    /// The table version.
    pub fn data_version(&self) -> DataVersion {
        self.table.read().data_version.clone()
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    flotilla_remoting::protocol::now_millis()
}

/// Converts the store's topic config to the remoting body type (for registration and
/// GET_ALL_TOPIC_CONFIG), with `perm` masked by `broker_perm`.
pub fn to_wire(cfg: &TopicConfig, broker_perm: i32) -> flotilla_remoting::protocol::TopicConfig {
    flotilla_remoting::protocol::TopicConfig {
        topic_name: cfg.topic_name.clone(),
        read_queue_nums: cfg.read_queue_nums,
        write_queue_nums: cfg.write_queue_nums,
        perm: cfg.perm & broker_perm,
        topic_filter_type: cfg.topic_filter_type.clone(),
        topic_sys_flag: cfg.topic_sys_flag,
        order: cfg.order,
        attributes: cfg.attributes.clone(),
    }
}

/// The registration / GET_ALL_TOPIC_CONFIG wrapper with perms masked by `broker_perm`.
pub fn wire_wrapper(
    table: &TopicConfigTable,
    broker_perm: i32,
) -> flotilla_remoting::protocol::TopicConfigSerializeWrapper {
    let topic_config_table: BTreeMap<String, flotilla_remoting::protocol::TopicConfig> = table
        .topic_config_table
        .iter()
        .map(|(k, v)| (k.clone(), to_wire(v, broker_perm)))
        .collect();
    flotilla_remoting::protocol::TopicConfigSerializeWrapper {
        topic_config_table,
        data_version: flotilla_remoting::protocol::DataVersion {
            state_version: table.data_version.state_version,
            timestamp: table.data_version.timestamp,
            counter: table.data_version.counter,
        },
        topic_queue_mapping_info_map: Some(BTreeMap::new()),
        topic_queue_mapping_detail_map: None,
        mapping_data_version: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_create_needs_inherit_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let m = TopicConfigManager::load(dir.path()).unwrap();
        m.init_system_topics(true, 8, 18, Some("C"), Some("b"))
            .unwrap();
        let created = m
            .create_from_template("T1", AUTO_CREATE_TOPIC_KEY, 4)
            .unwrap()
            .unwrap();
        assert_eq!(created.write_queue_nums, 4);
        assert_eq!(created.perm, 6);
        assert!(m.create_from_template("T2", "T1", 4).unwrap().is_none());
        let again = TopicConfigManager::load(dir.path()).unwrap();
        assert!(again.contains("T1"));
        assert_eq!(again.get(SCHEDULE_TOPIC).unwrap().read_queue_nums, 18);
        let w = wire_wrapper(&again.snapshot(), 4);
        assert_eq!(w.topic_config_table["T1"].perm, 4);
    }
}

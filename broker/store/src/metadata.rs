//! Broker metadata files in RocketMQ's JSON shapes, with atomic persistence.
//!
//! `config/topics.json`, `config/subscriptionGroup.json` and `config/consumerOffset.json` are
//! read by RocketMQ tooling and by operators, so they keep Java's field names and nesting.
//! The broker owns the managers that mutate these tables; this module provides the typed
//! structs and [`save_json`] / [`load_json`], which write through [`atomic_write`] (temp file,
//! fsync, rename, fsync directory) and keep the previous version as `*.bak`, as RocketMQ's
//! `ConfigManager` does. Unknown fields are preserved through `extra` maps so that a file
//! written by Java RocketMQ round-trips without loss.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Errors reading or writing metadata files.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The file could not be read, written, synced or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file (and its backup) do not contain valid JSON of the expected shape.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl MetadataError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            MetadataError::Io { .. } => "METADATA_IO",
            MetadataError::Json { .. } => "METADATA_INVALID_JSON",
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MetadataError + '_ {
    move |source| MetadataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` atomically: temp file in the same directory, fsync, rename over
/// `path`, fsync the directory. Readers see the old or the new content, never a mix.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<(), MetadataError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    crate::mmap::sync_dir(&dir).map_err(io_err(&dir))?;
    Ok(())
}

fn bak_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".bak");
    PathBuf::from(s)
}

/// Serializes `value` (pretty JSON) and writes it atomically, keeping the previous content as
/// `<path>.bak`.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), MetadataError> {
    let data = serde_json::to_vec_pretty(value).map_err(|source| MetadataError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    if let Ok(old) = std::fs::read(path) {
        atomic_write(&bak_path(path), &old)?;
    }
    atomic_write(path, &data)
}

/// Loads `path`, falling back to `<path>.bak` when the main file is missing or invalid.
/// `Ok(None)` when neither exists.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, MetadataError> {
    let mut first_err = None;
    for p in [path.to_path_buf(), bak_path(path)] {
        match std::fs::read(&p) {
            Ok(data) => match serde_json::from_slice(&data) {
                Ok(v) => return Ok(Some(v)),
                Err(source) => {
                    tracing::warn!(path = %p.display(), error = %source, "invalid metadata file");
                    first_err.get_or_insert(MetadataError::Json {
                        path: p.clone(),
                        source,
                    });
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p)(e)),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// Paths of the metadata files under a store root.
pub fn topics_path(root: &Path) -> PathBuf {
    root.join("config").join("topics.json")
}
/// `config/subscriptionGroup.json`.
pub fn subscription_groups_path(root: &Path) -> PathBuf {
    root.join("config").join("subscriptionGroup.json")
}
/// `config/consumerOffset.json`.
pub fn consumer_offsets_path(root: &Path) -> PathBuf {
    root.join("config").join("consumerOffset.json")
}

/// RocketMQ's `DataVersion`: bumped on every change so peers notice updates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    /// State version (set by the controller / HA).
    pub state_version: i64,
    /// Milliseconds of the last change.
    pub timestamp: i64,
    /// Change counter.
    pub counter: i64,
}

impl DataVersion {
    /// Marks a change at `now_ms` (`DataVersion.nextVersion`).
    pub fn next_version(&mut self, now_ms: i64) {
        self.timestamp = now_ms;
        self.counter += 1;
    }
}

fn default_true() -> bool {
    true
}
fn default_queue_nums() -> i32 {
    8
}
fn default_perm() -> i32 {
    6
}
fn default_filter() -> String {
    "SINGLE_TAG".to_string()
}

/// One topic's configuration (`TopicConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// Topic name.
    pub topic_name: String,
    /// Readable queues.
    #[serde(default = "default_queue_nums")]
    pub read_queue_nums: i32,
    /// Writable queues.
    #[serde(default = "default_queue_nums")]
    pub write_queue_nums: i32,
    /// Permission bits (2 W, 4 R, 6 RW).
    #[serde(default = "default_perm")]
    pub perm: i32,
    /// `SINGLE_TAG` or `MULTI_TAG`.
    #[serde(default = "default_filter")]
    pub topic_filter_type: String,
    /// System flags.
    #[serde(default)]
    pub topic_sys_flag: i32,
    /// Ordered topic.
    #[serde(default)]
    pub order: bool,
    /// Topic attributes (e.g. `message.type`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Fields this build does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl TopicConfig {
    /// A read-write topic with `queues` read and write queues.
    pub fn new(name: impl Into<String>, queues: i32) -> TopicConfig {
        TopicConfig {
            topic_name: name.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: 6,
            topic_filter_type: default_filter(),
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// `config/topics.json` (`TopicConfigSerializeWrapper`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigTable {
    /// Topics by name.
    #[serde(default)]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// Version of the table.
    #[serde(default)]
    pub data_version: DataVersion,
    /// Fields this build does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One consumer group's configuration (`SubscriptionGroupConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    /// Group name.
    pub group_name: String,
    /// Consumption allowed.
    #[serde(default = "default_true")]
    pub consume_enable: bool,
    /// May start from the minimum offset.
    #[serde(default = "default_true")]
    pub consume_from_min_enable: bool,
    /// Broadcast consumption allowed.
    #[serde(default = "default_true")]
    pub consume_broadcast_enable: bool,
    /// Orderly consumption.
    #[serde(default)]
    pub consume_message_orderly: bool,
    /// Retry queues.
    #[serde(default = "one")]
    pub retry_queue_nums: i32,
    /// Retries before the DLQ.
    #[serde(default = "sixteen")]
    pub retry_max_times: i32,
    /// Broker id consumers pull from.
    #[serde(default)]
    pub broker_id: i64,
    /// Broker id suggested when consumption is slow.
    #[serde(default = "one_i64")]
    pub which_broker_when_consume_slowly: i64,
    /// Notify consumers when the group membership changes.
    #[serde(default = "default_true")]
    pub notify_consumer_ids_changed_enable: bool,
    /// Group system flags.
    #[serde(default)]
    pub group_sys_flag: i32,
    /// Consume timeout in minutes.
    #[serde(default = "fifteen")]
    pub consume_timeout_minute: i32,
    /// Group attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Fields this build does not know (e.g. `groupRetryPolicy`, `subscriptionDataSet`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn one() -> i32 {
    1
}
fn one_i64() -> i64 {
    1
}
fn sixteen() -> i32 {
    16
}
fn fifteen() -> i32 {
    15
}

impl SubscriptionGroupConfig {
    /// RocketMQ's defaults for a group.
    pub fn new(name: impl Into<String>) -> SubscriptionGroupConfig {
        SubscriptionGroupConfig {
            group_name: name.into(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            attributes: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// `config/subscriptionGroup.json` (`SubscriptionGroupManager`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupTable {
    /// Groups by name.
    #[serde(default)]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    /// Forbidden topics per group (`{group: {topic: bits}}`).
    #[serde(default)]
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    /// Version of the table.
    #[serde(default)]
    pub data_version: DataVersion,
    /// Fields this build does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `config/consumerOffset.json` (`ConsumerOffsetManager`): `offsetTable["topic@group"][qid]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerOffsetTable {
    /// Committed offsets by `topic@group`, then queue id.
    #[serde(default)]
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Version of the table.
    #[serde(default)]
    pub data_version: DataVersion,
    /// Fields this build does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ConsumerOffsetTable {
    /// The `topic@group` key.
    pub fn key(topic: &str, group: &str) -> String {
        format!("{topic}@{group}")
    }

    /// Committed offset of a queue.
    pub fn get(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        self.offset_table
            .get(&Self::key(topic, group))?
            .get(&queue_id)
            .copied()
    }

    /// Records a committed offset.
    pub fn set(&mut self, topic: &str, group: &str, queue_id: i32, offset: i64) {
        self.offset_table
            .entry(Self::key(topic, group))
            .or_default()
            .insert(queue_id, offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_json_shape_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = topics_path(dir.path());
        let mut t = TopicConfigTable::default();
        t.topic_config_table
            .insert("T".into(), TopicConfig::new("T", 4));
        t.data_version.next_version(1000);
        save_json(&path, &t).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["topicConfigTable"]["T"]["readQueueNums"], 4);
        assert_eq!(v["topicConfigTable"]["T"]["topicFilterType"], "SINGLE_TAG");
        assert_eq!(v["dataVersion"]["counter"], 1);
        assert_eq!(
            load_json::<TopicConfigTable>(&path).unwrap(),
            Some(t.clone())
        );
        // A second save keeps the first as .bak; a corrupt main file falls back to it.
        t.data_version.next_version(2000);
        save_json(&path, &t).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        let loaded = load_json::<TopicConfigTable>(&path).unwrap().unwrap();
        assert_eq!(loaded.data_version.counter, 1);
    }

    #[test]
    fn java_written_files_parse() {
        let java = r#"{"topicConfigTable":{"TBW102":{"topicName":"TBW102","readQueueNums":8,
            "writeQueueNums":8,"perm":7,"topicFilterType":"SINGLE_TAG","topicSysFlag":0,
            "order":false,"attributes":{}}},"dataVersion":{"stateVersion":0,
            "timestamp":1700000000000,"counter":3}}"#;
        let t: TopicConfigTable = serde_json::from_str(java).unwrap();
        assert_eq!(t.topic_config_table["TBW102"].perm, 7);
        let sub = r#"{"subscriptionGroupTable":{"g":{"groupName":"g","consumeEnable":true,
            "consumeFromMinEnable":true,"consumeBroadcastEnable":true,"consumeMessageOrderly":false,
            "retryQueueNums":1,"retryMaxTimes":16,"groupRetryPolicy":{"type":"CUSTOMIZED"},
            "brokerId":0,"whichBrokerWhenConsumeSlowly":1,"notifyConsumerIdsChangedEnable":true,
            "groupSysFlag":0,"consumeTimeoutMinute":15,"subscriptionDataSet":null,"attributes":{}}},
            "forbiddenTable":{},"dataVersion":{"stateVersion":0,"timestamp":1,"counter":1}}"#;
        let s: SubscriptionGroupTable = serde_json::from_str(sub).unwrap();
        let g = &s.subscription_group_table["g"];
        assert_eq!(g.retry_max_times, 16);
        assert!(g.extra.contains_key("groupRetryPolicy"));
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(
            back["subscriptionGroupTable"]["g"]["groupRetryPolicy"]["type"],
            "CUSTOMIZED"
        );
        let off = r#"{"offsetTable":{"T@g":{"0":123,"1":7}}}"#;
        let mut o: ConsumerOffsetTable = serde_json::from_str(off).unwrap();
        assert_eq!(o.get("T", "g", 0), Some(123));
        o.set("T", "g", 2, 9);
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["offsetTable"]["T@g"]["2"], 9);
    }

    #[test]
    fn missing_files_load_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            load_json::<ConsumerOffsetTable>(&consumer_offsets_path(dir.path()))
                .unwrap()
                .is_none()
        );
        atomic_write(&subscription_groups_path(dir.path()), b"{}").unwrap();
        let s = load_json::<SubscriptionGroupTable>(&subscription_groups_path(dir.path()))
            .unwrap()
            .unwrap();
        assert!(s.subscription_group_table.is_empty());
    }
}

//! Request/response bodies of the RocketMQ protocol, with RocketMQ's exact JSON names.
//!
//! Bodies are JSON written by fastjson on the Java side; read them with
//! [`crate::fastjson::from_slice`] (it tolerates fastjson's integer and object map keys).
//! Every struct defaults missing fields (Java omits nulls) and writes every field, because
//! some clients (rocketmq-rust) require fields such as `filterServerTable` to be present.
//! Maps keyed by `MessageQueue` use [`crate::fastjson::mq_map`]; write them for Java with
//! [`crate::fastjson::to_vec_java`] (see each type's `encode_java`).
//!
//! Bodies that clients and brokers send (heartbeat, registration, lock batch, data
//! version) read their scalars through [`crate::lenient`] as fastjson would: numbers
//! written as strings (the C++ client's `subVersion`), booleans as numbers, and enums by
//! name or ordinal (the C++ client's `consumeType`, `messageModel`, `consumeFromWhere`).
//! Unknown fields are ignored everywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::code::perm;
use crate::fastjson::{self, FastJsonError};
use crate::lenient;

/// Reads any body type (fastjson-tolerant).
pub fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FastJsonError> {
    fastjson::from_slice(body)
}

/// Writes any body type as standard JSON.
pub fn encode_body<T: Serialize>(value: &T) -> Result<Vec<u8>, FastJsonError> {
    fastjson::to_vec(value)
}

// ---------------------------------------------------------------------------------------
// Routes

/// One broker group's share of a topic (`QueueData`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    /// The broker group (brokerName).
    pub broker_name: String,
    /// Readable queues.
    pub read_queue_nums: i32,
    /// Writable queues.
    pub write_queue_nums: i32,
    /// `PermName` bits.
    pub perm: i32,
    /// Topic system flag.
    pub topic_sys_flag: i32,
}

/// A broker group's addresses by broker id; id 0 is the master (`BrokerData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    /// Cluster name.
    pub cluster: String,
    /// Broker group name.
    pub broker_name: String,
    /// Broker id → `host:port`.
    pub broker_addrs: BTreeMap<i64, String>,
    /// Zone, if any.
    pub zone_name: Option<String>,
    /// Acting-master mode.
    pub enable_acting_master: bool,
}

impl BrokerData {
    /// The master's address (id 0).
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&0).map(String::as_str)
    }
}

/// The route of a topic (`TopicRouteData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    /// Order config (`brokerName:queueNums;…`), if any.
    pub order_topic_conf: Option<String>,
    /// Queues per broker group.
    pub queue_datas: Vec<QueueData>,
    /// Addresses per broker group.
    pub broker_datas: Vec<BrokerData>,
    /// Deprecated filter servers, always present (may be empty).
    pub filter_server_table: HashMap<String, Vec<String>>,
    /// Static-topic mappings (unused by Flotilla).
    pub topic_queue_mapping_by_broker: Option<HashMap<String, Value>>,
}

impl TopicRouteData {
    /// Standard JSON (quoted keys), for clients with version ≥ V4_9_4 or that asked for it.
    pub fn encode_standard(&self) -> Result<Vec<u8>, FastJsonError> {
        fastjson::to_vec(self)
    }

    /// Java's legacy form: `brokerAddrs` keys unquoted (`{0:"addr"}`).
    pub fn encode_legacy(&self) -> Result<Vec<u8>, FastJsonError> {
        fastjson::to_vec_java(self, &["brokerAddrs"])
    }

    /// Queues a producer may write to (perm has W), as Java's `topicRouteData2TopicPublishInfo`.
    pub fn writable_queue_datas(&self) -> impl Iterator<Item = &QueueData> {
        self.queue_datas
            .iter()
            .filter(|q| perm::is_writeable(q.perm))
    }
}

/// Every broker and cluster (`ClusterInfo`, reply of GET_BROKER_CLUSTER_INFO).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    /// brokerName → BrokerData.
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// cluster → brokerNames.
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

impl ClusterInfo {
    /// Java's legacy form (`brokerAddrs` keys unquoted).
    pub fn encode_legacy(&self) -> Result<Vec<u8>, FastJsonError> {
        fastjson::to_vec_java(self, &["brokerAddrs"])
    }
}

// ---------------------------------------------------------------------------------------
// Broker registration

/// A broker's metadata version (`DataVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    /// State version (controller mode).
    #[serde(deserialize_with = "lenient::i64")]
    pub state_version: i64,
    /// Last change time, ms.
    #[serde(deserialize_with = "lenient::i64")]
    pub timestamp: i64,
    /// Change counter.
    #[serde(deserialize_with = "lenient::i64")]
    pub counter: i64,
}

impl DataVersion {
    /// Records a change: counter + 1, timestamp = now.
    pub fn next_version(&mut self) {
        self.counter += 1;
        self.timestamp = now_millis();
    }
}

/// Current time in ms since the epoch (0 if the clock is before 1970).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn default_filter_type() -> String {
    "SINGLE_TAG".to_string()
}

fn default_perm() -> i32 {
    perm::READ_WRITE
}

fn default_queue_nums() -> i32 {
    16
}

/// A topic's config on a broker (`TopicConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    /// Topic name.
    pub topic_name: String,
    /// Readable queues.
    #[serde(deserialize_with = "lenient::i32")]
    pub read_queue_nums: i32,
    /// Writable queues.
    #[serde(deserialize_with = "lenient::i32")]
    pub write_queue_nums: i32,
    /// `PermName` bits.
    #[serde(deserialize_with = "lenient::i32")]
    pub perm: i32,
    /// `SINGLE_TAG` or `MULTI_TAG`.
    pub topic_filter_type: String,
    /// Topic system flag.
    #[serde(deserialize_with = "lenient::i32")]
    pub topic_sys_flag: i32,
    /// Ordered topic.
    #[serde(deserialize_with = "lenient::bool")]
    pub order: bool,
    /// Attributes (`+message.type` …).
    pub attributes: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            topic_name: String::new(),
            read_queue_nums: default_queue_nums(),
            write_queue_nums: default_queue_nums(),
            perm: default_perm(),
            topic_filter_type: default_filter_type(),
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        }
    }
}

impl TopicConfig {
    /// A config with `name`, `queues` read and write queues and RW perm.
    pub fn new(name: impl Into<String>, queues: i32) -> Self {
        Self {
            topic_name: name.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            ..Self::default()
        }
    }
}

/// The topics a broker registers (`TopicConfigSerializeWrapper`, and the
/// `TopicConfigAndMappingSerializeWrapper` of GET_ALL_TOPIC_CONFIG).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigSerializeWrapper {
    /// name → config.
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// Version of the table.
    pub data_version: DataVersion,
    /// Static-topic mapping info (kept opaque).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_info_map: Option<BTreeMap<String, Value>>,
    /// Static-topic mapping details (kept opaque).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_detail_map: Option<BTreeMap<String, Value>>,
    /// Version of the mappings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_data_version: Option<DataVersion>,
}

/// Body of REGISTER_BROKER (`RegisterBrokerBody`, uncompressed JSON form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterBrokerBody {
    /// The topics.
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
    /// Filter servers (deprecated).
    pub filter_server_list: Vec<String>,
}

/// A string table (`KVTable`), e.g. broker runtime info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct KVTable {
    /// The entries.
    pub table: BTreeMap<String, String>,
}

/// A set of topic names (`TopicList`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicList {
    /// Topic names.
    pub topic_list: BTreeSet<String>,
    /// Broker address, when listed by a broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
}

/// A set of group names (`GroupList`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupList {
    /// Group names.
    pub group_list: BTreeSet<String>,
}

/// Reply of GET_CONSUMER_LIST_BY_GROUP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerIdList {
    /// Client ids.
    pub consumer_id_list: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// Clients and consumers

/// A queue: topic + broker group + queue id (`MessageQueue`). Ordered as Java compares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueue {
    /// Topic.
    pub topic: String,
    /// Broker group.
    pub broker_name: String,
    /// Queue id.
    #[serde(deserialize_with = "lenient::i32")]
    pub queue_id: i32,
}

impl MessageQueue {
    /// A queue.
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        Self {
            topic: topic.into(),
            broker_name: broker_name.into(),
            queue_id,
        }
    }

    /// The JSON text fastjson writes as a map key (fields sorted).
    pub fn to_json_key(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("brokerName".into(), Value::from(self.broker_name.clone()));
        m.insert("queueId".into(), Value::from(self.queue_id));
        m.insert("topic".into(), Value::from(self.topic.clone()));
        Value::Object(m).to_string()
    }
}

/// One subscription of a consumer (`SubscriptionData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    /// Class filter mode (deprecated).
    #[serde(deserialize_with = "lenient::bool")]
    pub class_filter_mode: bool,
    /// Topic.
    pub topic: String,
    /// Expression (`*`, `TagA || TagB`, SQL).
    pub sub_string: String,
    /// Parsed tags.
    pub tags_set: BTreeSet<String>,
    /// Hash codes of the tags.
    pub code_set: BTreeSet<i32>,
    /// Subscription version (ms); the C++ client writes it as a string.
    #[serde(deserialize_with = "lenient::i64")]
    pub sub_version: i64,
    /// `TAG` or `SQL92`.
    pub expression_type: String,
}

impl Default for SubscriptionData {
    fn default() -> Self {
        Self {
            class_filter_mode: false,
            topic: String::new(),
            sub_string: "*".to_string(),
            tags_set: BTreeSet::new(),
            code_set: BTreeSet::new(),
            sub_version: 0,
            expression_type: "TAG".to_string(),
        }
    }
}

/// A producer group of a client (`ProducerData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    /// Group name.
    pub group_name: String,
}

crate::java_enum! {
    /// How a consumer gets messages (`ConsumeType`).
    pub enum ConsumeType {
        /// Pull consumer.
        ConsumeActively = "CONSUME_ACTIVELY",
        /// Push consumer.
        ConsumePassively = "CONSUME_PASSIVELY",
        /// POP consumer (5.x).
        ConsumePop = "CONSUME_POP",
    }
}

crate::java_enum! {
    /// Whether a group shares queues or every member reads all (`MessageModel`).
    pub enum MessageModel {
        /// Every consumer of the group gets every message.
        Broadcasting = "BROADCASTING",
        /// Queues are shared out among the group.
        Clustering = "CLUSTERING",
    }
}

crate::java_enum! {
    /// Where a new group starts (`ConsumeFromWhere`, ordinals as Java declares them).
    pub enum ConsumeFromWhere {
        /// The end of each queue.
        ConsumeFromLastOffset = "CONSUME_FROM_LAST_OFFSET",
        /// Deprecated.
        ConsumeFromLastOffsetAndFromMinWhenBootFirst =
            "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        /// Deprecated.
        ConsumeFromMinOffset = "CONSUME_FROM_MIN_OFFSET",
        /// Deprecated.
        ConsumeFromMaxOffset = "CONSUME_FROM_MAX_OFFSET",
        /// The start of each queue.
        ConsumeFromFirstOffset = "CONSUME_FROM_FIRST_OFFSET",
        /// A point in time.
        ConsumeFromTimestamp = "CONSUME_FROM_TIMESTAMP",
    }
}

/// A consumer group of a client (`ConsumerData`). The enums accept names and ordinals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    /// Group name.
    pub group_name: String,
    /// Pull, push or POP.
    pub consume_type: Option<ConsumeType>,
    /// Clustering or broadcasting.
    pub message_model: Option<MessageModel>,
    /// Where a new group starts.
    pub consume_from_where: Option<ConsumeFromWhere>,
    /// Subscriptions.
    pub subscription_data_set: Vec<SubscriptionData>,
    /// Unit mode (deprecated).
    #[serde(deserialize_with = "lenient::bool")]
    pub unit_mode: bool,
}

/// Body of HEART_BEAT (`HeartbeatData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HeartbeatData {
    /// Client id (`ip@pid#…`).
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Producer groups.
    #[serde(rename = "producerDataSet")]
    pub producer_data_set: Vec<ProducerData>,
    /// Consumer groups.
    #[serde(rename = "consumerDataSet")]
    pub consumer_data_set: Vec<ConsumerData>,
    /// Fingerprint (heartbeat v2).
    #[serde(rename = "heartbeatFingerprint", deserialize_with = "lenient::i32")]
    pub heartbeat_fingerprint: i32,
    /// Subscriptions omitted (heartbeat v2).
    #[serde(rename = "withoutSub", deserialize_with = "lenient::bool")]
    pub without_sub: bool,
}

/// One client connection of a group (`Connection`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Connection {
    /// Client id.
    pub client_id: String,
    /// Client `ip:port`.
    pub client_addr: String,
    /// Language name (`JAVA`, `RUST`, …).
    pub language: String,
    /// Client version.
    pub version: i32,
}

/// Reply of GET_CONSUMER_CONNECTION_LIST (`ConsumerConnection`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerConnection {
    /// Connections.
    pub connection_set: Vec<Connection>,
    /// topic → subscription.
    pub subscription_table: BTreeMap<String, SubscriptionData>,
    /// Consume type.
    pub consume_type: String,
    /// Message model.
    pub message_model: String,
    /// Where new consumers start.
    pub consume_from_where: String,
}

/// Offsets of one queue for a group (`OffsetWrapper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetWrapper {
    /// Broker max offset.
    pub broker_offset: i64,
    /// Committed consumer offset.
    pub consumer_offset: i64,
    /// Pull offset.
    pub pull_offset: i64,
    /// Store time of the last consumed message.
    pub last_timestamp: i64,
}

/// Reply of GET_CONSUME_STATS (`ConsumeStats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumeStats {
    /// Queue → offsets.
    #[serde(with = "fastjson::mq_map")]
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
    /// Consume TPS.
    pub consume_tps: f64,
}

impl ConsumeStats {
    /// Java's form (MessageQueue object keys).
    pub fn encode_java(&self) -> Result<Vec<u8>, FastJsonError> {
        fastjson::to_vec_java(self, &[])
    }

    /// Total lag: Σ (brokerOffset − consumerOffset), floored at 0 per queue.
    pub fn total_diff(&self) -> i64 {
        self.offset_table
            .values()
            .map(|o| (o.broker_offset - o.consumer_offset).max(0))
            .sum()
    }
}

/// Offsets of one queue (`TopicOffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicOffset {
    /// Min offset.
    pub min_offset: i64,
    /// Max offset.
    pub max_offset: i64,
    /// Store time of the last message.
    pub last_update_timestamp: i64,
}

/// Reply of GET_TOPIC_STATS_INFO (`TopicStatsTable`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicStatsTable {
    /// Queue → offsets.
    #[serde(with = "fastjson::mq_map")]
    pub offset_table: BTreeMap<MessageQueue, TopicOffset>,
    /// Put TPS.
    pub topic_put_tps: f64,
}

impl TopicStatsTable {
    /// Java's form (MessageQueue object keys).
    pub fn encode_java(&self) -> Result<Vec<u8>, FastJsonError> {
        fastjson::to_vec_java(self, &[])
    }
}

/// Reply of INVOKE_BROKER_TO_RESET_OFFSET (`ResetOffsetBody`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ResetOffsetBody {
    /// Queue → new offset.
    #[serde(with = "fastjson::mq_map")]
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

impl ResetOffsetBody {
    /// Java's form (MessageQueue object keys).
    pub fn encode_java(&self) -> Result<Vec<u8>, FastJsonError> {
        fastjson::to_vec_java(self, &[])
    }
}

/// Body of LOCK_BATCH_MQ / UNLOCK_BATCH_MQ (`LockBatchRequestBody`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    /// Consumer group.
    pub consumer_group: String,
    /// Client id.
    pub client_id: String,
    /// Only lock locally (unused by brokers).
    #[serde(deserialize_with = "lenient::bool")]
    pub only_this_broker: bool,
    /// Queues.
    pub mq_set: BTreeSet<MessageQueue>,
}

/// Reply of LOCK_BATCH_MQ (`LockBatchResponseBody`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LockBatchResponseBody {
    /// Queues locked.
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

/// Consumer offsets of a broker (`ConsumerOffsetSerializeWrapper`, GET_ALL_CONSUMER_OFFSET
/// and `config/consumerOffset.json`): `topic@group` → queueId → offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerOffsetSerializeWrapper {
    /// `topic@group` → queue id → offset.
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_version: Option<DataVersion>,
}

impl ConsumerOffsetSerializeWrapper {
    /// Java's form (queue-id keys unquoted).
    pub fn encode_java(&self) -> Result<Vec<u8>, FastJsonError> {
        fastjson::to_vec_java(self, &["*"])
    }
}

fn default_true() -> bool {
    true
}

/// A consumer group's config (`SubscriptionGroupConfig`). Unknown fields (retry policy,
/// attributes, …) are kept in `extra` and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    /// Group name.
    #[serde(default)]
    pub group_name: String,
    /// Consumption allowed.
    #[serde(default = "default_true")]
    pub consume_enable: bool,
    /// Start from min offset for new groups.
    #[serde(default = "default_true")]
    pub consume_from_min_enable: bool,
    /// Broadcast allowed.
    #[serde(default = "default_true")]
    pub consume_broadcast_enable: bool,
    /// Orderly consumption.
    #[serde(default)]
    pub consume_message_orderly: bool,
    /// Retry queues.
    #[serde(default = "one")]
    pub retry_queue_nums: i32,
    /// Max retries before DLQ.
    #[serde(default = "sixteen")]
    pub retry_max_times: i32,
    /// Broker id to consume from.
    #[serde(default)]
    pub broker_id: i64,
    /// Broker to use when consumption is slow.
    #[serde(default = "one_i64")]
    pub which_broker_when_consume_slowly: i64,
    /// Notify consumers when membership changes.
    #[serde(default = "default_true")]
    pub notify_consumer_ids_changed_enable: bool,
    /// Group system flag.
    #[serde(default)]
    pub group_sys_flag: i32,
    /// Consume timeout in minutes.
    #[serde(default = "fifteen")]
    pub consume_timeout_minute: i32,
    /// Fields this type does not model, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
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

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        Self {
            group_name: String::new(),
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
            extra: BTreeMap::new(),
        }
    }
}

/// Every group config of a broker (`SubscriptionGroupWrapper`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupWrapper {
    /// group → config.
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    /// group → topic → forbidden bits.
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    /// Version.
    pub data_version: DataVersion,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> TopicRouteData {
        let mut addrs = BTreeMap::new();
        addrs.insert(0, "127.0.0.1:10911".to_string());
        addrs.insert(1, "127.0.0.1:10921".to_string());
        TopicRouteData {
            queue_datas: vec![QueueData {
                broker_name: "b".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: 6,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![BrokerData {
                cluster: "DefaultCluster".into(),
                broker_name: "b".into(),
                broker_addrs: addrs,
                zone_name: None,
                enable_acting_master: false,
            }],
            ..TopicRouteData::default()
        }
    }

    #[test]
    fn route_standard_and_legacy() {
        let r = route();
        let std = String::from_utf8(r.encode_standard().unwrap()).unwrap();
        assert!(std.contains(r#""brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10921"}"#));
        assert!(std.contains(r#""filterServerTable":{}"#));
        let legacy = String::from_utf8(r.encode_legacy().unwrap()).unwrap();
        assert!(legacy.contains(r#""brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"}"#));
        assert!(serde_json::from_str::<Value>(&legacy).is_err());
        let back: TopicRouteData = decode_body(legacy.as_bytes()).unwrap();
        assert_eq!(back, r);
        let back: TopicRouteData = decode_body(std.as_bytes()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn java_route_body_parses() {
        let java = br#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911"},"brokerName":"bk","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"bk","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
        let r: TopicRouteData = decode_body(java).unwrap();
        assert_eq!(r.broker_datas[0].master_addr(), Some("127.0.0.1:10911"));
        assert_eq!(r.writable_queue_datas().count(), 1);
    }

    #[test]
    fn consume_stats_object_keys() {
        let mut s = ConsumeStats::default();
        s.offset_table.insert(
            MessageQueue::new("T", "b", 0),
            OffsetWrapper {
                broker_offset: 10,
                consumer_offset: 4,
                pull_offset: 5,
                last_timestamp: 1,
            },
        );
        s.consume_tps = 1.5;
        let java = String::from_utf8(s.encode_java().unwrap()).unwrap();
        assert!(java.contains(r#""offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"#));
        let back: ConsumeStats = decode_body(java.as_bytes()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.total_diff(), 6);
        // Java may order fields inside the key differently.
        let alt = br#"{"consumeTps":0.0,"offsetTable":{{"topic":"T","queueId":3,"brokerName":"b"}:{"brokerOffset":1,"consumerOffset":1,"lastTimestamp":0,"pullOffset":1}}}"#;
        let back: ConsumeStats = decode_body(alt).unwrap();
        assert!(
            back.offset_table
                .contains_key(&MessageQueue::new("T", "b", 3))
        );
    }

    #[test]
    fn topic_stats_and_reset_body() {
        let mut t = TopicStatsTable::default();
        t.offset_table.insert(
            MessageQueue::new("T", "b", 1),
            TopicOffset {
                min_offset: 0,
                max_offset: 9,
                last_update_timestamp: 7,
            },
        );
        let back: TopicStatsTable = decode_body(&t.encode_java().unwrap()).unwrap();
        assert_eq!(back, t);
        let mut r = ResetOffsetBody::default();
        r.offset_table.insert(MessageQueue::new("T", "b", 1), 42);
        let back: ResetOffsetBody = decode_body(&r.encode_java().unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn register_body_from_java() {
        let body = br#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"topicConfigTable":{"T":{"attributes":{},"order":false,"perm":6,"readQueueNums":8,"topicFilterType":"SINGLE_TAG","topicName":"T","topicSysFlag":0,"writeQueueNums":8}},"topicQueueMappingInfoMap":{}}}"#;
        let b: RegisterBrokerBody = decode_body(body).unwrap();
        let tc = &b.topic_config_serialize_wrapper.topic_config_table["T"];
        assert_eq!(tc.read_queue_nums, 8);
        assert_eq!(b.topic_config_serialize_wrapper.data_version.counter, 3);
    }

    #[test]
    fn heartbeat_and_group_config() {
        let hb = br#"{"clientID":"1.2.3.4@1","producerDataSet":[{"groupName":"pg"}],"consumerDataSet":[{"groupName":"cg","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","unitMode":false,"subscriptionDataSet":[{"topic":"T","subString":"*","tagsSet":[],"codeSet":[],"subVersion":5,"expressionType":"TAG","classFilterMode":false}]}],"heartbeatFingerprint":0}"#;
        let h: HeartbeatData = decode_body(hb).unwrap();
        assert_eq!(h.client_id, "1.2.3.4@1");
        assert_eq!(
            h.consumer_data_set[0].subscription_data_set[0].sub_version,
            5
        );
        let g: SubscriptionGroupConfig = decode_body(
            br#"{"groupName":"g","retryMaxTimes":3,"groupRetryPolicy":{"type":"CUSTOMIZED"}}"#,
        )
        .unwrap();
        assert!(g.consume_enable);
        assert_eq!(g.retry_max_times, 3);
        assert!(g.extra.contains_key("groupRetryPolicy"));
        let back: SubscriptionGroupConfig = decode_body(&encode_body(&g).unwrap()).unwrap();
        assert_eq!(back, g);
    }

    /// The bodies exactly as rocketmq-client-cpp's `HeartbeatData::Encode` and
    /// `LockBatchRequestBody::Encode` write them (jsoncpp `FastWriter`, enum ordinals,
    /// `subVersion` as a string, no `unitMode`/`expressionType`).
    #[test]
    fn heartbeat_and_lock_batch_from_the_cpp_client() {
        let hb = br#"{"clientID":"127.0.0.1@4242#1#","consumerDataSet":[{"consumeFromWhere":4,"consumeType":1,"groupName":"cg","messageModel":0,"subscriptionDataSet":[{"subString":"TagA || TagB","subVersion":"1700000000123","tagsSet":["TagA","TagB"],"codeSet":[2598919,2598920],"topic":"T"}]}],"producerDataSet":[{"groupName":"pg"}]}
"#;
        let h: HeartbeatData = decode_body(hb).unwrap();
        let c = &h.consumer_data_set[0];
        assert_eq!(c.consume_type, Some(ConsumeType::ConsumePassively));
        assert_eq!(c.message_model, Some(MessageModel::Broadcasting));
        assert_eq!(
            c.consume_from_where,
            Some(ConsumeFromWhere::ConsumeFromFirstOffset)
        );
        let sub = &c.subscription_data_set[0];
        assert_eq!(sub.sub_version, 1_700_000_000_123);
        assert_eq!(sub.expression_type, "TAG");
        assert_eq!(sub.tags_set.len(), 2);
        assert_eq!(h.producer_data_set[0].group_name, "pg");
        let clustering: ConsumerData = decode_body(br#"{"messageModel":1}"#).unwrap();
        assert_eq!(clustering.message_model, Some(MessageModel::Clustering));
        assert!(decode_body::<ConsumerData>(br#"{"messageModel":2}"#).is_err());
        let lock = br#"{"clientId":"127.0.0.1@4242#1#","consumerGroup":"cg","mqSet":[{"brokerName":"b","queueId":1,"topic":"T"},{"brokerName":"b","queueId":"2","topic":"T"}]}"#;
        let l: LockBatchRequestBody = decode_body(lock).unwrap();
        assert_eq!(l.mq_set.len(), 2);
        assert!(!l.only_this_broker);
        // Names are written back as Java writes them.
        let back = String::from_utf8(encode_body(c).unwrap()).unwrap();
        assert!(
            back.contains(r#""consumeType":"CONSUME_PASSIVELY""#),
            "{back}"
        );
    }

    #[test]
    fn register_body_with_numbers_as_strings() {
        let body = br#"{"topicConfigSerializeWrapper":{"dataVersion":{"counter":"3","timestamp":"1700000000000"},"topicConfigTable":{"T":{"order":"true","perm":"6","readQueueNums":"8","topicName":"T","writeQueueNums":8,"unknownField":[1]}}},"other":1}"#;
        let b: RegisterBrokerBody = decode_body(body).unwrap();
        let tc = &b.topic_config_serialize_wrapper.topic_config_table["T"];
        assert_eq!((tc.read_queue_nums, tc.perm, tc.order), (8, 6, true));
        assert_eq!(b.topic_config_serialize_wrapper.data_version.counter, 3);
    }

    #[test]
    fn consumer_offsets_java_form() {
        let mut w = ConsumerOffsetSerializeWrapper::default();
        w.offset_table.entry("T@g".into()).or_default().insert(0, 5);
        let java = String::from_utf8(w.encode_java().unwrap()).unwrap();
        assert!(java.contains(r#"{"T@g":{0:5}}"#));
        let back: ConsumerOffsetSerializeWrapper = decode_body(java.as_bytes()).unwrap();
        assert_eq!(back, w);
    }
}

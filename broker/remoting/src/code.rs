//! Numeric constants of the RocketMQ remoting protocol: request codes, response codes,
//! permission bits, language codes and protocol versions.
//!
//! They exist as plain `i32`/`u8` constants (not enums) because the wire carries raw numbers
//! and a broker must be able to see, log and answer codes it does not know
//! (`REQUEST_CODE_NOT_SUPPORTED`). Values follow RocketMQ's `RequestCode`, `ResponseCode`,
//! `RemotingSysResponseCode`, `PermName`, `LanguageCode` and `MQVersion`.

/// Request codes (`RequestCode`): what a request asks for.
pub mod request_code {
    /// Send one message (V1 header).
    pub const SEND_MESSAGE: i32 = 10;
    /// Pull messages from a queue.
    pub const PULL_MESSAGE: i32 = 11;
    /// Query messages by key through the index.
    pub const QUERY_MESSAGE: i32 = 12;
    /// Query the committed offset of a consumer group on a queue.
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    /// Update the committed offset of a consumer group on a queue (often oneway).
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    /// Create or update a topic on a broker.
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    /// Fetch every topic config of a broker.
    pub const GET_ALL_TOPIC_CONFIG: i32 = 21;
    /// Update broker config (body: properties text).
    pub const UPDATE_BROKER_CONFIG: i32 = 25;
    /// Read broker config (body: properties text).
    pub const GET_BROKER_CONFIG: i32 = 26;
    /// Trigger deletion of expired files.
    pub const TRIGGER_DELETE_FILES: i32 = 27;
    /// Broker runtime statistics (KVTable).
    pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
    /// Find a queue offset by store timestamp.
    pub const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    /// Max offset of a queue.
    pub const GET_MAX_OFFSET: i32 = 30;
    /// Min offset of a queue.
    pub const GET_MIN_OFFSET: i32 = 31;
    /// Store time of the earliest message of a queue.
    pub const GET_EARLIEST_MSG_STORETIME: i32 = 32;
    /// Read one message by its offset message id.
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
    /// Client heartbeat (HeartbeatData body).
    pub const HEART_BEAT: i32 = 34;
    /// A client leaves.
    pub const UNREGISTER_CLIENT: i32 = 35;
    /// Consumer sends a failed message back for retry.
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    /// End a transaction (commit / rollback).
    pub const END_TRANSACTION: i32 = 37;
    /// List the client ids of a consumer group.
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    /// Broker → producer: check a transaction's state.
    pub const CHECK_TRANSACTION_STATE: i32 = 39;
    /// Broker → consumer (oneway): the group's members changed.
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    /// Lock queues for orderly consumption.
    pub const LOCK_BATCH_MQ: i32 = 41;
    /// Unlock queues.
    pub const UNLOCK_BATCH_MQ: i32 = 42;
    /// Every consumer offset of a broker (slave sync).
    pub const GET_ALL_CONSUMER_OFFSET: i32 = 43;
    /// Every delay offset of a broker (slave sync).
    pub const GET_ALL_DELAY_OFFSET: i32 = 45;
    /// Nameserver: put a KV config.
    pub const PUT_KV_CONFIG: i32 = 100;
    /// Nameserver: get a KV config.
    pub const GET_KV_CONFIG: i32 = 101;
    /// Nameserver: delete a KV config.
    pub const DELETE_KV_CONFIG: i32 = 102;
    /// Nameserver: a broker registers (RegisterBrokerBody).
    pub const REGISTER_BROKER: i32 = 103;
    /// Nameserver: a broker unregisters.
    pub const UNREGISTER_BROKER: i32 = 104;
    /// Nameserver: route of a topic.
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    /// Nameserver: every broker and cluster.
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    /// Create or update a subscription group.
    pub const UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: i32 = 200;
    /// Every subscription group config of a broker.
    pub const GET_ALL_SUBSCRIPTIONGROUP_CONFIG: i32 = 201;
    /// Offsets of every queue of a topic.
    pub const GET_TOPIC_STATS_INFO: i32 = 202;
    /// Connections of a consumer group.
    pub const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    /// Connections of a producer group.
    pub const GET_PRODUCER_CONNECTION_LIST: i32 = 204;
    /// Nameserver: clear the write bit of a broker's queues.
    pub const WIPE_WRITE_PERM_OF_BROKER: i32 = 205;
    /// Nameserver: every topic name.
    pub const GET_ALL_TOPIC_LIST_FROM_NAMESERVER: i32 = 206;
    /// Delete a subscription group.
    pub const DELETE_SUBSCRIPTIONGROUP: i32 = 207;
    /// Consume progress of a group.
    pub const GET_CONSUME_STATS: i32 = 208;
    /// Delete a topic on a broker.
    pub const DELETE_TOPIC_IN_BROKER: i32 = 215;
    /// Nameserver: delete a topic's route.
    pub const DELETE_TOPIC_IN_NAMESRV: i32 = 216;
    /// Nameserver: register a topic route directly.
    pub const REGISTER_TOPIC_IN_NAMESRV: i32 = 217;
    /// Nameserver: every KV of a namespace.
    pub const GET_KVLIST_BY_NAMESPACE: i32 = 219;
    /// Broker → consumer: reset the client-side offsets.
    pub const RESET_CONSUMER_CLIENT_OFFSET: i32 = 220;
    /// Ask a broker to reset a group's offsets.
    pub const INVOKE_BROKER_TO_RESET_OFFSET: i32 = 222;
    /// Nameserver: topics of a cluster.
    pub const GET_TOPICS_BY_CLUSTER: i32 = 224;
    /// Topics a broker holds (admin).
    pub const GET_TOPIC_CONFIG: i32 = 351;
    /// Consumer groups of a topic: online subscribers and groups with offsets (`GroupList`).
    pub const QUERY_TOPIC_CONSUME_BY_WHO: i32 = 300;
    /// Copy one group's committed offsets to another.
    pub const CLONE_GROUP_OFFSET: i32 = 314;
    /// Topics a consumer group has offsets for (`TopicList` with `brokerAddr`).
    pub const QUERY_TOPICS_BY_CONSUMER: i32 = 343;
    /// Broker → consumer: runtime info of a consumer.
    pub const GET_CONSUMER_RUNNING_INFO: i32 = 307;
    /// Admin → broker → consumer: consume one stored message (by offset message id) now.
    pub const CONSUME_MESSAGE_DIRECTLY: i32 = 309;
    /// Send one message (V2 short header).
    pub const SEND_MESSAGE_V2: i32 = 310;
    /// Nameserver: update its config.
    pub const UPDATE_NAMESRV_CONFIG: i32 = 318;
    /// Nameserver: read its config.
    pub const GET_NAMESRV_CONFIG: i32 = 319;
    /// Send a batch of messages.
    pub const SEND_BATCH_MESSAGE: i32 = 320;
    /// Nameserver: has a broker's DataVersion changed.
    pub const QUERY_DATA_VERSION: i32 = 322;
    /// Nameserver: restore the write bit of a broker's queues.
    pub const ADD_WRITE_PERM_OF_BROKER: i32 = 327;
    /// Nameserver: broker liveness heartbeat.
    pub const BROKER_HEARTBEAT: i32 = 904;
    /// Flotilla: hand DLedger leadership of a broker group to another member. Sent to the
    /// current leader with ext fields `targetSelfId` (a `dLegerPeers` id) and optional
    /// `timeoutMillis`; SUCCESS once the target leads. Java exposes leadership transfer only
    /// through DLedger's own RPC (not a broker request code), so this is Flotilla's own,
    /// outside RocketMQ's ranges.
    pub const FLOTILLA_TRANSFER_LEADERSHIP: i32 = 50100;

    /// The lower-case name RocketMQ labels metrics with (`RemotingHelper`'s code names),
    /// or `None` for a code this crate does not name.
    pub fn desc(code: i32) -> Option<&'static str> {
        Some(match code {
            SEND_MESSAGE => "send_message",
            PULL_MESSAGE => "pull_message",
            QUERY_MESSAGE => "query_message",
            QUERY_CONSUMER_OFFSET => "query_consumer_offset",
            UPDATE_CONSUMER_OFFSET => "update_consumer_offset",
            UPDATE_AND_CREATE_TOPIC => "update_and_create_topic",
            GET_ALL_TOPIC_CONFIG => "get_all_topic_config",
            UPDATE_BROKER_CONFIG => "update_broker_config",
            GET_BROKER_CONFIG => "get_broker_config",
            TRIGGER_DELETE_FILES => "trigger_delete_files",
            GET_BROKER_RUNTIME_INFO => "get_broker_runtime_info",
            SEARCH_OFFSET_BY_TIMESTAMP => "search_offset_by_timestamp",
            GET_MAX_OFFSET => "get_max_offset",
            GET_MIN_OFFSET => "get_min_offset",
            GET_EARLIEST_MSG_STORETIME => "get_earliest_msg_storetime",
            VIEW_MESSAGE_BY_ID => "view_message_by_id",
            HEART_BEAT => "heart_beat",
            UNREGISTER_CLIENT => "unregister_client",
            CONSUMER_SEND_MSG_BACK => "consumer_send_msg_back",
            END_TRANSACTION => "end_transaction",
            GET_CONSUMER_LIST_BY_GROUP => "get_consumer_list_by_group",
            CHECK_TRANSACTION_STATE => "check_transaction_state",
            NOTIFY_CONSUMER_IDS_CHANGED => "notify_consumer_ids_changed",
            LOCK_BATCH_MQ => "lock_batch_mq",
            UNLOCK_BATCH_MQ => "unlock_batch_mq",
            GET_ALL_CONSUMER_OFFSET => "get_all_consumer_offset",
            GET_ALL_DELAY_OFFSET => "get_all_delay_offset",
            PUT_KV_CONFIG => "put_kv_config",
            GET_KV_CONFIG => "get_kv_config",
            DELETE_KV_CONFIG => "delete_kv_config",
            REGISTER_BROKER => "register_broker",
            UNREGISTER_BROKER => "unregister_broker",
            GET_ROUTEINFO_BY_TOPIC => "get_routeinfo_by_topic",
            GET_BROKER_CLUSTER_INFO => "get_broker_cluster_info",
            UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => "update_and_create_subscriptiongroup",
            GET_ALL_SUBSCRIPTIONGROUP_CONFIG => "get_all_subscriptiongroup_config",
            GET_TOPIC_STATS_INFO => "get_topic_stats_info",
            GET_CONSUMER_CONNECTION_LIST => "get_consumer_connection_list",
            GET_PRODUCER_CONNECTION_LIST => "get_producer_connection_list",
            WIPE_WRITE_PERM_OF_BROKER => "wipe_write_perm_of_broker",
            GET_ALL_TOPIC_LIST_FROM_NAMESERVER => "get_all_topic_list_from_nameserver",
            DELETE_SUBSCRIPTIONGROUP => "delete_subscriptiongroup",
            GET_CONSUME_STATS => "get_consume_stats",
            DELETE_TOPIC_IN_BROKER => "delete_topic_in_broker",
            DELETE_TOPIC_IN_NAMESRV => "delete_topic_in_namesrv",
            REGISTER_TOPIC_IN_NAMESRV => "register_topic_in_namesrv",
            GET_KVLIST_BY_NAMESPACE => "get_kvlist_by_namespace",
            RESET_CONSUMER_CLIENT_OFFSET => "reset_consumer_client_offset",
            INVOKE_BROKER_TO_RESET_OFFSET => "invoke_broker_to_reset_offset",
            GET_TOPICS_BY_CLUSTER => "get_topics_by_cluster",
            GET_TOPIC_CONFIG => "get_topic_config",
            QUERY_TOPIC_CONSUME_BY_WHO => "query_topic_consume_by_who",
            CLONE_GROUP_OFFSET => "clone_group_offset",
            QUERY_TOPICS_BY_CONSUMER => "query_topics_by_consumer",
            GET_CONSUMER_RUNNING_INFO => "get_consumer_running_info",
            CONSUME_MESSAGE_DIRECTLY => "consume_message_directly",
            SEND_MESSAGE_V2 => "send_message_v2",
            UPDATE_NAMESRV_CONFIG => "update_namesrv_config",
            GET_NAMESRV_CONFIG => "get_namesrv_config",
            SEND_BATCH_MESSAGE => "send_batch_message",
            QUERY_DATA_VERSION => "query_data_version",
            ADD_WRITE_PERM_OF_BROKER => "add_write_perm_of_broker",
            BROKER_HEARTBEAT => "broker_heartbeat",
            FLOTILLA_TRANSFER_LEADERSHIP => "flotilla_transfer_leadership",
            _ => return None,
        })
    }
}

/// Response codes (`RemotingSysResponseCode` + `ResponseCode`).
pub mod response_code {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Any server-side failure.
    pub const SYSTEM_ERROR: i32 = 1;
    /// Overloaded; retry later.
    pub const SYSTEM_BUSY: i32 = 2;
    /// The request code has no handler.
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    /// Transaction failed.
    pub const TRANSACTION_FAILED: i32 = 4;
    /// Stored, but the disk flush did not finish in time.
    pub const FLUSH_DISK_TIMEOUT: i32 = 10;
    /// No slave is available (sync master).
    pub const SLAVE_NOT_AVAILABLE: i32 = 11;
    /// Stored, but the slave did not ack in time.
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    /// The message is invalid (size, properties).
    pub const MESSAGE_ILLEGAL: i32 = 13;
    /// The service is not available (shutting down, disk full, slave).
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    /// Version not supported.
    pub const VERSION_NOT_SUPPORTED: i32 = 15;
    /// Permission denied (read/write bit, config blacklist).
    pub const NO_PERMISSION: i32 = 16;
    /// The topic does not exist.
    pub const TOPIC_NOT_EXIST: i32 = 17;
    /// The topic already exists.
    pub const TOPIC_EXIST_ALREADY: i32 = 18;
    /// Pull: nothing at that offset yet.
    pub const PULL_NOT_FOUND: i32 = 19;
    /// Pull: retry at once.
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    /// Pull: the offset is out of range.
    pub const PULL_OFFSET_MOVED: i32 = 21;
    /// Query: nothing found.
    pub const QUERY_NOT_FOUND: i32 = 22;
    /// The subscription expression could not be parsed.
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    /// The subscription does not exist.
    pub const SUBSCRIPTION_NOT_EXIST: i32 = 24;
    /// The subscription is stale.
    pub const SUBSCRIPTION_NOT_LATEST: i32 = 25;
    /// The subscription group does not exist.
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
    /// The filter data does not exist.
    pub const FILTER_DATA_NOT_EXIST: i32 = 27;
    /// The filter data is stale.
    pub const FILTER_DATA_NOT_LATEST: i32 = 28;
    /// A request parameter is invalid.
    pub const INVALID_PARAMETER: i32 = 29;
    /// Transaction should commit.
    pub const TRANSACTION_SHOULD_COMMIT: i32 = 200;
    /// Transaction should roll back.
    pub const TRANSACTION_SHOULD_ROLLBACK: i32 = 201;
    /// Transaction state unknown.
    pub const TRANSACTION_STATE_UNKNOW: i32 = 202;
    /// Transaction group is wrong.
    pub const TRANSACTION_STATE_GROUP_WRONG: i32 = 203;
    /// No buyer id (legacy).
    pub const NO_BUYER_ID: i32 = 204;
    /// The consumer is not online.
    pub const CONSUMER_NOT_ONLINE: i32 = 206;
    /// Consume message timeout.
    pub const CONSUME_MSG_TIMEOUT: i32 = 207;
    /// No message.
    pub const NO_MESSAGE: i32 = 208;
    /// The server is going away; reconnect elsewhere.
    pub const GO_AWAY: i32 = 1500;

    /// The lower-case name RocketMQ labels metrics with (`RemotingHelper`'s code names),
    /// or `None` for a code this crate does not name.
    pub fn desc(code: i32) -> Option<&'static str> {
        Some(match code {
            SUCCESS => "success",
            SYSTEM_ERROR => "system_error",
            SYSTEM_BUSY => "system_busy",
            REQUEST_CODE_NOT_SUPPORTED => "request_code_not_supported",
            TRANSACTION_FAILED => "transaction_failed",
            FLUSH_DISK_TIMEOUT => "flush_disk_timeout",
            SLAVE_NOT_AVAILABLE => "slave_not_available",
            FLUSH_SLAVE_TIMEOUT => "flush_slave_timeout",
            MESSAGE_ILLEGAL => "message_illegal",
            SERVICE_NOT_AVAILABLE => "service_not_available",
            VERSION_NOT_SUPPORTED => "version_not_supported",
            NO_PERMISSION => "no_permission",
            TOPIC_NOT_EXIST => "topic_not_exist",
            TOPIC_EXIST_ALREADY => "topic_exist_already",
            PULL_NOT_FOUND => "pull_not_found",
            PULL_RETRY_IMMEDIATELY => "pull_retry_immediately",
            PULL_OFFSET_MOVED => "pull_offset_moved",
            QUERY_NOT_FOUND => "query_not_found",
            SUBSCRIPTION_PARSE_FAILED => "subscription_parse_failed",
            SUBSCRIPTION_NOT_EXIST => "subscription_not_exist",
            SUBSCRIPTION_NOT_LATEST => "subscription_not_latest",
            SUBSCRIPTION_GROUP_NOT_EXIST => "subscription_group_not_exist",
            FILTER_DATA_NOT_EXIST => "filter_data_not_exist",
            FILTER_DATA_NOT_LATEST => "filter_data_not_latest",
            INVALID_PARAMETER => "invalid_parameter",
            TRANSACTION_SHOULD_COMMIT => "transaction_should_commit",
            TRANSACTION_SHOULD_ROLLBACK => "transaction_should_rollback",
            TRANSACTION_STATE_UNKNOW => "transaction_state_unknow",
            TRANSACTION_STATE_GROUP_WRONG => "transaction_state_group_wrong",
            NO_BUYER_ID => "no_buyer_id",
            CONSUMER_NOT_ONLINE => "consumer_not_online",
            CONSUME_MSG_TIMEOUT => "consume_msg_timeout",
            NO_MESSAGE => "no_message",
            GO_AWAY => "go_away",
            _ => return None,
        })
    }
}

/// Topic and broker permission bits (`PermName`).
pub mod perm {
    /// Priority (unused by clients).
    pub const PRIORITY: i32 = 8;
    /// Readable: consumers may pull.
    pub const READ: i32 = 4;
    /// Writable: producers may send.
    pub const WRITE: i32 = 2;
    /// Inherit (template topics).
    pub const INHERIT: i32 = 1;
    /// Read + write (6), the default.
    pub const READ_WRITE: i32 = READ | WRITE;

    /// Whether `perm` has the read bit.
    pub fn is_readable(perm: i32) -> bool {
        perm & READ == READ
    }
    /// Whether `perm` has the write bit.
    pub fn is_writeable(perm: i32) -> bool {
        perm & WRITE == WRITE
    }
    /// Whether `perm` has the inherit bit.
    pub fn is_inherited(perm: i32) -> bool {
        perm & INHERIT == INHERIT
    }
    /// Whether `perm` has the priority bit.
    pub fn is_priority(perm: i32) -> bool {
        perm & PRIORITY == PRIORITY
    }
    /// A valid permission has only the four known bits.
    pub fn is_valid(perm: i32) -> bool {
        (0..=15).contains(&perm)
    }
    /// Java's `PermName.perm2String`: `R`/`W`/`X` or `-` per bit, e.g. `RW-`.
    pub fn to_perm_string(perm: i32) -> String {
        let mut s = String::with_capacity(3);
        s.push(if is_readable(perm) { 'R' } else { '-' });
        s.push(if is_writeable(perm) { 'W' } else { '-' });
        s.push(if is_inherited(perm) { 'X' } else { '-' });
        s
    }
}

/// Protocol versions (`MQVersion.Version` ordinals) carried in the `version` header field.
pub mod version {
    /// V4_9_4: from this version on, clients accept standard JSON routes.
    pub const V4_9_4: i32 = 401;
    /// V5_0_0.
    pub const V5_0_0: i32 = 413;
    /// V5_3_3.
    pub const V5_3_3: i32 = 479;
    /// The version Flotilla sends.
    pub const CURRENT: i32 = V5_3_3;
}

/// The implementation language announced in each command (`LanguageCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LanguageCode {
    /// 0
    Java,
    /// 1
    Cpp,
    /// 2
    Dotnet,
    /// 3
    Python,
    /// 4
    Delphi,
    /// 5
    Erlang,
    /// 6
    Ruby,
    /// 7; also used for unknown values on input.
    Other,
    /// 8
    Http,
    /// 9
    Go,
    /// 10
    Php,
    /// 11
    Oms,
    /// 12; what Flotilla sends.
    #[default]
    Rust,
    /// 13
    NodeJs,
}

impl LanguageCode {
    const ALL: [LanguageCode; 14] = [
        Self::Java,
        Self::Cpp,
        Self::Dotnet,
        Self::Python,
        Self::Delphi,
        Self::Erlang,
        Self::Ruby,
        Self::Other,
        Self::Http,
        Self::Go,
        Self::Php,
        Self::Oms,
        Self::Rust,
        Self::NodeJs,
    ];
    const NAMES: [&'static str; 14] = [
        "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO",
        "PHP", "OMS", "RUST", "NODE_JS",
    ];

    /// The wire byte of this language.
    pub fn code(self) -> u8 {
        // The discriminants are 0..=13 in declaration order.
        self as u8
    }

    /// The language of a wire byte; unknown bytes map to `Other` (lenient, as input may come
    /// from newer clients).
    pub fn from_code(code: i64) -> Self {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
            .unwrap_or(Self::Other)
    }

    /// The Java enum name (`JAVA`, `RUST`, …).
    pub fn name(self) -> &'static str {
        Self::NAMES[self.code() as usize]
    }

    /// The language of a Java enum name, case-insensitively; unknown names map to `Other`.
    pub fn from_name(name: &str) -> Self {
        Self::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| Self::ALL.get(i).copied())
            .unwrap_or(Self::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_round_trip() {
        for i in 0..14 {
            let l = LanguageCode::from_code(i);
            assert_eq!(i64::from(l.code()), i);
            assert_eq!(LanguageCode::from_name(l.name()), l);
        }
        assert_eq!(LanguageCode::from_code(99), LanguageCode::Other);
        assert_eq!(LanguageCode::from_name("rust"), LanguageCode::Rust);
        assert_eq!(LanguageCode::Rust.code(), 12);
    }

    #[test]
    fn perm_helpers() {
        assert!(perm::is_readable(6) && perm::is_writeable(6));
        assert!(!perm::is_writeable(4));
        assert_eq!(perm::to_perm_string(6), "RW-");
        assert_eq!(perm::to_perm_string(4), "R--");
    }
}

//! The store's request and result types: what the broker hands in and gets back.
//!
//! Statuses mirror RocketMQ's `PutMessageStatus` and `GetMessageStatus` so the broker can map
//! them to remoting response codes one-to-one (`research/protocol.md` §2.3, §2.4).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::codec;

/// A message to store (RocketMQ `MessageExtBrokerInner`).
#[derive(Debug, Clone)]
pub struct MessageInner {
    /// Topic name.
    pub topic: String,
    /// Queue id (>= 0).
    pub queue_id: i32,
    /// Producer flag.
    pub flag: i32,
    /// Body.
    pub body: Bytes,
    /// Properties in RocketMQ's `k\u0001v\u0002` encoding.
    pub properties: String,
    /// SYSFLAG (the IPv6 host bits are set by the store from the addresses).
    pub sys_flag: i32,
    /// Producer timestamp.
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Times the message was re-consumed.
    pub reconsume_times: i32,
    /// CommitLog offset of the prepared half message (transactions).
    pub prepared_transaction_offset: i64,
    /// ConsumeQueue tags code; `None` computes it from the TAGS property (Java hash code).
    /// Delay/schedule topics set the delivery time here.
    pub tags_code: Option<i64>,
}

impl MessageInner {
    /// A message with defaults for everything but topic, queue and body.
    pub fn new(topic: impl Into<String>, queue_id: i32, body: impl Into<Bytes>) -> MessageInner {
        MessageInner {
            topic: topic.into(),
            queue_id,
            flag: 0,
            body: body.into(),
            properties: String::new(),
            sys_flag: 0,
            born_timestamp: 0,
            born_host: SocketAddr::from(([127, 0, 0, 1], 0)),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            tags_code: None,
        }
    }

    /// Sets the properties from a map.
    pub fn with_properties(mut self, props: &BTreeMap<String, String>) -> MessageInner {
        self.properties = codec::encode_properties(props);
        self
    }

    /// Adds one property.
    pub fn with_property(mut self, key: &str, value: &str) -> MessageInner {
        self.properties.push_str(key);
        self.properties.push(codec::NAME_VALUE_SEPARATOR);
        self.properties.push_str(value);
        self.properties.push(codec::PROPERTY_SEPARATOR);
        self
    }

    /// One property's value.
    pub fn property(&self, key: &str) -> Option<&str> {
        codec::property(&self.properties, key)
    }

    /// The tags code the ConsumeQueue entry will carry.
    pub fn effective_tags_code(&self) -> i64 {
        self.tags_code
            .unwrap_or_else(|| codec::tags_code(self.property(codec::PROPERTY_TAGS)))
    }

    /// Whether a SYNC_FLUSH producer waits for durability (`WAIT` property, default true).
    pub fn wait_store_msg_ok(&self) -> bool {
        self.property(codec::PROPERTY_WAIT) != Some("false")
    }
}

/// Outcome of an append (RocketMQ `PutMessageStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutStatus {
    /// Stored (and durable when SYNC_FLUSH).
    PutOk,
    /// Stored, but SYNC_FLUSH did not complete within `sync_flush_timeout`.
    FlushDiskTimeout,
    /// Stored, but the slave did not confirm in time (set by the HA layer).
    FlushSlaveTimeout,
    /// Stored, but no slave is available (set by the HA layer).
    SlaveNotAvailable,
    /// The store is shut down or not writable.
    ServiceNotAvailable,
    /// A new CommitLog file could not be created, or writing failed.
    CreateMappedFileFailed,
    /// Empty/invalid topic, negative queue id, or a record larger than `max_message_size`.
    MessageIllegal,
    /// Properties longer than 32767 bytes.
    PropertiesSizeExceeded,
    /// The page cache is too busy (unused by this store, kept for mapping).
    OsPageCacheBusy,
    /// Disk usage is at or above `disk_full_ratio`; nothing was written.
    DiskFull,
    /// An unexpected internal error; see the logs.
    UnknownError,
}

impl PutStatus {
    /// Stable code (RocketMQ's enum name).
    pub fn code(&self) -> &'static str {
        match self {
            PutStatus::PutOk => "PUT_OK",
            PutStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            PutStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            PutStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
            PutStatus::ServiceNotAvailable => "SERVICE_NOT_AVAILABLE",
            PutStatus::CreateMappedFileFailed => "CREATE_MAPPED_FILE_FAILED",
            PutStatus::MessageIllegal => "MESSAGE_ILLEGAL",
            PutStatus::PropertiesSizeExceeded => "PROPERTIES_SIZE_EXCEEDED",
            PutStatus::OsPageCacheBusy => "OS_PAGE_CACHE_BUSY",
            PutStatus::DiskFull => "DISK_FULL",
            PutStatus::UnknownError => "UNKNOWN_ERROR",
        }
    }
}

/// Where one record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    /// CommitLog offset.
    pub phys_offset: i64,
    /// Record size in bytes.
    pub size: i32,
    /// Queue offset in its ConsumeQueue.
    pub queue_offset: i64,
}

/// Details of a successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// CommitLog offset of the first record.
    pub wrote_offset: i64,
    /// Total bytes of all records (blank markers excluded).
    pub wrote_bytes: usize,
    /// The store host the records were written with; with each record's offset it makes the
    /// offset message id ([`AppendResult::msg_ids`]), formatted only when asked for.
    pub store_host: SocketAddr,
    /// Position of each record.
    pub records: Vec<RecordPosition>,
    /// Store timestamp given to the records.
    pub store_timestamp: i64,
    /// Queue offset of the first record.
    pub logical_offset: i64,
    /// Number of records.
    pub count: usize,
}

impl AppendResult {
    /// Offset message id of the record at `i` (in batch order).
    pub fn msg_id(&self, i: usize) -> Option<String> {
        let r = self.records.get(i)?;
        Some(codec::message_id(&self.store_host, r.phys_offset))
    }

    /// Offset message id of each record (uppercase hex of store host and offset).
    pub fn msg_ids(&self) -> Vec<String> {
        self.records
            .iter()
            .map(|r| codec::message_id(&self.store_host, r.phys_offset))
            .collect()
    }

    /// Message ids joined by commas (the SEND_BATCH response's `msgId`).
    pub fn msg_id_list(&self) -> String {
        let mut s = String::with_capacity(self.records.len() * 33);
        for (i, r) in self.records.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&codec::message_id(&self.store_host, r.phys_offset));
        }
        s
    }
}

/// Result of `put_message(s)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// Outcome.
    pub status: PutStatus,
    /// Present whenever the records were written (also with FLUSH_DISK_TIMEOUT).
    pub append: Option<AppendResult>,
}

impl PutResult {
    /// A failure with nothing written.
    pub fn failed(status: PutStatus) -> PutResult {
        PutResult {
            status,
            append: None,
        }
    }

    /// True for PUT_OK.
    pub fn is_ok(&self) -> bool {
        self.status == PutStatus::PutOk
    }
}

/// Outcome of a pull (RocketMQ `GetMessageStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    /// At least one message returned.
    Found,
    /// Entries were scanned but the filter rejected all of them.
    NoMatchedMessage,
    /// Entries exist but their records could not be read (e.g. being deleted).
    OffsetFoundNull,
    /// `offset == max`: nothing new yet.
    OffsetOverflowOne,
    /// `offset > max`.
    OffsetOverflowBadly,
    /// `offset < min`.
    OffsetTooSmall,
    /// The queue exists but has never held a message.
    NoMessageInQueue,
    /// No such topic/queue.
    NoMatchedLogicQueue,
}

impl GetStatus {
    /// Stable code (RocketMQ's enum name).
    pub fn code(&self) -> &'static str {
        match self {
            GetStatus::Found => "FOUND",
            GetStatus::NoMatchedMessage => "NO_MATCHED_MESSAGE",
            GetStatus::OffsetFoundNull => "OFFSET_FOUND_NULL",
            GetStatus::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
            GetStatus::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
            GetStatus::OffsetTooSmall => "OFFSET_TOO_SMALL",
            GetStatus::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
            GetStatus::NoMatchedLogicQueue => "NO_MATCHED_LOGIC_QUEUE",
        }
    }
}

/// Result of `get_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetMessageResult {
    /// Outcome.
    pub status: GetStatus,
    /// Queue offset the consumer should pull from next.
    pub next_begin_offset: i64,
    /// The queue's minimum offset.
    pub min_offset: i64,
    /// The queue's maximum offset (next offset to be written).
    pub max_offset: i64,
    /// Raw stored records, byte-identical to the CommitLog (concatenate for a pull body).
    pub messages: Vec<Bytes>,
    /// Queue offset of each returned record.
    pub queue_offsets: Vec<i64>,
}

impl GetMessageResult {
    /// Total bytes of the returned records.
    pub fn buffer_total_size(&self) -> usize {
        self.messages.iter().map(Bytes::len).sum()
    }
}

/// A new-message notification (topic, queue, new max offset) for long polling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// Topic.
    pub topic: std::sync::Arc<str>,
    /// Queue id.
    pub queue_id: i32,
    /// The queue's new maximum offset.
    pub max_offset: i64,
}

//! Typed request headers of the broker's hot paths, parsed from `extFields` with validation.
//!
//! RocketMQ headers travel as string maps; SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE use
//! one-letter names (`a`…`n`) to save bytes. Parsing them here, once, gives every handler
//! typed values and one place that answers a missing or malformed field with a clear
//! remark instead of a panic or a silent default.
//!
//! The decoding rules are Java's and live in one place, `flotilla_remoting::lenient`,
//! behind `RemotingCommand`'s `ext_*` accessors (the nameserver reads its headers through
//! the same ones): optional numbers that do not parse are absent, booleans are
//! `Boolean.parseBoolean` (the C++ client's `batch: "0"` is false), empty strings pass
//! through. We are stricter than Java only for fields without which the request cannot be
//! served (topic, queue id, offsets): those are answered with an error naming the field
//! where Java would fail on a null a few lines later.

use flotilla_remoting::RemotingCommand;
pub use flotilla_remoting::command::HeaderError;
use flotilla_remoting::request_code;

/// Checks a topic name the way RocketMQ's `TopicValidator` does.
pub fn validate_topic(field: &'static str, topic: &str) -> Result<(), HeaderError> {
    let bad = |why| Err(HeaderError::rejected(field, topic, why));
    if topic.is_empty() {
        return bad("the topic is empty");
    }
    if topic.len() > 127 {
        return bad("the topic is longer than 127 characters");
    }
    if !topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '-' | '_'))
    {
        return bad("the topic may only contain ^[%|a-zA-Z0-9_-]+$");
    }
    Ok(())
}

/// SEND_MESSAGE / SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendHeader {
    /// Producer group.
    pub producer_group: String,
    /// Target topic.
    pub topic: String,
    /// Template topic for auto-create (`TBW102`).
    pub default_topic: String,
    /// Queues of an auto-created topic.
    pub default_topic_queue_nums: i32,
    /// Queue id; negative = broker picks.
    pub queue_id: i32,
    /// Message sys flag.
    pub sys_flag: i32,
    /// Producer timestamp.
    pub born_timestamp: i64,
    /// Message flag.
    pub flag: i32,
    /// Encoded properties.
    pub properties: String,
    /// Times re-consumed (retry messages).
    pub reconsume_times: i32,
    /// Max reconsume times (retry messages).
    pub max_reconsume_times: Option<i32>,
    /// Batch request.
    pub batch: bool,
}

impl SendHeader {
    /// Parses the header of a send request (short names for codes 310 and 320).
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        let short = (cmd.code == request_code::SEND_MESSAGE_V2
            || cmd.code == request_code::SEND_BATCH_MESSAGE)
            && cmd.ext("b").is_some();
        let n = |long: &'static str, s: &'static str| if short { s } else { long };
        let topic = cmd.ext_str(n("topic", "b"))?.to_string();
        validate_topic(n("topic", "b"), &topic)?;
        let h = SendHeader {
            producer_group: cmd.ext(n("producerGroup", "a")).unwrap_or("").to_string(),
            topic,
            default_topic: cmd
                .ext(n("defaultTopic", "c"))
                .unwrap_or("TBW102")
                .to_string(),
            // Only read to auto-create a topic: lenient, as Java's optional fields.
            default_topic_queue_nums: cmd
                .ext_i32_opt(n("defaultTopicQueueNums", "d"))
                .unwrap_or(4),
            queue_id: cmd.ext_i32_or(n("queueId", "e"), -1)?,
            sys_flag: cmd.ext_i32_or(n("sysFlag", "f"), 0)?,
            born_timestamp: cmd.ext_i64_or(n("bornTimestamp", "g"), 0)?,
            flag: cmd.ext_i32_or(n("flag", "h"), 0)?,
            properties: cmd.ext(n("properties", "i")).unwrap_or("").to_string(),
            reconsume_times: cmd.ext_i32_opt(n("reconsumeTimes", "j")).unwrap_or(0),
            max_reconsume_times: cmd.ext_i32_opt(n("maxReconsumeTimes", "l")),
            batch: batch_flag(cmd.ext(n("batch", "m")))
                || cmd.code == request_code::SEND_BATCH_MESSAGE,
        };
        Ok(h)
    }
}

/// The send header's `batch` (`m`): `Boolean.parseBoolean`, and also `"1"`.
///
/// The one deliberate exception to Java's boolean rule. The C++ client (librocketmq as
/// bundled by PyPI's `rocketmq` 0.4.4) sends its batches as SEND_MESSAGE_V2 with `m: "1"`
/// (its booleans go through an `ostringstream`). Java reads that as false and stores the
/// whole encoded batch as one message — silently wrong. No client sends "1" for a single
/// message, so reading it as true is what the sender meant.
fn batch_flag(raw: Option<&str>) -> bool {
    raw.is_some_and(|v| flotilla_remoting::lenient::parse_bool(v) || v.trim() == "1")
}

/// PULL_MESSAGE / LITE_PULL_MESSAGE header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullHeader {
    /// Consumer group.
    pub consumer_group: String,
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// Offset to read from.
    pub queue_offset: i64,
    /// Most messages to return.
    pub max_msg_nums: i32,
    /// PullSysFlag bits.
    pub sys_flag: i32,
    /// Offset to commit (with the commit bit).
    pub commit_offset: i64,
    /// Long-poll hold time.
    pub suspend_timeout_millis: i64,
    /// Subscription expression.
    pub subscription: Option<String>,
    /// Expression type.
    pub expression_type: Option<String>,
    /// Most bytes to return.
    pub max_msg_bytes: Option<i32>,
}

/// PullSysFlag: commit the offset.
pub const PULL_FLAG_COMMIT_OFFSET: i32 = 1;
/// PullSysFlag: long-poll.
pub const PULL_FLAG_SUSPEND: i32 = 2;
/// PullSysFlag: the request carries a subscription.
pub const PULL_FLAG_SUBSCRIPTION: i32 = 4;

impl PullHeader {
    /// Parses and validates a pull header.
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        let topic = cmd.ext_str("topic")?.to_string();
        validate_topic("topic", &topic)?;
        let consumer_group = cmd.ext_str("consumerGroup")?.to_string();
        if consumer_group.is_empty() {
            return Err(HeaderError::rejected(
                "consumerGroup",
                "",
                "the group is empty",
            ));
        }
        let queue_id = cmd.ext_i32("queueId")?;
        if queue_id < 0 {
            return Err(HeaderError::rejected(
                "queueId",
                queue_id,
                "must not be negative",
            ));
        }
        let queue_offset = cmd.ext_i64("queueOffset")?;
        let max_msg_nums = cmd.ext_i32_or("maxMsgNums", 32)?;
        if max_msg_nums <= 0 {
            return Err(HeaderError::rejected(
                "maxMsgNums",
                max_msg_nums,
                "must be positive",
            ));
        }
        Ok(PullHeader {
            consumer_group,
            topic,
            queue_id,
            queue_offset,
            max_msg_nums,
            sys_flag: cmd.ext_i32_or("sysFlag", 0)?,
            commit_offset: cmd.ext_i64_or("commitOffset", -1)?,
            suspend_timeout_millis: cmd.ext_i64_or("suspendTimeoutMillis", 0)?,
            subscription: cmd.ext("subscription").map(str::to_string),
            expression_type: cmd.ext("expressionType").map(str::to_string),
            max_msg_bytes: cmd.ext_i32_opt("maxMsgBytes"),
        })
    }

    /// Whether the suspend (long-poll) bit is set.
    pub fn suspend(&self) -> bool {
        self.sys_flag & PULL_FLAG_SUSPEND != 0
    }

    /// Whether the commit-offset bit is set.
    pub fn commit(&self) -> bool {
        self.sys_flag & PULL_FLAG_COMMIT_OFFSET != 0
    }

    /// Whether the request carries its own subscription (`subscription`, `expressionType`).
    pub fn has_subscription(&self) -> bool {
        self.sys_flag & PULL_FLAG_SUBSCRIPTION != 0
    }
}

/// Generic accessors used by the smaller handlers (thin names over the shared rules).
pub struct Ext<'a>(pub &'a RemotingCommand);

impl<'a> Ext<'a> {
    /// A required string; an empty value passes through, as in Java.
    pub fn string(&self, name: &'static str) -> Result<&'a str, HeaderError> {
        self.0.ext_str(name)
    }
    /// An optional string (absent when empty).
    pub fn opt(&self, name: &str) -> Option<&'a str> {
        self.0.ext(name).filter(|s| !s.trim().is_empty())
    }
    /// A required topic.
    pub fn topic(&self, name: &'static str) -> Result<&'a str, HeaderError> {
        let t = self.0.ext_str(name)?;
        validate_topic(name, t)?;
        Ok(t)
    }
    /// A required integer.
    pub fn i64(&self, name: &'static str) -> Result<i64, HeaderError> {
        self.0.ext_i64(name)
    }
    /// A required i32.
    pub fn i32(&self, name: &'static str) -> Result<i32, HeaderError> {
        self.0.ext_i32(name)
    }
    /// An optional integer: absent or unparsable is `None` (Java leaves the default).
    pub fn i64_opt(&self, name: &'static str) -> Option<i64> {
        self.0.ext_i64_opt(name)
    }
    /// An optional i32: absent or unparsable is `None`.
    pub fn i32_opt(&self, name: &'static str) -> Option<i32> {
        self.0.ext_i32_opt(name)
    }
    /// An optional boolean (`Boolean.parseBoolean` when present).
    pub fn bool_opt(&self, name: &'static str) -> Option<bool> {
        self.0.ext_bool_opt(name)
    }
    /// A required non-negative queue id.
    pub fn queue_id(&self, name: &'static str) -> Result<i32, HeaderError> {
        let q = self.i32(name)?;
        if q < 0 {
            return Err(HeaderError::rejected(name, q, "must not be negative"));
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_v2_short_names() {
        let cmd = RemotingCommand::request(request_code::SEND_MESSAGE_V2)
            .with_ext("a", "pg")
            .with_ext("b", "T1")
            .with_ext("c", "TBW102")
            .with_ext("d", "4")
            .with_ext("e", "2")
            .with_ext("f", "0")
            .with_ext("g", "1700000000000")
            .with_ext("h", "0")
            .with_ext("i", "TAGS\u{1}a\u{2}")
            .with_ext("j", "0")
            .with_ext("m", "false");
        let h = SendHeader::parse(&cmd).unwrap();
        assert_eq!(h.topic, "T1");
        assert_eq!(h.queue_id, 2);
        assert_eq!(h.producer_group, "pg");
        assert!(!h.batch);
        let batch = RemotingCommand::request(request_code::SEND_BATCH_MESSAGE).with_ext("b", "T1");
        assert!(SendHeader::parse(&batch).unwrap().batch);
    }

    #[test]
    fn send_v1_long_names_and_errors() {
        let cmd = RemotingCommand::request(request_code::SEND_MESSAGE)
            .with_ext("topic", "T1")
            .with_ext("queueId", "-1");
        assert_eq!(SendHeader::parse(&cmd).unwrap().queue_id, -1);
        let missing = RemotingCommand::request(request_code::SEND_MESSAGE);
        assert_eq!(
            SendHeader::parse(&missing).unwrap_err(),
            HeaderError::Missing("topic".into())
        );
        let bad = RemotingCommand::request(request_code::SEND_MESSAGE)
            .with_ext("topic", "T1")
            .with_ext("queueId", "x");
        let e = SendHeader::parse(&bad).unwrap_err();
        assert_eq!(e.code(), "HEADER_FIELD_INVALID");
        assert!(e.to_string().contains("queueId"));
        let bad_topic =
            RemotingCommand::request(request_code::SEND_MESSAGE).with_ext("topic", "a b");
        assert!(SendHeader::parse(&bad_topic).is_err());
    }

    #[test]
    fn pull_header_validation() {
        let ok = RemotingCommand::request(request_code::PULL_MESSAGE)
            .with_ext("consumerGroup", "g")
            .with_ext("topic", "T")
            .with_ext("queueId", "1")
            .with_ext("queueOffset", "5")
            .with_ext("maxMsgNums", "32")
            .with_ext("sysFlag", "3")
            .with_ext("commitOffset", "4")
            .with_ext("suspendTimeoutMillis", "15000")
            .with_ext("subscription", "*");
        let h = PullHeader::parse(&ok).unwrap();
        assert!(h.suspend() && h.commit());
        assert_eq!(h.queue_offset, 5);
        let mut neg = ok.clone();
        neg.put_ext("queueId", "-1");
        assert!(PullHeader::parse(&neg).is_err());
        let mut no_off = ok.clone();
        no_off.ext_fields.remove("queueOffset");
        assert_eq!(
            PullHeader::parse(&no_off).unwrap_err(),
            HeaderError::Missing("queueOffset".into())
        );
        let mut zero = ok;
        zero.put_ext("maxMsgNums", "0");
        assert!(PullHeader::parse(&zero).is_err());
    }

    /// The header exactly as rocketmq-client-cpp's `SendMessageRequestHeaderV2` writes it:
    /// booleans through an `ostringstream` (`"0"`/`"1"`), numbers as JSON ints.
    #[test]
    fn send_header_from_the_cpp_client() {
        let cmd = RemotingCommand::request(request_code::SEND_MESSAGE_V2)
            .with_ext("a", "pg")
            .with_ext("b", "T1")
            .with_ext("c", "TBW102")
            .with_ext("d", "4")
            .with_ext("e", "3")
            .with_ext("f", "0")
            .with_ext("g", "1700000000000")
            .with_ext("h", "0")
            .with_ext("i", "")
            .with_ext("j", "0")
            .with_ext("k", "0")
            .with_ext("m", "0");
        let h = SendHeader::parse(&cmd).unwrap();
        assert!(!h.batch);
        assert_eq!(h.queue_id, 3);
        let mut one = cmd.clone();
        // The C++ client's batches: "1" (the one exception to parseBoolean, see batch_flag).
        one.put_ext("m", "1");
        assert!(SendHeader::parse(&one).unwrap().batch);
        one.put_ext("m", "TRUE");
        assert!(SendHeader::parse(&one).unwrap().batch);
        one.put_ext("m", "yes");
        assert!(!SendHeader::parse(&one).unwrap().batch);
        // Bad optional numbers leave the defaults, as in Java.
        let mut junk = cmd;
        junk.put_ext("j", "x");
        junk.put_ext("l", "");
        junk.put_ext("d", "four");
        let h = SendHeader::parse(&junk).unwrap();
        assert_eq!(
            (
                h.reconsume_times,
                h.max_reconsume_times,
                h.default_topic_queue_nums
            ),
            (0, None, 4)
        );
    }

    #[test]
    fn topic_rules() {
        assert!(validate_topic("t", "%RETRY%g-1_a").is_ok());
        assert!(validate_topic("t", "").is_err());
        assert!(validate_topic("t", &"x".repeat(128)).is_err());
        assert!(validate_topic("t", "a.b").is_err());
    }
}

//! Typed request headers of the broker's hot paths, parsed from `extFields` with validation.
//!
//! RocketMQ headers travel as string maps; SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE use
//! one-letter names (`a`…`n`) to save bytes. Parsing them here, once, gives every handler
//! typed values and one place that answers a missing or malformed field with a clear
//! remark instead of a panic or a silent default. Java only logs missing `@CFNotNull`
//! fields; we are stricter for fields without which the request cannot be served (topic,
//! queue id, offsets) and lenient for the rest.

use flotilla_remoting::RemotingCommand;
use flotilla_remoting::request_code;

/// A header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A required field is absent.
    #[error("missing header field {0}")]
    Missing(&'static str),
    /// A field does not parse or is out of range.
    #[error("invalid header field {field}: {value:?} ({why})")]
    Invalid {
        /// The field name.
        field: &'static str,
        /// The raw value.
        value: String,
        /// What was expected.
        why: &'static str,
    },
}

impl HeaderError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing(_) => "HEADER_MISSING",
            Self::Invalid { .. } => "HEADER_INVALID",
        }
    }
}

/// Reads fields by one of two names (the V2 short name first when `short` is set).
struct Fields<'a> {
    cmd: &'a RemotingCommand,
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.cmd.ext(name)
    }
    fn str_req(&self, name: &'static str) -> Result<&'a str, HeaderError> {
        self.get(name).ok_or(HeaderError::Missing(name))
    }
    fn num<T: std::str::FromStr>(
        &self,
        name: &'static str,
        why: &'static str,
    ) -> Result<Option<T>, HeaderError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| HeaderError::Invalid {
                    field: name,
                    value: v.to_string(),
                    why,
                }),
        }
    }
    fn num_req<T: std::str::FromStr>(
        &self,
        name: &'static str,
        why: &'static str,
    ) -> Result<T, HeaderError> {
        self.num(name, why)?.ok_or(HeaderError::Missing(name))
    }
    fn bool(&self, name: &'static str) -> Result<Option<bool>, HeaderError> {
        match self.get(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(HeaderError::Invalid {
                field: name,
                value: v.to_string(),
                why: "expected true or false",
            }),
        }
    }
}

/// Checks a topic name the way RocketMQ's `TopicValidator` does.
pub fn validate_topic(field: &'static str, topic: &str) -> Result<(), HeaderError> {
    let bad = |why| {
        Err(HeaderError::Invalid {
            field,
            value: topic.to_string(),
            why,
        })
    };
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
        let f = Fields { cmd };
        let short = (cmd.code == request_code::SEND_MESSAGE_V2
            || cmd.code == request_code::SEND_BATCH_MESSAGE)
            && f.get("b").is_some();
        let n = |long: &'static str, s: &'static str| if short { s } else { long };
        let topic = f.str_req(n("topic", "b"))?.to_string();
        validate_topic(n("topic", "b"), &topic)?;
        let h = SendHeader {
            producer_group: f.get(n("producerGroup", "a")).unwrap_or("").to_string(),
            topic,
            default_topic: f
                .get(n("defaultTopic", "c"))
                .unwrap_or("TBW102")
                .to_string(),
            default_topic_queue_nums: f
                .num(n("defaultTopicQueueNums", "d"), "expected an integer")?
                .unwrap_or(4),
            queue_id: f
                .num(n("queueId", "e"), "expected an integer")?
                .unwrap_or(-1),
            sys_flag: f
                .num(n("sysFlag", "f"), "expected an integer")?
                .unwrap_or(0),
            born_timestamp: f
                .num(n("bornTimestamp", "g"), "expected an integer")?
                .unwrap_or(0),
            flag: f.num(n("flag", "h"), "expected an integer")?.unwrap_or(0),
            properties: f.get(n("properties", "i")).unwrap_or("").to_string(),
            reconsume_times: f
                .num(n("reconsumeTimes", "j"), "expected an integer")?
                .unwrap_or(0),
            max_reconsume_times: f.num(n("maxReconsumeTimes", "l"), "expected an integer")?,
            batch: f.bool(n("batch", "m"))?.unwrap_or(false)
                || cmd.code == request_code::SEND_BATCH_MESSAGE,
        };
        Ok(h)
    }
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
        let f = Fields { cmd };
        let topic = f.str_req("topic")?.to_string();
        validate_topic("topic", &topic)?;
        let consumer_group = f.str_req("consumerGroup")?.to_string();
        if consumer_group.is_empty() {
            return Err(HeaderError::Invalid {
                field: "consumerGroup",
                value: String::new(),
                why: "the group is empty",
            });
        }
        let queue_id: i32 = f.num_req("queueId", "expected an integer")?;
        if queue_id < 0 {
            return Err(HeaderError::Invalid {
                field: "queueId",
                value: queue_id.to_string(),
                why: "must not be negative",
            });
        }
        let queue_offset: i64 = f.num_req("queueOffset", "expected an integer")?;
        let max_msg_nums: i32 = f.num("maxMsgNums", "expected an integer")?.unwrap_or(32);
        if max_msg_nums <= 0 {
            return Err(HeaderError::Invalid {
                field: "maxMsgNums",
                value: max_msg_nums.to_string(),
                why: "must be positive",
            });
        }
        Ok(PullHeader {
            consumer_group,
            topic,
            queue_id,
            queue_offset,
            max_msg_nums,
            sys_flag: f.num("sysFlag", "expected an integer")?.unwrap_or(0),
            commit_offset: f.num("commitOffset", "expected an integer")?.unwrap_or(-1),
            suspend_timeout_millis: f
                .num("suspendTimeoutMillis", "expected an integer")?
                .unwrap_or(0),
            subscription: f.get("subscription").map(str::to_string),
            expression_type: f.get("expressionType").map(str::to_string),
            max_msg_bytes: f.num("maxMsgBytes", "expected an integer")?,
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

/// Generic accessors used by the smaller handlers.
pub struct Ext<'a>(pub &'a RemotingCommand);

impl<'a> Ext<'a> {
    /// A required non-empty string.
    pub fn string(&self, name: &'static str) -> Result<&'a str, HeaderError> {
        let v = Fields { cmd: self.0 }.str_req(name)?;
        if v.trim().is_empty() {
            return Err(HeaderError::Invalid {
                field: name,
                value: v.to_string(),
                why: "must not be empty",
            });
        }
        Ok(v)
    }
    /// An optional string.
    pub fn opt(&self, name: &str) -> Option<&'a str> {
        self.0.ext(name).filter(|s| !s.trim().is_empty())
    }
    /// A required topic.
    pub fn topic(&self, name: &'static str) -> Result<&'a str, HeaderError> {
        let t = Fields { cmd: self.0 }.str_req(name)?;
        validate_topic(name, t)?;
        Ok(t)
    }
    /// A required integer.
    pub fn i64(&self, name: &'static str) -> Result<i64, HeaderError> {
        Fields { cmd: self.0 }.num_req(name, "expected an integer")
    }
    /// A required i32.
    pub fn i32(&self, name: &'static str) -> Result<i32, HeaderError> {
        Fields { cmd: self.0 }.num_req(name, "expected a 32-bit integer")
    }
    /// An optional integer.
    pub fn i64_opt(&self, name: &'static str) -> Result<Option<i64>, HeaderError> {
        Fields { cmd: self.0 }.num(name, "expected an integer")
    }
    /// An optional i32.
    pub fn i32_opt(&self, name: &'static str) -> Result<Option<i32>, HeaderError> {
        Fields { cmd: self.0 }.num(name, "expected a 32-bit integer")
    }
    /// An optional boolean.
    pub fn bool_opt(&self, name: &'static str) -> Result<Option<bool>, HeaderError> {
        Fields { cmd: self.0 }.bool(name)
    }
    /// A required non-negative queue id.
    pub fn queue_id(&self, name: &'static str) -> Result<i32, HeaderError> {
        let q = self.i32(name)?;
        if q < 0 {
            return Err(HeaderError::Invalid {
                field: name,
                value: q.to_string(),
                why: "must not be negative",
            });
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
            HeaderError::Missing("topic")
        );
        let bad = RemotingCommand::request(request_code::SEND_MESSAGE)
            .with_ext("topic", "T1")
            .with_ext("queueId", "x");
        let e = SendHeader::parse(&bad).unwrap_err();
        assert_eq!(e.code(), "HEADER_INVALID");
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
            HeaderError::Missing("queueOffset")
        );
        let mut zero = ok;
        zero.put_ext("maxMsgNums", "0");
        assert!(PullHeader::parse(&zero).is_err());
    }

    #[test]
    fn topic_rules() {
        assert!(validate_topic("t", "%RETRY%g-1_a").is_ok());
        assert!(validate_topic("t", "").is_err());
        assert!(validate_topic("t", &"x".repeat(128)).is_err());
        assert!(validate_topic("t", "a.b").is_err());
    }
}

//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and
//! CONSUMER_SEND_MSG_BACK (36).
//!
//! The send path checks, in order: broker write permission, topic existence (auto-creating
//! from `TBW102` when allowed, and retry topics always), topic write permission, queue id,
//! size, timer properties (a batch holding one is refused; a single timer message due later is
//! moved to `rmq_sys_wheel_timer`, see [`crate::timer`]); then
//! appends through [`Broker::put`] (which moves delayed messages to the schedule
//! topic and awaits the replication gate) and answers with the offset message id(s), queue
//! id and first queue offset. Write-disable is enforced here — a topic without W or a broker
//! whose `brokerPermission` lacks W answers NO_PERMISSION — unlike Java, which relies on
//! clients skipping non-writable routes.

use bytes::Bytes;
use flotilla_message_store::codec::{self, decode_record};
use flotilla_message_store::metadata::TopicConfig;
use flotilla_message_store::{MessageInner, PutResult, PutStatus};
use flotilla_remoting::{
    Channel, ProcessError, ProcessResult, RemotingCommand, perm, response_code as code,
};
use rand::Rng;

use super::bad_header;
use crate::broker::{Broker, props, set_property};
use crate::headers::{Ext, SendHeader};
use crate::topic_config::{DLQ_PREFIX, RETRY_PREFIX, dlq_topic, retry_topic};

/// A batch body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The body ends inside a message.
    #[error("batch body truncated at byte {0}")]
    Truncated(usize),
    /// A length field is negative or too large.
    #[error("batch body has a bad length at byte {0}")]
    BadLength(usize),
}

impl BatchError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Truncated(_) => "BATCH_TRUNCATED",
            Self::BadLength(_) => "BATCH_BAD_LENGTH",
        }
    }
}

/// One message of a batch body: (flag, body, properties).
pub type BatchItem = (i32, Bytes, String);

fn read_i32(b: &[u8], at: usize) -> Result<i32, BatchError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(i32::from_be_bytes)
        .ok_or(BatchError::Truncated(at))
}

/// Decodes a batch body (`MessageDecoder.encodeMessages`): per message
/// `totalSize magic bodyCRC flag bodyLen body propLen(i16) props`.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchItem>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let start = pos;
        let total = read_i32(body, pos)?;
        if total < 20 {
            return Err(BatchError::BadLength(pos));
        }
        let flag = read_i32(body, pos + 12)?;
        let body_len = usize::try_from(read_i32(body, pos + 16)?)
            .map_err(|_| BatchError::BadLength(pos + 16))?;
        let b_start = pos + 20;
        let b_end = b_start
            .checked_add(body_len)
            .ok_or(BatchError::BadLength(pos + 16))?;
        if b_end + 2 > body.len() {
            return Err(BatchError::Truncated(b_end));
        }
        let plen = body
            .get(b_end..b_end + 2)
            .and_then(|s| s.try_into().ok())
            .map(i16::from_be_bytes)
            .ok_or(BatchError::Truncated(b_end))?;
        let plen = usize::try_from(plen).map_err(|_| BatchError::BadLength(b_end))?;
        let p_end = b_end + 2 + plen;
        let props = body
            .get(b_end + 2..p_end)
            .ok_or(BatchError::Truncated(b_end + 2))?;
        let props = String::from_utf8_lossy(props).into_owned();
        let next = start
            .checked_add(usize::try_from(total).map_err(|_| BatchError::BadLength(start))?)
            .ok_or(BatchError::BadLength(start))?;
        if next < p_end || next > body.len() {
            return Err(BatchError::BadLength(start));
        }
        out.push((flag, body.slice(b_start..b_end), props));
        pos = next;
    }
    Ok(out)
}

/// Maps a store status to (response code, remark) for failures.
pub fn status_code(s: PutStatus) -> (i32, &'static str) {
    match s {
        PutStatus::PutOk => (code::SUCCESS, ""),
        PutStatus::FlushDiskTimeout => (
            code::FLUSH_DISK_TIMEOUT,
            "stored, but the disk flush timed out",
        ),
        PutStatus::FlushSlaveTimeout => (
            code::FLUSH_SLAVE_TIMEOUT,
            "stored, but the slave did not confirm in time",
        ),
        PutStatus::SlaveNotAvailable => (
            code::SLAVE_NOT_AVAILABLE,
            "stored, but no slave is available",
        ),
        PutStatus::ServiceNotAvailable => (
            code::SERVICE_NOT_AVAILABLE,
            "service not available now, the store is not writable",
        ),
        PutStatus::DiskFull => (
            code::SERVICE_NOT_AVAILABLE,
            "service not available now: the disk is full",
        ),
        PutStatus::CreateMappedFileFailed => (code::SYSTEM_ERROR, "create mapped file failed"),
        PutStatus::MessageIllegal => (
            code::MESSAGE_ILLEGAL,
            "the message is illegal (size or topic)",
        ),
        PutStatus::PropertiesSizeExceeded => (
            code::MESSAGE_ILLEGAL,
            "the message properties are too large",
        ),
        PutStatus::OsPageCacheBusy => {
            (code::SYSTEM_BUSY, "[PC_SYNCHRONIZED]broker busy, try later")
        }
        PutStatus::UnknownError => (code::SYSTEM_ERROR, "unknown store error"),
    }
}

/// Finds or creates the topic a send targets.
fn resolve_topic(b: &Broker, h: &SendHeader) -> Result<TopicConfig, ProcessError> {
    if let Some(tc) = b.topics.get(&h.topic) {
        return Ok(tc);
    }
    let cfg = b.config();
    let made = if h.topic.starts_with(RETRY_PREFIX) {
        let group = &h.topic[RETRY_PREFIX.len()..];
        let queues = b.groups.get(group).map(|g| g.retry_queue_nums).unwrap_or(1);
        Some(
            b.topics
                .create_if_absent(&h.topic, queues, perm::READ_WRITE),
        )
    } else if h.topic.starts_with(DLQ_PREFIX) {
        Some(b.topics.create_if_absent(&h.topic, 1, perm::READ_WRITE))
    } else if cfg.auto_create_topic_enable {
        b.topics
            .create_from_template(&h.topic, &h.default_topic, h.default_topic_queue_nums)
            .transpose()
    } else {
        None
    };
    match made {
        Some(Ok(tc)) => Ok(tc),
        Some(Err(e)) => Err(ProcessError::system(format!(
            "cannot create topic {}: {e}",
            h.topic
        ))),
        None => Err(ProcessError::new(
            code::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist, apply first please!", h.topic),
        )),
    }
}

/// Handles SEND_MESSAGE / SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE.
pub async fn send(b: &Broker, ch: &Channel, req: RemotingCommand) -> ProcessResult {
    let mut h = SendHeader::parse(&req).map_err(bad_header)?;
    let cfg = b.config();
    if let Some(d) = &b.dledger
        && !d.is_writable()
    {
        // Java answers a non-leader with SERVICE_NOT_AVAILABLE; the client retries on
        // another route once it refreshes. Checked before anything is appended.
        let rs = d.role_state();
        return Err(ProcessError::new(
            code::SERVICE_NOT_AVAILABLE,
            format!(
                "the broker[{}] is not master: DLedger member {} is {} in term {} (leader: {})",
                cfg.broker_name,
                d.engine.self_id(),
                crate::dledger::role_name(rs.role),
                rs.term,
                rs.leader_id.as_deref().unwrap_or("unknown")
            ),
        ));
    }
    if !b.is_master() {
        // NO_PERMISSION (not SLAVE_NOT_AVAILABLE, which clients read as "stored"): the
        // client fails over to a writable broker.
        return Err(ProcessError::new(
            code::NO_PERMISSION,
            format!(
                "the broker[{}] is a slave and does not accept writes; send to the master",
                cfg.broker_name
            ),
        ));
    }
    if !perm::is_writeable(cfg.broker_permission) {
        return Err(ProcessError::new(
            code::NO_PERMISSION,
            format!(
                "the broker[{}] sending message is forbidden (brokerPermission {})",
                cfg.broker_name,
                perm::to_perm_string(cfg.broker_permission)
            ),
        ));
    }
    // A retry message that used up its retries goes to the DLQ.
    if h.topic.starts_with(RETRY_PREFIX) && !h.batch {
        let group = h.topic[RETRY_PREFIX.len()..].to_string();
        let max = h
            .max_reconsume_times
            .or_else(|| b.groups.get(&group).map(|g| g.retry_max_times))
            .unwrap_or(cfg.max_reconsume_times);
        if h.reconsume_times > max {
            h.topic = dlq_topic(&group);
            h.queue_id = 0;
        }
    }
    let tc = resolve_topic(b, &h)?;
    // As Java: the region and trace switch go into the (batch-level) properties.
    h.properties = set_property(&h.properties, props::MSG_REGION, &cfg.region_id);
    h.properties = set_property(
        &h.properties,
        props::TRACE_SWITCH,
        if cfg.trace_on { "true" } else { "false" },
    );
    if !perm::is_writeable(tc.perm) {
        return Err(ProcessError::new(
            code::NO_PERMISSION,
            format!(
                "the topic[{}] sending message is forbidden (perm {})",
                h.topic,
                perm::to_perm_string(tc.perm)
            ),
        ));
    }
    let write_queues = tc.write_queue_nums.max(0);
    let queue_id = if h.queue_id < 0 {
        if write_queues == 0 {
            return Err(ProcessError::new(
                code::NO_PERMISSION,
                format!("the topic[{}] has no write queues", h.topic),
            ));
        }
        rand::rng().random_range(0..write_queues)
    } else {
        h.queue_id
    };
    if queue_id >= tc.read_queue_nums.max(tc.write_queue_nums) {
        return Err(ProcessError::system(format!(
            "request queueId[{queue_id}] is illegal, topic[{}] has {} write / {} read queues",
            h.topic, tc.write_queue_nums, tc.read_queue_nums
        )));
    }
    let born_host = ch.remote_addr();
    let body = req.body;
    let msgs: Vec<MessageInner> = if h.batch {
        if h.topic.starts_with(RETRY_PREFIX) {
            return Err(ProcessError::new(
                code::MESSAGE_ILLEGAL,
                "batch request does not support retry group",
            ));
        }
        let items = decode_batch(&body).map_err(|e| {
            ProcessError::new(code::MESSAGE_ILLEGAL, format!("invalid batch body: {e}"))
        })?;
        if items.is_empty() {
            return Err(ProcessError::new(code::MESSAGE_ILLEGAL, "empty batch"));
        }
        let mut out = Vec::with_capacity(items.len());
        for (flag, mbody, mut mprops) in items {
            if mbody.len() > cfg.max_message_size {
                return Err(ProcessError::new(
                    code::MESSAGE_ILLEGAL,
                    format!(
                        "a message body of {} bytes exceeds maxMessageSize {}",
                        mbody.len(),
                        cfg.max_message_size
                    ),
                ));
            }
            // Batch-level properties apply to every message unless it sets them itself.
            for pair in h.properties.split('\u{2}') {
                if let Some((k, v)) = pair.split_once('\u{1}')
                    && codec::property(&mprops, k).is_none()
                {
                    mprops.push_str(k);
                    mprops.push('\u{1}');
                    mprops.push_str(v);
                    mprops.push('\u{2}');
                }
            }
            out.push(MessageInner {
                topic: h.topic.clone(),
                queue_id,
                flag,
                body: mbody,
                properties: mprops,
                sys_flag: h.sys_flag,
                born_timestamp: h.born_timestamp,
                born_host,
                reconsume_times: h.reconsume_times,
                prepared_transaction_offset: 0,
                tags_code: None,
            });
        }
        out
    } else {
        if body.len() > cfg.max_message_size {
            return Err(ProcessError::new(
                code::MESSAGE_ILLEGAL,
                format!(
                    "the message body of {} bytes exceeds maxMessageSize {}",
                    body.len(),
                    cfg.max_message_size
                ),
            ));
        }
        vec![MessageInner {
            topic: h.topic.clone(),
            queue_id,
            flag: h.flag,
            body,
            properties: std::mem::take(&mut h.properties),
            sys_flag: h.sys_flag,
            born_timestamp: h.born_timestamp,
            born_host,
            reconsume_times: h.reconsume_times,
            prepared_transaction_offset: 0,
            tags_code: None,
        }]
    };
    let timer_refused =
        |e: crate::timer::TimerError| ProcessError::new(e.response_code(), e.to_string());
    crate::timer::check_batch(&msgs).map_err(timer_refused)?;
    let mut msgs = msgs;
    let mut transaction_id = None;
    if !h.batch
        && let Some(m) = msgs.first_mut()
        && crate::transaction::is_prepared(m)
    {
        // A half message: stored invisibly until END_TRANSACTION (see `transaction`); its
        // timer properties apply when it is committed, as in Java.
        transaction_id = codec::property(&m.properties, props::UNIQ_KEY).map(str::to_string);
        crate::transaction::to_half(m);
    } else if let Some(m) = msgs.first_mut() {
        // A timer message due later waits in rmq_sys_wheel_timer (see `timer`).
        crate::timer::transform(m, &cfg, crate::topic_config::now_ms()).map_err(timer_refused)?;
    }
    let r = b.put(msgs).await;
    let mut resp = send_response(b, &r, queue_id)?;
    if let Some(id) = transaction_id {
        resp.put_ext("transactionId", id);
    }
    Ok(Some(resp))
}

/// The first timer property a message's properties carry, if any (see [`crate::timer`]).
pub fn timer_property(properties: &str) -> Option<&'static str> {
    crate::timer::timer_property(properties)
}

fn send_response(
    b: &Broker,
    r: &PutResult,
    queue_id: i32,
) -> Result<RemotingCommand, ProcessError> {
    let (c, remark) = status_code(r.status);
    let Some(a) = &r.append else {
        return Err(ProcessError::new(c, remark));
    };
    let cfg = b.config();
    let mut resp = RemotingCommand::response(c, (c != code::SUCCESS).then(|| remark.to_string()));
    resp.put_ext("msgId", a.msg_id_list());
    resp.put_ext("queueId", queue_id);
    resp.put_ext("queueOffset", a.logical_offset);
    resp.put_ext("MSG_REGION", &cfg.region_id);
    resp.put_ext("TRACE_ON", cfg.trace_on);
    Ok(resp)
}

/// CONSUMER_SEND_MSG_BACK: a consumer failed a message; re-put it to the group's retry
/// topic with a delay level, or to the DLQ once its retries are used up.
pub async fn send_back(b: &Broker, _ch: &Channel, req: RemotingCommand) -> ProcessResult {
    let e = Ext(&req);
    let phys: i64 = e.i64("offset").map_err(bad_header)?;
    let group = e.string("group").map_err(bad_header)?.to_string();
    let mut delay_level: i32 = e.i32_opt("delayLevel").unwrap_or(0);
    let origin_msg_id = e.opt("originMsgId").map(str::to_string);
    let header_max = e.i32_opt("maxReconsumeTimes");
    let cfg = b.config();
    if !perm::is_writeable(cfg.broker_permission) {
        return Err(ProcessError::new(
            code::NO_PERMISSION,
            format!(
                "the broker[{}] sending message is forbidden",
                cfg.broker_name
            ),
        ));
    }
    let gcfg = b
        .groups
        .get_or_create(&group, cfg.auto_create_subscription_group)
        .map_err(|e| ProcessError::system(e.to_string()))?
        .ok_or_else(|| {
            ProcessError::new(
                code::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group not exist, {group}"),
            )
        })?;
    if gcfg.retry_queue_nums <= 0 {
        return super::ok();
    }
    let raw = b
        .store
        .look_message_by_offset(phys)
        .ok_or_else(|| ProcessError::system(format!("look message by offset failed, {phys}")))?;
    let rec = decode_record(&raw, false).map_err(|e| {
        ProcessError::system(format!("stored message at {phys} is unreadable: {e}"))
    })?;
    let mut properties = rec.properties.to_string();
    if codec::property(&properties, props::RETRY_TOPIC).is_none() {
        properties = set_property(&properties, props::RETRY_TOPIC, rec.topic);
    }
    let max = header_max.unwrap_or(gcfg.retry_max_times);
    let (topic, queue_id) = if rec.reconsume_times >= max || delay_level < 0 {
        let t = dlq_topic(&group);
        b.topics
            .create_if_absent(&t, 1, perm::READ_WRITE)
            .map_err(|e| ProcessError::system(format!("cannot create {t}: {e}")))?;
        properties = crate::broker::remove_property(&properties, props::DELAY);
        (t, 0)
    } else {
        let t = retry_topic(&group);
        let tc = b
            .topics
            .create_if_absent(&t, gcfg.retry_queue_nums, perm::READ_WRITE)
            .map_err(|e| ProcessError::system(format!("cannot create {t}: {e}")))?;
        if delay_level == 0 {
            delay_level = 3 + rec.reconsume_times;
        }
        properties = set_property(&properties, props::DELAY, &delay_level.to_string());
        let q = rand::rng().random_range(0..tc.write_queue_nums.max(1));
        (t, q)
    };
    let origin = origin_msg_id
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| codec::message_id(&rec.store_host, rec.phys_offset));
    properties = set_property(&properties, props::ORIGIN_MESSAGE_ID, &origin);
    let msg = MessageInner {
        topic: topic.clone(),
        queue_id,
        flag: rec.flag,
        body: Bytes::copy_from_slice(rec.body),
        properties,
        sys_flag: rec.sys_flag,
        born_timestamp: rec.born_timestamp,
        born_host: rec.born_host,
        reconsume_times: rec.reconsume_times + 1,
        prepared_transaction_offset: 0,
        tags_code: None,
    };
    let r = b.put(vec![msg]).await;
    let (c, remark) = status_code(r.status);
    if c == code::SUCCESS {
        tracing::debug!(
            group,
            topic,
            reconsume = rec.reconsume_times + 1,
            "message sent back"
        );
        super::ok()
    } else {
        Err(ProcessError::new(c, remark))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(flag: i32, body: &[u8], props: &str) -> Vec<u8> {
        let total = 20 + body.len() + 2 + props.len();
        let mut v = Vec::new();
        v.extend_from_slice(&(total as i32).to_be_bytes());
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&flag.to_be_bytes());
        v.extend_from_slice(&(body.len() as i32).to_be_bytes());
        v.extend_from_slice(body);
        v.extend_from_slice(&(props.len() as i16).to_be_bytes());
        v.extend_from_slice(props.as_bytes());
        v
    }

    #[test]
    fn batch_round_trip_and_errors() {
        let mut all = encode(1, b"hello", "TAGS\u{1}a\u{2}");
        all.extend(encode(2, b"", ""));
        let items = decode_batch(&Bytes::from(all.clone())).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].0, 1);
        assert_eq!(&items[0].1[..], b"hello");
        assert_eq!(items[0].2, "TAGS\u{1}a\u{2}");
        assert_eq!(items[1].1.len(), 0);
        let cut = Bytes::from(all[..all.len() - 3].to_vec());
        assert!(decode_batch(&cut).is_err());
        let mut bad = encode(1, b"x", "");
        bad[16..20].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(decode_batch(&Bytes::from(bad)).is_err());
        let mut tiny = encode(1, b"x", "");
        tiny[0..4].copy_from_slice(&3i32.to_be_bytes());
        assert!(decode_batch(&Bytes::from(tiny)).is_err());
    }

    #[test]
    fn timer_properties_are_recognised() {
        assert_eq!(timer_property(""), None);
        assert_eq!(timer_property("KEYS\u{1}a\u{2}DELAY\u{1}3\u{2}"), None);
        for k in crate::timer::TIMER_PROPERTIES {
            let props = format!("KEYS\u{1}a\u{2}{k}\u{1}1000\u{2}");
            assert_eq!(timer_property(&props), Some(k));
        }
        // A key that merely contains a timer key's name is not one.
        assert_eq!(timer_property("MY_TIMER_DELAY_SEC\u{1}5\u{2}"), None);
    }

    #[test]
    fn status_mapping() {
        assert_eq!(status_code(PutStatus::PutOk).0, 0);
        assert_eq!(status_code(PutStatus::FlushDiskTimeout).0, 10);
        assert_eq!(status_code(PutStatus::MessageIllegal).0, 13);
        assert_eq!(status_code(PutStatus::PropertiesSizeExceeded).0, 13);
        assert_eq!(status_code(PutStatus::ServiceNotAvailable).0, 14);
        assert_eq!(status_code(PutStatus::OsPageCacheBusy).0, 2);
        assert_eq!(status_code(PutStatus::UnknownError).0, 1);
    }
}

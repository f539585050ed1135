//! Transactional messages as RocketMQ does them: half messages, END_TRANSACTION, check-back.
//!
//! A producer of a `TransactionMQProducer` sends its message with `TRAN_MSG=true` and the
//! prepared bit in its sysFlag. Until the producer decides, the message must be stored
//! (durable, replicated) but invisible. As Java does, the broker stores it in
//! [`HALF_TOPIC`] queue 0 with the real topic and queue in `REAL_TOPIC`/`REAL_QID`
//! ([`to_half`]); nothing subscribes to that topic. END_TRANSACTION then
//!
//! - *commits*: the half message is read back by its CommitLog offset, checked against the
//!   request (producer group, queue offset, CommitLog offset) and put again to its real
//!   topic and queue with the commit bit in its sysFlag; an op record is written;
//! - *rolls back*: only the op record is written.
//!
//! An op record is a message in [`OP_HALF_TOPIC`] queue 0 with tag `d` whose body is the
//! half message's queue offset (Java's 5.x batches several, comma-separated; both are read).
//! Because half messages, committed copies and op records are ordinary CommitLog records
//! put through [`Broker::put`], they are replicated and gated exactly like sends (a DLedger
//! group counts them only once committed) and survive restarts and failovers.
//!
//! The [`TransactionService`] resolves what producers leave open. Every
//! `transactionCheckInterval` it reads the op queue (collecting resolved half offsets) and
//! walks the half queue from its progress offset. A half message without an op record,
//! older than `transactionTimeOut` (or its `CHECK_IMMUNITY_TIME_IN_SECONDS`), is put again
//! to the half queue with `TRANSACTION_CHECK_TIMES` + 1 and a CHECK_TRANSACTION_STATE for
//! the new copy goes to a connected producer of its group (oneway, as Java's
//! `Broker2Client`); the producer answers with END_TRANSACTION for that copy. After
//! `transactionCheckMax` checks the message is given up and moved to
//! [`CHECK_MAX_TIME_TOPIC`]. Progress is kept as the consumer offsets of group
//! [`CHECK_GROUP`] on the two topics, so it is persisted and copied to slaves with the
//! other offsets; the op progress only moves past op records of half offsets already
//! passed, so the resolved set is rebuilt exactly after a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_message_store::codec::{self, DecodedRecord, RecordFields, decode_record};
use flotilla_message_store::{GetStatus, MessageInner, PutResult, PutStatus};
use flotilla_remoting::lenient::parse_bool;
use flotilla_remoting::{
    Channel, ProcessError, ProcessResult, RemotingCommand, perm, request_code,
    response_code as code,
};
use parking_lot::Mutex;
use tracing::Instrument;

use crate::broker::{Broker, props, remove_property, set_property};
use crate::headers::Ext;
use crate::processor::bad_header;

/// Where half (prepared) messages are stored.
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where op records (resolved half offsets) are stored.
pub const OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where half messages go after `transactionCheckMax` unanswered checks.
pub const CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// The system group whose offsets record the checker's progress (`MixAll.CID_SYS_RMQ_TRANS`).
pub const CHECK_GROUP: &str = "CID_RMQ_SYS_TRANS";
/// Tag of op records (`TransactionalMessageUtil.REMOVE_TAG`).
pub const REMOVE_TAG: &str = "d";

/// Message properties of transactions (`MessageConst`).
pub mod tprops {
    /// `true` on a half message as the producer sends it.
    pub const TRANSACTION_PREPARED: &str = "TRAN_MSG";
    /// The producer group (set by the producer).
    pub const PRODUCER_GROUP: &str = "PGROUP";
    /// Checks sent so far.
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    /// Seconds before the first check (at least `transactionTimeOut`).
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    /// The transaction id (the client's UNIQ_KEY), set on the half message.
    pub const TRANSACTION_ID: &str = "__transactionId__";
}

/// sysFlag transaction bits (`MessageSysFlag`).
pub mod sysflag {
    /// Mask of the transaction type.
    pub const TRANSACTION_MASK: i32 = 0xC;
    /// Not transactional (or a half message as stored).
    pub const NOT_TYPE: i32 = 0;
    /// Prepared (half).
    pub const PREPARED_TYPE: i32 = 0x4;
    /// Committed.
    pub const COMMIT_TYPE: i32 = 0x8;
    /// Rolled back.
    pub const ROLLBACK_TYPE: i32 = 0xC;
}

/// Why END_TRANSACTION could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// No half message at the CommitLog offset.
    #[error("Find prepared transaction message failed")]
    HalfNotFound,
    /// The producer group does not match the half message's.
    #[error("The producer group wrong")]
    GroupMismatch,
    /// The queue offset does not match the half message's.
    #[error("The transaction state table offset wrong")]
    QueueOffsetMismatch,
    /// The half message carries no real topic.
    #[error("the prepared message has no REAL_TOPIC")]
    NoRealTopic,
}

impl TransactionError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::HalfNotFound => "TRANSACTION_HALF_NOT_FOUND",
            Self::GroupMismatch => "TRANSACTION_GROUP_MISMATCH",
            Self::QueueOffsetMismatch => "TRANSACTION_QUEUE_OFFSET_MISMATCH",
            Self::NoRealTopic => "TRANSACTION_NO_REAL_TOPIC",
        }
    }
}

/// Whether a message as sent is a half message (`TRAN_MSG` is "true", and it is not an old
/// client's retry, as Java checks).
pub fn is_prepared(m: &MessageInner) -> bool {
    codec::property(&m.properties, tprops::TRANSACTION_PREPARED).is_some_and(parse_bool)
        && !(m.reconsume_times > 0
            && codec::property(&m.properties, props::DELAY)
                .and_then(|d| d.trim().parse::<i32>().ok())
                .is_some_and(|d| d > 0))
}

/// Rewrites a half message for storage (Java's `parseHalfMessageInner`): real topic and
/// queue in properties, transaction id = UNIQ_KEY, transaction bits cleared, topic
/// [`HALF_TOPIC`] queue 0.
pub fn to_half(m: &mut MessageInner) {
    let mut p = m.properties.clone();
    if let Some(uniq) = codec::property(&p, props::UNIQ_KEY).filter(|u| !u.is_empty()) {
        let uniq = uniq.to_string();
        p = set_property(&p, tprops::TRANSACTION_ID, &uniq);
    }
    p = set_property(&p, props::REAL_TOPIC, &m.topic);
    p = set_property(&p, props::REAL_QID, &m.queue_id.to_string());
    m.properties = p;
    m.sys_flag &= !sysflag::TRANSACTION_MASK;
    m.topic = HALF_TOPIC.to_string();
    m.queue_id = 0;
    m.tags_code = None;
}

/// Tracks resolved half messages and runs the check-back loop.
#[derive(Default)]
pub struct TransactionService {
    /// Half-queue offsets with an op record (at or after the half progress offset), each
    /// with the op-queue offset of that record.
    resolved: Mutex<BTreeMap<i64, i64>>,
    /// Op-queue offset up to which op records were read into `resolved`.
    op_read: Mutex<Option<i64>>,
    /// Serialises END_TRANSACTION against the check loop (one decision per half offset).
    decide: tokio::sync::Mutex<()>,
}

impl TransactionService {
    /// A service with nothing read yet (the first round reads from the saved progress).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the half message at `queue_offset` has an op record already.
    fn is_resolved(&self, queue_offset: i64) -> bool {
        self.resolved.lock().contains_key(&queue_offset)
    }

    /// Runs the check-back loop until the broker stops.
    pub async fn run(broker: Arc<Broker>) {
        loop {
            let interval = broker
                .config()
                .transaction_check_interval
                .max(Duration::from_millis(100));
            tokio::select! {
                () = broker.stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if broker.is_master() {
                check_round(&broker)
                    .instrument(tracing::info_span!("transaction_check"))
                    .await;
            }
        }
    }
}

fn half_progress(b: &Broker) -> i64 {
    b.offsets.query(CHECK_GROUP, HALF_TOPIC, 0).unwrap_or(0)
}

fn op_progress(b: &Broker) -> i64 {
    b.offsets.query(CHECK_GROUP, OP_HALF_TOPIC, 0).unwrap_or(0)
}

/// Half offsets named by one op record's body (one offset, or several comma-separated).
fn op_offsets(body: &[u8]) -> Vec<i64> {
    String::from_utf8_lossy(body)
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Reads op records from where the last read stopped into `resolved`; returns the op-queue
/// offset reached.
fn read_ops(b: &Broker) -> i64 {
    let svc = &b.transactions;
    let mut from = svc.op_read.lock().unwrap_or_else(|| op_progress(b));
    loop {
        let r = b.store.get_message_below(
            OP_HALF_TOPIC,
            0,
            from,
            256,
            4 << 20,
            &|_| true,
            b.read_bound(),
        );
        match r.status {
            GetStatus::Found => {
                for (raw, qoff) in r.messages.iter().zip(r.queue_offsets.iter()) {
                    let offs = decode_record(raw, false)
                        .map(|rec| op_offsets(rec.body))
                        .unwrap_or_default();
                    let mut resolved = svc.resolved.lock();
                    for o in offs {
                        resolved.entry(o).or_insert(*qoff);
                    }
                    from = qoff + 1;
                }
            }
            GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly
                if r.next_begin_offset != from =>
            {
                from = r.next_begin_offset;
            }
            _ => break,
        }
    }
    *svc.op_read.lock() = Some(from);
    from
}

/// One pass of the checker (see the module docs).
async fn check_round(b: &Arc<Broker>) {
    let _serial = b.transactions.decide.lock().await;
    let op_read = read_ops(b);
    let cfg = b.config();
    let timeout_ms = i64::try_from(cfg.transaction_timeout.as_millis()).unwrap_or(i64::MAX);
    let check_max = cfg.transaction_check_max;
    let start = half_progress(b);
    let mut next = start;
    let now = crate::topic_config::now_ms();
    // Copies put back during this round are checked in the next one, not again now.
    let end = b.max_offset_in_queue(HALF_TOPIC, 0);
    'scan: while next < end {
        let r =
            b.store
                .get_message_below(HALF_TOPIC, 0, next, 64, 4 << 20, &|_| true, b.read_bound());
        match r.status {
            GetStatus::Found => {}
            GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly
                if r.next_begin_offset != next =>
            {
                next = r.next_begin_offset;
                continue;
            }
            _ => break,
        }
        for (raw, qoff) in r.messages.iter().zip(r.queue_offsets.iter()) {
            let qoff = *qoff;
            if qoff >= end {
                break 'scan;
            }
            if b.transactions.is_resolved(qoff) {
                next = qoff + 1;
                continue;
            }
            let Ok(rec) = decode_record(raw, false) else {
                tracing::warn!(offset = qoff, "undecodable half message skipped");
                next = qoff + 1;
                continue;
            };
            let immunity = codec::property(rec.properties, tprops::CHECK_IMMUNITY_TIME_IN_SECONDS)
                .and_then(|s| s.trim().parse::<i64>().ok())
                .map_or(0, |s| s.saturating_mul(1000))
                .max(timeout_ms);
            if now.saturating_sub(rec.born_timestamp) < immunity {
                // Younger messages follow: check them in a later round.
                break 'scan;
            }
            let checks = codec::property(rec.properties, tprops::TRANSACTION_CHECK_TIMES)
                .and_then(|s| s.trim().parse::<i32>().ok())
                .unwrap_or(0);
            let ok = if checks >= check_max {
                give_up(b, &rec, qoff).await
            } else {
                check_again(b, &rec, qoff, checks + 1).await
            };
            if !ok {
                // The re-put failed (no quorum, disk full…): keep the position, retry later.
                break 'scan;
            }
            next = qoff + 1;
        }
    }
    if next != start {
        b.offsets.commit(CHECK_GROUP, HALF_TOPIC, 0, next);
    }
    // Op records of half offsets already passed are no longer needed: the op progress
    // moves to the oldest op record that still names a half offset at or after `next`, so a
    // restart re-reads exactly the records that still matter.
    let op_safe = {
        let mut resolved = b.transactions.resolved.lock();
        resolved.retain(|half, _| *half >= next);
        resolved.values().copied().min().unwrap_or(op_read)
    };
    if op_safe > op_progress(b) {
        b.offsets.commit(CHECK_GROUP, OP_HALF_TOPIC, 0, op_safe);
    }
}

/// The half message as a new record for the half queue, with `checks` checks counted.
fn renewed_half(rec: &DecodedRecord<'_>, checks: i32) -> MessageInner {
    MessageInner {
        topic: HALF_TOPIC.to_string(),
        queue_id: 0,
        flag: rec.flag,
        body: Bytes::copy_from_slice(rec.body),
        properties: set_property(
            rec.properties,
            tprops::TRANSACTION_CHECK_TIMES,
            &checks.to_string(),
        ),
        sys_flag: rec.sys_flag,
        born_timestamp: rec.born_timestamp,
        born_host: rec.born_host,
        reconsume_times: rec.reconsume_times,
        prepared_transaction_offset: rec.prepared_transaction_offset,
        tags_code: None,
    }
}

fn stored(r: &PutResult) -> bool {
    matches!(r.status, PutStatus::PutOk | PutStatus::FlushDiskTimeout) && r.append.is_some()
}

/// Puts the half message back with one more check counted, then asks a producer of its
/// group about the new copy. Returns whether the copy was stored.
async fn check_again(b: &Arc<Broker>, rec: &DecodedRecord<'_>, qoff: i64, checks: i32) -> bool {
    let renewed = renewed_half(rec, checks);
    let properties = renewed.properties.clone();
    let r = b.put(vec![renewed]).await;
    let Some(a) = r.append.as_ref().filter(|_| stored(&r)) else {
        tracing::warn!(
            offset = qoff,
            status = r.status.code(),
            "cannot put a half message back"
        );
        return false;
    };
    let (new_qoff, new_phys) = (a.logical_offset, a.wrote_offset);
    let group = codec::property(rec.properties, tprops::PRODUCER_GROUP).unwrap_or("");
    let Some(ch) = b.clients.producer_channel(group) else {
        tracing::warn!(
            group,
            offset = new_qoff,
            "no producer of the group to check a transaction with"
        );
        return true;
    };
    match check_request(b, rec, &properties, new_qoff, new_phys) {
        Ok(cmd) => {
            tracing::info!(
                group,
                offset = new_qoff,
                checks,
                "checking transaction state"
            );
            tokio::spawn(async move {
                if let Err(e) = ch.invoke_oneway(cmd).await {
                    tracing::debug!(error = %e, "CHECK_TRANSACTION_STATE not sent");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot encode CHECK_TRANSACTION_STATE"),
    }
    true
}

/// CHECK_TRANSACTION_STATE for the half copy at (`qoff`, `phys`) with `properties`: the
/// header Java's `sendCheckMessage` fills, and the message with its real topic and queue
/// (and its check count) as body.
fn check_request(
    b: &Broker,
    rec: &DecodedRecord<'_>,
    properties: &str,
    qoff: i64,
    phys: i64,
) -> Result<RemotingCommand, codec::CodecError> {
    let real_topic = codec::property(rec.properties, props::REAL_TOPIC).unwrap_or(HALF_TOPIC);
    let real_qid = codec::property(rec.properties, props::REAL_QID)
        .and_then(|q| q.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let uniq = codec::property(rec.properties, props::UNIQ_KEY).unwrap_or("");
    let offset_msg_id = codec::message_id(&b.store_host, phys);
    let fields = RecordFields {
        topic: real_topic,
        queue_id: real_qid,
        flag: rec.flag,
        body: rec.body,
        properties,
        sys_flag: rec.sys_flag,
        born_timestamp: rec.born_timestamp,
        born_host: rec.born_host,
        store_timestamp: rec.store_timestamp,
        store_host: rec.store_host,
        reconsume_times: rec.reconsume_times,
        prepared_transaction_offset: rec.prepared_transaction_offset,
    };
    let mut body = Vec::new();
    codec::encode_record(&mut body, &fields, qoff, phys, codec::body_crc(rec.body))?;
    Ok(
        RemotingCommand::request(request_code::CHECK_TRANSACTION_STATE)
            .with_ext("topic", real_topic)
            .with_ext("tranStateTableOffset", qoff)
            .with_ext("commitLogOffset", phys)
            .with_ext("msgId", uniq)
            .with_ext("transactionId", uniq)
            .with_ext("offsetMsgId", offset_msg_id)
            .with_ext("bname", &b.config().broker_name)
            .with_body(body),
    )
}

/// After `transactionCheckMax` checks: moves the half message to [`CHECK_MAX_TIME_TOPIC`]
/// (kept for an operator, never delivered to the real topic).
async fn give_up(b: &Arc<Broker>, rec: &DecodedRecord<'_>, qoff: i64) -> bool {
    if let Err(e) = b
        .topics
        .create_if_absent(CHECK_MAX_TIME_TOPIC, 1, perm::READ_WRITE)
    {
        tracing::warn!(error = %e, "cannot create {CHECK_MAX_TIME_TOPIC}");
    }
    let mut m = renewed_half(rec, 0);
    m.properties = rec.properties.to_string();
    m.topic = CHECK_MAX_TIME_TOPIC.to_string();
    let r = b.put(vec![m]).await;
    if stored(&r) {
        tracing::warn!(
            offset = qoff,
            "transaction checked transactionCheckMax times; given up"
        );
        true
    } else {
        false
    }
}

/// Copies of transaction `id` still waiting in the half queue (at or after the checker's
/// progress, not yet resolved). The pending part of the queue is short — it holds what is
/// younger than `transactionTimeOut` and what awaits an answer — and the scan is bounded.
fn pending_copies(b: &Broker, id: &str) -> Vec<i64> {
    const MAX_SCAN: usize = 100_000;
    let mut from = half_progress(b);
    let mut scanned = 0;
    let mut out = Vec::new();
    while scanned < MAX_SCAN {
        let r =
            b.store
                .get_message_below(HALF_TOPIC, 0, from, 256, 8 << 20, &|_| true, b.read_bound());
        if r.status != GetStatus::Found {
            break;
        }
        for (raw, qoff) in r.messages.iter().zip(r.queue_offsets.iter()) {
            scanned += 1;
            from = qoff + 1;
            let same = decode_record(raw, false)
                .is_ok_and(|rec| codec::property(rec.properties, props::UNIQ_KEY) == Some(id));
            if same && !b.transactions.is_resolved(*qoff) {
                out.push(*qoff);
            }
        }
    }
    out
}

/// The op record deciding half offsets `qoffs` (one offset, or several comma-separated as
/// Java 5's batched op records).
fn op_record(rec: &DecodedRecord<'_>, qoffs: &[i64]) -> MessageInner {
    let body = qoffs
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut m = MessageInner::new(OP_HALF_TOPIC, 0, body.into_bytes());
    m.properties = set_property("", props::TAGS, REMOVE_TAG);
    m.born_timestamp = crate::topic_config::now_ms();
    m.born_host = rec.store_host;
    m
}

/// END_TRANSACTION (37): commit or roll back a half message (see the module docs).
#[tracing::instrument(skip_all, fields(group = Ext(req).opt("producerGroup").unwrap_or(""), request_id = req.opaque))]
pub async fn end_transaction(
    b: &Arc<Broker>,
    _ch: &Channel,
    req: &RemotingCommand,
) -> ProcessResult {
    let e = Ext(req);
    let group = e.string("producerGroup").map_err(bad_header)?;
    let table_offset = e.i64("tranStateTableOffset").map_err(bad_header)?;
    let phys = e.i64("commitLogOffset").map_err(bad_header)?;
    let decision = e.i32("commitOrRollback").map_err(bad_header)?;
    let from_check = req.ext_bool("fromTransactionCheck");
    if !b.is_master() {
        return Err(ProcessError::new(
            code::SLAVE_NOT_AVAILABLE,
            "the broker is a slave; end the transaction on the master",
        ));
    }
    if decision != sysflag::COMMIT_TYPE && decision != sysflag::ROLLBACK_TYPE {
        // TRANSACTION_NOT_TYPE (unknown) or anything else: nothing to do yet, no answer.
        tracing::info!(decision, from_check, "transaction left open");
        return Ok(None);
    }
    let _serial = b.transactions.decide.lock().await;
    let raw = b
        .store
        .look_message_by_offset(phys)
        .ok_or_else(|| ProcessError::system(TransactionError::HalfNotFound.to_string()))?;
    let rec = decode_record(&raw, false)
        .ok()
        .filter(|r| r.topic == HALF_TOPIC && r.phys_offset == phys)
        .ok_or_else(|| ProcessError::system(TransactionError::HalfNotFound.to_string()))?;
    if codec::property(rec.properties, tprops::PRODUCER_GROUP) != Some(group) {
        return Err(ProcessError::system(
            TransactionError::GroupMismatch.to_string(),
        ));
    }
    if rec.queue_offset != table_offset {
        return Err(ProcessError::system(
            TransactionError::QueueOffsetMismatch.to_string(),
        ));
    }
    if b.transactions.is_resolved(table_offset) {
        // Already decided (a repeated END_TRANSACTION): nothing is delivered twice.
        return super_ok();
    }
    // The checker may have put copies of this half message back for a check (the producer
    // answered late, or answers the check of an older copy): they are decided with it, in
    // the same op record, so no later check revives the transaction.
    let mut decided = vec![table_offset];
    if table_offset < half_progress(b)
        && let Some(id) = codec::property(rec.properties, props::UNIQ_KEY).filter(|u| !u.is_empty())
    {
        decided.extend(pending_copies(b, id));
    }
    if decision == sysflag::COMMIT_TYPE {
        let mut msg = committed(&rec)?;
        // Committed timer messages wait for their due time (Java's handleScheduleMessage
        // applies to the commit, not to the half message).
        crate::timer::transform(&mut msg, &b.config(), crate::topic_config::now_ms())
            .map_err(|e| ProcessError::new(e.response_code(), e.to_string()))?;
        let r = b.put(vec![msg]).await;
        if !stored(&r) {
            let (c, remark) = crate::processor::send::status_code(r.status);
            return Err(ProcessError::new(c, remark));
        }
    }
    let r = b.put(vec![op_record(&rec, &decided)]).await;
    let Some(op_qoff) = r
        .append
        .as_ref()
        .filter(|_| stored(&r))
        .map(|a| a.logical_offset)
    else {
        let (c, remark) = crate::processor::send::status_code(r.status);
        return Err(ProcessError::new(c, remark));
    };
    let mut resolved = b.transactions.resolved.lock();
    for o in &decided {
        resolved.entry(*o).or_insert(op_qoff);
    }
    drop(resolved);
    tracing::info!(
        offset = table_offset,
        commit = decision == sysflag::COMMIT_TYPE,
        from_check,
        "transaction ended"
    );
    super_ok()
}

fn super_ok() -> ProcessResult {
    Ok(Some(RemotingCommand::success()))
}

/// The committed message for its real topic (Java's `endMessageTransaction`).
fn committed(rec: &DecodedRecord<'_>) -> Result<MessageInner, ProcessError> {
    let topic = codec::property(rec.properties, props::REAL_TOPIC)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ProcessError::system(TransactionError::NoRealTopic.to_string()))?
        .to_string();
    let queue_id = codec::property(rec.properties, props::REAL_QID)
        .and_then(|q| q.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let mut p = remove_property(rec.properties, props::REAL_TOPIC);
    p = remove_property(&p, props::REAL_QID);
    p = remove_property(&p, tprops::TRANSACTION_PREPARED);
    Ok(MessageInner {
        topic,
        queue_id,
        flag: rec.flag,
        body: Bytes::copy_from_slice(rec.body),
        properties: p,
        sys_flag: (rec.sys_flag & !sysflag::TRANSACTION_MASK) | sysflag::COMMIT_TYPE,
        born_timestamp: rec.born_timestamp,
        born_host: rec.born_host,
        reconsume_times: rec.reconsume_times,
        prepared_transaction_offset: rec.phys_offset,
        tags_code: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_messages_keep_their_real_topic_and_lose_the_transaction_bits() {
        let mut m = MessageInner::new("Orders", 3, &b"x"[..]);
        m.properties = set_property("", tprops::TRANSACTION_PREPARED, "true");
        m.properties = set_property(&m.properties, props::UNIQ_KEY, "U1");
        m.sys_flag = sysflag::PREPARED_TYPE | 0x2;
        assert!(is_prepared(&m));
        to_half(&mut m);
        assert_eq!((m.topic.as_str(), m.queue_id), (HALF_TOPIC, 0));
        assert_eq!(m.sys_flag, 0x2);
        assert_eq!(
            codec::property(&m.properties, props::REAL_TOPIC),
            Some("Orders")
        );
        assert_eq!(codec::property(&m.properties, props::REAL_QID), Some("3"));
        assert_eq!(
            codec::property(&m.properties, tprops::TRANSACTION_ID),
            Some("U1")
        );
        let mut not = MessageInner::new("T", 0, &b"x"[..]);
        not.properties = set_property("", tprops::TRANSACTION_PREPARED, "1");
        assert!(!is_prepared(&not), "parseBoolean(\"1\") is false");
    }

    #[test]
    fn op_bodies_name_one_or_many_half_offsets() {
        assert_eq!(op_offsets(b"17"), vec![17]);
        assert_eq!(op_offsets(b"1,2, 3"), vec![1, 2, 3]);
        assert!(op_offsets(b"x").is_empty());
    }
}

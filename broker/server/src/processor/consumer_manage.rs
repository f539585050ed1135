//! Consumer offsets and membership: QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15),
//! GET_CONSUMER_LIST_BY_GROUP (38), LOCK_BATCH_MQ (41), UNLOCK_BATCH_MQ (42).
//!
//! Offsets are committed in memory and persisted by the broker's housekeeping (see
//! `consumer_offset`). A group that never committed on a queue gets offset 0 when the
//! queue is empty, and QUERY_NOT_FOUND otherwise so the client applies its
//! `consumeFromWhere`. Queue locks serve orderly consumers (one owner per queue).

use flotilla_remoting::protocol::{
    ConsumerIdList, LockBatchRequestBody, LockBatchResponseBody, decode_body, encode_body,
};
use flotilla_remoting::{ProcessError, ProcessResult, RemotingCommand, response_code as code};

use super::{bad_header, ok};
use crate::broker::Broker;
use crate::headers::Ext;

/// QUERY_CONSUMER_OFFSET.
pub fn query_offset(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let e = Ext(req);
    let group = e.string("consumerGroup").map_err(bad_header)?;
    let topic = e.topic("topic").map_err(bad_header)?;
    let qid = e.queue_id("queueId").map_err(bad_header)?;
    let set_zero = e.bool_opt("setZeroIfNotFound");
    if let Some(off) = b.offsets.query(group, topic, qid) {
        return Ok(Some(RemotingCommand::success().with_ext("offset", off)));
    }
    if set_zero == Some(false) {
        return Err(ProcessError::new(
            code::QUERY_NOT_FOUND,
            "Not found, do not set to zero, maybe this group boot first",
        ));
    }
    // Java answers 0 for a group without an offset when the queue still starts at 0 and
    // its first message is "in memory" (`checkInMemByConsumeOffset`): a new
    // CONSUME_FROM_LAST_OFFSET group then reads a young queue from its start instead of
    // skipping what was sent before its first rebalance. An empty queue is 0 either way.
    let min = b.store.min_offset_in_queue(topic, qid);
    let max = b.max_offset_in_queue(topic, qid);
    let first_in_memory = || {
        b.store
            .commitlog_offset_in_queue(topic, qid, 0)
            .is_some_and(|phys| {
                let behind = b.store.commitlog_max_offset().saturating_sub(phys);
                u64::try_from(behind)
                    .is_ok_and(|behind| behind <= crate::page_cache::in_memory_bytes(&b.config()))
            })
    };
    if min <= 0 && (max == 0 || first_in_memory()) {
        return Ok(Some(RemotingCommand::success().with_ext("offset", 0)));
    }
    Err(ProcessError::new(
        code::QUERY_NOT_FOUND,
        "Not found, maybe this group consumer boot first",
    ))
}

/// UPDATE_CONSUMER_OFFSET.
pub fn update_offset(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let e = Ext(req);
    let group = e.string("consumerGroup").map_err(bad_header)?;
    let topic = e.topic("topic").map_err(bad_header)?;
    let qid = e.queue_id("queueId").map_err(bad_header)?;
    let off = e.i64("commitOffset").map_err(bad_header)?;
    if off < 0 {
        return Err(ProcessError::invalid(format!(
            "commitOffset {off} is negative"
        )));
    }
    b.offsets.commit(group, topic, qid, off);
    ok()
}

/// GET_CONSUMER_LIST_BY_GROUP.
pub fn consumer_list(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let group = Ext(req).string("consumerGroup").map_err(bad_header)?;
    let ids = b.clients.consumer_ids(group);
    tracing::debug!(group, ?ids, "consumer list");
    if ids.is_empty() {
        return Err(ProcessError::system(format!(
            "no consumer for this group, {group}"
        )));
    }
    let body = encode_body(&ConsumerIdList {
        consumer_id_list: ids,
    })?;
    Ok(Some(RemotingCommand::success().with_body(body)))
}

/// LOCK_BATCH_MQ.
pub fn lock(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let body: LockBatchRequestBody = decode_body(&req.body)?;
    let mqs: Vec<_> = body.mq_set.iter().cloned().collect();
    let locked = b.locks.lock(&body.consumer_group, &body.client_id, &mqs);
    let resp = LockBatchResponseBody {
        lock_ok_mq_set: locked.into_iter().collect(),
    };
    Ok(Some(
        RemotingCommand::success().with_body(encode_body(&resp)?),
    ))
}

/// UNLOCK_BATCH_MQ.
pub fn unlock(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let body: LockBatchRequestBody = decode_body(&req.body)?;
    let mqs: Vec<_> = body.mq_set.iter().cloned().collect();
    b.locks.unlock(&body.consumer_group, &body.client_id, &mqs);
    ok()
}

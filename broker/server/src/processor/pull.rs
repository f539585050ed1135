//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361), with long polling and tag filtering.
//!
//! A pull reads up to `maxMsgNums` raw records from the ConsumeQueue position it names,
//! filtering by tag code first and by the real TAGS property second (hash collisions). With
//! the suspend bit and nothing to return, the request is held (up to the header's
//! `suspendTimeoutMillis`, re-checking every 5 s) until the store reports a new message for
//! the queue. The commit bit stores the consumer's offset on the way in. Store statuses map
//! to response codes as Java's `PullMessageProcessor` does. In DLedger mode a pull reads
//! only below the commit offset ([`Broker::read_bound`]); held pulls are woken when it moves.

use std::time::Duration;

use bytes::BytesMut;
use flotilla_message_store::codec::{self, decode_record};
use flotilla_message_store::{GetMessageResult, GetStatus};
use flotilla_remoting::{
    Channel, ProcessError, ProcessResult, RemotingCommand, perm, response_code as code,
};

use super::bad_header;
use crate::broker::{Broker, props};
use crate::filter::TagFilter;
use crate::headers::PullHeader;

const RECHECK: Duration = Duration::from_secs(5);
const MAX_HOLD: Duration = Duration::from_secs(60);

/// What a pull turned into before long polling.
enum Outcome {
    Reply(RemotingCommand),
    NotFound(GetMessageResult),
}

fn header_fields(resp: &mut RemotingCommand, next: i64, min: i64, max: i64) {
    resp.put_ext("nextBeginOffset", next);
    resp.put_ext("minOffset", min);
    resp.put_ext("maxOffset", max);
    resp.put_ext("suggestWhichBrokerId", 0);
}

fn attempt(b: &Broker, h: &PullHeader, filter: &TagFilter) -> Outcome {
    let max_bytes = h
        .max_msg_bytes
        .and_then(|m| usize::try_from(m).ok())
        .filter(|m| *m > 0)
        .unwrap_or(usize::MAX)
        .min(8 << 20);
    // DLedger: only committed records exist for consumers (the bound is i64::MAX otherwise).
    let bound = b.read_bound();
    // `matches_code` already accepts every code when the subscription is `*`.
    let r = b.store.get_message_below(
        &h.topic,
        h.queue_id,
        h.queue_offset,
        h.max_msg_nums,
        max_bytes,
        &|c| filter.matches_code(c),
        bound,
    );
    let (mut c, mut next) = (code::SUCCESS, r.next_begin_offset);
    match r.status {
        GetStatus::Found => {}
        GetStatus::NoMatchedMessage => c = code::PULL_RETRY_IMMEDIATELY,
        GetStatus::OffsetFoundNull | GetStatus::OffsetOverflowOne => return Outcome::NotFound(r),
        GetStatus::NoMessageInQueue | GetStatus::NoMatchedLogicQueue => {
            if h.queue_offset != 0 {
                c = code::PULL_OFFSET_MOVED;
                next = 0;
            } else {
                return Outcome::NotFound(r);
            }
        }
        GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => c = code::PULL_OFFSET_MOVED,
    }
    let mut resp = RemotingCommand::response(c, None);
    if c == code::SUCCESS {
        let total: usize = r.buffer_total_size();
        let mut body = BytesMut::with_capacity(total);
        let mut n = 0u64;
        for m in &r.messages {
            if !filter.is_all() {
                let tags = decode_record(m, false).ok().and_then(|rec| {
                    codec::property(rec.properties, props::TAGS).map(str::to_string)
                });
                if !filter.matches_tags(tags.as_deref()) {
                    continue;
                }
            }
            body.extend_from_slice(m);
            n += 1;
        }
        b.stats.on_get(n);
        if n == 0 {
            resp.code = code::PULL_RETRY_IMMEDIATELY;
        } else {
            resp.body = body.freeze();
        }
    } else {
        b.stats.on_get(0);
    }
    header_fields(&mut resp, next, r.min_offset, r.max_offset);
    // Classic HA: point a consumer that fell far behind at a slave (`slaveReadEnable`).
    if b.ha.config().slave_read_enable
        && let Some(last) = r.messages.last()
        && let Ok(rec) = decode_record(last, false)
        && let Some(id) = crate::ha::suggest_broker_id(b, &h.consumer_group, rec.phys_offset)
    {
        resp.put_ext("suggestWhichBrokerId", id);
    }
    Outcome::Reply(resp)
}

fn not_found(h: &PullHeader, r: &GetMessageResult) -> RemotingCommand {
    let mut resp = RemotingCommand::response(code::PULL_NOT_FOUND, None);
    let next = if r.status == GetStatus::NoMatchedLogicQueue {
        h.queue_offset
    } else {
        r.next_begin_offset.max(h.queue_offset)
    };
    header_fields(&mut resp, next, r.min_offset, r.max_offset);
    resp
}

/// Handles a pull.
pub async fn pull(b: &Broker, _ch: &Channel, req: RemotingCommand) -> ProcessResult {
    let h = PullHeader::parse(&req).map_err(bad_header)?;
    let cfg = b.config();
    if !perm::is_readable(cfg.broker_permission) {
        return Err(ProcessError::new(
            code::NO_PERMISSION,
            format!(
                "the broker[{}] pulling message is forbidden",
                cfg.broker_name
            ),
        ));
    }
    let group = b
        .groups
        .get_or_create(&h.consumer_group, cfg.auto_create_subscription_group)
        .map_err(|e| ProcessError::system(e.to_string()))?
        .ok_or_else(|| {
            ProcessError::new(
                code::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group [{}] does not exist", h.consumer_group),
            )
        })?;
    if !group.consume_enable {
        return Err(ProcessError::new(
            code::NO_PERMISSION,
            format!("subscription group no permission, {}", h.consumer_group),
        ));
    }
    let Some((tperm, rq)) = b.topics.with(&h.topic, |t| (t.perm, t.read_queue_nums)) else {
        return Err(ProcessError::new(
            code::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist, apply first please!", h.topic),
        ));
    };
    if !perm::is_readable(tperm) {
        return Err(ProcessError::new(
            code::NO_PERMISSION,
            format!("the topic[{}] pulling message is forbidden", h.topic),
        ));
    }
    if h.queue_id >= rq {
        return Err(ProcessError::system(format!(
            "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{rq}]",
            h.queue_id, h.topic
        )));
    }
    // As in Java: the request's own subscription counts only when its sysFlag says it carries
    // one (pull consumers). Push consumers leave the flag clear and send an empty
    // `subscription`; their filter is what they registered by heartbeat. Without a registered
    // subscription we fall back to the header (Java answers SUBSCRIPTION_NOT_EXIST instead,
    // which only delays a consumer whose heartbeat has not arrived yet).
    let (expression, expression_type) = if h.has_subscription() {
        (h.subscription.clone(), h.expression_type.clone())
    } else {
        match b.clients.subscription(&h.consumer_group, &h.topic) {
            Some((expr, kind)) => (Some(expr), Some(kind)),
            None => (h.subscription.clone(), h.expression_type.clone()),
        }
    };
    let filter = TagFilter::parse(expression.as_deref(), expression_type.as_deref())
        .map_err(|e| ProcessError::new(code::SUBSCRIPTION_PARSE_FAILED, e.to_string()))?;
    if let Some(reset) = b
        .offsets
        .take_reset(&h.consumer_group, &h.topic, h.queue_id)
    {
        let mut resp = RemotingCommand::response(code::PULL_OFFSET_MOVED, None);
        header_fields(
            &mut resp,
            reset,
            b.store.min_offset_in_queue(&h.topic, h.queue_id),
            b.max_offset_in_queue(&h.topic, h.queue_id),
        );
        return Ok(Some(resp));
    }
    if h.commit() && h.commit_offset >= 0 && b.is_master() {
        b.offsets
            .commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    }
    let notify = b.long_polling.notify_for(&h.topic, h.queue_id);
    let hold = if !h.suspend() {
        Duration::ZERO
    } else if cfg.long_polling_enable {
        Duration::from_millis(u64::try_from(h.suspend_timeout_millis).unwrap_or(0)).min(MAX_HOLD)
    } else {
        cfg.short_polling_time
    };
    let deadline = tokio::time::Instant::now() + hold;
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match attempt(b, &h, &filter) {
            Outcome::Reply(resp) => {
                if let Some(next) = resp
                    .ext("nextBeginOffset")
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    b.offsets
                        .record_pull(&h.consumer_group, &h.topic, h.queue_id, next);
                }
                tracing::debug!(
                    group = %h.consumer_group,
                    topic = %h.topic,
                    queue = h.queue_id,
                    offset = h.queue_offset,
                    commit = h.commit_offset,
                    code = resp.code,
                    next = resp.ext("nextBeginOffset").unwrap_or(""),
                    "pull answered"
                );
                return Ok(Some(resp));
            }
            Outcome::NotFound(r) => {
                let now = tokio::time::Instant::now();
                if now >= deadline || b.stop.is_cancelled() {
                    tracing::debug!(
                        group = %h.consumer_group,
                        topic = %h.topic,
                        queue = h.queue_id,
                        offset = h.queue_offset,
                        status = ?r.status,
                        next = r.next_begin_offset,
                        "pull found nothing"
                    );
                    b.stats.on_get(0);
                    return Ok(Some(not_found(&h, &r)));
                }
                let wake = deadline.min(now + RECHECK);
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep_until(wake) => {}
                    () = b.stop.cancelled() => {}
                }
            }
        }
    }
}

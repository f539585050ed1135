//! Lookups: QUERY_MESSAGE (12, by key or unique key), VIEW_MESSAGE_BY_ID (33),
//! GET_MAX_OFFSET (30), GET_MIN_OFFSET (31), SEARCH_OFFSET_BY_TIMESTAMP (29) and
//! GET_EARLIEST_MSG_STORETIME (32).
//!
//! Message bodies are answered as stored (raw CommitLog records), so clients decode them
//! with the same code they use for pulls.

use bytes::BytesMut;
use flotilla_message_store::Boundary;
use flotilla_remoting::{ProcessError, ProcessResult, RemotingCommand, response_code as code};

use super::bad_header;
use crate::broker::Broker;
use crate::headers::Ext;

/// QUERY_MESSAGE.
pub fn query_message(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let e = Ext(req);
    let topic = e.topic("topic").map_err(bad_header)?;
    let key = e.string("key").map_err(bad_header)?;
    let max = e.i32_opt("maxNum").unwrap_or(32).clamp(1, 64_000);
    let begin = e.i64_opt("beginTimestamp").unwrap_or(0);
    let end = e.i64_opt("endTimestamp").unwrap_or(i64::MAX);
    let unique = req.ext_bool("_UNIQUE_KEY_QUERY");
    let found = b.store.query_message(
        topic,
        key,
        usize::try_from(max).unwrap_or(32),
        begin,
        end,
        unique,
    );
    if found.is_empty() {
        return Err(ProcessError::new(
            code::QUERY_NOT_FOUND,
            "can not find message, maybe time range not correct",
        ));
    }
    let mut body = BytesMut::new();
    for m in &found {
        body.extend_from_slice(m);
    }
    Ok(Some(
        RemotingCommand::success()
            .with_ext("indexLastUpdateTimestamp", crate::topic_config::now_ms())
            .with_ext("indexLastUpdatePhyoffset", b.store.commitlog_max_offset())
            .with_body(body.freeze()),
    ))
}

/// VIEW_MESSAGE_BY_ID.
pub fn view_message(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let off = Ext(req).i64("offset").map_err(bad_header)?;
    match b.store.look_message_by_offset(off) {
        Some(raw) => Ok(Some(RemotingCommand::success().with_body(raw))),
        None => Err(ProcessError::system(format!(
            "can not find message by the offset, {off}"
        ))),
    }
}

/// GET_MAX_OFFSET.
pub fn max_offset(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let e = Ext(req);
    let topic = e.topic("topic").map_err(bad_header)?;
    let qid = e.queue_id("queueId").map_err(bad_header)?;
    Ok(Some(
        RemotingCommand::success().with_ext("offset", b.max_offset_in_queue(topic, qid)),
    ))
}

/// GET_MIN_OFFSET.
pub fn min_offset(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let e = Ext(req);
    let topic = e.topic("topic").map_err(bad_header)?;
    let qid = e.queue_id("queueId").map_err(bad_header)?;
    Ok(Some(RemotingCommand::success().with_ext(
        "offset",
        b.store.min_offset_in_queue(topic, qid),
    )))
}

/// SEARCH_OFFSET_BY_TIMESTAMP.
pub fn search_offset(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let e = Ext(req);
    let topic = e.topic("topic").map_err(bad_header)?;
    let qid = e.queue_id("queueId").map_err(bad_header)?;
    let ts = e.i64("timestamp").map_err(bad_header)?;
    let boundary = match e.opt("boundaryType").map(|s| s.trim().to_ascii_lowercase()) {
        None => Boundary::Lower,
        Some(s) if s == "lower" => Boundary::Lower,
        Some(s) if s == "upper" => Boundary::Upper,
        Some(s) => {
            return Err(ProcessError::invalid(format!(
                "boundaryType {s:?} is not lower or upper"
            )));
        }
    };
    Ok(Some(RemotingCommand::success().with_ext(
        "offset",
        b.store.offset_by_time(topic, qid, ts, boundary),
    )))
}

/// GET_EARLIEST_MSG_STORETIME.
pub fn earliest_time(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let e = Ext(req);
    let topic = e.topic("topic").map_err(bad_header)?;
    let qid = e.queue_id("queueId").map_err(bad_header)?;
    let ts = b.store.earliest_message_time(topic, qid).unwrap_or(-1);
    Ok(Some(RemotingCommand::success().with_ext("timestamp", ts)))
}

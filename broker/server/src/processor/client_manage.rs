//! HEART_BEAT (34) and UNREGISTER_CLIENT (35).
//!
//! Heartbeats tell the broker which producer and consumer groups a connection serves and
//! what the consumers subscribe to. For each consumer group the broker auto-creates the
//! subscription group (when allowed) and its `%RETRY%` topic — so the retry route exists
//! before the first failure — then records the member (see `client_manager`).

use std::time::Instant;

use flotilla_remoting::protocol::{HeartbeatData, decode_body};
use flotilla_remoting::{Channel, ProcessError, ProcessResult, RemotingCommand, perm};

use super::{bad_header, ok};
use crate::broker::Broker;
use crate::client_manager::ClientInfo;
use crate::headers::Ext;
use crate::topic_config::retry_topic;

/// HEART_BEAT.
pub fn heartbeat(b: &Broker, ch: &Channel, req: &RemotingCommand) -> ProcessResult {
    let hb: HeartbeatData = decode_body(&req.body)?;
    if hb.client_id.is_empty() {
        return Err(ProcessError::invalid("heartbeat without clientID"));
    }
    let cfg = b.config();
    let info = ClientInfo {
        channel: ch.clone(),
        client_id: hb.client_id.clone(),
        language: req.language,
        version: req.version,
        last_update: Instant::now(),
    };
    for c in &hb.consumer_data_set {
        if c.group_name.is_empty() {
            continue;
        }
        let g = b
            .groups
            .get_or_create(&c.group_name, cfg.auto_create_subscription_group)
            .map_err(|e| ProcessError::system(e.to_string()))?;
        if let Some(g) = g {
            if !g.notify_consumer_ids_changed_enable {
                b.clients.quiet_groups.lock().insert(c.group_name.clone());
            }
            if g.retry_queue_nums > 0
                && let Err(e) = b.topics.create_if_absent(
                    &retry_topic(&c.group_name),
                    g.retry_queue_nums,
                    perm::READ_WRITE,
                )
            {
                tracing::warn!(group = %c.group_name, error = %e, "cannot create retry topic");
            }
        }
        b.clients.register_consumer(info.clone(), c);
    }
    for p in &hb.producer_data_set {
        if !p.group_name.is_empty() {
            b.clients.register_producer(&p.group_name, info.clone());
        }
    }
    ok()
}

/// UNREGISTER_CLIENT.
pub fn unregister(b: &Broker, ch: &Channel, req: &RemotingCommand) -> ProcessResult {
    let e = Ext(req);
    let client_id = e.string("clientID").map_err(bad_header)?;
    if let Some(g) = e.opt("producerGroup") {
        b.clients.unregister_producer(g, ch.id());
    }
    if let Some(g) = e.opt("consumerGroup") {
        b.clients.unregister_consumer(g, ch.id(), client_id);
    }
    ok()
}

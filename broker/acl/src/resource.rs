//! What a request needs: the topics and groups it touches, and whether it is an admin
//! request.
//!
//! The mapping is Java's `PlainAccessResource.parse` (rmq tag `rocketmq-all-5.3.2`, the
//! last with ACL 1.0): a send needs PUB on its topic (SUB on a retry topic, which a
//! consumer sends back to); pulls, heartbeats, offset commits, unregistering and consumer
//! lists need SUB on the group (keyed as its retry topic `%RETRY%<group>`) and on the
//! topics. Other codes need no resource, only a valid signature of a known account.
//!
//! Admin codes on the broker are Java's `Permission.ADMIN_CODE` (create/delete topic,
//! create/delete subscription group, update broker config, static topics, the ACL admin
//! codes) plus the codes that change offsets or data for everyone, which Flotilla also
//! reserves for admin accounts: resetting offsets, cloning group offsets, deleting files
//! and moving DLedger leadership. The nameserver has no ACL in Java; Flotilla's reserves
//! every code that changes nameserver state (registration, heartbeats, KV config, topic
//! routes, write permissions, config) for admin accounts and leaves route and config reads
//! open (see [`crate::check`]).

use flotilla_remoting::protocol::{HeartbeatData, decode_body};
use flotilla_remoting::{RemotingCommand, request_code};

use crate::perm::Perm;

/// Prefix of a group's retry topic, by which groups are keyed.
pub const RETRY_PREFIX: &str = "%RETRY%";

/// The trace topic: sends to it skip the permission check (Java does the same).
pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";

/// `%RETRY%<group>`.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// Whether a resource is a group (its retry topic).
pub fn is_group(resource: &str) -> bool {
    resource.starts_with(RETRY_PREFIX)
}

/// `Topic:x` or `Group:g`, for remarks.
pub fn describe(resource: &str) -> String {
    match resource.strip_prefix(RETRY_PREFIX) {
        Some(g) => format!("Group:{g}"),
        None => format!("Topic:{resource}"),
    }
}

/// ACL request codes of RocketMQ 4.9/5.x (not served here; reserved for admins so that a
/// later implementation cannot be reached by anyone else).
const UPDATE_AND_CREATE_ACL_CONFIG: i32 = 50;
const DELETE_ACL_CONFIG: i32 = 51;
const GET_BROKER_CLUSTER_ACL_INFO: i32 = 52;
const UPDATE_GLOBAL_WHITE_ADDRS_CONFIG: i32 = 53;
const UPDATE_AND_CREATE_STATIC_TOPIC: i32 = 513;

/// Broker codes only an admin account may use.
pub const BROKER_ADMIN_CODES: &[i32] = &[
    // Java's Permission.ADMIN_CODE.
    request_code::UPDATE_AND_CREATE_TOPIC,
    request_code::UPDATE_BROKER_CONFIG,
    request_code::DELETE_TOPIC_IN_BROKER,
    request_code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    request_code::DELETE_SUBSCRIPTIONGROUP,
    UPDATE_AND_CREATE_STATIC_TOPIC,
    UPDATE_AND_CREATE_ACL_CONFIG,
    DELETE_ACL_CONFIG,
    GET_BROKER_CLUSTER_ACL_INFO,
    UPDATE_GLOBAL_WHITE_ADDRS_CONFIG,
    // Flotilla: they change every consumer's offsets, delete data or move leadership.
    request_code::INVOKE_BROKER_TO_RESET_OFFSET,
    request_code::CLONE_GROUP_OFFSET,
    request_code::TRIGGER_DELETE_FILES,
    request_code::FLOTILLA_TRANSFER_LEADERSHIP,
];

/// Nameserver codes only an admin account may use: everything that changes its state.
pub const NAMESRV_ADMIN_CODES: &[i32] = &[
    request_code::PUT_KV_CONFIG,
    request_code::DELETE_KV_CONFIG,
    request_code::REGISTER_BROKER,
    request_code::UNREGISTER_BROKER,
    request_code::BROKER_HEARTBEAT,
    // It also refreshes the broker's liveness.
    request_code::QUERY_DATA_VERSION,
    request_code::WIPE_WRITE_PERM_OF_BROKER,
    request_code::ADD_WRITE_PERM_OF_BROKER,
    request_code::DELETE_TOPIC_IN_NAMESRV,
    request_code::REGISTER_TOPIC_IN_NAMESRV,
    request_code::UPDATE_NAMESRV_CONFIG,
];

/// A request's resources could not be read (its body is not what its code says).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the resources of request code {code}: {reason}")]
pub struct ResourceError {
    /// The request code.
    pub code: i32,
    /// Why.
    pub reason: String,
}

/// The resources `req` needs, with the permission it needs on each (broker requests).
pub fn needed(req: &RemotingCommand) -> Result<Vec<(String, Perm)>, ResourceError> {
    let ext = |k: &str| req.ext(k).filter(|v| !v.is_empty());
    let mut out = Vec::new();
    let mut add = |resource: Option<String>, perm: Perm| {
        if let Some(r) = resource {
            out.push((r, perm));
        }
    };
    let send = |topic: Option<&str>| {
        topic.map(|t| {
            let perm = if is_group(t) { Perm::SUB } else { Perm::PUB };
            (t.to_string(), perm)
        })
    };
    match req.code {
        request_code::SEND_MESSAGE => {
            if let Some((t, p)) = send(ext("topic")) {
                add(Some(t), p);
            }
        }
        request_code::SEND_MESSAGE_V2 | request_code::SEND_BATCH_MESSAGE => {
            if let Some((t, p)) = send(ext("b")) {
                add(Some(t), p);
            }
        }
        request_code::CONSUMER_SEND_MSG_BACK => add(ext("group").map(retry_topic), Perm::SUB),
        request_code::PULL_MESSAGE => {
            add(ext("topic").map(str::to_string), Perm::SUB);
            add(ext("consumerGroup").map(retry_topic), Perm::SUB);
        }
        request_code::QUERY_MESSAGE => add(ext("topic").map(str::to_string), Perm::SUB),
        request_code::HEART_BEAT => {
            let hb: HeartbeatData = decode_body(&req.body).map_err(|e| ResourceError {
                code: req.code,
                reason: format!("invalid HeartbeatData body: {e}"),
            })?;
            for c in &hb.consumer_data_set {
                add(Some(retry_topic(&c.group_name)), Perm::SUB);
                for s in &c.subscription_data_set {
                    add(Some(s.topic.clone()), Perm::SUB);
                }
            }
        }
        request_code::UNREGISTER_CLIENT | request_code::GET_CONSUMER_LIST_BY_GROUP => {
            add(ext("consumerGroup").map(retry_topic), Perm::SUB);
        }
        request_code::UPDATE_CONSUMER_OFFSET => {
            add(ext("consumerGroup").map(retry_topic), Perm::SUB);
            add(ext("topic").map(str::to_string), Perm::SUB);
        }
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(code: i32, ext: &[(&str, &str)]) -> RemotingCommand {
        let mut r = RemotingCommand::request(code);
        for (k, v) in ext {
            r.put_ext(*k, *v);
        }
        r
    }

    #[test]
    fn sends_pulls_and_offsets_map_as_java() {
        let n = |r| needed(&r).unwrap();
        assert_eq!(
            n(req(
                request_code::SEND_MESSAGE_V2,
                &[("a", "pg"), ("b", "TopicA")]
            )),
            vec![("TopicA".to_string(), Perm::PUB)]
        );
        assert_eq!(
            n(req(request_code::SEND_MESSAGE, &[("topic", "%RETRY%g1")])),
            vec![("%RETRY%g1".to_string(), Perm::SUB)]
        );
        assert_eq!(
            n(req(
                request_code::PULL_MESSAGE,
                &[("topic", "T"), ("consumerGroup", "g")]
            )),
            vec![
                ("T".to_string(), Perm::SUB),
                ("%RETRY%g".to_string(), Perm::SUB)
            ]
        );
        assert_eq!(
            n(req(
                request_code::UPDATE_CONSUMER_OFFSET,
                &[("topic", "T"), ("consumerGroup", "g")]
            )),
            vec![
                ("%RETRY%g".to_string(), Perm::SUB),
                ("T".to_string(), Perm::SUB)
            ]
        );
        assert!(n(req(request_code::GET_MAX_OFFSET, &[("topic", "T")])).is_empty());
    }

    #[test]
    fn heartbeat_needs_every_group_and_subscribed_topic() {
        let mut r = req(request_code::HEART_BEAT, &[]);
        r.body = bytes::Bytes::from_static(
            br#"{"clientID":"c","producerDataSet":[],"consumerDataSet":[{"groupName":"g1","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{"topic":"T1","subString":"*"}],"unitMode":false}]}"#,
        );
        assert_eq!(
            needed(&r).unwrap(),
            vec![
                ("%RETRY%g1".to_string(), Perm::SUB),
                ("T1".to_string(), Perm::SUB)
            ]
        );
        r.body = bytes::Bytes::from_static(b"\x00garbage");
        assert!(needed(&r).is_err());
    }

    #[test]
    fn describes_resources() {
        assert_eq!(describe("%RETRY%g"), "Group:g");
        assert_eq!(describe("T"), "Topic:T");
    }
}

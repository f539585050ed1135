//! API errors: one enum for everything a Flotilla RPC can fail with, mapped once to gRPC.
//!
//! Every variant has a stable SCREAMING_SNAKE code ([`ApiError::code`]) that travels in
//! `google.rpc.ErrorInfo.reason` (domain `flotilla.io`), and a gRPC status code chosen by the
//! AIP conventions (`INVALID_ARGUMENT` with `google.rpc.BadRequest` field violations, `ABORTED`
//! for a stale etag, `UNAVAILABLE` with the leader's name for writes sent to a follower, …).
//! Clients branch on the code, never on the message.

use std::collections::HashMap;

use flotilla_intent_store::StoreError;
use flotilla_proto::v1::BrokerFailure;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// The ErrorInfo domain of every Flotilla error.
pub const DOMAIN: &str = "flotilla.io";

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path as in the request message, e.g. `cluster.spec.broker.groups`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Everything an API call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad name, bad spec, bad page token, …). `reason` is the
    /// stable code (`INVALID_SPEC`, `INVALID_REQUEST`).
    #[error("invalid argument: {}", summarize(.violations))]
    InvalidArgument {
        /// Stable code.
        reason: &'static str,
        /// One entry per bad field.
        violations: Vec<Violation>,
    },
    /// No cluster with that name.
    #[error("cluster {0} not found")]
    ClusterNotFound(String),
    /// CreateCluster with a name that is taken.
    #[error("cluster {0} already exists")]
    ClusterAlreadyExists(String),
    /// The etag does not match the object's current revision.
    #[error("etag mismatch for {name}: given {given}, current {current}")]
    EtagMismatch {
        /// Object name.
        name: String,
        /// The etag the caller sent.
        given: String,
        /// The current etag.
        current: String,
    },
    /// A concurrent writer changed the object between read and write; retry.
    #[error("concurrent modification of {0}; retry")]
    ConcurrentModification(String),
    /// This replica is not the leader (or just lost leadership); `leader` names the current
    /// leader when known.
    #[error("not the leader{}", .leader.as_ref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader {
        /// The leader's advertise name.
        leader: Option<String>,
    },
    /// No node with that name ever registered.
    #[error("node {0} not found")]
    NodeNotFound(String),
    /// DeleteNode on a node still in use: instances are placed on it or its agent is
    /// connected. `field` is the request field the refusal is about (`name`).
    #[error("node {name} cannot be deleted: {why}")]
    NodeInUse {
        /// Node name.
        name: String,
        /// What still uses it and what to do.
        why: String,
        /// The PreconditionFailure type: `INSTANCES_PLACED` or `AGENT_CONNECTED`.
        kind: &'static str,
    },
    /// No operation with that name.
    #[error("operation {0} not found")]
    OperationNotFound(String),
    /// DeleteOperation on an operation that has not finished.
    #[error(
        "operation {name} cannot be deleted: it is {phase}; cancel it first or wait until it is done"
    )]
    OperationNotDone {
        /// Operation name.
        name: String,
        /// Its phase (Pending, Running, Cancelling).
        phase: String,
    },
    /// CancelOperation on an operation that is done or past its point of no return.
    #[error("operation {name} cannot be cancelled: {why}")]
    OperationNotCancellable {
        /// Operation name.
        name: String,
        /// Why.
        why: String,
    },
    /// ResumeOperation/RollbackOperation on an operation that cannot be resumed or rolled
    /// back (not a rolling restart, not failed, no previous spec, superseded).
    #[error("operation {name} cannot be {action}: {why}")]
    OperationNotResumable {
        /// Operation name.
        name: String,
        /// "resumed" or "rolled back".
        action: &'static str,
        /// Why.
        why: String,
    },
    /// A watch asked for a revision older than the store's compaction point.
    #[error(
        "revision {revision} has been compacted (compaction point {compact_revision}); re-list"
    )]
    WatchRevisionCompacted {
        /// The revision asked for.
        revision: i64,
        /// The store's compaction point.
        compact_revision: i64,
    },
    /// A request_id was reused for a different method.
    #[error("request_id {request_id} was already used for {method}")]
    RequestIdReused {
        /// The id.
        request_id: String,
        /// The method it was first used with.
        method: String,
    },
    /// A scale-in would lose messages (unconsumed messages on a leaving group, or a topic
    /// that lives on no remaining group); `force` overrides.
    #[error("scale-in of cluster {cluster} refused: {why} (drain the consumers first, or force)")]
    ScaleInRefused {
        /// Cluster.
        cluster: String,
        /// What stands in the way.
        why: String,
    },
    /// The object is being deleted; no more changes are accepted.
    #[error("cluster {0} is being deleted")]
    ClusterDeleting(String),
    /// The cluster's console is switched off (`spec.console.enabled = false`): the business
    /// API does not act on it.
    #[error("cluster {0} has its console disabled (spec.console.enabled = false)")]
    ConsoleDisabled(String),
    /// No broker group of the cluster has the topic.
    #[error("topic {topic} not found in cluster {cluster}")]
    TopicNotFound {
        /// Cluster.
        cluster: String,
        /// Topic.
        topic: String,
    },
    /// CreateTopic for a topic that some target broker group already has.
    #[error("topic {topic} already exists in cluster {cluster} (on {})", .groups.join(", "))]
    TopicAlreadyExists {
        /// Cluster.
        cluster: String,
        /// Topic.
        topic: String,
        /// Broker groups holding it.
        groups: Vec<String>,
    },
    /// No broker group of the cluster has the consumer group.
    #[error("consumer group {group} not found in cluster {cluster}")]
    GroupNotFound {
        /// Cluster.
        cluster: String,
        /// Consumer group.
        group: String,
    },
    /// CreateGroup for a consumer group that some target broker group already has.
    #[error("consumer group {group} already exists in cluster {cluster} (on {})", .groups.join(", "))]
    GroupAlreadyExists {
        /// Cluster.
        cluster: String,
        /// Consumer group.
        group: String,
        /// Broker groups holding it.
        groups: Vec<String>,
    },
    /// No broker group holds a message with that id.
    #[error("message {id} not found in cluster {cluster}")]
    MessageNotFound {
        /// Cluster.
        cluster: String,
        /// The id asked for.
        id: String,
    },
    /// Some broker groups (or nameservers) a business call needed could not answer; each
    /// is named with its own reason.
    #[error("{} could not answer: {}", .what, summarize_failures(.failures))]
    BrokersUnavailable {
        /// What was asked ("the brokers", "every nameserver").
        what: &'static str,
        /// One entry per silent broker group or nameserver.
        failures: Vec<BrokerFailure>,
    },
    /// The intent store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A stored record could not be decoded.
    #[error("corrupt record {key}: {message}")]
    CorruptRecord {
        /// Store key.
        key: String,
        /// Decode error.
        message: String,
    },
}

fn summarize(v: &[Violation]) -> String {
    v.iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

fn summarize_failures(f: &[BrokerFailure]) -> String {
    f.iter()
        .map(|f| {
            let at = if f.member.is_empty() {
                String::new()
            } else {
                format!(" ({} on {})", f.member, f.node)
            };
            format!("{}{at}: {} [{}]", f.broker_name, f.message, f.reason)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// A single-field INVALID_ARGUMENT with reason `INVALID_REQUEST`.
    pub fn bad_request(field: impl Into<String>, description: impl Into<String>) -> Self {
        ApiError::InvalidArgument {
            reason: "INVALID_REQUEST",
            violations: vec![Violation::new(field, description)],
        }
    }

    /// Whether this is a lost race with another writer of the same object (what a
    /// concurrent repeat of the same request sees).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            ApiError::ClusterAlreadyExists(_)
                | ApiError::EtagMismatch { .. }
                | ApiError::ConcurrentModification(_)
                | ApiError::OperationNotCancellable { .. }
        )
    }

    /// Stable, machine-readable code (`ErrorInfo.reason`).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument { reason, .. } => reason,
            ApiError::ClusterNotFound(_) => "CLUSTER_NOT_FOUND",
            ApiError::ClusterAlreadyExists(_) => "CLUSTER_ALREADY_EXISTS",
            ApiError::EtagMismatch { .. } => "ETAG_MISMATCH",
            ApiError::ConcurrentModification(_) => "CONCURRENT_MODIFICATION",
            ApiError::NotLeader { .. } => "NOT_LEADER",
            ApiError::NodeNotFound(_) => "NODE_NOT_FOUND",
            ApiError::NodeInUse { .. } => "NODE_IN_USE",
            ApiError::OperationNotFound(_) => "OPERATION_NOT_FOUND",
            ApiError::OperationNotDone { .. } => "OPERATION_NOT_DONE",
            ApiError::OperationNotCancellable { .. } => "OPERATION_NOT_CANCELLABLE",
            ApiError::OperationNotResumable { .. } => "OPERATION_NOT_RESUMABLE",
            ApiError::WatchRevisionCompacted { .. } => "WATCH_REVISION_COMPACTED",
            ApiError::RequestIdReused { .. } => "REQUEST_ID_REUSED",
            ApiError::ClusterDeleting(_) => "CLUSTER_DELETING",
            ApiError::ScaleInRefused { .. } => "SCALE_IN_REFUSED",
            ApiError::ConsoleDisabled(_) => "CONSOLE_DISABLED",
            ApiError::TopicNotFound { .. } => "TOPIC_NOT_FOUND",
            ApiError::TopicAlreadyExists { .. } => "TOPIC_ALREADY_EXISTS",
            ApiError::GroupNotFound { .. } => "GROUP_NOT_FOUND",
            ApiError::GroupAlreadyExists { .. } => "GROUP_ALREADY_EXISTS",
            ApiError::BrokersUnavailable { .. } => "BROKERS_UNAVAILABLE",
            ApiError::MessageNotFound { .. } => "MESSAGE_NOT_FOUND",
            ApiError::Store(e) => e.code(),
            ApiError::CorruptRecord { .. } => "CORRUPT_RECORD",
        }
    }

    /// The gRPC status code.
    pub fn grpc_code(&self) -> Code {
        match self {
            ApiError::InvalidArgument { .. } | ApiError::RequestIdReused { .. } => {
                Code::InvalidArgument
            }
            ApiError::ClusterNotFound(_)
            | ApiError::NodeNotFound(_)
            | ApiError::OperationNotFound(_)
            | ApiError::TopicNotFound { .. }
            | ApiError::GroupNotFound { .. }
            | ApiError::MessageNotFound { .. } => Code::NotFound,
            ApiError::ClusterAlreadyExists(_)
            | ApiError::TopicAlreadyExists { .. }
            | ApiError::GroupAlreadyExists { .. } => Code::AlreadyExists,
            ApiError::ConsoleDisabled(_) => Code::FailedPrecondition,
            ApiError::BrokersUnavailable { .. } => Code::Unavailable,
            ApiError::EtagMismatch { .. } | ApiError::ConcurrentModification(_) => Code::Aborted,
            ApiError::NotLeader { .. } => Code::Unavailable,
            ApiError::OperationNotCancellable { .. }
            | ApiError::OperationNotResumable { .. }
            | ApiError::OperationNotDone { .. }
            | ApiError::NodeInUse { .. }
            | ApiError::ClusterDeleting(_)
            | ApiError::ScaleInRefused { .. } => Code::FailedPrecondition,
            ApiError::WatchRevisionCompacted { .. } => Code::OutOfRange,
            ApiError::Store(e) if e.is_retryable() => Code::Unavailable,
            ApiError::Store(StoreError::Compacted { .. }) => Code::OutOfRange,
            ApiError::Store(StoreError::TxnConflict(_)) => Code::Aborted,
            ApiError::Store(_) | ApiError::CorruptRecord { .. } => Code::Internal,
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        match self {
            ApiError::NotLeader { leader: Some(l) } => {
                m.insert("leader".to_string(), l.clone());
            }
            ApiError::ClusterNotFound(n)
            | ApiError::ClusterAlreadyExists(n)
            | ApiError::ClusterDeleting(n)
            | ApiError::ScaleInRefused { cluster: n, .. } => {
                m.insert("cluster".to_string(), n.clone());
            }
            ApiError::NodeNotFound(n) => {
                m.insert("node".to_string(), n.clone());
            }
            ApiError::NodeInUse { name, .. } => {
                m.insert("node".to_string(), name.clone());
                m.insert("field".to_string(), "name".to_string());
            }
            ApiError::OperationNotDone { name, .. } => {
                m.insert("operation".to_string(), name.clone());
                m.insert("field".to_string(), "name".to_string());
            }
            ApiError::OperationNotFound(n)
            | ApiError::OperationNotCancellable { name: n, .. }
            | ApiError::OperationNotResumable { name: n, .. } => {
                m.insert("operation".to_string(), n.clone());
            }
            ApiError::EtagMismatch { current, .. } => {
                m.insert("current_etag".to_string(), current.clone());
            }
            ApiError::WatchRevisionCompacted {
                compact_revision, ..
            } => {
                m.insert("compact_revision".to_string(), compact_revision.to_string());
            }
            ApiError::ConsoleDisabled(c) => {
                m.insert("cluster".to_string(), c.clone());
            }
            ApiError::TopicNotFound { cluster, topic }
            | ApiError::TopicAlreadyExists { cluster, topic, .. } => {
                m.insert("cluster".to_string(), cluster.clone());
                m.insert("topic".to_string(), topic.clone());
            }
            ApiError::GroupNotFound { cluster, group }
            | ApiError::GroupAlreadyExists { cluster, group, .. } => {
                m.insert("cluster".to_string(), cluster.clone());
                m.insert("group".to_string(), group.clone());
            }
            ApiError::MessageNotFound { cluster, id } => {
                m.insert("cluster".to_string(), cluster.clone());
                m.insert("message_id".to_string(), id.clone());
            }
            ApiError::BrokersUnavailable { failures, .. } => {
                for f in failures {
                    m.insert(format!("broker.{}", f.broker_name), f.reason.clone());
                }
            }
            _ => {}
        }
        m
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let mut details = ErrorDetails::with_error_info(e.code(), DOMAIN, e.metadata());
        match &e {
            ApiError::InvalidArgument { violations, .. } => {
                for v in violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
            }
            // A refused delete names what stands in the way, per google.rpc.PreconditionFailure:
            // the subject is the request field and the object it names.
            ApiError::NodeInUse { name, why, kind } => {
                details.add_precondition_failure_violation(
                    *kind,
                    format!("name: nodes/{name}"),
                    why.clone(),
                );
            }
            ApiError::OperationNotDone { name, phase } => {
                details.add_precondition_failure_violation(
                    "NOT_DONE",
                    format!("name: operations/{name}"),
                    format!("the operation is {phase}"),
                );
            }
            _ => {}
        }
        tonic::Status::with_error_details(e.grpc_code(), e.to_string(), details)
    }
}

/// Decodes a stored protobuf value, mapping failure to [`ApiError::CorruptRecord`].
pub fn decode<T: prost::Message + Default>(key: &str, bytes: &[u8]) -> Result<T, ApiError> {
    T::decode(bytes).map_err(|e| ApiError::CorruptRecord {
        key: key.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_names_the_leader() {
        let s: tonic::Status = ApiError::NotLeader {
            leader: Some("cp-1:7443".into()),
        }
        .into();
        assert_eq!(s.code(), Code::Unavailable);
        let info = s.get_details_error_info().unwrap();
        assert_eq!(info.reason, "NOT_LEADER");
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(info.metadata.get("leader").unwrap(), "cp-1:7443");
    }

    #[test]
    fn business_errors_name_what_is_missing_or_silent() {
        let s: tonic::Status = ApiError::TopicNotFound {
            cluster: "c".into(),
            topic: "T".into(),
        }
        .into();
        assert_eq!(s.code(), Code::NotFound);
        let info = s.get_details_error_info().unwrap();
        assert_eq!(info.reason, "TOPIC_NOT_FOUND");
        assert_eq!(info.metadata.get("topic").unwrap(), "T");
        let e = ApiError::BrokersUnavailable {
            what: "the brokers",
            failures: vec![BrokerFailure {
                broker_name: "c-1".into(),
                member: "c-1-0".into(),
                node: "node-2".into(),
                reason: "NODE_NOT_CONNECTED".into(),
                message: "node node-2 has no connected agent".into(),
            }],
        };
        assert!(e.to_string().contains("c-1 (c-1-0 on node-2)"), "{e}");
        let s: tonic::Status = e.into();
        assert_eq!(s.code(), Code::Unavailable);
        let info = s.get_details_error_info().unwrap();
        assert_eq!(
            info.metadata.get("broker.c-1").unwrap(),
            "NODE_NOT_CONNECTED"
        );
    }

    #[test]
    fn refused_deletes_name_the_field_and_what_stands_in_the_way() {
        let s: tonic::Status = ApiError::NodeInUse {
            name: "n1".into(),
            why: "instances are placed on it: c-0-0; drain it first".into(),
            kind: "INSTANCES_PLACED",
        }
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        let info = s.get_details_error_info().unwrap();
        assert_eq!(info.reason, "NODE_IN_USE");
        assert_eq!(info.metadata.get("field").unwrap(), "name");
        let pf = s.get_details_precondition_failure().unwrap();
        assert_eq!(pf.violations[0].r#type, "INSTANCES_PLACED");
        assert_eq!(pf.violations[0].subject, "name: nodes/n1");
        let s: tonic::Status = ApiError::OperationNotDone {
            name: "op-1".into(),
            phase: "Running".into(),
        }
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(
            s.get_details_error_info().unwrap().reason,
            "OPERATION_NOT_DONE"
        );
        assert!(s.message().contains("cancel it first"), "{}", s.message());
    }

    #[test]
    fn invalid_argument_carries_field_violations() {
        let s: tonic::Status = ApiError::InvalidArgument {
            reason: "INVALID_SPEC",
            violations: vec![Violation::new(
                "cluster.spec.broker.groups",
                "must be 1..=64",
            )],
        }
        .into();
        assert_eq!(s.code(), Code::InvalidArgument);
        let br = s.get_details_bad_request().unwrap();
        assert_eq!(br.field_violations[0].field, "cluster.spec.broker.groups");
    }
}

//! `flotilla apply -f FILE|-`: Flotilla documents ([`crate::docs`]: clusters, topics,
//! consumer groups; YAML or JSON, several per file) created, or updated when they exist —
//! clusters with their current etag, topics and groups through the business API. Documents
//! are applied in order; one that fails is reported (with its position and kind) and the rest
//! are still applied, and the command then exits non-zero.
//!
//! A cluster document's spec is the small, hand-writable cluster file below, turned into a
//! `flotilla.v1.Cluster`.
//!
//! The file schema is deliberately flat and documented here rather than the full protobuf
//! JSON, so a person can write one from memory:
//!
//! ```json
//! { "name": "demo", "nameservers": 1, "groups": 1, "replicasPerGroup": 3,
//!   "mode": "dledger", "masterRole": "async", "allowRestart": true,
//!   "spread": "preferred", "config": {"autoCreateTopicEnable": "true"},
//!   "storage": {"mode": "ephemeral"}, "resources": {"memoryMib": 0, "cpuMillis": 0},
//!   "nameserverPort": 0, "brokerPort": 0, "labels": {} }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use flotilla_proto::v1::{
    BrokerMode, BrokerSpec, Cluster, ClusterSpec, CreateClusterRequest, GetClusterRequest,
    MasterRole, NameServerSpec, ObjectMeta, Placement, Resources, Storage, UpdateClusterRequest,
    placement::Spread, storage::Mode,
};
use serde::{Deserialize, Serialize};

/// A cluster file is invalid or could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A field has an unknown value.
    #[error("field {field}: {message}")]
    Field {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The control plane refused the request.
    #[error("control plane: {0}")]
    Api(#[from] tonic::Status),
    /// A document could not be read.
    #[error(transparent)]
    Doc(#[from] crate::docs::DocError),
    /// A topic or consumer group document was refused.
    #[error(transparent)]
    Business(#[from] crate::api::CmdError),
    /// Some documents could not be applied (each was reported).
    #[error("{failed} of {total} documents could not be applied")]
    Failed {
        /// How many failed.
        failed: usize,
        /// How many there were.
        total: usize,
    },
    /// The control plane could not be reached.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
}

impl ApplyError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "APPLY_READ",
            Self::Field { .. } => "APPLY_INVALID_FIELD",
            Self::Api(_) => "APPLY_API_ERROR",
            Self::Client(e) => e.code(),
            Self::Doc(e) => e.code(),
            Self::Business(_) => "APPLY_REFUSED",
            Self::Failed { .. } => "APPLY_FAILED",
        }
    }

    /// The most precise code: the control plane's reason for a refused document.
    pub fn detailed_code(&self) -> String {
        match self {
            Self::Business(e) => e.code(),
            Self::Api(s) => crate::api::reason(s).unwrap_or_else(|| self.code().to_string()),
            e => e.code().to_string(),
        }
    }
}

/// Storage section.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageFile {
    /// `ephemeral` (default) or `host-path`.
    #[serde(default)]
    pub mode: String,
    /// Absolute path for `host-path`.
    #[serde(default)]
    pub host_path: String,
}

/// Resources section.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourcesFile {
    /// Memory limit in MiB (0 = none).
    #[serde(default)]
    pub memory_mib: u64,
    /// CPU limit in millicores (0 = none).
    #[serde(default)]
    pub cpu_millis: u32,
}

fn one() -> u32 {
    1
}

/// The cluster file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterFile {
    /// Cluster name (DNS-1123 label).
    pub name: String,
    /// Nameserver replicas.
    #[serde(default = "one")]
    pub nameservers: u32,
    /// Nameserver port (0 = assigned).
    #[serde(default)]
    pub nameserver_port: u32,
    /// Broker groups.
    #[serde(default = "one")]
    pub groups: u32,
    /// Members per group.
    #[serde(default = "one")]
    pub replicas_per_group: u32,
    /// `dledger` or `master-slave`.
    #[serde(default)]
    pub mode: String,
    /// `async` (default) or `sync` (master-slave).
    #[serde(default)]
    pub master_role: String,
    /// Sync-master copies (0 = all).
    #[serde(default)]
    pub in_sync_replicas: u32,
    /// Broker base port (0 = assigned).
    #[serde(default)]
    pub broker_port: u32,
    /// RocketMQ broker config keys.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Allow restarts for changes that need one.
    #[serde(default)]
    pub allow_restart: bool,
    /// `required` (default) or `preferred`.
    #[serde(default)]
    pub spread: String,
    /// Storage.
    #[serde(default)]
    pub storage: StorageFile,
    /// Broker resources.
    #[serde(default)]
    pub resources: ResourcesFile,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Version ("" = bundled).
    #[serde(default)]
    pub version: String,
    /// Whether the business API (topics, groups) may act on the cluster; absent = yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<bool>,
}

impl ClusterFile {
    /// The protobuf cluster (metadata name and labels, spec).
    pub fn to_cluster(&self) -> Result<Cluster, ApplyError> {
        let mode = match self.mode.as_str() {
            "" | "dledger" => BrokerMode::Dledger,
            "master-slave" | "master_slave" => BrokerMode::MasterSlave,
            other => {
                return Err(ApplyError::Field {
                    field: "mode",
                    message: format!("{other:?} is not dledger or master-slave"),
                });
            }
        };
        let master_role = match self.master_role.as_str() {
            "" | "async" => MasterRole::AsyncMaster,
            "sync" => MasterRole::SyncMaster,
            other => {
                return Err(ApplyError::Field {
                    field: "masterRole",
                    message: format!("{other:?} is not async or sync"),
                });
            }
        };
        let spread = match self.spread.as_str() {
            "" | "required" => Spread::Required,
            "preferred" => Spread::Preferred,
            other => {
                return Err(ApplyError::Field {
                    field: "spread",
                    message: format!("{other:?} is not required or preferred"),
                });
            }
        };
        let storage_mode = match self.storage.mode.as_str() {
            "" | "ephemeral" => Mode::Ephemeral,
            "host-path" | "host_path" => Mode::HostPath,
            other => {
                return Err(ApplyError::Field {
                    field: "storage.mode",
                    message: format!("{other:?} is not ephemeral or host-path"),
                });
            }
        };
        let resources = Resources {
            memory_mib: self.resources.memory_mib,
            cpu_millis: self.resources.cpu_millis,
        };
        Ok(Cluster {
            metadata: Some(ObjectMeta {
                name: self.name.clone(),
                labels: self.labels.clone().into_iter().collect(),
                ..ObjectMeta::default()
            }),
            spec: Some(ClusterSpec {
                nameserver: Some(NameServerSpec {
                    replicas: self.nameservers,
                    port: self.nameserver_port,
                    resources: None,
                }),
                broker: Some(BrokerSpec {
                    groups: self.groups,
                    replicas_per_group: self.replicas_per_group,
                    mode: mode as i32,
                    master_role: if mode == BrokerMode::MasterSlave {
                        master_role as i32
                    } else {
                        0
                    },
                    in_sync_replicas: self.in_sync_replicas,
                    config: self.config.clone().into_iter().collect(),
                    resources: Some(resources),
                    storage: Some(Storage {
                        mode: storage_mode as i32,
                        host_path: self.storage.host_path.clone(),
                    }),
                    port: self.broker_port,
                }),
                console: self
                    .console
                    .map(|enabled| flotilla_proto::v1::ConsoleSpec { enabled }),
                allow_restart: self.allow_restart,
                scale_source: None,
                version: self.version.clone(),
                placement: Some(Placement {
                    node_selector: Default::default(),
                    spread: spread as i32,
                }),
                paused: false,
            }),
            status: None,
        })
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The cluster was created.
    Created,
    /// An existing cluster's spec was replaced.
    Updated,
}

/// Creates the cluster, or replaces the spec of the existing one (guarded by its etag).
pub async fn apply(server: &str, cluster: Cluster) -> Result<(Applied, Cluster), ApplyError> {
    let (a, c, _) = apply_planned(server, cluster, false).await?;
    Ok((a, c))
}

/// One line per member a cluster change touches (`UpdateClusterResponse.changes`).
pub fn change_lines(changes: &[flotilla_proto::v1::MemberChange]) -> Vec<String> {
    use flotilla_proto::v1::member_change::Action;
    changes
        .iter()
        .map(|c| {
            let action = match Action::try_from(c.action).unwrap_or(Action::Unspecified) {
                Action::Start => "start on",
                Action::Stop => "stop on",
                Action::Move => "move to",
                Action::Restart => "rolling restart on",
                Action::Online => "online change on",
                Action::Unspecified => "change on",
            };
            let keys = if c.keys.is_empty() {
                String::new()
            } else {
                format!(": {}", c.keys.join(", "))
            };
            format!("  {}: {action} {}{keys}", c.member, c.node)
        })
        .collect()
}

/// [`apply`], returning the plan of member changes too; with `dry_run` nothing is changed
/// (the control plane answers what it would do).
pub async fn apply_planned(
    server: &str,
    cluster: Cluster,
    dry_run: bool,
) -> Result<(Applied, Cluster, Vec<flotilla_proto::v1::MemberChange>), ApplyError> {
    let mut client = crate::client::clusters(server).await?;
    let name = cluster
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    match client
        .get_cluster(GetClusterRequest { name: name.clone() })
        .await
    {
        Ok(existing) => {
            let existing = existing.into_inner();
            let mut c = cluster;
            if let (Some(m), Some(old)) = (c.metadata.as_mut(), existing.metadata.as_ref()) {
                m.etag = old.etag.clone();
            }
            let resp = client
                .update_cluster(UpdateClusterRequest {
                    cluster: Some(c),
                    request_id: String::new(),
                    validate_only: dry_run,
                    force: false,
                })
                .await?
                .into_inner();
            Ok((
                Applied::Updated,
                resp.cluster.unwrap_or_default(),
                resp.changes,
            ))
        }
        Err(s) if s.code() == tonic::Code::NotFound => {
            let created = client
                .create_cluster(CreateClusterRequest {
                    cluster: Some(cluster),
                    request_id: String::new(),
                    validate_only: dry_run,
                })
                .await?
                .into_inner();
            Ok((Applied::Created, created, Vec::new()))
        }
        Err(s) => Err(s.into()),
    }
}

/// Reads `path` (`-` = standard input).
pub fn read_input(path: &Path) -> Result<String, ApplyError> {
    let read = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    read.map_err(|source| ApplyError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn perm_of(v: Option<&serde_json::Value>) -> Result<Option<String>, crate::api::CmdError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(crate::api::CmdError::invalid(
            "spec.perm",
            format!("must be rw, r, w or 6, 4, 2, got {other}"),
        )),
    }
}

/// Creates a topic, or updates it when it exists.
async fn apply_topic(
    server: &str,
    name: &str,
    spec: &crate::docs::TopicSpec,
) -> Result<Applied, crate::api::CmdError> {
    use crate::api::CmdError;
    use flotilla_proto::v1::{CreateTopicRequest, Topic, UpdateTopicRequest};
    let shape = crate::topic::Shape {
        queues: spec.queues,
        read_queues: spec.read_queues,
        write_queues: spec.write_queues,
        perm: perm_of(spec.perm.as_ref())?,
    };
    let (read, write, perm) = shape.resolve().map_err(|e| match e {
        CmdError::Invalid { flag, message } => CmdError::Invalid {
            flag: format!("spec.{}", flag.trim_start_matches("--").replace("-q", "Q")),
            message,
        },
        e => e,
    })?;
    let topic = Topic {
        name: name.to_string(),
        read_queue_nums: read,
        write_queue_nums: write,
        perm,
        order: spec.order,
        attributes: spec.attributes.clone().into_iter().collect(),
        groups: spec.groups.clone(),
    };
    let mut c = crate::api::topics(server).await?;
    let created = c
        .create_topic(CreateTopicRequest {
            cluster: spec.cluster.clone(),
            topic: Some(topic.clone()),
            request_id: String::new(),
        })
        .await;
    match created {
        Ok(_) => Ok(Applied::Created),
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            c.update_topic(UpdateTopicRequest {
                cluster: spec.cluster.clone(),
                topic: Some(topic),
                request_id: String::new(),
            })
            .await?;
            Ok(Applied::Updated)
        }
        Err(s) => Err(s.into()),
    }
}

/// Creates a consumer group, or replaces its settings when it exists.
async fn apply_group(
    server: &str,
    name: &str,
    spec: &crate::docs::GroupSpec,
) -> Result<Applied, crate::api::CmdError> {
    use flotilla_proto::v1::{CreateGroupRequest, UpdateGroupRequest};
    let settings = crate::group::Settings {
        retry_queues: spec.retry_queues,
        max_retries: spec.max_retries,
        broadcast: spec.broadcast,
        consume_from_min: spec.consume_from_min,
        orderly: spec.orderly,
        disabled: !spec.consume_enable,
        groups: spec.groups.clone(),
    };
    let group = settings.to_group(name.to_string())?;
    let mut c = crate::api::groups(server).await?;
    let created = c
        .create_group(CreateGroupRequest {
            cluster: spec.cluster.clone(),
            group: Some(group.clone()),
            request_id: String::new(),
        })
        .await;
    match created {
        Ok(_) => Ok(Applied::Created),
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            c.update_group(UpdateGroupRequest {
                cluster: spec.cluster.clone(),
                group: Some(group),
                request_id: String::new(),
            })
            .await?;
            Ok(Applied::Updated)
        }
        Err(s) => Err(s.into()),
    }
}

/// Starts a topic migration; returns the operation's name.
async fn migrate(
    server: &str,
    topic: &str,
    source: &str,
    target: &str,
) -> Result<String, crate::api::CmdError> {
    let mut c = crate::api::topics(server).await?;
    let op = c
        .migrate_topic(flotilla_proto::v1::MigrateTopicRequest {
            topic: topic.to_string(),
            source_cluster: source.to_string(),
            target_cluster: target.to_string(),
            consumer_groups: Vec::new(),
            keep_source: false,
            request_id: String::new(),
        })
        .await?
        .into_inner();
    Ok(op.metadata.map(|m| m.name).unwrap_or_default())
}

/// Applies every document of `path` in order, printing one line per document.
pub async fn run(server: &str, path: &Path, dry_run: bool) -> Result<(), ApplyError> {
    use crate::docs::Document;
    let text = read_input(path)?;
    let parsed = crate::docs::parse(&text)?;
    for w in &parsed.warnings {
        eprintln!("warning: {w}");
    }
    let docs = parsed.documents;
    let total = docs.len();
    let mut failed = 0;
    for (i, d) in docs.iter().enumerate() {
        if dry_run && !matches!(d, Document::Cluster(_)) {
            println!(
                "{}: not previewed (dry run previews cluster documents only); nothing done",
                d.describe()
            );
            continue;
        }
        let outcome: Result<(Applied, String), ApplyError> = match d {
            Document::Cluster(f) => match f.to_cluster() {
                Ok(c) => match apply_planned(server, c, dry_run).await {
                    Ok((a, _, changes)) => {
                        let what = format!("cluster {}", f.name);
                        let lines = change_lines(&changes);
                        let what = if lines.is_empty() {
                            what
                        } else {
                            format!("{what}\n{}", lines.join("\n"))
                        };
                        Ok((a, what))
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            Document::Topic { name, spec } => apply_topic(server, name, spec)
                .await
                .map(|a| (a, format!("topic {name} in cluster {}", spec.cluster)))
                .map_err(ApplyError::from),
            Document::Group { name, spec } => apply_group(server, name, spec)
                .await
                .map(|a| {
                    (
                        a,
                        format!("consumer group {name} in cluster {}", spec.cluster),
                    )
                })
                .map_err(ApplyError::from),
            Document::Migrate {
                topic,
                source,
                target,
                ..
            } => migrate(server, topic, source, target)
                .await
                .map(|op| {
                    (
                        Applied::Created,
                        format!("migration {op} of topic {topic} from {source} to {target}"),
                    )
                })
                .map_err(ApplyError::from),
        };
        match outcome {
            Ok((a, what)) => {
                let (head, rest) = what.split_once('\n').unwrap_or((what.as_str(), ""));
                let verb = match (a, dry_run) {
                    (Applied::Created, false) => "created",
                    (Applied::Updated, false) => "updated",
                    (Applied::Created, true) => "would be created",
                    (Applied::Updated, true) => "would be updated",
                };
                println!("{head} {verb}");
                if !rest.is_empty() {
                    println!("{rest}");
                }
            }
            Err(e) => {
                // Connection failures stop at once: every later document would fail alike.
                if matches!(e, ApplyError::Client(_))
                    || matches!(e, ApplyError::Business(crate::api::CmdError::Client(_)))
                {
                    return Err(e);
                }
                failed += 1;
                eprintln!(
                    "flotilla: document {} ({}): {e} [{}]",
                    i + 1,
                    d.describe(),
                    e.detailed_code()
                );
            }
        }
    }
    if dry_run {
        println!("dry run: nothing was changed");
    }
    if failed > 0 {
        return Err(ApplyError::Failed { failed, total });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_from_documents() {
        assert_eq!(perm_of(None).unwrap(), None);
        assert_eq!(
            perm_of(Some(&serde_json::json!(6))).unwrap().as_deref(),
            Some("6")
        );
        assert_eq!(
            perm_of(Some(&serde_json::json!("rw"))).unwrap().as_deref(),
            Some("rw")
        );
        assert!(perm_of(Some(&serde_json::json!([1]))).is_err());
    }

    #[test]
    fn parses_and_converts() {
        let f: ClusterFile = serde_json::from_str(
            r#"{"name":"demo","groups":2,"replicasPerGroup":2,"mode":"master-slave",
                "masterRole":"sync","config":{"autoCreateTopicEnable":"true"},
                "spread":"preferred","storage":{"mode":"host-path","hostPath":"/srv"}}"#,
        )
        .unwrap();
        let c = f.to_cluster().unwrap();
        let spec = c.spec.unwrap();
        let b = spec.broker.unwrap();
        assert_eq!(b.mode, BrokerMode::MasterSlave as i32);
        assert_eq!(b.master_role, MasterRole::SyncMaster as i32);
        assert_eq!(b.groups, 2);
        assert_eq!(b.storage.unwrap().mode, Mode::HostPath as i32);
        assert_eq!(spec.nameserver.unwrap().replicas, 1);
        assert_eq!(spec.placement.unwrap().spread, Spread::Preferred as i32);
        let bad: ClusterFile = serde_json::from_str(r#"{"name":"x","mode":"raft"}"#).unwrap();
        assert_eq!(bad.to_cluster().unwrap_err().code(), "APPLY_INVALID_FIELD");
        assert!(serde_json::from_str::<ClusterFile>(r#"{"name":"x","bogus":1}"#).is_err());
    }
}

//! `flotilla operation get|list|cancel|resume|rollback|watch`, `flotilla restart cluster` and
//! `flotilla migrate topic`: the durable
//! Operations of the control plane (scale-in, scale-out, topic migration, node drain), seen
//! and followed from the command line.
//!
//! Following (`watch`, and `migrate` unless `--no-wait`) prints one line per change of step
//! or progress — the step, its number, and what it waits for (per-group lag while a
//! migration drains) — until the operation is done, and exits non-zero when it failed or was
//! cancelled, so a script can chain on it.

use std::collections::BTreeMap;

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::v1::operation_service_client::OperationServiceClient;
use flotilla_proto::v1::topic_service_client::TopicServiceClient;
use flotilla_proto::v1::{
    CancelOperationRequest, DeleteOperationRequest, GetOperationRequest, ListOperationsRequest,
    MigrateTopicRequest, Operation, OperationPhase, RestartClusterRequest, ResumeOperationRequest,
    RollbackOperationRequest, WaitOperationRequest, operation_spec,
};
use serde::Serialize;

use crate::api::CmdError;
use crate::client;
use crate::output::{self, Format};

/// `flotilla operation …`.
#[derive(Debug, clap::Subcommand)]
pub enum OperationCmd {
    /// One operation.
    Get {
        /// Operation name (`op-…`).
        name: String,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
        /// Control-plane addresses.
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
    },
    /// Operations (unfinished ones unless `--all`).
    List {
        /// Only this cluster's.
        #[arg(short = 'c', long)]
        cluster: Option<String>,
        /// Include finished operations.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
        /// Control-plane addresses.
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
    },
    /// Cancel an operation (refused once it passed its point of no return).
    Cancel {
        /// Operation name.
        name: String,
        /// Control-plane addresses.
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
    },
    /// Run a failed rolling restart again from the member it stopped at.
    Resume {
        /// Operation name.
        name: String,
        /// Follow it until done.
        #[arg(long)]
        wait: bool,
        /// Control-plane addresses.
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
    },
    /// Roll back a rolling restart a spec change started: restore the previous spec (which
    /// rolls the members back, in order).
    Rollback {
        /// Operation name.
        name: String,
        /// Follow the rollback until done.
        #[arg(long)]
        wait: bool,
        /// Control-plane addresses.
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
    },
    /// Follow an operation until it is done.
    Watch {
        /// Operation name.
        name: String,
        /// Control-plane addresses.
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
    },
}

/// `flotilla restart …`.
#[derive(Debug, clap::Subcommand)]
pub enum RestartCmd {
    /// Restart a cluster's members one at a time (nameservers, then each group's followers,
    /// its master last; a DLedger leader hands leadership over first), each back Ready and
    /// caught up before the next.
    Cluster {
        /// The cluster.
        name: String,
        /// Only these members (repeatable); default: all.
        #[arg(long = "member")]
        members: Vec<String>,
        /// Why (kept in the operation's history).
        #[arg(long, default_value = "")]
        reason: String,
        /// How long one member may take to come back (e.g. `5m`); default 10 min.
        #[arg(long)]
        member_timeout: Option<humantime::Duration>,
        /// Print the operation that would start, and do nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the operation and return instead of following it.
        #[arg(long)]
        no_wait: bool,
        /// Control-plane addresses.
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
    },
}

/// Runs `flotilla restart …`.
pub async fn restart(cmd: RestartCmd) -> Result<(), CmdError> {
    let RestartCmd::Cluster {
        name,
        members,
        reason,
        member_timeout,
        dry_run,
        no_wait,
        server,
    } = cmd;
    let op = ClusterServiceClient::new(client::channel(&server).await?)
        .restart_cluster(RestartClusterRequest {
            name: name.clone(),
            members: members.clone(),
            reason,
            request_id: String::new(),
            validate_only: dry_run,
            member_timeout: member_timeout
                .map(|d| prost_types::Duration::try_from(std::time::Duration::from(d)))
                .transpose()
                .map_err(|e| CmdError::invalid("--member-timeout", e.to_string()))?,
        })
        .await?
        .into_inner();
    let who = if members.is_empty() {
        "every member".to_string()
    } else {
        members.join(", ")
    };
    if dry_run {
        println!("would restart {who} of cluster {name}, one at a time (nothing done)");
        return Ok(());
    }
    let v = view(&op);
    println!(
        "rolling restart of {who} of cluster {name}: operation {}",
        v.name
    );
    if no_wait {
        return Ok(());
    }
    follow(&server, &v.name).await
}

/// `flotilla migrate …`.
#[derive(Debug, clap::Subcommand)]
pub enum MigrateCmd {
    /// Move a topic and its consumer groups to another cluster.
    Topic {
        /// The topic.
        topic: String,
        /// Source cluster.
        #[arg(long)]
        from: String,
        /// Target cluster.
        #[arg(long)]
        to: String,
        /// Consumer groups to move (repeatable); default: those that consumed the topic.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Keep the topic, read-only, on the source.
        #[arg(long)]
        keep_source: bool,
        /// Print the operation and return instead of following it.
        #[arg(long)]
        no_wait: bool,
        /// Control-plane addresses.
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
    },
}

/// The stable JSON/YAML form of an operation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OperationView {
    /// Name.
    pub name: String,
    /// Cluster (the source of a migration).
    pub cluster: String,
    /// `ScaleIn`, `ScaleOut`, `MigrateTopic`, `DrainNode`, `RollingRestart`.
    pub kind: String,
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Cancelling`, `Cancelled`.
    pub phase: String,
    /// Current step.
    pub step: String,
    /// 1-based step number.
    pub step_number: u32,
    /// Steps in all.
    pub total_steps: u32,
    /// 0..=100.
    pub progress_percent: u32,
    /// Cancel is refused once true.
    pub point_of_no_return_passed: bool,
    /// Finished.
    pub done: bool,
    /// What it waits for now (from its handles).
    pub waiting_for: String,
    /// Error reason and message, when failed.
    pub error: Option<String>,
    /// Durable handles (per-member progress, lag, copies).
    pub handles: BTreeMap<String, String>,
    /// Steps taken, newest last.
    pub history: Vec<String>,
}

fn kind_name(op: &Operation) -> &'static str {
    match op.spec.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(operation_spec::Kind::MigrateTopic(_)) => "MigrateTopic",
        Some(operation_spec::Kind::ScaleIn(_)) => "ScaleIn",
        Some(operation_spec::Kind::ScaleOut(_)) => "ScaleOut",
        Some(operation_spec::Kind::RollingRestart(_)) => "RollingRestart",
        Some(operation_spec::Kind::DrainNode(_)) => "DrainNode",
        None => "Unknown",
    }
}

fn phase_name(p: i32) -> &'static str {
    match OperationPhase::try_from(p).unwrap_or(OperationPhase::Unspecified) {
        OperationPhase::Pending => "Pending",
        OperationPhase::Running => "Running",
        OperationPhase::Succeeded => "Succeeded",
        OperationPhase::Failed => "Failed",
        OperationPhase::Cancelling => "Cancelling",
        OperationPhase::Cancelled => "Cancelled",
        OperationPhase::Unspecified => "Unknown",
    }
}

/// The view of `op`.
pub fn view(op: &Operation) -> OperationView {
    let st = op.status.clone().unwrap_or_default();
    OperationView {
        name: op
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        cluster: op
            .spec
            .as_ref()
            .map(|s| s.cluster.clone())
            .unwrap_or_default(),
        kind: kind_name(op).to_string(),
        phase: phase_name(st.phase).to_string(),
        step: st.step.clone(),
        step_number: if st.step.is_empty() {
            0
        } else {
            st.step_index + 1
        },
        total_steps: st.total_steps,
        progress_percent: st.progress_percent,
        point_of_no_return_passed: st.point_of_no_return_passed,
        done: st.done,
        waiting_for: st.handles.get("progress").cloned().unwrap_or_default(),
        error: st.error.map(|e| format!("{}: {}", e.reason, e.message)),
        handles: st.handles.into_iter().collect(),
        history: st.history,
    }
}

/// The table of operations (`wide` adds what each waits for).
pub fn table(ops: &[OperationView], wide: bool) -> String {
    let mut header = vec!["NAME", "CLUSTER", "KIND", "PHASE", "STEP", "PROGRESS"];
    if wide {
        header.push("WAITING FOR");
    }
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|o| {
            let mut r = vec![
                o.name.clone(),
                o.cluster.clone(),
                o.kind.clone(),
                o.phase.clone(),
                format!("{} ({}/{})", o.step, o.step_number, o.total_steps),
                format!("{}%", o.progress_percent),
            ];
            if wide {
                r.push(o.waiting_for.clone());
            }
            r
        })
        .collect();
    output::columns(&header, &rows)
}

/// `flotilla delete operations NAME`: removes a finished operation's record (the control
/// plane refuses an unfinished one with OPERATION_NOT_DONE: cancel it first).
pub async fn delete(server: &str, name: &str) -> Result<(), CmdError> {
    ops(server)
        .await?
        .delete_operation(DeleteOperationRequest {
            name: name.to_string(),
            request_id: String::new(),
        })
        .await?;
    println!("operation {name} deleted");
    Ok(())
}

/// OperationService client.
pub async fn ops(server: &str) -> Result<OperationServiceClient<crate::client::Chan>, CmdError> {
    Ok(OperationServiceClient::new(client::channel(server).await?))
}

/// One line saying where an operation is.
pub fn progress_line(v: &OperationView) -> String {
    let mut s = format!(
        "{} {}: step {}/{} {}",
        v.name, v.phase, v.step_number, v.total_steps, v.step
    );
    if !v.waiting_for.is_empty() {
        s.push_str(&format!(" — {}", v.waiting_for));
    }
    if let Some(e) = &v.error {
        s.push_str(&format!(" — {e}"));
    }
    s
}

/// Follows `name` until done, printing a line per change; fails unless it Succeeded.
pub async fn follow(server: &str, name: &str) -> Result<(), CmdError> {
    let mut c = ops(server).await?;
    let mut last = String::new();
    loop {
        let op = c
            .wait_operation(WaitOperationRequest {
                name: name.to_string(),
                timeout: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }),
            })
            .await?
            .into_inner();
        let v = view(&op);
        let line = progress_line(&v);
        if line != last {
            println!("{line}");
            last = line;
        }
        if v.done {
            return if v.phase == "Succeeded" {
                Ok(())
            } else {
                Err(CmdError::Operation {
                    name: v.name,
                    phase: v.phase,
                    error: v.error.unwrap_or_default(),
                })
            };
        }
    }
}

/// `flotilla get operations [--cluster C] [NAME]`: one operation as an object, or every
/// operation (finished ones too, as `kubectl get` lists completed jobs) of the cluster, or of
/// all clusters, as a list.
pub async fn get(
    server: &str,
    cluster: Option<&str>,
    name: Option<&str>,
    format: Format,
) -> Result<(), CmdError> {
    let mut c = ops(server).await?;
    if let Some(name) = name {
        let op = c
            .get_operation(GetOperationRequest {
                name: name.to_string(),
            })
            .await?
            .into_inner();
        let v = view(&op);
        if let Some(want) = cluster.filter(|want| *want != v.cluster) {
            return Err(CmdError::invalid(
                "--cluster",
                format!(
                    "operation {name} is on cluster {}, not {want}: drop --cluster or name its cluster",
                    v.cluster
                ),
            ));
        }
        output::print(format, &v, |wide| table(std::slice::from_ref(&v), wide))?;
        return Ok(());
    }
    let mut views = Vec::new();
    let mut token = String::new();
    loop {
        let list = c
            .list_operations(ListOperationsRequest {
                cluster: cluster.unwrap_or_default().to_string(),
                include_done: true,
                page_size: 100,
                page_token: token.clone(),
            })
            .await?
            .into_inner();
        views.extend(list.operations.iter().map(view));
        if list.next_page_token.is_empty() {
            break;
        }
        token = list.next_page_token;
    }
    output::print(format, &views, |wide| table(&views, wide))?;
    Ok(())
}

/// Runs `flotilla operation …`.
pub async fn run(cmd: OperationCmd) -> Result<(), CmdError> {
    match cmd {
        OperationCmd::Get {
            name,
            output,
            server,
        } => {
            let op = ops(&server)
                .await?
                .get_operation(GetOperationRequest { name })
                .await?
                .into_inner();
            let v = view(&op);
            output::print(output, &v, |wide| {
                let mut s = table(std::slice::from_ref(&v), wide);
                if wide {
                    for h in &v.history {
                        s.push_str(&format!("  {h}\n"));
                    }
                }
                s
            })?;
            Ok(())
        }
        OperationCmd::List {
            cluster,
            all,
            output,
            server,
        } => {
            let list = ops(&server)
                .await?
                .list_operations(ListOperationsRequest {
                    cluster: cluster.unwrap_or_default(),
                    include_done: all,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let views: Vec<OperationView> = list.operations.iter().map(view).collect();
            output::print(output, &views, |wide| table(&views, wide))?;
            Ok(())
        }
        OperationCmd::Cancel { name, server } => {
            let op = ops(&server)
                .await?
                .cancel_operation(CancelOperationRequest {
                    name,
                    request_id: String::new(),
                })
                .await?
                .into_inner();
            println!("{}", progress_line(&view(&op)));
            Ok(())
        }
        OperationCmd::Resume { name, wait, server } => {
            let op = ops(&server)
                .await?
                .resume_operation(ResumeOperationRequest {
                    name: name.clone(),
                    request_id: String::new(),
                })
                .await?
                .into_inner();
            println!("{}", progress_line(&view(&op)));
            if wait {
                follow(&server, &name).await?;
            }
            Ok(())
        }
        OperationCmd::Rollback { name, wait, server } => {
            let r = ops(&server)
                .await?
                .rollback_operation(RollbackOperationRequest {
                    name,
                    request_id: String::new(),
                })
                .await?
                .into_inner();
            if let Some(op) = &r.operation {
                println!("{}", progress_line(&view(op)));
            }
            let back = r.rollback.as_ref().map(view);
            if let Some(b) = &back {
                println!("rolling back: operation {}", b.name);
                if wait {
                    follow(&server, &b.name).await?;
                }
            }
            Ok(())
        }
        OperationCmd::Watch { name, server } => follow(&server, &name).await,
    }
}

/// Runs `flotilla migrate …`.
pub async fn migrate(cmd: MigrateCmd) -> Result<(), CmdError> {
    let MigrateCmd::Topic {
        topic,
        from,
        to,
        groups,
        keep_source,
        no_wait,
        server,
    } = cmd;
    let op = TopicServiceClient::new(client::channel(&server).await?)
        .migrate_topic(MigrateTopicRequest {
            topic: topic.clone(),
            source_cluster: from.clone(),
            target_cluster: to.clone(),
            consumer_groups: groups,
            keep_source,
            request_id: String::new(),
        })
        .await?
        .into_inner();
    let v = view(&op);
    println!(
        "migration of topic {topic} from {from} to {to}: operation {}",
        v.name
    );
    if no_wait {
        return Ok(());
    }
    follow(&server, &v.name).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_proto::v1::{ObjectMeta, OperationSpec, OperationStatus, ScaleInSpec};

    #[test]
    fn the_view_and_progress_line_say_where_it_is() {
        let op = Operation {
            metadata: Some(ObjectMeta {
                name: "op-1".into(),
                ..Default::default()
            }),
            spec: Some(OperationSpec {
                cluster: "orders".into(),
                kind: Some(operation_spec::Kind::ScaleIn(ScaleInSpec::default())),
            }),
            status: Some(OperationStatus {
                phase: OperationPhase::Running as i32,
                step: "WaitDrained".into(),
                step_index: 1,
                total_steps: 3,
                handles: [("progress".to_string(), "lag: orders-1/cg=5".to_string())].into(),
                ..Default::default()
            }),
        };
        let v = view(&op);
        assert_eq!(
            (v.kind.as_str(), v.phase.as_str(), v.step_number),
            ("ScaleIn", "Running", 2)
        );
        assert_eq!(
            progress_line(&v),
            "op-1 Running: step 2/3 WaitDrained — lag: orders-1/cg=5"
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["waiting_for"], "lag: orders-1/cg=5");
    }
}

//! `flotilla get nodes|members|operations --watch`: print the resources, then only what
//! changes, until the server's stream ends or Ctrl-C.
//!
//! Every kind is followed on a server Watch stream (`WatchNodes`, `WatchClusters`,
//! `WatchOperations`): members on their cluster's stream. [`Changes`] remembers the last
//! line printed per resource and a line is printed only when it differs, so a quiet fleet
//! prints nothing (bookmarks and rewrites that change no column print nothing). Tables print their header once, then one row per change; `-o json` prints one
//! compact object per line (`-o yaml` one document per change), so a script can read it as
//! a stream. A resource that disappears prints once more marked deleted. Ctrl-C ends a
//! watch with status 0 ([`until_interrupted`]).

use std::collections::{BTreeMap, BTreeSet};

use flotilla_proto::v1::{
    GetClusterRequest, GetNodeRequest, WatchClustersRequest, WatchEventType, WatchNodesRequest,
    WatchOperationsRequest,
};
use serde::Serialize;

use crate::api::CmdError;
use crate::client;
use crate::get;
use crate::operation::{self, OperationView};
use crate::output::{Format, OutputError};

/// The last line printed per resource, so a watch prints only changes.
#[derive(Debug, Default)]
pub struct Changes {
    last: BTreeMap<String, String>,
}

impl Changes {
    /// Records `line` for `key`; true when it differs from the last one printed for it.
    pub fn changed(&mut self, key: &str, line: &str) -> bool {
        if self.last.get(key).is_some_and(|l| l == line) {
            return false;
        }
        self.last.insert(key.to_string(), line.to_string());
        true
    }

    /// Forgets `key`; true when something had been printed for it.
    pub fn remove(&mut self, key: &str) -> bool {
        self.last.remove(key).is_some()
    }

    /// Forgets and returns the keys printed before that are not in `present`.
    pub fn gone(&mut self, present: &BTreeSet<String>) -> Vec<String> {
        let gone: Vec<String> = self
            .last
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for k in &gone {
            self.last.remove(k);
        }
        gone
    }
}

/// One resource as one printed record: the table `row`, or `view` as compact JSON or as a
/// YAML document.
pub fn record<T: Serialize>(format: Format, view: &T, row: &str) -> Result<String, OutputError> {
    Ok(match format {
        Format::Table | Format::Wide => row.to_string(),
        Format::Json => serde_json::to_string(view)?,
        Format::Yaml => format!("---\n{}", serde_yaml::to_string(view)?.trim_end()),
    })
}

/// The record of a resource that is gone.
pub fn deleted_record(format: Format, name: &str, row: &str) -> Result<String, OutputError> {
    #[derive(Serialize)]
    struct Deleted<'a> {
        name: &'a str,
        deleted: bool,
    }
    let v = Deleted {
        name,
        deleted: true,
    };
    record(format, &v, &format!("{row} (deleted)"))
}

fn header(format: Format, header: &str) {
    if matches!(format, Format::Table | Format::Wide) {
        println!("{header}");
    }
}

/// Runs a watch until it ends or Ctrl-C (SIGINT), whichever comes first. The handler is
/// installed before `body` first runs, so an interrupt while connecting or printing ends the
/// watch as well as one while waiting. Ctrl-C is how a watch is meant to end, so it ends
/// successfully (status 0, nothing more printed): lines are printed whole (standard output
/// is line-buffered and the body is only stopped at an await point), and a script reading
/// `-o json` sees only complete objects. When no handler can be installed the body just
/// runs, and SIGINT stops the process the default way.
pub async fn until_interrupted<E>(
    body: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), E> {
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = interrupted => Ok(()),
        r = body => r,
    }
}

/// `flotilla get nodes [NAME] --watch`: the nodes, then each node whose row changed, on the
/// server's WatchNodes stream (record and placed instances).
pub async fn nodes(server: &str, name: Option<&str>, format: Format) -> Result<(), CmdError> {
    let mut c = client::nodes(server).await?;
    if let Some(n) = name {
        // An unknown node fails now with NODE_NOT_FOUND instead of a silent stream.
        c.get_node(GetNodeRequest {
            name: n.to_string(),
        })
        .await?;
    }
    let mut stream = c
        .watch_nodes(WatchNodesRequest {
            revision: 0,
            name: name.unwrap_or_default().to_string(),
        })
        .await?
        .into_inner();
    let mut seen = Changes::default();
    header(format, &get::node_header());
    while let Some(ev) = stream.message().await? {
        let kind = WatchEventType::try_from(ev.r#type).unwrap_or(WatchEventType::Unspecified);
        let Some(n) = ev.node.filter(|_| kind != WatchEventType::Bookmark) else {
            continue;
        };
        let v = get::node_view(&n);
        let row = get::node_line(&n);
        if kind == WatchEventType::Delete {
            if seen.remove(&v.name) {
                println!("{}", deleted_record(format, &v.name, &row)?);
            }
            continue;
        }
        let rec = record(format, &v, &row)?;
        if seen.changed(&v.name, &rec) {
            println!("{rec}");
        }
    }
    Ok(())
}

/// `flotilla get members CLUSTER --watch`: the cluster's members, then each member whose row
/// changed, on the cluster's Watch stream; ends when the cluster is deleted.
pub async fn members(server: &str, cluster: &str, format: Format) -> Result<(), CmdError> {
    let mut c = client::clusters(server).await?;
    // An unknown cluster fails now with CLUSTER_NOT_FOUND instead of a silent stream.
    c.get_cluster(GetClusterRequest {
        name: cluster.to_string(),
    })
    .await?;
    let mut stream = c
        .watch_clusters(WatchClustersRequest {
            revision: 0,
            name: cluster.to_string(),
        })
        .await?
        .into_inner();
    let mut seen = Changes::default();
    let mut rows: BTreeMap<String, String> = BTreeMap::new();
    header(format, &get::member_header());
    loop {
        let Some(ev) = stream.message().await? else {
            return Ok(());
        };
        let kind = WatchEventType::try_from(ev.r#type).unwrap_or(WatchEventType::Unspecified);
        let Some(cl) = ev.cluster.filter(|_| kind != WatchEventType::Bookmark) else {
            continue;
        };
        let members = if kind == WatchEventType::Delete {
            Vec::new()
        } else {
            cl.status.unwrap_or_default().members
        };
        let mut present = BTreeSet::new();
        for m in &members {
            let row = get::member_line(m);
            let rec = record(format, &get::member_view(m), &row)?;
            if seen.changed(&m.name, &rec) {
                println!("{rec}");
            }
            present.insert(m.name.clone());
            rows.insert(m.name.clone(), row);
        }
        for gone in seen.gone(&present) {
            let row = rows.remove(&gone).unwrap_or_else(|| gone.clone());
            println!("{}", deleted_record(format, &gone, &row)?);
        }
        if kind == WatchEventType::Delete {
            eprintln!("cluster {cluster} was deleted");
            return Ok(());
        }
    }
}

/// A fixed-width row for a streamed operation (a stream cannot size columns to all rows).
pub fn operation_row(v: &OperationView) -> String {
    format!(
        "{:<28} {:<16} {:<15} {:<11} {} ({}/{}) {}%",
        v.name,
        v.cluster,
        v.kind,
        v.phase,
        v.step,
        v.step_number,
        v.total_steps,
        v.progress_percent
    )
}

/// The header of [`operation_row`] rows.
pub fn operation_header() -> String {
    format!(
        "{:<28} {:<16} {:<15} {:<11} STEP PROGRESS",
        "NAME", "CLUSTER", "KIND", "PHASE"
    )
}

/// `flotilla get operations [--cluster C] [NAME] --watch`: operations and each change, on
/// the server's WatchOperations stream.
pub async fn operations(
    server: &str,
    cluster: Option<&str>,
    name: Option<&str>,
    format: Format,
) -> Result<(), CmdError> {
    let mut c = operation::ops(server).await?;
    if let Some(n) = name {
        // An unknown operation fails now with OPERATION_NOT_FOUND.
        c.get_operation(flotilla_proto::v1::GetOperationRequest {
            name: n.to_string(),
        })
        .await?;
    }
    let mut stream = c
        .watch_operations(WatchOperationsRequest {
            revision: 0,
            name: name.unwrap_or_default().to_string(),
        })
        .await?
        .into_inner();
    let mut seen = Changes::default();
    header(format, &operation_header());
    loop {
        let Some(ev) = stream.message().await? else {
            return Ok(());
        };
        let kind = WatchEventType::try_from(ev.r#type).unwrap_or(WatchEventType::Unspecified);
        let Some(op) = ev.operation.filter(|_| kind != WatchEventType::Bookmark) else {
            continue;
        };
        let v = operation::view(&op);
        if cluster.is_some_and(|want| want != v.cluster) {
            continue;
        }
        let row = operation_row(&v);
        if kind == WatchEventType::Delete {
            if seen.remove(&v.name) {
                println!("{}", deleted_record(format, &v.name, &row)?);
            }
            continue;
        }
        let rec = record(format, &v, &row)?;
        if seen.changed(&v.name, &rec) {
            println!("{rec}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_print() {
        let mut c = Changes::default();
        assert!(c.changed("a", "a Ready"));
        assert!(c.changed("b", "b Ready"));
        assert!(!c.changed("a", "a Ready"), "same line again is no change");
        assert!(c.changed("a", "a NotReady"));
        let present: BTreeSet<String> = ["a".to_string()].into();
        assert_eq!(c.gone(&present), vec!["b".to_string()]);
        assert!(c.gone(&present).is_empty(), "reported once");
        assert!(c.remove("a") && !c.remove("a"));
    }

    #[test]
    fn records_per_format() {
        #[derive(Serialize)]
        struct V {
            name: &'static str,
        }
        let v = V { name: "n" };
        assert_eq!(record(Format::Table, &v, "n Ready").unwrap(), "n Ready");
        assert_eq!(record(Format::Json, &v, "x").unwrap(), r#"{"name":"n"}"#);
        assert_eq!(record(Format::Yaml, &v, "x").unwrap(), "---\nname: n");
        assert_eq!(
            deleted_record(Format::Json, "n", "x").unwrap(),
            r#"{"name":"n","deleted":true}"#
        );
        assert_eq!(
            deleted_record(Format::Wide, "n", "n Ready").unwrap(),
            "n Ready (deleted)"
        );
    }
}

//! `flotilla get clusters|nodes|members [NAME]`: one line per resource (or just the named one), the columns an operator
//! looks at first (phase, ready members, writable groups, nameserver address; node phase,
//! address, instances; each member's role, id, readiness and offsets).
//!
//! Everything is fetched before anything is printed, so a failure prints only the error (on
//! stderr, by `main`) and never a table header without rows on the same terminal line.
//! `-o json|yaml` prints the views of [`crate::view`] (stable field names) instead.

use flotilla_proto::v1::{
    Cluster, ClusterPhase, GetClusterRequest, GetNodeRequest, InstanceKind, ListClustersRequest,
    ListNodesRequest, Member, MemberRole, Node, NodePhase,
};

use crate::api::CmdError;
use crate::client::{self, ClientError};
use crate::output::{self, Format, OutputError};
use crate::view;

/// Listing failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The control plane refused.
    #[error("control plane: {0}")]
    Api(#[from] tonic::Status),
    /// The control plane could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The answer could not be printed.
    #[error(transparent)]
    Output(#[from] OutputError),
}

impl GetError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Api(_) => "GET_API_ERROR",
            Self::Client(e) => e.code(),
            Self::Output(e) => e.code(),
        }
    }
}

/// A cluster phase's name.
pub fn phase_name(p: i32) -> &'static str {
    match ClusterPhase::try_from(p) {
        Ok(ClusterPhase::Pending) => "Pending",
        Ok(ClusterPhase::Provisioning) => "Provisioning",
        Ok(ClusterPhase::Running) => "Running",
        Ok(ClusterPhase::Degraded) => "Degraded",
        Ok(ClusterPhase::Deleting) => "Deleting",
        _ => "Unknown",
    }
}

/// One line describing a cluster.
pub fn cluster_line(c: &Cluster) -> String {
    let name = c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
    let st = c.status.clone().unwrap_or_default();
    let ready = st.members.iter().filter(|m| m.ready).count();
    let writable = st.groups.iter().filter(|g| g.ready).count();
    format!(
        "{name:<20} {:<13} {:>3}/{:<3} {:>3}/{:<3} {}",
        phase_name(st.phase),
        ready,
        st.members.len(),
        writable,
        st.groups.len(),
        st.namesrv_addr
    )
}

/// The header of [`cluster_line`] rows.
pub fn cluster_header() -> String {
    format!(
        "{:<20} {:<13} {:>7} {:>7} NAMESRV",
        "NAME", "PHASE", "READY", "GROUPS"
    )
}

fn role_of(m: &Member) -> String {
    role_name(m.role).to_string()
}

/// The JSON/YAML view of a cluster.
pub fn cluster_view(c: &Cluster) -> view::Cluster {
    let meta = c.metadata.clone().unwrap_or_default();
    let st = c.status.clone().unwrap_or_default();
    view::Cluster {
        name: meta.name,
        phase: phase_name(st.phase).to_string(),
        generation: meta.generation,
        observed_generation: st.observed_generation,
        namesrv_addr: st.namesrv_addr.clone(),
        ready_members: st.members.iter().filter(|m| m.ready).count(),
        members: st.members.iter().map(member_view).collect(),
        groups: st
            .groups
            .iter()
            .map(|g| view::GroupReadiness {
                name: g.name.clone(),
                ready: g.ready,
                master: g.master.clone(),
                reason: g.reason.clone(),
            })
            .collect(),
        conditions: st
            .conditions
            .iter()
            .map(|c| {
                let status = match flotilla_proto::v1::ConditionStatus::try_from(c.status) {
                    Ok(flotilla_proto::v1::ConditionStatus::True) => "True",
                    Ok(flotilla_proto::v1::ConditionStatus::False) => "False",
                    _ => "Unknown",
                };
                (c.r#type.clone(), status.to_string())
            })
            .collect(),
    }
}

/// The JSON/YAML view of a member.
pub fn member_view(m: &Member) -> view::Member {
    view::Member {
        name: m.name.clone(),
        kind: if m.kind == InstanceKind::Broker as i32 {
            "broker"
        } else {
            "namesrv"
        }
        .to_string(),
        group: m.group.clone(),
        role: role_of(m),
        broker_id: m.broker_id,
        node: m.node.clone(),
        address: m.address.clone(),
        pid: m.pid,
        ready: m.ready,
        writable: m.writable,
        term: m.term,
        restarts: m.restarts,
        state: m.state.clone(),
    }
}

/// The JSON/YAML view of a node.
pub fn node_view(n: &Node) -> view::Node {
    let st = n.status.clone().unwrap_or_default();
    view::Node {
        name: n
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        phase: match NodePhase::try_from(st.phase) {
            Ok(NodePhase::Ready) => "Ready",
            Ok(NodePhase::NotReady) => "NotReady",
            _ => "Unknown",
        }
        .to_string(),
        address: st.advertise_address.clone(),
        cordoned: n.spec.as_ref().is_some_and(|s| s.cordoned),
        instances: st.instances.clone(),
        limits: st.limits_mechanism.clone(),
    }
}

/// Prints every cluster.
pub async fn clusters(server: &str, format: Format) -> Result<(), GetError> {
    let mut c = client::clusters(server).await?;
    let mut token = String::new();
    let mut rows = Vec::new();
    let mut views = Vec::new();
    loop {
        let resp = c
            .list_clusters(ListClustersRequest {
                page_size: 100,
                page_token: token.clone(),
                label_selector: String::new(),
            })
            .await?
            .into_inner();
        rows.extend(resp.clusters.iter().map(cluster_line));
        views.extend(resp.clusters.iter().map(cluster_view));
        if resp.next_page_token.is_empty() {
            break;
        }
        token = resp.next_page_token;
    }
    output::print(format, &views, |_| {
        let mut s = cluster_header() + "\n";
        for r in rows {
            s.push_str(&r);
            s.push('\n');
        }
        s
    })?;
    Ok(())
}

/// One row of `flotilla get nodes`.
pub fn node_line(n: &Node) -> String {
    let name = n.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
    let st = n.status.clone().unwrap_or_default();
    let phase = match NodePhase::try_from(st.phase) {
        Ok(NodePhase::Ready) => "Ready",
        Ok(NodePhase::NotReady) => "NotReady",
        _ => "Unknown",
    };
    let cordoned = n.spec.as_ref().is_some_and(|s| s.cordoned);
    format!(
        "{name:<12} {:<9} {:<16} {:<8} {}{}",
        phase,
        st.advertise_address,
        st.limits_mechanism,
        st.instances.join(","),
        if cordoned { " (cordoned)" } else { "" }
    )
}

/// The header of [`node_line`] rows.
pub fn node_header() -> String {
    format!(
        "{:<12} {:<9} {:<16} {:<8} INSTANCES",
        "NAME", "PHASE", "ADDRESS", "LIMITS"
    )
}

/// Prints one cluster (`flotilla get clusters NAME`): its row, or its view as one JSON/YAML
/// object. An unknown name fails with the control plane's CLUSTER_NOT_FOUND.
pub async fn cluster(server: &str, name: &str, format: Format) -> Result<(), CmdError> {
    let cl = client::clusters(server)
        .await?
        .get_cluster(GetClusterRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner();
    output::print(format, &cluster_view(&cl), |_| {
        format!("{}\n{}\n", cluster_header(), cluster_line(&cl))
    })?;
    Ok(())
}

/// Prints one node (`flotilla get nodes NAME`); an unknown name fails with NODE_NOT_FOUND.
pub async fn node(server: &str, name: &str, format: Format) -> Result<(), CmdError> {
    let n = client::nodes(server)
        .await?
        .get_node(GetNodeRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner();
    output::print(format, &node_view(&n), |_| {
        format!("{}\n{}\n", node_header(), node_line(&n))
    })?;
    Ok(())
}

/// Prints every cluster, then every change as it happens (`--watch`): one table row, or one
/// compact JSON object per line (`-o json`), per change; deleted clusters print with phase
/// `Deleted`. Runs until the stream ends or the command is interrupted.
pub async fn watch_clusters(
    server: &str,
    name: Option<&str>,
    format: Format,
) -> Result<(), GetError> {
    use flotilla_proto::v1::{WatchClustersRequest, WatchEventType};
    let mut c = client::clusters(server).await?;
    let mut stream = c
        .watch_clusters(WatchClustersRequest {
            revision: 0,
            name: name.unwrap_or_default().to_string(),
        })
        .await?
        .into_inner();
    if matches!(format, Format::Table | Format::Wide) {
        println!("{}", cluster_header());
    }
    while let Some(ev) = stream.message().await? {
        let kind = WatchEventType::try_from(ev.r#type).unwrap_or(WatchEventType::Unspecified);
        let Some(cl) = ev.cluster.filter(|_| kind != WatchEventType::Bookmark) else {
            continue;
        };
        let mut v = cluster_view(&cl);
        if kind == WatchEventType::Delete {
            v.phase = "Deleted".to_string();
        }
        match format {
            Format::Json => println!("{}", serde_json::to_string(&v).map_err(OutputError::from)?),
            Format::Yaml => print!(
                "---\n{}",
                serde_yaml::to_string(&v).map_err(OutputError::from)?
            ),
            Format::Table | Format::Wide => {
                let line = cluster_line(&cl);
                if kind == WatchEventType::Delete {
                    println!("{line} (deleted)");
                } else {
                    println!("{line}");
                }
            }
        }
    }
    Ok(())
}

/// Prints every node.
pub async fn nodes(server: &str, format: Format) -> Result<(), GetError> {
    let mut c = client::nodes(server).await?;
    let mut token = String::new();
    let mut rows = Vec::new();
    let mut views = Vec::new();
    loop {
        let resp = c
            .list_nodes(ListNodesRequest {
                page_size: 100,
                page_token: token.clone(),
                label_selector: String::new(),
            })
            .await?
            .into_inner();
        rows.extend(resp.nodes.iter().map(node_line));
        views.extend(resp.nodes.iter().map(node_view));
        if resp.next_page_token.is_empty() {
            break;
        }
        token = resp.next_page_token;
    }
    output::print(format, &views, |_| {
        let mut s = node_header() + "\n";
        for r in rows {
            s.push_str(&r);
            s.push('\n');
        }
        s
    })?;
    Ok(())
}

/// A member role's name.
pub fn role_name(r: i32) -> &'static str {
    match MemberRole::try_from(r) {
        Ok(MemberRole::Namesrv) => "namesrv",
        Ok(MemberRole::Master) => "master",
        Ok(MemberRole::Slave) => "slave",
        Ok(MemberRole::Leader) => "leader",
        Ok(MemberRole::Follower) => "follower",
        Ok(MemberRole::Candidate) => "candidate",
        _ => "-",
    }
}

/// One row of `flotilla get members`.
pub fn member_line(m: &Member) -> String {
    let broker = m.kind == InstanceKind::Broker as i32;
    let id = if broker {
        m.broker_id.to_string()
    } else {
        "-".to_string()
    };
    let term = if m.term > 0 {
        m.term.to_string()
    } else {
        "-".to_string()
    };
    let offsets = match (&m.commit_log, broker) {
        (Some(o), true) => format!("{}/{}", o.max_offset, o.confirmed_offset),
        _ => "-".to_string(),
    };
    let writable = match (broker, m.writable) {
        (false, _) => "-",
        (true, true) => "yes",
        (true, false) => "no",
    };
    format!(
        "{:<22} {:<10} {:>3} {:>5} {:<10} {:<22} {:>8} {:<5} {:<8} {:>9} {:<10} {}",
        m.name,
        role_name(m.role),
        id,
        term,
        m.node,
        m.address,
        m.pid,
        if m.ready { "yes" } else { "no" },
        writable,
        m.restarts,
        m.state,
        offsets
    )
}

/// The header of [`member_line`] rows.
pub fn member_header() -> String {
    format!(
        "{:<22} {:<10} {:>3} {:>5} {:<10} {:<22} {:>8} {:<5} {:<8} {:>9} {:<10} MAX/CONFIRMED",
        "MEMBER",
        "ROLE",
        "ID",
        "TERM",
        "NODE",
        "ADDRESS",
        "PID",
        "READY",
        "WRITABLE",
        "RESTARTS",
        "STATE"
    )
}

/// One line of a group's readiness under `flotilla get members`.
pub fn group_line(g: &flotilla_proto::v1::GroupStatus) -> String {
    if g.ready {
        format!("group {}: Ready, master {}", g.name, g.master)
    } else {
        format!("group {}: not Ready ({}): {}", g.name, g.reason, g.message)
    }
}

/// Prints every member of one cluster: role, id, term, placement, process, readiness, offsets.
pub async fn members(server: &str, cluster: &str, format: Format) -> Result<(), GetError> {
    let mut c = client::clusters(server).await?;
    let cl = c
        .get_cluster(GetClusterRequest {
            name: cluster.to_string(),
        })
        .await?
        .into_inner();
    let st = cl.status.clone().unwrap_or_default();
    let views: Vec<view::Member> = st.members.iter().map(member_view).collect();
    output::print(format, &views, |_| {
        let mut s = member_header() + "\n";
        for m in &st.members {
            s.push_str(&member_line(m));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&cluster_header());
        s.push('\n');
        s.push_str(&cluster_line(&cl));
        s.push('\n');
        for g in &st.groups {
            s.push_str(&group_line(g));
            s.push('\n');
        }
        s
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_proto::v1::CommitLogOffsets;

    #[test]
    fn member_rows_show_role_id_term_and_offsets() {
        let m = Member {
            name: "c-0-1".into(),
            kind: InstanceKind::Broker as i32,
            role: MemberRole::Leader as i32,
            broker_id: 0,
            term: 7,
            node: "node-b".into(),
            address: "127.0.0.2:10911".into(),
            pid: 4242,
            ready: true,
            writable: true,
            state: "Running".into(),
            commit_log: Some(CommitLogOffsets {
                min_offset: 0,
                max_offset: 2048,
                confirmed_offset: 1024,
            }),
            ..Default::default()
        };
        let row = member_line(&m);
        assert_eq!(
            row.split_whitespace().count(),
            member_header().split_whitespace().count(),
            "one value per column: {row:?}"
        );
        for part in [
            "c-0-1",
            "leader",
            " 0 ",
            " 7 ",
            "node-b",
            "4242",
            "yes",
            "2048/1024",
        ] {
            assert!(row.contains(part), "{part:?} in {row:?}");
        }
        let ns = Member {
            name: "c-namesrv-0".into(),
            kind: InstanceKind::Namesrv as i32,
            role: MemberRole::Namesrv as i32,
            ..Default::default()
        };
        let row = member_line(&ns);
        assert!(row.contains("namesrv") && !row.contains('/'), "{row}");
    }
}

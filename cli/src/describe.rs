//! `flotilla describe cluster|node|operation NAME`: everything about one resource on one
//! screen, for a person, the way `kubectl describe` reads: `Key: value` lines, then the
//! spec, the conditions, and the parts a table row cannot hold (a cluster's members and
//! groups, a node's instances and capacity, an operation's handles and history).
//!
//! The text is for people and may change; `-o json|yaml` prints exactly what `flotilla get
//! KIND NAME -o json|yaml` prints (the stable views), so scripts use one contract. The
//! formatting functions are pure (a message in, text out) and tested beside the code.

use flotilla_proto::v1::{
    BrokerMode, Cluster, Condition, ConditionStatus, GetClusterRequest, GetNodeRequest,
    GetOperationRequest, Node, ObjectMeta, Operation,
};

use crate::api::CmdError;
use crate::client;
use crate::get;
use crate::operation;
use crate::output::{self, Format};
use crate::view;

/// What `flotilla describe` can describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Describable {
    /// A cluster: spec, status, conditions, groups, members.
    #[value(alias = "clusters")]
    Cluster,
    /// A node: status, capacity, conditions, instances.
    #[value(alias = "nodes")]
    Node,
    /// An operation: spec, progress, handles, history.
    #[value(alias = "operations", alias = "op")]
    Operation,
}

/// Appends `Key: value` with values aligned in one column.
fn field(out: &mut String, indent: usize, key: &str, value: impl std::fmt::Display) {
    let pad = " ".repeat(indent);
    let label = format!("{key}:");
    out.push_str(&format!(
        "{pad}{label:<w$} {value}\n",
        w = 22 - indent.min(20)
    ));
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "<none>" } else { s }
}

fn meta_fields(out: &mut String, meta: Option<&ObjectMeta>) {
    let meta = meta.cloned().unwrap_or_default();
    field(out, 0, "Name", &meta.name);
    if !meta.uid.is_empty() {
        field(out, 0, "UID", &meta.uid);
    }
    if let Some(t) = view::time(meta.create_time.as_ref()) {
        field(out, 0, "Created", t);
    }
    if let Some(t) = view::time(meta.delete_time.as_ref()) {
        field(out, 0, "Deleting since", t);
    }
    let labels: Vec<String> = {
        let mut l: Vec<_> = meta.labels.iter().collect();
        l.sort();
        l.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    };
    field(out, 0, "Labels", or_none(&labels.join(",")));
}

fn conditions(out: &mut String, conds: &[Condition]) {
    out.push_str("Conditions:\n");
    if conds.is_empty() {
        out.push_str("  <none>\n");
        return;
    }
    let rows: Vec<Vec<String>> = conds
        .iter()
        .map(|c| {
            let status = match ConditionStatus::try_from(c.status) {
                Ok(ConditionStatus::True) => "True",
                Ok(ConditionStatus::False) => "False",
                _ => "Unknown",
            };
            vec![
                c.r#type.clone(),
                status.to_string(),
                or_none(&c.reason).to_string(),
                view::time(c.last_transition_time.as_ref()).unwrap_or_else(|| "-".into()),
                c.message.clone(),
            ]
        })
        .collect();
    indented(
        out,
        &output::columns(&["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], &rows),
    );
}

fn indented(out: &mut String, block: &str) {
    for line in block.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

/// The `describe cluster` text.
pub fn cluster_text(c: &Cluster) -> String {
    let mut out = String::new();
    meta_fields(&mut out, c.metadata.as_ref());
    let generation = c
        .metadata
        .as_ref()
        .map(|m| m.generation)
        .unwrap_or_default();
    let spec = c.spec.clone().unwrap_or_default();
    let st = c.status.clone().unwrap_or_default();
    field(&mut out, 0, "Phase", get::phase_name(st.phase));
    field(
        &mut out,
        0,
        "Generation",
        format!("{generation} (status observed {})", st.observed_generation),
    );
    field(&mut out, 0, "Nameserver address", or_none(&st.namesrv_addr));
    out.push_str("Spec:\n");
    field(&mut out, 2, "Version", or_none(&spec.version));
    field(&mut out, 2, "Paused", spec.paused);
    field(&mut out, 2, "Allow restart", spec.allow_restart);
    let ns = spec.nameserver.unwrap_or_default();
    field(
        &mut out,
        2,
        "Nameservers",
        format!("{} (port {})", ns.replicas, ns.port),
    );
    let b = spec.broker.unwrap_or_default();
    let mode = match BrokerMode::try_from(b.mode) {
        Ok(BrokerMode::Dledger) => "DLedger",
        Ok(BrokerMode::MasterSlave) => "MasterSlave",
        _ => "Unspecified",
    };
    field(
        &mut out,
        2,
        "Brokers",
        format!(
            "{} groups x {} replicas, {mode} (port {})",
            b.groups, b.replicas_per_group, b.port
        ),
    );
    if !b.config.is_empty() {
        let mut kv: Vec<_> = b.config.iter().collect();
        kv.sort();
        out.push_str("  Broker config:\n");
        for (k, v) in kv {
            out.push_str(&format!("    {k}={v}\n"));
        }
    }
    conditions(&mut out, &st.conditions);
    out.push_str("Groups:\n");
    if st.groups.is_empty() {
        out.push_str("  <none>\n");
    }
    for g in &st.groups {
        out.push_str(&format!("  {}\n", get::group_line(g)));
    }
    let ready = st.members.iter().filter(|m| m.ready).count();
    out.push_str(&format!("Members ({ready}/{} ready):\n", st.members.len()));
    if st.members.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let mut block = get::member_header() + "\n";
        for m in &st.members {
            block.push_str(&get::member_line(m));
            block.push('\n');
        }
        indented(&mut out, &block);
    }
    field(
        &mut out,
        0,
        "Active operations",
        or_none(&st.active_operations.join(", ")),
    );
    out
}

/// The `describe node` text.
pub fn node_text(n: &Node) -> String {
    let mut out = String::new();
    meta_fields(&mut out, n.metadata.as_ref());
    let v = get::node_view(n);
    let spec = n.spec.unwrap_or_default();
    let st = n.status.clone().unwrap_or_default();
    field(&mut out, 0, "Phase", &v.phase);
    field(&mut out, 0, "Address", or_none(&v.address));
    field(&mut out, 0, "Cordoned", spec.cordoned);
    field(&mut out, 0, "Draining", spec.draining);
    field(&mut out, 0, "Agent version", or_none(&st.agent_version));
    field(&mut out, 0, "Limits", or_none(&v.limits));
    field(&mut out, 0, "Data directory", or_none(&st.data_dir));
    field(
        &mut out,
        0,
        "Last heartbeat",
        view::time(st.last_heartbeat.as_ref()).unwrap_or_else(|| "<never>".into()),
    );
    if let Some(t) = &st.topology {
        field(
            &mut out,
            0,
            "Topology",
            format!(
                "zone={} region={} hostname={}",
                or_none(&t.zone),
                or_none(&t.region),
                or_none(&t.hostname)
            ),
        );
    }
    if let Some(c) = &st.capacity {
        out.push_str("Capacity:\n");
        field(&mut out, 2, "Memory", format!("{} MiB", c.memory_mib));
        field(&mut out, 2, "CPU", format!("{}m", c.cpu_millis));
        field(
            &mut out,
            2,
            "Disk free",
            format!("{} MiB", c.disk_free_bytes / (1024 * 1024)),
        );
    }
    conditions(&mut out, &st.conditions);
    out.push_str(&format!("Instances ({}):\n", v.instances.len()));
    if v.instances.is_empty() {
        out.push_str("  <none>\n");
    }
    for i in &v.instances {
        out.push_str(&format!("  {i}\n"));
    }
    out
}

/// The `describe operation` text.
pub fn operation_text(op: &Operation) -> String {
    let mut out = String::new();
    meta_fields(&mut out, op.metadata.as_ref());
    let v = operation::view(op);
    let st = op.status.clone().unwrap_or_default();
    field(&mut out, 0, "Cluster", or_none(&v.cluster));
    field(&mut out, 0, "Kind", &v.kind);
    field(&mut out, 0, "Phase", &v.phase);
    field(
        &mut out,
        0,
        "Step",
        format!("{} ({}/{})", or_none(&v.step), v.step_number, v.total_steps),
    );
    field(&mut out, 0, "Progress", format!("{}%", v.progress_percent));
    field(&mut out, 0, "Done", v.done);
    field(
        &mut out,
        0,
        "Point of no return",
        if v.point_of_no_return_passed {
            "passed (cannot be cancelled)"
        } else {
            "not passed (can be cancelled)"
        },
    );
    if let Some(t) = view::time(st.start_time.as_ref()) {
        field(&mut out, 0, "Started", t);
    }
    if let Some(t) = view::time(st.end_time.as_ref()) {
        field(&mut out, 0, "Ended", t);
    }
    field(&mut out, 0, "Waiting for", or_none(&v.waiting_for));
    if let Some(e) = &v.error {
        field(&mut out, 0, "Error", e);
    }
    conditions(&mut out, &st.conditions);
    out.push_str("Handles:\n");
    if v.handles.is_empty() {
        out.push_str("  <none>\n");
    }
    for (k, val) in &v.handles {
        out.push_str(&format!("  {k}={val}\n"));
    }
    out.push_str("History (oldest first):\n");
    if v.history.is_empty() {
        out.push_str("  <none>\n");
    }
    for h in &v.history {
        out.push_str(&format!("  {h}\n"));
    }
    out
}

/// Runs `flotilla describe KIND NAME`.
pub async fn run(
    server: &str,
    what: Describable,
    name: &str,
    format: Format,
) -> Result<(), CmdError> {
    let name = name.to_string();
    match what {
        Describable::Cluster => {
            let c = client::clusters(server)
                .await?
                .get_cluster(GetClusterRequest { name })
                .await?
                .into_inner();
            output::print(format, &get::cluster_view(&c), |_| cluster_text(&c))?;
        }
        Describable::Node => {
            let n = client::nodes(server)
                .await?
                .get_node(GetNodeRequest { name })
                .await?
                .into_inner();
            output::print(format, &get::node_view(&n), |_| node_text(&n))?;
        }
        Describable::Operation => {
            let op = operation::ops(server)
                .await?
                .get_operation(GetOperationRequest { name })
                .await?
                .into_inner();
            output::print(format, &operation::view(&op), |_| operation_text(&op))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_proto::v1::{
        BrokerSpec, ClusterPhase, ClusterSpec, ClusterStatus, InstanceKind, Member, MemberRole,
        NodeSpec, NodeStatus, OperationPhase, OperationSpec, OperationStatus, ScaleInSpec,
        operation_spec,
    };

    fn meta(name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            generation: 4,
            ..Default::default()
        })
    }

    #[test]
    fn a_cluster_shows_phase_spec_conditions_and_members() {
        let c = Cluster {
            metadata: meta("orders"),
            spec: Some(ClusterSpec {
                broker: Some(BrokerSpec {
                    groups: 2,
                    replicas_per_group: 3,
                    mode: BrokerMode::Dledger as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(ClusterStatus {
                phase: ClusterPhase::Running as i32,
                observed_generation: 4,
                conditions: vec![Condition {
                    r#type: "Ready".into(),
                    status: ConditionStatus::True as i32,
                    reason: "AllReady".into(),
                    ..Default::default()
                }],
                members: vec![Member {
                    name: "orders-0-0".into(),
                    kind: InstanceKind::Broker as i32,
                    role: MemberRole::Leader as i32,
                    node: "node-a".into(),
                    ready: true,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        let t = cluster_text(&c);
        for want in [
            "Name:",
            "orders",
            "Phase:                 Running",
            "4 (status observed 4)",
            "2 groups x 3 replicas, DLedger",
            "Ready  True    AllReady  -",
            "Members (1/1 ready):",
            "orders-0-0",
            "leader",
            "node-a",
            "Active operations:     <none>",
        ] {
            assert!(t.contains(want), "{want:?} in:\n{t}");
        }
    }

    #[test]
    fn a_node_and_an_operation_read_as_key_values() {
        let n = Node {
            metadata: meta("node-a"),
            spec: Some(NodeSpec {
                cordoned: true,
                draining: false,
            }),
            status: Some(NodeStatus {
                advertise_address: "127.0.0.1".into(),
                instances: vec!["orders-0-0".into()],
                ..Default::default()
            }),
        };
        let t = node_text(&n);
        assert!(t.contains("Cordoned:              true"), "{t}");
        assert!(t.contains("Instances (1):\n  orders-0-0\n"), "{t}");
        assert!(t.contains("Conditions:\n  <none>\n"), "{t}");
        let op = Operation {
            metadata: meta("op-1"),
            spec: Some(OperationSpec {
                cluster: "orders".into(),
                kind: Some(operation_spec::Kind::ScaleIn(ScaleInSpec::default())),
            }),
            status: Some(OperationStatus {
                phase: OperationPhase::Running as i32,
                step: "Drain".into(),
                total_steps: 3,
                history: vec!["started".into(), "Drain".into()],
                ..Default::default()
            }),
        };
        let t = operation_text(&op);
        for want in [
            "Kind:                  ScaleIn",
            "Step:                  Drain (1/3)",
            "History (oldest first):\n  started\n  Drain\n",
            "not passed (can be cancelled)",
        ] {
            assert!(t.contains(want), "{want:?} in:\n{t}");
        }
    }
}

//! Status folding: agents' reports → `Cluster.status`. Pure functions.
//!
//! Observed state comes only from agent reports (principle 1): each member's role, pid,
//! readiness, offsets, registered nameservers, restarts, config hash and state are copied from
//! the observation of that instance on the node it is placed on. Group readiness and the
//! `Ready` condition follow the one rule of [`super::readiness`]; phase and the conditions
//! `Progressing` and `Degraded` (CamelCase reasons) are derived from the same members.
//! `Ready` says the cluster serves (every group has its writable master, every nameserver
//! answers); the phase is `Running` only when it is also on the desired config everywhere. A
//! condition's `last_transition_time` only moves when its status changes, and nothing in the
//! result depends on the time otherwise, so an unchanged world folds to an identical status
//! (and the reconciler writes nothing).

use std::collections::HashMap;

use flotilla_proto::agent::v1::{InstanceObservation, InstanceState};
use flotilla_proto::v1::{
    ClusterPhase, ClusterStatus, Condition, ConditionStatus, GroupStatus, InstanceKind, Member,
    MemberRole,
};
use prost_types::Timestamp;

use super::readiness::{self, GroupMember};

/// One planned member, as the reconciler placed and rendered it.
#[derive(Debug, Clone, Default)]
pub struct MemberPlan {
    /// Instance name.
    pub name: String,
    /// Nameserver or broker.
    pub kind: InstanceKind,
    /// Group (brokers).
    pub group: String,
    /// brokerId by plan (0 master).
    pub broker_id: i64,
    /// DLedger self id.
    pub dledger_self_id: String,
    /// Node, when placed.
    pub node: Option<String>,
    /// host:port.
    pub address: String,
    /// The desired config hash.
    pub desired_hash: String,
}

/// Everything the fold needs.
#[derive(Debug)]
pub struct FoldInput<'a> {
    /// The spec generation being reconciled.
    pub generation: i64,
    /// Deletion requested.
    pub deleting: bool,
    /// Paused by the user.
    pub paused: bool,
    /// Planned members.
    pub members: &'a [MemberPlan],
    /// Observations by instance name (from the node each member is placed on).
    pub observed: &'a HashMap<String, InstanceObservation>,
    /// Readiness by node.
    pub node_ready: &'a HashMap<String, bool>,
    /// Some member needs a restart that `allow_restart=false` forbids.
    pub restart_blocked: bool,
    /// The latest rolling restart failed (why), and nothing superseded it.
    pub roll_failed: Option<String>,
    /// Nameserver host:port list.
    pub nameserver_addresses: Vec<String>,
    /// Operations still running on the cluster.
    pub active_operations: Vec<String>,
    /// Lag threshold of the group rule ([`readiness::DEFAULT_MAX_LAG_BYTES`]).
    pub max_lag_bytes: i64,
    /// The status currently stored.
    pub previous: Option<&'a ClusterStatus>,
    /// Now.
    pub now: Timestamp,
}

/// CamelCase name of an agent instance state.
pub fn state_name(s: i32) -> &'static str {
    match InstanceState::try_from(s) {
        Ok(InstanceState::Pending) => "Pending",
        Ok(InstanceState::Starting) => "Starting",
        Ok(InstanceState::Running) => "Running",
        Ok(InstanceState::Backoff) => "CrashLoop",
        Ok(InstanceState::Stopping) => "Stopping",
        Ok(InstanceState::Stopped) => "Stopped",
        Ok(InstanceState::Orphaned) => "Orphaned",
        Ok(InstanceState::Failed) => "Failed",
        _ => "Unknown",
    }
}

fn member(
    plan: &MemberPlan,
    obs: Option<&InstanceObservation>,
    node_ready: bool,
    nameservers: &[String],
) -> Member {
    let mut m = Member {
        name: plan.name.clone(),
        kind: plan.kind as i32,
        group: plan.group.clone(),
        broker_id: plan.broker_id,
        dledger_self_id: plan.dledger_self_id.clone(),
        node: plan.node.clone().unwrap_or_default(),
        address: plan.address.clone(),
        role: if plan.kind == InstanceKind::Namesrv {
            MemberRole::Namesrv as i32
        } else {
            MemberRole::Unspecified as i32
        },
        ..Default::default()
    };
    match (plan.node.as_ref(), obs) {
        (None, _) => m.state = "Unschedulable".into(),
        (Some(_), None) => {
            m.state = if node_ready { "Pending" } else { "Unknown" }.into();
        }
        (Some(_), Some(o)) => {
            if o.role != 0 {
                m.role = o.role;
            }
            if plan.kind == InstanceKind::Broker {
                m.broker_id = o.broker_id;
            }
            m.pid = o.pid;
            m.ready = readiness::member_ready(plan.kind, o, node_ready, nameservers);
            m.writable = plan.kind == InstanceKind::Broker && o.writable;
            m.commit_log = o.commit_log;
            m.registered_nameservers = o.registered_nameservers.clone();
            m.restarts = o.restarts;
            m.config_hash = o.config_hash.clone();
            m.state = state_name(o.state).into();
            m.term = o.term;
            if !o.listen_address.is_empty() {
                m.address = o.listen_address.clone();
            }
        }
    }
    m
}

fn condition(
    previous: Option<&ClusterStatus>,
    kind: &str,
    status: ConditionStatus,
    reason: &str,
    message: String,
    generation: i64,
    now: Timestamp,
) -> Condition {
    let prev = previous.and_then(|p| p.conditions.iter().find(|c| c.r#type == kind));
    let last = match prev {
        Some(p) if p.status == status as i32 => p.last_transition_time,
        _ => Some(now),
    };
    Condition {
        r#type: kind.to_string(),
        status: status as i32,
        reason: reason.to_string(),
        message,
        last_transition_time: last,
        observed_generation: generation,
    }
}

/// Folds observations into a status.
pub fn fold(input: &FoldInput<'_>) -> ClusterStatus {
    let members: Vec<Member> = input
        .members
        .iter()
        .map(|p| {
            let ready = p
                .node
                .as_ref()
                .and_then(|n| input.node_ready.get(n))
                .copied()
                .unwrap_or(false);
            member(
                p,
                input.observed.get(&p.name),
                ready,
                &input.nameserver_addresses,
            )
        })
        .collect();
    let total = members.len();
    let unplaced = members.iter().filter(|m| m.node.is_empty()).count();
    let ready = members.iter().filter(|m| m.ready).count();
    let stale = input
        .members
        .iter()
        .zip(&members)
        .filter(|(p, m)| m.config_hash != p.desired_hash)
        .count();
    let failing: Vec<&Member> = members
        .iter()
        .filter(|m| {
            matches!(
                m.state.as_str(),
                "CrashLoop" | "Failed" | "Orphaned" | "Unknown"
            )
        })
        .collect();
    // Groups, in plan order.
    let mut group_names: Vec<&str> = Vec::new();
    for p in input
        .members
        .iter()
        .filter(|p| p.kind == InstanceKind::Broker)
    {
        if !group_names.contains(&p.group.as_str()) {
            group_names.push(&p.group);
        }
    }
    let groups: Vec<GroupStatus> = group_names
        .iter()
        .map(|g| {
            let gm: Vec<GroupMember> = members
                .iter()
                .filter(|m| m.kind == InstanceKind::Broker as i32 && m.group == *g)
                .map(GroupMember::of)
                .collect();
            readiness::group_status(g, &gm, input.max_lag_bytes)
        })
        .collect();
    let nameservers_not_ready: Vec<&str> = members
        .iter()
        .filter(|m| m.kind == InstanceKind::Namesrv as i32 && !m.ready)
        .map(|m| m.name.as_str())
        .collect();
    let groups_not_ready: Vec<&GroupStatus> = groups.iter().filter(|g| !g.ready).collect();
    let cluster_ready = total > 0
        && unplaced == 0
        && nameservers_not_ready.is_empty()
        && groups_not_ready.is_empty()
        && ready == total;
    let all_good = cluster_ready && stale == 0;

    let phase = if input.deleting {
        ClusterPhase::Deleting
    } else if all_good {
        ClusterPhase::Running
    } else if unplaced == total {
        ClusterPhase::Pending
    } else if unplaced > 0 || !failing.is_empty() || input.roll_failed.is_some() {
        ClusterPhase::Degraded
    } else {
        ClusterPhase::Provisioning
    };

    let g = input.generation;
    let now = input.now;
    let prev = input.previous;
    let (ready_status, ready_reason, ready_msg) = if cluster_ready {
        (
            ConditionStatus::True,
            "AllGroupsWritable",
            format!(
                "{ready}/{total} members ready; every group has a writable master registered with every nameserver"
            ),
        )
    } else if unplaced > 0 {
        (
            ConditionStatus::False,
            "Unschedulable",
            format!("{unplaced} of {total} members cannot be placed"),
        )
    } else if !nameservers_not_ready.is_empty() {
        (
            ConditionStatus::False,
            "NameserverNotReady",
            format!("{} not answering", nameservers_not_ready.join(", ")),
        )
    } else if let Some(g) = groups_not_ready.first() {
        (
            ConditionStatus::False,
            if g.reason.is_empty() {
                "MembersNotReady"
            } else {
                g.reason.as_str()
            },
            groups_not_ready
                .iter()
                .map(|g| format!("{}: {}", g.name, g.message))
                .collect::<Vec<_>>()
                .join("; "),
        )
    } else {
        (
            ConditionStatus::False,
            "MembersNotReady",
            format!("{ready}/{total} members ready"),
        )
    };
    let (prog_status, prog_reason, prog_msg) = if input.deleting {
        (
            ConditionStatus::True,
            "Deleting",
            "stopping instances".to_string(),
        )
    } else if input.paused {
        (
            ConditionStatus::False,
            "Paused",
            "reconciliation is paused".to_string(),
        )
    } else if let Some(why) = &input.roll_failed {
        (ConditionStatus::False, "RollFailed", why.clone())
    } else if input.restart_blocked {
        (
            ConditionStatus::False,
            "RestartNotAllowed",
            "a change needs a restart; set spec.allow_restart".to_string(),
        )
    } else if all_good {
        (
            ConditionStatus::False,
            "Reconciled",
            "desired state reached".to_string(),
        )
    } else if unplaced > 0 {
        (
            ConditionStatus::False,
            "Unschedulable",
            "waiting for nodes that can run the remaining members".to_string(),
        )
    } else {
        (
            ConditionStatus::True,
            "RollingOut",
            format!("{} members converging", total - ready.min(total - stale)),
        )
    };
    let (deg_status, deg_reason, deg_msg) = if let Some(why) = &input.roll_failed {
        (ConditionStatus::True, "RollFailed", why.clone())
    } else if !failing.is_empty() {
        (
            ConditionStatus::True,
            "MembersFailing",
            failing
                .iter()
                .map(|m| format!("{} is {}", m.name, m.state))
                .collect::<Vec<_>>()
                .join(", "),
        )
    } else if unplaced > 0 && unplaced < total {
        (
            ConditionStatus::True,
            "Unschedulable",
            format!("{unplaced} members cannot be placed"),
        )
    } else {
        (ConditionStatus::False, "AsExpected", String::new())
    };
    let conditions = vec![
        condition(prev, "Ready", ready_status, ready_reason, ready_msg, g, now),
        condition(
            prev,
            "Progressing",
            prog_status,
            prog_reason,
            prog_msg,
            g,
            now,
        ),
        condition(prev, "Degraded", deg_status, deg_reason, deg_msg, g, now),
    ];
    ClusterStatus {
        observed_generation: g,
        phase: phase as i32,
        conditions,
        namesrv_addr: input.nameserver_addresses.join(";"),
        nameserver_addresses: input.nameserver_addresses.clone(),
        members,
        active_operations: input.active_operations.clone(),
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(name: &str, node: Option<&str>) -> MemberPlan {
        MemberPlan {
            name: name.into(),
            kind: InstanceKind::Broker,
            group: "c-0".into(),
            node: node.map(Into::into),
            address: "h:1".into(),
            desired_hash: "h1".into(),
            ..Default::default()
        }
    }

    fn obs(name: &str, ready: bool, hash: &str) -> InstanceObservation {
        InstanceObservation {
            name: name.into(),
            state: InstanceState::Running as i32,
            ready,
            pid: 42,
            config_hash: hash.into(),
            role: MemberRole::Master as i32,
            writable: true,
            commit_log: Some(flotilla_proto::v1::CommitLogOffsets::default()),
            registered_nameservers: vec!["h:9876".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_broker_not_registered_with_every_nameserver_is_not_ready() {
        let members = vec![plan("c-0-0", Some("n1"))];
        let mut o = obs("c-0-0", true, "h1");
        o.registered_nameservers.clear();
        let observed: HashMap<_, _> = [("c-0-0".to_string(), o)].into();
        let nodes: HashMap<_, _> = [("n1".to_string(), true)].into();
        let s = fold(&input(&members, &observed, &nodes, None, 1));
        assert!(
            !s.members[0].ready,
            "answers, but clients cannot find it yet"
        );
        assert_ne!(s.phase, ClusterPhase::Running as i32);
        let mut o = obs("c-0-0", true, "h1");
        o.registered_nameservers = vec!["h:9876".into(), "old:9876".into()];
        let observed: HashMap<_, _> = [("c-0-0".to_string(), o)].into();
        let s = fold(&input(&members, &observed, &nodes, None, 1));
        assert!(s.members[0].ready, "extra registrations do not matter");
    }

    #[test]
    fn a_dledger_group_is_not_ready_until_a_leader_is_registered_as_broker_id_0() {
        let members: Vec<MemberPlan> = ["g-0", "g-1", "g-2"]
            .iter()
            .map(|n| MemberPlan {
                group: "g".into(),
                ..plan(n, Some("n1"))
            })
            .collect();
        let nodes: HashMap<_, _> = [("n1".to_string(), true)].into();
        // Every member answers and is registered, but as followers (ids 1, 2, 3).
        let follower = |name: &str, id: i64| {
            let mut o = obs(name, true, "h1");
            o.role = MemberRole::Follower as i32;
            o.broker_id = id;
            o.writable = false;
            o
        };
        let mut observed: HashMap<_, _> = [
            ("g-0".to_string(), follower("g-0", 1)),
            ("g-1".to_string(), follower("g-1", 2)),
            ("g-2".to_string(), follower("g-2", 3)),
        ]
        .into();
        let s = fold(&input(&members, &observed, &nodes, None, 1));
        assert_eq!(s.conditions[0].status, ConditionStatus::False as i32);
        assert_eq!(
            s.conditions[0].reason,
            readiness::reason::NO_WRITABLE_MASTER
        );
        assert_ne!(s.phase, ClusterPhase::Running as i32);
        assert!(!s.groups[0].ready);
        // Elected, writable, but the nameserver still lists it under its follower id.
        let mut leader = obs("g-1", true, "h1");
        leader.role = MemberRole::Leader as i32;
        leader.registered_nameservers.clear();
        observed.insert("g-1".into(), leader.clone());
        let s = fold(&input(&members, &observed, &nodes, None, 2));
        assert_eq!(
            s.conditions[0].reason,
            readiness::reason::MASTER_NOT_REGISTERED
        );
        // Registered as brokerId 0 everywhere: Ready, Running.
        leader.registered_nameservers = vec!["h:9876".into()];
        observed.insert("g-1".into(), leader);
        let s = fold(&input(&members, &observed, &nodes, None, 3));
        assert_eq!(s.conditions[0].status, ConditionStatus::True as i32);
        assert_eq!(s.phase, ClusterPhase::Running as i32);
        assert_eq!(s.groups[0].master, "g-1");
        assert!(s.members.iter().any(|m| m.writable && m.name == "g-1"));
    }

    fn input<'a>(
        members: &'a [MemberPlan],
        observed: &'a HashMap<String, InstanceObservation>,
        nodes: &'a HashMap<String, bool>,
        previous: Option<&'a ClusterStatus>,
        now: i64,
    ) -> FoldInput<'a> {
        FoldInput {
            generation: 3,
            deleting: false,
            paused: false,
            members,
            observed,
            node_ready: nodes,
            restart_blocked: false,
            roll_failed: None,
            nameserver_addresses: vec!["h:9876".into()],
            active_operations: vec![],
            max_lag_bytes: readiness::DEFAULT_MAX_LAG_BYTES,
            previous,
            now: Timestamp {
                seconds: now,
                nanos: 0,
            },
        }
    }

    #[test]
    fn ready_members_make_a_running_cluster_and_folding_is_stable() {
        let members = vec![plan("c-0-0", Some("n1"))];
        let observed: HashMap<_, _> = [("c-0-0".to_string(), obs("c-0-0", true, "h1"))].into();
        let nodes: HashMap<_, _> = [("n1".to_string(), true)].into();
        let s1 = fold(&input(&members, &observed, &nodes, None, 1));
        assert_eq!(s1.phase, ClusterPhase::Running as i32);
        assert_eq!(s1.observed_generation, 3);
        assert_eq!(s1.namesrv_addr, "h:9876");
        assert_eq!(s1.members[0].pid, 42);
        assert_eq!(s1.members[0].role, MemberRole::Master as i32);
        let ready = &s1.conditions[0];
        assert_eq!((ready.r#type.as_str(), ready.status), ("Ready", 1));
        // A later fold of the same world is identical (times included).
        let s2 = fold(&input(&members, &observed, &nodes, Some(&s1), 99));
        assert_eq!(s1, s2);
    }

    #[test]
    fn phases() {
        let nodes: HashMap<_, _> = [("n1".to_string(), true)].into();
        let empty = HashMap::new();
        let pending = vec![plan("c-0-0", None)];
        assert_eq!(
            fold(&input(&pending, &empty, &nodes, None, 1)).phase,
            ClusterPhase::Pending as i32
        );
        let starting = vec![plan("c-0-0", Some("n1"))];
        let s = fold(&input(&starting, &empty, &nodes, None, 1));
        assert_eq!(s.phase, ClusterPhase::Provisioning as i32);
        assert_eq!(s.conditions[1].reason, "RollingOut");
        let mixed = vec![plan("c-0-0", Some("n1")), plan("c-0-1", None)];
        let observed: HashMap<_, _> = [("c-0-0".to_string(), obs("c-0-0", true, "h1"))].into();
        let s = fold(&input(&mixed, &observed, &nodes, None, 1));
        assert_eq!(s.phase, ClusterPhase::Degraded as i32);
        assert_eq!(s.conditions[0].reason, "Unschedulable");
        let mut crashing = obs("c-0-0", false, "h1");
        crashing.state = InstanceState::Backoff as i32;
        let observed: HashMap<_, _> = [("c-0-0".to_string(), crashing)].into();
        let s = fold(&input(&starting, &observed, &nodes, None, 1));
        assert_eq!(s.phase, ClusterPhase::Degraded as i32);
        assert_eq!(s.conditions[2].reason, "MembersFailing");
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let nodes: HashMap<_, _> = [("n1".to_string(), true)].into();
        let members = vec![plan("c-0-0", Some("n1"))];
        let empty = HashMap::new();
        let s1 = fold(&input(&members, &empty, &nodes, None, 1));
        let observed: HashMap<_, _> = [("c-0-0".to_string(), obs("c-0-0", true, "h1"))].into();
        let s2 = fold(&input(&members, &observed, &nodes, Some(&s1), 5));
        assert_eq!(s2.conditions[0].last_transition_time.unwrap().seconds, 5);
        assert_eq!(s2.conditions[2].last_transition_time.unwrap().seconds, 1);
    }
}

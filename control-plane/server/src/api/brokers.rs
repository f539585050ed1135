//! How the business API (topics, consumer groups) reaches a cluster's brokers.
//!
//! The control plane never talks RocketMQ itself: every business call becomes agent
//! `Command`s sent over the existing sessions ([`crate::sessions::Sessions::send_command`]) to
//! the agents of the instances involved, which run the admin codes on loopback. This module
//! finds those instances — the writable master of every broker group (from the cluster's
//! folded status: the group's `master`, else a member with brokerId 0 that is writable) and
//! the nameservers — sends the commands in parallel, and turns every way a group can stay
//! silent (no master, agent not connected, broker down, broker refusing, timeout) into one
//! [`BrokerFailure`] per group, so callers can answer with what the others said.
//!
//! Command ids: reads get a fresh id each time (the agent journals results by id, and a read
//! must never be answered from the journal); writes carrying a `request_id` get one derived
//! from it, the step and the member, so a retried request is recognised by each agent's
//! journal and acts once.
//!
//! Only the leader holds agent sessions, so every business call — read or write — is served
//! by the leader: a follower forwards it there ([`crate::forward`]), and answers NOT_LEADER
//! (UNAVAILABLE, with the leader's name) only when it cannot (no leader known yet).

use std::time::Duration;

use flotilla_proto::agent::v1::{Command, CommandResult, TopicList, command, command_result};
use flotilla_proto::v1::{BrokerFailure, Cluster, InstanceKind};
use futures::future::join_all;

use crate::context::Ctx;
use crate::errors::ApiError;
use crate::names;
use crate::sessions::CommandError;

/// Longest a business call waits for one agent's answer.
pub const BUSINESS_COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// One instance a command goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// brokerName (nameservers: their member name).
    pub broker_name: String,
    /// Member (instance) name.
    pub member: String,
    /// Node it runs on.
    pub node: String,
}

impl Target {
    /// A failure of this target.
    pub fn failure(&self, reason: &str, message: impl Into<String>) -> BrokerFailure {
        BrokerFailure {
            broker_name: self.broker_name.clone(),
            member: self.member.clone(),
            node: self.node.clone(),
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Where a cluster's business calls go.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// The cluster.
    pub cluster: String,
    /// Every broker group of the spec, in order, with its master or why there is none.
    pub groups: Vec<(String, Result<Target, BrokerFailure>)>,
    /// Nameservers with a node.
    pub nameservers: Vec<Target>,
}

impl Targets {
    /// The broker group names of the cluster.
    pub fn group_names(&self) -> Vec<String> {
        self.groups.iter().map(|(g, _)| g.clone()).collect()
    }

    /// The masters of `wanted` groups (all when empty), and a failure for each without one.
    pub fn masters(&self, wanted: &[String]) -> (Vec<Target>, Vec<BrokerFailure>) {
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for (g, t) in &self.groups {
            if !wanted.is_empty() && !wanted.contains(g) {
                continue;
            }
            match t {
                Ok(t) => ok.push(t.clone()),
                Err(f) => failed.push(f.clone()),
            }
        }
        (ok, failed)
    }
}

/// The targets of a cluster as its status names them (pure; see [`resolve`]).
pub fn targets_of(cluster: &Cluster) -> Targets {
    let name = cluster
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let groups_n = cluster
        .spec
        .as_ref()
        .and_then(|s| s.broker.as_ref())
        .map_or(0, |b| b.groups);
    let st = cluster.status.clone().unwrap_or_default();
    let groups = (0..groups_n)
        .map(|i| {
            let g = names::group(&name, i);
            let gs = st.groups.iter().find(|x| x.name == g);
            let by_status = gs
                .filter(|x| !x.master.is_empty())
                .and_then(|x| st.members.iter().find(|m| m.name == x.master));
            let master = by_status.or_else(|| {
                st.members
                    .iter()
                    .find(|m| m.group == g && m.writable && m.broker_id == 0)
            });
            let t = match master.filter(|m| !m.node.is_empty()) {
                Some(m) => Ok(Target {
                    broker_name: g.clone(),
                    member: m.name.clone(),
                    node: m.node.clone(),
                }),
                None => Err(BrokerFailure {
                    broker_name: g.clone(),
                    reason: "NO_WRITABLE_MASTER".into(),
                    message: match gs {
                        Some(x) if !x.message.is_empty() => {
                            format!("no writable master ({}: {})", x.reason, x.message)
                        }
                        _ => "no writable master".into(),
                    },
                    ..Default::default()
                }),
            };
            (g, t)
        })
        .collect();
    let nameservers = st
        .members
        .iter()
        .filter(|m| m.kind == InstanceKind::Namesrv as i32 && !m.node.is_empty())
        .map(|m| Target {
            broker_name: m.name.clone(),
            member: m.name.clone(),
            node: m.node.clone(),
        })
        .collect();
    Targets {
        cluster: name,
        groups,
        nameservers,
    }
}

/// Checks leadership, loads the cluster (NOT_FOUND), refuses one with its console disabled
/// (FAILED_PRECONDITION) and returns its targets.
pub async fn resolve(ctx: &Ctx, cluster: &str) -> Result<Targets, ApiError> {
    ctx.writer.require_leader().await?;
    let (c, _) = super::cluster::load(ctx, cluster).await?;
    let disabled = c
        .spec
        .as_ref()
        .and_then(|s| s.console.as_ref())
        .is_some_and(|con| !con.enabled);
    if disabled {
        return Err(ApiError::ConsoleDisabled(cluster.to_string()));
    }
    Ok(targets_of(&c))
}

/// The command id of one step: derived from `request_id` when given (a retry acts once),
/// else fresh.
pub fn command_id(request_id: &str, step: &str, t: &Target) -> String {
    if request_id.is_empty() {
        format!("biz-{step}-{}", uuid::Uuid::new_v4())
    } else {
        format!("biz-{request_id}-{step}-{}", t.member)
    }
}

fn session_failure(t: &Target, e: &CommandError) -> BrokerFailure {
    t.failure(e.code(), e.to_string())
}

/// What one agent answered, as a result or a failure of its target.
pub fn answer(
    t: &Target,
    r: CommandResult,
) -> Result<Option<command_result::Result>, BrokerFailure> {
    if r.success {
        return Ok(r.result);
    }
    let e = r.error.unwrap_or_default();
    Err(t.failure(
        if e.reason.is_empty() {
            "COMMAND_FAILED"
        } else {
            &e.reason
        },
        e.message,
    ))
}

/// Sends `action` to `t` with `id` and waits for its answer.
pub async fn call(
    ctx: &Ctx,
    t: &Target,
    id: String,
    action: command::Action,
) -> Result<Option<command_result::Result>, BrokerFailure> {
    let cmd = Command {
        command_id: id,
        instance: t.member.clone(),
        action: Some(action),
        ..Default::default()
    };
    let timeout = ctx.config.command_timeout.min(BUSINESS_COMMAND_TIMEOUT);
    match ctx.sessions.send_command(ctx, &t.node, cmd, timeout).await {
        Ok(r) => answer(t, r),
        Err(e) => Err(session_failure(t, &e)),
    }
}

/// Sends one action per target in parallel (`make` builds it with the step's id).
pub async fn call_all(
    ctx: &Ctx,
    targets: &[Target],
    request_id: &str,
    step: &str,
    make: impl Fn(&Target) -> command::Action,
) -> Vec<(
    Target,
    Result<Option<command_result::Result>, BrokerFailure>,
)> {
    let calls = targets.iter().map(|t| {
        let id = command_id(request_id, step, t);
        let action = make(t);
        async move { (t.clone(), call(ctx, t, id, action).await) }
    });
    join_all(calls).await
}

/// Splits [`call_all`]'s answers into what `pick` takes from each and the failures; an
/// answer `pick` does not take is the target's BAD_AGENT_ANSWER ("no WHAT in the answer").
pub fn answers<T>(
    results: Vec<(
        Target,
        Result<Option<command_result::Result>, BrokerFailure>,
    )>,
    what: &str,
    pick: impl Fn(command_result::Result) -> Option<T>,
) -> (Vec<(Target, T)>, Vec<BrokerFailure>) {
    let mut parts = Vec::new();
    let mut failures = Vec::new();
    for (t, r) in results {
        match r.map(|a| a.and_then(&pick)) {
            Ok(Some(v)) => parts.push((t, v)),
            Ok(None) => {
                failures.push(t.failure("BAD_AGENT_ANSWER", format!("no {what} in the answer")))
            }
            Err(f) => failures.push(f),
        }
    }
    (parts, failures)
}

/// Fails with BROKERS_UNAVAILABLE when any target failed (writes act on all or report).
pub fn all_ok<T>(
    results: Vec<(Target, Result<T, BrokerFailure>)>,
) -> Result<Vec<(Target, T)>, ApiError> {
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for (t, r) in results {
        match r {
            Ok(v) => ok.push((t, v)),
            Err(f) => failures.push(f),
        }
    }
    if failures.is_empty() {
        Ok(ok)
    } else {
        Err(ApiError::BrokersUnavailable {
            what: "the brokers",
            failures,
        })
    }
}

/// Every broker group's topics and subscription groups, from its master: the answers, and a
/// failure per group that could not say.
pub async fn list_all(
    ctx: &Ctx,
    targets: &Targets,
    wanted: &[String],
) -> (Vec<(Target, TopicList)>, Vec<BrokerFailure>) {
    let (masters, mut failures) = targets.masters(wanted);
    let results = call_all(ctx, &masters, "", "list", |_| {
        command::Action::ListTopics(Default::default())
    })
    .await;
    let (lists, bad) = answers(results, "topic list", |a| match a {
        command_result::Result::Topics(l) => Some(l),
        _ => None,
    });
    failures.extend(bad);
    (lists, failures)
}

/// RocketMQ's own topics: retry and dead-letter queues, `rmq_sys_…`, the broker's internal
/// ones and the topics named after the cluster and its broker groups.
pub fn is_system_topic(name: &str, cluster: &str, groups: &[String]) -> bool {
    name == "TBW102"
        || name == cluster
        || groups.iter().any(|g| g == name)
        || name.starts_with("rmq_sys_")
        || name.starts_with("RMQ_SYS_")
        || name.starts_with("%RETRY%")
        || name.starts_with("%DLQ%")
        || matches!(
            name,
            "SELF_TEST_TOPIC" | "OFFSET_MOVED_EVENT" | "SCHEDULE_TOPIC_XXXX" | "BenchmarkTest"
        )
}

/// RocketMQ's own consumer groups (tools, monitors, internal clients).
pub fn is_system_group(name: &str) -> bool {
    name.starts_with("CID_RMQ_SYS_")
        || name.starts_with("CID_ONSAPI_")
        || matches!(
            name,
            "TOOLS_CONSUMER"
                | "FILTERSRV_CONSUMER"
                | "__MONITOR_CONSUMER"
                | "CLIENT_INNER_PRODUCER"
                | "SELF_TEST_P_GROUP"
                | "SELF_TEST_C_GROUP"
                | "CID_ONS-HTTP-PROXY"
                | "CID_ONSAPI_PERMISSION"
                | "CID_ONSAPI_OWNER"
                | "CID_ONSAPI_PULL"
                | "CID_RMQ_SYS_TRANS"
        )
}

/// Pages over sorted names: the items of the page starting at `start` (a name), and the
/// token of the next page (the hex of its first name; empty on the last page).
pub fn page<T>(items: Vec<(String, T)>, start: Option<&str>, size: usize) -> (Vec<T>, String) {
    let mut rest = items
        .into_iter()
        .skip_while(|(n, _)| start.is_some_and(|s| n.as_str() < s));
    let out: Vec<T> = rest.by_ref().take(size).map(|(_, v)| v).collect();
    let next = rest
        .next()
        .map(|(n, _)| hex::encode(n.as_bytes()))
        .unwrap_or_default();
    (out, next)
}

/// Decodes a page token of [`page`] (INVALID_REQUEST on garbage).
pub fn page_start(v: &mut crate::validate::Violations, token: &str) -> Option<String> {
    if token.is_empty() {
        return None;
    }
    match hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    {
        Some(s) => Some(s),
        None => {
            v.add("page_token", "not a token returned by this API");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_proto::v1::{
        BrokerSpec, ClusterSpec, ClusterStatus, GroupStatus, Member, ObjectMeta,
    };

    fn member(name: &str, group: &str, node: &str, writable: bool, kind: InstanceKind) -> Member {
        Member {
            name: name.into(),
            group: group.into(),
            node: node.into(),
            writable,
            kind: kind as i32,
            ..Default::default()
        }
    }

    #[test]
    fn targets_follow_the_status() {
        let c = Cluster {
            metadata: Some(ObjectMeta {
                name: "c".into(),
                ..Default::default()
            }),
            spec: Some(ClusterSpec {
                broker: Some(BrokerSpec {
                    groups: 3,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(ClusterStatus {
                members: vec![
                    member("c-namesrv-0", "", "n1", false, InstanceKind::Namesrv),
                    member("c-0-0", "c-0", "n1", false, InstanceKind::Broker),
                    member("c-0-1", "c-0", "n2", true, InstanceKind::Broker),
                    member("c-1-0", "c-1", "n3", true, InstanceKind::Broker),
                    member("c-2-0", "c-2", "n3", false, InstanceKind::Broker),
                ],
                groups: vec![
                    GroupStatus {
                        name: "c-0".into(),
                        ready: true,
                        master: "c-0-1".into(),
                        ..Default::default()
                    },
                    GroupStatus {
                        name: "c-2".into(),
                        reason: "NoWritableMaster".into(),
                        message: "no member is writable".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        };
        let t = targets_of(&c);
        assert_eq!(t.group_names(), ["c-0", "c-1", "c-2"]);
        let (ok, failed) = t.masters(&[]);
        assert_eq!(
            ok.iter().map(|t| t.member.as_str()).collect::<Vec<_>>(),
            ["c-0-1", "c-1-0"],
            "the status's master first, else the writable brokerId 0"
        );
        assert_eq!(ok[0].node, "n2");
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].broker_name, "c-2");
        assert_eq!(failed[0].reason, "NO_WRITABLE_MASTER");
        assert!(failed[0].message.contains("no member is writable"));
        let (ok, failed) = t.masters(&["c-1".to_string()]);
        assert_eq!((ok.len(), failed.len()), (1, 0));
        assert_eq!(t.nameservers[0].member, "c-namesrv-0");
    }

    #[test]
    fn failed_answers_become_broker_failures() {
        let t = Target {
            broker_name: "c-0".into(),
            member: "c-0-0".into(),
            node: "n1".into(),
        };
        let r = CommandResult {
            success: false,
            error: Some(flotilla_proto::agent::v1::CommandError {
                code: 14,
                reason: "INSTANCE_UNREACHABLE".into(),
                message: "connection refused".into(),
            }),
            ..Default::default()
        };
        let f = answer(&t, r).unwrap_err();
        assert_eq!(
            (f.reason.as_str(), f.node.as_str()),
            ("INSTANCE_UNREACHABLE", "n1")
        );
        let e = all_ok(vec![(t.clone(), Err::<(), _>(f))]).unwrap_err();
        assert_eq!(e.code(), "BROKERS_UNAVAILABLE");
        assert!(
            command_id("", "x", &t) != command_id("", "x", &t),
            "reads never repeat"
        );
        assert_eq!(command_id("r1", "x", &t), command_id("r1", "x", &t));
    }

    #[test]
    fn system_names_and_pages() {
        let groups = vec!["c-0".to_string()];
        for n in [
            "%RETRY%g",
            "%DLQ%g",
            "TBW102",
            "c",
            "c-0",
            "rmq_sys_x",
            "RMQ_SYS_TRACE_TOPIC",
        ] {
            assert!(is_system_topic(n, "c", &groups), "{n}");
        }
        assert!(!is_system_topic("Orders", "c", &groups));
        assert!(is_system_group("TOOLS_CONSUMER"));
        assert!(!is_system_group("cg-orders"));
        let items: Vec<(String, u32)> = (0..5).map(|i| (format!("t{i}"), i)).collect();
        let (p1, next) = page(items.clone(), None, 2);
        assert_eq!(p1, [0, 1]);
        let mut v = crate::validate::Violations::default();
        let start = page_start(&mut v, &next);
        let (p2, next2) = page(items.clone(), start.as_deref(), 2);
        assert_eq!(p2, [2, 3]);
        let (p3, last) = page(items, page_start(&mut v, &next2).as_deref(), 2);
        assert_eq!((p3, last.as_str()), (vec![4], ""));
        page_start(&mut v, "zz");
        assert_eq!(v.0.len(), 1);
    }
}

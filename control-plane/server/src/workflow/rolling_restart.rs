//! Rolling restart: members restarted one at a time, each back Ready and caught up before the
//! next, as Strimzi's KafkaRoller does for Kafka.
//!
//! Two things start one: a spec change that needs restarts (a restart-only broker key, the
//! version, resources — `UpdateCluster` sees it in the plan preview and records the
//! generation), and an explicit `RestartCluster` (generation 0), which restarts members whose
//! config did not change. An explicit restart gives each member a *restart token* (the
//! operation's name) that the reconciler stamps into its hashes
//! ([`crate::reconcile::render::stamp_restart`]); the token stays on the instance afterwards,
//! so nothing restarts again once the roll is over.
//!
//! While a roll is unfinished the reconciler grants `may_restart` to the one member this
//! workflow designates (the `rolling/member` handle) and to no other, so the roll — not the
//! reconciler's own rolling rule — decides the order:
//!
//! 1. **PlanOrder** — waits until the reconciler has rendered the generation being rolled,
//!    then fixes the order: nameservers, then each group's followers (slaves) by name and its
//!    master (or DLedger leader) last.
//! 2. **RestartMembers** — for each member in turn: skipped when it already runs its desired
//!    config (and, for an explicit restart, its token); a DLedger leader first hands
//!    leadership to a caught-up follower (TransferLeadership through its agent); then it is
//!    designated and the step waits until it runs the new config, is Ready, and its group is
//!    Ready by the rule of [`crate::reconcile::readiness`] (writable master registered
//!    everywhere, replicas within the lag bound). A member that crash-loops, fails, or is not
//!    back within `member_timeout` stops the roll: the operation FAILS naming it, the cluster
//!    turns Degraded (`RollFailed`) and nothing else restarts until the roll is resumed
//!    (`ResumeOperation`), rolled back (`RollbackOperation` restores the previous spec) or a
//!    new spec supersedes it.
//! 3. **Verify** — every member of the order runs its desired config and the cluster is Ready.
//!
//! Cancel stops after the member in progress: members already restarted stay restarted (a
//! restart cannot be undone), the rest keep their old config until the next change.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use flotilla_proto::agent::v1::{
    Command, Instance, InstanceObservation, InstanceState, TransferLeadership, command,
};
use flotilla_proto::v1::{
    Cluster, InstanceKind, MemberRole, Operation, OperationPhase, RollingRestartSpec,
    operation_spec,
};
use tracing::info;

use super::{Outcome, Step, StepError, Workflow, note, op_name};
use crate::cache::State;
use crate::context::Ctx;
use crate::reconcile::readiness;

/// Handle naming the member the reconciler may restart now.
pub const DESIGNATED: &str = "rolling/member";
/// Handle prefix of an explicit restart's token per member.
pub const TOKEN: &str = "token/";
const ORDER: &str = "order";
const INDEX: &str = "index";
const GENERATION: &str = "cluster_generation";
const PID: &str = "pid/";
const SINCE: &str = "since/";
const RESTARTS: &str = "restarts/";
const TRANSFERRED: &str = "transferred/";
/// `transfer_attempt/<member>`: failed transfer attempts so far. It is part of the command
/// id, so a retry is a new command: an agent answers a repeated id with the result it
/// recorded, which would replay the first failure for ever.
const TRANSFER_ATTEMPT: &str = "transfer_attempt/";

/// Per-member limit when the spec sets none.
pub const DEFAULT_MEMBER_TIMEOUT: Duration = Duration::from_secs(600);

/// Restarts of a member during its turn past which it counts as crash-looping.
const MAX_RESTARTS_IN_TURN: u32 = 3;

const STEPS: &[Step] = &[
    Step {
        name: "PlanOrder",
        point_of_no_return: false,
    },
    Step {
        name: "RestartMembers",
        point_of_no_return: false,
    },
    Step {
        name: "Verify",
        point_of_no_return: false,
    },
];

/// The rolling-restart workflow.
pub struct RollingRestart;

fn spec_of(op: &Operation) -> (String, RollingRestartSpec) {
    let s = op.spec.clone().unwrap_or_default();
    match s.kind {
        Some(operation_spec::Kind::RollingRestart(r)) => (s.cluster, r),
        _ => (s.cluster, RollingRestartSpec::default()),
    }
}

fn handle<'a>(op: &'a Operation, k: &str) -> Option<&'a String> {
    op.status.as_ref()?.handles.get(k)
}

fn set(op: &mut Operation, k: impl Into<String>, v: impl Into<String>) {
    op.status
        .get_or_insert_with(Default::default)
        .handles
        .insert(k.into(), v.into());
}

fn unset(op: &mut Operation, k: &str) {
    if let Some(s) = op.status.as_mut() {
        s.handles.remove(k);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What the reconciler must do about rolling restarts of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roll {
    /// No roll: the reconciler's own rolling rule applies.
    None,
    /// A roll is unfinished: only `designated` may restart.
    Active {
        /// The member that may restart now.
        designated: Option<String>,
    },
    /// The latest roll failed and nothing superseded it: nothing restarts.
    Failed {
        /// The operation.
        operation: String,
        /// Why.
        message: String,
    },
}

fn is_roll(op: &Operation) -> bool {
    matches!(
        op.spec.as_ref().and_then(|s| s.kind.as_ref()),
        Some(operation_spec::Kind::RollingRestart(_))
    )
}

fn created(op: &Operation) -> (i64, i32) {
    op.metadata
        .as_ref()
        .and_then(|m| m.create_time)
        .map_or((0, 0), |t| (t.seconds, t.nanos))
}

fn rolls<'a>(st: &'a State, cluster: &str) -> Vec<&'a Operation> {
    let mut rolls: Vec<&Operation> = st
        .operations
        .values()
        .map(|v| &v.value)
        .filter(|op| is_roll(op) && op.spec.as_ref().is_some_and(|s| s.cluster == cluster))
        .collect();
    rolls.sort_by_key(|op| created(op));
    rolls
}

/// The explicit restart tokens of `cluster`'s members, the newest roll's winning (the
/// reconciler stamps them; a member no roll names keeps the token it was rendered with).
pub fn tokens(st: &State, cluster: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for op in rolls(st, cluster) {
        for (k, v) in op.status.iter().flat_map(|s| s.handles.iter()) {
            if let Some(m) = k.strip_prefix(TOKEN) {
                out.insert(m.to_string(), v.clone());
            }
        }
    }
    out
}

/// The roll state of `cluster` at `generation` (pure over the cache; read by the reconciler).
pub fn control(st: &State, cluster: &str, generation: i64) -> Roll {
    let rolls = rolls(st, cluster);
    let mut designated = None;
    let mut active = false;
    for op in &rolls {
        let st = op.status.clone().unwrap_or_default();
        if st.done {
            continue;
        }
        active = true;
        if designated.is_none() && st.phase == OperationPhase::Running as i32 {
            designated = st.handles.get(DESIGNATED).cloned();
        }
    }
    if active {
        return Roll::Active { designated };
    }
    if let Some(last) = rolls.last() {
        let st = last.status.clone().unwrap_or_default();
        if st.phase == OperationPhase::Failed as i32 && rolled_generation(last) == generation {
            return Roll::Failed {
                operation: op_name(last),
                message: st.error.map(|e| e.message).unwrap_or_default(),
            };
        }
    }
    Roll::None
}

/// The generation a roll applies: its spec's, or for an explicit restart the cluster's
/// generation when it planned its order.
pub fn rolled_generation(op: &Operation) -> i64 {
    let (_, spec) = spec_of(op);
    if spec.generation != 0 {
        spec.generation
    } else {
        handle(op, GENERATION)
            .and_then(|g| g.parse().ok())
            .unwrap_or(0)
    }
}

/// Why `op` cannot be resumed over the cache now (`None` = it can).
pub fn why_not_resumable(st: &State, op: &Operation) -> Option<String> {
    if !is_roll(op) {
        return Some("only a rolling restart can be resumed".into());
    }
    let status = op.status.clone().unwrap_or_default();
    if status.phase != OperationPhase::Failed as i32 {
        return Some("it has not failed".into());
    }
    let cluster = op
        .spec
        .as_ref()
        .map(|s| s.cluster.clone())
        .unwrap_or_default();
    let Some(c) = st.clusters.get(&cluster) else {
        return Some(format!("cluster {cluster} no longer exists"));
    };
    let generation = c.value.metadata.as_ref().map_or(0, |m| m.generation);
    let rolled = rolled_generation(op);
    if rolled != 0 && rolled != generation {
        return Some(format!(
            "the cluster's spec changed since (generation {rolled} -> {generation}); that change rolls on its own"
        ));
    }
    let name = op_name(op);
    if let Some((other, _)) = st.operations.iter().find(|(n, o)| {
        **n != name
            && o.value.spec.as_ref().is_some_and(|s| s.cluster == cluster)
            && !o.value.status.as_ref().is_some_and(|s| s.done)
    }) {
        return Some(format!("operation {other} is running on cluster {cluster}"));
    }
    None
}

/// Puts a failed roll back to running (ResumeOperation): the member it stopped at starts a
/// fresh turn (its clock and restart count measured from now).
pub fn resume(st: &State, op: &mut Operation) {
    let cluster_name = op
        .spec
        .as_ref()
        .map(|s| s.cluster.clone())
        .unwrap_or_default();
    if let Some(member) = handle(op, DESIGNATED).cloned() {
        let restarts = st
            .clusters
            .get(&cluster_name)
            .and_then(|c| seen(st, &c.value, &member))
            .and_then(|m| m.obs)
            .map_or(0, |o| o.restarts);
        set(op, format!("{SINCE}{member}"), now_ms().to_string());
        set(op, format!("{RESTARTS}{member}"), restarts.to_string());
    }
    let s = op.status.get_or_insert_with(Default::default);
    s.phase = OperationPhase::Running as i32;
    s.done = false;
    s.error = None;
    s.end_time = None;
    note(op, "resumed");
}

/// One member as the roll sees it.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    kind: InstanceKind,
    group: String,
    node: String,
    desired: Option<Instance>,
    obs: Option<InstanceObservation>,
    node_ready: bool,
}

fn seen(st: &State, cluster: &Cluster, name: &str) -> Option<Seen> {
    let status = cluster.status.as_ref()?;
    let m = status.members.iter().find(|m| m.name == name)?;
    let desired = st.desired.get(&m.node).and_then(|d| {
        d.value
            .instances
            .iter()
            .find(|i| i.name == name && !m.node.is_empty())
            .cloned()
    });
    let obs = st
        .observed
        .get(&m.node)
        .and_then(|o| o.value.instances.iter().find(|i| i.name == name).cloned());
    let node_ready = st.nodes.get(&m.node).is_some_and(|n| {
        n.value
            .status
            .as_ref()
            .is_some_and(|s| s.phase == flotilla_proto::v1::NodePhase::Ready as i32)
    });
    Some(Seen {
        name: name.to_string(),
        kind: InstanceKind::try_from(m.kind).unwrap_or(InstanceKind::Unspecified),
        group: m.group.clone(),
        node: m.node.clone(),
        desired,
        obs,
        node_ready,
    })
}

fn is_leader(o: Option<&InstanceObservation>) -> bool {
    o.is_some_and(|o| {
        o.role == MemberRole::Master as i32 || o.role == MemberRole::Leader as i32 || o.writable
    })
}

/// The restart order (pure; unit-tested): nameservers by name, then members that are not
/// Ready (restarting them cannot make things worse, and a later member may wait on them),
/// then per group its followers by name and its master last.
fn order(members: &[(String, InstanceKind, String, bool, bool)]) -> Vec<String> {
    let mut ns: Vec<&String> = members
        .iter()
        .filter(|m| m.1 == InstanceKind::Namesrv)
        .map(|m| &m.0)
        .collect();
    ns.sort();
    let mut groups: BTreeMap<&str, Vec<(bool, &String)>> = BTreeMap::new();
    let mut unready: Vec<&String> = Vec::new();
    for (name, kind, group, master, ready) in members {
        if *kind != InstanceKind::Broker {
            continue;
        }
        if *ready {
            groups.entry(group).or_default().push((*master, name));
        } else {
            unready.push(name);
        }
    }
    unready.sort();
    let mut out: Vec<String> = ns.into_iter().chain(unready).cloned().collect();
    for (_, mut ms) in groups {
        ms.sort();
        out.extend(ms.into_iter().map(|(_, n)| n.clone()));
    }
    out
}

fn load_cluster(ctx: &Ctx, cluster: &str) -> Result<Cluster, StepError> {
    ctx.cache
        .read(|st| st.clusters.get(cluster).map(|v| v.value.clone()))
        .ok_or_else(|| StepError::Failed {
            code: tonic::Code::NotFound,
            reason: "CLUSTER_NOT_FOUND",
            message: format!("cluster {cluster} no longer exists"),
        })
}

fn member_timeout(spec: &RollingRestartSpec) -> Duration {
    spec.member_timeout
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_MEMBER_TIMEOUT)
}

/// Whether `m` runs what it should: the desired config (and the roll's token).
fn current(m: &Seen, token: Option<&str>) -> bool {
    let (Some(d), Some(o)) = (&m.desired, &m.obs) else {
        return false;
    };
    token.is_none_or(|t| d.restart_token == t)
        && !d.config_hash.is_empty()
        && o.config_hash == d.config_hash
        && o.pid != 0
}

/// Whether `m` and its group are Ready by the readiness rule, from observations.
fn settled(st: &State, cluster: &Cluster, m: &Seen) -> bool {
    let Some(o) = &m.obs else {
        return false;
    };
    if !o.ready {
        return false;
    }
    if m.kind != InstanceKind::Broker {
        return true;
    }
    let Some(status) = cluster.status.as_ref() else {
        return false;
    };
    let peers: Vec<readiness::GroupMember> = status
        .members
        .iter()
        .filter(|x| x.kind == InstanceKind::Broker as i32 && x.group == m.group)
        .filter_map(|x| seen(st, cluster, &x.name))
        .map(|x| {
            readiness::GroupMember::observed(
                &x.name,
                x.obs.as_ref(),
                x.node_ready,
                &status.nameserver_addresses,
            )
        })
        .collect();
    readiness::group_status(&m.group, &peers, readiness::DEFAULT_MAX_LAG_BYTES).ready
}

#[tonic::async_trait]
impl Workflow for RollingRestart {
    fn steps(&self) -> &'static [Step] {
        STEPS
    }

    async fn run(&self, ctx: &Ctx, op: &mut Operation, index: usize) -> Result<Outcome, StepError> {
        let (cluster_name, spec) = spec_of(op);
        let cluster = load_cluster(ctx, &cluster_name)?;
        match STEPS[index].name {
            "PlanOrder" => {
                let observed = cluster.status.as_ref().map_or(0, |s| s.observed_generation);
                if spec.generation != 0 && observed < spec.generation {
                    return Ok(Outcome::Wait(format!(
                        "waiting for the reconciler to render generation {}",
                        spec.generation
                    )));
                }
                let generation = cluster.metadata.as_ref().map_or(0, |m| m.generation);
                let members: Vec<(String, InstanceKind, String, bool, bool)> =
                    ctx.cache.read(|st| {
                        cluster
                            .status
                            .as_ref()
                            .map(|s| s.members.clone())
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|m| spec.members.is_empty() || spec.members.contains(&m.name))
                            .filter_map(|m| seen(st, &cluster, &m.name))
                            .map(|s| {
                                let master = is_leader(s.obs.as_ref());
                                let ready = s.obs.as_ref().is_some_and(|o| o.ready);
                                (s.name, s.kind, s.group, master, ready)
                            })
                            .collect()
                    });
                let missing: Vec<&String> = spec
                    .members
                    .iter()
                    .filter(|m| !members.iter().any(|x| &x.0 == *m))
                    .collect();
                if !missing.is_empty() {
                    return Err(StepError::Failed {
                        code: tonic::Code::NotFound,
                        reason: "MEMBER_NOT_FOUND",
                        message: format!(
                            "cluster {cluster_name} has no member {}",
                            missing
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
                let order = order(&members);
                note(op, format!("order: {}", order.join(", ")));
                set(op, ORDER, order.join(","));
                set(op, INDEX, "0");
                set(op, GENERATION, generation.to_string());
                Ok(Outcome::Next)
            }
            "RestartMembers" => self.restart_members(ctx, op, &cluster, &spec).await,
            _ => {
                let order = order_of(op);
                let explicit = spec.generation == 0;
                let name = op_name(op);
                let stale: Vec<String> = ctx.cache.read(|st| {
                    order
                        .iter()
                        .filter(|m| {
                            let token = explicit.then_some(name.as_str());
                            !seen(st, &cluster, m).is_some_and(|s| current(&s, token))
                        })
                        .cloned()
                        .collect()
                });
                if stale.is_empty() {
                    Ok(Outcome::Next)
                } else {
                    Ok(Outcome::Wait(format!(
                        "not yet on the new config: {}",
                        stale.join(", ")
                    )))
                }
            }
        }
    }

    async fn undo(&self, _ctx: &Ctx, op: &mut Operation) -> Result<Outcome, StepError> {
        if let Some(m) = handle(op, DESIGNATED).cloned() {
            note(op, format!("cancelled after {m}"));
        }
        unset(op, DESIGNATED);
        Ok(Outcome::Next)
    }
}

fn order_of(op: &Operation) -> Vec<String> {
    handle(op, ORDER)
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl RollingRestart {
    async fn restart_members(
        &self,
        ctx: &Ctx,
        op: &mut Operation,
        cluster: &Cluster,
        spec: &RollingRestartSpec,
    ) -> Result<Outcome, StepError> {
        let order = order_of(op);
        let name = op_name(op);
        let explicit = spec.generation == 0;
        let limit = member_timeout(spec);
        // Bounded: one pass over the order per run.
        for _ in 0..=order.len() {
            let index: usize = handle(op, INDEX).and_then(|i| i.parse().ok()).unwrap_or(0);
            let Some(member) = order.get(index).cloned() else {
                unset(op, DESIGNATED);
                return Ok(Outcome::Next);
            };
            let token_key = format!("{TOKEN}{member}");
            if explicit && handle(op, &token_key).is_none() {
                // Stamp the token first: the reconciler renders the member out of date.
                set(op, token_key, name.clone());
                return Ok(Outcome::Wait(format!("{member}: new restart token")));
            }
            let token = explicit.then_some(name.as_str());
            let Some(m) = ctx.cache.read(|st| seen(st, cluster, &member)) else {
                // Removed from the cluster since the order was fixed: nothing to restart.
                note(op, format!("{member}: no longer in the cluster, skipped"));
                set(op, INDEX, (index + 1).to_string());
                continue;
            };
            let designated = handle(op, DESIGNATED) == Some(&member);
            if current(&m, token) {
                if !ctx.cache.read(|st| settled(st, cluster, &m)) {
                    if let Some(why) = self.failed(op, &m, limit) {
                        return Err(why);
                    }
                    return Ok(Outcome::Wait(format!(
                        "{member}: runs the new config; waiting for it and its group to be Ready and caught up"
                    )));
                }
                let old = handle(op, &format!("{PID}{member}")).cloned();
                let pid = m.obs.as_ref().map_or(0, |o| o.pid);
                note(
                    op,
                    match (designated, old) {
                        (true, Some(old)) => format!("{member} restarted (pid {old} -> {pid})"),
                        _ => format!("{member} already current"),
                    },
                );
                unset(op, DESIGNATED);
                for k in [PID, SINCE, RESTARTS, TRANSFERRED] {
                    unset(op, &format!("{k}{member}"));
                }
                set(op, INDEX, (index + 1).to_string());
                continue;
            }
            if designated {
                if let Some(why) = self.failed(op, &m, limit) {
                    return Err(why);
                }
                return Ok(Outcome::Wait(format!(
                    "{member}: restarting ({}/{})",
                    index + 1,
                    order.len()
                )));
            }
            // Not designated yet: hand leadership over first when it leads a DLedger group.
            if m.kind == InstanceKind::Broker
                && m.obs
                    .as_ref()
                    .is_some_and(|o| o.role == MemberRole::Leader as i32)
                && let Some(wait) = self.transfer(ctx, op, cluster, &m).await?
            {
                return Ok(Outcome::Wait(wait));
            }
            // The rest of the group must be Ready before one of its Ready members goes down.
            let ready = m.obs.as_ref().is_some_and(|o| o.ready);
            if ready
                && m.kind == InstanceKind::Broker
                && !ctx.cache.read(|st| {
                    cluster.status.as_ref().is_some_and(|s| {
                        s.members
                            .iter()
                            .filter(|x| x.group == m.group && x.name != m.name)
                            .filter_map(|x| seen(st, cluster, &x.name))
                            .all(|x| x.obs.as_ref().is_some_and(|o| o.ready))
                    })
                })
            {
                return Ok(Outcome::Wait(format!(
                    "{member}: waiting for the rest of {} to be Ready",
                    m.group
                )));
            }
            let obs = m.obs.clone().unwrap_or_default();
            set(op, format!("{PID}{member}"), obs.pid.to_string());
            set(op, format!("{SINCE}{member}"), now_ms().to_string());
            set(op, format!("{RESTARTS}{member}"), obs.restarts.to_string());
            set(op, DESIGNATED, member.clone());
            info!(member = %member, "designated for restart");
            note(
                op,
                format!("{member}: restarting ({}/{})", index + 1, order.len()),
            );
            return Ok(Outcome::Wait(format!("{member}: restarting")));
        }
        Ok(Outcome::Wait("restarting".into()))
    }

    /// Why the member's turn failed, if it did: it crash-loops, failed, or overran the limit.
    fn failed(&self, op: &Operation, m: &Seen, limit: Duration) -> Option<StepError> {
        let since: i64 = handle(op, &format!("{SINCE}{}", m.name))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(now_ms);
        let restarts_before: u32 = handle(op, &format!("{RESTARTS}{}", m.name))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let obs = m.obs.clone().unwrap_or_default();
        let detail = if obs.message.is_empty() {
            String::new()
        } else {
            format!(": {}", obs.message)
        };
        let state = InstanceState::try_from(obs.state).unwrap_or(InstanceState::Unspecified);
        let why = if state == InstanceState::Failed {
            Some(format!("{} failed{detail}", m.name))
        } else if obs.restarts > restarts_before.saturating_add(MAX_RESTARTS_IN_TURN) {
            Some(format!(
                "{} crash-loops ({} restarts since its turn began){detail}",
                m.name,
                obs.restarts - restarts_before
            ))
        } else if now_ms().saturating_sub(since)
            > i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)
        {
            Some(format!(
                "{} was not back Ready with its new config within {}{detail}",
                m.name,
                humantime::format_duration(limit)
            ))
        } else {
            None
        };
        why.map(|message| StepError::Failed {
            code: tonic::Code::Aborted,
            reason: "ROLL_MEMBER_FAILED",
            message,
        })
    }

    /// Asks a DLedger leader to hand leadership to a Ready follower; `Some(note)` while the
    /// step must wait, `None` once it no longer leads (or no follower can take over).
    async fn transfer(
        &self,
        ctx: &Ctx,
        op: &mut Operation,
        cluster: &Cluster,
        m: &Seen,
    ) -> Result<Option<String>, StepError> {
        let key = format!("{TRANSFERRED}{}", m.name);
        let status = cluster.status.clone().unwrap_or_default();
        let target = ctx.cache.read(|st| {
            status
                .members
                .iter()
                .filter(|x| x.group == m.group && x.name != m.name)
                .filter(|x| {
                    seen(st, cluster, &x.name)
                        .and_then(|s| s.obs)
                        .is_some_and(|o| o.ready)
                })
                .map(|x| x.dledger_self_id.clone())
                .find(|id| !id.is_empty())
        });
        let Some(target) = target else {
            note(
                op,
                format!(
                    "{}: no Ready follower to hand leadership to; restarting the leader",
                    m.name
                ),
            );
            return Ok(None);
        };
        if handle(op, &key).is_some_and(|t| t == &target) {
            return Ok(Some(format!(
                "{}: waiting for {target} to take leadership",
                m.name
            )));
        }
        let attempt_key = format!("{TRANSFER_ATTEMPT}{}", m.name);
        let attempt: u32 = handle(op, &attempt_key)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let cmd = Command {
            command_id: format!("{}-transfer-{}-{target}-{attempt}", op_name(op), m.name),
            instance: m.name.clone(),
            action: Some(command::Action::TransferLeadership(TransferLeadership {
                target_self_id: target.clone(),
            })),
            ..Default::default()
        };
        let r = ctx
            .sessions
            .send_command(ctx, &m.node, cmd, ctx.config.command_timeout)
            .await
            .map_err(|e| StepError::Retry(format!("{}: {e}", m.name)))?;
        if !r.success {
            set(op, attempt_key, (attempt + 1).to_string());
            let why = r.error.map(|e| e.message).unwrap_or_default();
            return Err(StepError::Retry(format!(
                "{}: leadership transfer to {target}: {why}",
                m.name
            )));
        }
        note(op, format!("{}: leadership handed to {target}", m.name));
        set(op, key, target.clone());
        Ok(Some(format!(
            "{}: waiting for {target} to take leadership",
            m.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_first_then_followers_then_the_master() {
        let b = |n: &str, g: &str, master: bool, ready: bool| {
            (
                n.to_string(),
                InstanceKind::Broker,
                g.to_string(),
                master,
                ready,
            )
        };
        let ns = |n: &str| {
            (
                n.to_string(),
                InstanceKind::Namesrv,
                String::new(),
                false,
                true,
            )
        };
        let ms = vec![
            b("c-1-0", "c-1", true, true),
            b("c-0-1", "c-0", false, true),
            b("c-0-0", "c-0", true, true),
            b("c-1-1", "c-1", false, true),
            ns("c-namesrv-1"),
            ns("c-namesrv-0"),
            b("c-0-2", "c-0", false, true),
        ];
        assert_eq!(
            order(&ms),
            [
                "c-namesrv-0",
                "c-namesrv-1",
                "c-0-1",
                "c-0-2",
                "c-0-0",
                "c-1-1",
                "c-1-0"
            ]
        );
        // A member that is down goes first, before its group's followers.
        let mut ms = ms;
        ms[3] = b("c-1-1", "c-1", false, false);
        let got = order(&ms);
        assert_eq!(got[2], "c-1-1");
        assert_eq!(got.last().map(String::as_str), Some("c-1-0"));
    }
}

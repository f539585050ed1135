//! Scale-in: removing broker groups without losing a message.
//!
//! The RocketMQ operator cannot scale in at all (its issue #239); doing it by hand means
//! stopping writes, watching `consumerProgress` until every group has caught up, and only then
//! stopping the brokers. This workflow does exactly that, durably:
//!
//! 1. **StopWrites** — every member of the leaving groups gets `brokerPermission=4`
//!    (read-only; applied live by UPDATE_BROKER_CONFIG, re-registered with the nameservers),
//!    so producers route new messages to the remaining groups while consumers keep reading.
//! 2. **WaitDrained** — polls every subscription group's lag on the leaving groups' masters
//!    (GET_CONSUME_STATS through the agents) until it is zero; the per-group lag is kept in
//!    the operation's handles. `force` skips the wait.
//! 3. **StopMembers** (point of no return) — marks the operation `stopping`; the reconciler
//!    then drops the groups' instances, the agents stop them (their data is removed for
//!    EPHEMERAL storage, kept for HOST_PATH), and the step ends when no agent reports them.
//!
//! `UpdateCluster` refuses a scale-in up front ([`precondition`]) when a leaving group holds
//! unconsumed messages or is the last group holding a topic, unless `force`: a scale-in that
//! could only succeed by losing messages is not started. Cancel before StopMembers gives the
//! groups their write permission back and restores `spec.broker.groups`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use flotilla_intent_store::{Compare, keys};
use flotilla_proto::agent::v1::{
    Command, GetGroupProgress, ListTopics, UpdateBrokerConfig, command, command_result,
};
use flotilla_proto::v1::{Cluster, InstanceKind, Operation, operation_spec};
use prost::Message;
use tracing::info;

use super::{Outcome, Step, StepError, Workflow, note, op_name};
use crate::cache::State;
use crate::context::Ctx;
use crate::names;

/// Handle set when the members may be stopped (read by the reconciler).
pub const STOPPING: &str = "stopping";

/// Read-only: RocketMQ's `PermName.PERM_READ`.
const PERM_READ: &str = "4";
/// Read and write, the broker default.
const PERM_READ_WRITE: &str = "6";

const STEPS: &[Step] = &[
    Step {
        name: "StopWrites",
        point_of_no_return: false,
    },
    Step {
        name: "WaitDrained",
        point_of_no_return: false,
    },
    Step {
        name: "StopMembers",
        point_of_no_return: true,
    },
];

/// The scale-in workflow.
pub struct ScaleIn;

/// One broker member of a leaving group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node it runs on.
    pub node: String,
    /// Instance name.
    pub instance: String,
    /// Its group (brokerName).
    pub group: String,
    /// Its rendered `brokerPermission` (what Cancel restores).
    pub perm: String,
    /// Whether it is the group's writable master as last observed (or member 0).
    pub master: bool,
}

/// The broker members of `groups` in `cluster`, from the desired states.
pub fn members(st: &State, cluster: &str, groups: &BTreeSet<String>) -> Vec<Member> {
    let mut out = Vec::new();
    for (node, ds) in &st.desired {
        for i in &ds.value.instances {
            if i.cluster != cluster
                || i.kind != InstanceKind::Broker as i32
                || !groups.contains(&i.group)
            {
                continue;
            }
            let observed = st
                .observed
                .get(node)
                .and_then(|o| o.value.instances.iter().find(|x| x.name == i.name));
            let master = match observed {
                Some(o) => o.writable || o.broker_id == 0,
                None => i.name == names::member(&i.group, 0),
            };
            out.push(Member {
                node: node.clone(),
                instance: i.name.clone(),
                group: i.group.clone(),
                perm: i
                    .config
                    .get("brokerPermission")
                    .cloned()
                    .unwrap_or_else(|| PERM_READ_WRITE.to_string()),
                master,
            });
        }
    }
    out.sort_by(|a, b| a.instance.cmp(&b.instance));
    out
}

/// One master per group: the observed writable one, else member 0, else any.
pub(super) fn masters(members: &[Member]) -> Vec<Member> {
    let mut by_group: BTreeMap<&str, &Member> = BTreeMap::new();
    for m in members {
        match by_group.get(m.group.as_str()) {
            Some(cur) if cur.master || !m.master => {}
            _ => {
                by_group.insert(&m.group, m);
            }
        }
    }
    by_group.into_values().cloned().collect()
}

/// Topics that are the broker's own, not a user's (never a reason to refuse).
pub fn is_system_topic(topic: &str, cluster: &str, groups: &BTreeSet<String>) -> bool {
    const PREFIXES: [&str; 4] = ["%RETRY%", "%DLQ%", "RMQ_SYS_", "rmq_sys_"];
    const NAMES: [&str; 5] = [
        "TBW102",
        "SCHEDULE_TOPIC_XXXX",
        "OFFSET_MOVED_EVENT",
        "SELF_TEST_TOPIC",
        "BenchmarkTest",
    ];
    PREFIXES.iter().any(|p| topic.starts_with(p))
        || NAMES.contains(&topic)
        || topic == cluster
        || groups.contains(topic)
}

/// What stands between the leaving groups and an empty exit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// `<broker group>/<consumer group>` → unconsumed messages there.
    pub lag: BTreeMap<String, i64>,
    /// User topics that live only on the leaving groups.
    pub only_here: Vec<String>,
}

impl DrainReport {
    /// Total unconsumed messages.
    pub fn total_lag(&self) -> i64 {
        self.lag.values().sum()
    }

    /// One line for the operation's progress and for refusals.
    pub fn summary(&self) -> String {
        let lag: Vec<String> = self
            .lag
            .iter()
            .filter(|(_, l)| **l > 0)
            .map(|(k, l)| format!("{k}={l}"))
            .collect();
        let mut parts = Vec::new();
        if !lag.is_empty() {
            parts.push(format!("unconsumed messages: {}", lag.join(", ")));
        }
        if !self.only_here.is_empty() {
            parts.push(format!(
                "topics on no remaining group: {}",
                self.only_here.join(", ")
            ));
        }
        parts.join("; ")
    }
}

/// A fresh command id for a read (reads are asked again on every poll).
pub(super) fn unique(tag: &str) -> String {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{tag}-{ms}-{}", rand::random::<u32>())
}

pub(super) async fn ask(
    ctx: &Ctx,
    m: &Member,
    id: String,
    action: command::Action,
) -> Result<Option<command_result::Result>, StepError> {
    let cmd = Command {
        command_id: id,
        instance: m.instance.clone(),
        action: Some(action),
        ..Default::default()
    };
    let r = ctx
        .sessions
        .send_command(ctx, &m.node, cmd, ctx.config.command_timeout)
        .await
        .map_err(|e| StepError::Retry(format!("{}: {e}", m.instance)))?;
    if !r.success {
        let why = r.error.map(|e| e.message).unwrap_or_default();
        return Err(StepError::Retry(format!("{}: {why}", m.instance)));
    }
    Ok(r.result)
}

async fn topics_and_groups(
    ctx: &Ctx,
    m: &Member,
    tag: &str,
) -> Result<(Vec<String>, Vec<String>), StepError> {
    let r = ask(
        ctx,
        m,
        unique(&format!("{tag}-topics-{}", m.instance)),
        command::Action::ListTopics(ListTopics::default()),
    )
    .await?;
    match r {
        Some(command_result::Result::Topics(t)) => Ok((
            t.topics.into_iter().map(|t| t.name).collect(),
            t.groups.into_iter().map(|g| g.name).collect(),
        )),
        _ => Err(StepError::Retry(format!(
            "{}: no topic list in the answer",
            m.instance
        ))),
    }
}

/// Measures lag of every subscription group on the leaving groups' masters and the user
/// topics only they hold (compared with the remaining groups' masters).
pub async fn drain_report(
    ctx: &Ctx,
    cluster: &str,
    leaving: &BTreeSet<String>,
    tag: &str,
) -> Result<DrainReport, StepError> {
    let (leaving_members, staying_members, all_groups) = ctx.cache.read(|st| {
        let all: BTreeSet<String> = st
            .desired
            .values()
            .flat_map(|d| d.value.instances.iter())
            .filter(|i| i.cluster == cluster && i.kind == InstanceKind::Broker as i32)
            .map(|i| i.group.clone())
            .collect();
        let staying: BTreeSet<String> = all.difference(leaving).cloned().collect();
        (
            members(st, cluster, leaving),
            members(st, cluster, &staying),
            all,
        )
    });
    let mut report = DrainReport::default();
    let mut leaving_topics = BTreeSet::new();
    for m in masters(&leaving_members) {
        let (topics, groups) = topics_and_groups(ctx, &m, tag).await?;
        leaving_topics.extend(
            topics
                .into_iter()
                .filter(|t| !is_system_topic(t, cluster, &all_groups)),
        );
        for g in groups {
            let r = ask(
                ctx,
                &m,
                unique(&format!("{tag}-lag-{}-{g}", m.instance)),
                command::Action::GetGroupProgress(GetGroupProgress {
                    group: g.clone(),
                    topic: String::new(),
                }),
            )
            .await;
            let lag = match r {
                Ok(Some(command_result::Result::GroupProgress(p))) => p.total_lag,
                Ok(_) => 0,
                Err(StepError::Retry(why)) if why.contains("not exist") => 0,
                Err(e) => return Err(e),
            };
            report.lag.insert(format!("{}/{g}", m.group), lag);
        }
    }
    let mut staying_topics = BTreeSet::new();
    for m in masters(&staying_members) {
        let (topics, _) = topics_and_groups(ctx, &m, tag).await?;
        staying_topics.extend(topics);
    }
    report.only_here = leaving_topics
        .difference(&staying_topics)
        .cloned()
        .collect();
    Ok(report)
}

/// The check `UpdateCluster` makes before starting a scale-in (skipped with `force`):
/// `Err` with the reason when a leaving group still holds unconsumed messages or is the last
/// group of a topic.
pub async fn precondition(
    ctx: &Ctx,
    cluster: &str,
    leaving: &BTreeSet<String>,
) -> Result<(), String> {
    match drain_report(ctx, cluster, leaving, &format!("precheck-{cluster}")).await {
        Ok(r) if r.total_lag() == 0 && r.only_here.is_empty() => Ok(()),
        Ok(r) => Err(r.summary()),
        Err(e) => Err(format!("cannot measure the leaving groups: {e}")),
    }
}

fn spec_of(op: &Operation) -> (String, BTreeSet<String>, bool) {
    let spec = op.spec.clone().unwrap_or_default();
    match spec.kind {
        Some(operation_spec::Kind::ScaleIn(s)) => {
            (spec.cluster, s.groups.into_iter().collect(), s.force)
        }
        _ => (spec.cluster, BTreeSet::new(), false),
    }
}

#[tonic::async_trait]
impl Workflow for ScaleIn {
    fn steps(&self) -> &'static [Step] {
        STEPS
    }

    async fn run(&self, ctx: &Ctx, op: &mut Operation, index: usize) -> Result<Outcome, StepError> {
        let (cluster, groups, force) = spec_of(op);
        let name = op_name(op);
        match STEPS[index].name {
            "StopWrites" => {
                let ms = ctx.cache.read(|st| members(st, &cluster, &groups));
                for m in &ms {
                    ask(
                        ctx,
                        m,
                        format!("{name}-stop-writes-{}", m.instance),
                        command::Action::UpdateBrokerConfig(UpdateBrokerConfig {
                            config: [("brokerPermission".to_string(), PERM_READ.to_string())]
                                .into_iter()
                                .collect(),
                        }),
                    )
                    .await?;
                }
                info!(members = ms.len(), "writes stopped on the leaving groups");
                Ok(Outcome::Next)
            }
            "WaitDrained" => {
                if force {
                    note(op, "force: not waiting for consumers");
                    return Ok(Outcome::Next);
                }
                let r = drain_report(ctx, &cluster, &groups, &name).await?;
                let st = op.status.get_or_insert_with(Default::default);
                for (k, lag) in &r.lag {
                    st.handles.insert(format!("lag/{k}"), lag.to_string());
                }
                if r.total_lag() == 0 {
                    Ok(Outcome::Next)
                } else {
                    Ok(Outcome::Wait(r.summary()))
                }
            }
            _ => {
                let st = op.status.get_or_insert_with(Default::default);
                if !st.handles.contains_key(STOPPING) {
                    st.handles.insert(STOPPING.into(), "true".into());
                    return Ok(Outcome::Wait("stopping the members".into()));
                }
                let left = ctx.cache.read(|st| {
                    let desired = members(st, &cluster, &groups).len();
                    let running = st
                        .observed
                        .values()
                        .flat_map(|o| o.value.instances.iter())
                        .filter(|o| {
                            groups
                                .iter()
                                .any(|g| o.name.starts_with(&format!("{g}-")) && o.pid > 0)
                        })
                        .count();
                    desired + running
                });
                if left == 0 {
                    Ok(Outcome::Next)
                } else {
                    Ok(Outcome::Wait(format!("{left} member(s) still running")))
                }
            }
        }
    }

    async fn undo(&self, ctx: &Ctx, op: &mut Operation) -> Result<Outcome, StepError> {
        let (cluster, groups, _) = spec_of(op);
        let name = op_name(op);
        let ms = ctx.cache.read(|st| members(st, &cluster, &groups));
        for m in &ms {
            ask(
                ctx,
                m,
                format!("{name}-undo-writes-{}", m.instance),
                command::Action::UpdateBrokerConfig(UpdateBrokerConfig {
                    config: [("brokerPermission".to_string(), m.perm.clone())]
                        .into_iter()
                        .collect(),
                }),
            )
            .await?;
        }
        restore_groups(ctx, &cluster, &groups).await?;
        Ok(Outcome::Next)
    }
}

/// Puts the leaving groups back into `spec.broker.groups` (Cancel).
async fn restore_groups(
    ctx: &Ctx,
    cluster: &str,
    groups: &BTreeSet<String>,
) -> Result<(), StepError> {
    let want = groups
        .iter()
        .filter_map(|g| names::group_index(cluster, g))
        .max()
        .map_or(0, |i| i + 1);
    let Some((mut c, rev)): Option<(Cluster, i64)> = ctx.cache.read(|st| {
        st.clusters
            .get(cluster)
            .map(|v| (v.value.clone(), v.mod_revision))
    }) else {
        return Ok(());
    };
    let Some(b) = c.spec.as_mut().and_then(|s| s.broker.as_mut()) else {
        return Ok(());
    };
    if b.groups >= want {
        return Ok(());
    }
    b.groups = want;
    if let Some(m) = c.metadata.as_mut() {
        m.generation += 1;
        m.etag.clear();
    }
    let key = keys::cluster(cluster).map_err(|e| StepError::Retry(e.to_string()))?;
    ctx.commit(
        vec![Compare::ModRevision(key.clone(), rev)],
        vec![(key, Some(c.encode_to_vec()))],
        vec![],
    )
    .await
    .map_err(|e| StepError::Retry(format!("restoring spec.broker.groups: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(instance: &str, group: &str, master: bool) -> Member {
        Member {
            node: "n".into(),
            instance: instance.into(),
            group: group.into(),
            perm: "6".into(),
            master,
        }
    }

    #[test]
    fn one_master_per_group_preferring_the_observed_one() {
        let ms = [
            m("c-1-0", "c-1", false),
            m("c-1-1", "c-1", true),
            m("c-2-0", "c-2", false),
        ];
        let got: Vec<String> = masters(&ms).into_iter().map(|m| m.instance).collect();
        assert_eq!(got, ["c-1-1", "c-2-0"]);
    }

    #[test]
    fn system_topics_never_block_a_scale_in() {
        let groups: BTreeSet<String> = ["orders-1".to_string()].into();
        for t in [
            "%RETRY%g",
            "%DLQ%g",
            "RMQ_SYS_TRACE_TOPIC",
            "TBW102",
            "SCHEDULE_TOPIC_XXXX",
            "orders",
            "orders-1",
        ] {
            assert!(is_system_topic(t, "orders", &groups), "{t}");
        }
        assert!(!is_system_topic("payments", "orders", &groups));
    }

    #[test]
    fn the_summary_names_lag_and_lonely_topics() {
        let r = DrainReport {
            lag: [
                ("orders-1/g1".to_string(), 5),
                ("orders-1/g2".to_string(), 0),
            ]
            .into(),
            only_here: vec!["t1".into()],
        };
        assert_eq!(r.total_lag(), 5);
        assert_eq!(
            r.summary(),
            "unconsumed messages: orders-1/g1=5; topics on no remaining group: t1"
        );
    }
}

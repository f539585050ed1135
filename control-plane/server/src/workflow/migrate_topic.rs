//! Topic migration between clusters: the RocketMQ operator's seven-step `TopicTransfer`,
//! with its bugs fixed and every step durable.
//!
//! The operator's version keeps no status, re-runs from the start on any error, deletes the
//! source before it knows consumers caught up, and cannot be resumed (its issue #219). Here:
//!
//! 1. **CreateGroupsOnTarget** — each consumer group is created on every target broker with
//!    the source's subscription-group config.
//! 2. **CreateTopicOnTarget** — the topic, with the source's queue counts, perm and order,
//!    on every target broker.
//! 3. **StopWritesOnSource** — the topic becomes read-only (perm 4) on every source broker;
//!    the original perms are kept in the operation's handles (Cancel restores them).
//!    Producers, refreshing routes, now send to the target.
//! 4. **WaitDrained** — every group's lag on every source queue of the topic is zero,
//!    checked per broker and queue; `drain_timeout` (default 1 h) fails the operation.
//! 5. **DeleteTopicOnSource** — point of no return: the topic is deleted from every source
//!    broker and nameserver (skipped with `keep_source`).
//! 6. **DeleteGroupsOnSource** — each group is deleted on the source, unless it still
//!    consumes another topic there (then it is kept and the history says so) or
//!    `keep_source`.
//! 7. **CreateRetryTopicOnTarget** — `%RETRY%<group>` on every target broker.
//!
//! Consumer groups default to those with a committed offset on the topic at the source.
//! Every command id derives from the operation, a step and an instance, so a step re-run
//! after a leader change is answered by the agents' journals.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use flotilla_proto::agent::v1::{
    DeleteGroup, DeleteTopic, GetGroupProgress, ListTopics, UpdateTopicPerm, command,
    command_result,
};
use flotilla_proto::v1::{ConsumerGroup, MigrateTopicSpec, Operation, Topic, operation_spec};
use tracing::info;

use super::scale_in::{Member, ask, masters, members, unique};
use super::{Outcome, Step, StepError, Workflow, note, op_name};
use crate::cache::State;
use crate::context::Ctx;

const STEPS: &[Step] = &[
    Step {
        name: "CreateGroupsOnTarget",
        point_of_no_return: false,
    },
    Step {
        name: "CreateTopicOnTarget",
        point_of_no_return: false,
    },
    Step {
        name: "StopWritesOnSource",
        point_of_no_return: false,
    },
    Step {
        name: "WaitDrained",
        point_of_no_return: false,
    },
    Step {
        name: "DeleteTopicOnSource",
        point_of_no_return: true,
    },
    Step {
        name: "DeleteGroupsOnSource",
        point_of_no_return: true,
    },
    Step {
        name: "CreateRetryTopicOnTarget",
        point_of_no_return: true,
    },
];

/// Default time consumers get to drain the source.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Read-only perm (RocketMQ's `PermName.PERM_READ`).
const PERM_READ: u32 = 4;

/// The migration workflow.
pub struct MigrateTopic;

/// Every broker member of `cluster`.
pub fn all_members(st: &State, cluster: &str) -> Vec<Member> {
    let groups: BTreeSet<String> = st
        .desired
        .values()
        .flat_map(|d| d.value.instances.iter())
        .filter(|i| {
            i.cluster == cluster && i.kind == flotilla_proto::v1::InstanceKind::Broker as i32
        })
        .map(|i| i.group.clone())
        .collect();
    members(st, cluster, &groups)
}

/// Every nameserver instance of `cluster` as (node, instance).
fn nameservers(st: &State, cluster: &str) -> Vec<Member> {
    let mut out = Vec::new();
    for (node, ds) in &st.desired {
        for i in &ds.value.instances {
            if i.cluster == cluster && i.kind == flotilla_proto::v1::InstanceKind::Namesrv as i32 {
                out.push(Member {
                    node: node.clone(),
                    instance: i.name.clone(),
                    group: String::new(),
                    perm: String::new(),
                    master: true,
                });
            }
        }
    }
    out
}

fn spec_of(op: &Operation) -> MigrateTopicSpec {
    match op.spec.as_ref().and_then(|s| s.kind.clone()) {
        Some(operation_spec::Kind::MigrateTopic(m)) => m,
        _ => MigrateTopicSpec::default(),
    }
}

/// What the source brokers hold: the topic's config and every subscription group's config.
async fn source_metadata(
    ctx: &Ctx,
    name: &str,
    topic: &str,
    sources: &[Member],
) -> Result<
    (
        Option<Topic>,
        BTreeMap<String, ConsumerGroup>,
        BTreeMap<String, u32>,
    ),
    StepError,
> {
    let mut found = None;
    let mut groups = BTreeMap::new();
    let mut perms = BTreeMap::new();
    for m in sources {
        let r = ask(
            ctx,
            m,
            unique(&format!("{name}-list-{}", m.instance)),
            command::Action::ListTopics(ListTopics::default()),
        )
        .await?;
        let Some(command_result::Result::Topics(list)) = r else {
            return Err(StepError::Retry(format!("{}: no topic list", m.instance)));
        };
        for g in list.groups {
            groups.entry(g.name.clone()).or_insert(g);
        }
        if let Some(t) = list.topics.iter().find(|t| t.name == topic) {
            perms.insert(m.instance.clone(), t.perm);
            if found.is_none() {
                found = Some(t.clone());
            }
        }
    }
    Ok((found, groups, perms))
}

/// Lag of `group` on `topic` at one source master: (total lag, whether it ever consumed).
async fn group_lag(
    ctx: &Ctx,
    name: &str,
    m: &Member,
    group: &str,
    topic: &str,
) -> Result<(i64, bool, BTreeSet<String>), StepError> {
    let r = ask(
        ctx,
        m,
        unique(&format!("{name}-lag-{}-{group}", m.instance)),
        command::Action::GetGroupProgress(GetGroupProgress {
            group: group.to_string(),
            topic: topic.to_string(),
        }),
    )
    .await?;
    match r {
        Some(command_result::Result::GroupProgress(p)) => {
            let consumed = p.queues.iter().any(|q| q.consumer_offset > 0);
            let topics = p.queues.iter().map(|q| q.topic.clone()).collect();
            Ok((p.total_lag, consumed, topics))
        }
        _ => Ok((0, false, BTreeSet::new())),
    }
}

#[tonic::async_trait]
impl Workflow for MigrateTopic {
    fn steps(&self) -> &'static [Step] {
        STEPS
    }

    async fn run(&self, ctx: &Ctx, op: &mut Operation, index: usize) -> Result<Outcome, StepError> {
        let spec = spec_of(op);
        let name = op_name(op);
        let topic = spec.topic.clone();
        let (sources, targets, source_ns) = ctx.cache.read(|st| {
            (
                all_members(st, &spec.source_cluster),
                all_members(st, &spec.target_cluster),
                nameservers(st, &spec.source_cluster),
            )
        });
        if sources.is_empty() || targets.is_empty() {
            return Err(StepError::Retry(
                "the source or target cluster has no brokers yet".into(),
            ));
        }
        let source_masters = masters(&sources);
        // The groups to move: given, else recorded at the first step from the source.
        let handles = op.status.clone().unwrap_or_default().handles;
        let recorded: Vec<String> = handles
            .get("groups")
            .map(|g| {
                g.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        match STEPS[index].name {
            "CreateGroupsOnTarget" => {
                let (_, configs, perms) =
                    source_metadata(ctx, &name, &topic, &source_masters).await?;
                if perms.is_empty() {
                    return Err(StepError::Failed {
                        code: tonic::Code::NotFound,
                        reason: "TOPIC_NOT_FOUND",
                        message: format!(
                            "topic {topic} is on no broker of cluster {}",
                            spec.source_cluster
                        ),
                    });
                }
                let groups: Vec<String> = if spec.consumer_groups.is_empty() {
                    let mut found = BTreeSet::new();
                    for g in configs.keys() {
                        for m in &source_masters {
                            let (_, consumed, _) = group_lag(ctx, &name, m, g, &topic).await?;
                            if consumed {
                                found.insert(g.clone());
                            }
                        }
                    }
                    found.into_iter().collect()
                } else {
                    spec.consumer_groups.clone()
                };
                for g in &groups {
                    let config = configs.get(g).cloned().unwrap_or_else(|| ConsumerGroup {
                        name: g.clone(),
                        consume_enable: true,
                        retry_queue_nums: 1,
                        retry_max_times: 16,
                        ..Default::default()
                    });
                    for t in &targets {
                        ask(
                            ctx,
                            t,
                            format!("{name}-group-{g}-{}", t.instance),
                            command::Action::CreateGroup(config.clone()),
                        )
                        .await?;
                    }
                }
                let st = op.status.get_or_insert_with(Default::default);
                st.handles.insert("groups".into(), groups.join(","));
                note(op, format!("consumer groups: {}", groups.join(", ")));
                Ok(Outcome::Next)
            }
            "CreateTopicOnTarget" => {
                let (t, _, perms) = source_metadata(ctx, &name, &topic, &sources).await?;
                let Some(mut t) = t else {
                    return Err(StepError::Failed {
                        code: tonic::Code::NotFound,
                        reason: "TOPIC_NOT_FOUND",
                        message: format!("topic {topic} disappeared from the source"),
                    });
                };
                t.groups.clear();
                let st = op.status.get_or_insert_with(Default::default);
                for (inst, perm) in &perms {
                    st.handles
                        .entry(format!("perm/{inst}"))
                        .or_insert_with(|| perm.to_string());
                }
                let mut target_topic = t.clone();
                target_topic.perm = 6;
                for m in &targets {
                    ask(
                        ctx,
                        m,
                        format!("{name}-topic-{}", m.instance),
                        command::Action::CreateTopic(target_topic.clone()),
                    )
                    .await?;
                }
                Ok(Outcome::Next)
            }
            "StopWritesOnSource" => {
                for m in &sources {
                    let r = ask(
                        ctx,
                        m,
                        format!("{name}-readonly-{}", m.instance),
                        command::Action::UpdateTopicPerm(UpdateTopicPerm {
                            topic: topic.clone(),
                            perm: PERM_READ,
                        }),
                    )
                    .await;
                    match r {
                        Ok(_) => {}
                        // A member without the topic (e.g. a slave) has nothing to stop.
                        Err(StepError::Retry(why)) if why.contains("not exist") => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(Outcome::Next)
            }
            "WaitDrained" => {
                let started = handles
                    .get("drain_started_ms")
                    .and_then(|s| s.parse::<u128>().ok());
                let now_ms = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let st = op.status.get_or_insert_with(Default::default);
                let started = match started {
                    Some(s) => s,
                    None => {
                        st.handles
                            .insert("drain_started_ms".into(), now_ms.to_string());
                        now_ms
                    }
                };
                let timeout = spec
                    .drain_timeout
                    .and_then(|d| Duration::try_from(d).ok())
                    .unwrap_or(DEFAULT_DRAIN_TIMEOUT);
                let mut lagging = Vec::new();
                for g in &recorded {
                    for m in &source_masters {
                        let (lag, _, _) = group_lag(ctx, &name, m, g, &topic).await?;
                        op.status
                            .get_or_insert_with(Default::default)
                            .handles
                            .insert(format!("lag/{}/{g}", m.group), lag.to_string());
                        if lag > 0 {
                            lagging.push(format!("{}/{g}={lag}", m.group));
                        }
                    }
                }
                if lagging.is_empty() {
                    return Ok(Outcome::Next);
                }
                if now_ms.saturating_sub(started) > timeout.as_millis() {
                    return Err(StepError::Failed {
                        code: tonic::Code::DeadlineExceeded,
                        reason: "DRAIN_TIMEOUT",
                        message: format!(
                            "consumers did not drain {topic} within {}s: {}",
                            timeout.as_secs(),
                            lagging.join(", ")
                        ),
                    });
                }
                Ok(Outcome::Wait(format!("lag: {}", lagging.join(", "))))
            }
            "DeleteTopicOnSource" => {
                if spec.keep_source {
                    note(
                        op,
                        format!("keep_source: {topic} stays read-only on the source"),
                    );
                    return Ok(Outcome::Next);
                }
                for m in &sources {
                    let r = ask(
                        ctx,
                        m,
                        format!("{name}-delete-{}", m.instance),
                        command::Action::DeleteTopic(DeleteTopic {
                            topic: topic.clone(),
                            ..Default::default()
                        }),
                    )
                    .await;
                    match r {
                        Ok(_) => {}
                        Err(StepError::Retry(why)) if why.contains("not exist") => {}
                        Err(e) => return Err(e),
                    }
                }
                for n in &source_ns {
                    ask(
                        ctx,
                        n,
                        format!("{name}-delete-ns-{}", n.instance),
                        command::Action::DeleteTopic(DeleteTopic {
                            topic: topic.clone(),
                            in_namesrv: true,
                        }),
                    )
                    .await?;
                }
                Ok(Outcome::Next)
            }
            "DeleteGroupsOnSource" => {
                if spec.keep_source {
                    return Ok(Outcome::Next);
                }
                for g in &recorded {
                    let retry = format!("%RETRY%{g}");
                    let mut other = BTreeSet::new();
                    for m in &source_masters {
                        let (_, _, topics) = group_lag(ctx, &name, m, g, "").await?;
                        other.extend(topics.into_iter().filter(|t| *t != topic && *t != retry));
                    }
                    if !other.is_empty() {
                        let kept: Vec<String> = other.into_iter().collect();
                        note(
                            op,
                            format!(
                                "kept group {g} on the source: it also consumes {}",
                                kept.join(", ")
                            ),
                        );
                        continue;
                    }
                    for m in &sources {
                        ask(
                            ctx,
                            m,
                            format!("{name}-delgroup-{g}-{}", m.instance),
                            command::Action::DeleteGroup(DeleteGroup { group: g.clone() }),
                        )
                        .await?;
                    }
                }
                Ok(Outcome::Next)
            }
            _ => {
                for g in &recorded {
                    let retry = Topic {
                        name: format!("%RETRY%{g}"),
                        read_queue_nums: 1,
                        write_queue_nums: 1,
                        perm: 6,
                        ..Default::default()
                    };
                    for m in &targets {
                        ask(
                            ctx,
                            m,
                            format!("{name}-retry-{g}-{}", m.instance),
                            command::Action::CreateTopic(retry.clone()),
                        )
                        .await?;
                    }
                }
                info!(%topic, "migration done");
                Ok(Outcome::Next)
            }
        }
    }

    async fn undo(&self, ctx: &Ctx, op: &mut Operation) -> Result<Outcome, StepError> {
        // Before the point of no return the source only lost write permission: give it back.
        let spec = spec_of(op);
        let name = op_name(op);
        let handles = op.status.clone().unwrap_or_default().handles;
        let sources = ctx.cache.read(|st| all_members(st, &spec.source_cluster));
        for m in &sources {
            let Some(perm) = handles
                .get(&format!("perm/{}", m.instance))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            ask(
                ctx,
                m,
                format!("{name}-undo-perm-{}", m.instance),
                command::Action::UpdateTopicPerm(UpdateTopicPerm {
                    topic: spec.topic.clone(),
                    perm,
                }),
            )
            .await?;
        }
        Ok(Outcome::Next)
    }
}

/// The request path of `TopicService.MigrateTopic`.
pub const METHOD: &str = "/flotilla.v1.TopicService/MigrateTopic";

fn valid_rocketmq_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 127
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-'))
}

/// Validates a `MigrateTopicRequest` and stores its Operation (Pending; the engine runs it).
/// A repeated `request_id` returns the first answer.
pub async fn start(
    ctx: &Ctx,
    r: flotilla_proto::v1::MigrateTopicRequest,
) -> Result<Operation, crate::errors::ApiError> {
    use crate::errors::ApiError;
    use crate::validate::{self, Violations};
    use flotilla_intent_store::{Compare, keys};
    use flotilla_proto::v1::{ObjectMeta, OperationPhase, OperationSpec, OperationStatus};
    use prost::Message;

    let mut v = Violations::default();
    if !valid_rocketmq_name(&r.topic) {
        v.add(
            "topic",
            "must match ^[%|a-zA-Z0-9_-]+$ and be at most 127 characters",
        );
    }
    validate::name(&mut v, "source_cluster", &r.source_cluster);
    validate::name(&mut v, "target_cluster", &r.target_cluster);
    if r.source_cluster == r.target_cluster && !r.source_cluster.is_empty() {
        v.add("target_cluster", "must differ from source_cluster");
    }
    for (i, g) in r.consumer_groups.iter().enumerate() {
        if !valid_rocketmq_name(g) {
            v.add(
                format!("consumer_groups[{i}]"),
                "must match ^[%|a-zA-Z0-9_-]+$ and be at most 127 characters",
            );
        }
    }
    validate::request_id(&mut v, "request_id", &r.request_id);
    v.into_result("INVALID_REQUEST")?;
    ctx.writer.require_leader().await?;
    let set_etag = crate::api::set_etag::<Operation>;
    if let Some(prev) = crate::requests::replayed(ctx, METHOD, &r.request_id, set_etag).await? {
        return Ok(prev);
    }
    for c in [&r.source_cluster, &r.target_cluster] {
        if ctx.cache.read(|st| !st.clusters.contains_key(c.as_str())) {
            return Err(ApiError::ClusterNotFound(c.clone()));
        }
    }
    let now = prost_types::Timestamp::from(SystemTime::now());
    let id = format!("op-{}", uuid::Uuid::new_v4());
    let op = Operation {
        metadata: Some(ObjectMeta {
            name: id.clone(),
            uid: uuid::Uuid::new_v4().to_string(),
            generation: 1,
            create_time: Some(now),
            ..Default::default()
        }),
        spec: Some(OperationSpec {
            cluster: r.source_cluster.clone(),
            kind: Some(operation_spec::Kind::MigrateTopic(MigrateTopicSpec {
                topic: r.topic.clone(),
                source_cluster: r.source_cluster.clone(),
                target_cluster: r.target_cluster.clone(),
                consumer_groups: r.consumer_groups.clone(),
                drain_timeout: None,
                keep_source: r.keep_source,
            })),
        }),
        status: Some(OperationStatus {
            phase: OperationPhase::Pending as i32,
            step: "Queued".into(),
            total_steps: u32::try_from(STEPS.len()).unwrap_or(0),
            start_time: Some(now),
            ..Default::default()
        }),
    };
    let key = keys::operation(&id)?;
    let mut writes = vec![(key.clone(), Some(op.encode_to_vec()))];
    writes.extend(crate::requests::record(METHOD, &r.request_id, &op)?);
    let compares = vec![Compare::Absent(key)];
    crate::api::commit_stamped(ctx, compares, writes, op, set_etag, &id, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocketmq_names() {
        for ok in ["orders", "%RETRY%cg-1", "a|b", "A_b-9"] {
            assert!(valid_rocketmq_name(ok), "{ok}");
        }
        for bad in ["", "with space", "dot.ted", &"x".repeat(128)] {
            assert!(!valid_rocketmq_name(bad), "{bad}");
        }
    }
}

//! `flotilla.v1.TopicService`: create, update, delete, read, list, stats and route of a
//! cluster's topics, as the RocketMQ console and `mqadmin` do them — on the masters of the
//! broker groups, through their agents ([`super::brokers`]).
//!
//! A topic lives on some broker groups of a cluster; "the topic" in this API is the merge of
//! what those groups' masters hold (its `groups` say which). Writes first ask every group
//! involved what it has, and act only when every one of them answered, so a write never
//! half-applies because a group was silent: it fails with BROKERS_UNAVAILABLE naming each
//! silent group. Reads answer with the groups that spoke and list the silent ones in
//! `failures`. Deleting a topic also drops its route from every nameserver.

use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_proto::agent::v1::{self as agent, TopicList, command::Action, command_result};
use flotilla_proto::v1::{
    CreateTopicRequest, DeleteTopicRequest, DeleteTopicResponse, GetTopicRequest,
    GetTopicRouteRequest, GetTopicStatsRequest, ListTopicsRequest, ListTopicsResponse,
    MigrateTopicRequest, Operation, Topic, TopicRoute, TopicStats, UpdateTopicRequest,
    topic_service_server::TopicService,
};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use super::brokers::{self, Target, Targets};
use crate::context::Ctx;
use crate::errors::ApiError;
use crate::validate::{self, Violations};

/// Queues a new topic gets when the request says 0 (RocketMQ's `mqadmin updateTopic`
/// default).
pub const DEFAULT_QUEUES: u32 = 8;
/// Most queues a topic may have per broker group.
pub const MAX_QUEUES: u32 = 1024;

/// The TopicService implementation.
pub struct TopicApi {
    ctx: Arc<Ctx>,
}

impl TopicApi {
    /// Serves topics from `ctx`.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }
}

/// Whether `perm` is a valid RocketMQ topic permission for this API: read and/or write
/// (2, 4, 6), optionally with the INHERIT (1) or PRIORITY (8) bit.
pub fn valid_perm(perm: u32) -> bool {
    perm <= 15 && (perm & 6) != 0
}

fn queues(v: &mut Violations, field: &str, n: u32, zero_ok: bool) {
    if (n == 0 && !zero_ok) || n > MAX_QUEUES {
        v.add(field, format!("must be 1..={MAX_QUEUES}"));
    }
}

fn perm(v: &mut Violations, field: &str, p: u32) {
    if p != 0 && !valid_perm(p) {
        v.add(
            field,
            "must be 2 (write), 4 (read) or 6 (read+write), optionally | 1 (inherit) or | 8",
        );
    }
}

/// The `groups` of a request must be broker groups of the cluster.
fn known_groups(targets: &Targets, field: &str, wanted: &[String]) -> Result<(), ApiError> {
    let all = targets.group_names();
    let mut v = Violations::default();
    for (i, g) in wanted.iter().enumerate() {
        if !all.contains(g) {
            v.add(
                format!("{field}[{i}]"),
                format!(
                    "{g} is not a broker group of cluster {} (groups: {})",
                    targets.cluster,
                    all.join(", ")
                ),
            );
        }
    }
    v.into_result("INVALID_REQUEST")
}

/// Which groups hold `topic`, with each one's config.
fn holders<'a>(lists: &'a [(Target, TopicList)], topic: &str) -> Vec<(&'a Target, &'a Topic)> {
    lists
        .iter()
        .filter_map(|(t, l)| l.topics.iter().find(|x| x.name == topic).map(|x| (t, x)))
        .collect()
}

/// The API's view of a topic held by `held` groups: the first group's config (groups are
/// sorted by name), and every holder in `groups`.
fn merged(held: &[(&Target, &Topic)]) -> Option<Topic> {
    let (_, first) = held.first()?;
    let mut t = (*first).clone();
    t.groups = held.iter().map(|(g, _)| g.broker_name.clone()).collect();
    t.groups.sort();
    Some(t)
}

/// NOT_FOUND when no group that answered holds the topic and none was silent; silent groups
/// might hold it, so then BROKERS_UNAVAILABLE.
fn not_found(
    cluster: &str,
    topic: &str,
    failures: Vec<flotilla_proto::v1::BrokerFailure>,
) -> ApiError {
    if failures.is_empty() {
        ApiError::TopicNotFound {
            cluster: cluster.to_string(),
            topic: topic.to_string(),
        }
    } else {
        ApiError::BrokersUnavailable {
            what: "the brokers",
            failures,
        }
    }
}

fn fail_if_any(failures: Vec<flotilla_proto::v1::BrokerFailure>) -> Result<(), ApiError> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ApiError::BrokersUnavailable {
            what: "the brokers",
            failures,
        })
    }
}

impl TopicApi {
    async fn create(&self, r: CreateTopicRequest) -> Result<Topic, ApiError> {
        let ctx = &self.ctx;
        let mut t = r.topic.unwrap_or_default();
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::user_topic(&mut v, "topic.name", &t.name);
        queues(&mut v, "topic.read_queue_nums", t.read_queue_nums, true);
        queues(&mut v, "topic.write_queue_nums", t.write_queue_nums, true);
        perm(&mut v, "topic.perm", t.perm);
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        known_groups(&targets, "topic.groups", &t.groups)?;
        if t.read_queue_nums == 0 {
            t.read_queue_nums = DEFAULT_QUEUES;
        }
        if t.write_queue_nums == 0 {
            t.write_queue_nums = DEFAULT_QUEUES;
        }
        if t.perm == 0 {
            t.perm = 6;
        }
        let (lists, failures) = brokers::list_all(ctx, &targets, &t.groups).await;
        fail_if_any(failures)?;
        let held = holders(&lists, &t.name);
        if !held.is_empty() {
            return Err(ApiError::TopicAlreadyExists {
                cluster: r.cluster,
                topic: t.name.clone(),
                groups: held.iter().map(|(g, _)| g.broker_name.clone()).collect(),
            });
        }
        let on: Vec<Target> = lists.into_iter().map(|(g, _)| g).collect();
        let spec = Topic {
            groups: Vec::new(),
            ..t.clone()
        };
        let done = brokers::call_all(ctx, &on, &r.request_id, "create-topic", |_| {
            Action::CreateTopic(spec.clone())
        })
        .await;
        let done = brokers::all_ok(done)?;
        t.groups = done.into_iter().map(|(g, _)| g.broker_name).collect();
        t.groups.sort();
        Ok(t)
    }

    async fn update(&self, r: UpdateTopicRequest) -> Result<Topic, ApiError> {
        let ctx = &self.ctx;
        let t = r.topic.unwrap_or_default();
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "topic.name", &t.name);
        queues(&mut v, "topic.read_queue_nums", t.read_queue_nums, true);
        queues(&mut v, "topic.write_queue_nums", t.write_queue_nums, true);
        perm(&mut v, "topic.perm", t.perm);
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        known_groups(&targets, "topic.groups", &t.groups)?;
        let (lists, failures) = brokers::list_all(ctx, &targets, &[]).await;
        fail_if_any(failures)?;
        let held = holders(&lists, &t.name);
        let Some(current) = merged(&held) else {
            return Err(not_found(&r.cluster, &t.name, Vec::new()));
        };
        // Every holder gets the change; groups named in the request that lack the topic get
        // it created from the current config with the change applied.
        let mut plan: Vec<(Target, Topic)> = Vec::new();
        for (g, _) in &lists {
            let base = held
                .iter()
                .find(|(h, _)| h.broker_name == g.broker_name)
                .map(|(_, x)| (*x).clone());
            let base = match base {
                Some(b) => b,
                None if t.groups.contains(&g.broker_name) => current.clone(),
                None => continue,
            };
            let next = Topic {
                read_queue_nums: if t.read_queue_nums == 0 {
                    base.read_queue_nums
                } else {
                    t.read_queue_nums
                },
                write_queue_nums: if t.write_queue_nums == 0 {
                    base.write_queue_nums
                } else {
                    t.write_queue_nums
                },
                perm: if t.perm == 0 { base.perm } else { t.perm },
                groups: Vec::new(),
                ..base
            };
            plan.push((g.clone(), next));
        }
        let on: Vec<Target> = plan.iter().map(|(g, _)| g.clone()).collect();
        let done = brokers::call_all(ctx, &on, &r.request_id, "update-topic", |g| {
            let spec = plan
                .iter()
                .find(|(p, _)| p == g)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            Action::CreateTopic(spec)
        })
        .await;
        brokers::all_ok(done)?;
        let mut out = plan.first().map(|(_, s)| s.clone()).unwrap_or_default();
        out.groups = on.into_iter().map(|g| g.broker_name).collect();
        out.groups.sort();
        Ok(out)
    }

    async fn delete(&self, r: DeleteTopicRequest) -> Result<DeleteTopicResponse, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "name", &r.name);
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        let (lists, failures) = brokers::list_all(ctx, &targets, &[]).await;
        fail_if_any(failures)?;
        let on: Vec<Target> = holders(&lists, &r.name)
            .into_iter()
            .map(|(g, _)| g.clone())
            .collect();
        if on.is_empty() {
            return Err(not_found(&r.cluster, &r.name, Vec::new()));
        }
        let delete = |in_namesrv| {
            Action::DeleteTopic(agent::DeleteTopic {
                topic: r.name.clone(),
                in_namesrv,
            })
        };
        let done =
            brokers::call_all(ctx, &on, &r.request_id, "delete-topic", |_| delete(false)).await;
        brokers::all_ok(done)?;
        let done = brokers::call_all(
            ctx,
            &targets.nameservers,
            &r.request_id,
            "delete-route",
            |_| delete(true),
        )
        .await;
        brokers::all_ok(done).map_err(|e| match e {
            ApiError::BrokersUnavailable { failures, .. } => ApiError::BrokersUnavailable {
                what: "some nameservers (the brokers deleted the topic)",
                failures,
            },
            e => e,
        })?;
        Ok(DeleteTopicResponse {})
    }

    async fn get(&self, r: GetTopicRequest) -> Result<Topic, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "name", &r.name);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(&self.ctx, &r.cluster).await?;
        let (lists, failures) = brokers::list_all(&self.ctx, &targets, &[]).await;
        merged(&holders(&lists, &r.name)).ok_or_else(|| not_found(&r.cluster, &r.name, failures))
    }

    async fn list(&self, r: ListTopicsRequest) -> Result<ListTopicsResponse, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        let size = validate::page_size(&mut v, "page_size", r.page_size);
        let start = brokers::page_start(&mut v, &r.page_token);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(&self.ctx, &r.cluster).await?;
        let (lists, failures) = brokers::list_all(&self.ctx, &targets, &[]).await;
        let groups = targets.group_names();
        let mut by_name: BTreeMap<String, Vec<(&Target, &Topic)>> = BTreeMap::new();
        for (g, l) in &lists {
            for t in &l.topics {
                if r.include_system || !brokers::is_system_topic(&t.name, &r.cluster, &groups) {
                    by_name.entry(t.name.clone()).or_default().push((g, t));
                }
            }
        }
        let items = by_name
            .into_iter()
            .filter_map(|(n, held)| merged(&held).map(|t| (n, t)))
            .collect();
        let (topics, next_page_token) = brokers::page(items, start.as_deref(), size);
        Ok(ListTopicsResponse {
            topics,
            next_page_token,
            failures,
        })
    }

    async fn stats(&self, r: GetTopicStatsRequest) -> Result<TopicStats, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "name", &r.name);
        v.into_result("INVALID_REQUEST")?;
        let ctx = &self.ctx;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        let (lists, mut failures) = brokers::list_all(ctx, &targets, &[]).await;
        let on: Vec<Target> = holders(&lists, &r.name)
            .into_iter()
            .map(|(g, _)| g.clone())
            .collect();
        if on.is_empty() {
            return Err(not_found(&r.cluster, &r.name, failures));
        }
        let results = brokers::call_all(ctx, &on, "", "topic-stats", |_| {
            Action::GetTopicStats(agent::GetTopicStats {
                topic: r.name.clone(),
            })
        })
        .await;
        let mut out = TopicStats {
            topic: r.name.clone(),
            ..Default::default()
        };
        for (t, res) in results {
            match res {
                Ok(Some(command_result::Result::TopicStats(s))) => {
                    out.queues.extend(s.queues);
                    out.total_messages += s.total_messages;
                }
                Ok(_) => failures.push(t.failure("BAD_AGENT_ANSWER", "no stats in the answer")),
                Err(f) => failures.push(f),
            }
        }
        out.queues
            .sort_by(|a, b| (&a.broker_name, a.queue_id).cmp(&(&b.broker_name, b.queue_id)));
        out.failures = failures;
        Ok(out)
    }

    async fn route(&self, r: GetTopicRouteRequest) -> Result<TopicRoute, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "name", &r.name);
        v.into_result("INVALID_REQUEST")?;
        let ctx = &self.ctx;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        let mut failures = Vec::new();
        // One nameserver's answer is the route; the next is asked only when one is silent.
        for ns in &targets.nameservers {
            let id = brokers::command_id("", "route", ns);
            let action = Action::GetTopicRoute(agent::GetTopicRoute {
                topic: r.name.clone(),
            });
            match brokers::call(ctx, ns, id, action).await {
                Ok(Some(command_result::Result::TopicRoute(mut route))) => {
                    route.nameserver = ns.member.clone();
                    return Ok(route);
                }
                Ok(_) => failures.push(ns.failure("BAD_AGENT_ANSWER", "no route in the answer")),
                Err(f) if f.reason == "TOPIC_NOT_FOUND" => {
                    return Err(not_found(&r.cluster, &r.name, Vec::new()));
                }
                Err(f) => failures.push(f),
            }
        }
        Err(ApiError::BrokersUnavailable {
            what: "no nameserver",
            failures,
        })
    }
}

#[tonic::async_trait]
impl TopicService for TopicApi {
    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<Topic>, Status> {
        let r = request.into_inner();
        let name = r.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default();
        let span = info_span!("CreateTopic", cluster = %r.cluster, topic = %name, request_id = %r.request_id);
        Ok(Response::new(self.create(r).instrument(span).await?))
    }

    async fn update_topic(
        &self,
        request: Request<UpdateTopicRequest>,
    ) -> Result<Response<Topic>, Status> {
        let r = request.into_inner();
        let name = r.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default();
        let span = info_span!("UpdateTopic", cluster = %r.cluster, topic = %name, request_id = %r.request_id);
        Ok(Response::new(self.update(r).instrument(span).await?))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("DeleteTopic", cluster = %r.cluster, topic = %r.name, request_id = %r.request_id);
        Ok(Response::new(self.delete(r).instrument(span).await?))
    }

    async fn get_topic(
        &self,
        request: Request<GetTopicRequest>,
    ) -> Result<Response<Topic>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetTopic", cluster = %r.cluster, topic = %r.name);
        Ok(Response::new(self.get(r).instrument(span).await?))
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("ListTopics", cluster = %r.cluster);
        Ok(Response::new(self.list(r).instrument(span).await?))
    }

    async fn get_topic_stats(
        &self,
        request: Request<GetTopicStatsRequest>,
    ) -> Result<Response<TopicStats>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetTopicStats", cluster = %r.cluster, topic = %r.name);
        Ok(Response::new(self.stats(r).instrument(span).await?))
    }

    async fn get_topic_route(
        &self,
        request: Request<GetTopicRouteRequest>,
    ) -> Result<Response<TopicRoute>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetTopicRoute", cluster = %r.cluster, topic = %r.name);
        Ok(Response::new(self.route(r).instrument(span).await?))
    }

    async fn migrate_topic(
        &self,
        request: Request<MigrateTopicRequest>,
    ) -> Result<Response<Operation>, Status> {
        let r = request.into_inner();
        let span = info_span!(
            "MigrateTopic",
            topic = %r.topic,
            source = %r.source_cluster,
            target = %r.target_cluster,
            request_id = %r.request_id
        );
        let op = crate::workflow::migrate_topic::start(&self.ctx, r)
            .instrument(span)
            .await?;
        Ok(Response::new(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms() {
        for p in [2, 4, 6, 7, 14, 3] {
            assert!(valid_perm(p), "{p}");
        }
        for p in [1, 8, 9, 16, 0] {
            assert!(!valid_perm(p), "{p}");
        }
    }

    #[test]
    fn merge_takes_the_first_group_and_lists_holders() {
        let g = |n: &str| Target {
            broker_name: n.into(),
            member: format!("{n}-0"),
            node: "n".into(),
        };
        let topic = |q| Topic {
            name: "T".into(),
            read_queue_nums: q,
            write_queue_nums: q,
            perm: 6,
            ..Default::default()
        };
        let lists = vec![
            (
                g("c-0"),
                TopicList {
                    topics: vec![topic(4)],
                    groups: vec![],
                },
            ),
            (g("c-1"), TopicList::default()),
            (
                g("c-2"),
                TopicList {
                    topics: vec![topic(8)],
                    groups: vec![],
                },
            ),
        ];
        let held = holders(&lists, "T");
        let t = merged(&held).unwrap();
        assert_eq!(t.groups, ["c-0", "c-2"]);
        assert_eq!(t.read_queue_nums, 4);
        assert!(merged(&holders(&lists, "U")).is_none());
        assert_eq!(not_found("c", "U", vec![]).code(), "TOPIC_NOT_FOUND");
        let silent = vec![g("c-1").failure("NODE_NOT_CONNECTED", "x")];
        assert_eq!(not_found("c", "U", silent).code(), "BROKERS_UNAVAILABLE");
    }

    #[test]
    fn unknown_groups_are_field_errors() {
        let targets = Targets {
            cluster: "c".into(),
            groups: vec![(
                "c-0".into(),
                Ok(Target {
                    broker_name: "c-0".into(),
                    member: "c-0-0".into(),
                    node: "n".into(),
                }),
            )],
            nameservers: vec![],
        };
        let e = known_groups(&targets, "topic.groups", &["c-0".into(), "c-9".into()]).unwrap_err();
        match e {
            ApiError::InvalidArgument { violations, .. } => {
                assert_eq!(violations[0].field, "topic.groups[1]");
            }
            e => panic!("{e}"),
        }
    }
}

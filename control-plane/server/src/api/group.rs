//! `flotilla.v1.GroupService`: a cluster's consumer (subscription) groups — create, update,
//! delete, read, list — their progress (per queue broker offset, consumer offset, lag; the
//! retry topic included), their online consumers, and offset resets by time or to an offset.
//!
//! Like topics ([`super::topic`]), a consumer group is the merge of what the broker groups'
//! masters hold, reached through their agents ([`super::brokers`]). Writes act only when
//! every broker group involved answered; reads list silent groups in `failures`. A reset
//! commits the new offsets on the brokers and flags them for the group's online consumers,
//! which pick them up on their next pull; offline groups simply find them when they start.
//!
//! Producer groups are not stored anywhere: GetProducerConnections asks every master who is
//! connected as a producer of the group right now (GET_PRODUCER_CONNECTION_LIST) and merges
//! the answers by client id.

use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_proto::agent::v1::{self as agent, TopicList, command::Action, command_result};
use flotilla_proto::v1::{
    BrokerFailure, ConsumerConnections, ConsumerGroup, CreateGroupRequest, DeleteGroupRequest,
    DeleteGroupResponse, GetConsumerConnectionsRequest, GetGroupProgressRequest, GetGroupRequest,
    GetProducerConnectionsRequest, GroupProgress, ListGroupsRequest, ListGroupsResponse,
    ProducerConnections, ResetOffsetRequest, ResetOffsetResponse, UpdateGroupRequest,
    group_service_server::GroupService, reset_offset_request,
};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use super::brokers::{self, Target, Targets};
use crate::context::Ctx;
use crate::errors::ApiError;
use crate::validate::{self, Violations};

/// Most retry queues / redeliveries RocketMQ allows a group.
pub const MAX_RETRY: u32 = 64;

/// The GroupService implementation.
pub struct GroupApi {
    ctx: Arc<Ctx>,
}

impl GroupApi {
    /// Serves consumer groups from `ctx`.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }
}

fn group_fields(v: &mut Violations, g: &ConsumerGroup) {
    validate::rocketmq_name(v, "group.name", &g.name);
    if g.retry_queue_nums > MAX_RETRY {
        v.add("group.retry_queue_nums", format!("must be 1..={MAX_RETRY}"));
    }
    if g.retry_max_times > MAX_RETRY {
        v.add("group.retry_max_times", format!("must be 0..={MAX_RETRY}"));
    }
    if g.broker_id < 0 {
        v.add("group.broker_id", "must be >= 0");
    }
}

fn known_groups(targets: &Targets, wanted: &[String]) -> Result<(), ApiError> {
    let all = targets.group_names();
    let mut v = Violations::default();
    for (i, g) in wanted.iter().enumerate() {
        if !all.contains(g) {
            v.add(
                format!("group.groups[{i}]"),
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

fn holders<'a>(
    lists: &'a [(Target, TopicList)],
    group: &str,
) -> Vec<(&'a Target, &'a ConsumerGroup)> {
    lists
        .iter()
        .filter_map(|(t, l)| l.groups.iter().find(|x| x.name == group).map(|x| (t, x)))
        .collect()
}

fn merged(held: &[(&Target, &ConsumerGroup)]) -> Option<ConsumerGroup> {
    let (_, first) = held.first()?;
    let mut g = (*first).clone();
    g.groups = held.iter().map(|(t, _)| t.broker_name.clone()).collect();
    g.groups.sort();
    Some(g)
}

fn not_found(cluster: &str, group: &str, failures: Vec<BrokerFailure>) -> ApiError {
    if failures.is_empty() {
        ApiError::GroupNotFound {
            cluster: cluster.to_string(),
            group: group.to_string(),
        }
    } else {
        ApiError::BrokersUnavailable {
            what: "the brokers",
            failures,
        }
    }
}

fn fail_if_any(failures: Vec<BrokerFailure>) -> Result<(), ApiError> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ApiError::BrokersUnavailable {
            what: "the brokers",
            failures,
        })
    }
}

/// A group config as sent to brokers (RocketMQ's `retryQueueNums` is at least 1).
fn for_broker(g: &ConsumerGroup) -> ConsumerGroup {
    ConsumerGroup {
        retry_queue_nums: g.retry_queue_nums.max(1),
        groups: Vec::new(),
        ..g.clone()
    }
}

/// Merges the connection lists of several brokers: one entry per client id (with every
/// broker it is connected to), one subscription per topic.
pub fn merge_connections(
    group: &str,
    parts: Vec<(Target, ConsumerConnections)>,
) -> ConsumerConnections {
    let mut out = ConsumerConnections {
        group: group.to_string(),
        ..Default::default()
    };
    let mut clients: BTreeMap<String, flotilla_proto::v1::ClientConnection> = BTreeMap::new();
    let mut subs: BTreeMap<String, flotilla_proto::v1::Subscription> = BTreeMap::new();
    for (t, c) in parts {
        for conn in c.connections {
            clients
                .entry(conn.client_id.clone())
                .or_insert_with(|| conn.clone())
                .broker_names
                .push(t.broker_name.clone());
        }
        for s in c.subscriptions {
            subs.entry(s.topic.clone()).or_insert(s);
        }
        for (field, value) in [
            (&mut out.consume_type, c.consume_type),
            (&mut out.message_model, c.message_model),
            (&mut out.consume_from_where, c.consume_from_where),
        ] {
            if field.is_empty() {
                *field = value;
            }
        }
    }
    out.connections = clients.into_values().collect();
    out.subscriptions = subs.into_values().collect();
    out
}

/// The connections of a producer group, merged by client id over the broker groups (each
/// client lists the groups it is connected to), sorted by client id.
pub fn merge_producers(
    group: &str,
    parts: Vec<(Target, ProducerConnections)>,
) -> ProducerConnections {
    let mut clients: BTreeMap<String, flotilla_proto::v1::ClientConnection> = BTreeMap::new();
    for (t, c) in parts {
        for conn in c.connections {
            let e = clients
                .entry(conn.client_id.clone())
                .or_insert_with(|| conn.clone());
            if !e.broker_names.contains(&t.broker_name) {
                e.broker_names.push(t.broker_name.clone());
            }
        }
    }
    ProducerConnections {
        group: group.to_string(),
        connections: clients.into_values().collect(),
        failures: Vec::new(),
    }
}

impl GroupApi {
    async fn producers(
        &self,
        r: GetProducerConnectionsRequest,
    ) -> Result<ProducerConnections, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "group", &r.group);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        let (masters, mut failures) = targets.masters(&[]);
        let results = brokers::call_all(ctx, &masters, "", "producers", |_| {
            Action::GetProducerConnections(agent::GetProducerConnections {
                group: r.group.clone(),
            })
        })
        .await;
        let (parts, bad) = brokers::answers(results, "connections", |a| match a {
            command_result::Result::ProducerConnections(c) => Some(c),
            _ => None,
        });
        failures.extend(bad);
        let mut out = merge_producers(&r.group, parts);
        out.failures = failures;
        Ok(out)
    }

    async fn create(&self, r: CreateGroupRequest) -> Result<ConsumerGroup, ApiError> {
        let ctx = &self.ctx;
        let mut g = r.group.unwrap_or_default();
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        group_fields(&mut v, &g);
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        known_groups(&targets, &g.groups)?;
        let (lists, failures) = brokers::list_all(ctx, &targets, &g.groups).await;
        fail_if_any(failures)?;
        let held = holders(&lists, &g.name);
        if !held.is_empty() {
            return Err(ApiError::GroupAlreadyExists {
                cluster: r.cluster,
                group: g.name.clone(),
                groups: held.iter().map(|(t, _)| t.broker_name.clone()).collect(),
            });
        }
        let on: Vec<Target> = lists.into_iter().map(|(t, _)| t).collect();
        let spec = for_broker(&g);
        let done = brokers::call_all(ctx, &on, &r.request_id, "create-group", |_| {
            Action::CreateGroup(spec.clone())
        })
        .await;
        let done = brokers::all_ok(done)?;
        g.retry_queue_nums = spec.retry_queue_nums;
        g.groups = done.into_iter().map(|(t, _)| t.broker_name).collect();
        g.groups.sort();
        Ok(g)
    }

    async fn update(&self, r: UpdateGroupRequest) -> Result<ConsumerGroup, ApiError> {
        let ctx = &self.ctx;
        let mut g = r.group.unwrap_or_default();
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        group_fields(&mut v, &g);
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        known_groups(&targets, &g.groups)?;
        let (lists, failures) = brokers::list_all(ctx, &targets, &[]).await;
        fail_if_any(failures)?;
        let held = holders(&lists, &g.name);
        if held.is_empty() {
            return Err(not_found(&r.cluster, &g.name, Vec::new()));
        }
        let on: Vec<Target> = lists
            .iter()
            .filter(|(t, _)| {
                g.groups.contains(&t.broker_name)
                    || held.iter().any(|(h, _)| h.broker_name == t.broker_name)
            })
            .map(|(t, _)| t.clone())
            .collect();
        let spec = for_broker(&g);
        let done = brokers::call_all(ctx, &on, &r.request_id, "update-group", |_| {
            Action::CreateGroup(spec.clone())
        })
        .await;
        let done = brokers::all_ok(done)?;
        g.retry_queue_nums = spec.retry_queue_nums;
        g.groups = done.into_iter().map(|(t, _)| t.broker_name).collect();
        g.groups.sort();
        Ok(g)
    }

    async fn delete(&self, r: DeleteGroupRequest) -> Result<DeleteGroupResponse, ApiError> {
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
            .map(|(t, _)| t.clone())
            .collect();
        if on.is_empty() {
            return Err(not_found(&r.cluster, &r.name, Vec::new()));
        }
        let done = brokers::call_all(ctx, &on, &r.request_id, "delete-group", |_| {
            Action::DeleteGroup(agent::DeleteGroup {
                group: r.name.clone(),
            })
        })
        .await;
        brokers::all_ok(done)?;
        Ok(DeleteGroupResponse {})
    }

    async fn get(&self, r: GetGroupRequest) -> Result<ConsumerGroup, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "name", &r.name);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(&self.ctx, &r.cluster).await?;
        let (lists, failures) = brokers::list_all(&self.ctx, &targets, &[]).await;
        merged(&holders(&lists, &r.name)).ok_or_else(|| not_found(&r.cluster, &r.name, failures))
    }

    async fn list(&self, r: ListGroupsRequest) -> Result<ListGroupsResponse, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        let size = validate::page_size(&mut v, "page_size", r.page_size);
        let start = brokers::page_start(&mut v, &r.page_token);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(&self.ctx, &r.cluster).await?;
        let (lists, failures) = brokers::list_all(&self.ctx, &targets, &[]).await;
        let mut by_name: BTreeMap<String, Vec<(&Target, &ConsumerGroup)>> = BTreeMap::new();
        for (t, l) in &lists {
            for g in &l.groups {
                if r.include_system || !brokers::is_system_group(&g.name) {
                    by_name.entry(g.name.clone()).or_default().push((t, g));
                }
            }
        }
        let items = by_name
            .into_iter()
            .filter_map(|(n, held)| merged(&held).map(|g| (n, g)))
            .collect();
        let (groups, next_page_token) = brokers::page(items, start.as_deref(), size);
        Ok(ListGroupsResponse {
            groups,
            next_page_token,
            failures,
        })
    }

    async fn progress(&self, r: GetGroupProgressRequest) -> Result<GroupProgress, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "group", &r.group);
        if !r.topic.is_empty() {
            validate::rocketmq_name(&mut v, "topic", &r.topic);
        }
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        let (lists, mut failures) = brokers::list_all(ctx, &targets, &[]).await;
        let on: Vec<Target> = holders(&lists, &r.group)
            .into_iter()
            .map(|(t, _)| t.clone())
            .collect();
        if on.is_empty() {
            return Err(not_found(&r.cluster, &r.group, failures));
        }
        if !r.topic.is_empty()
            && failures.is_empty()
            && !lists
                .iter()
                .any(|(_, l)| l.topics.iter().any(|t| t.name == r.topic))
        {
            return Err(ApiError::TopicNotFound {
                cluster: r.cluster,
                topic: r.topic,
            });
        }
        let results = brokers::call_all(ctx, &on, "", "group-progress", |_| {
            Action::GetGroupProgress(agent::GetGroupProgress {
                group: r.group.clone(),
                topic: r.topic.clone(),
            })
        })
        .await;
        let mut out = GroupProgress {
            group: r.group.clone(),
            ..Default::default()
        };
        for (t, res) in results {
            match res {
                Ok(Some(command_result::Result::GroupProgress(p))) => {
                    out.queues.extend(p.queues);
                    out.consume_tps += p.consume_tps;
                }
                Ok(_) => failures.push(t.failure("BAD_AGENT_ANSWER", "no progress in the answer")),
                Err(f) => failures.push(f),
            }
        }
        out.queues.sort_by(|a, b| {
            (&a.topic, &a.broker_name, a.queue_id).cmp(&(&b.topic, &b.broker_name, b.queue_id))
        });
        out.total_lag = out.queues.iter().map(|q| q.lag).sum();
        out.failures = failures;
        Ok(out)
    }

    async fn reset(&self, r: ResetOffsetRequest) -> Result<ResetOffsetResponse, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "group", &r.group);
        validate::rocketmq_name(&mut v, "topic", &r.topic);
        validate::request_id(&mut v, "request_id", &r.request_id);
        let target = match &r.target {
            None => {
                v.add("target", "one of timestamp or offset is required");
                None
            }
            Some(reset_offset_request::Target::Offset(o)) if *o < 0 => {
                v.add("offset", "must be >= 0");
                None
            }
            Some(reset_offset_request::Target::Offset(o)) => {
                Some(agent::reset_offset::Target::Offset(*o))
            }
            Some(reset_offset_request::Target::Timestamp(ts)) => {
                let ms = ts
                    .seconds
                    .checked_mul(1000)
                    .and_then(|s| s.checked_add(i64::from(ts.nanos / 1_000_000)));
                match ms {
                    Some(ms) if ms >= 0 && (0..1_000_000_000).contains(&ts.nanos) => {
                        Some(agent::reset_offset::Target::TimestampMs(ms))
                    }
                    _ => {
                        v.add(
                            "timestamp",
                            "must be a time at or after 1970-01-01T00:00:00Z",
                        );
                        None
                    }
                }
            }
        };
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        let (lists, failures) = brokers::list_all(ctx, &targets, &[]).await;
        fail_if_any(failures)?;
        if holders(&lists, &r.group).is_empty() {
            return Err(not_found(&r.cluster, &r.group, Vec::new()));
        }
        let on: Vec<Target> = lists
            .iter()
            .filter(|(_, l)| l.topics.iter().any(|t| t.name == r.topic))
            .map(|(t, _)| t.clone())
            .collect();
        if on.is_empty() {
            return Err(ApiError::TopicNotFound {
                cluster: r.cluster,
                topic: r.topic,
            });
        }
        let done = brokers::call_all(ctx, &on, &r.request_id, "reset-offset", |_| {
            Action::ResetOffset(agent::ResetOffset {
                group: r.group.clone(),
                topic: r.topic.clone(),
                target,
            })
        })
        .await;
        let mut out = ResetOffsetResponse::default();
        for (t, res) in brokers::all_ok(done)? {
            match res {
                Some(command_result::Result::ResetOffset(x)) => out.queues.extend(x.queues),
                _ => {
                    return Err(ApiError::BrokersUnavailable {
                        what: "the brokers",
                        failures: vec![t.failure("BAD_AGENT_ANSWER", "no offsets in the answer")],
                    });
                }
            }
        }
        out.queues
            .sort_by(|a, b| (&a.broker_name, a.queue_id).cmp(&(&b.broker_name, b.queue_id)));
        Ok(out)
    }

    async fn connections(
        &self,
        r: GetConsumerConnectionsRequest,
    ) -> Result<ConsumerConnections, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "group", &r.group);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        let (lists, mut failures) = brokers::list_all(ctx, &targets, &[]).await;
        if holders(&lists, &r.group).is_empty() && failures.is_empty() {
            return Err(not_found(&r.cluster, &r.group, Vec::new()));
        }
        let on: Vec<Target> = lists.into_iter().map(|(t, _)| t).collect();
        let results = brokers::call_all(ctx, &on, "", "connections", |_| {
            Action::GetConsumerConnections(agent::GetConsumerConnections {
                group: r.group.clone(),
            })
        })
        .await;
        let (parts, bad) = brokers::answers(results, "connections", |a| match a {
            command_result::Result::ConsumerConnections(c) => Some(c),
            _ => None,
        });
        failures.extend(bad);
        let mut out = merge_connections(&r.group, parts);
        out.failures = failures;
        Ok(out)
    }
}

#[tonic::async_trait]
impl GroupService for GroupApi {
    async fn get_producer_connections(
        &self,
        request: Request<GetProducerConnectionsRequest>,
    ) -> Result<Response<ProducerConnections>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetProducerConnections", cluster = %r.cluster, group = %r.group);
        Ok(Response::new(self.producers(r).instrument(span).await?))
    }

    async fn create_group(
        &self,
        request: Request<CreateGroupRequest>,
    ) -> Result<Response<ConsumerGroup>, Status> {
        let r = request.into_inner();
        let name = r.group.as_ref().map(|g| g.name.clone()).unwrap_or_default();
        let span = info_span!("CreateGroup", cluster = %r.cluster, group = %name, request_id = %r.request_id);
        Ok(Response::new(self.create(r).instrument(span).await?))
    }

    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("DeleteGroup", cluster = %r.cluster, group = %r.name, request_id = %r.request_id);
        Ok(Response::new(self.delete(r).instrument(span).await?))
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("ListGroups", cluster = %r.cluster);
        Ok(Response::new(self.list(r).instrument(span).await?))
    }

    async fn get_group_progress(
        &self,
        request: Request<GetGroupProgressRequest>,
    ) -> Result<Response<GroupProgress>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetGroupProgress", cluster = %r.cluster, group = %r.group, topic = %r.topic);
        Ok(Response::new(self.progress(r).instrument(span).await?))
    }

    async fn reset_offset(
        &self,
        request: Request<ResetOffsetRequest>,
    ) -> Result<Response<ResetOffsetResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("ResetOffset", cluster = %r.cluster, group = %r.group, topic = %r.topic, request_id = %r.request_id);
        Ok(Response::new(self.reset(r).instrument(span).await?))
    }

    async fn get_group(
        &self,
        request: Request<GetGroupRequest>,
    ) -> Result<Response<ConsumerGroup>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetGroup", cluster = %r.cluster, group = %r.name);
        Ok(Response::new(self.get(r).instrument(span).await?))
    }

    async fn update_group(
        &self,
        request: Request<UpdateGroupRequest>,
    ) -> Result<Response<ConsumerGroup>, Status> {
        let r = request.into_inner();
        let name = r.group.as_ref().map(|g| g.name.clone()).unwrap_or_default();
        let span = info_span!("UpdateGroup", cluster = %r.cluster, group = %name, request_id = %r.request_id);
        Ok(Response::new(self.update(r).instrument(span).await?))
    }

    async fn get_consumer_connections(
        &self,
        request: Request<GetConsumerConnectionsRequest>,
    ) -> Result<Response<ConsumerConnections>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetConsumerConnections", cluster = %r.cluster, group = %r.group);
        Ok(Response::new(self.connections(r).instrument(span).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_proto::v1::{ClientConnection, Subscription};

    fn t(n: &str) -> Target {
        Target {
            broker_name: n.into(),
            member: format!("{n}-0"),
            node: "n".into(),
        }
    }

    #[test]
    fn connections_merge_by_client() {
        let conn = |id: &str| ClientConnection {
            client_id: id.into(),
            language: "RUST".into(),
            ..Default::default()
        };
        let sub = Subscription {
            topic: "T".into(),
            expression: "*".into(),
            expression_type: "TAG".into(),
        };
        let a = ConsumerConnections {
            connections: vec![conn("x"), conn("y")],
            subscriptions: vec![sub.clone()],
            message_model: "CLUSTERING".into(),
            ..Default::default()
        };
        let b = ConsumerConnections {
            connections: vec![conn("x")],
            subscriptions: vec![sub],
            ..Default::default()
        };
        let m = merge_connections("g", vec![(t("c-0"), a), (t("c-1"), b)]);
        assert_eq!(m.connections.len(), 2);
        assert_eq!(m.connections[0].broker_names, ["c-0", "c-1"]);
        assert_eq!(m.subscriptions.len(), 1);
        assert_eq!(m.message_model, "CLUSTERING");
    }

    #[test]
    fn group_fields_are_checked_with_paths() {
        let mut v = Violations::default();
        group_fields(
            &mut v,
            &ConsumerGroup {
                name: "bad name".into(),
                retry_queue_nums: 65,
                retry_max_times: 99,
                broker_id: -1,
                ..Default::default()
            },
        );
        let fields: Vec<_> = v.0.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "group.name",
                "group.retry_queue_nums",
                "group.retry_max_times",
                "group.broker_id"
            ]
        );
        assert_eq!(for_broker(&ConsumerGroup::default()).retry_queue_nums, 1);
    }

    #[test]
    fn missing_group_is_not_found_unless_someone_was_silent() {
        let lists = vec![(
            t("c-0"),
            TopicList {
                topics: vec![],
                groups: vec![ConsumerGroup {
                    name: "g".into(),
                    ..Default::default()
                }],
            },
        )];
        assert_eq!(merged(&holders(&lists, "g")).unwrap().groups, ["c-0"]);
        assert_eq!(not_found("c", "h", vec![]).code(), "GROUP_NOT_FOUND");
        let f = vec![t("c-1").failure("COMMAND_TIMEOUT", "x")];
        assert_eq!(not_found("c", "h", f).code(), "BROKERS_UNAVAILABLE");
    }
}

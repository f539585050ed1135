//! Command actions executed against a local instance over the remoting admin protocol.
//!
//! The control plane's imperative steps (topic and group management, progress and stats
//! queries, metadata export/import for scaling and migration, offset resets, online config
//! updates) reach a broker through its node's agent, which speaks RocketMQ's admin codes to it
//! on loopback. This module maps each `Command` action to those calls and their answers back
//! to the protobuf results; idempotency and fencing live in [`crate::journal`] and
//! [`crate::epoch`].

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_proto::agent::v1::{
    CommandError, MetadataExport, ResetOffsetResult, TopicList, command, command_result,
};
use flotilla_proto::v1::{
    ClientConnection, ConsumerConnections, ConsumerGroup, GroupProgress, QueueProgress, QueueStats,
    RouteBroker, RouteQueues, Subscription, TopicRoute, TopicStats,
};
use flotilla_remoting::protocol::{
    ConsumeStats, ConsumerConnection, ResetOffsetBody, SubscriptionGroupConfig,
    TopicConfigSerializeWrapper, TopicRouteData, TopicStatsTable, decode_body, encode_body,
};
use flotilla_remoting::{RemotingClient, RemotingCommand, request_code, response_code};
use serde_json::Value;

/// google.rpc.Code values used in command errors.
mod rpc_code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const FAILED_PRECONDITION: i32 = 9;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

/// A command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandFailure {
    /// The instance could not be reached (retryable; not journaled).
    #[error("instance unreachable: {0}")]
    Unreachable(String),
    /// The broker answered with an error code.
    #[error("broker refused: code {code} ({remark})")]
    Broker {
        /// RocketMQ response code.
        code: i32,
        /// Remark.
        remark: String,
    },
    /// The broker's answer could not be decoded.
    #[error("unexpected answer: {0}")]
    BadResponse(String),
    /// The topic does not exist on the instance.
    #[error("topic {0} not found")]
    TopicNotFound(String),
    /// The command is malformed (no action, bad field).
    #[error("invalid command: {0}")]
    Invalid(String),
    /// The action is not supported by this agent.
    #[error("action {0} is not implemented")]
    Unimplemented(&'static str),
    /// A DLedger action reached a member that is not the group's leader: the control plane
    /// retries on the node of `leader` (empty while an election runs). Not journaled — the
    /// answer depends on the moment, a repeat asks again.
    #[error("this instance is not the DLedger leader (leader: {})", if leader.is_empty() { "unknown" } else { leader.as_str() })]
    NotLeader {
        /// `dLegerLeader` of the instance's runtime info (a DLedger self id), if known.
        leader: String,
    },
    /// A DLedger action reached an instance that does not run in DLedger mode.
    #[error("the instance does not run in DLedger mode (enableDLegerCommitLog=false)")]
    NotDLedger,
}

impl CommandFailure {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "INSTANCE_UNREACHABLE",
            Self::Broker { .. } => "BROKER_ERROR",
            Self::BadResponse(_) => "BAD_BROKER_RESPONSE",
            Self::TopicNotFound(_) => "TOPIC_NOT_FOUND",
            Self::Invalid(_) => "INVALID_COMMAND",
            Self::Unimplemented(_) => "UNIMPLEMENTED",
            Self::NotLeader { .. } => "NOT_LEADER",
            Self::NotDLedger => "NOT_DLEDGER",
        }
    }

    /// Whether the outcome is final and goes into the journal (transport failures are not:
    /// a repeat should try again).
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Unreachable(_) | Self::NotLeader { .. })
    }

    /// The protobuf error.
    pub fn to_proto(&self) -> CommandError {
        let code = match self {
            Self::Unreachable(_) => rpc_code::UNAVAILABLE,
            Self::Broker { .. } => rpc_code::FAILED_PRECONDITION,
            Self::BadResponse(_) => rpc_code::INTERNAL,
            Self::TopicNotFound(_) => rpc_code::NOT_FOUND,
            Self::Invalid(_) => rpc_code::INVALID_ARGUMENT,
            Self::Unimplemented(_) => rpc_code::UNIMPLEMENTED,
            Self::NotLeader { .. } | Self::NotDLedger => rpc_code::FAILED_PRECONDITION,
        };
        CommandError {
            code,
            reason: self.code().to_string(),
            message: self.to_string(),
        }
    }
}

/// Timeout of one admin call.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

async fn invoke(
    client: &RemotingClient,
    addr: &str,
    cmd: RemotingCommand,
) -> Result<RemotingCommand, CommandFailure> {
    let resp = client
        .invoke(addr, cmd, ADMIN_TIMEOUT)
        .await
        .map_err(|e| CommandFailure::Unreachable(e.to_string()))?;
    if resp.code != response_code::SUCCESS {
        if resp.code == response_code::TOPIC_NOT_EXIST {
            return Err(CommandFailure::TopicNotFound(
                resp.remark.unwrap_or_default(),
            ));
        }
        return Err(CommandFailure::Broker {
            code: resp.code,
            remark: resp.remark.unwrap_or_default(),
        });
    }
    Ok(resp)
}

fn bad<E: std::fmt::Display>(e: E) -> CommandFailure {
    CommandFailure::BadResponse(e.to_string())
}

/// Fields of a topic to create or update.
struct TopicSpec<'a> {
    name: &'a str,
    read: u32,
    write: u32,
    perm: u32,
    order: bool,
    attributes: BTreeMap<String, String>,
}

async fn create_topic(
    client: &RemotingClient,
    addr: &str,
    t: &TopicSpec<'_>,
) -> Result<(), CommandFailure> {
    if t.name.is_empty() {
        return Err(CommandFailure::Invalid("topic name is empty".into()));
    }
    let mut cmd = RemotingCommand::request(request_code::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", t.name)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", t.read.max(1))
        .with_ext("writeQueueNums", t.write.max(1))
        .with_ext("perm", if t.perm == 0 { 6 } else { t.perm })
        .with_ext("topicFilterType", "SINGLE_TAG")
        .with_ext("topicSysFlag", 0)
        .with_ext("order", t.order);
    if !t.attributes.is_empty() {
        let attrs: Vec<String> = t
            .attributes
            .iter()
            .map(|(k, v)| format!("+{k}={v}"))
            .collect();
        cmd.put_ext("attributes", attrs.join(","));
    }
    invoke(client, addr, cmd).await.map(|_| ())
}

async fn all_topics(
    client: &RemotingClient,
    addr: &str,
) -> Result<(TopicConfigSerializeWrapper, String), CommandFailure> {
    let resp = invoke(
        client,
        addr,
        RemotingCommand::request(request_code::GET_ALL_TOPIC_CONFIG),
    )
    .await?;
    let w: TopicConfigSerializeWrapper = decode_body(&resp.body).map_err(bad)?;
    Ok((w, to_standard_json(&resp.body)?))
}

async fn all_groups(
    client: &RemotingClient,
    addr: &str,
) -> Result<(BTreeMap<String, SubscriptionGroupConfig>, String), CommandFailure> {
    let resp = invoke(
        client,
        addr,
        RemotingCommand::request(request_code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
    )
    .await?;
    let v: Value = decode_body(&resp.body).map_err(bad)?;
    let groups = parse_groups(&v)?;
    Ok((groups, v.to_string()))
}

fn parse_groups(v: &Value) -> Result<BTreeMap<String, SubscriptionGroupConfig>, CommandFailure> {
    let mut out = BTreeMap::new();
    if let Some(table) = v.get("subscriptionGroupTable").and_then(Value::as_object) {
        for (name, cfg) in table {
            let g: SubscriptionGroupConfig = serde_json::from_value(cfg.clone()).map_err(bad)?;
            out.insert(name.clone(), g);
        }
    }
    Ok(out)
}

fn to_standard_json(body: &[u8]) -> Result<String, CommandFailure> {
    if body.is_empty() {
        return Ok("{}".to_string());
    }
    let v: Value = decode_body(body).map_err(bad)?;
    Ok(v.to_string())
}

fn is_system_topic(name: &str) -> bool {
    name == "TBW102"
        || name.starts_with("rmq_sys_")
        || name.starts_with("%RETRY%")
        || name.starts_with("%DLQ%")
        || name == "SELF_TEST_TOPIC"
        || name == "OFFSET_MOVED_EVENT"
        || name == "SCHEDULE_TOPIC_XXXX"
        || name == "RMQ_SYS_TRANS_HALF_TOPIC"
        || name == "RMQ_SYS_TRACE_TOPIC"
}

fn ts(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    })
}

fn group_to_proto(g: &SubscriptionGroupConfig) -> ConsumerGroup {
    ConsumerGroup {
        name: g.group_name.clone(),
        consume_enable: g.consume_enable,
        consume_broadcast_enable: g.consume_broadcast_enable,
        consume_from_min_enable: g.consume_from_min_enable,
        consume_message_orderly: g.consume_message_orderly,
        retry_queue_nums: u32::try_from(g.retry_queue_nums).unwrap_or(1),
        retry_max_times: u32::try_from(g.retry_max_times).unwrap_or(16),
        broker_id: g.broker_id,
        which_broker_when_consume_slowly: g.which_broker_when_consume_slowly,
        groups: Vec::new(),
    }
}

fn group_from_proto(g: &ConsumerGroup) -> SubscriptionGroupConfig {
    SubscriptionGroupConfig {
        group_name: g.name.clone(),
        consume_enable: g.consume_enable,
        consume_broadcast_enable: g.consume_broadcast_enable,
        consume_from_min_enable: g.consume_from_min_enable,
        consume_message_orderly: g.consume_message_orderly,
        retry_queue_nums: i32::try_from(g.retry_queue_nums.max(1)).unwrap_or(1),
        retry_max_times: i32::try_from(g.retry_max_times).unwrap_or(16),
        broker_id: g.broker_id,
        which_broker_when_consume_slowly: g.which_broker_when_consume_slowly,
        ..SubscriptionGroupConfig::default()
    }
}

async fn create_group(
    client: &RemotingClient,
    addr: &str,
    g: &SubscriptionGroupConfig,
) -> Result<(), CommandFailure> {
    if g.group_name.is_empty() {
        return Err(CommandFailure::Invalid("group name is empty".into()));
    }
    let body = encode_body(g).map_err(bad)?;
    let cmd =
        RemotingCommand::request(request_code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(body);
    invoke(client, addr, cmd).await.map(|_| ())
}

/// Sends UPDATE_BROKER_CONFIG with `kv`.
pub async fn update_broker_config(
    client: &RemotingClient,
    addr: &str,
    kv: &BTreeMap<String, String>,
) -> Result<(), CommandFailure> {
    if kv.is_empty() {
        return Err(CommandFailure::Invalid("no config keys".into()));
    }
    let body = crate::online::properties_body(kv);
    let cmd =
        RemotingCommand::request(request_code::UPDATE_BROKER_CONFIG).with_body(body.into_bytes());
    invoke(client, addr, cmd).await.map(|_| ())
}

/// Name of an action, for spans and errors.
pub fn action_name(a: &command::Action) -> &'static str {
    use command::Action as A;
    match a {
        A::UpdateNameservers(_) => "update_nameservers",
        A::CreateTopic(_) => "create_topic",
        A::UpdateTopicPerm(_) => "update_topic_perm",
        A::DeleteTopic(_) => "delete_topic",
        A::CreateGroup(_) => "create_group",
        A::DeleteGroup(_) => "delete_group",
        A::GetGroupProgress(_) => "get_group_progress",
        A::ExportMetadata(_) => "export_metadata",
        A::ImportMetadata(_) => "import_metadata",
        A::ResetOffset(_) => "reset_offset",
        A::GetTopicStats(_) => "get_topic_stats",
        A::QueryMessages(_) => "query_messages",
        A::ListTopics(_) => "list_topics",
        A::UpdateBrokerConfig(_) => "update_broker_config",
        A::TransferLeadership(_) => "transfer_leadership",
        A::GetTopicRoute(_) => "get_topic_route",
        A::GetConsumerConnections(_) => "get_consumer_connections",
        A::GetProducerConnections(_) => "get_producer_connections",
        A::ListMessages(_) => "list_messages",
        A::SendMessage(_) => "send_message",
    }
}

/// Whether `action` only reads. Reads are not journaled: they are asked with fresh ids (a
/// dashboard polling lag, a workflow waiting for a drain), and journaling them would push the
/// ids of the steps that change something out of the bounded journal, so a resumed step could
/// apply twice.
pub fn is_read_only(a: &command::Action) -> bool {
    use command::Action as A;
    matches!(
        a,
        A::GetGroupProgress(_)
            | A::GetTopicStats(_)
            | A::QueryMessages(_)
            | A::ListTopics(_)
            | A::GetTopicRoute(_)
            | A::GetConsumerConnections(_)
            | A::GetProducerConnections(_)
            | A::ListMessages(_)
    )
}

/// Executes `action` against the instance at `addr`. Returns the typed result, if the action
/// has one.
pub async fn execute(
    client: &RemotingClient,
    addr: &str,
    action: &command::Action,
) -> Result<Option<command_result::Result>, CommandFailure> {
    use command::Action as A;
    match action {
        A::UpdateNameservers(u) => {
            if u.namesrv_addr.trim().is_empty() {
                return Err(CommandFailure::Invalid("namesrv_addr is empty".into()));
            }
            let kv = BTreeMap::from([("namesrvAddr".to_string(), u.namesrv_addr.clone())]);
            update_broker_config(client, addr, &kv).await?;
            Ok(None)
        }
        A::UpdateBrokerConfig(u) => {
            let kv: BTreeMap<String, String> = u
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            update_broker_config(client, addr, &kv).await?;
            Ok(None)
        }
        A::CreateTopic(t) => {
            let spec = TopicSpec {
                name: &t.name,
                read: t.read_queue_nums,
                write: t.write_queue_nums,
                perm: t.perm,
                order: t.order,
                attributes: t
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            };
            create_topic(client, addr, &spec).await?;
            Ok(None)
        }
        A::UpdateTopicPerm(p) => {
            let (w, _) = all_topics(client, addr).await?;
            let tc = w
                .topic_config_table
                .get(&p.topic)
                .ok_or_else(|| CommandFailure::TopicNotFound(p.topic.clone()))?;
            let spec = TopicSpec {
                name: &p.topic,
                read: u32::try_from(tc.read_queue_nums).unwrap_or(1),
                write: u32::try_from(tc.write_queue_nums).unwrap_or(1),
                perm: p.perm,
                order: tc.order,
                attributes: BTreeMap::new(),
            };
            create_topic(client, addr, &spec).await?;
            Ok(None)
        }
        A::DeleteTopic(d) => {
            let code = if d.in_namesrv {
                request_code::DELETE_TOPIC_IN_NAMESRV
            } else {
                request_code::DELETE_TOPIC_IN_BROKER
            };
            let cmd = RemotingCommand::request(code).with_ext("topic", &d.topic);
            invoke(client, addr, cmd).await?;
            Ok(None)
        }
        A::CreateGroup(g) => {
            create_group(client, addr, &group_from_proto(g)).await?;
            Ok(None)
        }
        A::DeleteGroup(d) => {
            let cmd = RemotingCommand::request(request_code::DELETE_SUBSCRIPTIONGROUP)
                .with_ext("groupName", &d.group)
                .with_ext("cleanOffset", true);
            invoke(client, addr, cmd).await?;
            Ok(None)
        }
        A::GetGroupProgress(g) => {
            let mut cmd = RemotingCommand::request(request_code::GET_CONSUME_STATS)
                .with_ext("consumerGroup", &g.group);
            if !g.topic.is_empty() {
                cmd.put_ext("topic", &g.topic);
            }
            let resp = invoke(client, addr, cmd).await?;
            let stats: ConsumeStats = decode_body(&resp.body).map_err(bad)?;
            let queues: Vec<QueueProgress> = stats
                .offset_table
                .iter()
                .map(|(mq, o)| QueueProgress {
                    topic: mq.topic.clone(),
                    broker_name: mq.broker_name.clone(),
                    queue_id: mq.queue_id,
                    broker_offset: o.broker_offset,
                    consumer_offset: o.consumer_offset,
                    lag: (o.broker_offset - o.consumer_offset).max(0),
                    last_timestamp: ts(o.last_timestamp),
                })
                .collect();
            Ok(Some(command_result::Result::GroupProgress(GroupProgress {
                group: g.group.clone(),
                total_lag: queues.iter().map(|q| q.lag).sum(),
                queues,
                consume_tps: stats.consume_tps,
                failures: Vec::new(),
            })))
        }
        A::GetTopicStats(t) => {
            let cmd = RemotingCommand::request(request_code::GET_TOPIC_STATS_INFO)
                .with_ext("topic", &t.topic);
            let resp = invoke(client, addr, cmd).await?;
            let stats: TopicStatsTable = decode_body(&resp.body).map_err(bad)?;
            let queues: Vec<QueueStats> = stats
                .offset_table
                .iter()
                .map(|(mq, o)| QueueStats {
                    broker_name: mq.broker_name.clone(),
                    queue_id: mq.queue_id,
                    min_offset: o.min_offset,
                    max_offset: o.max_offset,
                    last_update_time: ts(o.last_update_timestamp),
                })
                .collect();
            Ok(Some(command_result::Result::TopicStats(TopicStats {
                topic: t.topic.clone(),
                total_messages: queues.iter().map(|q| q.max_offset - q.min_offset).sum(),
                queues,
                failures: Vec::new(),
            })))
        }
        A::ExportMetadata(_) => {
            let (_, topics_json) = all_topics(client, addr).await?;
            let (_, groups_json) = all_groups(client, addr).await?;
            let resp = invoke(
                client,
                addr,
                RemotingCommand::request(request_code::GET_ALL_CONSUMER_OFFSET),
            )
            .await?;
            Ok(Some(command_result::Result::Metadata(MetadataExport {
                topics_json,
                subscription_groups_json: groups_json,
                consumer_offsets_json: to_standard_json(&resp.body)?,
            })))
        }
        A::ImportMetadata(m) => {
            import(client, addr, m).await?;
            Ok(None)
        }
        A::ResetOffset(r) => {
            use flotilla_proto::agent::v1::reset_offset::Target;
            let (timestamp, offset) = match r.target {
                Some(Target::TimestampMs(t)) => (t, -1),
                Some(Target::Offset(o)) => (0, o),
                None => return Err(CommandFailure::Invalid("reset target missing".into())),
            };
            let cmd = RemotingCommand::request(request_code::INVOKE_BROKER_TO_RESET_OFFSET)
                .with_ext("topic", &r.topic)
                .with_ext("group", &r.group)
                .with_ext("timestamp", timestamp)
                .with_ext("isForce", true)
                .with_ext("queueId", -1)
                .with_ext("offset", offset);
            let resp = invoke(client, addr, cmd).await?;
            let body: ResetOffsetBody = if resp.body.is_empty() {
                ResetOffsetBody::default()
            } else {
                decode_body(&resp.body).map_err(bad)?
            };
            let queues = body
                .offset_table
                .iter()
                .map(|(mq, off)| QueueProgress {
                    topic: mq.topic.clone(),
                    broker_name: mq.broker_name.clone(),
                    queue_id: mq.queue_id,
                    consumer_offset: *off,
                    ..QueueProgress::default()
                })
                .collect();
            Ok(Some(command_result::Result::ResetOffset(
                ResetOffsetResult { queues },
            )))
        }
        A::ListTopics(_) => {
            let (w, _) = all_topics(client, addr).await?;
            let (groups, _) = all_groups(client, addr).await?;
            let topics = w
                .topic_config_table
                .values()
                .map(|t| flotilla_proto::v1::Topic {
                    name: t.topic_name.clone(),
                    read_queue_nums: u32::try_from(t.read_queue_nums).unwrap_or(0),
                    write_queue_nums: u32::try_from(t.write_queue_nums).unwrap_or(0),
                    perm: u32::try_from(t.perm).unwrap_or(0),
                    order: t.order,
                    attributes: t.attributes.clone().into_iter().collect(),
                    groups: Vec::new(),
                })
                .collect();
            Ok(Some(command_result::Result::Topics(TopicList {
                topics,
                groups: groups.values().map(group_to_proto).collect(),
            })))
        }
        A::QueryMessages(q) => query_messages(client, addr, q).await,
        A::TransferLeadership(t) => {
            transfer_leadership(client, addr, &t.target_self_id).await?;
            Ok(None)
        }
        A::GetTopicRoute(t) => {
            if t.topic.is_empty() {
                return Err(CommandFailure::Invalid("topic name is empty".into()));
            }
            let cmd = RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC)
                .with_ext("topic", &t.topic)
                .with_ext("acceptStandardJsonOnly", true);
            let resp = invoke(client, addr, cmd).await?;
            let route: TopicRouteData = decode_body(&resp.body).map_err(bad)?;
            Ok(Some(command_result::Result::TopicRoute(route_to_proto(
                &t.topic, &route,
            ))))
        }
        A::GetConsumerConnections(g) => {
            if g.group.is_empty() {
                return Err(CommandFailure::Invalid("group name is empty".into()));
            }
            let cmd = RemotingCommand::request(request_code::GET_CONSUMER_CONNECTION_LIST)
                .with_ext("consumerGroup", &g.group);
            let resp = client
                .invoke(addr, cmd, ADMIN_TIMEOUT)
                .await
                .map_err(|e| CommandFailure::Unreachable(e.to_string()))?;
            let conns = match resp.code {
                response_code::SUCCESS => {
                    let c: ConsumerConnection = decode_body(&resp.body).map_err(bad)?;
                    connections_to_proto(&g.group, &c)
                }
                // No consumer of the group is connected to this broker: an empty answer.
                response_code::CONSUMER_NOT_ONLINE => ConsumerConnections {
                    group: g.group.clone(),
                    ..ConsumerConnections::default()
                },
                code => {
                    return Err(CommandFailure::Broker {
                        code,
                        remark: resp.remark.unwrap_or_default(),
                    });
                }
            };
            Ok(Some(command_result::Result::ConsumerConnections(conns)))
        }
        A::GetProducerConnections(g) => producer_connections(client, addr, &g.group).await,
        A::ListMessages(q) => list_messages(client, addr, q).await,
        A::SendMessage(m) => send_message(client, addr, m).await,
    }
}

/// Reply body of GET_PRODUCER_CONNECTION_LIST (RocketMQ `ProducerConnection`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ProducerConnectionBody {
    connection_set: Vec<flotilla_remoting::protocol::Connection>,
}

/// GET_PRODUCER_CONNECTION_LIST. A broker answers SYSTEM_ERROR ("the producer group[g] not
/// exist") for a group with no connection, as Java's does: that is an empty answer here.
async fn producer_connections(
    client: &RemotingClient,
    addr: &str,
    group: &str,
) -> Result<Option<command_result::Result>, CommandFailure> {
    if group.is_empty() {
        return Err(CommandFailure::Invalid("group name is empty".into()));
    }
    let cmd = RemotingCommand::request(request_code::GET_PRODUCER_CONNECTION_LIST)
        .with_ext("producerGroup", group);
    let resp = client
        .invoke(addr, cmd, ADMIN_TIMEOUT)
        .await
        .map_err(|e| CommandFailure::Unreachable(e.to_string()))?;
    let body = match resp.code {
        response_code::SUCCESS => decode_body(&resp.body).map_err(bad)?,
        response_code::SYSTEM_ERROR
            if resp
                .remark
                .as_deref()
                .is_some_and(|r| r.contains("not exist")) =>
        {
            ProducerConnectionBody::default()
        }
        code => {
            return Err(CommandFailure::Broker {
                code,
                remark: resp.remark.unwrap_or_default(),
            });
        }
    };
    Ok(Some(command_result::Result::ProducerConnections(
        producer_connections_to_proto(group, &body),
    )))
}

fn producer_connections_to_proto(
    group: &str,
    body: &ProducerConnectionBody,
) -> flotilla_proto::v1::ProducerConnections {
    flotilla_proto::v1::ProducerConnections {
        group: group.to_string(),
        connections: body
            .connection_set
            .iter()
            .map(|x| ClientConnection {
                client_id: x.client_id.clone(),
                client_address: x.client_addr.clone(),
                language: x.language.clone(),
                version: x.version,
                broker_names: Vec::new(),
            })
            .collect(),
        failures: Vec::new(),
    }
}

/// The group pulls for browsing are made as (RocketMQ's tools group; nothing is committed).
pub const BROWSE_GROUP: &str = "TOOLS_CONSUMER";
/// Most messages one browse answers.
pub const MAX_BROWSE: usize = 1000;
/// Most pulls one queue gets in one browse (a bound on the loop, far above what
/// `MAX_BROWSE` messages need).
const MAX_PULLS_PER_QUEUE: usize = 2 * MAX_BROWSE;

/// The offset range to read in one queue: `[from, to)` from the request and the queue's
/// min/max (`search` = the first offset stored at or after `begin_ms`, when asked).
pub fn browse_range(
    q: &flotilla_proto::agent::v1::ListMessages,
    min: i64,
    max: i64,
    search: Option<i64>,
) -> (i64, i64) {
    let mut from = q.begin_offset.max(min);
    if let Some(s) = search {
        from = from.max(s);
    }
    let to = if q.end_offset > 0 {
        q.end_offset.min(max)
    } else {
        max
    };
    (from, to)
}

/// Lists a topic's messages on this broker (see `ListMessages` in the agent protocol):
/// queue offsets from GET_TOPIC_STATS_INFO, the start of a time range from
/// SEARCH_OFFSET_BY_TIMESTAMP, then PULL_MESSAGE without committing anything.
async fn list_messages(
    client: &RemotingClient,
    addr: &str,
    q: &flotilla_proto::agent::v1::ListMessages,
) -> Result<Option<command_result::Result>, CommandFailure> {
    use flotilla_message_store::codec;
    if q.topic.is_empty() {
        return Err(CommandFailure::Invalid("topic name is empty".into()));
    }
    let max = usize::try_from(q.max).unwrap_or(0).clamp(1, MAX_BROWSE);
    let cmd =
        RemotingCommand::request(request_code::GET_TOPIC_STATS_INFO).with_ext("topic", &q.topic);
    let stats: TopicStatsTable =
        decode_body(&invoke(client, addr, cmd).await?.body).map_err(bad)?;
    let mut queues: Vec<(i32, i64, i64)> = stats
        .offset_table
        .iter()
        .filter(|(mq, _)| q.queue_id.is_none_or(|id| id == mq.queue_id))
        .map(|(mq, o)| (mq.queue_id, o.min_offset, o.max_offset))
        .collect();
    queues.sort_unstable();
    queues.dedup_by_key(|x| x.0);
    let mut out = Vec::new();
    for (qid, min, max_offset) in queues {
        let search = if q.begin_ms > 0 {
            let cmd = RemotingCommand::request(request_code::SEARCH_OFFSET_BY_TIMESTAMP)
                .with_ext("topic", &q.topic)
                .with_ext("queueId", qid)
                .with_ext("timestamp", q.begin_ms);
            let resp = invoke(client, addr, cmd).await?;
            resp.ext("offset").and_then(|v| v.parse::<i64>().ok())
        } else {
            None
        };
        let (mut from, to) = browse_range(q, min, max_offset, search);
        'queue: for _ in 0..MAX_PULLS_PER_QUEUE {
            if from >= to || out.len() >= max {
                break;
            }
            let want = (to - from)
                .min(32)
                .min(i64::try_from(max - out.len()).unwrap_or(32));
            let cmd = RemotingCommand::request(request_code::PULL_MESSAGE)
                .with_ext("consumerGroup", BROWSE_GROUP)
                .with_ext("topic", &q.topic)
                .with_ext("queueId", qid)
                .with_ext("queueOffset", from)
                .with_ext("maxMsgNums", want)
                // PullSysFlag: the request carries its subscription (`*`); no commit, no hold.
                .with_ext("sysFlag", 4)
                .with_ext("commitOffset", 0)
                .with_ext("suspendTimeoutMillis", 0)
                .with_ext("subscription", "*")
                .with_ext("subVersion", 0)
                .with_ext("expressionType", "TAG");
            let resp = client
                .invoke(addr, cmd, ADMIN_TIMEOUT)
                .await
                .map_err(|e| CommandFailure::Unreachable(e.to_string()))?;
            let next = resp
                .ext("nextBeginOffset")
                .and_then(|v| v.parse::<i64>().ok());
            match resp.code {
                response_code::SUCCESS => {
                    let records = codec::decode_all(&resp.body, false).map_err(bad)?;
                    if records.is_empty() {
                        break;
                    }
                    for r in &records {
                        if r.queue_offset >= to || out.len() >= max {
                            break 'queue;
                        }
                        if q.end_ms > 0 && r.store_timestamp > q.end_ms {
                            break 'queue;
                        }
                        out.push(message_to_proto(r));
                    }
                    let last = records.last().map_or(from, |r| r.queue_offset + 1);
                    from = next.filter(|n| *n > from).unwrap_or(last);
                }
                response_code::PULL_RETRY_IMMEDIATELY | response_code::PULL_OFFSET_MOVED => {
                    match next.filter(|n| *n > from) {
                        Some(n) => from = n,
                        None => break,
                    }
                }
                response_code::PULL_NOT_FOUND => break,
                code => {
                    return Err(CommandFailure::Broker {
                        code,
                        remark: resp.remark.unwrap_or_default(),
                    });
                }
            }
        }
        if out.len() >= max {
            break;
        }
    }
    Ok(Some(command_result::Result::Messages(
        flotilla_proto::agent::v1::QueryMessagesResult { messages: out },
    )))
}

/// SEND_MESSAGE of one message to this broker (the broker picks the queue).
async fn send_message(
    client: &RemotingClient,
    addr: &str,
    m: &flotilla_proto::agent::v1::SendMessage,
) -> Result<Option<command_result::Result>, CommandFailure> {
    use flotilla_message_store::codec;
    if m.topic.is_empty() {
        return Err(CommandFailure::Invalid("topic name is empty".into()));
    }
    let props: BTreeMap<String, String> = m
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let born = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    let group = if m.producer_group.is_empty() {
        "CLIENT_INNER_PRODUCER"
    } else {
        &m.producer_group
    };
    let cmd = RemotingCommand::request(request_code::SEND_MESSAGE)
        .with_ext("producerGroup", group)
        .with_ext("topic", &m.topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("defaultTopicQueueNums", 4)
        .with_ext("queueId", -1)
        .with_ext("sysFlag", 0)
        .with_ext("bornTimestamp", born)
        .with_ext("flag", m.flag)
        .with_ext("properties", codec::encode_properties(&props))
        .with_ext("reconsumeTimes", 0)
        .with_ext("unitMode", false)
        .with_ext("batch", false)
        .with_body(m.body.clone());
    let resp = invoke(client, addr, cmd).await?;
    let num = |k: &str| {
        resp.ext(k)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(-1)
    };
    Ok(Some(command_result::Result::Sent(
        flotilla_proto::agent::v1::SendMessageResult {
            message_id: resp.ext("msgId").unwrap_or("").to_string(),
            queue_id: i32::try_from(num("queueId")).unwrap_or(-1),
            queue_offset: num("queueOffset"),
        },
    )))
}

/// A stored record as the API's `Message`.
pub fn message_to_proto(
    r: &flotilla_message_store::codec::DecodedRecord<'_>,
) -> flotilla_proto::v1::Message {
    use flotilla_message_store::codec;
    let props = codec::decode_properties(r.properties);
    let split_keys = props
        .get("KEYS")
        .map(|k| {
            k.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    flotilla_proto::v1::Message {
        message_id: codec::message_id(&r.store_host, r.phys_offset),
        unique_key: props.get("UNIQ_KEY").cloned().unwrap_or_default(),
        topic: r.topic.to_string(),
        tags: props.get("TAGS").cloned().unwrap_or_default(),
        keys: split_keys,
        broker_name: String::new(),
        queue_id: r.queue_id,
        queue_offset: r.queue_offset,
        commit_log_offset: r.phys_offset,
        body: r.body.to_vec(),
        properties: props.into_iter().collect(),
        born_time: ts(r.born_timestamp),
        store_time: ts(r.store_timestamp),
        born_host: r.born_host.to_string(),
        store_host: r.store_host.to_string(),
        reconsume_times: r.reconsume_times,
        body_crc: u32::from_ne_bytes(r.body_crc.to_ne_bytes()),
    }
}

/// QUERY_MESSAGE (by key or unique key) or VIEW_MESSAGE_BY_ID (by offset message id); no
/// match is an empty list.
async fn query_messages(
    client: &RemotingClient,
    addr: &str,
    q: &flotilla_proto::agent::v1::QueryMessages,
) -> Result<Option<command_result::Result>, CommandFailure> {
    use flotilla_message_store::codec;
    let found = |messages| {
        Ok(Some(command_result::Result::Messages(
            flotilla_proto::agent::v1::QueryMessagesResult { messages },
        )))
    };
    if !q.message_id.is_empty() {
        let (_, offset) = codec::decode_message_id(&q.message_id).ok_or_else(|| {
            CommandFailure::Invalid(format!("{} is not an offset message id", q.message_id))
        })?;
        let cmd =
            RemotingCommand::request(request_code::VIEW_MESSAGE_BY_ID).with_ext("offset", offset);
        let resp = client
            .invoke(addr, cmd, ADMIN_TIMEOUT)
            .await
            .map_err(|e| CommandFailure::Unreachable(e.to_string()))?;
        if resp.code != response_code::SUCCESS {
            return found(Vec::new());
        }
        let r = codec::decode_record(&resp.body, false).map_err(bad)?;
        if !q.topic.is_empty() && r.topic != q.topic {
            return found(Vec::new());
        }
        return found(vec![message_to_proto(&r)]);
    }
    if q.topic.is_empty() || q.key.is_empty() {
        return Err(CommandFailure::Invalid("topic and key are required".into()));
    }
    let mut cmd = RemotingCommand::request(request_code::QUERY_MESSAGE)
        .with_ext("topic", &q.topic)
        .with_ext("key", &q.key)
        .with_ext("maxNum", q.max.max(1))
        .with_ext("beginTimestamp", q.begin_ms)
        .with_ext(
            "endTimestamp",
            if q.end_ms > 0 { q.end_ms } else { i64::MAX },
        );
    if q.unique_key {
        cmd.put_ext("_UNIQUE_KEY_QUERY", "true");
    }
    let resp = client
        .invoke(addr, cmd, ADMIN_TIMEOUT)
        .await
        .map_err(|e| CommandFailure::Unreachable(e.to_string()))?;
    match resp.code {
        response_code::SUCCESS => {
            let records = codec::decode_all(&resp.body, false).map_err(bad)?;
            found(records.iter().map(message_to_proto).collect())
        }
        response_code::QUERY_NOT_FOUND => found(Vec::new()),
        code => Err(CommandFailure::Broker {
            code,
            remark: resp.remark.unwrap_or_default(),
        }),
    }
}

/// A nameserver's route data as the API's `TopicRoute` (sorted by brokerName).
fn route_to_proto(topic: &str, r: &TopicRouteData) -> TopicRoute {
    let mut queues: Vec<RouteQueues> = r
        .queue_datas
        .iter()
        .map(|q| RouteQueues {
            broker_name: q.broker_name.clone(),
            read_queue_nums: u32::try_from(q.read_queue_nums).unwrap_or(0),
            write_queue_nums: u32::try_from(q.write_queue_nums).unwrap_or(0),
            perm: u32::try_from(q.perm).unwrap_or(0),
        })
        .collect();
    queues.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    let mut brokers: Vec<RouteBroker> = r
        .broker_datas
        .iter()
        .map(|b| RouteBroker {
            broker_name: b.broker_name.clone(),
            cluster: b.cluster.clone(),
            addresses: b
                .broker_addrs
                .iter()
                .map(|(id, a)| (*id, a.clone()))
                .collect(),
        })
        .collect();
    brokers.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    TopicRoute {
        topic: topic.to_string(),
        queues,
        brokers,
        nameserver: String::new(),
    }
}

/// A broker's consumer connection list as the API's `ConsumerConnections`.
fn connections_to_proto(group: &str, c: &ConsumerConnection) -> ConsumerConnections {
    ConsumerConnections {
        group: group.to_string(),
        connections: c
            .connection_set
            .iter()
            .map(|x| ClientConnection {
                client_id: x.client_id.clone(),
                client_address: x.client_addr.clone(),
                language: x.language.clone(),
                version: x.version,
                broker_names: Vec::new(),
            })
            .collect(),
        subscriptions: c
            .subscription_table
            .values()
            .map(|s| Subscription {
                topic: s.topic.clone(),
                expression: s.sub_string.clone(),
                expression_type: s.expression_type.clone(),
            })
            .collect(),
        consume_type: c.consume_type.clone(),
        message_model: c.message_model.clone(),
        consume_from_where: c.consume_from_where.clone(),
        failures: Vec::new(),
    }
}

/// How long the broker may take to hand leadership over (`timeoutMillis`).
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do with a transfer request, given the instance's runtime info.
#[derive(Debug, PartialEq, Eq)]
pub enum TransferPlan {
    /// The target already leads: nothing to do.
    AlreadyLeads,
    /// This instance leads: ask it to hand over.
    Transfer,
}

/// Decides a transfer from the instance's runtime info (`dLegerRole`, `dLegerSelfId`,
/// `dLegerLeader`): only the leader can hand over, so any other member answers NOT_LEADER
/// naming the leader it knows.
pub fn plan_transfer(
    info: &BTreeMap<String, String>,
    target: &str,
) -> Result<TransferPlan, CommandFailure> {
    if target.trim().is_empty() {
        return Err(CommandFailure::Invalid("target_self_id is empty".into()));
    }
    let Some(role) = info.get("dLegerRole") else {
        return Err(CommandFailure::NotDLedger);
    };
    let leader = info.get("dLegerLeader").cloned().unwrap_or_default();
    if role != "LEADER" {
        return Err(CommandFailure::NotLeader { leader });
    }
    if info.get("dLegerSelfId").map(String::as_str) == Some(target) {
        return Ok(TransferPlan::AlreadyLeads);
    }
    Ok(TransferPlan::Transfer)
}

/// Maps the broker's answer to FLOTILLA_TRANSFER_LEADERSHIP (`leader`: the leader the
/// instance reports after a refusal).
pub fn transfer_answer(code: i32, remark: &str, leader: &str) -> Result<(), CommandFailure> {
    match code {
        response_code::SUCCESS => Ok(()),
        // Lost leadership between the check and the request.
        response_code::SERVICE_NOT_AVAILABLE => Err(CommandFailure::NotLeader {
            leader: leader.to_string(),
        }),
        response_code::INVALID_PARAMETER => Err(CommandFailure::Invalid(remark.to_string())),
        code => Err(CommandFailure::Broker {
            code,
            remark: remark.to_string(),
        }),
    }
}

async fn runtime_info(
    client: &RemotingClient,
    addr: &str,
) -> Result<BTreeMap<String, String>, CommandFailure> {
    let resp = invoke(
        client,
        addr,
        RemotingCommand::request(request_code::GET_BROKER_RUNTIME_INFO),
    )
    .await?;
    let t: flotilla_remoting::protocol::KVTable = decode_body(&resp.body).map_err(bad)?;
    Ok(t.table.into_iter().collect())
}

/// Hands DLedger leadership to `target` through the local instance, which must lead.
async fn transfer_leadership(
    client: &RemotingClient,
    addr: &str,
    target: &str,
) -> Result<(), CommandFailure> {
    let info = runtime_info(client, addr).await?;
    if plan_transfer(&info, target)? == TransferPlan::AlreadyLeads {
        return Ok(());
    }
    let cmd = RemotingCommand::request(request_code::FLOTILLA_TRANSFER_LEADERSHIP)
        .with_ext("targetSelfId", target)
        .with_ext("timeoutMillis", TRANSFER_TIMEOUT.as_millis());
    let resp = client
        .invoke(addr, cmd, TRANSFER_TIMEOUT + ADMIN_TIMEOUT)
        .await
        .map_err(|e| CommandFailure::Unreachable(e.to_string()))?;
    let leader = if resp.code == response_code::SERVICE_NOT_AVAILABLE {
        runtime_info(client, addr)
            .await
            .ok()
            .and_then(|i| i.get("dLegerLeader").cloned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    transfer_answer(resp.code, resp.remark.as_deref().unwrap_or(""), &leader)
}

/// Creates the topics and subscription groups of an export (system topics skipped).
async fn import(
    client: &RemotingClient,
    addr: &str,
    m: &MetadataExport,
) -> Result<(), CommandFailure> {
    if !m.topics_json.trim().is_empty() {
        let w: TopicConfigSerializeWrapper = decode_body(m.topics_json.as_bytes())
            .map_err(|e| CommandFailure::Invalid(e.to_string()))?;
        for t in w.topic_config_table.values() {
            if is_system_topic(&t.topic_name) {
                continue;
            }
            let spec = TopicSpec {
                name: &t.topic_name,
                read: u32::try_from(t.read_queue_nums).unwrap_or(1),
                write: u32::try_from(t.write_queue_nums).unwrap_or(1),
                perm: u32::try_from(t.perm).unwrap_or(6),
                order: t.order,
                attributes: BTreeMap::new(),
            };
            create_topic(client, addr, &spec).await?;
        }
    }
    if !m.subscription_groups_json.trim().is_empty() {
        let v: Value = decode_body(m.subscription_groups_json.as_bytes())
            .map_err(|e| CommandFailure::Invalid(e.to_string()))?;
        for g in parse_groups(&v)?.values() {
            create_group(client, addr, g).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_skip_the_journal() {
        use command::Action as A;
        assert!(is_read_only(&A::ListTopics(Default::default())));
        assert!(is_read_only(&A::GetGroupProgress(Default::default())));
        assert!(!is_read_only(&A::CreateTopic(Default::default())));
        assert!(!is_read_only(&A::UpdateBrokerConfig(Default::default())));
        // One export per scale-out: journaled, so a retried copy gets the same snapshot.
        assert!(!is_read_only(&A::ExportMetadata(Default::default())));
    }

    #[test]
    fn errors_map_to_rpc_codes() {
        let e = CommandFailure::Unreachable("x".into());
        assert!(!e.is_final());
        assert_eq!(e.to_proto().code, 14);
        let e = CommandFailure::Broker {
            code: 1,
            remark: "no".into(),
        };
        assert!(e.is_final());
        assert_eq!(e.to_proto().reason, "BROKER_ERROR");
        assert!(is_system_topic("%RETRY%g"));
        assert!(!is_system_topic("orders"));
    }

    #[test]
    fn transfer_needs_the_leader() {
        let info = |role: &str, me: &str, leader: &str| {
            BTreeMap::from([
                ("dLegerRole".to_string(), role.to_string()),
                ("dLegerSelfId".to_string(), me.to_string()),
                ("dLegerLeader".to_string(), leader.to_string()),
            ])
        };
        assert_eq!(
            plan_transfer(&info("LEADER", "n0", "n0"), "n1").unwrap(),
            TransferPlan::Transfer
        );
        assert_eq!(
            plan_transfer(&info("LEADER", "n1", "n1"), "n1").unwrap(),
            TransferPlan::AlreadyLeads
        );
        let e = plan_transfer(&info("FOLLOWER", "n2", "n0"), "n1").unwrap_err();
        assert!(matches!(&e, CommandFailure::NotLeader { leader } if leader == "n0"));
        assert_eq!(e.code(), "NOT_LEADER");
        assert!(!e.is_final(), "a repeat asks again");
        let p = e.to_proto();
        assert_eq!((p.code, p.reason.as_str()), (9, "NOT_LEADER"));
        assert!(p.message.contains("n0"), "{}", p.message);
        let e = plan_transfer(&info("CANDIDATE", "n2", ""), "n1").unwrap_err();
        assert!(e.to_string().contains("unknown"), "{e}");
        let e = plan_transfer(&BTreeMap::new(), "n1").unwrap_err();
        assert_eq!(e.code(), "NOT_DLEDGER");
        assert!(e.is_final());
        let e = plan_transfer(&info("LEADER", "n0", "n0"), " ").unwrap_err();
        assert_eq!(e.code(), "INVALID_COMMAND");
    }

    #[test]
    fn transfer_answers_map() {
        assert!(transfer_answer(response_code::SUCCESS, "", "").is_ok());
        let e = transfer_answer(response_code::SERVICE_NOT_AVAILABLE, "x", "n2").unwrap_err();
        assert!(matches!(&e, CommandFailure::NotLeader { leader } if leader == "n2"));
        let e =
            transfer_answer(response_code::INVALID_PARAMETER, "unknown peer n9", "").unwrap_err();
        assert_eq!(e.code(), "INVALID_COMMAND");
        let e = transfer_answer(response_code::SYSTEM_ERROR, "timeout", "").unwrap_err();
        assert_eq!(e.code(), "BROKER_ERROR");
    }

    #[test]
    fn route_and_connections_convert() {
        use flotilla_remoting::protocol::{BrokerData, Connection, QueueData, SubscriptionData};
        let route = TopicRouteData {
            queue_datas: vec![
                QueueData {
                    broker_name: "c-1".into(),
                    read_queue_nums: 4,
                    write_queue_nums: 4,
                    perm: 6,
                    topic_sys_flag: 0,
                },
                QueueData {
                    broker_name: "c-0".into(),
                    read_queue_nums: 8,
                    write_queue_nums: 2,
                    perm: 4,
                    topic_sys_flag: 0,
                },
            ],
            broker_datas: vec![BrokerData {
                cluster: "c".into(),
                broker_name: "c-0".into(),
                broker_addrs: BTreeMap::from([(0, "127.0.0.1:10911".to_string())]),
                ..BrokerData::default()
            }],
            ..TopicRouteData::default()
        };
        let r = route_to_proto("T", &route);
        assert_eq!(r.queues[0].broker_name, "c-0", "sorted by brokerName");
        assert_eq!((r.queues[0].read_queue_nums, r.queues[0].perm), (8, 4));
        assert_eq!(r.brokers[0].addresses[&0], "127.0.0.1:10911");
        let c = ConsumerConnection {
            connection_set: vec![Connection {
                client_id: "id-1".into(),
                client_addr: "127.0.0.1:5555".into(),
                language: "RUST".into(),
                version: 475,
            }],
            subscription_table: BTreeMap::from([(
                "T".to_string(),
                SubscriptionData {
                    topic: "T".into(),
                    sub_string: "a || b".into(),
                    ..SubscriptionData::default()
                },
            )]),
            consume_type: "CONSUME_PASSIVELY".into(),
            message_model: "CLUSTERING".into(),
            consume_from_where: "CONSUME_FROM_FIRST_OFFSET".into(),
        };
        let p = connections_to_proto("g", &c);
        assert_eq!(p.connections[0].client_address, "127.0.0.1:5555");
        assert_eq!(p.subscriptions[0].expression, "a || b");
        assert_eq!(p.message_model, "CLUSTERING");
    }

    #[test]
    fn browse_ranges_clamp_to_the_queue() {
        let q = |begin, end| flotilla_proto::agent::v1::ListMessages {
            topic: "T".into(),
            begin_offset: begin,
            end_offset: end,
            ..Default::default()
        };
        assert_eq!(browse_range(&q(0, 0), 3, 10, None), (3, 10), "min..max");
        assert_eq!(browse_range(&q(5, 7), 3, 10, None), (5, 7));
        assert_eq!(browse_range(&q(5, 70), 3, 10, None), (5, 10), "end clamped");
        assert_eq!(
            browse_range(&q(0, 0), 0, 10, Some(6)),
            (6, 10),
            "time start"
        );
        let body: ProducerConnectionBody = decode_body(
            br#"{"connectionSet":[{"clientId":"c1","clientAddr":"127.0.0.1:1","language":"RUST","version":475}]}"#,
        )
        .unwrap();
        let p = producer_connections_to_proto("pg", &body);
        assert_eq!(p.connections[0].client_id, "c1");
        assert_eq!(p.connections[0].client_address, "127.0.0.1:1");
        assert_eq!(p.group, "pg");
    }

    #[test]
    fn group_round_trip() {
        let g = ConsumerGroup {
            name: "g".into(),
            consume_enable: true,
            retry_queue_nums: 1,
            retry_max_times: 3,
            ..ConsumerGroup::default()
        };
        let back = group_to_proto(&group_from_proto(&g));
        assert_eq!(back.name, "g");
        assert_eq!(back.retry_max_times, 3);
        let v: Value = serde_json::json!({"subscriptionGroupTable": {"g": {"groupName": "g"}}});
        assert!(parse_groups(&v).unwrap().contains_key("g"));
    }
}

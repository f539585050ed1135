//! `flotilla.v1.MessageService`: finding messages, as the RocketMQ console's message page does
//! — by message id (the offset id a send returns, or the client's unique key) and by key in a
//! time range — on every broker group's master, through its agent ([`super::brokers`]).
//!
//! An offset id names a store host and a CommitLog offset, so every master is asked for that
//! offset and only a record whose own id (its store host and offset) equals the one asked for
//! counts: another broker's record at the same offset never answers. A unique key is looked
//! up in the brokers' index (it needs the topic, as in RocketMQ); since client unique keys
//! look like IPv4 offset ids, such an id is tried as an offset first, then as a unique key. Query results from all
//! groups are merged, sorted by store time and cut to `max_messages`; silent groups are listed
//! in `failures`.
//!
//! Browsing — by queue and offset range, by store time, a group's dead-letter queue — pulls
//! through the agents (`ListMessages`: PULL_MESSAGE as TOOLS_CONSUMER, nothing committed);
//! broker groups without the topic simply contribute nothing, and a topic no group has is
//! TOPIC_NOT_FOUND. Trace ([`super::trace`]) queries the trace topic's index by the message's
//! unique key (or by key) and decodes the records. A DLQ resend reads the DLQ message and
//! sends a copy — body, flag, and its properties minus the ones the broker set while it was
//! retried (DELAY, REAL_TOPIC, REAL_QID, …) — to its original topic (`RETRY_TOPIC`) or the
//! topic asked for, as a new message of that topic: every group subscribed to it receives it
//! (to redeliver to the one group only, target its `%RETRY%<group>` topic). The copy keeps
//! the unique key, so consumers see the original msgId. With a request id a retried resend is
//! recognised by the agent's journal and sends once.

use std::sync::Arc;

use flotilla_proto::agent::v1::{self as agent, command::Action, command_result};
use flotilla_proto::v1::{
    BrokerFailure, GetMessageRequest, GetMessageTraceRequest, ListDlqMessagesRequest,
    ListMessagesRequest, Message, MessageTraces, QueryMessagesByKeyRequest,
    QueryMessagesByTimeRequest, QueryMessagesResponse, ResendDlqMessageRequest,
    ResendDlqMessageResponse, message_service_server::MessageService,
};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use super::brokers::{self, Target};
use super::trace;
use crate::context::Ctx;
use crate::errors::ApiError;
use crate::validate::{self, Violations};

/// Default and largest `max_messages`.
pub const DEFAULT_MAX: i32 = 64;
/// Largest `max_messages`.
pub const MAX_MESSAGES: i32 = 1000;

/// The MessageService implementation.
pub struct MessageApi {
    ctx: Arc<Ctx>,
}

impl MessageApi {
    /// Serves messages from `ctx`.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }
}

/// Whether `id` has the shape of an offset message id (hex of an IPv4 or IPv6 store host,
/// port and offset: 32 or 56 hex digits).
pub fn is_offset_id(id: &str) -> bool {
    (id.len() == 32 || id.len() == 56) && id.bytes().all(|c| c.is_ascii_hexdigit())
}

fn ms(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos / 1_000_000))
    })
}

/// Sends `q` to every master and gathers the messages (each stamped with its brokerName).
async fn ask_all(
    ctx: &Ctx,
    masters: &[Target],
    q: agent::QueryMessages,
    failures: &mut Vec<BrokerFailure>,
) -> Vec<Message> {
    let results = brokers::call_all(ctx, masters, "", "query-messages", |_| {
        Action::QueryMessages(q.clone())
    })
    .await;
    let mut out = Vec::new();
    for (t, r) in results {
        match r {
            Ok(Some(command_result::Result::Messages(m))) => {
                out.extend(m.messages.into_iter().map(|mut m| {
                    m.broker_name = t.broker_name.clone();
                    m
                }));
            }
            Ok(_) => failures.push(t.failure("BAD_AGENT_ANSWER", "no messages in the answer")),
            Err(f) => failures.push(f),
        }
    }
    out
}

/// Properties the broker set on a message while it was retried or moved, which a resent copy
/// must not carry.
pub const RESEND_DROPPED_PROPERTIES: &[&str] = &[
    "DELAY",
    "REAL_TOPIC",
    "REAL_QID",
    "MIN_OFFSET",
    "MAX_OFFSET",
    "CONSUME_START_TIME",
    "MAX_RECONSUME_TIMES",
    "TRAN_MSG",
    "PGROUP",
    "CLUSTER",
    "WAIT",
];

/// The target topic and properties of a DLQ message's copy: `target` or the message's
/// original topic (`RETRY_TOPIC`), the retry-time properties dropped, and RETRY_TOPIC kept only
/// when the copy goes to the group's own retry topic (where consumers restore the topic from it).
pub fn resend_plan(
    m: &Message,
    group: &str,
    target: &str,
) -> Option<(String, std::collections::HashMap<String, String>)> {
    let topic = if target.is_empty() {
        m.properties.get("RETRY_TOPIC").cloned()?
    } else {
        target.to_string()
    };
    let mut props = m.properties.clone();
    for k in RESEND_DROPPED_PROPERTIES {
        props.remove(*k);
    }
    if topic != format!("%RETRY%{group}") {
        props.remove("RETRY_TOPIC");
    }
    Some((topic, props))
}

fn max_of(v: &mut Violations, field: &str, n: i32) -> i32 {
    if !(0..=MAX_MESSAGES).contains(&n) {
        v.add(field, format!("must be 1..={MAX_MESSAGES}"));
    }
    if n <= 0 { DEFAULT_MAX } else { n }
}

fn time_range(
    v: &mut Violations,
    begin: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
) -> (i64, i64) {
    let (b, e) = (ms(begin), ms(end));
    if b < 0 {
        v.add("begin_time", "must not be before 1970");
    }
    if e != 0 && e < b {
        v.add("end_time", "must not be before begin_time");
    }
    (b, e)
}

/// What the masters answered a `ListMessages`: messages, failures, and whether any group had
/// the topic (a group without it answers TOPIC_NOT_FOUND, which is no failure).
async fn browse(
    ctx: &Ctx,
    masters: &[Target],
    q: agent::ListMessages,
    failures: &mut Vec<BrokerFailure>,
) -> (Vec<Message>, bool) {
    let results = brokers::call_all(ctx, masters, "", "list-messages", |_| {
        Action::ListMessages(q.clone())
    })
    .await;
    let mut out = Vec::new();
    let mut found = false;
    for (t, r) in results {
        match r {
            Ok(Some(command_result::Result::Messages(m))) => {
                found = true;
                out.extend(m.messages.into_iter().map(|mut m| {
                    m.broker_name = t.broker_name.clone();
                    m
                }));
            }
            Ok(_) => failures.push(t.failure("BAD_AGENT_ANSWER", "no messages in the answer")),
            Err(f) if f.reason == "TOPIC_NOT_FOUND" => {}
            Err(f) => failures.push(f),
        }
    }
    (out, found)
}

/// The trace records indexed under `key` in the trace topic, each stamped with the broker
/// group storing it.
async fn trace_records(
    ctx: &Ctx,
    masters: &[Target],
    trace_topic: &str,
    key: &str,
    max: i32,
    failures: &mut Vec<BrokerFailure>,
) -> Vec<flotilla_proto::v1::TraceRecord> {
    let q = agent::QueryMessages {
        topic: trace_topic.to_string(),
        key: key.to_string(),
        max,
        ..Default::default()
    };
    let found = ask_all(ctx, masters, q, failures).await;
    found
        .iter()
        .flat_map(|m| {
            trace::decode(&String::from_utf8_lossy(&m.body))
                .into_iter()
                .map(|mut rec| {
                    rec.trace_broker_name = m.broker_name.clone();
                    rec
                })
        })
        .collect()
}

/// Sorts by store time (then broker, queue, offset) and keeps the first `max`.
fn earliest(mut messages: Vec<Message>, max: i32) -> Vec<Message> {
    messages.sort_by(|a, b| {
        (
            ms(a.store_time.as_ref()),
            &a.broker_name,
            a.queue_id,
            a.queue_offset,
        )
            .cmp(&(
                ms(b.store_time.as_ref()),
                &b.broker_name,
                b.queue_id,
                b.queue_offset,
            ))
    });
    messages.truncate(usize::try_from(max).unwrap_or(64));
    messages
}

impl MessageApi {
    async fn list(&self, r: ListMessagesRequest) -> Result<QueryMessagesResponse, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "topic", &r.topic);
        if r.queue_id.is_some_and(|q| q < 0) {
            v.add("queue_id", "must not be negative");
        }
        if r.begin_offset < 0 {
            v.add("begin_offset", "must not be negative");
        }
        if r.end_offset < 0 {
            v.add("end_offset", "must not be negative (0 = the queue's end)");
        } else if r.end_offset != 0 && r.end_offset < r.begin_offset {
            v.add("end_offset", "must not be below begin_offset");
        }
        let max = max_of(&mut v, "max_messages", r.max_messages);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(&self.ctx, &r.cluster).await?;
        let wanted: Vec<String> = if r.broker_name.is_empty() {
            Vec::new()
        } else if targets.group_names().contains(&r.broker_name) {
            vec![r.broker_name.clone()]
        } else {
            return Err(ApiError::bad_request(
                "broker_name",
                format!(
                    "{} is not a broker group of cluster {} (groups: {})",
                    r.broker_name,
                    r.cluster,
                    targets.group_names().join(", ")
                ),
            ));
        };
        let (masters, mut failures) = targets.masters(&wanted);
        let q = agent::ListMessages {
            topic: r.topic.clone(),
            queue_id: r.queue_id,
            begin_offset: r.begin_offset,
            end_offset: r.end_offset,
            max,
            ..Default::default()
        };
        let (mut messages, found) = browse(&self.ctx, &masters, q, &mut failures).await;
        if !found && failures.is_empty() {
            return Err(ApiError::TopicNotFound {
                cluster: r.cluster,
                topic: r.topic,
            });
        }
        messages.sort_by(|a, b| {
            (&a.broker_name, a.queue_id, a.queue_offset).cmp(&(
                &b.broker_name,
                b.queue_id,
                b.queue_offset,
            ))
        });
        messages.truncate(usize::try_from(max).unwrap_or(64));
        Ok(QueryMessagesResponse {
            messages,
            next_page_token: String::new(),
            failures,
        })
    }

    async fn by_time(
        &self,
        r: QueryMessagesByTimeRequest,
    ) -> Result<QueryMessagesResponse, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "topic", &r.topic);
        let (begin, end) = time_range(&mut v, r.begin_time.as_ref(), r.end_time.as_ref());
        let max = max_of(&mut v, "max_messages", r.max_messages);
        if !r.page_token.is_empty() {
            v.add(
                "page_token",
                "paging is not supported: narrow the time range instead",
            );
        }
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(&self.ctx, &r.cluster).await?;
        let (masters, mut failures) = targets.masters(&[]);
        let q = agent::ListMessages {
            topic: r.topic.clone(),
            begin_ms: begin,
            end_ms: end,
            max,
            ..Default::default()
        };
        let (messages, found) = browse(&self.ctx, &masters, q, &mut failures).await;
        if !found && failures.is_empty() {
            return Err(ApiError::TopicNotFound {
                cluster: r.cluster,
                topic: r.topic,
            });
        }
        Ok(QueryMessagesResponse {
            messages: earliest(messages, max),
            next_page_token: String::new(),
            failures,
        })
    }

    async fn dlq(&self, r: ListDlqMessagesRequest) -> Result<QueryMessagesResponse, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "group", &r.group);
        let (begin, end) = time_range(&mut v, r.begin_time.as_ref(), r.end_time.as_ref());
        let max = max_of(&mut v, "max_messages", r.max_messages);
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(&self.ctx, &r.cluster).await?;
        let (lists, mut failures) = brokers::list_all(&self.ctx, &targets, &[]).await;
        let topic = format!("%DLQ%{}", r.group);
        let holders: Vec<Target> = lists
            .iter()
            .filter(|(_, l)| l.topics.iter().any(|t| t.name == topic))
            .map(|(t, _)| t.clone())
            .collect();
        let group_known = lists
            .iter()
            .any(|(_, l)| l.groups.iter().any(|g| g.name == r.group));
        if holders.is_empty() && !group_known && failures.is_empty() {
            return Err(ApiError::GroupNotFound {
                cluster: r.cluster,
                group: r.group,
            });
        }
        let q = agent::ListMessages {
            topic,
            begin_ms: begin,
            end_ms: end,
            max,
            ..Default::default()
        };
        let (messages, _) = browse(&self.ctx, &holders, q, &mut failures).await;
        Ok(QueryMessagesResponse {
            messages: earliest(messages, max),
            next_page_token: String::new(),
            failures,
        })
    }

    async fn resend(
        &self,
        r: ResendDlqMessageRequest,
    ) -> Result<ResendDlqMessageResponse, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "group", &r.group);
        if r.message_id.is_empty() {
            v.add("message_id", "required");
        } else if !is_offset_id(&r.message_id) {
            v.add(
                "message_id",
                "must be the offset message id of the DLQ message (as `dlq list` shows it)",
            );
        }
        if !r.target_topic.is_empty() {
            validate::rocketmq_name(&mut v, "target_topic", &r.target_topic);
        }
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        let ctx = &self.ctx;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        let (masters, mut failures) = targets.masters(&[]);
        let dlq = format!("%DLQ%{}", r.group);
        let q = agent::QueryMessages {
            topic: dlq.clone(),
            message_id: r.message_id.clone(),
            ..Default::default()
        };
        let found = ask_all(ctx, &masters, q, &mut failures).await;
        let Some(m) = found
            .into_iter()
            .find(|m| m.message_id.eq_ignore_ascii_case(&r.message_id))
        else {
            return Err(if failures.is_empty() {
                ApiError::MessageNotFound {
                    cluster: r.cluster,
                    id: format!("{} in {dlq}", r.message_id),
                }
            } else {
                ApiError::BrokersUnavailable {
                    what: "the brokers",
                    failures,
                }
            });
        };
        let (topic, properties) = resend_plan(&m, &r.group, &r.target_topic).ok_or_else(|| {
            ApiError::bad_request(
                "target_topic",
                "the message has no RETRY_TOPIC property naming its original topic: give the                  topic to send it to",
            )
        })?;
        let (lists, failures) = brokers::list_all(ctx, &targets, &[]).await;
        let has = |l: &agent::TopicList| l.topics.iter().any(|t| t.name == topic);
        let to = lists
            .iter()
            .find(|(t, l)| t.broker_name == m.broker_name && has(l))
            .or_else(|| lists.iter().find(|(_, l)| has(l)))
            .map(|(t, _)| t.clone());
        let Some(to) = to else {
            return Err(if failures.is_empty() {
                ApiError::TopicNotFound {
                    cluster: r.cluster,
                    topic,
                }
            } else {
                ApiError::BrokersUnavailable {
                    what: "the brokers",
                    failures,
                }
            });
        };
        let action = Action::SendMessage(agent::SendMessage {
            topic: topic.clone(),
            body: m.body.clone(),
            properties,
            producer_group: "CLIENT_INNER_PRODUCER".into(),
            flag: 0,
        });
        let step = format!("dlq-resend-{}", r.message_id.to_ascii_uppercase());
        let id = brokers::command_id(&r.request_id, &step, &to);
        match brokers::call(ctx, &to, id, action).await {
            Ok(Some(command_result::Result::Sent(s))) => Ok(ResendDlqMessageResponse {
                topic,
                broker_name: to.broker_name.clone(),
                queue_id: s.queue_id,
                queue_offset: s.queue_offset,
                message_id: s.message_id,
                unique_key: m.unique_key,
            }),
            Ok(_) => Err(ApiError::BrokersUnavailable {
                what: "the brokers",
                failures: vec![to.failure("BAD_AGENT_ANSWER", "no send result in the answer")],
            }),
            Err(f) => Err(ApiError::BrokersUnavailable {
                what: "the brokers",
                failures: vec![f],
            }),
        }
    }

    async fn trace(&self, r: GetMessageTraceRequest) -> Result<MessageTraces, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        match (r.message_id.is_empty(), r.key.is_empty()) {
            (true, true) => v.add("message_id", "give message_id or key"),
            (false, false) => v.add("key", "give message_id or key, not both"),
            _ => {}
        }
        if !r.topic.is_empty() {
            validate::rocketmq_name(&mut v, "topic", &r.topic);
        }
        if !r.trace_topic.is_empty() {
            validate::rocketmq_name(&mut v, "trace_topic", &r.trace_topic);
        }
        let max = max_of(&mut v, "max_messages", r.max_messages);
        v.into_result("INVALID_REQUEST")?;
        let trace_topic = if r.trace_topic.is_empty() {
            trace::DEFAULT_TRACE_TOPIC.to_string()
        } else {
            r.trace_topic.clone()
        };
        let ctx = &self.ctx;
        let targets = brokers::resolve(ctx, &r.cluster).await?;
        let (masters, mut failures) = targets.masters(&[]);
        let traces = if !r.message_id.is_empty() {
            let records = trace_records(
                ctx,
                &masters,
                &trace_topic,
                &r.message_id,
                max,
                &mut failures,
            )
            .await;
            let mut traces = trace::fold(records, |rec| rec.message_id == r.message_id);
            // An offset id: trace by the unique key of the message it names.
            if traces.is_empty() && is_offset_id(&r.message_id) {
                let q = agent::QueryMessages {
                    topic: r.topic.clone(),
                    message_id: r.message_id.clone(),
                    ..Default::default()
                };
                let found = ask_all(ctx, &masters, q, &mut failures).await;
                if let Some(m) = found.into_iter().find(|m| {
                    m.message_id.eq_ignore_ascii_case(&r.message_id) && !m.unique_key.is_empty()
                }) {
                    let records = trace_records(
                        ctx,
                        &masters,
                        &trace_topic,
                        &m.unique_key,
                        max,
                        &mut failures,
                    )
                    .await;
                    traces = trace::fold(records, |rec| rec.message_id == m.unique_key);
                }
            }
            traces
        } else {
            let records =
                trace_records(ctx, &masters, &trace_topic, &r.key, max, &mut failures).await;
            let ids: std::collections::BTreeSet<String> = records
                .iter()
                .filter(|rec| rec.keys.contains(&r.key))
                .filter(|rec| r.topic.is_empty() || rec.topic.is_empty() || rec.topic == r.topic)
                .map(|rec| rec.message_id.clone())
                .collect();
            let mut traces = trace::fold(records, |rec| ids.contains(&rec.message_id));
            if !r.topic.is_empty() {
                traces.retain(|t| t.topic.is_empty() || t.topic == r.topic);
            }
            traces
        };
        failures.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        failures.dedup_by(|a, b| a.broker_name == b.broker_name);
        Ok(MessageTraces {
            trace_topic,
            traces,
            failures,
        })
    }

    async fn get(&self, r: GetMessageRequest) -> Result<Message, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        if r.message_id.is_empty() {
            v.add("message_id", "required");
        }
        let offset_id = is_offset_id(&r.message_id);
        if !r.topic.is_empty() || !offset_id {
            validate::rocketmq_name(&mut v, "topic", &r.topic);
        }
        v.into_result("INVALID_REQUEST")?;
        let targets = brokers::resolve(&self.ctx, &r.cluster).await?;
        let (masters, mut failures) = targets.masters(&[]);
        // Client unique keys have the same shape as IPv4 offset ids: an offset-shaped id is
        // looked up as an offset first, then (with a topic) as a unique key.
        if offset_id {
            let q = agent::QueryMessages {
                topic: r.topic.clone(),
                message_id: r.message_id.clone(),
                ..Default::default()
            };
            let found = ask_all(&self.ctx, &masters, q, &mut failures).await;
            if let Some(m) = found
                .into_iter()
                .find(|m| m.message_id.eq_ignore_ascii_case(&r.message_id))
            {
                return Ok(m);
            }
        }
        if !r.topic.is_empty() {
            let q = agent::QueryMessages {
                topic: r.topic.clone(),
                key: r.message_id.clone(),
                unique_key: true,
                max: 32,
                ..Default::default()
            };
            let found = ask_all(&self.ctx, &masters, q, &mut failures).await;
            if let Some(m) = found.into_iter().find(|m| m.unique_key == r.message_id) {
                return Ok(m);
            }
        }
        failures.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        failures.dedup_by(|a, b| a.broker_name == b.broker_name);
        if failures.is_empty() {
            Err(ApiError::MessageNotFound {
                cluster: r.cluster,
                id: r.message_id,
            })
        } else {
            Err(ApiError::BrokersUnavailable {
                what: "the brokers",
                failures,
            })
        }
    }

    async fn by_key(
        &self,
        r: QueryMessagesByKeyRequest,
    ) -> Result<QueryMessagesResponse, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "cluster", &r.cluster);
        validate::rocketmq_name(&mut v, "topic", &r.topic);
        if r.key.is_empty() {
            v.add("key", "required");
        }
        if !(0..=MAX_MESSAGES).contains(&r.max_messages) {
            v.add("max_messages", format!("must be 1..={MAX_MESSAGES}"));
        }
        let (begin, end) = (ms(r.begin_time.as_ref()), ms(r.end_time.as_ref()));
        if end != 0 && end < begin {
            v.add("end_time", "must not be before begin_time");
        }
        v.into_result("INVALID_REQUEST")?;
        let max = if r.max_messages == 0 {
            DEFAULT_MAX
        } else {
            r.max_messages
        };
        let targets = brokers::resolve(&self.ctx, &r.cluster).await?;
        let (masters, mut failures) = targets.masters(&[]);
        let q = agent::QueryMessages {
            topic: r.topic.clone(),
            key: r.key.clone(),
            unique_key: false,
            begin_ms: begin,
            end_ms: end,
            max,
            message_id: String::new(),
        };
        let mut messages = ask_all(&self.ctx, &masters, q, &mut failures).await;
        messages.sort_by_key(|m| (ms(m.store_time.as_ref()), m.commit_log_offset));
        messages.truncate(usize::try_from(max).unwrap_or(64));
        Ok(QueryMessagesResponse {
            messages,
            next_page_token: String::new(),
            failures,
        })
    }
}

#[tonic::async_trait]
impl MessageService for MessageApi {
    async fn get_message(
        &self,
        request: Request<GetMessageRequest>,
    ) -> Result<Response<Message>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetMessage", cluster = %r.cluster, topic = %r.topic, message_id = %r.message_id);
        Ok(Response::new(self.get(r).instrument(span).await?))
    }

    async fn query_messages_by_key(
        &self,
        request: Request<QueryMessagesByKeyRequest>,
    ) -> Result<Response<QueryMessagesResponse>, Status> {
        let r = request.into_inner();
        let span =
            info_span!("QueryMessagesByKey", cluster = %r.cluster, topic = %r.topic, key = %r.key);
        Ok(Response::new(self.by_key(r).instrument(span).await?))
    }

    async fn query_messages_by_time(
        &self,
        request: Request<QueryMessagesByTimeRequest>,
    ) -> Result<Response<QueryMessagesResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("QueryMessagesByTime", cluster = %r.cluster, topic = %r.topic);
        Ok(Response::new(self.by_time(r).instrument(span).await?))
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<QueryMessagesResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("ListMessages", cluster = %r.cluster, topic = %r.topic, broker = %r.broker_name);
        Ok(Response::new(self.list(r).instrument(span).await?))
    }

    async fn get_message_trace(
        &self,
        request: Request<GetMessageTraceRequest>,
    ) -> Result<Response<MessageTraces>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetMessageTrace", cluster = %r.cluster, message_id = %r.message_id, key = %r.key);
        Ok(Response::new(self.trace(r).instrument(span).await?))
    }

    async fn list_dlq_messages(
        &self,
        request: Request<ListDlqMessagesRequest>,
    ) -> Result<Response<QueryMessagesResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("ListDlqMessages", cluster = %r.cluster, group = %r.group);
        Ok(Response::new(self.dlq(r).instrument(span).await?))
    }

    async fn resend_dlq_message(
        &self,
        request: Request<ResendDlqMessageRequest>,
    ) -> Result<Response<ResendDlqMessageResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("ResendDlqMessage", cluster = %r.cluster, group = %r.group, message_id = %r.message_id, request_id = %r.request_id);
        Ok(Response::new(self.resend(r).instrument(span).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_ids_by_shape() {
        assert!(is_offset_id("7F00000100002A9F0000000000000000"));
        assert!(
            !is_offset_id("7F00000100002A9F000000000000000"),
            "31 digits"
        );
        assert!(!is_offset_id(
            "AC1100020E2C18B4AAC2590C0F3F0000"[..30].as_ref()
        ));
        assert!(!is_offset_id("ZZ00000100002A9F0000000000000000"));
        let t = prost_types::Timestamp {
            seconds: 2,
            nanos: 5_000_000,
        };
        assert_eq!(ms(Some(&t)), 2005);
        assert_eq!(ms(None), 0);
    }

    #[test]
    fn resend_goes_to_the_original_topic_without_retry_properties() {
        let m = Message {
            properties: [
                ("RETRY_TOPIC", "Orders"),
                ("DELAY", "3"),
                ("REAL_TOPIC", "%RETRY%cg"),
                ("UNIQ_KEY", "U1"),
                ("KEYS", "k"),
                ("color", "red"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Default::default()
        };
        let (topic, p) = resend_plan(&m, "cg", "").unwrap();
        assert_eq!(topic, "Orders");
        let mut keys: Vec<&str> = p.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["KEYS", "UNIQ_KEY", "color"]);
        let (topic, p) = resend_plan(&m, "cg", "%RETRY%cg").unwrap();
        assert_eq!(topic, "%RETRY%cg");
        assert_eq!(
            p["RETRY_TOPIC"], "Orders",
            "consumers restore the topic from it"
        );
        assert!(resend_plan(&Message::default(), "cg", "").is_none());
        assert_eq!(resend_plan(&Message::default(), "cg", "X").unwrap().0, "X");
    }
}

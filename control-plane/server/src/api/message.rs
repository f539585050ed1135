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
//! in `failures`. Listing by time is not served yet.

use std::sync::Arc;

use flotilla_proto::agent::v1::{self as agent, command::Action, command_result};
use flotilla_proto::v1::{
    BrokerFailure, GetMessageRequest, Message, QueryMessagesByKeyRequest,
    QueryMessagesByTimeRequest, QueryMessagesResponse, message_service_server::MessageService,
};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use super::brokers::{self, Target};
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

impl MessageApi {
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
        let _span =
            info_span!("QueryMessagesByTime", cluster = %r.cluster, topic = %r.topic).entered();
        Err(Status::unimplemented(
            "listing messages by time is not served yet",
        ))
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
}

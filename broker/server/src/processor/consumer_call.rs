//! Requests the broker relays to one consumer: GET_CONSUMER_RUNNING_INFO (307) and
//! CONSUME_MESSAGE_DIRECTLY (309), as Java's `AdminBrokerProcessor.callConsumer` serves them.
//!
//! Why the broker relays: consumers do not listen on a port; the only way to reach one is the
//! connection it opened to a broker. The RocketMQ dashboard and `mqadmin consumerStatus` /
//! `consumeMessage` therefore ask a broker, naming the group and the client id; the broker
//! finds that client's connection among the group's heartbeating members and sends the same
//! code and header on it, then answers with whatever the client answered (its
//! `ConsumerRunningInfo` or `ConsumeMessageDirectlyResult` JSON, or its error).
//!
//! For 309 the broker first reads the message named by its offset message id from its own
//! CommitLog and puts the stored record (the MessageExt encoding a pull returns) in the body,
//! and sets `brokerName` to its own name, as Java does.
//!
//! Failures keep Java's codes and texts: a client that is not connected is SYSTEM_ERROR
//! "The Consumer <group> <clientId> not online"; one that does not answer within
//! [`CALL_CLIENT_TIMEOUT`] (Java's `Broker2Client.callClient` wait) is CONSUME_MSG_TIMEOUT
//! "consumer <group> <clientId> Timeout: …" — the admin request never hangs on a stuck client.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use flotilla_remoting::{
    Channel, HeaderError, ProcessError, ProcessResult, RemotingCommand, RemotingError,
    request_code as rc, response_code as code,
};

use super::bad_header;
use crate::broker::Broker;
use crate::headers::Ext;

/// How long the broker waits for the consumer's answer (Java: 10 s in `callClient`).
pub const CALL_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// GET_CONSUMER_RUNNING_INFO header (`GetConsumerRunningInfoRequestHeader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningInfoHeader {
    /// The consumer group.
    pub consumer_group: String,
    /// The client id (`ip@instance`) of the member to ask.
    pub client_id: String,
    /// Whether the client should include its thread stacks.
    pub jstack_enable: bool,
}

impl RunningInfoHeader {
    /// Parses the header; `consumerGroup` and `clientId` are required (Java's `@CFNotNull`).
    pub fn parse(req: &RemotingCommand) -> Result<Self, HeaderError> {
        let e = Ext(req);
        Ok(Self {
            consumer_group: e.string("consumerGroup")?.to_string(),
            client_id: e.string("clientId")?.to_string(),
            jstack_enable: e.bool_opt("jstackEnable").unwrap_or(false),
        })
    }
}

/// CONSUME_MESSAGE_DIRECTLY header (`ConsumeMessageDirectlyResultRequestHeader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectlyHeader {
    /// The consumer group.
    pub consumer_group: String,
    /// The client id of the member that consumes the message.
    pub client_id: String,
    /// The offset message id (store host + CommitLog offset, hex) of the message.
    pub msg_id: String,
    /// The broker name the caller sent (replaced by this broker's own when relayed).
    pub broker_name: Option<String>,
}

impl DirectlyHeader {
    /// Parses the header. Java declares `clientId` and `msgId` nullable but cannot serve the
    /// request without them, so a missing one is answered here with the field's name.
    pub fn parse(req: &RemotingCommand) -> Result<Self, HeaderError> {
        let e = Ext(req);
        Ok(Self {
            consumer_group: e.string("consumerGroup")?.to_string(),
            client_id: e.string("clientId")?.to_string(),
            msg_id: e.string("msgId")?.trim().to_string(),
            broker_name: e.opt("brokerName").map(str::to_string),
        })
    }
}

/// Why a relayed call did not produce the client's answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No live connection of that client id in that group.
    #[error("The Consumer <{group}> <{client_id}> not online")]
    NotOnline {
        /// Consumer group.
        group: String,
        /// Client id.
        client_id: String,
    },
    /// The client did not answer in time.
    #[error("consumer <{group}> <{client_id}> Timeout: no answer within {} ms", timeout.as_millis())]
    Timeout {
        /// Consumer group.
        group: String,
        /// Client id.
        client_id: String,
        /// How long the broker waited.
        timeout: Duration,
    },
    /// The call failed otherwise (connection closed, frame refused).
    #[error("invoke consumer <{group}> <{client_id}> Exception: {reason}")]
    Invoke {
        /// Consumer group.
        group: String,
        /// Client id.
        client_id: String,
        /// What went wrong.
        reason: String,
    },
    /// `msgId` is not an offset message id.
    #[error(
        "the msgId {msg_id} is not an offset message id (hex of store host and commit log offset)"
    )]
    BadMessageId {
        /// The id sent.
        msg_id: String,
    },
    /// No message at the id's CommitLog offset on this broker.
    #[error(
        "can not find message by the msgId {msg_id} (commit log offset {offset}) on this broker"
    )]
    MessageNotFound {
        /// The id sent.
        msg_id: String,
        /// Its CommitLog offset.
        offset: i64,
    },
}

impl CallError {
    /// Stable error code (logs, tests).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotOnline { .. } => "CONSUMER_NOT_ONLINE",
            Self::Timeout { .. } => "CONSUMER_CALL_TIMEOUT",
            Self::Invoke { .. } => "CONSUMER_CALL_FAILED",
            Self::BadMessageId { .. } => "BAD_MESSAGE_ID",
            Self::MessageNotFound { .. } => "MESSAGE_NOT_FOUND",
        }
    }

    /// The response code Java answers with.
    pub fn response_code(&self) -> i32 {
        match self {
            Self::Timeout { .. } => code::CONSUME_MSG_TIMEOUT,
            _ => code::SYSTEM_ERROR,
        }
    }
}

impl From<CallError> for ProcessError {
    fn from(e: CallError) -> Self {
        ProcessError::new(e.response_code(), e.to_string())
    }
}

/// Sends `code` with `ext_fields` and `body` to the client on `channel` and returns its
/// answer as is, waiting at most `timeout`.
pub async fn call_client(
    channel: &Channel,
    request_code: i32,
    ext_fields: HashMap<String, String>,
    body: Bytes,
    group: &str,
    client_id: &str,
    timeout: Duration,
) -> Result<RemotingCommand, CallError> {
    let mut req = RemotingCommand::request(request_code);
    req.ext_fields = ext_fields;
    req.body = body;
    match channel.invoke(req, timeout).await {
        Ok(resp) => Ok(resp),
        Err(RemotingError::Timeout { .. }) => Err(CallError::Timeout {
            group: group.to_string(),
            client_id: client_id.to_string(),
            timeout,
        }),
        Err(e) => Err(CallError::Invoke {
            group: group.to_string(),
            client_id: client_id.to_string(),
            reason: e.to_string(),
        }),
    }
}

fn find_channel(b: &Broker, group: &str, client_id: &str) -> Result<Channel, CallError> {
    b.clients
        .find_consumer(group, client_id)
        .map(|c| c.channel)
        .ok_or_else(|| CallError::NotOnline {
            group: group.to_string(),
            client_id: client_id.to_string(),
        })
}

/// GET_CONSUMER_RUNNING_INFO: relayed to the named client; its answer is ours.
#[tracing::instrument(skip_all, fields(group, client_id))]
pub async fn running_info(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let h = RunningInfoHeader::parse(req).map_err(bad_header)?;
    let span = tracing::Span::current();
    span.record("group", h.consumer_group.as_str());
    span.record("client_id", h.client_id.as_str());
    let ch = find_channel(b, &h.consumer_group, &h.client_id)?;
    let resp = call_client(
        &ch,
        rc::GET_CONSUMER_RUNNING_INFO,
        req.ext_fields.clone(),
        req.body.clone(),
        &h.consumer_group,
        &h.client_id,
        CALL_CLIENT_TIMEOUT,
    )
    .await
    .inspect_err(|e| tracing::warn!(error = %e, code = e.code(), "consumer running info"))?;
    tracing::debug!(
        code = resp.code,
        bytes = resp.body.len(),
        "consumer answered"
    );
    Ok(Some(resp))
}

/// CONSUME_MESSAGE_DIRECTLY: the stored message as body, relayed to the named client.
#[tracing::instrument(skip_all, fields(group, client_id, msg_id))]
pub async fn consume_directly(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let h = DirectlyHeader::parse(req).map_err(bad_header)?;
    let span = tracing::Span::current();
    span.record("group", h.consumer_group.as_str());
    span.record("client_id", h.client_id.as_str());
    span.record("msg_id", h.msg_id.as_str());
    let body = stored_message(b, &h.msg_id)?;
    let ch = find_channel(b, &h.consumer_group, &h.client_id)?;
    let mut ext = req.ext_fields.clone();
    ext.insert("brokerName".into(), b.config().broker_name.clone());
    let resp = call_client(
        &ch,
        rc::CONSUME_MESSAGE_DIRECTLY,
        ext,
        body,
        &h.consumer_group,
        &h.client_id,
        CALL_CLIENT_TIMEOUT,
    )
    .await
    .inspect_err(|e| tracing::warn!(error = %e, code = e.code(), "consume message directly"))?;
    tracing::debug!(code = resp.code, "consumer answered");
    Ok(Some(resp))
}

/// The stored record of the message with offset id `msg_id`.
fn stored_message(b: &Broker, msg_id: &str) -> Result<Bytes, CallError> {
    let (_, offset) =
        flotilla_message_store::codec::decode_message_id(msg_id).ok_or_else(|| {
            CallError::BadMessageId {
                msg_id: msg_id.to_string(),
            }
        })?;
    b.store
        .look_message_by_offset(offset)
        .ok_or_else(|| CallError::MessageNotFound {
            msg_id: msg_id.to_string(),
            offset,
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flotilla_remoting::{ClientConfig, RemotingClient, RemotingServer, processor_fn};

    use super::*;

    fn req(code: i32, fields: &[(&str, &str)]) -> RemotingCommand {
        fields
            .iter()
            .fold(RemotingCommand::request(code), |r, (k, v)| {
                r.with_ext(*k, v)
            })
    }

    #[test]
    fn running_info_header_parses_and_requires_group_and_client() {
        let h = RunningInfoHeader::parse(&req(
            rc::GET_CONSUMER_RUNNING_INFO,
            &[
                ("consumerGroup", "g"),
                ("clientId", "1.2.3.4@9"),
                ("jstackEnable", "true"),
            ],
        ))
        .expect("parses");
        assert_eq!(
            h,
            RunningInfoHeader {
                consumer_group: "g".into(),
                client_id: "1.2.3.4@9".into(),
                jstack_enable: true,
            }
        );
        let h = RunningInfoHeader::parse(&req(
            rc::GET_CONSUMER_RUNNING_INFO,
            &[("consumerGroup", "g"), ("clientId", "c")],
        ))
        .expect("parses");
        assert!(!h.jstack_enable);
        let e = RunningInfoHeader::parse(&req(
            rc::GET_CONSUMER_RUNNING_INFO,
            &[("consumerGroup", "g")],
        ))
        .expect_err("clientId is required");
        assert!(e.to_string().contains("clientId"), "{e}");
    }

    #[test]
    fn directly_header_parses_and_requires_msg_id() {
        let h = DirectlyHeader::parse(&req(
            rc::CONSUME_MESSAGE_DIRECTLY,
            &[
                ("consumerGroup", "g"),
                ("clientId", "c"),
                ("msgId", " 7F00000100002A9F0000000000000000 "),
                ("brokerName", "b"),
            ],
        ))
        .expect("parses");
        assert_eq!(h.msg_id, "7F00000100002A9F0000000000000000");
        assert_eq!(h.broker_name.as_deref(), Some("b"));
        let e = DirectlyHeader::parse(&req(
            rc::CONSUME_MESSAGE_DIRECTLY,
            &[("consumerGroup", "g"), ("clientId", "c")],
        ))
        .expect_err("msgId is required");
        assert!(e.to_string().contains("msgId"), "{e}");
    }

    #[test]
    fn errors_keep_java_codes_and_texts() {
        let e = ProcessError::from(CallError::NotOnline {
            group: "g".into(),
            client_id: "c".into(),
        });
        assert_eq!(
            (e.code, e.remark.as_str()),
            (code::SYSTEM_ERROR, "The Consumer <g> <c> not online")
        );
        let e = ProcessError::from(CallError::Timeout {
            group: "g".into(),
            client_id: "c".into(),
            timeout: Duration::from_millis(300),
        });
        assert_eq!(e.code, code::CONSUME_MSG_TIMEOUT);
        assert!(
            e.remark.starts_with("consumer <g> <c> Timeout"),
            "{}",
            e.remark
        );
    }

    /// A client that never answers: the relay ends with a timeout, it does not hang.
    #[tokio::test]
    async fn a_silent_client_times_out() {
        let server = RemotingServer::builder()
            .register(
                10,
                Arc::new(processor_fn(|ch: Channel, _req| async move {
                    let r = call_client(
                        &ch,
                        rc::GET_CONSUMER_RUNNING_INFO,
                        HashMap::new(),
                        Bytes::new(),
                        "g",
                        "c",
                        Duration::from_millis(300),
                    )
                    .await?;
                    Ok(Some(r))
                })),
            )
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = RemotingClient::with_handler(
            ClientConfig::default(),
            Arc::new(processor_fn(|_ch, _req: RemotingCommand| async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(None)
            })),
        );
        let started = std::time::Instant::now();
        let resp = client
            .invoke(
                &server.local_addr().to_string(),
                RemotingCommand::request(10),
                Duration::from_secs(5),
            )
            .await
            .expect("answered");
        assert_eq!(resp.code, code::CONSUME_MSG_TIMEOUT, "{:?}", resp.remark);
        assert!(started.elapsed() < Duration::from_secs(3));
        server.shutdown().await;
    }

    /// A client that answers: its response comes back as is.
    #[tokio::test]
    async fn the_clients_answer_is_relayed() {
        let server = RemotingServer::builder()
            .register(
                10,
                Arc::new(processor_fn(
                    |ch: Channel, req: RemotingCommand| async move {
                        let r = call_client(
                            &ch,
                            rc::GET_CONSUMER_RUNNING_INFO,
                            req.ext_fields.clone(),
                            Bytes::new(),
                            "g",
                            "c",
                            Duration::from_secs(5),
                        )
                        .await?;
                        Ok(Some(r))
                    },
                )),
            )
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = RemotingClient::with_handler(
            ClientConfig::default(),
            Arc::new(processor_fn(|_ch, req: RemotingCommand| async move {
                let g = req.ext("consumerGroup").unwrap_or("").to_string();
                Ok(Some(
                    RemotingCommand::success().with_body(format!("{{\"group\":\"{g}\"}}")),
                ))
            })),
        );
        let resp = client
            .invoke(
                &server.local_addr().to_string(),
                RemotingCommand::request(10).with_ext("consumerGroup", "cg"),
                Duration::from_secs(5),
            )
            .await
            .expect("answered");
        assert_eq!(resp.code, 0, "{:?}", resp.remark);
        assert_eq!(&resp.body[..], b"{\"group\":\"cg\"}");
        server.shutdown().await;
    }
}

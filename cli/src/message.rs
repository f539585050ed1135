//! `flotilla message get|query|list|trace`: finding messages through the control plane's
//! MessageService — by the id a send returned (offset id, or the client's unique key with
//! `--topic`), by key or by store time in a time range, by queue and offset range — with the
//! body as text (when it is UTF-8) or base64, and every property; and the publish/consume
//! trace of a message that tracing clients recorded in the trace topic.

use base64::Engine;
use clap::Subcommand;
use flotilla_proto::v1::message_service_client::MessageServiceClient;
use flotilla_proto::v1::{
    GetMessageRequest, GetMessageTraceRequest, ListMessagesRequest, Message, MessageTraces,
    QueryMessagesByKeyRequest, QueryMessagesByTimeRequest, QueryMessagesResponse,
};
use serde::Serialize;

use crate::api::CmdError;
use crate::group::parse_time;
use crate::output::{self, Format, columns};
use crate::topic::{On, warn_failures};
use crate::view;

/// How to print bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BodyAs {
    /// Text when the body is UTF-8, else base64.
    #[default]
    Auto,
    /// Always base64.
    Base64,
}

/// `flotilla message …`.
#[derive(Debug, Subcommand)]
pub enum MessageCmd {
    /// One message by its offset id, or by its unique key (UNIQ_KEY) with --topic.
    Get {
        /// Message id.
        id: String,
        #[command(flatten)]
        on: On,
        /// The topic (required for a unique key).
        #[arg(long)]
        topic: Option<String>,
        /// Body encoding.
        #[arg(long, value_enum, default_value_t)]
        body: BodyAs,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
    /// Messages of a topic with a key (KEYS), or without --key every message stored in the
    /// time range (--from/--to), earliest first.
    Query {
        #[command(flatten)]
        on: On,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Key; without it, messages by store time.
        #[arg(long)]
        key: Option<String>,
        /// Stored at or after (milliseconds or RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Stored at or before (milliseconds or RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// At most this many (1..=1000).
        #[arg(long, default_value_t = 64, allow_hyphen_values = true)]
        max: i64,
        /// Body encoding.
        #[arg(long, value_enum, default_value_t)]
        body: BodyAs,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
    /// Messages of a topic by queue and offset range (every queue of every broker group
    /// unless --broker/--queue narrow it).
    List {
        #[command(flatten)]
        on: On,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Only this broker group (brokerName).
        #[arg(long)]
        broker: Option<String>,
        /// Only this queue id.
        #[arg(long, allow_hyphen_values = true)]
        queue: Option<i64>,
        /// First queue offset (inclusive).
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        from_offset: i64,
        /// Last queue offset (exclusive); default the end of each queue.
        #[arg(long, allow_hyphen_values = true)]
        to_offset: Option<i64>,
        /// At most this many (1..=1000).
        #[arg(long, default_value_t = 64, allow_hyphen_values = true)]
        max: i64,
        /// Body encoding.
        #[arg(long, value_enum, default_value_t)]
        body: BodyAs,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
    /// The publish and consume trace of a message (its msgId as the producer got it, or its
    /// offset id), or of every traced message with --key.
    Trace {
        /// The message id (unique key or offset id).
        id: Option<String>,
        #[command(flatten)]
        on: On,
        /// Instead of an id: every traced message with this key.
        #[arg(long)]
        key: Option<String>,
        /// The message's topic (narrows --key).
        #[arg(long)]
        topic: Option<String>,
        /// The trace topic the clients write to.
        #[arg(long, default_value = "RMQ_SYS_TRACE_TOPIC")]
        trace_topic: String,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
}

/// One trace record, as `-o json|yaml` prints it (RocketMQ's TraceContext/TraceBean fields).
#[derive(Debug, Clone, Serialize)]
pub struct TraceRecordView {
    /// Pub, SubBefore, SubAfter, EndTransaction, Recall.
    pub r#type: String,
    /// When the client recorded it.
    pub time: Option<String>,
    /// Producer or consumer group.
    pub group: String,
    /// Topic (publish records).
    pub topic: String,
    /// Unique key of the message.
    pub message_id: String,
    /// Offset id the broker returned (Pub).
    pub offset_message_id: String,
    /// Tags.
    pub tags: String,
    /// Keys.
    pub keys: Vec<String>,
    /// Broker address (Pub).
    pub store_host: String,
    /// Producer client id (Pub, newer clients).
    pub client_host: String,
    /// Body length (Pub).
    pub body_length: i32,
    /// Send or consume time in ms.
    pub cost_time_ms: i32,
    /// RocketMQ message type name.
    pub message_type: String,
    /// Whether the send or consume succeeded.
    pub success: bool,
    /// Pairs SubBefore and SubAfter.
    pub request_id: String,
    /// Redeliveries before this attempt (SubBefore).
    pub retry_times: i32,
    /// ConsumeReturnType (SubAfter).
    pub consume_status: String,
    /// Transaction id (EndTransaction).
    pub transaction_id: String,
    /// Transaction state (EndTransaction).
    pub transaction_state: String,
    /// Broker group storing the trace record.
    pub trace_broker_name: String,
}

/// One consume attempt.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeView {
    /// Consumer group.
    pub group: String,
    /// Request id.
    pub request_id: String,
    /// When consuming began.
    pub begin_time: Option<String>,
    /// Redeliveries before it.
    pub retry_times: i32,
    /// Consume time in ms.
    pub cost_time_ms: i32,
    /// Whether it succeeded.
    pub success: bool,
    /// SUCCESS, TIME_OUT, EXCEPTION, RETURNNULL, FAILED or PENDING.
    pub status: String,
}

/// One traced message.
#[derive(Debug, Clone, Serialize)]
pub struct TraceView {
    /// Unique key.
    pub message_id: String,
    /// Topic.
    pub topic: String,
    /// Every record, by time.
    pub records: Vec<TraceRecordView>,
    /// Consume attempts, by time.
    pub consumes: Vec<ConsumeView>,
}

/// What `message trace -o json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct TracesView {
    /// The trace topic read.
    pub trace_topic: String,
    /// One per traced message.
    pub traces: Vec<TraceView>,
    /// Silent broker groups.
    pub failures: Vec<view::Failure>,
}

fn traces_view(t: &MessageTraces) -> TracesView {
    TracesView {
        trace_topic: t.trace_topic.clone(),
        traces: t
            .traces
            .iter()
            .map(|m| TraceView {
                message_id: m.message_id.clone(),
                topic: m.topic.clone(),
                records: m
                    .records
                    .iter()
                    .map(|r| TraceRecordView {
                        r#type: r.r#type.clone(),
                        time: view::time(r.time.as_ref()),
                        group: r.group.clone(),
                        topic: r.topic.clone(),
                        message_id: r.message_id.clone(),
                        offset_message_id: r.offset_message_id.clone(),
                        tags: r.tags.clone(),
                        keys: r.keys.clone(),
                        store_host: r.store_host.clone(),
                        client_host: r.client_host.clone(),
                        body_length: r.body_length,
                        cost_time_ms: r.cost_time_ms,
                        message_type: r.message_type.clone(),
                        success: r.success,
                        request_id: r.request_id.clone(),
                        retry_times: r.retry_times,
                        consume_status: r.consume_status.clone(),
                        transaction_id: r.transaction_id.clone(),
                        transaction_state: r.transaction_state.clone(),
                        trace_broker_name: r.trace_broker_name.clone(),
                    })
                    .collect(),
                consumes: m
                    .consumes
                    .iter()
                    .map(|c| ConsumeView {
                        group: c.group.clone(),
                        request_id: c.request_id.clone(),
                        begin_time: view::time(c.begin_time.as_ref()),
                        retry_times: c.retry_times,
                        cost_time_ms: c.cost_time_ms,
                        success: c.success,
                        status: c.status.clone(),
                    })
                    .collect(),
            })
            .collect(),
        failures: view::failures(&t.failures),
    }
}

fn traces_table(t: &TracesView, wide: bool) -> String {
    let mut rows = Vec::new();
    for m in &t.traces {
        for r in &m.records {
            let mut row = vec![
                m.message_id.clone(),
                r.r#type.clone(),
                r.time.clone().unwrap_or_else(|| "-".into()),
                r.group.clone(),
                if r.r#type == "SubBefore" {
                    format!("retry {}", r.retry_times)
                } else {
                    format!("{} ms", r.cost_time_ms)
                },
                match r.r#type.as_str() {
                    "SubBefore" => "-".to_string(),
                    "SubAfter" if !r.consume_status.is_empty() => r.consume_status.clone(),
                    _ if r.success => "SUCCESS".to_string(),
                    _ => "FAILED".to_string(),
                },
            ];
            if wide {
                row.push(r.topic.clone());
                row.push(r.store_host.clone());
                row.push(r.client_host.clone());
                row.push(r.request_id.clone());
            }
            rows.push(row);
        }
    }
    let mut header = vec!["MESSAGE-ID", "TYPE", "TIME", "GROUP", "COST", "STATUS"];
    if wide {
        header.extend(["TOPIC", "STORE-HOST", "CLIENT", "REQUEST-ID"]);
    }
    columns(&header, &rows)
}

/// A flag's time value (milliseconds or RFC 3339).
pub fn flag_time(
    flag: &str,
    t: Option<String>,
) -> Result<Option<prost_types::Timestamp>, CmdError> {
    t.map(|t| {
        parse_time(&t).map_err(|e| match e {
            CmdError::Invalid { message, .. } => CmdError::invalid(flag, message),
            e => e,
        })
    })
    .transpose()
}

/// `--max` as the API's `max_messages`.
pub fn flag_max(max: i64) -> Result<i32, CmdError> {
    i32::try_from(max)
        .ok()
        .filter(|m| (1..=1000).contains(m))
        .ok_or_else(|| CmdError::invalid("--max", format!("must be 1..=1000, got {max}")))
}

/// Prints a list of messages (failures as warnings first).
pub fn print_messages(
    r: &QueryMessagesResponse,
    body: BodyAs,
    output: Format,
) -> Result<(), CmdError> {
    warn_failures(&r.failures);
    let views: Vec<MessageView> = r.messages.iter().map(|m| message_view(m, body)).collect();
    output::print(output, &views, |wide| table(&views, wide))?;
    Ok(())
}

/// A message, as `-o json|yaml` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// Offset message id.
    pub message_id: String,
    /// Client unique key.
    pub unique_key: String,
    /// Topic.
    pub topic: String,
    /// Tags.
    pub tags: String,
    /// Keys.
    pub keys: Vec<String>,
    /// brokerName.
    pub broker_name: String,
    /// Queue id.
    pub queue_id: i32,
    /// Queue offset.
    pub queue_offset: i64,
    /// CommitLog offset.
    pub commit_log_offset: i64,
    /// `text` or `base64`.
    pub body_encoding: String,
    /// The body.
    pub body: String,
    /// Every property.
    pub properties: std::collections::BTreeMap<String, String>,
    /// Born time.
    pub born_time: Option<String>,
    /// Store time.
    pub store_time: Option<String>,
    /// Producer address.
    pub born_host: String,
    /// Broker address.
    pub store_host: String,
    /// Redeliveries.
    pub reconsume_times: i32,
}

/// The view of a message with its body encoded as asked.
pub fn message_view(m: &Message, body: BodyAs) -> MessageView {
    let (body_encoding, body) = match (body, std::str::from_utf8(&m.body)) {
        (BodyAs::Auto, Ok(t)) => ("text", t.to_string()),
        _ => (
            "base64",
            base64::engine::general_purpose::STANDARD.encode(&m.body),
        ),
    };
    MessageView {
        message_id: m.message_id.clone(),
        unique_key: m.unique_key.clone(),
        topic: m.topic.clone(),
        tags: m.tags.clone(),
        keys: m.keys.clone(),
        broker_name: m.broker_name.clone(),
        queue_id: m.queue_id,
        queue_offset: m.queue_offset,
        commit_log_offset: m.commit_log_offset,
        body_encoding: body_encoding.to_string(),
        body,
        properties: m.properties.clone().into_iter().collect(),
        born_time: view::time(m.born_time.as_ref()),
        store_time: view::time(m.store_time.as_ref()),
        born_host: m.born_host.clone(),
        store_host: m.store_host.clone(),
        reconsume_times: m.reconsume_times,
    }
}

fn table(ms: &[MessageView], wide: bool) -> String {
    let rows: Vec<Vec<String>> = ms
        .iter()
        .map(|m| {
            let mut r = vec![
                m.message_id.clone(),
                m.broker_name.clone(),
                m.queue_id.to_string(),
                m.queue_offset.to_string(),
                m.tags.clone(),
                m.keys.join(","),
                m.store_time.clone().unwrap_or_else(|| "-".into()),
            ];
            if wide {
                r.push(m.unique_key.clone());
                r.push(m.body.clone());
            }
            r
        })
        .collect();
    let mut header = vec![
        "MESSAGE-ID",
        "BROKER",
        "QUEUE",
        "OFFSET",
        "TAGS",
        "KEYS",
        "STORED",
    ];
    if wide {
        header.extend(["UNIQUE-KEY", "BODY"]);
    }
    columns(&header, &rows)
}

async fn client(server: &str) -> Result<MessageServiceClient<crate::client::Chan>, CmdError> {
    Ok(MessageServiceClient::new(
        crate::client::channel(server).await?,
    ))
}

/// Runs one `flotilla message` command.
pub async fn run(cmd: MessageCmd) -> Result<(), CmdError> {
    match cmd {
        MessageCmd::Get {
            id,
            on,
            topic,
            body,
            output,
        } => {
            let m = client(&on.server)
                .await?
                .get_message(GetMessageRequest {
                    cluster: on.cluster,
                    topic: topic.unwrap_or_default(),
                    message_id: id,
                })
                .await?
                .into_inner();
            let v = message_view(&m, body);
            output::print(output, &v, |wide| table(std::slice::from_ref(&v), wide))?;
        }
        MessageCmd::Query {
            on,
            topic,
            key,
            from,
            to,
            max,
            body,
            output,
        } => {
            let max = flag_max(max)?;
            let (begin_time, end_time) = (flag_time("--from", from)?, flag_time("--to", to)?);
            let mut c = client(&on.server).await?;
            let r = match key {
                Some(key) => c
                    .query_messages_by_key(QueryMessagesByKeyRequest {
                        cluster: on.cluster,
                        topic,
                        key,
                        begin_time,
                        end_time,
                        max_messages: max,
                    })
                    .await?
                    .into_inner(),
                None => c
                    .query_messages_by_time(QueryMessagesByTimeRequest {
                        cluster: on.cluster,
                        topic,
                        begin_time,
                        end_time,
                        max_messages: max,
                        page_token: String::new(),
                    })
                    .await?
                    .into_inner(),
            };
            print_messages(&r, body, output)?;
        }
        MessageCmd::List {
            on,
            topic,
            broker,
            queue,
            from_offset,
            to_offset,
            max,
            body,
            output,
        } => {
            let max = flag_max(max)?;
            let queue_id = queue
                .map(|q| {
                    i32::try_from(q).ok().filter(|q| *q >= 0).ok_or_else(|| {
                        CmdError::invalid(
                            "--queue",
                            format!("must be a queue id (0 or more), got {q}"),
                        )
                    })
                })
                .transpose()?;
            if from_offset < 0 {
                return Err(CmdError::invalid(
                    "--from-offset",
                    format!("must not be negative, got {from_offset}"),
                ));
            }
            if let Some(to) = to_offset.filter(|t| *t <= from_offset) {
                return Err(CmdError::invalid(
                    "--to-offset",
                    format!("must be above --from-offset ({from_offset}), got {to}"),
                ));
            }
            let r = client(&on.server)
                .await?
                .list_messages(ListMessagesRequest {
                    cluster: on.cluster,
                    topic,
                    broker_name: broker.unwrap_or_default(),
                    queue_id,
                    begin_offset: from_offset,
                    end_offset: to_offset.unwrap_or(0),
                    max_messages: max,
                })
                .await?
                .into_inner();
            print_messages(&r, body, output)?;
        }
        MessageCmd::Trace {
            id,
            on,
            key,
            topic,
            trace_topic,
            output,
        } => {
            let (message_id, key) = match (id, key) {
                (Some(id), None) => (id, String::new()),
                (None, Some(key)) => (String::new(), key),
                _ => {
                    return Err(CmdError::invalid(
                        "flotilla message trace",
                        "give the message ID or --key KEY (one of them)",
                    ));
                }
            };
            let t = client(&on.server)
                .await?
                .get_message_trace(GetMessageTraceRequest {
                    cluster: on.cluster,
                    message_id: message_id.clone(),
                    key: key.clone(),
                    topic: topic.unwrap_or_default(),
                    trace_topic,
                    max_messages: 0,
                })
                .await?
                .into_inner();
            warn_failures(&t.failures);
            let v = traces_view(&t);
            if v.traces.is_empty() && matches!(output, Format::Table | Format::Wide) {
                let what = if key.is_empty() {
                    format!("message {message_id}")
                } else {
                    format!("key {key}")
                };
                eprintln!(
                    "no trace records for {what} in {} (is tracing on in the client, and has \
                     it flushed its records yet?)",
                    v.trace_topic
                );
            }
            output::print(output, &v, |wide| traces_table(&v, wide))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_as_text_or_base64() {
        let m = Message {
            body: b"hello".to_vec(),
            ..Default::default()
        };
        let v = message_view(&m, BodyAs::Auto);
        assert_eq!(
            (v.body_encoding.as_str(), v.body.as_str()),
            ("text", "hello")
        );
        let v = message_view(&m, BodyAs::Base64);
        assert_eq!(v.body, "aGVsbG8=");
        let bin = Message {
            body: vec![0xff, 0x00],
            ..Default::default()
        };
        assert_eq!(message_view(&bin, BodyAs::Auto).body_encoding, "base64");
    }
}

//! `flotilla message get|query`: finding messages through the control plane's MessageService —
//! by the id a send returned (offset id, or the client's unique key with `--topic`) and by key
//! in a time range — with the body as text (when it is UTF-8) or base64, and every property.

use base64::Engine;
use clap::Subcommand;
use flotilla_proto::v1::message_service_client::MessageServiceClient;
use flotilla_proto::v1::{GetMessageRequest, Message, QueryMessagesByKeyRequest};
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
    /// Messages of a topic with a key (KEYS), optionally in a time range.
    Query {
        #[command(flatten)]
        on: On,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Key.
        #[arg(long)]
        key: String,
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

async fn client(server: &str) -> Result<MessageServiceClient<tonic::transport::Channel>, CmdError> {
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
            let max = i32::try_from(max)
                .ok()
                .filter(|m| (1..=1000).contains(m))
                .ok_or_else(|| {
                    CmdError::invalid("--max", format!("must be 1..=1000, got {max}"))
                })?;
            let time = |flag: &str, t: Option<String>| -> Result<_, CmdError> {
                t.map(|t| {
                    parse_time(&t).map_err(|e| match e {
                        CmdError::Invalid { message, .. } => CmdError::invalid(flag, message),
                        e => e,
                    })
                })
                .transpose()
            };
            let r = client(&on.server)
                .await?
                .query_messages_by_key(QueryMessagesByKeyRequest {
                    cluster: on.cluster,
                    topic,
                    key,
                    begin_time: time("--from", from)?,
                    end_time: time("--to", to)?,
                    max_messages: max,
                })
                .await?
                .into_inner();
            warn_failures(&r.failures);
            let views: Vec<MessageView> =
                r.messages.iter().map(|m| message_view(m, body)).collect();
            output::print(output, &views, |wide| table(&views, wide))?;
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

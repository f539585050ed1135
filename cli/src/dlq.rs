//! `flotilla dlq list|resend` and `flotilla producer connections`: a consumer group's
//! dead-letter queue (`%DLQ%<group>`, where messages land once their retries are used up) —
//! browse it, and send a copy of one of its messages back to its original topic — and the
//! producers connected with a producer group.
//!
//! A resend is a new message of the target topic (every group subscribed to it receives it;
//! `--to-topic %RETRY%<group>` redelivers to the one group), keeping the original's body,
//! keys, tags, user properties and unique key. `--request-id` makes a retried resend send once.

use clap::Subcommand;
use flotilla_proto::v1::message_service_client::MessageServiceClient;
use flotilla_proto::v1::{
    GetProducerConnectionsRequest, ListDlqMessagesRequest, ResendDlqMessageRequest,
};
use serde::Serialize;

use crate::api::{self, CmdError};
use crate::message::{BodyAs, flag_max, flag_time, print_messages};
use crate::output::{self, Format, columns};
use crate::topic::{On, warn_failures};
use crate::view;

/// `flotilla dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// Messages in a consumer group's dead-letter queue, earliest first.
    List {
        /// Consumer group.
        group: String,
        #[command(flatten)]
        on: On,
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
    /// Send a copy of a DLQ message (by the MESSAGE-ID `dlq list` shows) to its original topic.
    Resend {
        /// Consumer group.
        group: String,
        /// Offset message id of the DLQ message.
        message_id: String,
        #[command(flatten)]
        on: On,
        /// Send it here instead of its original topic (e.g. %RETRY%GROUP for this group only).
        #[arg(long)]
        to_topic: Option<String>,
        /// A retry with the same id sends once.
        #[arg(long)]
        request_id: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
}

/// `flotilla producer …`.
#[derive(Debug, Subcommand)]
pub enum ProducerCmd {
    /// The producers connected with a producer group (empty when none runs).
    Connections {
        /// Producer group.
        group: String,
        #[command(flatten)]
        on: On,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
}

/// A resend, as `-o json|yaml` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Resent {
    /// Topic the copy went to.
    pub topic: String,
    /// Broker group that stored it.
    pub broker_name: String,
    /// Queue.
    pub queue_id: i32,
    /// Queue offset.
    pub queue_offset: i64,
    /// Offset message id of the copy.
    pub message_id: String,
    /// Unique key (kept from the original).
    pub unique_key: String,
}

async fn client(server: &str) -> Result<MessageServiceClient<crate::client::Chan>, CmdError> {
    Ok(MessageServiceClient::new(
        crate::client::channel(server).await?,
    ))
}

/// Runs one `flotilla dlq` command.
pub async fn run(cmd: DlqCmd) -> Result<(), CmdError> {
    match cmd {
        DlqCmd::List {
            group,
            on,
            from,
            to,
            max,
            body,
            output,
        } => {
            let max = flag_max(max)?;
            let r = client(&on.server)
                .await?
                .list_dlq_messages(ListDlqMessagesRequest {
                    cluster: on.cluster,
                    group,
                    begin_time: flag_time("--from", from)?,
                    end_time: flag_time("--to", to)?,
                    max_messages: max,
                })
                .await?
                .into_inner();
            print_messages(&r, body, output)?;
        }
        DlqCmd::Resend {
            group,
            message_id,
            on,
            to_topic,
            request_id,
            output,
        } => {
            let r = client(&on.server)
                .await?
                .resend_dlq_message(ResendDlqMessageRequest {
                    cluster: on.cluster,
                    group,
                    message_id: message_id.clone(),
                    target_topic: to_topic.unwrap_or_default(),
                    request_id: request_id.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let v = Resent {
                topic: r.topic,
                broker_name: r.broker_name,
                queue_id: r.queue_id,
                queue_offset: r.queue_offset,
                message_id: r.message_id,
                unique_key: r.unique_key,
            };
            output::print(output, &v, |_| {
                format!(
                    "message {message_id} resent to {} as {} ({} queue {} offset {})\n",
                    v.topic, v.message_id, v.broker_name, v.queue_id, v.queue_offset
                )
            })?;
        }
    }
    Ok(())
}

/// Runs one `flotilla producer` command.
pub async fn run_producer(cmd: ProducerCmd) -> Result<(), CmdError> {
    match cmd {
        ProducerCmd::Connections { group, on, output } => {
            let r = api::groups(&on.server)
                .await?
                .get_producer_connections(GetProducerConnectionsRequest {
                    cluster: on.cluster,
                    group,
                })
                .await?
                .into_inner();
            warn_failures(&r.failures);
            let v = view::Producers::from(&r);
            output::print(output, &v, |_| {
                if v.connections.is_empty() {
                    columns(
                        &["CLIENT-ID", "ADDRESS", "LANGUAGE", "VERSION", "BROKERS"],
                        &[],
                    )
                } else {
                    crate::group::clients_table(&v.connections)
                }
            })?;
        }
    }
    Ok(())
}

//! Request processors: one entry point dispatching by request code to the handler modules.
//!
//! The remoting server already wraps each request in a tracing span (code, opaque,
//! connection, remote address) and answers unknown codes with REQUEST_CODE_NOT_SUPPORTED;
//! [`BrokerProcessor`] routes the codes in [`HANDLED_CODES`] to `send`, `pull`,
//! `consumer_manage`, `client_manage`, `query`, `consumer_call` (requests relayed to one
//! consumer on its own connection) and `admin`. Handlers validate their headers
//! and return a [`ProcessError`] (INVALID_PARAMETER, NO_PERMISSION, SYSTEM_ERROR … with a
//! remark) rather than panicking.

use std::sync::Arc;

use flotilla_remoting::{
    Channel, ProcessError, ProcessResult, RemotingCommand, RequestProcessor, request_code as rc,
};

use crate::broker::Broker;
use crate::headers::HeaderError;

pub mod admin;
pub mod client_manage;
pub mod consumer_call;
pub mod consumer_manage;
pub mod producer_manage;
pub mod pull;
pub mod query;
pub mod send;

/// LITE_PULL_MESSAGE (the pull of `DefaultLitePullConsumer`).
pub const LITE_PULL_MESSAGE: i32 = 361;

/// Every request code the broker answers.
pub const HANDLED_CODES: &[i32] = &[
    rc::SEND_MESSAGE,
    rc::SEND_MESSAGE_V2,
    rc::SEND_BATCH_MESSAGE,
    rc::PULL_MESSAGE,
    LITE_PULL_MESSAGE,
    rc::QUERY_MESSAGE,
    rc::VIEW_MESSAGE_BY_ID,
    rc::QUERY_CONSUMER_OFFSET,
    rc::UPDATE_CONSUMER_OFFSET,
    rc::HEART_BEAT,
    rc::UNREGISTER_CLIENT,
    rc::CONSUMER_SEND_MSG_BACK,
    rc::GET_CONSUMER_LIST_BY_GROUP,
    rc::LOCK_BATCH_MQ,
    rc::UNLOCK_BATCH_MQ,
    rc::GET_MAX_OFFSET,
    rc::GET_MIN_OFFSET,
    rc::SEARCH_OFFSET_BY_TIMESTAMP,
    rc::GET_EARLIEST_MSG_STORETIME,
    rc::UPDATE_AND_CREATE_TOPIC,
    rc::DELETE_TOPIC_IN_BROKER,
    rc::GET_ALL_TOPIC_CONFIG,
    rc::GET_TOPIC_CONFIG,
    rc::QUERY_TOPIC_CONSUME_BY_WHO,
    rc::QUERY_TOPICS_BY_CONSUMER,
    rc::CLONE_GROUP_OFFSET,
    rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    rc::DELETE_SUBSCRIPTIONGROUP,
    rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
    rc::UPDATE_BROKER_CONFIG,
    rc::GET_BROKER_CONFIG,
    rc::GET_BROKER_RUNTIME_INFO,
    rc::GET_CONSUME_STATS,
    rc::GET_TOPIC_STATS_INFO,
    rc::GET_CONSUMER_CONNECTION_LIST,
    rc::GET_PRODUCER_CONNECTION_LIST,
    rc::INVOKE_BROKER_TO_RESET_OFFSET,
    rc::GET_ALL_CONSUMER_OFFSET,
    rc::GET_ALL_DELAY_OFFSET,
    rc::TRIGGER_DELETE_FILES,
    rc::FLOTILLA_TRANSFER_LEADERSHIP,
    rc::END_TRANSACTION,
    rc::GET_CONSUMER_RUNNING_INFO,
    rc::CONSUME_MESSAGE_DIRECTLY,
];

/// The broker's request processor.
pub struct BrokerProcessor {
    broker: Arc<Broker>,
}

impl BrokerProcessor {
    /// A processor over `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

/// A header problem becomes SYSTEM_ERROR (a field that does not decode, as Java answers) or
/// INVALID_PARAMETER (a value refused by validation), with the problem as remark.
pub fn bad_header(e: HeaderError) -> ProcessError {
    ProcessError::from(e)
}

/// A successful empty response.
pub fn ok() -> ProcessResult {
    Ok(Some(RemotingCommand::success()))
}

impl RequestProcessor for BrokerProcessor {
    async fn process(&self, channel: Channel, request: RemotingCommand) -> ProcessResult {
        let b = &self.broker;
        match request.code {
            rc::SEND_MESSAGE | rc::SEND_MESSAGE_V2 | rc::SEND_BATCH_MESSAGE => {
                send::send(b, &channel, request).await
            }
            rc::PULL_MESSAGE | LITE_PULL_MESSAGE => pull::pull(b, &channel, request).await,
            rc::CONSUMER_SEND_MSG_BACK => send::send_back(b, &channel, request).await,
            rc::QUERY_MESSAGE => query::query_message(b, &request),
            rc::VIEW_MESSAGE_BY_ID => query::view_message(b, &request),
            rc::GET_MAX_OFFSET => query::max_offset(b, &request),
            rc::GET_MIN_OFFSET => query::min_offset(b, &request),
            rc::SEARCH_OFFSET_BY_TIMESTAMP => query::search_offset(b, &request),
            rc::GET_EARLIEST_MSG_STORETIME => query::earliest_time(b, &request),
            rc::QUERY_CONSUMER_OFFSET => consumer_manage::query_offset(b, &request),
            rc::UPDATE_CONSUMER_OFFSET => consumer_manage::update_offset(b, &request),
            rc::GET_CONSUMER_LIST_BY_GROUP => consumer_manage::consumer_list(b, &request),
            rc::LOCK_BATCH_MQ => consumer_manage::lock(b, &request),
            rc::UNLOCK_BATCH_MQ => consumer_manage::unlock(b, &request),
            rc::HEART_BEAT => client_manage::heartbeat(b, &channel, &request),
            rc::GET_PRODUCER_CONNECTION_LIST => producer_manage::connection_list(b, &request),
            rc::UNREGISTER_CLIENT => client_manage::unregister(b, &channel, &request),
            rc::GET_CONSUMER_RUNNING_INFO => consumer_call::running_info(b, &request).await,
            rc::CONSUME_MESSAGE_DIRECTLY => consumer_call::consume_directly(b, &request).await,
            rc::END_TRANSACTION => crate::transaction::end_transaction(b, &channel, &request).await,
            _ => admin::handle(b, &channel, request).await,
        }
    }
}

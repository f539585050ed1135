//! The request-handling contract shared by the server and the client.
//!
//! A [`RequestProcessor`] turns one request into an optional response. The server routes
//! requests to processors by code; the client uses one for server-initiated requests
//! (e.g. `NOTIFY_CONSUMER_IDS_CHANGED`). Processors return [`ProcessError`] for failures,
//! which the transport turns into a response with that code and remark, so handlers can
//! use `?` on header accessors and body parsing.

use std::future::Future;
use std::pin::Pin;

use crate::channel::Channel;
use crate::code::response_code;
use crate::command::{HeaderError, RemotingCommand};
use crate::fastjson::FastJsonError;

/// A request failed; it becomes a response with `code` and `remark`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{remark} (code {code})")]
pub struct ProcessError {
    /// The response code to answer with.
    pub code: i32,
    /// The remark to answer with.
    pub remark: String,
}

impl ProcessError {
    /// An error answered with `code` and `remark`.
    pub fn new(code: i32, remark: impl Into<String>) -> Self {
        Self {
            code,
            remark: remark.into(),
        }
    }

    /// A SYSTEM_ERROR.
    pub fn system(remark: impl Into<String>) -> Self {
        Self::new(response_code::SYSTEM_ERROR, remark)
    }

    /// An INVALID_PARAMETER.
    pub fn invalid(remark: impl Into<String>) -> Self {
        Self::new(response_code::INVALID_PARAMETER, remark)
    }

    /// Stable error code (there is one kind; the wire code says more).
    pub fn code(&self) -> &'static str {
        "REQUEST_FAILED"
    }

    /// The response this error becomes.
    pub fn into_response(self) -> RemotingCommand {
        RemotingCommand::response(self.code, Some(self.remark))
    }
}

impl From<HeaderError> for ProcessError {
    fn from(e: HeaderError) -> Self {
        // Java answers a header that fails to decode with SYSTEM_ERROR and the exception text,
        // and a value refused by validation with INVALID_PARAMETER.
        Self::new(e.response_code(), e.to_string())
    }
}

impl From<FastJsonError> for ProcessError {
    fn from(e: FastJsonError) -> Self {
        Self::system(format!("invalid body: {e}"))
    }
}

impl From<serde_json::Error> for ProcessError {
    fn from(e: serde_json::Error) -> Self {
        Self::system(format!("invalid body: {e}"))
    }
}

/// Checks every request before its processor runs, as the RPC hooks of a Java
/// `NettyRemotingServer` do (the broker's and nameserver's ACL check is one).
///
/// An `Err` is the answer: the processor never sees the request. The check is synchronous
/// and must not block; it runs on the request's own task.
pub trait RequestHook: Send + Sync + 'static {
    /// Accepts `request` from `remote`, or refuses it with the error to answer.
    fn before(
        &self,
        remote: std::net::SocketAddr,
        request: &RemotingCommand,
    ) -> Result<(), ProcessError>;
}

/// How a served request ended, for [`RpcObserver`] (RocketMQ's `result` label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcResult {
    /// Answered (whatever the response code).
    Success,
    /// A oneway request: processed, nothing sent back.
    Oneway,
    /// The processor (or the request hook) failed; its error was the answer.
    ProcessRequestFailed,
    /// The answer could not be written to the connection.
    WriteChannelFailed,
}

impl RpcResult {
    /// The label value RocketMQ 5 uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Oneway => "oneway",
            Self::ProcessRequestFailed => "process_request_failed",
            Self::WriteChannelFailed => "write_channel_failed",
        }
    }
}

/// One processed request, as [`RpcObserver`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct RpcSample {
    /// The request code.
    pub request_code: i32,
    /// The answer's code (`None` when nothing was answered: oneway, or answered elsewhere).
    pub response_code: Option<i32>,
    /// How it ended.
    pub result: RpcResult,
    /// The processor held the request waiting for data ([`mark_long_polling`]).
    pub long_polling: bool,
    /// From dispatch to the answer written.
    pub elapsed: std::time::Duration,
}

/// Watches every request a server processes, as RocketMQ's `RemotingMetricsManager` does
/// (`rocketmq_rpc_latency`). Called on the request's own task once it is answered; must be
/// cheap and must not block.
pub trait RpcObserver: Send + Sync + 'static {
    /// One request was processed.
    fn observe(&self, sample: RpcSample);
}

tokio::task_local! {
    static LONG_POLLING: std::sync::Arc<std::sync::atomic::AtomicBool>;
}

/// Marks the request being processed on this task as held for long polling, so its latency
/// is reported with `is_long_polling=true` (a held pull's latency is its hold time, not the
/// broker's speed). Does nothing outside a server's request task.
pub fn mark_long_polling() {
    let _ = LONG_POLLING.try_with(|f| f.store(true, std::sync::atomic::Ordering::Relaxed));
}

/// Runs `fut` with a fresh long-polling flag; returns its output and whether it was marked.
pub(crate) async fn with_long_polling_flag<F: Future>(fut: F) -> (F::Output, bool) {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out = LONG_POLLING.scope(flag.clone(), fut).await;
    (out, flag.load(std::sync::atomic::Ordering::Relaxed))
}

/// What a processor returns: `Ok(Some(resp))` to answer, `Ok(None)` for no answer.
pub type ProcessResult = Result<Option<RemotingCommand>, ProcessError>;

/// Handles requests. Implement with `async fn process(...)` in the impl block.
///
/// The transport sets the response's opaque, response flag and serialize type, and drops
/// the response for oneway requests.
pub trait RequestProcessor: Send + Sync + 'static {
    /// Handles one request arriving on `channel`.
    fn process(
        &self,
        channel: Channel,
        request: RemotingCommand,
    ) -> impl Future<Output = ProcessResult> + Send;
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Object-safe form of [`RequestProcessor`], so processors of different types share a table.
pub(crate) trait DynProcessor: Send + Sync + 'static {
    fn process_boxed(
        &self,
        channel: Channel,
        request: RemotingCommand,
    ) -> BoxFuture<'_, ProcessResult>;
}

impl<P: RequestProcessor> DynProcessor for P {
    fn process_boxed(
        &self,
        channel: Channel,
        request: RemotingCommand,
    ) -> BoxFuture<'_, ProcessResult> {
        Box::pin(self.process(channel, request))
    }
}

/// A processor made from an async closure (see [`processor_fn`]).
pub struct FnProcessor<F>(F);

/// Wraps `f(channel, request) -> impl Future<Output = ProcessResult>` as a processor.
pub fn processor_fn<F, Fut>(f: F) -> FnProcessor<F>
where
    F: Fn(Channel, RemotingCommand) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProcessResult> + Send + 'static,
{
    FnProcessor(f)
}

impl<F, Fut> RequestProcessor for FnProcessor<F>
where
    F: Fn(Channel, RemotingCommand) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProcessResult> + Send + 'static,
{
    fn process(
        &self,
        channel: Channel,
        request: RemotingCommand,
    ) -> impl Future<Output = ProcessResult> + Send {
        (self.0)(channel, request)
    }
}

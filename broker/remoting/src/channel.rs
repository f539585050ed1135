//! One remoting connection, usable in both directions.
//!
//! A [`Channel`] is the handle to a live TCP connection, on the client and on the server
//! alike: it sends requests and matches their responses by opaque (the response table),
//! sends oneways and responses, and reports when the connection closes. RocketMQ uses the
//! same connection for broker→client requests (`NOTIFY_CONSUMER_IDS_CHANGED`,
//! `GET_CONSUMER_RUNNING_INFO`), so both ends run the same driver: a reader task that routes
//! responses to waiters and requests to a [`Dispatcher`], and a writer task that drains a
//! bounded queue of already-encoded frames (encoding happens on the sender's task, so many
//! senders encode in parallel and the writer only batches and writes).
//!
//! Requests are handled concurrently (one task each), bounded by per-connection and global
//! in-flight limits — a count and a byte budget per connection, a count over all — and over
//! a limit a request is answered `SYSTEM_BUSY` at once.
//! Responses are written in completion order, each frame whole. A response that would exceed
//! the frame cap is never dropped silently: the requester gets a SYSTEM_ERROR answer naming
//! its size and the cap instead of waiting for its timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, warn};

use crate::code::response_code;
use crate::codec::{CodecError, RemotingCodec, encode_into};
use crate::command::{FLAG_RESPONSE, RemotingCommand, next_opaque};
use crate::error::RemotingError;
use crate::processor::{
    DynProcessor, RequestHook, RpcObserver, RpcResult, RpcSample, with_long_polling_flag,
};

/// How long a stopping connection waits for its in-flight handlers.
const GRACE: Duration = Duration::from_secs(10);

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Limits of one connection driver.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Frame cap for both directions.
    pub max_frame: usize,
    /// Encoded frames that may wait for the writer before senders wait.
    pub write_queue: usize,
    /// Requests of this connection processed at once; more get SYSTEM_BUSY.
    pub max_inflight_per_connection: usize,
    /// Bytes of requests (body and header fields) of this connection processed at once;
    /// a request that would go over gets SYSTEM_BUSY. One request larger than this on its
    /// own is admitted only while nothing else of the connection is in flight.
    pub max_inflight_bytes_per_connection: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            max_frame: crate::codec::DEFAULT_MAX_FRAME,
            write_queue: 8192,
            max_inflight_per_connection: 4096,
            max_inflight_bytes_per_connection: 64 * 1024 * 1024,
        }
    }
}

struct Inner {
    id: u64,
    remote: SocketAddr,
    local: SocketAddr,
    tx: mpsc::Sender<Bytes>,
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    closed: CancellationToken,
    max_frame: usize,
}

/// A live connection: send requests (matched by opaque), oneways and responses; learn
/// when it closes. Cheap to clone. Processors receive the channel a request came on.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.inner.id)
            .field("remote", &self.inner.remote)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Removes a pending entry when an invoke ends in any way (answer, timeout, cancellation).
struct PendingGuard<'a> {
    inner: &'a Inner,
    opaque: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner.pending.lock().remove(&self.opaque);
    }
}

impl Channel {
    /// Process-unique id of this connection.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.inner.remote
    }

    /// Our end's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// Resolves when the connection closes (immediately if it already has).
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await;
    }

    /// Closes the connection (queued frames are still written).
    pub fn close(&self) {
        self.inner.closed.cancel();
    }

    /// Number of requests waiting for a response.
    pub fn pending_requests(&self) -> usize {
        self.inner.pending.lock().len()
    }

    fn closed_err(&self) -> RemotingError {
        RemotingError::Closed(self.inner.remote.to_string())
    }

    /// Encodes and queues one frame as is (no opaque or flag changes).
    pub async fn send(&self, cmd: &RemotingCommand) -> Result<(), RemotingError> {
        let mut buf = BytesMut::new();
        encode_into(cmd, self.inner.max_frame, &mut buf)?;
        if self.is_closed() {
            return Err(self.closed_err());
        }
        self.inner
            .tx
            .send(buf.freeze())
            .await
            .map_err(|_| self.closed_err())
    }

    /// Sends a request and waits up to `timeout` for its response. A fresh opaque is
    /// assigned (opaques are unique per process), and the response-flag is cleared.
    pub async fn invoke(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        cmd.opaque = next_opaque();
        cmd.flag &= !FLAG_RESPONSE;
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().insert(cmd.opaque, tx);
        let _guard = PendingGuard {
            inner: &self.inner,
            opaque: cmd.opaque,
        };
        let work = async {
            self.send(&cmd).await?;
            tokio::select! {
                r = rx => r.map_err(|_| self.closed_err()),
                () = self.inner.closed.cancelled() => Err(self.closed_err()),
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(RemotingError::Timeout {
                addr: self.inner.remote.to_string(),
                timeout,
            }),
        }
    }

    /// Sends a oneway request (marked oneway, fresh opaque); no response is expected.
    pub async fn invoke_oneway(&self, cmd: RemotingCommand) -> Result<(), RemotingError> {
        let mut cmd = cmd.oneway();
        cmd.opaque = next_opaque();
        cmd.flag &= !FLAG_RESPONSE;
        self.send(&cmd).await
    }

    /// Answers `request` with `response` (echoes opaque and serialize type, sets the
    /// response flag). Does nothing for oneway requests.
    pub async fn respond(
        &self,
        request: &RemotingCommand,
        response: RemotingCommand,
    ) -> Result<(), RemotingError> {
        if request.is_oneway() {
            return Ok(());
        }
        self.send(&response.answer(request)).await
    }
}

/// Routes inbound requests to processors, with in-flight limits.
pub(crate) struct Dispatcher {
    pub(crate) processors: HashMap<i32, Arc<dyn DynProcessor>>,
    pub(crate) default: Option<Arc<dyn DynProcessor>>,
    /// Runs before every processor (ACL); its error is the answer.
    pub(crate) hook: Option<Arc<dyn RequestHook>>,
    /// Sees every processed request (metrics).
    pub(crate) observer: Option<Arc<dyn RpcObserver>>,
    pub(crate) global: Arc<Semaphore>,
    /// Tracks every handler task, for graceful shutdown.
    pub(crate) tracker: TaskTracker,
}

impl Dispatcher {
    fn dispatch(
        &self,
        channel: &Channel,
        conn_limit: &Arc<Semaphore>,
        byte_limit: &(Arc<Semaphore>, u32),
        req: RemotingCommand,
    ) {
        let processor = self
            .processors
            .get(&req.code)
            .or(self.default.as_ref())
            .cloned();
        let Some(processor) = processor else {
            debug!(code = req.code, "request code not supported");
            let resp = RemotingCommand::response(
                response_code::REQUEST_CODE_NOT_SUPPORTED,
                Some(format!(" request type {} not supported", req.code)),
            );
            spawn_respond(&self.tracker, channel.clone(), req, resp);
            return;
        };
        let cost = request_bytes(&req).clamp(1, byte_limit.1);
        let permits = conn_limit
            .clone()
            .try_acquire_owned()
            .ok()
            .and_then(|c| {
                byte_limit
                    .0
                    .clone()
                    .try_acquire_many_owned(cost)
                    .ok()
                    .map(|b| (c, b))
            })
            .and_then(|c| self.global.clone().try_acquire_owned().ok().map(|g| (c, g)));
        let Some(permits) = permits else {
            warn!(code = req.code, cost, remote = %channel.remote_addr(), "too many requests in flight");
            let resp = RemotingCommand::response(
                response_code::SYSTEM_BUSY,
                Some("[OVERLOAD] too many requests in flight, try again later".to_string()),
            );
            spawn_respond(&self.tracker, channel.clone(), req, resp);
            return;
        };
        let span = info_span!(
            "remoting_request",
            code = req.code,
            opaque = req.opaque,
            conn = channel.id(),
            remote = %channel.remote_addr()
        );
        let channel = channel.clone();
        let hook = self.hook.clone();
        let observer = self.observer.clone();
        self.tracker.spawn(
            async move {
                let started = std::time::Instant::now();
                let code = req.code;
                let _permits: (
                    (OwnedSemaphorePermit, OwnedSemaphorePermit),
                    OwnedSemaphorePermit,
                ) = permits;
                let oneway = req.is_oneway();
                let header = RemotingCommand {
                    body: Bytes::new(),
                    ext_fields: HashMap::new(),
                    ..req.clone()
                };
                let checked = match &hook {
                    Some(h) => h.before(channel.remote_addr(), &req),
                    None => Ok(()),
                };
                let (result, long_polling) = match checked {
                    Ok(()) => {
                        with_long_polling_flag(processor.process_boxed(channel.clone(), req)).await
                    }
                    Err(e) => {
                        debug!(error = %e, "request refused before processing");
                        (Err(e), false)
                    }
                };
                let observe = |response_code, result| {
                    if let Some(o) = &observer {
                        o.observe(RpcSample {
                            request_code: code,
                            response_code,
                            result,
                            long_polling,
                            elapsed: started.elapsed(),
                        });
                    }
                };
                let (resp, mut outcome) = match result {
                    Ok(Some(resp)) => (resp, RpcResult::Success),
                    Ok(None) => {
                        observe(
                            None,
                            if oneway {
                                RpcResult::Oneway
                            } else {
                                RpcResult::Success
                            },
                        );
                        return;
                    }
                    Err(e) => {
                        debug!(error = %e, "request failed");
                        (e.into_response(), RpcResult::ProcessRequestFailed)
                    }
                };
                let response_code = resp.code;
                if oneway {
                    outcome = RpcResult::Oneway;
                } else if !send_answer(&channel, resp, &header).await {
                    outcome = RpcResult::WriteChannelFailed;
                }
                observe((!oneway).then_some(response_code), outcome);
            }
            .instrument(span),
        );
    }
}

fn spawn_respond(
    tracker: &TaskTracker,
    channel: Channel,
    req: RemotingCommand,
    resp: RemotingCommand,
) {
    if req.is_oneway() {
        return;
    }
    tracker.spawn(async move {
        send_answer(&channel, resp, &req).await;
    });
}

/// What a request counts against the per-connection byte budget: its body and header
/// fields, plus a fixed frame overhead.
fn request_bytes(req: &RemotingCommand) -> u32 {
    let ext: usize = req.ext_fields.iter().map(|(k, v)| k.len() + v.len()).sum();
    let total = req.body.len() + ext + req.remark.as_ref().map_or(0, String::len) + 64;
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// Sends `resp` as the answer to `req`. A response too large for the frame cap is replaced
/// by a SYSTEM_ERROR answer saying so, so the requester gets an answer instead of a timeout.
/// Sends the answer; false when it could not be written.
async fn send_answer(channel: &Channel, resp: RemotingCommand, req: &RemotingCommand) -> bool {
    match channel.send(&resp.answer(req)).await {
        Ok(()) => true,
        Err(RemotingError::Protocol(CodecError::FrameTooLarge { len, max })) => {
            warn!(
                code = req.code,
                len,
                max,
                remote = %channel.remote_addr(),
                "response over the frame cap answered with an error"
            );
            let err = RemotingCommand::response(
                response_code::SYSTEM_ERROR,
                Some(format!(
                    "the response of {len} bytes exceeds the {max}-byte frame limit; ask for less"
                )),
            );
            match channel.send(&err.answer(req)).await {
                Ok(()) => true,
                Err(e) => {
                    debug!(error = %e, "cannot send response");
                    false
                }
            }
        }
        Err(e) => {
            debug!(error = %e, "cannot send response");
            false
        }
    }
}

/// Starts the reader and writer tasks of a connection and returns its channel.
///
/// `stop` ends the reader (no new requests are read); the channel closes when the peer
/// closes, on a protocol error, on [`Channel::close`], or after `stop` once in-flight
/// handlers are done (tracked by the dispatcher's tracker).
pub(crate) fn start_connection(
    stream: TcpStream,
    config: &ChannelConfig,
    dispatcher: Arc<Dispatcher>,
    stop: CancellationToken,
) -> std::io::Result<Channel> {
    let remote = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let _ = stream.set_nodelay(true);
    let (read_half, mut write_half) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(config.write_queue.max(1));
    let closed = CancellationToken::new();
    let inner = Arc::new(Inner {
        id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
        remote,
        local,
        tx,
        pending: Mutex::new(HashMap::new()),
        closed: closed.clone(),
        max_frame: config.max_frame,
    });
    let channel = Channel { inner };

    // Writer: batches queued frames into few syscalls; on close, flushes what is queued.
    let wclosed = closed.clone();
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            let first = tokio::select! {
                biased;
                m = rx.recv() => m,
                () = wclosed.cancelled() => None,
            };
            let Some(first) = first else { break };
            buf.extend_from_slice(&first);
            while buf.len() < 1024 * 1024 {
                match rx.try_recv() {
                    Ok(more) => buf.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if write_half.write_all(&buf).await.is_err() {
                wclosed.cancel();
                break;
            }
            buf.clear();
        }
        // Best effort: what was queued before the close still goes out.
        while let Ok(more) = rx.try_recv() {
            buf.extend_from_slice(&more);
        }
        if !buf.is_empty() {
            let _ = write_half.write_all(&buf).await;
        }
        let _ = write_half.shutdown().await;
    });

    // Reader: responses complete waiters; requests go to the dispatcher.
    let rchannel = channel.clone();
    let limit = config
        .max_inflight_per_connection
        .clamp(1, u32::MAX as usize);
    let conn_limit = Arc::new(Semaphore::new(limit));
    let byte_budget =
        u32::try_from(config.max_inflight_bytes_per_connection.max(1)).unwrap_or(u32::MAX);
    let byte_limit = (Arc::new(Semaphore::new(byte_budget as usize)), byte_budget);
    let codec = RemotingCodec::with_max_frame(config.max_frame);
    tokio::spawn(async move {
        let mut frames = FramedRead::new(read_half, codec);
        let inner = &rchannel.inner;
        loop {
            let next = tokio::select! {
                biased;
                () = inner.closed.cancelled() => break,
                () = stop.cancelled() => break,
                f = frames.next() => f,
            };
            match next {
                None => break,
                Some(Err(e)) => {
                    warn!(remote = %inner.remote, error = %e, code = e.code(), "closing connection: bad frame");
                    break;
                }
                Some(Ok(cmd)) if cmd.is_response() => {
                    let waiter = inner.pending.lock().remove(&cmd.opaque);
                    match waiter {
                        Some(w) => {
                            let _ = w.send(cmd);
                        }
                        None => debug!(opaque = cmd.opaque, "dropping unmatched response"),
                    }
                }
                Some(Ok(cmd)) => dispatcher.dispatch(&rchannel, &conn_limit, &byte_limit, cmd),
            }
        }
        if stop.is_cancelled() && !inner.closed.is_cancelled() {
            // Graceful stop: let this connection's in-flight handlers answer first.
            // Holding every permit means no handler of this connection is still running.
            let all = u32::try_from(limit).unwrap_or(u32::MAX);
            let _ = tokio::time::timeout(GRACE, conn_limit.acquire_many(all)).await;
        }
        inner.closed.cancel();
        // Waiters see `Closed` through their dropped senders.
        inner.pending.lock().clear();
    });
    Ok(channel)
}

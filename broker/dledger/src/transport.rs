//! Peer-to-peer transport: length-prefixed frames over plain tokio TCP.
//!
//! Why not `flotilla-remoting`: the remoting protocol carries a JSON header per frame and a
//! string map of fields, built for clients that speak RocketMQ. DLedger traffic is internal to
//! the group, its hot message is "these CommitLog bytes from offset X", and the Java DLedger
//! wire format is not something any client needs, so a small binary format (`crate::wire`)
//! on `tokio_util`'s `LengthDelimitedCodec` is simpler and copies less.
//!
//! Each [`PeerClient`] keeps at most one connection and uses it for one request at a time
//! (request, then response). The leader's replicator and the election code use separate
//! clients so a slow append never delays a vote. **The peer address is resolved on every
//! connect** (`TcpStream::connect` with the `host:port` string), so a peer whose DNS name
//! moves to a new IP is found again after a reconnect. Any error drops the connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::config::Peer;
use crate::wire::{MAX_FRAME, Request, Response, WireError};

/// Errors of one RPC.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TCP connection could not be established (includes name resolution failures).
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The address as configured.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("i/o with {addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The peer closed the connection before answering.
    #[error("{0} closed the connection")]
    Closed(String),
    /// No answer within the RPC timeout.
    #[error("no answer from {0} within the rpc timeout")]
    Timeout(String),
    /// The answer could not be decoded.
    #[error("bad frame from {addr}: {source}")]
    Decode {
        /// The address.
        addr: String,
        /// The decoding error.
        #[source]
        source: WireError,
    },
    /// The peer belongs to another DLedger group (a configuration mistake).
    #[error("{addr} belongs to group {got}, not {expected}")]
    GroupMismatch {
        /// The address.
        addr: String,
        /// Our group.
        expected: String,
        /// The peer's group.
        got: String,
    },
}

impl TransportError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            TransportError::Connect { .. } => "DLEDGER_CONNECT_FAILED",
            TransportError::Io { .. } => "DLEDGER_IO",
            TransportError::Closed(_) => "DLEDGER_CONNECTION_CLOSED",
            TransportError::Timeout(_) => "DLEDGER_RPC_TIMEOUT",
            TransportError::Decode { .. } => "DLEDGER_BAD_FRAME",
            TransportError::GroupMismatch { .. } => "DLEDGER_GROUP_MISMATCH",
        }
    }
}

type Conn = Framed<TcpStream, LengthDelimitedCodec>;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// A client for one peer.
#[derive(Debug)]
pub struct PeerClient {
    group: String,
    peer: Peer,
    rpc_timeout: Duration,
    conn: tokio::sync::Mutex<Option<Conn>>,
}

impl PeerClient {
    /// A client for `peer`; nothing is connected until the first call.
    pub fn new(group: &str, peer: Peer, rpc_timeout: Duration) -> PeerClient {
        PeerClient {
            group: group.to_string(),
            peer,
            rpc_timeout,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The peer.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Drops the connection if no call is using it (a call in progress keeps it until done).
    pub fn close(&self) {
        if let Ok(mut g) = self.conn.try_lock() {
            *g = None;
        }
    }

    /// Sends `req` and waits for the answer (connecting first if needed).
    pub async fn call(&self, req: &Request) -> Result<Response, TransportError> {
        let frame = req.encode(&self.group);
        let mut guard = self.conn.lock().await;
        // The connection is taken out of the slot for the exchange and put back only after a
        // complete answer. If this future is dropped midway (a caller stopped waiting), the
        // connection is dropped with it: a later call can never read this call's answer.
        let conn = guard.take();
        let res = tokio::time::timeout(self.rpc_timeout, self.exchange(conn, frame)).await;
        match res {
            Ok(Ok((conn, resp))) => {
                *guard = Some(conn);
                Ok(resp)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(TransportError::Timeout(self.peer.addr.clone())),
        }
    }

    async fn exchange(
        &self,
        conn: Option<Conn>,
        frame: Bytes,
    ) -> Result<(Conn, Response), TransportError> {
        let addr = &self.peer.addr;
        let mut conn = match conn {
            Some(c) => c,
            None => {
                // Resolved here, on every connect: a moved DNS name is picked up on reconnect.
                let s = TcpStream::connect(addr.as_str()).await.map_err(|source| {
                    TransportError::Connect {
                        addr: addr.clone(),
                        source,
                    }
                })?;
                let _ = s.set_nodelay(true);
                Framed::new(s, codec())
            }
        };
        conn.send(frame)
            .await
            .map_err(|source| TransportError::Io {
                addr: addr.clone(),
                source,
            })?;
        let buf = match conn.next().await {
            None => return Err(TransportError::Closed(addr.clone())),
            Some(Err(source)) => {
                return Err(TransportError::Io {
                    addr: addr.clone(),
                    source,
                });
            }
            Some(Ok(b)) => b.freeze(),
        };
        let (group, resp) = Response::decode(buf).map_err(|source| TransportError::Decode {
            addr: addr.clone(),
            source,
        })?;
        if group != self.group {
            return Err(TransportError::GroupMismatch {
                addr: addr.clone(),
                expected: self.group.clone(),
                got: group,
            });
        }
        Ok((conn, resp))
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// What the server hands requests to.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request from a peer.
    fn handle(&self, req: Request) -> Response;
}

/// Accepts peer connections until `shutdown` turns true; every connection is served by its own
/// task, and all of them end when this future ends or is dropped.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    group: String,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let conn_shutdown = shutdown.clone();
    loop {
        tokio::select! {
            _ = crate::transport::stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let (h, g, sd) = (handler.clone(), group.clone(), conn_shutdown.clone());
                    conns.spawn(async move {
                        serve_conn(stream, g, h, sd).await;
                        tracing::trace!(%remote, "peer connection closed");
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

async fn serve_conn<H: Handler>(
    stream: TcpStream,
    group: String,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn = Framed::new(stream, codec());
    loop {
        let frame = tokio::select! {
            _ = crate::transport::stopped(&mut shutdown) => return,
            f = conn.next() => f,
        };
        let buf = match frame {
            Some(Ok(b)) => b.freeze(),
            _ => return,
        };
        let resp = match Request::decode(buf) {
            Err(e) => Response::Error {
                code: e.code().to_string(),
                message: e.to_string(),
            },
            Ok((g, _)) if g != group => Response::Error {
                code: "DLEDGER_GROUP_MISMATCH".into(),
                message: format!("this member belongs to group {group}, not {g}"),
            },
            Ok((_, req)) => handler.handle(req),
        };
        let fatal = matches!(resp, Response::Error { .. });
        if conn.send(resp.encode(&group)).await.is_err() || fatal {
            return;
        }
    }
}

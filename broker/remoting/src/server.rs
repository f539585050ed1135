//! `RemotingServer`: accepts remoting connections and dispatches requests by code.
//!
//! The nameserver and the broker are both a [`RemotingServer`] plus processors. The server
//! promises RocketMQ's transport semantics: an unknown code is answered
//! `REQUEST_CODE_NOT_SUPPORTED` (" request type N not supported"), overload is answered
//! `SYSTEM_BUSY`, oneway requests get no reply, responses echo the opaque with the
//! response bit set and use the request's header encoding, and a malformed frame closes
//! only its own connection. Requests of one connection are processed concurrently.
//! [`RemotingServer::shutdown`] stops accepting, lets in-flight requests answer, then
//! closes every connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::channel::{Channel, ChannelConfig, Dispatcher, start_connection};
use crate::processor::{DynProcessor, RequestHook, RequestProcessor, RpcObserver};

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Per-connection settings (frame cap, write queue, in-flight per connection).
    pub channel: ChannelConfig,
    /// Requests processed at once over all connections; more get SYSTEM_BUSY.
    pub max_inflight_global: usize,
    /// How long [`RemotingServer::shutdown`] waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            channel: ChannelConfig::default(),
            max_inflight_global: 65_536,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Builds a server: register processors, then [`ServerBuilder::bind`].
pub struct ServerBuilder {
    config: ServerConfig,
    processors: HashMap<i32, Arc<dyn DynProcessor>>,
    default: Option<Arc<dyn DynProcessor>>,
    hook: Option<Arc<dyn RequestHook>>,
    observer: Option<Arc<dyn RpcObserver>>,
}

impl ServerBuilder {
    /// Reports every processed request to `observer` (`rocketmq_rpc_latency`).
    pub fn observer(mut self, observer: Arc<dyn RpcObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Checks every request with `hook` before its processor runs (the ACL check).
    pub fn hook(mut self, hook: Arc<dyn RequestHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Sets the limits.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Routes requests with `code` to `processor`.
    pub fn register<P: RequestProcessor>(mut self, code: i32, processor: Arc<P>) -> Self {
        self.processors.insert(code, processor);
        self
    }

    /// Routes every code in `codes` to `processor`.
    pub fn register_codes<P: RequestProcessor>(mut self, codes: &[i32], processor: Arc<P>) -> Self {
        for code in codes {
            let p: Arc<dyn DynProcessor> = processor.clone();
            self.processors.insert(*code, p);
        }
        self
    }

    /// Routes codes without a registered processor to `processor` (instead of answering
    /// REQUEST_CODE_NOT_SUPPORTED).
    pub fn default_processor<P: RequestProcessor>(mut self, processor: Arc<P>) -> Self {
        self.default = Some(processor);
        self
    }

    /// Binds `addr` and starts accepting.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> std::io::Result<RemotingServer> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let tracker = TaskTracker::new();
        let dispatcher = Arc::new(Dispatcher {
            processors: self.processors,
            default: self.default,
            hook: self.hook,
            observer: self.observer,
            global: Arc::new(Semaphore::new(self.config.max_inflight_global.max(1))),
            tracker: tracker.clone(),
        });
        let stop = CancellationToken::new();
        let channels: Arc<Mutex<HashMap<u64, Channel>>> = Arc::default();
        let accept = tokio::spawn(accept_loop(
            listener,
            self.config.channel.clone(),
            dispatcher,
            stop.clone(),
            channels.clone(),
        ));
        info!(addr = %local, "remoting server listening");
        Ok(RemotingServer {
            local,
            stop,
            tracker,
            channels,
            accept: Mutex::new(Some(accept)),
            grace: self.config.shutdown_grace,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: ChannelConfig,
    dispatcher: Arc<Dispatcher>,
    stop: CancellationToken,
    channels: Arc<Mutex<HashMap<u64, Channel>>>,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match start_connection(stream, &config, dispatcher.clone(), stop.clone()) {
            Ok(channel) => {
                debug!(conn = channel.id(), remote = %channel.remote_addr(), "connection accepted");
                channels.lock().insert(channel.id(), channel.clone());
                let channels = channels.clone();
                tokio::spawn(async move {
                    channel.closed().await;
                    channels.lock().remove(&channel.id());
                    debug!(conn = channel.id(), "connection closed");
                });
            }
            Err(e) => debug!(error = %e, "connection dropped before setup"),
        }
    }
}

/// A running server. Dropping it does not stop it; call [`RemotingServer::shutdown`].
pub struct RemotingServer {
    local: SocketAddr,
    stop: CancellationToken,
    tracker: TaskTracker,
    channels: Arc<Mutex<HashMap<u64, Channel>>>,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
    grace: Duration,
}

impl RemotingServer {
    /// A builder with default limits and no processors.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: ServerConfig::default(),
            processors: HashMap::new(),
            default: None,
            hook: None,
            observer: None,
        }
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The open connections.
    pub fn channels(&self) -> Vec<Channel> {
        self.channels.lock().values().cloned().collect()
    }

    /// The open connection with this id.
    pub fn channel(&self, id: u64) -> Option<Channel> {
        self.channels.lock().get(&id).cloned()
    }

    /// Stops accepting and reading, waits (up to the grace period) for in-flight requests
    /// to answer, then closes every connection.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let accept = self.accept.lock().take();
        if let Some(accept) = accept {
            let _ = accept.await;
        }
        self.tracker.close();
        let _ = tokio::time::timeout(self.grace, self.tracker.wait()).await;
        for ch in self.channels() {
            ch.close();
        }
        info!(addr = %self.local, "remoting server stopped");
    }
}

//! `RemotingClient`: request/response over pooled connections, by address.
//!
//! Brokers use it to register with nameservers, the agent for local admin calls and
//! `flotilla bench` to drive load. It keeps up to `connections_per_addr` connections per
//! `host:port` (opened lazily, shared round-robin, pipelined), replaces a connection
//! once it breaks, matches responses by opaque, and cleans the response table on timeout.
//! Requests the server sends back on the same connection (e.g.
//! `NOTIFY_CONSUMER_IDS_CHANGED`) go to an optional handler; without one they are
//! answered `REQUEST_CODE_NOT_SUPPORTED`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span};

use crate::channel::{Channel, ChannelConfig, Dispatcher, start_connection};
use crate::command::RemotingCommand;
use crate::error::RemotingError;
use crate::processor::{DynProcessor, RequestProcessor};
use crate::signing::SessionCredentials;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Per-connection settings.
    pub channel: ChannelConfig,
    /// Connect timeout (also bounded by the invoke timeout).
    pub connect_timeout: Duration,
    /// Connections kept per address (requests are spread round-robin).
    pub connections_per_addr: usize,
    /// Timeout of connect + send for oneway requests.
    pub oneway_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            channel: ChannelConfig::default(),
            connect_timeout: Duration::from_secs(3),
            connections_per_addr: 1,
            oneway_timeout: Duration::from_secs(3),
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Channel>>>;

struct Pool {
    slots: Vec<Slot>,
    next: AtomicUsize,
}

struct ClientInner {
    config: ClientConfig,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    dispatcher: Arc<Dispatcher>,
    stop: CancellationToken,
    /// Signs every request (ACL 1.0) when set.
    credentials: parking_lot::RwLock<Option<Arc<SessionCredentials>>>,
}

/// A pooled remoting client. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<ClientInner>,
}

impl Default for RemotingClient {
    fn default() -> Self {
        Self::new(ClientConfig::default())
    }
}

impl RemotingClient {
    /// A client without a handler for server-initiated requests.
    pub fn new(config: ClientConfig) -> Self {
        Self::build(config, None)
    }

    /// A client whose server-initiated requests go to `handler`.
    pub fn with_handler<P: RequestProcessor>(config: ClientConfig, handler: Arc<P>) -> Self {
        let h: Arc<dyn DynProcessor> = handler;
        Self::build(config, Some(h))
    }

    fn build(config: ClientConfig, handler: Option<Arc<dyn DynProcessor>>) -> Self {
        let dispatcher = Arc::new(Dispatcher {
            processors: HashMap::new(),
            default: handler,
            hook: None,
            observer: None,
            global: Arc::new(Semaphore::new(
                config.channel.max_inflight_per_connection.max(1),
            )),
            tracker: TaskTracker::new(),
        });
        Self {
            inner: Arc::new(ClientInner {
                config,
                pools: Mutex::new(HashMap::new()),
                dispatcher,
                stop: CancellationToken::new(),
                credentials: parking_lot::RwLock::new(None),
            }),
        }
    }

    /// This client with every request signed with `credentials` (ACL 1.0, as Java's
    /// `AclClientRPCHook`): `AccessKey`, optional `SecurityToken` and `Signature`.
    pub fn with_credentials(self, credentials: SessionCredentials) -> Self {
        self.set_credentials(Some(credentials));
        self
    }

    /// Signs requests from now on with `credentials`, or stops signing (`None`). Clones
    /// share the setting.
    pub fn set_credentials(&self, credentials: Option<SessionCredentials>) {
        *self.inner.credentials.write() = credentials.map(Arc::new);
    }

    /// The credentials requests are signed with, if any.
    pub fn credentials(&self) -> Option<Arc<SessionCredentials>> {
        self.inner.credentials.read().clone()
    }

    fn signed(&self, mut cmd: RemotingCommand) -> RemotingCommand {
        if let Some(c) = self.credentials() {
            c.sign(&mut cmd);
        }
        cmd
    }

    fn pool(&self, addr: &str) -> Arc<Pool> {
        let mut pools = self.inner.pools.lock();
        pools
            .entry(addr.to_string())
            .or_insert_with(|| {
                let n = self.inner.config.connections_per_addr.max(1);
                Arc::new(Pool {
                    slots: (0..n).map(|_| Slot::default()).collect(),
                    next: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// A live connection to `addr` from the pool, connecting (or reconnecting) as needed.
    pub async fn channel(&self, addr: &str) -> Result<Channel, RemotingError> {
        if self.inner.stop.is_cancelled() {
            return Err(RemotingError::Shutdown);
        }
        let pool = self.pool(addr);
        let i = pool.next.fetch_add(1, Ordering::Relaxed) % pool.slots.len();
        let slot = pool.slots[i].clone();
        let mut guard = slot.lock().await;
        if let Some(ch) = guard.as_ref()
            && !ch.is_closed()
        {
            return Ok(ch.clone());
        }
        let ch = self.connect(addr).await?;
        *guard = Some(ch.clone());
        Ok(ch)
    }

    async fn connect(&self, addr: &str) -> Result<Channel, RemotingError> {
        if !addr.contains(':') {
            return Err(RemotingError::InvalidAddress(addr.to_string()));
        }
        let timeout = self.inner.config.connect_timeout;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(RemotingError::Connect {
                    addr: addr.to_string(),
                    source,
                });
            }
            Err(_) => {
                return Err(RemotingError::Connect {
                    addr: addr.to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                });
            }
        };
        let ch = start_connection(
            stream,
            &self.inner.config.channel,
            self.inner.dispatcher.clone(),
            self.inner.stop.clone(),
        )
        .map_err(|source| RemotingError::Connect {
            addr: addr.to_string(),
            source,
        })?;
        debug!(addr, conn = ch.id(), "connected");
        Ok(ch)
    }

    /// Sends `cmd` to `addr` and waits for the response; `timeout` covers connecting too.
    pub async fn invoke(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let span = info_span!("remoting_invoke", addr, code = cmd.code);
        let cmd = self.signed(cmd);
        async {
            let start = tokio::time::Instant::now();
            let ch = match tokio::time::timeout(timeout, self.channel(addr)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(RemotingError::Timeout {
                        addr: addr.to_string(),
                        timeout,
                    });
                }
            };
            let left = timeout.saturating_sub(start.elapsed());
            ch.invoke(cmd, left).await.map_err(|e| match e {
                RemotingError::Timeout { .. } => RemotingError::Timeout {
                    addr: addr.to_string(),
                    timeout,
                },
                other => other,
            })
        }
        .instrument(span)
        .await
    }

    /// Sends `cmd` to `addr` as a oneway request.
    pub async fn invoke_oneway(
        &self,
        addr: &str,
        cmd: RemotingCommand,
    ) -> Result<(), RemotingError> {
        let timeout = self.inner.config.oneway_timeout;
        let cmd = self.signed(cmd);
        let work = async {
            let ch = self.channel(addr).await?;
            ch.invoke_oneway(cmd).await
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(RemotingError::Timeout {
                addr: addr.to_string(),
                timeout,
            }),
        }
    }

    /// Closes and forgets every connection to `addr`.
    pub fn close_addr(&self, addr: &str) {
        let pool = self.inner.pools.lock().remove(addr);
        if let Some(pool) = pool {
            for slot in &pool.slots {
                if let Ok(g) = slot.try_lock()
                    && let Some(ch) = g.as_ref()
                {
                    ch.close();
                }
            }
        }
    }

    /// Closes every connection; later calls fail with [`RemotingError::Shutdown`].
    pub fn shutdown(&self) {
        self.inner.stop.cancel();
        let pools: Vec<Arc<Pool>> = self.inner.pools.lock().drain().map(|(_, p)| p).collect();
        for pool in pools {
            for slot in &pool.slots {
                if let Ok(g) = slot.try_lock()
                    && let Some(ch) = g.as_ref()
                {
                    ch.close();
                }
            }
        }
    }
}

//! A running nameserver: the remoting server, its handlers and the expiry scan.
//!
//! [`Namesrv::start`] loads the KV config, binds the listen address, registers the
//! handlers for every supported code (all others are answered
//! `REQUEST_CODE_NOT_SUPPORTED` by the remoting layer) and starts the scan that removes
//! brokers silent for longer than their heartbeat timeout. [`Namesrv::shutdown`] stops the
//! scan and the connection watchers, then lets in-flight requests answer and closes every
//! connection. Tests pass a [`ManualClock`](crate::clock::ManualClock) and a short scan
//! interval instead of waiting minutes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use flotilla_remoting::RemotingServer;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn};

use crate::clock::{Clock, SystemClock};
use crate::config::NamesrvConfig;
use crate::kv::{KvConfigManager, KvError};
use crate::processor::{NamesrvProcessor, SUPPORTED_CODES, Shared};
use crate::route::RouteInfoManager;

/// The nameserver could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The KV config file could not be loaded.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// `aclEnable=true` but the ACL file cannot be found or used.
    #[error("cannot start with ACL: {0}")]
    Acl(#[from] flotilla_acl::AclFileError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl StartError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Kv(e) => e.code(),
            Self::Acl(e) => e.code(),
            Self::Bind { .. } => "LISTEN_FAILED",
        }
    }
}

/// A running nameserver.
pub struct Namesrv {
    server: RemotingServer,
    shared: Arc<Shared>,
    scan: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Namesrv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namesrv")
            .field("addr", &self.server.local_addr())
            .finish_non_exhaustive()
    }
}

impl Namesrv {
    /// Starts a nameserver with the system clock.
    pub async fn start(config: NamesrvConfig) -> Result<Self, StartError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Starts a nameserver whose broker expiry reads `clock`.
    pub async fn start_with_clock(
        config: NamesrvConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let kv = KvConfigManager::load(&config.kv_config_path)?;
        let acl = if config.acl_enable {
            let path = flotilla_acl::acl_file_path(
                config.rocketmq_home.as_deref(),
                config.acl_file.as_deref(),
            )?;
            let file = flotilla_acl::AclFile::load(&path)?;
            info!(file = %path.display(), "ACL on: state changes need an admin account");
            Some(file)
        } else {
            None
        };
        let acl_interval = config.acl_watch_interval;
        let route = Arc::new(RouteInfoManager::new(clock, config.runtime.route));
        let listen = config.listen.clone();
        let shared = Arc::new(Shared {
            route,
            kv,
            config: RwLock::new(config),
            watched: Mutex::new(HashSet::new()),
            scan_wake: Notify::new(),
            stop: CancellationToken::new(),
        });
        let processor = Arc::new(NamesrvProcessor::new(shared.clone()));
        let mut builder = RemotingServer::builder().register_codes(SUPPORTED_CODES, processor);
        if let Some(file) = &acl {
            builder = builder.hook(Arc::new(flotilla_acl::AclHook::new(
                flotilla_acl::Scope::Namesrv,
                file.clone(),
            )));
        }
        let server = builder
            .bind(listen.as_str())
            .await
            .map_err(|source| StartError::Bind {
                addr: listen.clone(),
                source,
            })?;
        let scan = tokio::spawn(scan_loop(shared.clone()));
        if let Some(file) = &acl {
            // Ends with `shared.stop` at shutdown.
            drop(file.spawn_watch(acl_interval, shared.stop.clone()));
        }
        info!(addr = %server.local_addr(), kv = %shared.kv.path().display(), "nameserver started");
        Ok(Self {
            server,
            shared,
            scan: Mutex::new(Some(scan)),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The route table.
    pub fn route(&self) -> &RouteInfoManager {
        &self.shared.route
    }

    /// The KV config.
    pub fn kv(&self) -> &KvConfigManager {
        &self.shared.kv
    }

    /// The current config.
    pub fn config(&self) -> NamesrvConfig {
        self.shared.config.read().clone()
    }

    /// Stops the scan, lets in-flight requests answer and closes every connection.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        let scan = self.scan.lock().take();
        if let Some(scan) = scan {
            let _ = scan.await;
        }
        self.server.shutdown().await;
        info!(addr = %self.local_addr(), "nameserver stopped");
    }
}

/// Removes expired brokers every `scanNotActiveBrokerInterval` (re-read each round).
async fn scan_loop(shared: Arc<Shared>) {
    loop {
        let interval = shared.config.read().runtime.scan_interval;
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = shared.scan_wake.notified() => continue,
            () = tokio::time::sleep(interval) => {}
        }
        info_span!("scan_not_active_brokers").in_scope(|| {
            let expired = shared.route.scan_not_active_brokers();
            if !expired.is_empty() {
                warn!(count = expired.len(), "expired brokers removed");
            }
        });
    }
}

//! Assembly: one process serving the public API, the agent service, gRPC health and
//! reflection on one port (a follower forwards the first two to the leader, [`crate::forward`]), with the election loop, the reflector, the agent-session
//! background tasks and the reconciler running beside it.
//!
//! [`ControlPlane::start`] is what `main` runs and what tests and the benchmark embed: it
//! takes an opened store and a bound listener and returns once the server accepts calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flotilla_intent_store::IntentStore;
use flotilla_proto::agent::v1::agent_service_server::AgentServiceServer;
use flotilla_proto::v1::{
    audit_service_server::AuditServiceServer, cluster_service_server::ClusterServiceServer,
    group_service_server::GroupServiceServer, message_service_server::MessageServiceServer,
    node_service_server::NodeServiceServer, operation_service_server::OperationServiceServer,
    topic_service_server::TopicServiceServer,
};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{
    audit::AuditApi, cluster::ClusterApi, group::GroupApi, message::MessageApi, node::NodeApi,
    operation::OperationApi, topic::TopicApi,
};
use crate::audit::{AuditLayer, AuditLog};
use crate::cache::Cache;
use crate::context::{Config, Ctx, Stats};
use crate::fenced::Writer;
use crate::forward::{ForwardLayer, LeaderRoute};
use crate::leader;
use crate::metrics::{CallMetricsLayer, CpMetrics, MeteredStore};
use crate::reconcile::{self, queue::Queue};
use crate::security::{AuthLayer, ReloadingTls, Security, SecurityError, Tokens};
use crate::sessions::{AgentApi, Sessions};
use flotilla_client::ClientTls;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listener has no local address.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
    /// Reflection could not be built from the descriptor set.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The TLS or token files cannot be used.
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    /// The metrics endpoint could not start.
    #[error("metrics: {0}")]
    Metrics(String),
}

impl ServerError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::Listener(_) => "LISTENER",
            ServerError::Reflection(_) => "REFLECTION",
            ServerError::Security(e) => e.code(),
            ServerError::Metrics(_) => "METRICS_LISTEN",
        }
    }
}

/// A running control plane.
pub struct ControlPlane {
    /// The address it serves on.
    pub addr: SocketAddr,
    /// Its shared context (tests read the cache, sessions and stats).
    pub ctx: Arc<Ctx>,
    /// The reconcile queue.
    pub queue: Arc<Queue>,
    server: Mutex<Option<JoinHandle<Result<(), tonic::transport::Error>>>>,
}

impl ControlPlane {
    /// Starts serving on `listener` with `store`.
    pub async fn start(
        config: Config,
        store: Arc<dyn IntentStore>,
        listener: TcpListener,
    ) -> Result<Self, ServerError> {
        let shutdown = CancellationToken::new();
        let leader = leader::spawn(
            store.clone(),
            config.advertise.clone(),
            config.leader_lease_ttl,
            shutdown.clone(),
        );
        Self::start_with_leader(config, store, listener, leader, shutdown).await
    }

    /// Starts with a given leadership handle (tests pin a stale one to check fencing).
    pub async fn start_with_leader(
        config: Config,
        store: Arc<dyn IntentStore>,
        listener: TcpListener,
        leader: leader::LeaderHandle,
        shutdown: CancellationToken,
    ) -> Result<Self, ServerError> {
        let addr = listener.local_addr()?;
        // Load the files before anything starts: a control plane that cannot protect its
        // port must not come up.
        let (tls, tokens, client_tls) = match &config.security {
            Security::Insecure => (None, None, None),
            Security::Tls(s) => {
                let tls = ReloadingTls::new(s.files.clone()).map_err(SecurityError::from)?;
                tls.spawn_reloader(s.reload_interval, shutdown.clone());
                let tokens = match &s.tokens {
                    Some(p) => {
                        let t = Tokens::new(p.clone()).map_err(SecurityError::from)?;
                        t.spawn_reloader(s.reload_interval, shutdown.clone());
                        Some(t)
                    }
                    None => None,
                };
                // A follower dials the leader presenting its own (replica) certificate.
                let client =
                    ClientTls::new(&s.files.client_ca).with_identity(&s.files.cert, &s.files.key);
                (Some(tls), tokens, Some(client))
            }
        };
        let metrics = CpMetrics::default();
        let store = MeteredStore::wrap(store, metrics.clone());
        let audit = AuditLog::new(
            store.clone(),
            config.advertise.clone(),
            config.audit_retention,
        );
        let cache = Cache::new();
        cache.spawn(store.clone(), shutdown.clone());
        let ctx = Arc::new(Ctx {
            writer: Writer::new(store.clone(), leader.clone()),
            store,
            leader,
            cache,
            sessions: Sessions::default(),
            config,
            shutdown: shutdown.clone(),
            stats: Stats::default(),
            metrics: metrics.clone(),
            restart_hashes: Mutex::new(Default::default()),
        });
        crate::sessions::spawn_background(&ctx);
        let queue = reconcile::spawn(&ctx);
        crate::workflow::spawn(&ctx);

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<ClusterServiceServer<ClusterApi>>()
            .await;
        health.set_serving::<NodeServiceServer<NodeApi>>().await;
        health
            .set_serving::<OperationServiceServer<OperationApi>>()
            .await;
        health.set_serving::<AgentServiceServer<AgentApi>>().await;
        health.set_serving::<AuditServiceServer<AuditApi>>().await;
        health.set_serving::<TopicServiceServer<TopicApi>>().await;
        health.set_serving::<GroupServiceServer<GroupApi>>().await;
        health
            .set_serving::<MessageServiceServer<MessageApi>>()
            .await;
        if let Some(h) = &ctx.config.health_listen {
            let l = TcpListener::bind(h).await?;
            let svc = health_service.clone();
            let stop = shutdown.clone();
            info!(addr = %h, "serving gRPC health (plaintext, health only)");
            tokio::spawn(async move {
                let r = tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(l),
                        stop.cancelled_owned(),
                    )
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "the health listener stopped");
                }
            });
        }
        if let Some(m) = &ctx.config.metrics_listen {
            let c = ctx.clone();
            let render: flotilla_metrics::http::Render = Arc::new(move || c.metrics.render(&c));
            let server = flotilla_metrics::MetricsServer::start(m, render)
                .await
                .map_err(|e| ServerError::Metrics(e.to_string()))?;
            let stop = shutdown.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                server.shutdown().await;
            });
        }
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(flotilla_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ServerError::Reflection(e.to_string()))?;

        let route = LeaderRoute::spawn(
            ctx.leader.clone(),
            ctx.config.forward_to_leader,
            client_tls,
            shutdown.clone(),
        );
        let auth = match ctx.config.security {
            Security::Insecure => None,
            Security::Tls(_) => Some(AuthLayer::new(tokens).with_audit(audit.clone())),
        };
        // Outermost first: who is calling (refusals audited there), then forwarding to the
        // leader, then the audit record of what this replica serves.
        let router = tonic::transport::Server::builder()
            .layer(CallMetricsLayer::new(metrics))
            .layer(tower::util::option_layer(auth))
            .layer(ForwardLayer::new(route))
            .layer(AuditLayer::new(audit.clone()))
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .max_concurrent_streams(Some(65_536))
            .tcp_nodelay(true)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(ClusterServiceServer::new(ClusterApi::new(ctx.clone())))
            .add_service(NodeServiceServer::new(NodeApi::new(ctx.clone())))
            .add_service(OperationServiceServer::new(OperationApi::new(ctx.clone())))
            .add_service(AgentServiceServer::new(AgentApi::new(ctx.clone())))
            .add_service(TopicServiceServer::new(TopicApi::new(ctx.clone())))
            .add_service(GroupServiceServer::new(GroupApi::new(ctx.clone())))
            .add_service(MessageServiceServer::new(MessageApi::new(ctx.clone())))
            .add_service(AuditServiceServer::new(AuditApi::new(audit)));
        let incoming = crate::security::tls::incoming(listener, tls, shutdown.clone());
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
        });
        info!(%addr, "flotilla-cp serving");
        Ok(Self {
            addr,
            ctx,
            queue,
            server: Mutex::new(Some(server)),
        })
    }

    /// Stops everything: resigns leadership, closes agent sessions, stops serving.
    pub async fn shutdown(&self) {
        self.ctx.sessions.disconnect_all();
        self.ctx.shutdown.cancel();
        let server = self.server.lock().take();
        if let Some(s) = server {
            let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
        }
        // Let the election loop resign and revoke its lease.
        let mut rx = self.ctx.leader.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(Option::is_none)).await;
    }

    /// Waits until the server task ends (shutdown or a transport error).
    pub async fn wait(&self) -> Result<(), tonic::transport::Error> {
        let server = self.server.lock().take();
        match server {
            Some(s) => s.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

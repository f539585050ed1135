//! The agent's gRPC health service (`--health-listen`), for Kubernetes probes.
//!
//! Two services are reported: `""` is SERVING as long as the process runs (liveness), and
//! [`SESSION_SERVICE`] is SERVING only while a session with the control plane is open
//! (readiness: an agent that cannot reach the control plane gets no new work and says so).
//! The standard `grpc.health.v1` protocol, so kubelet's `grpc` probes need nothing else.

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;
use tracing::warn;

/// The health service name that tells whether a control-plane session is open.
pub const SESSION_SERVICE: &str = "session";

/// Serving the health service failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The gRPC server stopped with an error.
    #[error("health server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl HealthError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Serve(_) => "AGENT_HEALTH_SERVER",
        }
    }
}

/// Serves health on `listener` until `shutdown` turns true, following `session` (whether a
/// control-plane session is open).
pub async fn serve(
    listener: TcpListener,
    mut session: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), HealthError> {
    let (reporter, service) = tonic_health::server::health_reporter();
    let follow = async move {
        loop {
            let status = if *session.borrow_and_update() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status(SESSION_SERVICE, status).await;
            if session.changed().await.is_err() {
                break;
            }
        }
    };
    let follower = tokio::spawn(follow);
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    let result = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop)
        .await;
    follower.abort();
    if let Err(e) = &result {
        warn!(error = %e, "health server stopped");
    }
    Ok(result?)
}

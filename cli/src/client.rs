//! gRPC clients of the control plane's public API (`flotilla.v1`).
//!
//! Generated clients have no `connect` constructor (it would clash with
//! `AgentService.Connect`), so every command builds a channel here the same way.

use std::time::Duration;

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::v1::node_service_client::NodeServiceClient;
use tonic::transport::{Channel, Endpoint};

/// Connecting to the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a valid URI.
    #[error("invalid control-plane address {0:?}")]
    BadAddress(String),
    /// Nothing answered.
    #[error("cannot reach the control plane at {addr}: {source}")]
    Connect {
        /// Address.
        addr: String,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
}

impl ClientError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadAddress(_) => "CLI_BAD_ADDRESS",
            Self::Connect { .. } => "CLI_CONNECT_FAILED",
        }
    }
}

/// `http://host:port` for a bare `host:port`.
pub fn url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// A channel to the control plane.
pub async fn channel(addr: &str) -> Result<Channel, ClientError> {
    let u = url(addr);
    Endpoint::from_shared(u.clone())
        .map_err(|_| ClientError::BadAddress(u.clone()))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|source| ClientError::Connect { addr: u, source })
}

/// ClusterService client.
pub async fn clusters(addr: &str) -> Result<ClusterServiceClient<Channel>, ClientError> {
    Ok(ClusterServiceClient::new(channel(addr).await?))
}

/// NodeService client.
pub async fn nodes(addr: &str) -> Result<NodeServiceClient<Channel>, ClientError> {
    Ok(NodeServiceClient::new(channel(addr).await?))
}

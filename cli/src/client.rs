//! gRPC clients of the control plane's public API (`flotilla.v1`).
//!
//! Generated clients have no `connect` constructor (it would clash with
//! `AgentService.Connect`), so every command builds a channel here the same way. `--server`
//! is a comma-separated list of control-plane replicas (or a DNS name with several records):
//! the first that accepts a connection is used, and since followers forward to the leader,
//! any of them serves every call.

use std::time::Duration;

use flotilla_client::Connector;
use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::v1::node_service_client::NodeServiceClient;
use tonic::transport::Channel;

pub use flotilla_client::ClientError;

/// A channel to the control plane: the first replica of `addrs` (comma-separated) that
/// accepts a connection.
pub async fn channel(addrs: &str) -> Result<Channel, ClientError> {
    let mut c = Connector::parse(addrs)?.request_timeout(Duration::from_secs(30));
    Ok(c.connect().await?.channel)
}

/// ClusterService client.
pub async fn clusters(addr: &str) -> Result<ClusterServiceClient<Channel>, ClientError> {
    Ok(ClusterServiceClient::new(channel(addr).await?))
}

/// NodeService client.
pub async fn nodes(addr: &str) -> Result<NodeServiceClient<Channel>, ClientError> {
    Ok(NodeServiceClient::new(channel(addr).await?))
}

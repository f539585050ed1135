//! gRPC clients of the control plane's public API (`flotilla.v1`).
//!
//! Generated clients have no `connect` constructor (it would clash with
//! `AgentService.Connect`), so every command builds a channel here the same way. `--server`
//! is a comma-separated list of control-plane replicas (or a DNS name with several records):
//! the first that accepts a connection is used, and since followers forward to the leader,
//! any of them serves every call.
//!
//! Credentials come from the environment, as kubectl's come from its config: `FLOTILLA_CA`
//! (the CA the control plane's certificate chains to; set, every address is dialled with
//! TLS), `FLOTILLA_CERT` and `FLOTILLA_KEY` (a client certificate, e.g. `user-admin.crt`
//! from `flotilla certs init`), `FLOTILLA_TLS_SERVER_NAME` (the name to check the server
//! certificate against, when it is not the host dialled) and `FLOTILLA_TOKEN` (a bearer
//! token from the control plane's token file).

use std::path::PathBuf;
use std::time::Duration;

use flotilla_client::{ClientTls, Connector};
use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::v1::node_service_client::NodeServiceClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use flotilla_client::ClientError;

/// A channel to the control plane carrying this CLI's credentials.
pub type Chan = InterceptedService<Channel, Credentials>;

/// Adds `authorization: Bearer <FLOTILLA_TOKEN>` to every call when the token is set, and an
/// `x-request-id` (`cli-` and a random id) to every call.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    bearer: Option<AsciiMetadataValue>,
}

impl Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(b) = &self.bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        // Each call's id, as the control plane's audit log records it.
        if let Ok(id) = format!("cli-{}", uuid::Uuid::new_v4().simple()).parse() {
            req.metadata_mut().insert("x-request-id", id);
        }
        Ok(req)
    }
}

fn env_path(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn credentials() -> Result<(Option<ClientTls>, Credentials), ClientError> {
    let tls = ClientTls::from_parts(
        env_path("FLOTILLA_CA"),
        env_path("FLOTILLA_CERT"),
        env_path("FLOTILLA_KEY"),
        std::env::var("FLOTILLA_TLS_SERVER_NAME")
            .ok()
            .filter(|v| !v.is_empty()),
    )?;
    let bearer = match std::env::var("FLOTILLA_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Some(
            format!("Bearer {}", t.trim())
                .parse::<AsciiMetadataValue>()
                .map_err(|_| ClientError::BadAddress("FLOTILLA_TOKEN is not ASCII".into()))?,
        ),
        _ => None,
    };
    Ok((tls, Credentials { bearer }))
}

/// A channel to the control plane: the first replica of `addrs` (comma-separated) that
/// accepts a connection, with the environment's credentials.
pub async fn channel(addrs: &str) -> Result<Chan, ClientError> {
    let (tls, creds) = credentials()?;
    let mut c = Connector::parse(addrs)?
        .request_timeout(Duration::from_secs(30))
        .tls(tls);
    Ok(InterceptedService::new(c.connect().await?.channel, creds))
}

/// ClusterService client.
pub async fn clusters(addr: &str) -> Result<ClusterServiceClient<Chan>, ClientError> {
    Ok(ClusterServiceClient::new(channel(addr).await?))
}

/// NodeService client.
pub async fn nodes(addr: &str) -> Result<NodeServiceClient<Chan>, ClientError> {
    Ok(NodeServiceClient::new(channel(addr).await?))
}

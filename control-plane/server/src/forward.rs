//! Follower forwarding: any replica's address reaches the leader.
//!
//! With several `flotilla-cp` replicas on one store, only the leader runs agent sessions and
//! accepts writes. Agents and CLIs are usually given one address — a Kubernetes Service, a
//! load balancer, a DNS name with several records, or just the first replica someone wrote
//! down — so a follower must not make them guess. A follower therefore acts as a transparent
//! HTTP/2 proxy for every `flotilla.*` call: unary calls, server streams (watches) and the
//! agents' bidirectional `AgentService.Connect` stream go to the leader unchanged, and the
//! leader's answer comes back unchanged (status, details, trailers). Health and reflection
//! are always answered by the replica itself, so a probe measures that replica.
//!
//! The follower learns the leader from the election key (polled every
//! [`LEADER_POLL`]); the leader's election value is its advertise name, which must therefore
//! be an address the other replicas can dial (`host:port` or a URL). A request is handled
//! locally — reads from the local cache, writes answered `UNAVAILABLE`/`NOT_LEADER` — when
//! no leader is known (an election is under way), when the leader's name is not dialable, or
//! when the request was already forwarded once (the `x-flotilla-forwarded-by` header: two
//! replicas that disagree about who leads never bounce a call between them).
//!
//! Forwarding changes nothing about fencing: the leader stamps its epoch on everything it
//! sends, and when it dies or steps down the proxied streams end, so agents reconnect —
//! through this follower or another address — to whoever leads next.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderValue, Request, Response};
use tonic::transport::{Channel, Endpoint};
use tower::{Layer, Service};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::errors::ApiError;
use crate::leader::LeaderHandle;
use flotilla_client::ClientTls;

/// Header a forwarding replica adds (its own advertise name); a request carrying it is never
/// forwarded again.
pub const FORWARDED_BY: &str = "x-flotilla-forwarded-by";

/// The name a follower checks the leader's certificate against (see [`LeaderRoute`]).
pub const REPLICA_SERVER_NAME: &str = "localhost";

/// How often a replica re-reads who leads.
pub const LEADER_POLL: Duration = Duration::from_millis(500);

/// gRPC packages whose calls a follower forwards (everything Flotilla serves except health
/// and reflection).
const FORWARDED_PREFIXES: [&str; 2] = ["/flotilla.v1.", "/flotilla.agent.v1."];

/// Why a leader name cannot be used to forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The election value is not `host:port` or a URL.
    #[error("leader name {0:?} is not a dialable address")]
    NotDialable(String),
}

impl ForwardError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ForwardError::NotDialable(_) => "LEADER_NOT_DIALABLE",
        }
    }
}

/// The URL to dial for a leader's advertise name: a URL as is, `host:port` as `http://…`;
/// anything without a port is not dialable.
pub fn leader_url(name: &str) -> Result<String, ForwardError> {
    let name = name.trim();
    let url = if name.contains("://") {
        name.to_string()
    } else {
        let port_ok = name
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(ForwardError::NotDialable(name.to_string()));
        }
        format!("http://{name}")
    };
    http::Uri::try_from(url.as_str()).map_err(|_| ForwardError::NotDialable(name.to_string()))?;
    Ok(url)
}

/// Who leads, as this replica last read it, and a channel to it.
#[derive(Clone)]
pub struct LeaderRoute {
    leader: LeaderHandle,
    known: watch::Receiver<Option<String>>,
    channel: Arc<Mutex<Option<(String, Channel)>>>,
    enabled: bool,
    tls: Option<ClientTls>,
}

impl LeaderRoute {
    /// Starts following the election key until `shutdown`. With `enabled` false the route
    /// never forwards (every call is handled locally).
    pub fn spawn(
        leader: LeaderHandle,
        enabled: bool,
        tls: Option<ClientTls>,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, known) = watch::channel(None);
        let h = leader.clone();
        tokio::spawn(
            async move {
                loop {
                    let name = h.leader_name().await;
                    if *tx.borrow() != name {
                        info!(leader = ?name, "leader changed");
                        tx.send_replace(name);
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(LEADER_POLL) => {}
                    }
                }
            }
            .instrument(info_span!("leader_route")),
        );
        Self {
            leader,
            known,
            channel: Arc::new(Mutex::new(None)),
            enabled,
            tls,
        }
    }

    /// The leader's name as last read (`None` during an election).
    pub fn known_leader(&self) -> Option<String> {
        self.known.borrow().clone()
    }

    /// Where a call should go now: `None` to handle it here, else the leader's name and a
    /// channel to it.
    fn target(&self) -> Option<(String, Channel)> {
        if !self.enabled || self.leader.current().is_some() {
            return None;
        }
        let name = self.known_leader()?;
        if name == self.leader.name() {
            // The store still names this replica (a term that just ended): nobody to ask.
            return None;
        }
        let mut cached = self.channel.lock();
        if let Some((n, ch)) = cached.as_ref()
            && *n == name
        {
            return Some((name, ch.clone()));
        }
        let url = match leader_url(&name) {
            Ok(u) => u,
            Err(e) => {
                debug!(error = %e, code = e.code(), "not forwarding");
                return None;
            }
        };
        // Over TLS an `http://` leader name is dialled as `https://`.
        let url = match self.tls {
            Some(_) => flotilla_client::secure(&url),
            None => url,
        };
        let mut ep = Endpoint::from_shared(url)
            .ok()?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20));
        if let Some(tls) = &self.tls {
            // The files are read when the channel to a new leader is made: a rotated replica
            // certificate is used from the next leader change on.
            // Replicas advertise pod or machine addresses that no certificate lists, so a
            // replica's certificate is checked against one fixed name instead: the one
            // `flotilla certs init` puts in every control-plane certificate.
            let cfg = match tls.load(REPLICA_SERVER_NAME) {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, code = e.code(), "not forwarding: TLS files unusable");
                    return None;
                }
            };
            ep = match ep.tls_config(cfg) {
                Ok(ep) => ep,
                Err(e) => {
                    warn!(error = %e, "not forwarding: TLS configuration refused");
                    return None;
                }
            };
        }
        let ch = ep.connect_lazy();
        *cached = Some((name.clone(), ch.clone()));
        Some((name, ch))
    }
}

/// Wraps the router so followers forward `flotilla.*` calls to the leader.
#[derive(Clone)]
pub struct ForwardLayer {
    route: LeaderRoute,
}

impl ForwardLayer {
    /// A layer forwarding through `route`.
    pub fn new(route: LeaderRoute) -> Self {
        Self { route }
    }
}

impl<S> Layer<S> for ForwardLayer {
    type Service = Forward<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Forward {
            inner,
            route: self.route.clone(),
        }
    }
}

/// The forwarding service (see the module docs).
#[derive(Clone)]
pub struct Forward<S> {
    inner: S,
    route: LeaderRoute,
}

fn forwardable(req: &Request<Body>) -> bool {
    let path = req.uri().path();
    FORWARDED_PREFIXES.iter().any(|p| path.starts_with(p))
        && !req.headers().contains_key(FORWARDED_BY)
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<Request<Body>> for Forward<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let target = if forwardable(&req) {
            self.route.target()
        } else {
            None
        };
        let Some((leader, mut channel)) = target else {
            let fut = self.inner.call(req);
            return Box::pin(fut);
        };
        let me = self.route.leader.name().to_string();
        if let Ok(v) = HeaderValue::from_str(&me) {
            req.headers_mut().insert(FORWARDED_BY, v);
        }
        let path = req.uri().path().to_string();
        let span = info_span!("forward", %path, %leader);
        Box::pin(
            async move {
                debug!("forwarding to the leader");
                match tower::ServiceExt::ready(&mut channel).await {
                    Ok(ch) => match ch.call(req).await {
                        Ok(resp) => Ok(resp),
                        Err(e) => Ok(unreachable_leader(&leader, &e.to_string())),
                    },
                    Err(e) => Ok(unreachable_leader(&leader, &e.to_string())),
                }
            }
            .instrument(span),
        )
    }
}

/// The answer when the leader cannot be reached: `UNAVAILABLE`/`NOT_LEADER` naming it, as a
/// follower answers a write — clients retry, and by then the election may have moved on.
fn unreachable_leader(leader: &str, error: &str) -> Response<Body> {
    warn!(%leader, %error, "cannot forward to the leader");
    let mut status: tonic::Status = ApiError::NotLeader {
        leader: Some(leader.to_string()),
    }
    .into();
    status = tonic::Status::with_details_and_metadata(
        status.code(),
        format!("{}; forwarding to it failed: {error}", status.message()),
        status.details().to_vec().into(),
        status.metadata().clone(),
    );
    status.into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_port_or_urls_are_dialable() {
        assert_eq!(
            leader_url("127.0.0.1:7443").unwrap(),
            "http://127.0.0.1:7443"
        );
        assert_eq!(
            leader_url("cp-0.cp.flotilla.svc:7443").unwrap(),
            "http://cp-0.cp.flotilla.svc:7443"
        );
        assert_eq!(
            leader_url("https://cp-0:7443").unwrap(),
            "https://cp-0:7443"
        );
        assert_eq!(leader_url("[::1]:7443").unwrap(), "http://[::1]:7443");
        for bad in ["cp-a", "cp-a:", ":7443", "cp:notaport", ""] {
            let e = leader_url(bad).unwrap_err();
            assert_eq!(e.code(), "LEADER_NOT_DIALABLE", "{bad}");
        }
    }

    fn req(path: &str) -> Request<Body> {
        Request::builder()
            .uri(format!("http://x{path}"))
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn flotilla_calls_are_forwarded_health_and_reflection_are_not() {
        assert!(forwardable(&req("/flotilla.v1.ClusterService/GetCluster")));
        assert!(forwardable(&req("/flotilla.agent.v1.AgentService/Connect")));
        assert!(!forwardable(&req("/grpc.health.v1.Health/Check")));
        assert!(!forwardable(&req(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        )));
        let mut once = req("/flotilla.v1.ClusterService/UpdateCluster");
        once.headers_mut()
            .insert(FORWARDED_BY, HeaderValue::from_static("cp-b:7443"));
        assert!(
            !forwardable(&once),
            "a forwarded call is never forwarded again"
        );
    }

    #[test]
    fn an_unreachable_leader_is_answered_not_leader_naming_it() {
        let resp = unreachable_leader("127.0.0.1:1", "connection refused");
        let status = tonic::Status::from_header_map(resp.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("connection refused"),
            "{status:?}"
        );
        use tonic_types::StatusExt;
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "NOT_LEADER");
        assert_eq!(info.metadata.get("leader").unwrap(), "127.0.0.1:1");
    }
}

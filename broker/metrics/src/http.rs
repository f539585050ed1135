//! The `/metrics` endpoint: HTTP/1.1 on the hyper already in the dependency tree.
//!
//! `GET /metrics` (or `/`) answers the Prometheus text format (version 0.0.4, which every
//! Prometheus parses; OpenMetrics' `# EOF` trailer is dropped) rendered by the caller's
//! closure at each scrape, so gauges are computed when read and cost nothing in between.
//! Anything else is 404. The server stops with [`MetricsServer::shutdown`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ServeError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Bind { .. } => "METRICS_BIND_FAILED",
        }
    }
}

/// Renders the exposition text at each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A running metrics endpoint.
pub struct MetricsServer {
    local: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves `render()` on `GET /metrics`.
    pub async fn start(addr: &str, render: Render) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, render, stop.clone()));
        info!(addr = %local, "metrics exporter listening (GET /metrics)");
        Ok(Self { local, stop, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops accepting; open scrapes are dropped.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, render: Render, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let render = render.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let render = render.clone();
                async move { Ok::<_, Infallible>(answer(&req, &render)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                () = stop.cancelled() => {}
                r = conn => if let Err(e) = r {
                    debug!(error = %e, "metrics connection ended");
                },
            }
        });
    }
}

fn answer(req: &Request<Incoming>, render: &Render) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let status_body = if req.method() != Method::GET && req.method() != Method::HEAD {
        Err(StatusCode::METHOD_NOT_ALLOWED)
    } else if path == "/metrics" || path == "/" {
        Ok(render())
    } else {
        Err(StatusCode::NOT_FOUND)
    };
    let mut resp = match status_body {
        Ok(text) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        Err(code) => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *r.status_mut() = code;
            r
        }
    };
    if req.method() == Method::HEAD {
        *resp.body_mut() = Full::new(Bytes::new());
    }
    resp
}

/// Encodes `registry` as Prometheus text (0.0.4): `prometheus-client` writes OpenMetrics,
/// whose only difference a 0.0.4 parser trips on is the `# EOF` trailer.
pub fn encode_text(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        warn!(error = %e, "metrics encoding failed");
    }
    if let Some(stripped) = out.strip_suffix("# EOF\n") {
        out.truncate(stripped.len());
    }
    out
}

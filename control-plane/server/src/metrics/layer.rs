//! The tower layer counting and timing every gRPC call this replica receives (outermost, so
//! refusals and forwarded calls count too). The code is read from the response head as in
//! [`crate::audit::layer::status_of`]; a stream's time is the time to its response head.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tower::{Layer, Service};

use super::CpMetrics;
use crate::audit::layer::status_of;

/// The layer.
#[derive(Debug, Clone)]
pub struct CallMetricsLayer {
    metrics: CpMetrics,
}

impl CallMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: CpMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for CallMetricsLayer {
    type Service = CallMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The recording service.
#[derive(Debug, Clone)]
pub struct CallMetrics<S> {
    inner: S,
    metrics: CpMetrics,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<Request<Body>> for CallMetrics<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let path = req.uri().path().to_string();
        let started = Instant::now();
        let fut = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let resp = fut.await?;
            let (code, _) = status_of(resp.headers());
            metrics.observe_call(&path, code, started);
            Ok(resp)
        })
    }
}

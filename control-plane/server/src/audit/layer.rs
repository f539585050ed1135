//! The tower layer that records every mutating call it passes on (see [`super`]).
//!
//! It sits inside authorization and follower forwarding, so it sees the calls this replica
//! serves, with the [`Caller`] the authorization layer found. The result is read from the
//! response head: tonic answers a failed unary call "trailers-only", with `grpc-status` in the
//! headers; a unary call whose headers carry no status succeeded (its `grpc-status: 0` comes
//! in the trailers). Every audited method is unary.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, HeaderValue, Request, Response};
use tower::{Layer, Service};

use super::{AuditLog, AuditRecord};
use crate::security::authz::mutates;
use crate::security::{Caller, PeerInfo};

/// The request id header (kept from the caller, or made up).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id kept from a caller.
const MAX_REQUEST_ID: usize = 128;

/// The caller's request id when it is a sane one (1–128 of `A-Za-z0-9._:-`), else a new one.
pub fn request_id<B>(req: &Request<B>) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

/// The principal for the record: the authenticated caller, or `anonymous`.
pub fn principal<B>(req: &Request<B>) -> String {
    req.extensions()
        .get::<Caller>()
        .map_or_else(|| "anonymous".to_string(), |c| c.0.uri())
}

/// The peer address, when the connection told it.
pub fn peer<B>(req: &Request<B>) -> String {
    req.extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.remote)
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// The status a response head carries: `OK` when it carries none (see the module docs).
pub fn status_of(headers: &HeaderMap) -> (tonic::Code, String) {
    let Some(code) = headers.get("grpc-status") else {
        return (tonic::Code::Ok, String::new());
    };
    let code = code
        .to_str()
        .ok()
        .and_then(|c| c.parse::<i32>().ok())
        .map_or(tonic::Code::Unknown, tonic::Code::from_i32);
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(|m| {
            percent_encoding::percent_decode_str(m)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    (code, message)
}

/// The layer.
#[derive(Debug, Clone)]
pub struct AuditLayer {
    log: AuditLog,
}

impl AuditLayer {
    /// Records into `log`.
    pub fn new(log: AuditLog) -> Self {
        Self { log }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            log: self.log.clone(),
        }
    }
}

/// The recording service.
#[derive(Debug, Clone)]
pub struct Audit<S> {
    inner: S,
    log: AuditLog,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<Request<Body>> for Audit<S>
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
        let method = req.uri().path().to_string();
        if !mutates(&method) {
            return Box::pin(self.inner.call(req));
        }
        let (who, id, from) = (principal(&req), request_id(&req), peer(&req));
        let fut = self.inner.call(req);
        let log = self.log.clone();
        Box::pin(async move {
            let mut resp = fut.await?;
            let (code, message) = status_of(resp.headers());
            let mut rec = AuditRecord::now(who, method, id.clone(), code, message);
            rec.peer = from;
            log.record(rec).await;
            if let Ok(v) = HeaderValue::from_str(&id) {
                resp.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_kept_only_when_sane() {
        let with = |v: &str| {
            Request::builder()
                .header(REQUEST_ID_HEADER, v)
                .body(())
                .expect("request")
        };
        assert_eq!(request_id(&with("cli-1234.ab:cd_")), "cli-1234.ab:cd_");
        let made_up = request_id(&with("no spaces please"));
        assert_ne!(made_up, "no spaces please");
        assert!(uuid::Uuid::parse_str(&made_up).is_ok());
        assert_ne!(request_id(&with(&"x".repeat(129))), "x".repeat(129));
    }

    #[test]
    fn trailers_only_status_is_read_and_none_is_ok() {
        let mut h = HeaderMap::new();
        assert_eq!(status_of(&h), (tonic::Code::Ok, String::new()));
        h.insert("grpc-status", HeaderValue::from_static("7"));
        h.insert("grpc-message", HeaderValue::from_static("needs%20admin"));
        assert_eq!(
            status_of(&h),
            (tonic::Code::PermissionDenied, "needs admin".to_string())
        );
    }
}

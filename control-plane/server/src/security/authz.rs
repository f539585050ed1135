//! Who may call what: authentication and authorization of every gRPC request.
//!
//! One tower layer in front of all services (and in front of follower forwarding, so a
//! follower refuses what the leader would refuse, without a round trip). It finds the caller:
//!
//! - the verified client certificate's identity ([`super::tls::PeerInfo`]);
//! - else a bearer token (`authorization: Bearer …`) looked up in the token file;
//! - a **control-plane replica** forwarding a call speaks for its caller: the
//!   `x-flotilla-principal` header it sets is believed only on a connection whose certificate
//!   names a control-plane replica, and removed from every other request, so nobody can claim
//!   an identity by sending the header.
//!
//! and then the method's need ([`need`]): health is open (probes carry no credentials); the
//! agent stream is for agent certificates only (the session then checks that the node id in
//! Hello is the certificate's); `Get*`/`List*`/`Watch*`/`Wait*`/`Query*` calls and reflection
//! need `viewer`; the other topic, group and message calls need `operator`; everything else
//! (clusters, nodes, operations, topic migration) needs `admin`. No caller is
//! `UNAUTHENTICATED`, the wrong one `PERMISSION_DENIED`, both with an `ErrorInfo` reason.
//!
//! The caller found is put in the request's extensions as [`Caller`] for the handlers (the
//! agent session's node check, audit records).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use flotilla_client::{Principal, Role};
use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};
use tracing::warn;

use super::tls::PeerInfo;
use super::tokens::Tokens;
use crate::audit::layer::{REQUEST_ID_HEADER, peer, request_id};
use crate::audit::{AuditLog, AuditRecord};
use crate::errors::DOMAIN;

/// Header a forwarding replica sets to the caller it authenticated.
pub const PRINCIPAL_HEADER: &str = "x-flotilla-principal";

/// The authenticated caller of a request (in its extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Principal);

/// What a method needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (health checks).
    Open,
    /// An agent certificate.
    Agent,
    /// A user with at least this role.
    Role(Role),
}

const AUDIT_SERVICE: &str = "flotilla.v1.AuditService";
const READ_PREFIXES: [&str; 5] = ["Get", "List", "Watch", "Wait", "Query"];
const BUSINESS_SERVICES: [&str; 3] = [
    "flotilla.v1.TopicService",
    "flotilla.v1.GroupService",
    "flotilla.v1.MessageService",
];

/// The need of the method at gRPC `path` (`/package.Service/Method`).
pub fn need(path: &str) -> Need {
    let trimmed = path.trim_start_matches('/');
    let (service, method) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    if service == "grpc.health.v1.Health" {
        return Need::Open;
    }
    if service.starts_with("grpc.reflection.") {
        return Need::Role(Role::Viewer);
    }
    if service == "flotilla.agent.v1.AgentService" {
        return Need::Agent;
    }
    if service == AUDIT_SERVICE {
        // Who did what is for administrators only.
        return Need::Role(Role::Admin);
    }
    if READ_PREFIXES.iter().any(|p| method.starts_with(p)) {
        return Need::Role(Role::Viewer);
    }
    if BUSINESS_SERVICES.contains(&service) && method != "MigrateTopic" {
        return Need::Role(Role::Operator);
    }
    Need::Role(Role::Admin)
}

/// Whether the method at `path` asks to change something: every public method a viewer may
/// not call, except reading the audit log itself. These are the audited calls.
pub fn mutates(path: &str) -> bool {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    service != AUDIT_SERVICE && matches!(need(path), Need::Role(r) if r > Role::Viewer)
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or credentials that identify nobody.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known caller without the right.
    #[error("{caller} may not call {method}: {why}")]
    PermissionDenied {
        /// The caller.
        caller: String,
        /// The method.
        method: String,
        /// What it lacks.
        why: String,
    },
}

impl AuthError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Unauthenticated(_) => "UNAUTHENTICATED",
            AuthError::PermissionDenied { .. } => "PERMISSION_DENIED",
        }
    }

    fn status(&self, method: &str) -> tonic::Status {
        let mut meta = HashMap::new();
        meta.insert("method".to_string(), method.to_string());
        if let AuthError::PermissionDenied { caller, .. } = self {
            meta.insert("caller".to_string(), caller.clone());
        }
        let details = ErrorDetails::with_error_info(self.code(), DOMAIN, meta);
        let code = match self {
            AuthError::Unauthenticated(_) => tonic::Code::Unauthenticated,
            AuthError::PermissionDenied { .. } => tonic::Code::PermissionDenied,
        };
        tonic::Status::with_error_details(code, self.to_string(), details)
    }
}

/// Decides who the caller of `req` is (removing any `x-flotilla-principal` it may not send).
pub fn authenticate<B>(
    req: &mut Request<B>,
    tokens: Option<&Tokens>,
) -> Result<Option<Principal>, AuthError> {
    let forwarded = req.headers_mut().remove(PRINCIPAL_HEADER);
    let peer = req
        .extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.principal.clone());
    match peer {
        Some(Principal::ControlPlane(replica)) => {
            let Some(v) = forwarded else {
                return Ok(Some(Principal::ControlPlane(replica)));
            };
            let p = v
                .to_str()
                .ok()
                .and_then(Principal::parse_uri)
                .ok_or_else(|| {
                    AuthError::Unauthenticated(format!(
                        "replica {replica} forwarded a call for an identity that is not one"
                    ))
                })?;
            Ok(Some(p))
        }
        Some(p) => Ok(Some(p)),
        None => {
            let Some(auth) = req.headers().get("authorization") else {
                return Ok(None);
            };
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    AuthError::Unauthenticated(
                        "the authorization header must be `Bearer <token>`".into(),
                    )
                })?;
            match tokens.and_then(|t| t.lookup(token)) {
                Some(p) => Ok(Some(p)),
                None => Err(AuthError::Unauthenticated(
                    "the bearer token is not known to this control plane".into(),
                )),
            }
        }
    }
}

/// Whether `caller` may call a method that needs `need`.
pub fn authorize(caller: Option<&Principal>, need: Need, method: &str) -> Result<(), AuthError> {
    if need == Need::Open {
        return Ok(());
    }
    let Some(caller) = caller else {
        return Err(AuthError::Unauthenticated(format!(
            "{method} needs a client certificate or a bearer token"
        )));
    };
    let denied = |why: &str| AuthError::PermissionDenied {
        caller: caller.uri(),
        method: method.to_string(),
        why: why.to_string(),
    };
    match (need, caller) {
        (Need::Agent, Principal::Agent(_)) => Ok(()),
        (Need::Agent, _) => Err(denied("only agents open agent sessions")),
        (Need::Role(r), Principal::User { role, .. }) if *role >= r => Ok(()),
        (Need::Role(r), Principal::User { .. }) => {
            Err(denied(&format!("needs the {} role", r.as_str())))
        }
        (Need::Role(_), _) => Err(denied("agents and replicas do not use the public API")),
        (Need::Open, _) => Ok(()),
    }
}

/// The layer (see the module docs).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    tokens: Option<Tokens>,
    audit: Option<AuditLog>,
}

impl AuthLayer {
    /// Checks every request, with bearer tokens from `tokens` if given.
    pub fn new(tokens: Option<Tokens>) -> Self {
        Self {
            tokens,
            audit: None,
        }
    }

    /// Also records refused mutating calls in `audit` (they never reach the audit layer).
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            tokens: self.tokens.clone(),
            audit: self.audit.clone(),
        }
    }
}

/// The checking service.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    tokens: Option<Tokens>,
    audit: Option<AuditLog>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<Request<Body>> for Auth<S>
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

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let method = req.uri().path().to_string();
        let checked = authenticate(&mut req, self.tokens.as_ref())
            .and_then(|caller| authorize(caller.as_ref(), need(&method), &method).map(|()| caller));
        match checked {
            Ok(caller) => {
                if let Some(c) = caller {
                    if let Ok(v) = HeaderValue::from_str(&c.uri()) {
                        req.headers_mut().insert(PRINCIPAL_HEADER, v);
                    }
                    req.extensions_mut().insert(Caller(c));
                }
                Box::pin(self.inner.call(req))
            }
            Err(e) => {
                let remote = peer(&req);
                warn!(%method, %remote, code = e.code(), error = %e, "request refused");
                let status = e.status(&method);
                let audit = self.audit.clone().filter(|_| mutates(&method)).map(|log| {
                    let who = match &e {
                        AuthError::PermissionDenied { caller, .. } => caller.clone(),
                        AuthError::Unauthenticated(_) => "anonymous".to_string(),
                    };
                    let mut rec = AuditRecord::now(
                        who,
                        method.clone(),
                        request_id(&req),
                        status.code(),
                        status.message().to_string(),
                    );
                    rec.peer = remote.clone();
                    (log, rec)
                });
                let mut resp = status.into_http::<Body>();
                // As for served calls: the caller learns the id its refusal was recorded under.
                if let Some(v) = audit
                    .as_ref()
                    .and_then(|(_, rec)| HeaderValue::from_str(&rec.request_id).ok())
                {
                    resp.headers_mut().insert(REQUEST_ID_HEADER, v);
                }
                Box::pin(async move {
                    if let Some((log, rec)) = audit {
                        log.record(rec).await;
                    }
                    Ok(resp)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> Principal {
        Principal::User {
            name: "u".into(),
            role,
        }
    }

    #[test]
    fn methods_need_what_the_docs_say() {
        assert_eq!(need("/grpc.health.v1.Health/Check"), Need::Open);
        assert_eq!(need("/flotilla.agent.v1.AgentService/Connect"), Need::Agent);
        assert_eq!(
            need("/flotilla.v1.ClusterService/ListClusters"),
            Need::Role(Role::Viewer)
        );
        assert_eq!(
            need("/flotilla.v1.OperationService/WatchOperations"),
            Need::Role(Role::Viewer)
        );
        assert_eq!(
            need("/flotilla.v1.MessageService/QueryMessagesByKey"),
            Need::Role(Role::Viewer)
        );
        assert_eq!(
            need("/flotilla.v1.TopicService/CreateTopic"),
            Need::Role(Role::Operator)
        );
        assert_eq!(
            need("/flotilla.v1.GroupService/ResetOffset"),
            Need::Role(Role::Operator)
        );
        assert_eq!(
            need("/flotilla.v1.MessageService/ResendDlqMessage"),
            Need::Role(Role::Operator)
        );
        assert_eq!(
            need("/flotilla.v1.TopicService/MigrateTopic"),
            Need::Role(Role::Admin)
        );
        assert_eq!(
            need("/flotilla.v1.ClusterService/UpdateCluster"),
            Need::Role(Role::Admin)
        );
        assert_eq!(
            need("/flotilla.v1.NodeService/DrainNode"),
            Need::Role(Role::Admin)
        );
        assert_eq!(need("/flotilla.v1.Unknown/Thing"), Need::Role(Role::Admin));
        assert_eq!(
            need("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Need::Role(Role::Viewer)
        );
        assert_eq!(
            need("/flotilla.v1.AuditService/ListAuditRecords"),
            Need::Role(Role::Admin)
        );
    }

    #[test]
    fn mutations_are_what_a_viewer_may_not_call_except_reading_the_audit_log() {
        for m in [
            "/flotilla.v1.ClusterService/CreateCluster",
            "/flotilla.v1.TopicService/DeleteTopic",
            "/flotilla.v1.GroupService/ResetOffset",
            "/flotilla.v1.NodeService/CordonNode",
            "/flotilla.v1.TopicService/MigrateTopic",
        ] {
            assert!(mutates(m), "{m}");
        }
        for m in [
            "/flotilla.v1.ClusterService/GetCluster",
            "/flotilla.v1.OperationService/WatchOperations",
            "/flotilla.v1.AuditService/ListAuditRecords",
            "/grpc.health.v1.Health/Check",
            "/flotilla.agent.v1.AgentService/Connect",
        ] {
            assert!(!mutates(m), "{m}");
        }
    }

    #[test]
    fn roles_include_the_ones_below_and_agents_stay_on_their_stream() {
        let m = "m";
        assert!(authorize(Some(&user(Role::Admin)), Need::Role(Role::Operator), m).is_ok());
        assert!(authorize(Some(&user(Role::Operator)), Need::Role(Role::Viewer), m).is_ok());
        let e = authorize(Some(&user(Role::Viewer)), Need::Role(Role::Operator), m).unwrap_err();
        assert_eq!(e.code(), "PERMISSION_DENIED");
        let agent = Principal::Agent("n1".into());
        assert!(authorize(Some(&agent), Need::Agent, m).is_ok());
        assert!(authorize(Some(&agent), Need::Role(Role::Viewer), m).is_err());
        assert!(authorize(Some(&user(Role::Admin)), Need::Agent, m).is_err());
        assert_eq!(
            authorize(None, Need::Role(Role::Viewer), m)
                .unwrap_err()
                .code(),
            "UNAUTHENTICATED"
        );
        assert!(authorize(None, Need::Open, m).is_ok());
    }

    fn req(peer: Option<Principal>, headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::builder().uri("/x");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let mut r = r.body(()).unwrap();
        r.extensions_mut().insert(PeerInfo {
            remote: None,
            tls: true,
            principal: peer,
        });
        r
    }

    #[test]
    fn only_a_replica_may_speak_for_someone_else() {
        let admin = "flotilla://admin/alice";
        // A user sending the header is still itself, and the header is gone.
        let mut r = req(Some(user(Role::Viewer)), &[(PRINCIPAL_HEADER, admin)]);
        assert_eq!(
            authenticate(&mut r, None).unwrap(),
            Some(user(Role::Viewer))
        );
        assert!(r.headers().get(PRINCIPAL_HEADER).is_none());
        // Nobody at all sending it is nobody.
        let mut r = req(None, &[(PRINCIPAL_HEADER, admin)]);
        assert_eq!(authenticate(&mut r, None).unwrap(), None);
        // A replica forwarding is believed.
        let mut r = req(
            Some(Principal::ControlPlane("cp-1".into())),
            &[(PRINCIPAL_HEADER, admin)],
        );
        assert_eq!(
            authenticate(&mut r, None).unwrap(),
            Principal::parse_uri(admin)
        );
    }

    #[test]
    fn an_unknown_or_malformed_token_is_unauthenticated() {
        let mut r = req(None, &[("authorization", "Bearer nope-nope-nope-nope")]);
        assert_eq!(
            authenticate(&mut r, None).unwrap_err().code(),
            "UNAUTHENTICATED"
        );
        let mut r = req(None, &[("authorization", "Basic abc")]);
        assert_eq!(
            authenticate(&mut r, None).unwrap_err().code(),
            "UNAUTHENTICATED"
        );
    }
}

#[cfg(test)]
mod refusal_tests {
    use std::sync::Arc;

    use flotilla_intent_store::{EmbeddedStore, IntentStore};
    use tower::ServiceExt;

    use super::*;
    use crate::audit::Filter;

    /// A refused mutation is recorded, and its answer carries the id it was recorded under.
    #[tokio::test]
    async fn a_refused_mutation_is_audited_and_answered_with_its_request_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn IntentStore> =
            Arc::new(EmbeddedStore::open(dir.path()).await.expect("store"));
        let log = AuditLog::new(store, "cp-0", 10);
        let inner = tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        });
        let svc = AuthLayer::new(None).with_audit(log.clone()).layer(inner);
        let req = Request::builder()
            .uri("/flotilla.v1.NodeService/CordonNode")
            .header(REQUEST_ID_HEADER, "req-1")
            .body(Body::empty())
            .expect("request");
        let resp = svc.oneshot(req).await.expect("infallible");
        assert_eq!(
            resp.headers().get(REQUEST_ID_HEADER).map(|v| v.as_bytes()),
            Some(&b"req-1"[..])
        );
        assert_eq!(
            resp.headers().get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"16"[..])
        );
        let (records, _) = log.list(&Filter::default(), None, 10).await.expect("list");
        assert_eq!(records.len(), 1);
        assert_eq!(
            (records[0].request_id.as_str(), records[0].code.as_str()),
            ("req-1", "UNAUTHENTICATED")
        );
    }
}

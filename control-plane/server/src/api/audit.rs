//! `flotilla.v1.AuditService`: reads the audit log ([`crate::audit`]), newest first, with
//! filters and paging. Admin only (the authorization layer's rule for this service); reading
//! the log is not itself recorded.

use flotilla_proto::v1::{
    ListAuditRecordsRequest, ListAuditRecordsResponse, audit_service_server::AuditService,
};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::audit::{AuditError, AuditLog, Filter};
use crate::errors::ApiError;
use crate::validate::{self, Violations};

/// The service.
#[derive(Debug, Clone)]
pub struct AuditApi {
    log: AuditLog,
}

impl AuditApi {
    /// Serves `log`.
    pub fn new(log: AuditLog) -> Self {
        Self { log }
    }
}

/// A page token is the key suffix of the last record served: `{unix_ms:020}-{32 hex}`.
fn page_token_ok(t: &str) -> bool {
    t.split_once('-').is_some_and(|(ms, id)| {
        ms.len() == 20
            && ms.bytes().all(|b| b.is_ascii_digit())
            && id.len() == 32
            && id.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn store_error(e: AuditError) -> ApiError {
    match e {
        AuditError::Store(s) => ApiError::Store(s),
        AuditError::Corrupt { key, error } => ApiError::CorruptRecord {
            key,
            message: error,
        },
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_records(
        &self,
        request: Request<ListAuditRecordsRequest>,
    ) -> Result<Response<ListAuditRecordsResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("ListAuditRecords", principal = %r.principal, method = %r.method);
        async move {
            let mut v = Violations::default();
            let size = validate::page_size(&mut v, "page_size", r.page_size);
            if !r.page_token.is_empty() && !page_token_ok(&r.page_token) {
                v.add("page_token", "not a page token this service returned");
            }
            if r.since_unix_ms < 0 {
                v.add("since_unix_ms", "must not be negative");
            }
            v.into_result("INVALID_REQUEST")?;
            let filter = Filter {
                principal: Some(r.principal).filter(|p| !p.is_empty()),
                method: Some(r.method).filter(|m| !m.is_empty()),
                since_unix_ms: u64::try_from(r.since_unix_ms).unwrap_or(0),
            };
            let after = Some(r.page_token.as_str()).filter(|t| !t.is_empty());
            let (records, next) = self
                .log
                .list(&filter, after, size)
                .await
                .map_err(store_error)?;
            Ok::<_, ApiError>(ListAuditRecordsResponse {
                records: records.iter().map(|r| r.to_proto()).collect(),
                next_page_token: next.unwrap_or_default(),
            })
        }
        .instrument(span)
        .await
        .map(Response::new)
        .map_err(Status::from)
    }
}

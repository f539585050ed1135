//! The audit log: one record for every call that asks to change something — who, what, the
//! request id and the result — whether it was carried out, failed or was refused.
//!
//! Why here and like this:
//! - **One place sees every mutation.** The record is taken by a tower layer around all
//!   services ([`layer::AuditLayer`]) on the replica that serves the call (after follower
//!   forwarding, so a forwarded call is recorded once, by the leader, under the caller the
//!   follower authenticated), plus by the authorization layer for calls it refuses (which
//!   never reach a service). No handler can forget to audit.
//! - **Durable and bounded.** Records live in the store under [`keys::AUDIT`], keyed by time,
//!   so they survive restarts and leader changes and every replica reads the same history.
//!   The oldest beyond the retention are removed ([`AuditLog::prune`]), so the history
//!   cannot fill etcd. They are not intent: written without the leader fence, so a refusal a
//!   follower answers itself is recorded too.
//! - **JSON lines.** Each record's stored value is its JSON line, and the same line goes to
//!   the log (target `flotilla::audit`) for log shippers; the API returns the records.
//! - **Request ids.** The caller's `x-request-id` header (the CLI sends one per call), or one
//!   made up here; it goes back in the `x-request-id` response header, so a caller can find
//!   its call in the log.
//!
//! The record is written before the response is returned: a caller that got its answer finds
//! its record. A failed write is logged (the JSON line still went to the log) and does not
//! fail the call, whose effect has already happened.

pub mod layer;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use flotilla_intent_store::{IntentStore, Op, RangeRequest, Txn, keys};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use layer::AuditLayer;

/// Records kept by default.
pub const DEFAULT_RETENTION: usize = 10_000;
/// Keys removed per transaction (etcd refuses transactions of more than 128 operations).
const DELETES_PER_TXN: usize = 100;
/// Keys read per page when scanning the log.
const PAGE: usize = 1000;

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store failed.
    #[error("audit store: {0}")]
    Store(#[from] flotilla_intent_store::StoreError),
    /// A stored record is not a record.
    #[error("audit record {key} does not decode: {error}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        error: String,
    },
}

impl AuditError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AuditError::Store(_) => "AUDIT_STORE",
            AuditError::Corrupt { .. } => "AUDIT_RECORD_CORRUPT",
        }
    }
}

/// One audit record, as stored (its JSON line) and as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// RFC 3339, milliseconds, UTC.
    pub time: String,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The caller's identity URI, or `anonymous`.
    pub principal: String,
    /// The full gRPC method.
    pub method: String,
    /// The request id.
    pub request_id: String,
    /// The gRPC status code's name.
    pub code: String,
    /// The status message (empty when OK).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The replica that answered.
    pub replica: String,
    /// The peer address, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
}

impl AuditRecord {
    /// A record of a call to `method` by `principal` that finished now with `code`.
    pub fn now(
        principal: String,
        method: String,
        request_id: String,
        code: tonic::Code,
        message: String,
    ) -> Self {
        let now = SystemTime::now();
        let unix_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        AuditRecord {
            time: humantime::format_rfc3339_millis(now).to_string(),
            unix_ms,
            principal,
            method,
            request_id,
            code: code_name(code).to_string(),
            message,
            replica: String::new(),
            peer: String::new(),
        }
    }

    /// The record for the API.
    pub fn to_proto(&self) -> flotilla_proto::v1::AuditRecord {
        flotilla_proto::v1::AuditRecord {
            time: self.time.clone(),
            unix_ms: i64::try_from(self.unix_ms).unwrap_or(i64::MAX),
            principal: self.principal.clone(),
            method: self.method.clone(),
            request_id: self.request_id.clone(),
            code: self.code.clone(),
            message: self.message.clone(),
            replica: self.replica.clone(),
            peer: self.peer.clone(),
        }
    }
}

/// The canonical name of a gRPC status code (`PERMISSION_DENIED`), as in the gRPC spec.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Which records a listing wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Exact principal.
    pub principal: Option<String>,
    /// Method contains.
    pub method: Option<String>,
    /// At or after (ms since the epoch).
    pub since_unix_ms: u64,
}

impl Filter {
    fn matches(&self, r: &AuditRecord) -> bool {
        self.principal.as_ref().is_none_or(|p| &r.principal == p)
            && self.method.as_ref().is_none_or(|m| r.method.contains(m))
            && r.unix_ms >= self.since_unix_ms
    }
}

/// Writes, prunes and reads audit records (cheap to clone).
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn IntentStore>,
    replica: String,
    retention: usize,
    prune_every: usize,
    stored: AtomicUsize,
    pruning: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("replica", &self.inner.replica)
            .field("retention", &self.inner.retention)
            .finish()
    }
}

impl AuditLog {
    /// A log in `store`, written as `replica`, keeping the newest `retention` records (at
    /// least one).
    pub fn new(store: Arc<dyn IntentStore>, replica: impl Into<String>, retention: usize) -> Self {
        let retention = retention.max(1);
        AuditLog {
            inner: Arc::new(Inner {
                store,
                replica: replica.into(),
                retention,
                // Prune often enough that the overshoot stays a small part of the retention.
                prune_every: (retention / 16).clamp(1, 256),
                stored: AtomicUsize::new(0),
                pruning: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Records `rec` (stamped with this replica): logs its JSON line, stores it and, every so
    /// often, prunes in the background. Never fails; a store error is logged.
    pub async fn record(&self, mut rec: AuditRecord) {
        rec.replica = self.inner.replica.clone();
        let line = match serde_json::to_string(&rec) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "audit record does not serialize");
                return;
            }
        };
        info!(target: "flotilla::audit", "{line}");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let stored = match keys::audit(rec.unix_ms, &id) {
            Ok(key) => self.inner.store.put(&key, line.into_bytes(), None).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            warn!(error = %e, method = %rec.method, "audit record not stored");
            return;
        }
        // Every `prune_every`-th record prunes, starting with the first after a start (which
        // removes what an earlier run left beyond the retention).
        let n = self.inner.stored.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(self.inner.prune_every) {
            let log = self.clone();
            tokio::spawn(async move {
                if let Err(e) = log.prune().await {
                    warn!(error = %e, code = e.code(), "audit log prune failed");
                }
            });
        }
    }

    /// Every audit key, oldest first.
    async fn keys(&self) -> Result<Vec<(String, Vec<u8>)>, AuditError> {
        let mut out = Vec::new();
        let mut req = Some(RangeRequest::prefix(keys::AUDIT).with_limit(PAGE));
        while let Some(r) = req {
            let resp = self.inner.store.range(r.clone()).await?;
            req = resp.next_page(&r);
            out.extend(resp.kvs.into_iter().map(|kv| (kv.key, kv.value)));
        }
        Ok(out)
    }

    /// Removes the oldest records beyond the retention; returns how many.
    pub async fn prune(&self) -> Result<usize, AuditError> {
        let _one_at_a_time = self.inner.pruning.lock().await;
        let all = self.keys().await?;
        let excess = all.len().saturating_sub(self.inner.retention);
        for chunk in all[..excess].chunks(DELETES_PER_TXN) {
            let ops = chunk.iter().map(|(k, _)| Op::Delete { key: k.clone() });
            self.inner.store.txn(Txn::new().and_then(ops)).await?;
        }
        Ok(excess)
    }

    /// Records matching `filter`, newest first, starting after the record keyed `after`
    /// (a page token: a key suffix) when given, at most `limit`; with the next page's token.
    pub async fn list(
        &self,
        filter: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<AuditRecord>, Option<String>), AuditError> {
        let all = self.keys().await?;
        let mut out = Vec::new();
        let (mut last, mut next) = (None, None);
        for (key, value) in all.iter().rev() {
            let suffix = key.strip_prefix(keys::AUDIT).unwrap_or(key);
            if after.is_some_and(|a| suffix >= a) {
                continue;
            }
            let rec: AuditRecord =
                serde_json::from_slice(value).map_err(|e| AuditError::Corrupt {
                    key: key.clone(),
                    error: e.to_string(),
                })?;
            if !filter.matches(&rec) {
                continue;
            }
            if out.len() == limit {
                // One more matches: there is a next page, starting after the last one kept.
                next = last.clone();
                break;
            }
            last = Some(suffix.to_string());
            out.push(rec);
        }
        Ok((out, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_intent_store::EmbeddedStore;

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn IntentStore> {
        Arc::new(EmbeddedStore::open(dir.path()).await.expect("open"))
    }

    fn rec(principal: &str, method: &str, ms: u64) -> AuditRecord {
        let mut r = AuditRecord::now(
            principal.into(),
            method.into(),
            "r".into(),
            tonic::Code::Ok,
            String::new(),
        );
        r.unix_ms = ms;
        r
    }

    #[tokio::test]
    async fn keeps_the_newest_retention_records_and_lists_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let log = AuditLog::new(store, "cp-0", 3);
        for i in 0..5u64 {
            log.record(rec("flotilla://admin/a", &format!("/s/M{i}"), 1000 + i))
                .await;
        }
        log.prune().await.expect("prune");
        let (all, next) = log.list(&Filter::default(), None, 10).await.expect("list");
        let methods: Vec<_> = all.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["/s/M4", "/s/M3", "/s/M2"]);
        assert_eq!(next, None);
        assert!(all.iter().all(|r| r.replica == "cp-0"));
    }

    #[tokio::test]
    async fn pages_and_filters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let log = AuditLog::new(store, "cp-0", 100);
        for i in 0..6u64 {
            let who = if i % 2 == 0 {
                "flotilla://admin/a"
            } else {
                "anonymous"
            };
            log.record(rec(who, &format!("/s/Delete{i}"), 1000 + i))
                .await;
        }
        let f = Filter {
            principal: Some("flotilla://admin/a".into()),
            ..Filter::default()
        };
        let (p1, t1) = log.list(&f, None, 2).await.expect("page 1");
        assert_eq!(
            p1.iter().map(|r| r.unix_ms).collect::<Vec<_>>(),
            [1004, 1002]
        );
        let t1 = t1.expect("a second page");
        let (p2, t2) = log.list(&f, Some(&t1), 2).await.expect("page 2");
        assert_eq!(p2.iter().map(|r| r.unix_ms).collect::<Vec<_>>(), [1000]);
        assert_eq!(t2, None);
        let since = Filter {
            since_unix_ms: 1004,
            method: Some("Delete".into()),
            ..Filter::default()
        };
        let (p, _) = log.list(&since, None, 10).await.expect("since");
        assert_eq!(
            p.iter().map(|r| r.unix_ms).collect::<Vec<_>>(),
            [1005, 1004]
        );
    }
}

//! Errors of the intent store.
//!
//! One enum for every backend, so a caller handles "the start revision was compacted" or "the
//! lease is gone" the same way whether the store is etcd or embedded. Each variant has a stable
//! code ([`StoreError::code`]) that the control plane surfaces in gRPC `ErrorInfo.reason`.
//!
//! etcd's errors arrive as gRPC statuses with etcd's own messages; [`crate::etcd`] maps the ones
//! we act on (compaction, future revision, lease not found) to the matching variant and every
//! transport failure to [`StoreError::Unavailable`].

use crate::types::LeaseId;

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to an [`IntentStore`](crate::IntentStore).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or refused service (etcd down, no quorum, transport error,
    /// the embedded store's background machinery has stopped). Retry with backoff.
    #[error("store unavailable: {0}")]
    Unavailable(String),

    /// A read or watch asked for history older than the compaction point. Watchers get this
    /// when their start revision (or the point they had reached while lagging) is older than
    /// `compact_revision`; they must re-list and watch again from the listed revision + 1.
    #[error("required revision has been compacted (compact revision {compact_revision})")]
    Compacted {
        /// The store's compaction point; history before it is gone.
        compact_revision: i64,
    },

    /// A compaction or read asked for a revision the store has not reached yet.
    #[error("required revision {revision} is a future revision (current {current})")]
    FutureRevision {
        /// The revision asked for.
        revision: i64,
        /// The store's current revision (0 when the backend does not say).
        current: i64,
    },

    /// The lease does not exist: it expired, was revoked, or never existed. Keys put under it
    /// are (or will be) deleted; the holder must grant a new lease.
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),

    /// A transaction's compares did not hold where the caller required success (see
    /// [`TxnResponse::into_success`](crate::TxnResponse::into_success)): someone else wrote
    /// first, or the fencing epoch is stale.
    #[error("transaction conflict: {0}")]
    TxnConflict(String),

    /// A campaign's own candidate key vanished before it was elected (its lease expired or was
    /// revoked, or someone deleted it).
    #[error("election lost: candidate key {key} is gone")]
    ElectionLost {
        /// The candidate key that disappeared.
        key: String,
    },

    /// The request itself is malformed (empty key, bad TTL, duplicate key in a transaction,
    /// a name with a `/` where one segment is expected).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A store specification (`--store`, `--etcd-endpoints`) could not be parsed.
    #[error("invalid store spec: {0}")]
    InvalidSpec(String),

    /// The embedded store's files failed (I/O error, corrupt record, database already open by
    /// another process).
    #[error("storage error: {0}")]
    Storage(String),
}

impl StoreError {
    /// Stable, machine-readable code of this error (gRPC `ErrorInfo.reason`).
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "STORE_UNAVAILABLE",
            StoreError::Compacted { .. } => "STORE_COMPACTED",
            StoreError::FutureRevision { .. } => "STORE_FUTURE_REVISION",
            StoreError::LeaseNotFound(_) => "LEASE_NOT_FOUND",
            StoreError::TxnConflict(_) => "TXN_CONFLICT",
            StoreError::ElectionLost { .. } => "ELECTION_LOST",
            StoreError::InvalidArgument(_) => "STORE_INVALID_ARGUMENT",
            StoreError::InvalidSpec(_) => "STORE_INVALID_SPEC",
            StoreError::Storage(_) => "STORE_STORAGE",
        }
    }

    /// Whether retrying the same call later may succeed (transport trouble), as opposed to
    /// errors that need a different request (re-list, new lease, new compare).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            StoreError::Compacted {
                compact_revision: 3
            }
            .code(),
            "STORE_COMPACTED"
        );
        assert_eq!(
            StoreError::LeaseNotFound(LeaseId(1)).code(),
            "LEASE_NOT_FOUND"
        );
        assert_eq!(
            StoreError::Unavailable("x".into()).code(),
            "STORE_UNAVAILABLE"
        );
        assert_eq!(StoreError::TxnConflict("x".into()).code(), "TXN_CONFLICT");
        assert!(StoreError::Unavailable("x".into()).is_retryable());
        assert!(!StoreError::LeaseNotFound(LeaseId(1)).is_retryable());
    }
}

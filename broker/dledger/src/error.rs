//! Errors of the public [`crate::DLedger`] API, one enum per operation family, each variant
//! with a stable `SCREAMING_SNAKE` code the broker can surface unchanged.

use std::time::Duration;

use flotilla_message_store::StoreError;

use crate::config::ConfigError;
use crate::persist::PersistError;

/// Why [`crate::DLedger::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The term or epoch file could not be read or created.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The listen address could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be worked out from this member's peer entry.
    #[error("cannot listen on {0:?}: expected host:port")]
    BadListenAddress(String),
    /// The CommitLog holds data but there is no epoch file: the store was written outside
    /// DLedger, and its bytes cannot be attributed to a term. Start from an empty store (or
    /// restore the epoch file).
    #[error("the CommitLog holds {end} bytes written outside DLedger (no epoch file)")]
    UnmanagedData {
        /// The CommitLog end.
        end: i64,
    },
    /// The store could not be adjusted to the epoch file.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StartError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            StartError::Config(e) => e.code(),
            StartError::Persist(e) => e.code(),
            StartError::Bind { .. } => "DLEDGER_BIND_FAILED",
            StartError::BadListenAddress(_) => "DLEDGER_BAD_LISTEN_ADDRESS",
            StartError::UnmanagedData { .. } => "DLEDGER_UNMANAGED_DATA",
            StartError::Store(e) => e.code(),
        }
    }
}

/// Why [`crate::DLedger::wait_committed`] did not confirm a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// This member is not the leader (or lost leadership while waiting); the write may or may
    /// not survive. `leader` is the current leader if known.
    #[error("not the leader (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    NotLeader {
        /// The leader's id, if known.
        leader: Option<String>,
    },
    /// A majority did not confirm within the timeout; the write may still commit later.
    #[error("offset {end_offset} not committed within {timeout:?} (commit offset {commit})")]
    Timeout {
        /// The offset waited for.
        end_offset: i64,
        /// The commit offset when giving up.
        commit: i64,
        /// The timeout.
        timeout: Duration,
    },
    /// The leader has not heard from a majority within its lease; it stops acknowledging and
    /// steps down.
    #[error("leader lease expired: no majority heard from recently")]
    LeaseExpired,
    /// The engine has been shut down.
    #[error("dledger is shut down")]
    ShutDown,
}

impl CommitError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            CommitError::NotLeader { .. } => "DLEDGER_NOT_LEADER",
            CommitError::Timeout { .. } => "DLEDGER_COMMIT_TIMEOUT",
            CommitError::LeaseExpired => "DLEDGER_LEASE_EXPIRED",
            CommitError::ShutDown => "DLEDGER_SHUT_DOWN",
        }
    }
}

/// Why [`crate::DLedger::transfer_leadership`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Only the leader can transfer leadership.
    #[error("not the leader (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    NotLeader {
        /// The leader's id, if known.
        leader: Option<String>,
    },
    /// The target is not a member of the group.
    #[error("{0} is not a member of this group")]
    UnknownPeer(String),
    /// The target did not become leader in time (this member resumes leading if it still
    /// can).
    #[error("{to} did not take over within {timeout:?}")]
    Timeout {
        /// The target.
        to: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The engine has been shut down.
    #[error("dledger is shut down")]
    ShutDown,
}

impl TransferError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            TransferError::NotLeader { .. } => "DLEDGER_NOT_LEADER",
            TransferError::UnknownPeer(_) => "DLEDGER_UNKNOWN_PEER",
            TransferError::Timeout { .. } => "DLEDGER_TRANSFER_TIMEOUT",
            TransferError::ShutDown => "DLEDGER_SHUT_DOWN",
        }
    }
}

/// Membership changes are not implemented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Changing the set of members at run time is not supported: stop the group, change
    /// `dLegerPeers` on every member and restart them (one at a time keeps a majority only if
    /// the old and new sets share a majority).
    #[error("membership change is not supported; change dLegerPeers on every member and restart")]
    Unsupported,
}

impl MembershipError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            MembershipError::Unsupported => "DLEDGER_MEMBERSHIP_CHANGE_UNSUPPORTED",
        }
    }
}

//! The hook through which replication (master/slave HA, DLedger) joins the send path.
//!
//! After the store appends a message, the send path awaits [`ReplicationGate::after_append`]
//! with the CommitLog end offset of the append; a SYNC_MASTER gate waits for slave acks and
//! answers FLUSH_SLAVE_TIMEOUT or SLAVE_NOT_AVAILABLE, a DLedger gate waits for a quorum.
//! Until those modules land the broker uses [`NoReplication`], which returns at once, so the
//! hot path pays one virtual call.

use std::future::Future;
use std::pin::Pin;

/// What replication says about an appended message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOutcome {
    /// Replicated as required (or no replication).
    Ok,
    /// The slave did not confirm in time.
    FlushSlaveTimeout,
    /// No slave is connected.
    SlaveNotAvailable,
    /// This broker stopped being the master while waiting (DLedger: lost leadership or its
    /// lease). The write is not acknowledged; the client must refresh its route and retry.
    NotLeader,
}

/// Replication errors (reserved for HA/DLedger implementations).
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// This broker cannot take writes in its current role.
    #[error("not writable in role {0}")]
    NotWritable(String),
}

impl ReplicationError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotWritable(_) => "REPLICATION_NOT_WRITABLE",
        }
    }
}

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Awaited by the send path after every successful append.
pub trait ReplicationGate: Send + Sync + 'static {
    /// Waits until the bytes up to `end_offset` are replicated as the role requires.
    fn after_append(&self, end_offset: i64) -> BoxFuture<'_, GateOutcome>;

    /// Whether the gate needs to be awaited at all (lets the hot path skip the call).
    fn is_noop(&self) -> bool {
        false
    }

    /// Checked right before the store appends: `false` refuses the write without touching
    /// the store (DLedger: only the leader holding its lease may append).
    fn before_append(&self) -> bool {
        true
    }
}

/// No replication: every append is done once it is in the local store.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReplication;

impl ReplicationGate for NoReplication {
    fn after_append(&self, _end_offset: i64) -> BoxFuture<'_, GateOutcome> {
        Box::pin(async { GateOutcome::Ok })
    }
    fn is_noop(&self) -> bool {
        true
    }
}

//! The SYNC_MASTER replication gate: a send is acknowledged only once slaves hold it.
//!
//! The gate is a pure decision ([`decide`]) over the acked offsets of the connected
//! slaves, re-evaluated whenever an ack arrives (an [`AckSource`] change notification),
//! bounded by the wait timeout. Keeping the source behind a trait lets the unit tests drive
//! the gate with a fake and no sockets. See the module docs of [`crate::ha`] for the rules.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use super::HaState;
use crate::replication::{BoxFuture, GateOutcome, ReplicationGate};

/// Where the gate learns slave progress.
pub trait AckSource: Send + Sync + 'static {
    /// The acked offset of every connected slave (-1 for one that has not reported yet).
    fn acked_offsets(&self) -> Vec<i64>;
    /// A receiver that changes whenever a slave connects, acks or disconnects.
    fn changes(&self) -> watch::Receiver<u64>;
}

impl AckSource for HaState {
    fn acked_offsets(&self) -> Vec<i64> {
        self.slaves.lock().values().map(|s| s.acked).collect()
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.acks.subscribe()
    }
}

/// What the gate concludes from the current acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Enough slaves hold the bytes.
    Done,
    /// Not yet: wait for more acks.
    Wait,
    /// No slave is connected.
    NoSlave,
}

/// Decides for an append ending at `end`: `required` is the explicit slave-ack count
/// (`inSyncReplicas - 1`, at least 1) or `None` for "every in-sync slave, at least one",
/// where in sync means reported and within `max_gap` bytes of `end`.
pub fn decide(acks: &[i64], end: i64, required: Option<usize>, max_gap: i64) -> Decision {
    if acks.is_empty() {
        return Decision::NoSlave;
    }
    let need = required.unwrap_or_else(|| {
        acks.iter()
            .filter(|a| **a >= 0 && end - **a <= max_gap)
            .count()
    });
    let need = need.max(1);
    let have = acks.iter().filter(|a| **a >= end).count();
    if have >= need {
        Decision::Done
    } else {
        Decision::Wait
    }
}

/// The SYNC_MASTER gate.
pub struct SyncGate {
    source: Arc<dyn AckSource>,
    required: Option<usize>,
    timeout: Duration,
    max_gap: i64,
}

impl SyncGate {
    /// A gate over `source`; `in_sync_replicas` counts the master (Java's meaning).
    pub fn new(
        source: Arc<dyn AckSource>,
        in_sync_replicas: Option<usize>,
        timeout: Duration,
        max_gap: i64,
    ) -> Self {
        Self {
            source,
            required: in_sync_replicas.map(|n| n.saturating_sub(1).max(1)),
            timeout,
            max_gap,
        }
    }

    async fn wait(&self, end: i64) -> GateOutcome {
        let mut rx = self.source.changes();
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            rx.borrow_and_update();
            match decide(
                &self.source.acked_offsets(),
                end,
                self.required,
                self.max_gap,
            ) {
                Decision::Done => return GateOutcome::Ok,
                Decision::NoSlave => return GateOutcome::SlaveNotAvailable,
                Decision::Wait => {}
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return GateOutcome::SlaveNotAvailable,
                Err(_) => return GateOutcome::FlushSlaveTimeout,
            }
        }
    }
}

impl ReplicationGate for SyncGate {
    fn after_append(&self, end_offset: i64) -> BoxFuture<'_, GateOutcome> {
        let span = tracing::debug_span!("sync_gate", end = end_offset);
        Box::pin(
            async move {
                let out = self.wait(end_offset).await;
                if out != GateOutcome::Ok {
                    tracing::warn!(outcome = ?out, "SYNC_MASTER write not confirmed by slaves");
                }
                out
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    struct FakeAcks {
        acks: Mutex<Vec<i64>>,
        tx: watch::Sender<u64>,
    }

    impl FakeAcks {
        fn new(acks: Vec<i64>) -> Arc<Self> {
            Arc::new(Self {
                acks: Mutex::new(acks),
                tx: watch::channel(0).0,
            })
        }
        fn set(&self, acks: Vec<i64>) {
            *self.acks.lock() = acks;
            self.tx.send_modify(|v| *v += 1);
        }
    }

    impl AckSource for FakeAcks {
        fn acked_offsets(&self) -> Vec<i64> {
            self.acks.lock().clone()
        }
        fn changes(&self) -> watch::Receiver<u64> {
            self.tx.subscribe()
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(&[], 10, None, 100), Decision::NoSlave);
        assert_eq!(decide(&[], 10, Some(1), 100), Decision::NoSlave);
        // Default: every in-sync slave, at least one.
        assert_eq!(decide(&[10], 10, None, 100), Decision::Done);
        assert_eq!(decide(&[5], 10, None, 100), Decision::Wait);
        assert_eq!(decide(&[10, 5], 10, None, 100), Decision::Wait);
        assert_eq!(decide(&[10, 12], 10, None, 100), Decision::Done);
        // A slave far behind (or silent) is not in sync and not waited for ...
        assert_eq!(decide(&[10, 0], 1000, None, 100), Decision::Wait);
        assert_eq!(decide(&[1000, 0], 1000, None, 100), Decision::Done);
        assert_eq!(decide(&[1000, -1], 1000, None, 100), Decision::Done);
        // ... but someone must hold the bytes.
        assert_eq!(decide(&[-1], 10, None, 100), Decision::Wait);
        // Explicit count.
        assert_eq!(decide(&[10, 5], 10, Some(1), 100), Decision::Done);
        assert_eq!(decide(&[10, 5], 10, Some(2), 100), Decision::Wait);
    }

    #[tokio::test]
    async fn gate_waits_for_ack_then_answers() {
        let src = FakeAcks::new(vec![0]);
        let gate = Arc::new(SyncGate::new(
            src.clone(),
            None,
            Duration::from_secs(30),
            1 << 20,
        ));
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.after_append(100).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        src.set(vec![50]);
        tokio::task::yield_now().await;
        src.set(vec![100]);
        assert_eq!(waiting.await.unwrap(), GateOutcome::Ok);
    }

    #[tokio::test]
    async fn gate_without_slaves_and_timeout() {
        let none = FakeAcks::new(vec![]);
        let gate = SyncGate::new(none, None, Duration::from_secs(30), 1 << 20);
        assert_eq!(gate.after_append(1).await, GateOutcome::SlaveNotAvailable);
        let slow = FakeAcks::new(vec![0]);
        let gate = SyncGate::new(slow, Some(2), Duration::from_millis(20), 1 << 20);
        assert_eq!(gate.after_append(1).await, GateOutcome::FlushSlaveTimeout);
    }

    #[tokio::test]
    async fn slave_leaving_mid_wait_is_not_available() {
        let src = FakeAcks::new(vec![0]);
        let gate = Arc::new(SyncGate::new(
            src.clone(),
            None,
            Duration::from_secs(30),
            1 << 20,
        ));
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.after_append(10).await });
        tokio::task::yield_now().await;
        src.set(vec![]);
        assert_eq!(waiting.await.unwrap(), GateOutcome::SlaveNotAvailable);
    }

    #[test]
    fn in_sync_replicas_counts_the_master() {
        let src = FakeAcks::new(vec![]);
        let g = SyncGate::new(src.clone(), Some(1), Duration::from_secs(1), 1);
        assert_eq!(g.required, Some(1), "never zero: SYNC_MASTER always waits");
        let g = SyncGate::new(src, Some(3), Duration::from_secs(1), 1);
        assert_eq!(g.required, Some(2));
    }
}

//! Long polling: a pull that finds nothing waits for the next message of its queue.
//!
//! Push consumers pull with the suspend bit; without holding, an idle consumer would spin
//! (or sleep and add latency). A held pull registers interest in its (topic, queue) and is
//! woken by the store's per-queue arrival notifications; it then re-reads once. A periodic
//! re-check (5 s, as Java's `PullRequestHoldService`) bounds the damage of a missed wake-up,
//! and a lagging arrival stream wakes everyone.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Waiters by queue.
#[derive(Default)]
pub struct LongPolling {
    queues: Mutex<HashMap<String, HashMap<i32, Arc<Notify>>>>,
}

impl LongPolling {
    /// The wake-up handle of a queue (created on first use; queues are few).
    pub fn notify_for(&self, topic: &str, queue_id: i32) -> Arc<Notify> {
        let mut q = self.queues.lock();
        if let Some(n) = q.get(topic).and_then(|m| m.get(&queue_id)) {
            return n.clone();
        }
        q.entry(topic.to_string())
            .or_default()
            .entry(queue_id)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Wakes the pulls held on a queue.
    pub fn wake(&self, topic: &str, queue_id: i32) {
        if let Some(n) = self.queues.lock().get(topic).and_then(|m| m.get(&queue_id)) {
            n.notify_waiters();
        }
    }

    /// Wakes every held pull.
    pub fn wake_all(&self) {
        for m in self.queues.lock().values() {
            for n in m.values() {
                n.notify_waiters();
            }
        }
    }

    /// Forwards the store's arrival notifications to held pulls until the store closes.
    pub async fn run(
        self: Arc<Self>,
        mut arrivals: tokio::sync::broadcast::Receiver<flotilla_message_store::Arrival>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match arrivals.recv().await {
                Ok(a) => self.wake(&a.topic, a.queue_id),
                Err(RecvError::Lagged(_)) => self.wake_all(),
                Err(RecvError::Closed) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wake_reaches_enabled_waiter() {
        let lp = LongPolling::default();
        let n = lp.notify_for("T", 1);
        let fut = n.notified();
        tokio::pin!(fut);
        fut.as_mut().enable();
        lp.wake("T", 2);
        lp.wake("T", 1);
        tokio::time::timeout(std::time::Duration::from_secs(1), fut)
            .await
            .unwrap();
    }
}

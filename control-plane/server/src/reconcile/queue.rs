//! The work queue: one reconcile per cluster at a time, requeues with jittered exponential
//! backoff on errors, and "dirty while running" so a change during a reconcile is never lost.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    ready: VecDeque<String>,
    queued: HashSet<String>,
    running: HashSet<String>,
    dirty: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// A deduplicating queue of cluster names.
#[derive(Default)]
pub struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl Queue {
    /// A new queue.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Asks for `name` to be reconciled (once, however often it is asked).
    pub fn add(&self, name: &str) {
        let mut q = self.inner.lock();
        if q.running.contains(name) {
            q.dirty.insert(name.to_string());
            return;
        }
        if q.queued.insert(name.to_string()) {
            q.ready.push_back(name.to_string());
            drop(q);
            self.notify.notify_one();
        }
    }

    /// Takes the next name to reconcile, waiting for one.
    pub async fn next(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut q = self.inner.lock();
                if let Some(name) = q.ready.pop_front() {
                    q.queued.remove(&name);
                    q.running.insert(name.clone());
                    let more = !q.ready.is_empty();
                    drop(q);
                    if more {
                        self.notify.notify_one();
                    }
                    return name;
                }
            }
            notified.await;
        }
    }

    /// Marks `name` done; on failure schedules a retry after a backoff.
    pub fn done(self: &Arc<Self>, name: &str, ok: bool, base: Duration, max: Duration) {
        let (retry, again) = {
            let mut q = self.inner.lock();
            q.running.remove(name);
            let again = q.dirty.remove(name);
            let retry = if ok {
                q.failures.remove(name);
                None
            } else {
                let f = q.failures.entry(name.to_string()).or_default();
                let d = crate::backoff::delay(*f, base, max);
                *f = f.saturating_add(1);
                Some(d)
            };
            (retry, again)
        };
        if again {
            self.add(name);
        }
        if let Some(d) = retry {
            let q = self.clone();
            let name = name.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                q.add(&name);
            });
        }
    }

    /// Nothing queued or running.
    pub fn is_idle(&self) -> bool {
        let q = self.inner.lock();
        q.ready.is_empty() && q.running.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_remembers_changes_while_running() {
        let q = Queue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.next().await, "a");
        q.add("a"); // while running: dirty
        assert_eq!(q.next().await, "b");
        q.done(
            "a",
            true,
            Duration::from_millis(1),
            Duration::from_millis(2),
        );
        assert_eq!(q.next().await, "a");
        q.done(
            "a",
            true,
            Duration::from_millis(1),
            Duration::from_millis(2),
        );
        q.done(
            "b",
            true,
            Duration::from_millis(1),
            Duration::from_millis(2),
        );
        assert!(q.is_idle());
    }
}

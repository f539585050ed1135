//! Flushing: ASYNC_FLUSH's periodic flusher and SYNC_FLUSH's group commit.
//!
//! One background thread owns CommitLog flushing in both modes:
//!
//! - **ASYNC_FLUSH**: it wakes every `flush_interval` and flushes when at least
//!   `flush_least_bytes` are dirty, or everything when `flush_thorough_interval` has passed.
//!   An append that leaves more than `max_dirty_bytes` dirty wakes it at once, which bounds
//!   the data a power loss can take.
//! - **SYNC_FLUSH**: an append registers "durable up to offset X" and awaits a oneshot. The
//!   thread takes *all* pending requests, issues one `msync` up to the current end of the log
//!   and answers every request it covered; appends arriving during that `msync` form the next
//!   group. This is group commit: N concurrent writers cost about one flush, not N.
//!
//! After a flush, with a `page_cache_window` configured, the thread also hands the page cache
//! of flushed bytes further behind than the window back to the kernel, off the put path.
//!
//! A separate housekeeping thread flushes ConsumeQueues and the index, writes the checkpoint
//! and runs retention (see `store.rs`). Neither thread sleeps: they wait on condition
//! variables with timeouts, and shutdown wakes them.

use std::sync::Weak;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use crate::store::Inner;

/// A pending SYNC_FLUSH request: "tell me when the log is durable up to this offset".
#[derive(Debug)]
pub struct FlushRequest {
    pub(crate) end: i64,
    pub(crate) done: oneshot::Sender<bool>,
}

#[derive(Debug, Default)]
pub(crate) struct FlushQueue {
    requests: Vec<FlushRequest>,
    kick: bool,
    stop: bool,
}

/// Shared between the store and its flusher thread.
#[derive(Debug, Default)]
pub struct FlushSignals {
    queue: Mutex<FlushQueue>,
    cv: Condvar,
}

impl FlushSignals {
    /// Queues a SYNC_FLUSH request and wakes the flusher.
    pub fn request(&self, end: i64) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let mut q = self.queue.lock();
        if q.stop {
            // The flusher is gone; answer "not durable" so the caller reports a timeout.
            let _ = tx.send(false);
            return rx;
        }
        q.requests.push(FlushRequest { end, done: tx });
        drop(q);
        self.cv.notify_one();
        rx
    }

    /// Asks the flusher to flush soon.
    pub fn kick(&self) {
        self.queue.lock().kick = true;
        self.cv.notify_one();
    }

    /// Stops the flusher after a final flush.
    pub fn stop(&self) {
        self.queue.lock().stop = true;
        self.cv.notify_all();
    }
}

/// The flusher thread's body.
pub(crate) fn run_flusher(weak: Weak<Inner>, signals: std::sync::Arc<FlushSignals>) {
    let mut last_thorough = Instant::now();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let interval = inner.cfg.flush_interval;
        drop(inner);
        let (requests, kicked, stop) = {
            let mut q = signals.queue.lock();
            if q.requests.is_empty() && !q.kick && !q.stop {
                signals.cv.wait_for(&mut q, interval);
            }
            let kicked = std::mem::take(&mut q.kick);
            (std::mem::take(&mut q.requests), kicked, q.stop)
        };
        let Some(inner) = weak.upgrade() else {
            for r in requests {
                let _ = r.done.send(false);
            }
            return;
        };
        let cl = &inner.commitlog;
        let dirty = cl.max_offset() - cl.flushed_offset();
        let thorough = last_thorough.elapsed() >= inner.cfg.flush_thorough_interval;
        let should = !requests.is_empty()
            || kicked
            || stop
            || dirty >= inner.cfg.flush_least_bytes as i64
            || (thorough && dirty > 0);
        if should {
            let _span = tracing::debug_span!("flush", dirty, waiters = requests.len()).entered();
            let result = cl.flush();
            if let Err(e) = &result {
                tracing::error!(error = %e, code = e.code(), "CommitLog flush failed");
            }
            let flushed = cl.flushed_offset();
            for r in requests {
                let _ = r.done.send(result.is_ok() && flushed >= r.end);
            }
            if thorough || dirty == 0 {
                last_thorough = Instant::now();
            }
            if let Some(window) = inner.cfg.page_cache_window
                && let Err(e) = cl.release_behind(window)
            {
                tracing::warn!(error = %e, code = e.code(), "releasing CommitLog page cache failed");
            }
        }
        if stop {
            return;
        }
    }
}

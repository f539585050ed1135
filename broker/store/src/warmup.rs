//! The CommitLog warm-up thread: pre-faults the pages just ahead of the write position in
//! the background (RocketMQ's `warmMappedFile`), so the first touch of fresh page-cache
//! memory — allocating and zeroing a page, which in a VM can also mean the host backing it —
//! happens off the put lock and, when a core is free, in parallel with the appends.
//!
//! It is purely an optimisation: it never writes a byte (`madvise(MADV_POPULATE_WRITE)` only
//! maps pages, whose contents stay what the file holds), so the on-disk format, recovery and
//! every reader are unaffected. The writer still pre-faults inline when it catches up (see
//! [`crate::mmap`]); the two claim disjoint ranges through the segment's pre-faulted mark.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{OnceLock, Weak};
use std::thread::Thread;
use std::time::Duration;

use crate::store::Inner;

/// How far ahead of the write position the thread keeps pages populated. 32 MiB (3 % of a
/// default 1 GiB file) lets the thread bank work while the writer is descheduled, which on a
/// busy 2-core VM beat 4 MiB by about 1.3× in the criterion append benchmark.
pub(crate) const WARM_AHEAD: i64 = 32 << 20;
/// Bytes populated per system call (bounds how long one call holds the mapping's lock).
const WARM_CHUNK: usize = 512 << 10;
/// Segments smaller than this are not warmed (tests and tiny logs: nothing to gain).
const WARM_MIN_SEGMENT: usize = 16 << 20;
/// Idle wake-up period (the writer wakes the thread sooner when it gets close).
const IDLE_PARK: Duration = Duration::from_millis(200);

/// Shared between the writer (which wakes the thread) and the warm-up thread.
#[derive(Debug, Default)]
pub(crate) struct WarmSignal {
    thread: OnceLock<Thread>,
    stop: AtomicBool,
    /// CommitLog offset up to which pages are warm (or nothing more is to be done).
    warmed: AtomicI64,
}

impl WarmSignal {
    /// Called by the writer after an append ending at `end`: wakes the thread once the writer
    /// is within half the warm-up distance of the warm mark. Cheap otherwise (one load).
    pub(crate) fn after_append(&self, end: i64) {
        if end.saturating_add(WARM_AHEAD / 2) > self.warmed.load(Ordering::Relaxed)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }

    /// Asks the thread to exit.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// The warm-up loop; returns when stopped or when the store is dropped.
pub(crate) fn run_warmer(weak: Weak<Inner>, sig: std::sync::Arc<WarmSignal>) {
    let _ = sig.thread.set(std::thread::current());
    loop {
        if sig.stop.load(Ordering::Acquire) {
            return;
        }
        if !crate::mmap::prefault_supported() {
            // Kernel before 5.14: nothing to do. Stop the writer's wake-ups too.
            sig.warmed.store(i64::MAX, Ordering::Relaxed);
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        let pos = inner.commitlog.max_offset();
        let seg = inner.commitlog.files().find(pos);
        // Do not keep the store alive while populating: dropping the last handle must close
        // it (and release its lock file) promptly.
        drop(inner);
        let warmed = match seg {
            Some(seg) if seg.size() >= WARM_MIN_SEGMENT => {
                let from = (pos - seg.start()) as usize;
                let to = from.saturating_add(WARM_AHEAD as usize);
                let mark = seg.warm(from, to, WARM_CHUNK);
                if mark >= seg.size() {
                    // The rest of this file is warm; nothing to do until the next one.
                    seg.end() + WARM_AHEAD
                } else {
                    seg.start() + mark as i64
                }
            }
            // No file yet, or too small to bother: check again after the idle period.
            _ => pos + WARM_AHEAD,
        };
        sig.warmed.store(warmed, Ordering::Relaxed);
        std::thread::park_timeout(IDLE_PARK);
    }
}

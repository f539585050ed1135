//! The time source of route expiry.
//!
//! Brokers expire when their last registration or heartbeat is older than their heartbeat
//! timeout (120 s by default). Tests must be able to check that without waiting two
//! minutes, so the route table reads time through a [`Clock`]: [`SystemClock`] in
//! production, [`ManualClock`] (moved by hand) in tests.

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of wall-clock milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Now, in ms since the epoch.
    fn now_millis(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        flotilla_remoting::protocol::now_millis()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock showing `start_millis`.
    pub fn new(start_millis: i64) -> Self {
        Self {
            now: AtomicI64::new(start_millis),
        }
    }

    /// Moves the clock forward by `millis`.
    pub fn advance(&self, millis: i64) {
        self.now.fetch_add(millis, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, millis: i64) {
        self.now.store(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_millis(), 1_000);
        c.advance(500);
        assert_eq!(c.now_millis(), 1_500);
        c.set(7);
        assert_eq!(c.now_millis(), 7);
        assert!(SystemClock.now_millis() > 1_600_000_000_000);
    }
}

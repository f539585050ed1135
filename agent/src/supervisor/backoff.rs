//! Jittered exponential backoff, for restarting crashed processes and for reconnecting to the
//! control plane.
//!
//! Without backoff a crash-looping broker would be respawned as fast as it dies and an
//! unreachable control plane would be hammered by every agent at once; full jitter spreads
//! the retries, the cap bounds the wait, and a process that stayed up long enough resets the
//! delay so one crash after days of uptime is retried at once.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff state: `base * 2^attempt`, capped, with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The un-jittered delay of the next attempt.
    pub fn peek(&self) -> Duration {
        let factor = 1u32 << self.attempt.min(16);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt (between half and all of [`Backoff::peek`]), and
    /// advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let full = self.peek();
        self.attempt = self.attempt.saturating_add(1);
        let half = full / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=jitter_ms)
        };
        half + Duration::from_millis(extra)
    }

    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over at `base` (after a success or a long stable run).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            let p = b.peek();
            assert!(p >= last);
            assert!(p <= Duration::from_secs(1));
            let d = b.next_delay();
            assert!(d <= p && d >= p / 2);
            last = p;
        }
        assert_eq!(b.peek(), Duration::from_secs(1));
        assert_eq!(b.attempts(), 10);
        b.reset();
        assert_eq!(b.peek(), Duration::from_millis(100));
    }
}

//! Counters behind GET_BROKER_RUNTIME_INFO and the stats admin calls.
//!
//! The send and pull paths bump relaxed atomics; a sampler task turns them into
//! per-second rates once a second, so reading runtime info never walks anything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Broker-wide counters.
#[derive(Default)]
pub struct Stats {
    /// Messages stored.
    pub put_msgs: AtomicU64,
    /// Bytes of bodies stored.
    pub put_bytes: AtomicU64,
    /// Send requests that failed.
    pub put_failures: AtomicU64,
    /// Messages returned by pulls.
    pub get_msgs: AtomicU64,
    /// Pulls that found something.
    pub get_found: AtomicU64,
    /// Pulls that found nothing.
    pub get_miss: AtomicU64,
    rates: Mutex<Rates>,
}

#[derive(Default, Clone, Copy)]
struct Rates {
    last_put: u64,
    last_get: u64,
    put_tps: f64,
    get_tps: f64,
}

impl Stats {
    /// Adds `n` stored messages of `bytes` total body bytes.
    pub fn on_put(&self, n: u64, bytes: u64) {
        self.put_msgs.fetch_add(n, Ordering::Relaxed);
        self.put_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds one pull result.
    pub fn on_get(&self, n: u64) {
        if n > 0 {
            self.get_msgs.fetch_add(n, Ordering::Relaxed);
            self.get_found.fetch_add(1, Ordering::Relaxed);
        } else {
            self.get_miss.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Recomputes rates over `elapsed`.
    pub fn sample(&self, elapsed: Duration) {
        let put = self.put_msgs.load(Ordering::Relaxed);
        let get = self.get_msgs.load(Ordering::Relaxed);
        let secs = elapsed.as_secs_f64().max(1e-3);
        let mut r = self.rates.lock();
        r.put_tps = (put.saturating_sub(r.last_put)) as f64 / secs;
        r.get_tps = (get.saturating_sub(r.last_get)) as f64 / secs;
        r.last_put = put;
        r.last_get = get;
    }

    /// (put TPS, get TPS) of the last sample.
    pub fn tps(&self) -> (f64, f64) {
        let r = *self.rates.lock();
        (r.put_tps, r.get_tps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let s = Stats::default();
        s.on_put(10, 100);
        s.sample(Duration::from_secs(2));
        assert_eq!(s.tps().0, 5.0);
        s.sample(Duration::from_secs(1));
        assert_eq!(s.tps().0, 0.0);
    }
}

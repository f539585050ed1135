//! Bounded label values: a topic or consumer-group label must not grow the series set
//! without limit (a client inventing topic names would otherwise grow the broker's memory
//! and every scrape).
//!
//! [`LabelCap`] maps a label key (a topic, a topic/group pair) to the resolved metric
//! handles of its series, created once on first use. The first `max` distinct keys get
//! their own series; later keys share one overflow series, labelled [`OVERFLOW`], and every
//! observation routed there counts in the overflow counter the caller passes in
//! (`flotilla_metrics_label_overflow_total`). Known keys cost one uncontended read lock and
//! a clone of the handles (atomics behind `Arc`s), never a global write lock; the write
//! lock is taken only when a key is first seen.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;

/// The label value of the shared overflow series.
pub const OVERFLOW: &str = "_flotilla_overflow";

/// Up to `max` keys with their own handles `T`; the rest share the overflow handles.
pub struct LabelCap<T: Clone> {
    max: usize,
    table: RwLock<HashMap<Arc<str>, T>>,
    overflow: RwLock<Option<T>>,
    overflowed: Counter,
}

impl<T: Clone> LabelCap<T> {
    /// A cap of `max` keys; observations beyond it count in `overflowed`.
    pub fn new(max: usize, overflowed: Counter) -> Self {
        Self {
            max,
            table: RwLock::new(HashMap::new()),
            overflow: RwLock::new(None),
            overflowed,
        }
    }

    /// The handles of `key`, made with `make(key)` when first seen, or the overflow
    /// handles (made with `make(OVERFLOW)`) once `max` keys have their own.
    pub fn get(&self, key: &str, make: impl FnOnce(&str) -> T) -> T {
        if let Some(t) = self.table.read().get(key) {
            return t.clone();
        }
        let mut table = self.table.write();
        if let Some(t) = table.get(key) {
            return t.clone();
        }
        if table.len() < self.max {
            let t = make(key);
            table.insert(Arc::from(key), t.clone());
            return t;
        }
        drop(table);
        self.overflowed.inc();
        if let Some(t) = self.overflow.read().as_ref() {
            return t.clone();
        }
        self.overflow
            .write()
            .get_or_insert_with(|| make(OVERFLOW))
            .clone()
    }

    /// Keys with their own series.
    pub fn len(&self) -> usize {
        self.table.read().len()
    }

    /// No key seen yet.
    pub fn is_empty(&self) -> bool {
        self.table.read().is_empty()
    }
}

/// Keeps at most `max` of `items` (those first in `items`' order) and returns how many were
/// left out: for gauges built at scrape time (lag per group and topic).
pub fn truncate<T>(items: &mut Vec<T>, max: usize) -> usize {
    let dropped = items.len().saturating_sub(max);
    items.truncate(max);
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn keys_beyond_the_cap_share_the_overflow_series_and_are_counted() {
        let overflowed = Counter::default();
        let cap: LabelCap<String> = LabelCap::new(2, overflowed.clone());
        let made = AtomicUsize::new(0);
        let make = |k: &str| {
            made.fetch_add(1, Ordering::Relaxed);
            k.to_string()
        };
        assert_eq!(cap.get("a", make), "a");
        assert_eq!(cap.get("b", make), "b");
        assert_eq!(cap.get("a", make), "a");
        assert_eq!(
            made.load(Ordering::Relaxed),
            2,
            "known keys are not made again"
        );
        assert_eq!(cap.get("c", make), OVERFLOW);
        assert_eq!(cap.get("d", make), OVERFLOW);
        assert_eq!(cap.get("b", make), "b", "admitted keys keep their series");
        assert_eq!(cap.len(), 2);
        assert_eq!(overflowed.get(), 2);
        assert_eq!(made.load(Ordering::Relaxed), 3, "one overflow series");
    }

    #[test]
    fn truncate_reports_what_it_left_out() {
        let mut v = vec![1, 2, 3, 4];
        assert_eq!(truncate(&mut v, 3), 1);
        assert_eq!(v, vec![1, 2, 3]);
        assert_eq!(truncate(&mut v, 10), 0);
    }
}

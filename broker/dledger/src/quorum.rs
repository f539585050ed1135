//! The commit rule and the lease rule, as pure functions so they can be tested exhaustively.
//!
//! *Commit.* The commit offset is the largest offset that a majority of members (the leader
//! included, at its log end) have confirmed, **but only once that offset reaches the start of
//! the leader's own epoch**. Below that point a majority may hold bytes of an older term that a
//! future leader could still overwrite (Raft §5.4.2); once a majority holds the current term's
//! epoch start — our zero-length no-op — they cannot, and every byte before it commits too.
//!
//! *Lease.* A leader may acknowledge writes only while a majority (itself included) has
//! answered a request it sent within the lease. The lease is shorter than the election
//! timeout and followers refuse pre-votes while they hear from a leader, so by the time a
//! new leader can exist the old one has stopped acknowledging.

use std::time::{Duration, Instant};

/// The offset a majority has reached: the `quorum`-th largest of `matches` (which holds one
/// value per member). `None` when there are fewer members than `quorum`.
pub fn majority_offset(matches: &[i64], quorum: usize) -> Option<i64> {
    if quorum == 0 || matches.len() < quorum {
        return None;
    }
    let mut v = matches.to_vec();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v.get(quorum - 1).copied()
}

/// The new commit offset, or `None` when it does not advance: the majority offset counts only
/// once it reaches `term_start` (the current leader's epoch start), and never moves back.
pub fn next_commit(matches: &[i64], quorum: usize, term_start: i64, current: i64) -> Option<i64> {
    let m = majority_offset(matches, quorum)?;
    (m >= term_start && m > current).then_some(m)
}

/// Whether the lease holds at `now`: `acks` holds, per follower, the send time of the latest
/// request it answered (`None` if it has not answered in this term); the leader counts itself.
pub fn lease_holds(acks: &[Option<Instant>], quorum: usize, lease: Duration, now: Instant) -> bool {
    let fresh = acks
        .iter()
        .flatten()
        .filter(|t| now.saturating_duration_since(**t) < lease)
        .count();
    fresh + 1 >= quorum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_of_three_and_five() {
        assert_eq!(majority_offset(&[300, 100, 200], 2), Some(200));
        assert_eq!(majority_offset(&[300, 0, 0], 2), Some(0));
        assert_eq!(majority_offset(&[500, 400, 300, 200, 100], 3), Some(300));
        assert_eq!(majority_offset(&[500], 1), Some(500));
        assert_eq!(majority_offset(&[500], 2), None);
    }

    #[test]
    fn commit_waits_for_current_term_start() {
        // New leader elected at offset 1000; followers hold 800 and 1000 of older bytes.
        // A majority reaching 900 is not enough: the old bytes could still be replaced.
        assert_eq!(next_commit(&[1000, 900, 100], 2, 1000, 0), None);
        // Once a majority holds the epoch start, everything below it commits.
        assert_eq!(next_commit(&[1000, 1000, 100], 2, 1000, 0), Some(1000));
        // Later writes of the current term commit as the majority advances.
        assert_eq!(next_commit(&[1500, 1200, 100], 2, 1000, 1000), Some(1200));
        // Never backwards, never unchanged.
        assert_eq!(next_commit(&[1500, 1200, 100], 2, 1000, 1200), None);
        assert_eq!(next_commit(&[1500, 1100, 100], 2, 1000, 1200), None);
        // Single member: its own end.
        assert_eq!(next_commit(&[42], 1, 0, 0), Some(42));
    }

    #[test]
    fn lease_needs_a_fresh_majority() {
        let now = Instant::now();
        let lease = Duration::from_millis(100);
        let fresh = now.checked_sub(Duration::from_millis(10));
        let stale = now.checked_sub(Duration::from_millis(500));
        if stale.is_none() {
            return; // the monotonic clock started less than 500 ms ago; nothing to check
        }
        assert!(lease_holds(&[fresh, stale], 2, lease, now));
        assert!(!lease_holds(&[stale, None], 2, lease, now));
        assert!(!lease_holds(&[fresh, stale, None, None], 3, lease, now));
        assert!(lease_holds(&[], 1, lease, now));
    }
}

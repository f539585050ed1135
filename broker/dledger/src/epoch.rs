//! The epoch log: which term wrote which byte range of the CommitLog.
//!
//! Raft matches logs by "the term of the entry at index i". Our log is the CommitLog, whose
//! positions are byte offsets, so instead of tagging every record with a term we keep a short
//! list of `(term, start_offset)` pairs, one per term that led the group (the same idea as
//! RocketMQ 5's autoswitch epoch file and Kafka's leader-epoch cache). The term of the byte at
//! offset `o` is the term of the last epoch whose start is `<= o`.
//!
//! A new leader records `(term, its_end_offset)` *before* it accepts writes. That zero-length
//! epoch is our no-op entry: it is replicated to followers like data, it makes the leader's
//! "last term" the current term, and once a majority holds it (match offset `>=` its start)
//! every byte before it — including bytes written in earlier terms — is committed. This is
//! Raft's "a leader commits only entries of its own term" rule without writing a marker
//! record that consumers would see.
//!
//! Invariants (checked by [`EpochLog::push`] and on load): terms strictly increase, starts
//! strictly increase. An empty epoch can only be the last one; pushing a new epoch at the
//! same start replaces it (an epoch that wrote nothing has no bytes to describe).

use serde::{Deserialize, Serialize};

/// One term's start in the CommitLog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// The leader's term.
    pub term: u64,
    /// CommitLog offset of the first byte that leader wrote (its log end when elected).
    pub start: i64,
}

/// Errors of epoch bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    /// An epoch would not increase the term or would start before the previous one.
    #[error(
        "epoch (term {term}, start {start}) does not follow (term {last_term}, start {last_start})"
    )]
    OutOfOrder {
        /// Term of the rejected epoch.
        term: u64,
        /// Start of the rejected epoch.
        start: i64,
        /// Term of the current last epoch.
        last_term: u64,
        /// Start of the current last epoch.
        last_start: i64,
    },
}

impl EpochError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            EpochError::OutOfOrder { .. } => "DLEDGER_EPOCH_OUT_OF_ORDER",
        }
    }
}

/// The ordered list of epochs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochLog {
    epochs: Vec<Epoch>,
}

impl EpochLog {
    /// Builds a log from entries, checking the invariants.
    pub fn from_entries(entries: Vec<Epoch>) -> Result<EpochLog, EpochError> {
        let mut log = EpochLog::default();
        for e in entries {
            if let Some(last) = log.last()
                && (e.term <= last.term || e.start <= last.start)
            {
                return Err(out_of_order(e, last));
            }
            log.epochs.push(e);
        }
        Ok(log)
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[Epoch] {
        &self.epochs
    }

    /// The newest epoch.
    pub fn last(&self) -> Option<Epoch> {
        self.epochs.last().copied()
    }

    /// Term of the newest epoch (0 for an empty log): Raft's "last log term".
    pub fn last_term(&self) -> u64 {
        self.last().map_or(0, |e| e.term)
    }

    /// The epoch holding the byte just before `offset` (`None` at offset 0 or before the first
    /// epoch): what a consistency check at `offset` compares.
    pub fn containing_before(&self, offset: i64) -> Option<Epoch> {
        self.epochs.iter().rev().find(|e| e.start < offset).copied()
    }

    /// Term of the byte just before `offset` (0 if none): the `prev_term` of an append at
    /// `offset`.
    pub fn term_before(&self, offset: i64) -> u64 {
        self.containing_before(offset).map_or(0, |e| e.term)
    }

    /// Appends an epoch. A term that does not increase, or a start before the last one, is
    /// refused; a start equal to the last one replaces that (empty) epoch.
    pub fn push(&mut self, e: Epoch) -> Result<(), EpochError> {
        if let Some(last) = self.last() {
            if e.term <= last.term || e.start < last.start {
                return Err(out_of_order(e, last));
            }
            if e.start == last.start {
                self.epochs.pop();
            }
        }
        self.epochs.push(e);
        Ok(())
    }

    /// Removes epochs starting at or after `offset` (before bytes from `offset` are replaced).
    pub fn truncate_from(&mut self, offset: i64) {
        self.epochs.retain(|e| e.start < offset);
    }

    /// Removes epochs starting after `end` (the log was cut short, e.g. by a crash).
    pub fn truncate_after(&mut self, end: i64) {
        self.epochs.retain(|e| e.start <= end);
    }

    /// Epochs whose start lies in `[from, to]`: what an append of `[from, to)` carries.
    pub fn in_range(&self, from: i64, to: i64) -> Vec<Epoch> {
        self.epochs
            .iter()
            .filter(|e| e.start >= from && e.start <= to)
            .copied()
            .collect()
    }

    /// Where `term`'s bytes end in a log ending at `log_end`, if this log has that term.
    pub fn end_of(&self, term: u64, log_end: i64) -> Option<i64> {
        let i = self.epochs.iter().position(|e| e.term == term)?;
        Some(self.epochs.get(i + 1).map_or(log_end, |n| n.start))
    }

    /// Follower side of an append whose consistency check passed (this log agrees with the
    /// leader's at the byte before `prev_offset`): the first offset in `[prev_offset, end)`
    /// (or at `end`, for an empty last epoch here) where this log's term differs from the
    /// leader's, if any. `end` is this log's end; the
    /// leader's terms over `[prev_offset, req_end]` are `prev_term` and then `leader_epochs`
    /// (its epochs starting in that range).
    ///
    /// Only such an offset is a conflict. Bytes of the same term at the same offset were
    /// written by that term's one leader, so they are the same bytes: an append that repeats
    /// or trails what this log already holds conflicts nowhere and must not cut anything.
    /// Terms change only at epoch starts, so comparing at `prev_offset` and at every epoch
    /// start of either log in range compares every byte.
    pub fn first_conflict(
        &self,
        end: i64,
        prev_offset: i64,
        prev_term: u64,
        leader_epochs: &[Epoch],
        req_end: i64,
    ) -> Option<i64> {
        let leader_term = |o: i64| {
            leader_epochs
                .iter()
                .rev()
                .find(|e| e.start <= o)
                .map_or(prev_term, |e| e.term)
        };
        // An empty last epoch (a no-op this log holds at its end) has a term but no bytes.
        let empty_last = self
            .last()
            .filter(|l| l.start == end)
            .map_or(-1, |l| l.start);
        let mut points: Vec<i64> = std::iter::once(prev_offset)
            .chain(leader_epochs.iter().map(|e| e.start))
            .chain(self.epochs.iter().map(|e| e.start))
            .filter(|&o| o >= prev_offset && o <= req_end && (o < end || o == empty_last))
            .collect();
        points.sort_unstable();
        points.dedup();
        points
            .into_iter()
            .find(|&o| self.term_before(o + 1) != leader_term(o))
    }

    /// Leader side of divergence repair. A follower reports `follower_end` and the epoch
    /// holding its byte before that (`None` if it has nothing). Returns an offset up to which
    /// both logs are known to agree, or at least a strictly smaller probe point than before:
    ///
    /// * if this log has the follower's epoch term, both hold the same bytes of that term
    ///   (one leader wrote them), so they agree up to where the shorter one ends it;
    /// * otherwise the follower's epoch is not in this log at all, so nothing from its start
    ///   on can be trusted; they can agree at most up to the end of this log's largest
    ///   smaller term.
    pub fn divergence_point(
        &self,
        log_end: i64,
        follower_end: i64,
        follower_epoch: Option<Epoch>,
    ) -> i64 {
        let Some(fe) = follower_epoch else {
            return 0;
        };
        let agreed = match self.end_of(fe.term, log_end) {
            Some(end) => end,
            None => {
                let below = self
                    .epochs
                    .iter()
                    .rposition(|e| e.term < fe.term)
                    .map_or(0, |i| self.epochs.get(i + 1).map_or(log_end, |n| n.start));
                below.min(fe.start)
            }
        };
        agreed.min(follower_end).min(log_end).max(0)
    }
}

fn out_of_order(e: Epoch, last: Epoch) -> EpochError {
    EpochError::OutOfOrder {
        term: e.term,
        start: e.start,
        last_term: last.term,
        last_start: last.start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(term: u64, start: i64) -> Epoch {
        Epoch { term, start }
    }

    fn log(v: &[(u64, i64)]) -> EpochLog {
        EpochLog::from_entries(v.iter().map(|&(t, s)| ep(t, s)).collect()).unwrap()
    }

    #[test]
    fn term_lookup_uses_the_byte_before() {
        let l = log(&[(1, 0), (3, 100), (4, 250)]);
        assert_eq!(l.term_before(0), 0);
        assert_eq!(l.term_before(1), 1);
        assert_eq!(l.term_before(100), 1);
        assert_eq!(l.term_before(101), 3);
        assert_eq!(l.term_before(250), 3);
        assert_eq!(l.term_before(9999), 4);
        assert_eq!(l.last_term(), 4);
        assert_eq!(l.in_range(100, 250), vec![ep(3, 100), ep(4, 250)]);
        assert_eq!(l.end_of(3, 400), Some(250));
        assert_eq!(l.end_of(4, 400), Some(400));
        assert_eq!(l.end_of(2, 400), None);
    }

    #[test]
    fn push_enforces_order_and_replaces_empty_epoch() {
        let mut l = log(&[(1, 0)]);
        l.push(ep(2, 50)).unwrap();
        assert!(l.push(ep(2, 60)).is_err());
        assert!(l.push(ep(3, 40)).is_err());
        l.push(ep(5, 50)).unwrap();
        assert_eq!(l.entries(), &[ep(1, 0), ep(5, 50)]);
        assert_eq!(
            l.push(ep(4, 70)).unwrap_err().code(),
            "DLEDGER_EPOCH_OUT_OF_ORDER"
        );
        assert!(EpochLog::from_entries(vec![ep(2, 0), ep(1, 10)]).is_err());
        assert!(EpochLog::from_entries(vec![ep(1, 10), ep(2, 10)]).is_err());
    }

    #[test]
    fn truncation() {
        let mut l = log(&[(1, 0), (3, 100), (4, 250)]);
        l.truncate_after(250);
        assert_eq!(l.entries().len(), 3);
        l.truncate_after(249);
        assert_eq!(l.entries().len(), 2);
        l.truncate_from(100);
        assert_eq!(l.entries(), &[ep(1, 0)]);
    }

    #[test]
    fn divergence_same_term_takes_shorter_end() {
        // Leader: term 1 [0,100), term 3 [100,300), term 5 from 300 (empty marker), end 300.
        let leader = log(&[(1, 0), (3, 100), (5, 300)]);
        // Follower has more term-3 bytes than the leader kept: agree up to 300.
        assert_eq!(leader.divergence_point(300, 420, Some(ep(3, 100))), 300);
        // Follower is behind inside term 3: agree up to its end.
        assert_eq!(leader.divergence_point(300, 180, Some(ep(3, 100))), 180);
        // Nothing on the follower.
        assert_eq!(leader.divergence_point(300, 0, None), 0);
    }

    #[test]
    fn divergence_unknown_term_goes_back_to_common_epoch() {
        // Leader: term 1 [0,100), term 2 [100,200), term 4 from 200.
        let leader = log(&[(1, 0), (2, 100), (4, 200)]);
        // Follower wrote term 3 from 150 (never in the leader's log): at most 150.
        assert_eq!(leader.divergence_point(260, 400, Some(ep(3, 150))), 150);
        // Follower's term 3 started at 250 (after leader's term 2 ended at 200): at most 200.
        assert_eq!(leader.divergence_point(260, 400, Some(ep(3, 250))), 200);
        // The next probe point is strictly smaller when the check fails again.
        let p = leader.divergence_point(260, 150, Some(ep(1, 0)));
        assert_eq!(p, 100);
    }

    /// Every append a leader could send (any window of its log) to a follower holding any
    /// prefix of it — stale, repeated, overlapping, trailing — finds no conflict.
    #[test]
    fn stale_and_repeated_appends_never_conflict() {
        let leader = log(&[(1, 0), (2, 100), (4, 250)]);
        let leader_end = 400;
        for f_end in (0..=leader_end).step_by(25) {
            let follower = EpochLog::from_entries(
                leader
                    .entries()
                    .iter()
                    .copied()
                    .filter(|e| e.start < f_end.max(1))
                    .collect(),
            )
            .unwrap();
            for p in (0..=f_end).step_by(25) {
                for q in (p..=leader_end).step_by(25) {
                    let got = follower.first_conflict(
                        f_end,
                        p,
                        leader.term_before(p),
                        &leader.in_range(p, q),
                        q,
                    );
                    assert_eq!(got, None, "follower end {f_end}, append [{p}, {q})");
                }
            }
        }
    }

    /// A follower whose log took another term from 100 on conflicts exactly there, whatever
    /// window of the leader's log covers 100.
    #[test]
    fn a_different_term_at_the_same_offset_is_the_conflict() {
        let leader = log(&[(1, 0), (2, 100), (4, 250)]);
        let follower = log(&[(1, 0), (3, 180)]);
        for p in (0..=100).step_by(25) {
            for q in (100..=400).step_by(25) {
                let got = follower.first_conflict(
                    300,
                    p,
                    leader.term_before(p),
                    &leader.in_range(p, q),
                    q,
                );
                assert_eq!(got, Some(100), "append [{p}, {q})");
            }
            // An append ending before 100 says nothing about the bytes from 100 on.
            if p < 100 {
                let got = follower.first_conflict(300, p, 1, &leader.in_range(p, p), p);
                assert_eq!(got, None, "append [{p}, {p})");
            }
        }
        // Same term, a later leader of it wrote nothing: the follower's extra bytes of term 1
        // conflict only with the leader's term-2 epoch at 100.
        let short = log(&[(1, 0)]);
        assert_eq!(short.first_conflict(300, 50, 1, &[], 90), None);
        assert_eq!(
            short.first_conflict(300, 50, 1, &[ep(2, 100)], 100),
            Some(100)
        );
    }

    /// An empty last epoch (a no-op the follower wrote as a short-lived leader) conflicts
    /// with another term at its offset, and matches the same term.
    #[test]
    fn an_empty_last_epoch_is_compared_too() {
        let follower = log(&[(1, 0), (3, 100)]);
        assert_eq!(
            follower.first_conflict(100, 50, 1, &[ep(2, 100)], 150),
            Some(100)
        );
        assert_eq!(follower.first_conflict(100, 50, 1, &[], 100), Some(100));
        assert_eq!(
            follower.first_conflict(100, 50, 1, &[ep(3, 100)], 150),
            None
        );
        // A stale append ending before it leaves it alone.
        assert_eq!(follower.first_conflict(100, 50, 1, &[], 80), None);
    }
}

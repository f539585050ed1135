//! ConsumeQueues: the per-(topic, queue) index of CommitLog positions.
//!
//! Each queue is a [`FileQueue`] under `consumequeue/{topic}/{queueId}/` of 20-byte entries
//! `i64 commitLogOffset | i32 size | i64 tagsCode`; queue offset `N` lives at byte `N * 20`,
//! as in RocketMQ. A consumer pulls by queue offset, filters on the tags code without reading
//! the CommitLog, then reads the records it wants.
//!
//! Entries are written by the store's dispatcher while it holds the put lock (see
//! `store.rs`), so every queue grows by exactly one entry per record in CommitLog order.
//! When a queue's first file must start mid-file (after a reset), the leading slots are
//! filled with blank entries (`size = i32::MAX`), which readers skip.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::commitlog::CommitLog;
use crate::error::StoreError;
use crate::file_queue::FileQueue;

/// Bytes per ConsumeQueue entry.
pub const CQ_ENTRY_SIZE: usize = 20;
const BLANK_SIZE: i32 = i32::MAX;

/// Which end of a run of equal timestamps a time search returns (RocketMQ `BoundaryType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Boundary {
    /// The first offset whose store time is `>=` the timestamp.
    #[default]
    Lower,
    /// The last offset whose store time is `<=` the timestamp.
    Upper,
}

/// One ConsumeQueue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    /// CommitLog offset of the record.
    pub phys_offset: i64,
    /// Record size.
    pub size: i32,
    /// Tags code (Java hash code of TAGS, or a delivery time for delay topics).
    pub tags_code: i64,
}

fn decode_entry(b: &[u8]) -> Option<CqEntry> {
    Some(CqEntry {
        phys_offset: i64::from_be_bytes(b.get(0..8)?.try_into().ok()?),
        size: i32::from_be_bytes(b.get(8..12)?.try_into().ok()?),
        tags_code: i64::from_be_bytes(b.get(12..20)?.try_into().ok()?),
    })
}

fn encode_entry(e: &CqEntry) -> [u8; CQ_ENTRY_SIZE] {
    let mut b = [0u8; CQ_ENTRY_SIZE];
    b[0..8].copy_from_slice(&e.phys_offset.to_be_bytes());
    b[8..12].copy_from_slice(&e.size.to_be_bytes());
    b[12..20].copy_from_slice(&e.tags_code.to_be_bytes());
    b
}

/// One topic/queue's ConsumeQueue.
#[derive(Debug)]
pub struct ConsumeQueue {
    topic: String,
    queue_id: i32,
    files: FileQueue,
    min: AtomicI64,
    max: AtomicI64,
    flushed: AtomicI64,
}

impl ConsumeQueue {
    /// Opens (or creates) the queue in `dir` and finds its end by scanning the last file.
    pub fn load(
        dir: &Path,
        topic: &str,
        queue_id: i32,
        entries_per_file: u32,
    ) -> Result<ConsumeQueue, StoreError> {
        let files = FileQueue::load(dir, entries_per_file as usize * CQ_ENTRY_SIZE)?;
        let (min, max) = match (files.first(), files.last()) {
            (Some(first), Some(last)) => {
                let count = last.read_with(0, last.size(), |buf| {
                    buf.chunks_exact(CQ_ENTRY_SIZE)
                        .take_while(|c| decode_entry(c).is_some_and(|e| e.size > 0))
                        .count()
                })?;
                let max = (last.start() as usize / CQ_ENTRY_SIZE + count) as i64;
                ((first.start() as usize / CQ_ENTRY_SIZE) as i64, max)
            }
            _ => (0, 0),
        };
        let q = ConsumeQueue {
            topic: topic.to_string(),
            queue_id,
            files,
            min: AtomicI64::new(min),
            max: AtomicI64::new(max),
            flushed: AtomicI64::new(max * CQ_ENTRY_SIZE as i64),
        };
        // Skip leading blank entries.
        let mut m = min;
        while m < max && q.entry(m).is_some_and(|e| e.size == BLANK_SIZE) {
            m += 1;
        }
        q.min.store(m, Ordering::Release);
        Ok(q)
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queue id.
    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    /// First readable queue offset.
    pub fn min_offset(&self) -> i64 {
        self.min.load(Ordering::Acquire)
    }

    /// Queue offset the next entry will get (number of entries ever written).
    pub fn max_offset(&self) -> i64 {
        self.max.load(Ordering::Acquire)
    }

    /// The entry at queue offset `q`, if stored (blank entries included).
    pub fn entry(&self, q: i64) -> Option<CqEntry> {
        if q < 0 || q >= self.max_offset() {
            return None;
        }
        let pos = q * CQ_ENTRY_SIZE as i64;
        let seg = self.files.find(pos)?;
        seg.read_with((pos - seg.start()) as usize, CQ_ENTRY_SIZE, decode_entry)
            .ok()?
    }

    /// A real (non-blank) entry at `q` within `[min, max)`.
    pub fn get(&self, q: i64) -> Option<CqEntry> {
        if q < self.min_offset() {
            return None;
        }
        self.entry(q).filter(|e| e.size != BLANK_SIZE)
    }

    /// Appends the entry for queue offset `q`, which must equal the current max.
    /// Caller holds the put lock.
    pub fn append(&self, q: i64, entry: CqEntry) -> Result<(), StoreError> {
        let max = self.max_offset();
        if q != max {
            return Err(StoreError::Corrupt(format!(
                "consume queue {}/{}: append at {q} but max is {max}",
                self.topic, self.queue_id
            )));
        }
        let pos = q * CQ_ENTRY_SIZE as i64;
        let was_empty = self.files.is_empty();
        let seg = self.files.get_or_create(pos)?;
        if was_empty && pos > seg.start() {
            let blank = encode_entry(&CqEntry {
                phys_offset: 0,
                size: BLANK_SIZE,
                tags_code: 0,
            });
            let mut p = seg.start();
            while p < pos {
                seg.write((p - seg.start()) as usize, &blank)?;
                p += CQ_ENTRY_SIZE as i64;
            }
        }
        seg.write((pos - seg.start()) as usize, &encode_entry(&entry))?;
        self.max.store(q + 1, Ordering::Release);
        Ok(())
    }

    /// Drops every entry and restarts the queue at `q` (used when recovery finds a gap).
    pub fn reset_to(&self, q: i64) -> Result<(), StoreError> {
        self.files.truncate(0)?;
        self.min.store(q, Ordering::Release);
        self.max.store(q, Ordering::Release);
        self.flushed
            .store(q * CQ_ENTRY_SIZE as i64, Ordering::Release);
        Ok(())
    }

    /// Removes entries whose record does not end at or before `cl_end`.
    pub fn truncate_phys(&self, cl_end: i64) -> Result<(), StoreError> {
        let mut max = self.max_offset();
        let min = self.min_offset();
        while max > min {
            match self.entry(max - 1) {
                Some(e) if e.size != BLANK_SIZE && e.phys_offset + i64::from(e.size) > cl_end => {
                    max -= 1
                }
                _ => break,
            }
        }
        if max != self.max_offset() {
            self.files.truncate(max * CQ_ENTRY_SIZE as i64)?;
            self.max.store(max, Ordering::Release);
            let f = self
                .flushed
                .load(Ordering::Acquire)
                .min(max * CQ_ENTRY_SIZE as i64);
            self.flushed.store(f, Ordering::Release);
            if self.min_offset() > max {
                self.min.store(max, Ordering::Release);
            }
        }
        Ok(())
    }

    /// Deletes files whose every entry points below `cl_min` and moves the minimum to the
    /// first entry at or after `cl_min`. Returns the number of files deleted.
    pub fn trim_to(&self, cl_min: i64) -> Result<usize, StoreError> {
        let mut deleted = 0;
        let max = self.max_offset();
        while self.files.len() >= 2 {
            let Some(first) = self.files.first() else {
                break;
            };
            let last_q = (first.end() / CQ_ENTRY_SIZE as i64) - 1;
            let expired = last_q < max
                && self.entry(last_q).is_some_and(|e| {
                    e.size == BLANK_SIZE || e.phys_offset + i64::from(e.size) <= cl_min
                });
            let start = first.start();
            if !expired || !self.files.delete_first_if(|s| s.start() == start)? {
                break;
            }
            deleted += 1;
        }
        let mut m = self.min_offset();
        if let Some(first) = self.files.first() {
            m = m.max(first.start() / CQ_ENTRY_SIZE as i64);
        }
        while m < max
            && self
                .entry(m)
                .is_some_and(|e| e.size == BLANK_SIZE || e.phys_offset < cl_min)
        {
            m += 1;
        }
        self.min.store(m, Ordering::Release);
        Ok(deleted)
    }

    /// Makes all entries durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        let target = self.max_offset() * CQ_ENTRY_SIZE as i64;
        let from = self.flushed.load(Ordering::Acquire);
        if target > from {
            self.files.flush(from, target)?;
            self.flushed.store(target, Ordering::Release);
        }
        Ok(())
    }

    /// Deletes the queue's files and directory.
    pub fn destroy(&self) -> Result<(), StoreError> {
        self.files.destroy()
    }

    /// Queue offset for a store timestamp (see [`Boundary`]). Timestamps are assumed
    /// non-decreasing along the queue (the store clock is monotonic per append).
    pub fn offset_by_time(&self, cl: &CommitLog, ts: i64, boundary: Boundary) -> i64 {
        let (min, max) = (self.min_offset(), self.max_offset());
        if min >= max {
            return max;
        }
        let time_at = |q: i64| -> Option<i64> {
            let e = self.get(q)?;
            cl.store_timestamp(e.phys_offset)
        };
        // Entries whose record is gone (below the CommitLog minimum) count as older than
        // anything.
        let before = |q: i64, strict: bool| -> bool {
            match time_at(q) {
                Some(t) => {
                    if strict {
                        t < ts
                    } else {
                        t <= ts
                    }
                }
                None => true,
            }
        };
        match boundary {
            Boundary::Lower => {
                // first q with time >= ts
                let (mut lo, mut hi) = (min, max);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if before(mid, true) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
            Boundary::Upper => {
                // last q with time <= ts
                let (mut lo, mut hi) = (min, max);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if before(mid, false) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                if lo == min { min } else { lo - 1 }
            }
        }
    }
}

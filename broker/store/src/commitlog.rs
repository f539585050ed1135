//! The CommitLog: every message of every topic, appended in RocketMQ's record layout.
//!
//! Appends happen under the store's put lock (one writer at a time), so this type only needs
//! to publish the write position atomically for readers and the flusher. A record never spans
//! two files: when `len + 8` does not fit in the current file, the blank marker
//! `[i32 remaining][0xCBD43194]` is written and the next file is started, exactly as RocketMQ
//! does, so that replicas and tools see identical files.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::codec::{self, BLANK_MAGIC, DecodedRecord, END_FILE_MIN_BLANK_LENGTH};
use crate::error::StoreError;
use crate::file_queue::FileQueue;

/// The CommitLog file queue plus its write and flush positions.
#[derive(Debug)]
pub struct CommitLog {
    files: FileQueue,
    wrote: AtomicI64,
    flushed: AtomicI64,
    /// Pages below this offset were handed back by [`CommitLog::release_behind`].
    released: AtomicI64,
    flush_lock: Mutex<()>,
}

/// How a recovery scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// Reached zeros (the normal end of the log).
    Clean,
    /// Stopped at a record that failed validation.
    Corrupt,
    /// Stopped at a record that continues past the scan limit (more bytes are expected).
    Incomplete,
}

impl CommitLog {
    /// Opens the files under `dir`; positions are set by recovery.
    pub fn open(dir: &Path, file_size: usize) -> Result<CommitLog, StoreError> {
        Ok(CommitLog {
            files: FileQueue::load(dir, file_size)?,
            wrote: AtomicI64::new(0),
            flushed: AtomicI64::new(0),
            released: AtomicI64::new(0),
            flush_lock: Mutex::new(()),
        })
    }

    /// The file queue.
    pub fn files(&self) -> &FileQueue {
        &self.files
    }

    /// Size of one file.
    pub fn file_size(&self) -> usize {
        self.files.file_size()
    }

    /// Offset just past the last written record.
    pub fn max_offset(&self) -> i64 {
        self.wrote.load(Ordering::Acquire)
    }

    /// Offset up to which the log is durable.
    pub fn flushed_offset(&self) -> i64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// First offset still stored (start of the first file).
    pub fn min_offset(&self) -> i64 {
        match self.files.first() {
            Some(f) => f.start(),
            None => self.max_offset(),
        }
    }

    /// Sets both positions (recovery only).
    pub fn set_positions(&self, wrote: i64, flushed: i64) {
        self.wrote.store(wrote, Ordering::Release);
        self.flushed.store(flushed.min(wrote), Ordering::Release);
    }

    /// Where a record of `len` bytes will go, rolling to a new file (after writing the blank
    /// marker) when it does not fit. Caller holds the put lock.
    pub fn prepare(&self, len: usize) -> Result<i64, StoreError> {
        let file_size = self.files.file_size();
        if len + END_FILE_MIN_BLANK_LENGTH > file_size {
            return Err(StoreError::InvalidConfig(format!(
                "record of {len} bytes cannot fit a CommitLog file of {file_size} bytes"
            )));
        }
        let pos = self.max_offset();
        let seg = self.files.get_or_create(pos)?;
        let remaining = (seg.end() - pos) as usize;
        if len + END_FILE_MIN_BLANK_LENGTH <= remaining {
            return Ok(pos);
        }
        let mut blank = [0u8; 8];
        blank[..4].copy_from_slice(&(remaining as i32).to_be_bytes());
        blank[4..].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
        seg.write((pos - seg.start()) as usize, &blank)?;
        let next = seg.end();
        self.wrote.store(next, Ordering::Release);
        self.files.get_or_create(next)?;
        Ok(next)
    }

    /// Lets `fill` build `len` bytes in place at `pos` (which must lie inside one file), then
    /// publishes the new end — only if `fill` succeeded (it must fail before writing).
    /// Caller holds the put lock.
    pub fn write_at_with(
        &self,
        pos: i64,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let seg = self.files.get_or_create(pos)?;
        seg.write_with((pos - seg.start()) as usize, len, fill)??;
        self.wrote.store(pos + len as i64, Ordering::Release);
        Ok(())
    }

    /// Writes bytes at `pos` without publishing (the caller publishes with [`Self::publish`]).
    pub fn write_unpublished(&self, pos: i64, data: &[u8]) -> Result<(), StoreError> {
        let seg = self.files.get_or_create(pos)?;
        seg.write((pos - seg.start()) as usize, data)?;
        Ok(())
    }

    /// Publishes a new end of log.
    pub fn publish(&self, end: i64) {
        self.wrote.store(end, Ordering::Release);
    }

    /// Runs `f` over the record at `phys` (header-checked, not CRC-checked).
    pub fn with_record<R>(&self, phys: i64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let end = self.max_offset();
        if phys < 0 || phys >= end {
            return None;
        }
        let seg = self.files.find(phys)?;
        let off = (phys - seg.start()) as usize;
        let (size, magic) = seg.read_with(off, 8, codec::peek_header).ok()??;
        if (magic != codec::MAGIC_V1 && magic != codec::MAGIC_V2) || size <= 8 {
            return None;
        }
        let size = size as usize;
        if off + size > seg.size() || phys + size as i64 > end {
            return None;
        }
        seg.read_with(off, size, f).ok()
    }

    /// One raw record.
    pub fn read_record(&self, phys: i64) -> Option<Bytes> {
        self.with_record(phys, Bytes::copy_from_slice)
    }

    /// Store timestamp of the record at `phys`.
    pub fn store_timestamp(&self, phys: i64) -> Option<i64> {
        self.with_record(phys, |b| {
            let sys = i32::from_be_bytes(b.get(36..40)?.try_into().ok()?);
            let p = codec::store_timestamp_pos(sys);
            Some(i64::from_be_bytes(b.get(p..p + 8)?.try_into().ok()?))
        })?
    }

    /// Raw bytes from `from`, at most `max_len`, never crossing a file end or the log end.
    pub fn read_raw(&self, from: i64, max_len: usize) -> Option<Bytes> {
        let end = self.max_offset();
        if from < self.min_offset() || from >= end || max_len == 0 {
            return None;
        }
        let seg = self.files.find(from)?;
        let to = (from + max_len as i64).min(seg.end()).min(end);
        let off = (from - seg.start()) as usize;
        seg.read_vec(off, (to - from) as usize)
            .ok()
            .map(Bytes::from)
    }

    /// Makes everything written so far durable; returns the flushed offset.
    pub fn flush(&self) -> Result<i64, StoreError> {
        let _g = self.flush_lock.lock();
        let target = self.max_offset();
        let from = self.flushed_offset();
        if target > from {
            self.files.flush(from, target)?;
            self.flushed.store(target, Ordering::Release);
        }
        Ok(target.max(from))
    }

    /// Removes everything at and after `offset`.
    pub fn truncate(&self, offset: i64) -> Result<(), StoreError> {
        let _g = self.flush_lock.lock();
        self.files.truncate(offset)?;
        self.wrote.store(offset, Ordering::Release);
        let f = self.flushed_offset().min(offset);
        self.flushed.store(f, Ordering::Release);
        self.released.fetch_min(f, Ordering::AcqRel);
        Ok(())
    }

    /// Hands the page-cache memory of flushed bytes more than `window` behind the flushed
    /// offset back to the kernel (the store's `page_cache_window`). Returns the offset below
    /// which pages were released.
    ///
    /// Only flushed (clean) bytes are released, so nothing is lost and nothing is written:
    /// readers of older records fault them back in from disk. The point is where the freed
    /// memory goes next. New CommitLog pages are then taken from memory this log just used,
    /// not from memory the system has not touched. Such fresh memory costs a zero-fill and,
    /// in a VM, often a host fault, which is the main cost of an append on a growing log
    /// (see `broker/BENCHMARKS.md`). Page cache for the log stays bounded by about
    /// `window` plus the dirty bytes. Work is done in steps of at least 4 MiB.
    pub fn release_behind(&self, window: u64) -> Result<i64, StoreError> {
        const STEP: i64 = 4 << 20;
        let _g = self.flush_lock.lock();
        let window = i64::try_from(window).unwrap_or(i64::MAX);
        let target = self.flushed_offset().saturating_sub(window);
        let done = self.released.load(Ordering::Acquire);
        if target < done.saturating_add(STEP) {
            return Ok(done);
        }
        for (seg, s, e) in self.files.spans(done, target) {
            seg.release(s, e)?;
        }
        self.released.store(target, Ordering::Release);
        Ok(target)
    }

    /// Walks records from `from` (a record boundary) up to `limit`, calling `on_record` for
    /// each valid one, and returns where the valid log ends and why. Validation: magic, size
    /// consistency, PHYSICALOFFSET equal to the position, body CRC when `check_crc`.
    pub fn scan(
        &self,
        from: i64,
        limit: i64,
        check_crc: bool,
        mut on_record: impl FnMut(i64, &DecodedRecord<'_>) -> Result<(), StoreError>,
    ) -> Result<(i64, ScanEnd), StoreError> {
        let mut pos = from;
        loop {
            if pos >= limit {
                return Ok((pos, ScanEnd::Clean));
            }
            let Some(seg) = self.files.find(pos) else {
                return Ok((pos, ScanEnd::Clean));
            };
            let off = (pos - seg.start()) as usize;
            let seg_rest = seg.size() - off;
            let avail = (limit - pos).min(seg_rest as i64) as usize;
            if seg_rest < END_FILE_MIN_BLANK_LENGTH {
                return Ok((pos, ScanEnd::Corrupt));
            }
            if avail < END_FILE_MIN_BLANK_LENGTH {
                return Ok((pos, ScanEnd::Incomplete));
            }
            let Some((size, magic)) = seg.read_with(off, 8, codec::peek_header)? else {
                return Ok((pos, ScanEnd::Corrupt));
            };
            if size == 0 && magic == 0 {
                return Ok((pos, ScanEnd::Clean));
            }
            if magic == BLANK_MAGIC && size as usize == seg_rest {
                if limit < seg.end() {
                    return Ok((pos, ScanEnd::Incomplete));
                }
                pos = seg.end();
                continue;
            }
            if size <= 8 || size as usize + END_FILE_MIN_BLANK_LENGTH > seg_rest {
                return Ok((pos, ScanEnd::Corrupt));
            }
            if size as usize > avail {
                return Ok((pos, ScanEnd::Incomplete));
            }
            let ok = seg.read_with(off, size as usize, |buf| {
                match codec::decode_record(buf, check_crc) {
                    Ok(rec) if rec.phys_offset == pos => on_record(pos, &rec).map(|()| true),
                    _ => Ok(false),
                }
            })??;
            if !ok {
                return Ok((pos, ScanEnd::Corrupt));
            }
            pos += i64::from(size);
        }
    }
}

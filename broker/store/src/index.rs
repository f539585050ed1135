//! Message-key index: find records by `KEYS` tokens or `UNIQ_KEY` within a time range.
//!
//! # Design (and why not Java's layout)
//!
//! RocketMQ's index files are 400 MB preallocated hash tables; their exact layout is not part
//! of the wire protocol, so Flotilla uses a simpler persistent structure:
//!
//! - **On disk:** append-only files under `index/`, each named by the CommitLog offset of its
//!   first entry (20 digits). An entry is 28 bytes:
//!   `u64 keyHash | i64 commitLogOffset | i64 storeTimestamp | u32 crc32(previous 24 bytes)`.
//!   The CRC makes a torn tail detectable after a crash. Files roll after
//!   `index_entries_per_file` entries, so retention can drop whole files.
//! - **In memory:** a hash map from key hash to the (offset, timestamp) list, rebuilt by
//!   reading the files at start-up (sequential reads, ~28 bytes per key).
//! - **Keys** are `topic#key` for every space-separated `KEYS` token and `topic#UNIQ_KEY`,
//!   hashed with 64-bit FNV-1a. Hash collisions are harmless: a query re-reads each candidate
//!   record and keeps it only if its topic and key really match.
//!
//! Durability follows the checkpoint: entries are buffered and written when the housekeeping
//! thread flushes (or at shutdown); the checkpoint then records `index_safe`, the CommitLog
//! offset below which every record's keys are durable. Recovery drops entries at or beyond
//! `index_safe` and re-dispatches the CommitLog from there, so a crash never leaves a record
//! half-indexed. The cost of the in-memory map (tens of bytes per key) is acceptable for the
//! retention windows brokers use; a redb-backed index could replace it behind the same API.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::StoreError;
use crate::file_queue::file_name;
use crate::mmap::sync_dir;

/// Bytes per on-disk index entry.
pub const INDEX_ENTRY_SIZE: usize = 28;

/// 64-bit FNV-1a of `topic#key`.
pub fn key_hash(topic: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic
        .bytes()
        .chain(std::iter::once(b'#'))
        .chain(key.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Debug)]
struct IndexFile {
    start_phys: i64,
    path: PathBuf,
    entries: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<u64, Vec<(i64, i64)>>,
    files: Vec<IndexFile>,
    writer: Option<BufWriter<File>>,
    /// CommitLog offset just past the last record handed to `add`.
    indexed_end: i64,
}

/// The index service.
#[derive(Debug)]
pub struct Index {
    dir: PathBuf,
    entries_per_file: u64,
    inner: Mutex<Inner>,
}

fn encode(hash: u64, phys: i64, ts: i64) -> [u8; INDEX_ENTRY_SIZE] {
    let mut b = [0u8; INDEX_ENTRY_SIZE];
    b[0..8].copy_from_slice(&hash.to_be_bytes());
    b[8..16].copy_from_slice(&phys.to_be_bytes());
    b[16..24].copy_from_slice(&ts.to_be_bytes());
    let crc = crc32fast::hash(&b[0..24]);
    b[24..28].copy_from_slice(&crc.to_be_bytes());
    b
}

fn decode(b: &[u8]) -> Option<(u64, i64, i64)> {
    let crc = u32::from_be_bytes(b.get(24..28)?.try_into().ok()?);
    if crc32fast::hash(b.get(0..24)?) != crc {
        return None;
    }
    Some((
        u64::from_be_bytes(b.get(0..8)?.try_into().ok()?),
        i64::from_be_bytes(b.get(8..16)?.try_into().ok()?),
        i64::from_be_bytes(b.get(16..24)?.try_into().ok()?),
    ))
}

impl Index {
    /// Loads the index, keeping only intact entries for records below `safe_end` (which must
    /// not exceed the recovered CommitLog end). Records from `safe_end` on must be
    /// re-dispatched by the caller.
    pub fn load(dir: &Path, entries_per_file: u32, safe_end: i64) -> Result<Index, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(StoreError::io(format!("create {}", dir.display())))?;
        let mut starts = Vec::new();
        for entry in
            std::fs::read_dir(dir).map_err(StoreError::io(format!("list {}", dir.display())))?
        {
            let entry = entry.map_err(StoreError::io("list index"))?;
            if let Some(name) = entry.file_name().to_str()
                && name.len() == 20
                && let Ok(start) = name.parse::<i64>()
            {
                starts.push(start);
            }
        }
        starts.sort_unstable();
        let mut inner = Inner::default();
        let mut stop = false;
        for start in starts {
            let path = dir.join(file_name(start));
            if stop || start >= safe_end {
                std::fs::remove_file(&path).map_err(StoreError::io("remove index file"))?;
                continue;
            }
            let data = std::fs::read(&path).map_err(StoreError::io("read index file"))?;
            let mut good = 0usize;
            for chunk in data.chunks(INDEX_ENTRY_SIZE) {
                match decode(chunk) {
                    Some((h, phys, ts)) if phys < safe_end => {
                        inner.map.entry(h).or_default().push((phys, ts));
                        good += 1;
                    }
                    _ => {
                        stop = true;
                        break;
                    }
                }
            }
            if good * INDEX_ENTRY_SIZE != data.len() {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(StoreError::io("open index file"))?;
                f.set_len((good * INDEX_ENTRY_SIZE) as u64)
                    .map_err(StoreError::io("truncate index file"))?;
                f.sync_all().map_err(StoreError::io("sync index file"))?;
            }
            inner.files.push(IndexFile {
                start_phys: start,
                path,
                entries: good as u64,
            });
        }
        inner.indexed_end = safe_end;
        Ok(Index {
            dir: dir.to_path_buf(),
            entries_per_file: u64::from(entries_per_file),
            inner: Mutex::new(inner),
        })
    }

    /// Indexes one record's keys. Records below `indexed_end` are skipped (idempotent
    /// re-dispatch).
    pub fn add<'k>(
        &self,
        topic: &str,
        phys: i64,
        size: i32,
        store_ts: i64,
        keys: impl Iterator<Item = &'k str>,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        if phys < inner.indexed_end {
            return Ok(());
        }
        let end = phys + i64::from(size);
        let mut first = true;
        for key in keys.filter(|k| !k.is_empty()) {
            if first {
                first = false;
                self.roll_if_needed(&mut inner, phys)?;
            }
            let h = key_hash(topic, key);
            let e = encode(h, phys, store_ts);
            if let Some(w) = inner.writer.as_mut() {
                w.write_all(&e).map_err(StoreError::io("write index"))?;
            }
            if let Some(f) = inner.files.last_mut() {
                f.entries += 1;
            }
            inner.map.entry(h).or_default().push((phys, store_ts));
        }
        inner.indexed_end = end;
        Ok(())
    }

    /// Marks `[.., end)` as indexed without keys (records that carry none).
    pub fn advance(&self, end: i64) {
        let mut inner = self.inner.lock();
        if end > inner.indexed_end {
            inner.indexed_end = end;
        }
    }

    fn roll_if_needed(&self, inner: &mut Inner, phys: i64) -> Result<(), StoreError> {
        let need_new = match inner.files.last() {
            None => true,
            Some(f) => f.entries >= self.entries_per_file,
        };
        if need_new {
            if let Some(mut w) = inner.writer.take() {
                w.flush().map_err(StoreError::io("flush index"))?;
                w.get_ref()
                    .sync_data()
                    .map_err(StoreError::io("sync index"))?;
            }
            let path = self.dir.join(file_name(phys));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(StoreError::io("create index file"))?;
            sync_dir(&self.dir).map_err(StoreError::io("sync index dir"))?;
            inner.files.push(IndexFile {
                start_phys: phys,
                path,
                entries: 0,
            });
            inner.writer = Some(BufWriter::with_capacity(64 * 1024, f));
        } else if inner.writer.is_none()
            && let Some(last) = inner.files.last()
        {
            let f = OpenOptions::new()
                .append(true)
                .open(&last.path)
                .map_err(StoreError::io("open index file"))?;
            inner.writer = Some(BufWriter::with_capacity(64 * 1024, f));
        }
        Ok(())
    }

    /// Writes buffered entries and syncs them; returns the CommitLog offset below which the
    /// index is durable.
    pub fn flush(&self) -> Result<i64, StoreError> {
        let mut inner = self.inner.lock();
        if let Some(w) = inner.writer.as_mut() {
            w.flush().map_err(StoreError::io("flush index"))?;
            w.get_ref()
                .sync_data()
                .map_err(StoreError::io("sync index"))?;
        }
        Ok(inner.indexed_end)
    }

    /// Candidate (offset, store time) pairs for `topic#key` within `[begin, end]`, newest
    /// first, at or above `min_phys`.
    pub fn candidates(
        &self,
        topic: &str,
        key: &str,
        begin: i64,
        end: i64,
        min_phys: i64,
    ) -> Vec<i64> {
        let inner = self.inner.lock();
        let Some(list) = inner.map.get(&key_hash(topic, key)) else {
            return Vec::new();
        };
        list.iter()
            .rev()
            .filter(|(p, t)| *p >= min_phys && *t >= begin && *t <= end)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Removes entries at and after `offset` (CommitLog truncation).
    pub fn truncate(&self, offset: i64) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        if let Some(mut w) = inner.writer.take() {
            w.flush().map_err(StoreError::io("flush index"))?;
        }
        while let Some(last) = inner.files.last() {
            if last.start_phys >= offset {
                std::fs::remove_file(&last.path).map_err(StoreError::io("remove index file"))?;
                inner.files.pop();
                continue;
            }
            let data = std::fs::read(&last.path).map_err(StoreError::io("read index file"))?;
            let keep = data
                .chunks(INDEX_ENTRY_SIZE)
                .take_while(|c| decode(c).is_some_and(|(_, p, _)| p < offset))
                .count();
            let f = OpenOptions::new()
                .write(true)
                .open(&last.path)
                .map_err(StoreError::io("open index file"))?;
            f.set_len((keep * INDEX_ENTRY_SIZE) as u64)
                .map_err(StoreError::io("truncate index file"))?;
            f.sync_all().map_err(StoreError::io("sync index file"))?;
            if let Some(l) = inner.files.last_mut() {
                l.entries = keep as u64;
            }
            break;
        }
        inner.map.retain(|_, v| {
            v.retain(|(p, _)| *p < offset);
            !v.is_empty()
        });
        inner.indexed_end = inner.indexed_end.min(offset);
        sync_dir(&self.dir).map_err(StoreError::io("sync index dir"))?;
        Ok(())
    }

    /// Drops files and entries that only cover records below `cl_min` (retention).
    pub fn trim_to(&self, cl_min: i64) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock();
        let mut deleted = 0;
        while inner.files.len() >= 2 && inner.files.get(1).is_some_and(|f| f.start_phys <= cl_min) {
            let f = inner.files.remove(0);
            std::fs::remove_file(&f.path).map_err(StoreError::io("remove index file"))?;
            deleted += 1;
        }
        inner.map.retain(|_, v| {
            v.retain(|(p, _)| *p >= cl_min);
            !v.is_empty()
        });
        Ok(deleted)
    }
}

//! An ordered, contiguous sequence of fixed-size mapped files named by their start offset.
//!
//! Both the CommitLog (offsets are bytes) and each ConsumeQueue (offsets are bytes of 20-byte
//! entries) are such sequences, like RocketMQ's `MappedFileQueue`: file `N` covers
//! `[start_N, start_N + size)` and is named by `start_N` as 20 zero-padded digits. Keeping
//! the files contiguous means the file holding an offset is found by arithmetic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::StoreError;
use crate::mmap::{self, MappedSegment};

/// File name of a segment starting at `offset` (`UtilAll.offset2FileName`).
pub fn file_name(offset: i64) -> String {
    format!("{offset:020}")
}

/// A contiguous list of mapped segments in one directory.
#[derive(Debug)]
pub struct FileQueue {
    dir: PathBuf,
    file_size: usize,
    segments: RwLock<Vec<Arc<MappedSegment>>>,
}

impl FileQueue {
    /// Opens every segment file in `dir` (creating the directory if needed).
    pub fn load(dir: &Path, file_size: usize) -> Result<FileQueue, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(StoreError::io(format!("create {}", dir.display())))?;
        let removed = crate::mmap::remove_incomplete(dir)
            .map_err(StoreError::io(format!("clean {}", dir.display())))?;
        if removed > 0 {
            tracing::warn!(dir = %dir.display(), removed, "removed segment files left half-created by a crash");
        }
        let mut starts = Vec::new();
        for entry in
            std::fs::read_dir(dir).map_err(StoreError::io(format!("list {}", dir.display())))?
        {
            let entry = entry.map_err(StoreError::io(format!("list {}", dir.display())))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() == 20
                && name.bytes().all(|b| b.is_ascii_digit())
                && let Ok(start) = name.parse::<i64>()
            {
                starts.push(start);
            }
        }
        starts.sort_unstable();
        let mut segments = Vec::with_capacity(starts.len());
        for (i, start) in starts.iter().enumerate() {
            if start % file_size as i64 != 0 {
                return Err(StoreError::Corrupt(format!(
                    "{}: file {} is not aligned to the file size {file_size}",
                    dir.display(),
                    file_name(*start)
                )));
            }
            if i > 0 && starts[i - 1] + file_size as i64 != *start {
                return Err(StoreError::Corrupt(format!(
                    "{}: gap before file {}",
                    dir.display(),
                    file_name(*start)
                )));
            }
            let path = dir.join(file_name(*start));
            segments.push(Arc::new(MappedSegment::open(&path, *start, file_size)?));
        }
        Ok(FileQueue {
            dir: dir.to_path_buf(),
            file_size,
            segments: RwLock::new(segments),
        })
    }

    /// Size of every file.
    pub fn file_size(&self) -> usize {
        self.file_size
    }

    /// Snapshot of the current segments.
    pub fn segments(&self) -> Vec<Arc<MappedSegment>> {
        self.segments.read().clone()
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.segments.read().len()
    }

    /// True when there are no segments.
    pub fn is_empty(&self) -> bool {
        self.segments.read().is_empty()
    }

    /// First segment.
    pub fn first(&self) -> Option<Arc<MappedSegment>> {
        self.segments.read().first().cloned()
    }

    /// Last segment.
    pub fn last(&self) -> Option<Arc<MappedSegment>> {
        self.segments.read().last().cloned()
    }

    /// Segment containing `offset`.
    pub fn find(&self, offset: i64) -> Option<Arc<MappedSegment>> {
        let segs = self.segments.read();
        let first = segs.first()?;
        if offset < first.start() {
            return None;
        }
        let idx = ((offset - first.start()) / self.file_size as i64) as usize;
        segs.get(idx).cloned()
    }

    /// Start of the file that would contain `offset`.
    pub fn align(&self, offset: i64) -> i64 {
        offset - offset.rem_euclid(self.file_size as i64)
    }

    /// Returns the segment containing `offset`, creating it (and only it) when `offset` falls
    /// just past the last segment or the queue is empty.
    pub fn get_or_create(&self, offset: i64) -> Result<Arc<MappedSegment>, StoreError> {
        if let Some(s) = self.find(offset) {
            return Ok(s);
        }
        let start = self.align(offset);
        let mut segs = self.segments.write();
        if let Some(last) = segs.last()
            && last.end() != start
        {
            return Err(StoreError::Corrupt(format!(
                "{}: cannot create file at {start}, queue ends at {}",
                self.dir.display(),
                last.end()
            )));
        }
        let path = self.dir.join(file_name(start));
        let seg = Arc::new(MappedSegment::create(&path, start, self.file_size)?);
        segs.push(seg.clone());
        Ok(seg)
    }

    /// Removes everything at and after `offset`: later files are deleted, the file holding
    /// `offset` has its tail zeroed (and flushed).
    pub fn truncate(&self, offset: i64) -> Result<(), StoreError> {
        let mut segs = self.segments.write();
        while let Some(last) = segs.last() {
            if last.start() >= offset {
                let path = last.path().to_path_buf();
                segs.pop();
                remove_file(&path)?;
            } else {
                break;
            }
        }
        if let Some(last) = segs.last()
            && offset < last.end()
        {
            let from = (offset - last.start()) as usize;
            last.zero(from, last.size())?;
            last.flush(from, last.size())?;
        }
        drop(segs);
        mmap::sync_dir(&self.dir).map_err(StoreError::io("sync dir"))?;
        Ok(())
    }

    /// Deletes the first segment if `pred` accepts it and it is not the last one.
    pub fn delete_first_if(
        &self,
        pred: impl FnOnce(&MappedSegment) -> bool,
    ) -> Result<bool, StoreError> {
        let mut segs = self.segments.write();
        if segs.len() < 2 {
            return Ok(false);
        }
        let Some(first) = segs.first().cloned() else {
            return Ok(false);
        };
        if !pred(&first) {
            return Ok(false);
        }
        segs.remove(0);
        drop(segs);
        remove_file(first.path())?;
        Ok(true)
    }

    /// Deletes every file and the directory.
    pub fn destroy(&self) -> Result<(), StoreError> {
        let mut segs = self.segments.write();
        segs.clear();
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(format!("remove {}", self.dir.display()))(e)),
        }
    }

    /// The files that logical range `[from, to)` touches, each with the part of the range
    /// inside it as positions within the file.
    pub fn spans(&self, from: i64, to: i64) -> Vec<(Arc<MappedSegment>, usize, usize)> {
        if to <= from {
            return Vec::new();
        }
        self.segments()
            .into_iter()
            .filter_map(|seg| {
                let (s, e) = (seg.start().max(from), seg.end().min(to));
                let (start, end) = ((s - seg.start()) as usize, (e - seg.start()) as usize);
                (s < e).then_some((seg, start, end))
            })
            .collect()
    }

    /// Makes `[from, to)` durable across the files it spans.
    pub fn flush(&self, from: i64, to: i64) -> Result<(), StoreError> {
        for (seg, s, e) in self.spans(from, to) {
            seg.flush(s, e)?;
        }
        Ok(())
    }
}

fn remove_file(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(format!("remove {}", path.display()))(e)),
    }
}

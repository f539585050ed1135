//! The checkpoint, the abort file, the lock file and the on-disk format marker.
//!
//! - `checkpoint` records, after the ConsumeQueues and index have been flushed, the CommitLog
//!   offsets below which each structure is durable. Recovery starts re-validating and
//!   re-dispatching from there instead of from the beginning of the log. It is JSON written
//!   atomically (temp file, fsync, rename, fsync dir), so it is always either the old or the
//!   new version — never torn (RocketMQ uses a 4 KiB mmap; the content is what matters).
//! - `abort` exists while the store is open; finding it at start-up means the last run did not
//!   shut down cleanly, so recovery validates the CommitLog tail.
//! - `lock` is held with an exclusive `flock` for the store's lifetime so two processes never
//!   map the same files.
//! - `FORMAT` names the on-disk format version; a newer version than this build understands
//!   makes `open` fail instead of misreading the files.

use std::fs::{File, OpenOptions};
use std::path::Path;

use fs2::FileExt;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::metadata::atomic_write;

/// Current on-disk format version.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "FORMAT";
const CHECKPOINT_FILE: &str = "checkpoint";
const ABORT_FILE: &str = "abort";
const LOCK_FILE: &str = "lock";

/// Durable positions, all CommitLog offsets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Everything below this CommitLog offset was flushed.
    pub commitlog_flushed: i64,
    /// Every record below this offset has its ConsumeQueue entry flushed.
    pub cq_safe: i64,
    /// Every record below this offset has its index entries flushed.
    pub index_safe: i64,
    /// Replication confirm offset at the time of the checkpoint.
    pub confirm_offset: i64,
    /// Store clock when written.
    pub timestamp_ms: i64,
}

impl Checkpoint {
    /// Reads the checkpoint; `None` when absent or unreadable (treated as "no safe point").
    pub fn load(root: &Path) -> Option<Checkpoint> {
        let data = std::fs::read(root.join(CHECKPOINT_FILE)).ok()?;
        match serde_json::from_slice(&data) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable checkpoint; recovering from the start");
                None
            }
        }
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, root: &Path) -> Result<(), StoreError> {
        let data = serde_json::to_vec_pretty(self)
            .map_err(|e| StoreError::Corrupt(format!("encode checkpoint: {e}")))?;
        atomic_write(&root.join(CHECKPOINT_FILE), &data)?;
        Ok(())
    }
}

/// True when the abort file exists (the previous run crashed).
pub fn abort_exists(root: &Path) -> bool {
    root.join(ABORT_FILE).exists()
}

/// Creates the abort file durably.
pub fn create_abort(root: &Path) -> Result<(), StoreError> {
    let f = File::create(root.join(ABORT_FILE)).map_err(StoreError::io("create abort file"))?;
    f.sync_all().map_err(StoreError::io("sync abort file"))?;
    crate::mmap::sync_dir(root).map_err(StoreError::io("sync store root"))
}

/// Removes the abort file durably (clean shutdown).
pub fn remove_abort(root: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(root.join(ABORT_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("remove abort file")(e)),
    }
    crate::mmap::sync_dir(root).map_err(StoreError::io("sync store root"))
}

/// Takes the exclusive store lock; the returned file holds it until dropped.
pub fn lock_store(root: &Path) -> Result<File, StoreError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(LOCK_FILE))
        .map_err(StoreError::io("open lock file"))?;
    f.try_lock_exclusive()
        .map_err(|_| StoreError::Locked(root.to_path_buf()))?;
    Ok(f)
}

/// Checks (or writes, for a new store) the `FORMAT` marker.
pub fn check_format(root: &Path) -> Result<(), StoreError> {
    let path = root.join(FORMAT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let version = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("version="))
                .and_then(|v| v.trim().parse::<u32>().ok())
                .ok_or_else(|| StoreError::BadFormatMarker(path.clone()))?;
            if version > FORMAT_VERSION {
                return Err(StoreError::UnsupportedFormat {
                    path: root.to_path_buf(),
                    found: version,
                    supported: FORMAT_VERSION,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = format!(
                "# Flotilla message store on-disk format. Do not edit.\nformat=flotilla-message-store\nversion={FORMAT_VERSION}\n"
            );
            atomic_write(&path, text.as_bytes())?;
            Ok(())
        }
        Err(e) => Err(StoreError::io("read FORMAT")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_marker_written_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        check_format(dir.path()).unwrap();
        check_format(dir.path()).unwrap();
        std::fs::write(dir.path().join("FORMAT"), "version=99\n").unwrap();
        let e = check_format(dir.path()).unwrap_err();
        assert_eq!(e.code(), "STORE_UNSUPPORTED_FORMAT");
        std::fs::write(dir.path().join("FORMAT"), "garbage").unwrap();
        assert_eq!(
            check_format(dir.path()).unwrap_err().code(),
            "STORE_BAD_FORMAT_MARKER"
        );
    }

    #[test]
    fn checkpoint_round_trip_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Checkpoint::load(dir.path()).is_none());
        let c = Checkpoint {
            commitlog_flushed: 5,
            cq_safe: 4,
            index_safe: 3,
            ..Default::default()
        };
        c.save(dir.path()).unwrap();
        assert_eq!(Checkpoint::load(dir.path()), Some(c));
        let _l = lock_store(dir.path()).unwrap();
        assert_eq!(lock_store(dir.path()).unwrap_err().code(), "STORE_LOCKED");
    }
}

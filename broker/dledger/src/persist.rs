//! Durable Raft state: the `term` file (`currentTerm`, `votedFor`) and the `epochs` file.
//!
//! Raft's safety depends on these surviving crashes: a member that forgets its vote could
//! vote twice in one term, and one that forgets an epoch could mis-attribute bytes to a term.
//! Both are small JSON files replaced atomically (write a temporary file, fsync it, rename it
//! over the old one, fsync the directory), so a crash leaves either the old or the new
//! version, never a torn one. They are written only on term changes, votes and elections,
//! never per message.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::epoch::{Epoch, EpochError, EpochLog};

/// Name of the term/vote file.
pub const TERM_FILE: &str = "term.json";
/// Name of the epoch file.
pub const EPOCH_FILE: &str = "epochs.json";

/// Errors reading or writing the durable state.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but cannot be parsed.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl PersistError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            PersistError::Io { .. } => "DLEDGER_PERSIST_IO",
            PersistError::Corrupt { .. } => "DLEDGER_PERSIST_CORRUPT",
        }
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> PersistError {
    move |source| PersistError::Io { context, source }
}

/// Raft's persistent `currentTerm` and `votedFor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HardState {
    /// Latest term this member has seen.
    pub term: u64,
    /// Candidate this member voted for in `term`.
    pub voted_for: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct EpochFile {
    epochs: Vec<Epoch>,
}

/// Replaces `path` with `data` atomically and durably.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<(), PersistError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
        f.write_all(data)
            .map_err(io(format!("write {}", tmp.display())))?;
        f.sync_all()
            .map_err(io(format!("fsync {}", tmp.display())))?;
    }
    fs::rename(&tmp, path).map_err(io(format!("rename to {}", path.display())))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("fsync {}", dir.display())))?;
    Ok(())
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PersistError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("read {}", path.display()))(e)),
    }
}

fn corrupt(path: &Path, reason: impl ToString) -> PersistError {
    PersistError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The durable state of one member, rooted at its data directory.
#[derive(Debug, Clone)]
pub struct DurableState {
    dir: PathBuf,
}

impl DurableState {
    /// Uses (and creates) `dir`.
    pub fn open(dir: &Path) -> Result<DurableState, PersistError> {
        fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        Ok(DurableState {
            dir: dir.to_path_buf(),
        })
    }

    /// Loads term and vote (defaults when the file does not exist yet).
    pub fn load_hard_state(&self) -> Result<HardState, PersistError> {
        let path = self.dir.join(TERM_FILE);
        match read_optional(&path)? {
            None => Ok(HardState::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| corrupt(&path, e)),
        }
    }

    /// Saves term and vote.
    pub fn save_hard_state(&self, hs: &HardState) -> Result<(), PersistError> {
        let path = self.dir.join(TERM_FILE);
        let data = serde_json::to_vec(hs).map_err(|e| corrupt(&path, e))?;
        atomic_write(&path, &data)
    }

    /// Whether an epoch file exists (a member that has never been part of a group has none).
    pub fn has_epochs(&self) -> bool {
        self.dir.join(EPOCH_FILE).exists()
    }

    /// Loads the epoch log (empty when the file does not exist yet).
    pub fn load_epochs(&self) -> Result<EpochLog, PersistError> {
        let path = self.dir.join(EPOCH_FILE);
        match read_optional(&path)? {
            None => Ok(EpochLog::default()),
            Some(b) => {
                let f: EpochFile = serde_json::from_slice(&b).map_err(|e| corrupt(&path, e))?;
                EpochLog::from_entries(f.epochs).map_err(|e: EpochError| corrupt(&path, e))
            }
        }
    }

    /// Saves the epoch log.
    pub fn save_epochs(&self, log: &EpochLog) -> Result<(), PersistError> {
        let path = self.dir.join(EPOCH_FILE);
        let f = EpochFile {
            epochs: log.entries().to_vec(),
        };
        let data = serde_json::to_vec(&f).map_err(|e| corrupt(&path, e))?;
        atomic_write(&path, &data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_state_round_trip_and_default() {
        let dir = tempfile::tempdir().unwrap();
        let d = DurableState::open(&dir.path().join("dl")).unwrap();
        assert_eq!(d.load_hard_state().unwrap(), HardState::default());
        let hs = HardState {
            term: 7,
            voted_for: Some("n2".into()),
        };
        d.save_hard_state(&hs).unwrap();
        assert_eq!(d.load_hard_state().unwrap(), hs);
        let hs2 = HardState {
            term: 8,
            voted_for: None,
        };
        d.save_hard_state(&hs2).unwrap();
        // A fresh handle (a restart) sees the latest value, and no temp file is left.
        let d2 = DurableState::open(&dir.path().join("dl")).unwrap();
        assert_eq!(d2.load_hard_state().unwrap(), hs2);
        let names: Vec<_> = fs::read_dir(dir.path().join("dl"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![TERM_FILE.to_string()]);
    }

    #[test]
    fn epochs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let d = DurableState::open(dir.path()).unwrap();
        assert!(!d.has_epochs());
        assert!(d.load_epochs().unwrap().entries().is_empty());
        let mut l = EpochLog::default();
        l.push(Epoch { term: 1, start: 0 }).unwrap();
        l.push(Epoch {
            term: 4,
            start: 4096,
        })
        .unwrap();
        d.save_epochs(&l).unwrap();
        assert!(d.has_epochs());
        assert_eq!(d.load_epochs().unwrap(), l);
    }

    #[test]
    fn corrupt_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let d = DurableState::open(dir.path()).unwrap();
        fs::write(dir.path().join(TERM_FILE), b"{not json").unwrap();
        let e = d.load_hard_state().unwrap_err();
        assert_eq!(e.code(), "DLEDGER_PERSIST_CORRUPT");
        fs::write(
            dir.path().join(EPOCH_FILE),
            br#"{"epochs":[{"term":3,"start":0},{"term":2,"start":5}]}"#,
        )
        .unwrap();
        assert_eq!(
            d.load_epochs().unwrap_err().code(),
            "DLEDGER_PERSIST_CORRUPT"
        );
    }
}

//! Fencing by control-plane epoch (DESIGN principle 4).
//!
//! Every DesiredState and Command carries the epoch of the control-plane leader that sent it.
//! The agent persists the highest epoch it has accepted and refuses anything lower, so a
//! deposed leader that still has a stream open cannot act on the node. The file is written
//! before the higher epoch is acted on, so a crash never forgets it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::{StateError, write_atomic};

/// Layout version of the epoch file.
pub const EPOCH_FILE_VERSION: u32 = 1;

/// An epoch check failed.
#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    /// The message's epoch is lower than the highest already accepted.
    #[error("stale epoch {got}: this agent has accepted epoch {highest}")]
    Stale {
        /// The message's epoch.
        got: i64,
        /// The highest accepted epoch.
        highest: i64,
    },
    /// The epoch file could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

impl EpochError {
    /// Stable error code (`STALE_EPOCH` travels to the control plane as the reason).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Stale { .. } => "STALE_EPOCH",
            Self::State(e) => e.code(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct EpochFile {
    version: u32,
    highest_epoch: i64,
}

/// The persisted highest epoch.
#[derive(Debug)]
pub struct EpochGuard {
    path: PathBuf,
    highest: i64,
}

impl EpochGuard {
    /// Loads `<data-dir>/epoch.json` (0 when absent).
    pub fn load(data_dir: &Path) -> Result<Self, EpochError> {
        let path = data_dir.join("epoch.json");
        let highest = match std::fs::read(&path) {
            Ok(bytes) => {
                let f: EpochFile =
                    serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                        path: path.clone(),
                        source,
                    })?;
                if f.version > EPOCH_FILE_VERSION {
                    return Err(StateError::UnsupportedVersion {
                        path,
                        found: f.version,
                        supported: EPOCH_FILE_VERSION,
                    }
                    .into());
                }
                f.highest_epoch
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(StateError::Io { path, source }.into()),
        };
        Ok(Self { path, highest })
    }

    /// The highest epoch accepted so far.
    pub fn highest(&self) -> i64 {
        self.highest
    }

    /// Accepts `epoch` if it is not lower than the highest seen, persisting a new maximum.
    pub fn check(&mut self, epoch: i64) -> Result<(), EpochError> {
        if epoch < self.highest {
            return Err(EpochError::Stale {
                got: epoch,
                highest: self.highest,
            });
        }
        if epoch > self.highest {
            let f = EpochFile {
                version: EPOCH_FILE_VERSION,
                highest_epoch: epoch,
            };
            let bytes = serde_json::to_vec(&f).map_err(|source| StateError::Corrupt {
                path: self.path.clone(),
                source,
            })?;
            write_atomic(&self.path, &bytes)?;
            self.highest = epoch;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_epoch_is_refused_and_highest_persists() {
        let tmp = tempfile::tempdir().unwrap();
        let mut g = EpochGuard::load(tmp.path()).unwrap();
        assert_eq!(g.highest(), 0);
        g.check(5).unwrap();
        g.check(5).unwrap();
        let e = g.check(4).unwrap_err();
        assert_eq!(e.code(), "STALE_EPOCH");
        let mut g = EpochGuard::load(tmp.path()).unwrap();
        assert_eq!(g.highest(), 5);
        assert_eq!(g.check(3).unwrap_err().code(), "STALE_EPOCH");
        g.check(9).unwrap();
        assert_eq!(EpochGuard::load(tmp.path()).unwrap().highest(), 9);
    }
}

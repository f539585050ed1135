//! Size-capped, rotated process logs.
//!
//! A supervised process writes stdout and stderr straight into `<dir>/logs/<name>.log`,
//! opened in append mode, instead of through a pipe to the agent: a pipe would break (and
//! kill the broker with SIGPIPE) when the agent restarts, and brokers must outlive the agent.
//! The agent caps the file by copy-and-truncate: when it grows past the limit it is copied to
//! `.1` (older copies shift to `.2`, …) and truncated in place. Because the process writes
//! with `O_APPEND`, its next write lands at the new end of the truncated file.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

/// Log file handling failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Opening, copying or truncating a log file failed.
    #[error("log file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "LOG_IO",
        }
    }
}

/// Log limits.
#[derive(Debug, Clone, Copy)]
pub struct LogPolicy {
    /// Rotate when the live file is larger than this.
    pub max_bytes: u64,
    /// Rotated copies kept (`.1` … `.keep`).
    pub keep: u32,
}

impl Default for LogPolicy {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            keep: 3,
        }
    }
}

/// The live log file of an instance.
pub fn log_path(instance_dir: &Path, name: &str) -> PathBuf {
    instance_dir.join("logs").join(format!("{name}.log"))
}

/// Opens the log for a new process: stdout and stderr handles, both appending to one file.
pub fn open_for_process(path: &Path) -> Result<(fs::File, fs::File), LogError> {
    let err = |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    let e = out.try_clone().map_err(|source| LogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((out, e))
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// Rotates `path` if it is larger than the policy allows. Returns whether it rotated.
pub fn rotate_if_needed(path: &Path, policy: LogPolicy) -> Result<bool, LogError> {
    let err = |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(err(e)),
    };
    if len <= policy.max_bytes {
        return Ok(false);
    }
    if policy.keep > 0 {
        for i in (1..policy.keep).rev() {
            let from = rotated(path, i);
            if from.exists() {
                fs::rename(&from, rotated(path, i + 1)).map_err(err)?;
            }
        }
        fs::copy(path, rotated(path, 1)).map_err(err)?;
    }
    let f = OpenOptions::new().write(true).open(path).map_err(err)?;
    f.set_len(0).map_err(err)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotates_by_copy_truncate_and_keeps_appending() {
        let tmp = tempfile::tempdir().unwrap();
        let path = log_path(tmp.path(), "x");
        let (mut out, _err) = open_for_process(&path).unwrap();
        let policy = LogPolicy {
            max_bytes: 10,
            keep: 2,
        };
        out.write_all(b"0123456789abc").unwrap();
        assert!(rotate_if_needed(&path, policy).unwrap());
        assert_eq!(fs::read(rotated(&path, 1)).unwrap(), b"0123456789abc");
        out.write_all(b"hello").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert!(!rotate_if_needed(&path, policy).unwrap());
        out.write_all(b"-more-bytes").unwrap();
        assert!(rotate_if_needed(&path, policy).unwrap());
        assert_eq!(fs::read(rotated(&path, 2)).unwrap(), b"0123456789abc");
        assert_eq!(fs::read(rotated(&path, 1)).unwrap(), b"hello-more-bytes");
    }
}

//! The rules in force, re-read when `plain_acl.yml` changes.
//!
//! Java's `PlainPermissionManager` watches its file and reloads it on change; so does
//! [`AclFile`]: a task reads the file every interval (a few KiB; comparing content, not
//! mtime, so two edits within one second are not missed) and swaps in the new rules when
//! the text changed and parses. A file that does not parse is logged as an error, once per
//! distinct content, and the previous rules stay in force — a bad edit never opens the
//! server up. A missing file is no rules at all (every request that needs an account is
//! refused), as Java's empty default file is.
//!
//! Where the file is follows Java: `<rocketmqHome>/conf/plain_acl.yml`, the file name
//! being Java's system property `rocketmq.acl.plain.file` (relative to the home, or
//! absolute here), `rocketmqHome` defaulting to `ROCKETMQ_HOME`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::rules::{AclRules, RulesError};

/// Java's default file, relative to the RocketMQ home.
pub const DEFAULT_ACL_FILE: &str = "conf/plain_acl.yml";

/// The ACL file could not be found or used.
#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    /// Neither a home nor an absolute file path is configured.
    #[error(
        "aclEnable=true but there is no RocketMQ home to find conf/plain_acl.yml in: set \
         rocketmqHome (or ROCKETMQ_HOME), or an absolute rocketmq.acl.plain.file"
    )]
    NoHome,
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("{path}: {source}")]
    Rules {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: RulesError,
    },
}

impl AclFileError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoHome => "ACL_NO_HOME",
            Self::Read { .. } => "ACL_FILE_READ",
            Self::Rules { source, .. } => source.code(),
        }
    }
}

/// Where `plain_acl.yml` is: `file` (default [`DEFAULT_ACL_FILE`]) under `home` (default
/// `ROCKETMQ_HOME`), or `file` itself when absolute.
pub fn acl_file_path(home: Option<&str>, file: Option<&str>) -> Result<PathBuf, AclFileError> {
    let file = file
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .unwrap_or(DEFAULT_ACL_FILE);
    if Path::new(file).is_absolute() {
        return Ok(PathBuf::from(file));
    }
    let home = home
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("ROCKETMQ_HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from)
        })
        .ok_or(AclFileError::NoHome)?;
    Ok(home.join(file))
}

/// The rules of one `plain_acl.yml`, kept current.
pub struct AclFile {
    path: PathBuf,
    rules: RwLock<Arc<AclRules>>,
    /// The content last tried (loaded or refused), so each change is handled once.
    last: Mutex<Option<Vec<u8>>>,
}

impl std::fmt::Debug for AclFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclFile")
            .field("path", &self.path)
            .field("accounts", &self.rules().account_count())
            .finish()
    }
}

impl AclFile {
    /// Loads `path`; a missing file is no rules, a bad one an error (the server should not
    /// start with rules it cannot read).
    pub fn load(path: impl Into<PathBuf>) -> Result<Arc<Self>, AclFileError> {
        let f = Arc::new(Self {
            path: path.into(),
            rules: RwLock::new(Arc::new(AclRules::empty())),
            last: Mutex::new(None),
        });
        f.reload()?;
        Ok(f)
    }

    /// Rules given directly (tests; servers without a file).
    pub fn fixed(rules: AclRules) -> Arc<Self> {
        Arc::new(Self {
            path: PathBuf::new(),
            rules: RwLock::new(Arc::new(rules)),
            last: Mutex::new(None),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<AclRules> {
        self.rules.read().clone()
    }

    /// Re-reads the file. `Ok(true)` when new rules are in force, `Ok(false)` when the
    /// content did not change since the last attempt, `Err` when it changed but cannot be
    /// used (the rules in force stay).
    pub fn reload(&self) -> Result<bool, AclFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(AclFileError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let mut last = self.last.lock();
        if last.as_deref() == Some(bytes.as_slice()) {
            return Ok(false);
        }
        *last = Some(bytes.clone());
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|_| RulesError::Yaml("the file is not UTF-8".into()))
            .and_then(AclRules::parse)
            .map_err(|source| AclFileError::Rules {
                path: self.path.clone(),
                source,
            })?;
        if bytes.is_empty() {
            warn!(path = %self.path.display(), "ACL file missing or empty: no accounts, signed requests are refused");
        }
        info!(path = %self.path.display(), accounts = parsed.account_count(),
            white = parsed.global_white.len(), "ACL rules loaded");
        *self.rules.write() = Arc::new(parsed);
        Ok(true)
    }

    /// Re-reads the file every `interval` until `stop`; refusals are logged.
    pub fn spawn_watch(
        self: &Arc<Self>,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let span = info_span!("acl_watch", path = %self.path.display());
        tokio::spawn(
            async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(interval) => {}
                    }
                    let f = me.clone();
                    let r = tokio::task::spawn_blocking(move || f.reload()).await;
                    match r {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => error!(error = %e, code = e.code(),
                            "ACL file refused; the previous rules stay in force"),
                        Err(e) => error!(error = %e, "ACL reload task failed"),
                    }
                }
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "accounts:\n  - accessKey: RocketMQ\n    secretKey: 12345678\n";
    const OTHER: &str = "accounts:\n  - accessKey: rocketmq2\n    secretKey: 12345678\n";

    #[test]
    fn reload_swaps_good_files_and_keeps_old_rules_on_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain_acl.yml");
        std::fs::write(&path, GOOD).unwrap();
        let f = AclFile::load(&path).unwrap();
        assert!(f.rules().account("RocketMQ").is_some());
        assert!(!f.reload().unwrap(), "unchanged content is not reloaded");

        std::fs::write(&path, "accounts: [{accessKey: RocketMQ, secretKey: 1}]").unwrap();
        assert!(f.reload().is_err());
        assert!(
            f.rules().account("RocketMQ").is_some(),
            "old rules stay after a bad file"
        );
        std::fs::write(&path, "accounts: [unclosed").unwrap();
        assert!(f.reload().is_err());
        assert!(f.rules().account("RocketMQ").is_some());

        std::fs::write(&path, OTHER).unwrap();
        assert!(f.reload().unwrap());
        assert!(f.rules().account("RocketMQ").is_none());
        assert!(f.rules().account("rocketmq2").is_some());

        std::fs::remove_file(&path).unwrap();
        assert!(f.reload().unwrap());
        assert_eq!(
            f.rules().account_count(),
            0,
            "a removed file is no accounts"
        );
    }

    #[test]
    fn a_bad_file_at_start_is_an_error_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain_acl.yml");
        assert_eq!(AclFile::load(&path).unwrap().rules().account_count(), 0);
        std::fs::write(&path, "accounts: 3").unwrap();
        assert!(AclFile::load(&path).is_err());
    }

    #[tokio::test]
    async fn the_watch_picks_up_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain_acl.yml");
        std::fs::write(&path, GOOD).unwrap();
        let f = AclFile::load(&path).unwrap();
        let stop = CancellationToken::new();
        let task = f.spawn_watch(Duration::from_millis(20), stop.clone());
        std::fs::write(&path, OTHER).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while f.rules().account("rocketmq2").is_none() {
            assert!(tokio::time::Instant::now() < deadline, "edit not picked up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn path_follows_java() {
        assert_eq!(
            acl_file_path(Some("/opt/mq"), None).unwrap(),
            PathBuf::from("/opt/mq/conf/plain_acl.yml")
        );
        assert_eq!(
            acl_file_path(Some("/opt/mq"), Some("conf/acl/other.yml")).unwrap(),
            PathBuf::from("/opt/mq/conf/acl/other.yml")
        );
        assert_eq!(
            acl_file_path(None, Some("/etc/acl.yml")).unwrap(),
            PathBuf::from("/etc/acl.yml")
        );
    }
}

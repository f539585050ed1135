//! Bearer tokens for the public API: a file of `token,role,name` lines, reloaded on change.
//!
//! Certificates suit agents and replicas; people and scripts often want a token they can put
//! in an environment variable. The file holds one `token,role,name` line per caller (`role`
//! is `admin`, `operator` or `viewer`; `#` starts a comment). Only SHA-256 digests of the
//! tokens are kept in memory, and a presented token is compared by digest. Editing the file
//! takes effect within the reload interval; a file with a bad line is refused as a whole and
//! the previous tokens stay in force (an edit must never open the API or lock everyone out).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_client::{Principal, Role};
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A token file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A line is not `token,role,name`.
    #[error("{path} line {line}: {reason}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl TokenError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Read { .. } => "TOKEN_FILE_UNREADABLE",
            TokenError::Line { .. } => "TOKEN_FILE_INVALID",
        }
    }
}

type Digests = HashMap<[u8; 32], Principal>;

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Parses the file's text (`path` only names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<HashMap<[u8; 32], Principal>, TokenError> {
    let mut out = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| TokenError::Line {
            path: path.display().to_string(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = line.split(',').map(str::trim).collect();
        let [token, role, name] = parts[..] else {
            return Err(bad("expected token,role,name"));
        };
        if token.len() < 16 {
            return Err(bad("a token must be at least 16 characters"));
        }
        let role =
            Role::parse(role).ok_or_else(|| bad("role must be admin, operator or viewer"))?;
        let principal = Principal::User {
            name: name.to_string(),
            role,
        };
        // Checks the name the same way certificate identities are checked.
        if name.is_empty() || Principal::parse_uri(&principal.uri()).is_none() {
            return Err(bad("name must be letters, digits, '-', '.', '_' or '@'"));
        }
        if out.insert(digest(token), principal).is_some() {
            return Err(bad("the same token appears twice"));
        }
    }
    Ok(out)
}

fn load(path: &Path) -> Result<Digests, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|e| TokenError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse(path, &text)
}

/// The tokens in force, reloaded when the file changes.
#[derive(Debug, Clone)]
pub struct Tokens {
    path: PathBuf,
    current: Arc<RwLock<Digests>>,
    /// The fingerprint taken before the first load (so an edit made right after it is
    /// still seen as a change).
    loaded: Option<[u8; 32]>,
}

impl Tokens {
    /// Loads `path` (an error here stops the start).
    pub fn new(path: PathBuf) -> Result<Self, TokenError> {
        let loaded = super::reload::digest(&path);
        let current = load(&path)?;
        Ok(Self {
            path,
            current: Arc::new(RwLock::new(current)),
            loaded,
        })
    }

    /// Who `token` belongs to.
    pub fn lookup(&self, token: &str) -> Option<Principal> {
        self.current.read().get(&digest(token)).cloned()
    }

    /// Re-reads the file every `every` when it changed, until `stop`.
    pub fn spawn_reloader(&self, every: Duration, stop: CancellationToken) {
        let (path, this) = (self.path.clone(), self.clone());
        super::reload::spawn(
            every,
            stop,
            self.loaded,
            move || super::reload::digest(&path),
            move || match load(&this.path) {
                Ok(t) => {
                    let n = t.len();
                    *this.current.write() = t;
                    info!(path = %this.path.display(), tokens = n, "token file reloaded");
                    true
                }
                Err(e) => {
                    error!(
                        error = %e,
                        code = e.code(),
                        "token file changed but cannot be used; the previous tokens stay in force"
                    );
                    false
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "0123456789abcdef-admin";
    const T2: &str = "0123456789abcdef-viewer";

    #[test]
    fn lines_map_tokens_to_roles() {
        let text = format!("# who\n{T1}, admin, alice\n\n{T2},viewer,grafana\n");
        let t = parse(Path::new("t"), &text).unwrap();
        assert_eq!(
            t.get(&digest(T2)),
            Some(&Principal::User {
                name: "grafana".into(),
                role: Role::Viewer
            })
        );
        assert_eq!(t.len(), 2);
        assert!(!t.contains_key(&digest("0123456789abcdef")));
    }

    #[test]
    fn bad_lines_name_their_line() {
        for (text, line) in [
            (format!("{T1},admin\n"), 1),
            (format!("{T1},admin,a\n{T2},root,b\n"), 2),
            ("short,admin,a\n".to_string(), 1),
            (format!("{T1},admin,a\n{T1},viewer,b\n"), 2),
            (format!("{T1},admin,a b\n"), 1),
        ] {
            match parse(Path::new("t"), &text) {
                Err(TokenError::Line { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn an_edit_takes_effect_and_a_broken_edit_keeps_the_old_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("{T1},admin,alice\n")).unwrap();
        let tokens = Tokens::new(path.clone()).unwrap();
        let stop = CancellationToken::new();
        tokens.spawn_reloader(Duration::from_millis(20), stop.clone());
        assert!(tokens.lookup(T1).is_some());

        std::fs::write(&path, format!("{T2},viewer,bob\n")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tokens.lookup(T2).is_none() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(tokens.lookup(T2).is_some(), "the edit was picked up");
        assert!(
            tokens.lookup(T1).is_none(),
            "the removed token no longer works"
        );

        std::fs::write(&path, "this is not a token file at all\n").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            tokens.lookup(T2).is_some(),
            "a broken edit keeps the old tokens"
        );
        stop.cancel();
    }
}

//! Security of the control plane's one port: TLS, who the caller is, what it may do.
//!
//! | module | job |
//! |---|---|
//! | [`tls`] | the TLS listener: mutual TLS, certificates reloaded on change, peer identity |
//! | [`tokens`] | bearer tokens with roles, from a file reloaded on change |
//! | [`authz`] | the layer that authenticates and authorizes every request |
//! | [`reload`] | the poll loop that reloads changed files |
//!
//! Plaintext without authentication exists only as [`Security::Insecure`], which the binary
//! takes only from an explicit `--insecure` and announces with a warning at start and on
//! every agent connection; embedding code (tests, the benchmark) picks it by default.

pub mod authz;
pub mod reload;
pub mod tls;
pub mod tokens;

use std::path::PathBuf;
use std::time::Duration;

pub use authz::{AuthLayer, Caller};
pub use tls::{PeerInfo, ReloadingTls, TlsFiles};
pub use tokens::Tokens;

/// How often changed certificate and token files are noticed.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// How the control plane's port is protected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Security {
    /// Plaintext; every caller may do everything.
    #[default]
    Insecure,
    /// TLS with client certificates and, optionally, bearer tokens.
    Tls(TlsSettings),
}

impl Security {
    /// Whether the port is plaintext and open.
    pub fn is_insecure(&self) -> bool {
        matches!(self, Security::Insecure)
    }
}

/// The files of [`Security::Tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Certificate, key and client CA.
    pub files: TlsFiles,
    /// `token,role,name` lines, if bearer tokens are accepted.
    pub tokens: Option<PathBuf>,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
}

/// Starting with the configured security failed.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The TLS files cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The token file cannot be used.
    #[error("tokens: {0}")]
    Tokens(#[from] tokens::TokenError),
}

impl SecurityError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            SecurityError::Tls(e) => e.code(),
            SecurityError::Tokens(e) => e.code(),
        }
    }
}

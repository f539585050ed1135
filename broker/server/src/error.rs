//! Errors that stop the broker from starting or make it stop.
//!
//! Request handlers answer their failures on the wire (a response code and remark); this
//! enum is for the process itself: a bad config, a store that cannot open, a port that
//! cannot be bound. `main` prints it with its stable code and exits non-zero.

use crate::config::ConfigError;

/// A broker-level failure.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The message store could not open.
    #[error("cannot open the message store: {0}")]
    Store(#[from] flotilla_message_store::StoreError),
    /// A metadata file could not be loaded.
    #[error("cannot load broker metadata: {0}")]
    Metadata(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task failed.
    #[error("internal task failed: {0}")]
    Task(String),
    /// The DLedger engine could not start (bad peers, port taken, unmanaged data …).
    #[error("cannot start DLedger: {0}")]
    DLedger(#[from] flotilla_dledger::StartError),
    /// `aclEnable=true` but the ACL file cannot be used.
    #[error("cannot start with ACL: {0}")]
    Acl(#[from] flotilla_acl::AclFileError),
}

impl BrokerError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Metadata(_) => "BROKER_METADATA",
            Self::Bind { .. } => "BROKER_BIND_FAILED",
            Self::Task(_) => "BROKER_TASK_FAILED",
            Self::DLedger(e) => e.code(),
            Self::Acl(e) => e.code(),
        }
    }
}

//! The store-wide error type.
//!
//! Public operations that can fail for reasons other than a bad message (which is reported
//! through [`crate::PutStatus`]) return [`StoreError`]. Each variant has a stable
//! `SCREAMING_SNAKE` code so the broker can surface it unchanged.

use std::path::PathBuf;

use crate::codec::CodecError;
use crate::metadata::MetadataError;
use crate::mmap::MmapError;

/// Errors of the message store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A mapped segment could not be created, opened or accessed.
    #[error(transparent)]
    Segment(#[from] MmapError),
    /// A record could not be decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A metadata file could not be read or written.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The configuration is inconsistent (e.g. segment smaller than the largest message).
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// Another process holds the store's lock file.
    #[error("store at {0} is locked by another process")]
    Locked(PathBuf),
    /// The on-disk format marker names a version this build does not understand.
    #[error("store at {path} has format version {found}; this build supports up to {supported}")]
    UnsupportedFormat {
        /// The store root.
        path: PathBuf,
        /// Version found in `FORMAT`.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// The `FORMAT` marker exists but cannot be parsed.
    #[error("store format marker {0} is unreadable")]
    BadFormatMarker(PathBuf),
    /// On-disk data is inconsistent in a way recovery cannot repair.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// A replication append did not start at the CommitLog's current end.
    #[error("append at {at} but the CommitLog ends at {expected}")]
    OffsetMismatch {
        /// Offset the caller asked for.
        at: i64,
        /// The CommitLog's current end.
        expected: i64,
    },
    /// Raw replicated data is not a valid sequence of records and blank markers.
    #[error("invalid raw data at offset {offset}: {reason}")]
    InvalidRawData {
        /// CommitLog offset of the offending bytes.
        offset: i64,
        /// What is wrong with them.
        reason: String,
    },
    /// A truncation target is not a record boundary inside the CommitLog.
    #[error("cannot truncate to {0}: not a record boundary in the CommitLog")]
    BadTruncateOffset(i64),
    /// The disk is above the configured full ratio; writes are refused.
    #[error("disk usage {0:.2} is above the full ratio; writes are refused")]
    DiskFull(f64),
    /// The store has been shut down.
    #[error("store is shut down")]
    ShutDown,
}

impl StoreError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Io { .. } => "STORE_IO",
            StoreError::Segment(e) => e.code(),
            StoreError::Codec(e) => e.code(),
            StoreError::Metadata(e) => e.code(),
            StoreError::InvalidConfig(_) => "STORE_INVALID_CONFIG",
            StoreError::Locked(_) => "STORE_LOCKED",
            StoreError::UnsupportedFormat { .. } => "STORE_UNSUPPORTED_FORMAT",
            StoreError::BadFormatMarker(_) => "STORE_BAD_FORMAT_MARKER",
            StoreError::Corrupt(_) => "STORE_CORRUPT",
            StoreError::OffsetMismatch { .. } => "STORE_OFFSET_MISMATCH",
            StoreError::InvalidRawData { .. } => "STORE_INVALID_RAW_DATA",
            StoreError::BadTruncateOffset(_) => "STORE_BAD_TRUNCATE_OFFSET",
            StoreError::DiskFull(_) => "STORE_DISK_FULL",
            StoreError::ShutDown => "STORE_SHUT_DOWN",
        }
    }

    /// Wraps an I/O error with what the store was doing.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }
}

//! Errors of the transport layer: connecting, invoking, sending on a channel.
//!
//! One enum for the client, the channel and the server, so a caller (broker, agent,
//! `flotilla bench`) can tell apart "the peer never answered" ([`RemotingError::Timeout`]),
//! "could not reach it" ([`RemotingError::Connect`]), "the connection went away"
//! ([`RemotingError::Closed`]) and "the peer spoke nonsense" ([`RemotingError::Protocol`]).

use std::time::Duration;

use crate::codec::CodecError;

/// A remoting operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RemotingError {
    /// No response arrived in time; the pending entry was removed.
    #[error("request to {addr} timed out after {timeout:?}")]
    Timeout {
        /// Peer address.
        addr: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// The TCP connection could not be established.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Peer address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The connection closed before the operation completed.
    #[error("connection to {0} is closed")]
    Closed(String),
    /// A frame could not be encoded or decoded.
    #[error("protocol error: {0}")]
    Protocol(#[from] CodecError),
    /// The address is not `host:port`.
    #[error("invalid address {0:?}")]
    InvalidAddress(String),
    /// The client or server is shutting down.
    #[error("shut down")]
    Shutdown,
}

impl RemotingError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "REMOTING_TIMEOUT",
            Self::Connect { .. } => "REMOTING_CONNECT_FAILED",
            Self::Closed(_) => "REMOTING_CLOSED",
            Self::Protocol(_) => "REMOTING_PROTOCOL_ERROR",
            Self::InvalidAddress(_) => "REMOTING_INVALID_ADDRESS",
            Self::Shutdown => "REMOTING_SHUTDOWN",
        }
    }
}

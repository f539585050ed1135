//! DLedger mode for Flotilla brokers: a Raft group whose replicated log **is** the broker's
//! CommitLog.
//!
//! In RocketMQ's DLedger mode (`enableDLegerCommitLog=true`) the brokers of one broker name
//! form a Raft group: the elected leader is the master (brokerId 0), the others are slaves, a
//! send is acknowledged once a majority holds it, and a failed master is replaced
//! automatically. This crate is that engine. See `README.md` beside this crate for the design
//! decision (why our own Raft on CommitLog offsets rather than openraft or raft-rs).
//!
//! | module | job |
//! |---|---|
//! | [`config`] | [`DLedgerConfig`], `dLegerPeers` parsing |
//! | [`epoch`] | `(term, start_offset)` epochs: the term of every CommitLog byte |
//! | [`persist`] | atomic `term.json` / `epochs.json` |
//! | [`quorum`] | the commit rule and the lease rule |
//! | [`wire`] | the peer RPC messages and their binary encoding |
//! | [`transport`] | frames over tokio TCP, per-peer clients that re-resolve on reconnect |
//! | `node` | the member: election, replication, commit, lease, transfer |
//! | [`error`] | errors of the public API |
//!
//! # Wiring into the broker
//!
//! ```text
//! let dl = DLedger::start(cfg, store.clone()).await?;
//! // send path, before appending:   if !dl.is_writable() { reply NOT_LEADER / SERVICE_NOT_AVAILABLE }
//! // after store.put_message(..):    dl.wait_committed(end_offset, timeout).await
//! // role changes:                   dl.role() -> register as brokerId 0 when Leader, else slave
//! ```

pub mod config;
pub mod epoch;
pub mod error;
mod node;
pub mod persist;
pub mod quorum;
pub mod transport;
pub mod wire;

pub use config::{ConfigError, DLedgerConfig, Peer, parse_peers};
pub use epoch::{Epoch, EpochLog};
pub use error::{CommitError, MembershipError, StartError, TransferError};
pub use node::{DLedger, Role, RoleState};

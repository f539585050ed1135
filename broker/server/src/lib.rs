//! Flotilla's RocketMQ-compatible broker.
//!
//! The broker speaks RocketMQ's remoting protocol to unchanged clients, stores messages in
//! `flotilla-message-store`, and registers with nameservers so producers and consumers can
//! find it. It is configured with RocketMQ's `broker.conf` keys and can change its
//! nameserver list and permission at runtime without a restart.
//!
//! | module | job |
//! |---|---|
//! | [`config`], [`properties`] | `broker.conf` parsing, validation, atomic rewrite |
//! | [`broker`] | shared state, startup, background services, shutdown |
//! | [`topic_config`], [`subscription_group`], [`consumer_offset`] | metadata managers |
//! | [`client_manager`] | producer/consumer connections, membership notifications |
//! | [`register`] | nameserver registration and the live nameserver list |
//! | [`processor`] | request handlers by code |
//! | [`long_polling`], [`filter`], [`schedule`] | held pulls, tag filters, delayed delivery |
//! | [`timer`] | timer messages (`TIMER_DELIVER_MS` …): due-time index, put-back when due |
//! | [`transaction`] | half messages, END_TRANSACTION, transaction check-back |
//! | [`replication`] | the hook HA/DLedger plug into the send path |
//! | [`ha`] | classic master/slave HA: CommitLog streaming, SYNC_MASTER gate, slave metadata sync |
//! | [`stats`] | counters behind runtime info |
//! | [`bench`] | `flotilla-broker bench` / `flotilla bench` load generator |

pub mod bench;
pub mod broker;
pub mod client_manager;
pub mod config;
pub mod consumer_offset;
pub mod dledger;
pub mod error;
pub mod filter;
pub mod ha;
pub mod headers;
pub mod long_polling;
pub mod page_cache;
pub mod processor;
pub mod properties;
pub mod register;
pub mod replication;
pub mod schedule;
pub mod stats;
pub mod subscription_group;
pub mod timer;
pub mod topic_config;
pub mod transaction;

pub use broker::{Broker, BrokerHandle, start, start_with_gate};
pub use config::{BrokerConfig, BrokerRole, ConfigError};
pub use error::BrokerError;
pub use replication::{GateOutcome, NoReplication, ReplicationGate};

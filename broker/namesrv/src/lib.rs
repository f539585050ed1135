//! `flotilla-namesrv`: a RocketMQ-compatible nameserver.
//!
//! Producers, consumers and admin tools find brokers only through nameservers, and real
//! RocketMQ clients and brokers must be able to use ours unchanged. So this crate speaks the
//! remoting protocol through `flotilla-remoting` and keeps Java's nameserver semantics:
//!
//! - [`route`]: the route table (live brokers, broker groups, clusters, topic queues) with
//!   RocketMQ's rules for who writes queue data and when brokers expire;
//! - [`processor`]: the request handlers (REGISTER_BROKER, GET_ROUTEINFO_BY_TOPIC, KV
//!   config, permissions, topic lists, namesrv config …);
//! - [`kv`]: the KV config, persisted atomically in Java's `kvConfig.json` layout;
//! - [`config`]: settings, RocketMQ `namesrv.properties` keys and runtime updates;
//! - [`clock`]: the injectable time source of broker expiry;
//! - [`server`]: [`Namesrv`], which wires them together, and its shutdown.

pub mod clock;
pub mod config;
pub mod kv;
pub mod processor;
pub mod route;
pub mod server;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{NamesrvConfig, RuntimeConfig};
pub use kv::KvConfigManager;
pub use processor::{NamesrvProcessor, RequestError, SUPPORTED_CODES};
pub use route::{RouteInfoManager, RouteOptions};
pub use server::{Namesrv, StartError};

//! `flotilla-cp`: the Flotilla control plane.
//!
//! It serves the public `flotilla.v1` API (clusters, nodes, operations) and the agents'
//! `flotilla.agent.v1` stream on one gRPC port, keeps intent in an [`IntentStore`]
//! (embedded or etcd), elects one leader among its replicas whose epoch fences every write,
//! and reconciles each cluster into per-node desired states that it pushes to the agents,
//! folding their reports back into `Cluster.status`.
//!
//! | module | job |
//! |---|---|
//! | [`server`] | assembly: gRPC services, health, reflection, background tasks |
//! | [`api`] | ClusterService, NodeService, OperationService; TopicService and GroupService through the agents |
//! | [`validate`], [`errors`] | input rules and the error model (codes, google.rpc details) |
//! | [`leader`], [`fenced`] | election, epoch, fenced writes |
//! | [`forward`] | followers forward API calls and agent streams to the leader |
//! | [`cache`] | the reflector: list + watch of every Flotilla key |
//! | [`sessions`], [`registry`] | agent streams, heartbeats, commands; node records |
//! | [`reconcile`] | placement, rendering, desired states, status folding |
//! | [`requests`] | request-id idempotency |
//! | [`security`] | TLS, bearer tokens, who may call what |
//! | [`workflow`] | the engine that drives Operations step by step (scale-in, …) |
//! | [`testing`] | a fake agent speaking the real protocol (tests, benchmark) |
//!
//! [`IntentStore`]: flotilla_intent_store::IntentStore

pub mod api;
pub mod audit;
pub mod backoff;
pub mod cache;
pub mod context;
pub mod errors;
pub mod failpoints;
pub mod fenced;
pub mod forward;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod reconcile;
pub mod registry;
pub mod requests;
pub mod security;
pub mod server;
pub mod sessions;
pub mod testing;
pub mod validate;
pub mod workflow;

pub use context::{Config, Ctx};
pub use server::ControlPlane;
pub use sessions::CommandError;

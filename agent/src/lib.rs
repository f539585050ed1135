//! `flotilla-agent`: the per-node agent.
//!
//! One agent runs on every machine. It holds a stream to the control plane
//! ([`session`]), supervises the node's broker and nameserver processes ([`supervisor`]),
//! renders their config ([`render`]), re-adopts them after its own restart (processes are
//! detached and outlive the agent), applies online changes through the admin protocol
//! ([`online`]), executes imperative commands ([`commands`]) exactly once ([`journal`]) and
//! only for the current control-plane leader ([`epoch`]). On Kubernetes it follows its Node
//! ([`kube`]): topology labels to the control plane, cordoning to a Flotilla cordon or drain.

pub mod commands;
pub mod epoch;
pub mod health;
pub mod journal;
pub mod kube;
pub mod metrics;
pub mod online;
pub mod probe;
pub mod render;
pub mod session;
pub mod state;
pub mod supervisor;

pub use session::{Agent, AgentConfig};

//! The agent's Prometheus metrics (`--metrics-listen`, `GET /metrics`): what is running on
//! this node and how the control plane's commands fare.
//!
//! - `flotilla_agent_instances{kind,state}`: instances by kind and supervision state;
//! - `flotilla_agent_instance_restarts{instance}`: restarts the agent made of each instance
//!   (a gauge: it is the supervisor's persisted count, which survives agent restarts);
//! - `flotilla_agent_command_duration_seconds{action,result}`: commands executed;
//! - `flotilla_agent_control_plane_connected`: 1 while a session is open.
//!
//! The instance series are refreshed after every supervision round, so a scrape never
//! waits for the supervisor's lock. Labels are bounded: kinds, states, actions and results
//! are enums, and instances are the few this node runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flotilla_proto::agent::v1::{InstanceObservation, InstanceState};
use flotilla_proto::v1::InstanceKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `{kind,state}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// `INSTANCE_KIND_BROKER`, …
    pub kind: &'static str,
    /// `INSTANCE_STATE_RUNNING`, …
    pub state: &'static str,
}

/// `{instance}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabel {
    /// The instance's name.
    pub instance: String,
}

/// `{action,result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// The command's action.
    pub action: &'static str,
    /// `ok` or the failure's code.
    pub result: &'static str,
}

/// The agent's metrics (cheap to clone).
#[derive(Clone)]
pub struct AgentMetrics {
    registry: Arc<Registry>,
    instances: Family<InstanceLabels, Gauge>,
    restarts: Family<InstanceLabel, Gauge>,
    commands: Family<CommandLabels, Histogram>,
    connected: Gauge,
    open: Arc<AtomicBool>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

fn seconds_histogram() -> Histogram {
    // 1 ms … ~65 s (commands include waits for brokers).
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("flotilla_agent");
        let instances = Family::<InstanceLabels, Gauge>::default();
        r.register(
            "instances",
            "Instances on this node by kind and state",
            instances.clone(),
        );
        let restarts = Family::<InstanceLabel, Gauge>::default();
        r.register(
            "instance_restarts",
            "Restarts the agent made of each instance",
            restarts.clone(),
        );
        let commands = Family::<CommandLabels, Histogram>::new_with_constructor(
            seconds_histogram as fn() -> _,
        );
        r.register(
            "command_duration_seconds",
            "Commands from the control plane, by action and result",
            commands.clone(),
        );
        let connected = Gauge::default();
        r.register(
            "control_plane_connected",
            "1 while a session with the control plane is open",
            connected.clone(),
        );
        AgentMetrics {
            registry: Arc::new(r),
            instances,
            restarts,
            commands,
            connected,
            open: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl AgentMetrics {
    /// Replaces the instance series with `obs` (called after each supervision round).
    pub fn observe_instances(&self, obs: &[InstanceObservation]) {
        self.instances.clear();
        self.restarts.clear();
        for o in obs {
            let kind = InstanceKind::try_from(o.kind).map_or("unknown", |k| k.as_str_name());
            let state = InstanceState::try_from(o.state).map_or("unknown", |s| s.as_str_name());
            self.instances
                .get_or_create(&InstanceLabels { kind, state })
                .inc();
            self.restarts
                .get_or_create(&InstanceLabel {
                    instance: o.name.clone(),
                })
                .set(i64::from(o.restarts));
        }
    }

    /// Records one executed command.
    pub fn observe_command(&self, action: &'static str, result: &'static str, took: Duration) {
        self.commands
            .get_or_create(&CommandLabels { action, result })
            .observe(took.as_secs_f64());
    }

    /// Notes whether a control-plane session is open.
    pub fn set_connected(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.connected
            .set(i64::from(self.open.load(Ordering::Acquire)));
        flotilla_metrics::http::encode_text(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_series_follow_the_latest_round() {
        let m = AgentMetrics::default();
        let obs = |name: &str, state: InstanceState, restarts: u32| InstanceObservation {
            name: name.into(),
            kind: InstanceKind::Broker as i32,
            state: state as i32,
            restarts,
            ..Default::default()
        };
        m.observe_instances(&[
            obs("b-0", InstanceState::Running, 2),
            obs("b-1", InstanceState::Backoff, 0),
        ]);
        let text = m.render();
        assert!(
            text.contains(
                "flotilla_agent_instances{kind=\"INSTANCE_KIND_BROKER\",state=\"INSTANCE_STATE_RUNNING\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("flotilla_agent_instance_restarts{instance=\"b-0\"} 2"),
            "{text}"
        );
        m.observe_instances(&[obs("b-0", InstanceState::Running, 3)]);
        let text = m.render();
        assert!(!text.contains("INSTANCE_STATE_BACKOFF"), "{text}");
        assert!(!text.contains("b-1"), "{text}");
        assert!(
            text.contains("flotilla_agent_control_plane_connected 0"),
            "{text}"
        );
    }
}

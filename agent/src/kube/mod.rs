//! The agent on Kubernetes: what its Node says, carried to the control plane.
//!
//! An agent started with `--kube-node NAME` (the Helm chart passes the pod's `spec.nodeName`)
//! reads that Node from the API server and follows it with a watch:
//!
//! - its topology labels (`topology.kubernetes.io/zone`, `topology.kubernetes.io/region`,
//!   `kubernetes.io/hostname`) go into the agent's Hello and reports, so the control plane
//!   records where the node is (`Node.status.topology`) and placement can spread a group's
//!   members over zones;
//! - `spec.unschedulable` turning true (`kubectl cordon`, and the first step of `kubectl
//!   drain`, which leaves DaemonSet pods running) cordons or drains the Flotilla node through
//!   the control plane's `NodeService` ([`OnCordon`]); turning false uncordons it. Only
//!   changes the agent sees act: an agent starting on a schedulable Node leaves a cordon an
//!   operator set through Flotilla alone.
//!
//! The watch is the plain `kube` client (get, then watch from that resourceVersion; on any
//! error or the server's timeout, get again after a backoff): RBAC needs only `get` and
//! `watch` on nodes. Calls to the control plane carry a request id derived from the Node's
//! resourceVersion, so a retried call is answered from the control plane's replay record.
//! Without `--kube-node` nothing here runs and the agent works as on any machine.
//!
//! With `--kube-pod` (the chart's per-nameserver Services, instead of host networking) the
//! agent also labels its own Pod with the instances it runs ([`pod_labels`]).

pub mod pod_labels;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, WatchEvent, WatchParams};
use flotilla_client::Connector;
use flotilla_proto::v1::node_service_client::NodeServiceClient;
use flotilla_proto::v1::{CordonNodeRequest, DrainNodeRequest, NodeTopology, UncordonNodeRequest};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use crate::session::Agent;
use crate::supervisor::backoff::Backoff;

/// The zone label Kubernetes sets on Nodes.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The region label Kubernetes sets on Nodes.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// The hostname label Kubernetes sets on Nodes.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Seconds the API server keeps one watch open before the agent starts another.
const WATCH_TIMEOUT_SECS: u32 = 290;

/// Talking to the Kubernetes API or acting on what it said failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No Kubernetes client configuration: not in a pod (no service account) and no
    /// kubeconfig.
    #[error("no Kubernetes configuration: {0}")]
    Config(String),
    /// The API server refused or failed a request (the Node missing, RBAC, network).
    #[error("Kubernetes API: {0}")]
    Api(#[from] ::kube::Error),
    /// The watch reported an error event (e.g. its resourceVersion is too old).
    #[error("Kubernetes watch: {0}")]
    Watch(String),
    /// The control plane could not be reached or refused the cordon, drain or uncordon.
    #[error("control plane: {0}")]
    ControlPlane(String),
}

impl KubeError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "AGENT_KUBE_CONFIG",
            Self::Api(_) => "AGENT_KUBE_API",
            Self::Watch(_) => "AGENT_KUBE_WATCH",
            Self::ControlPlane(_) => "AGENT_KUBE_CONTROL_PLANE",
        }
    }
}

/// What cordoning the Kubernetes Node does to the Flotilla node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnCordon {
    /// Cordon it: nothing new is placed there, running instances stay.
    Cordon,
    /// Drain it: cordon it and move its instances elsewhere.
    Drain,
    /// Nothing (topology is still reported).
    None,
}

/// What the agent takes from its Node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeView {
    /// Zone, region, hostname labels.
    pub topology: NodeTopology,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `metadata.resourceVersion`: where a watch resumes, and the request ids of calls.
    pub resource_version: String,
}

/// The view of a Node object.
pub fn view_of(node: &Node) -> NodeView {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
    NodeView {
        topology: NodeTopology {
            zone: label(ZONE_LABEL),
            region: label(REGION_LABEL),
            hostname: label(HOSTNAME_LABEL),
        },
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        resource_version: node.metadata.resource_version.clone().unwrap_or_default(),
    }
}

/// Installs ring as the process's TLS provider unless one is installed already. rustls
/// picks a provider by itself only when exactly one of its backends is compiled in; a build
/// where other crates enable a second one needs the choice made explicitly.
pub fn install_crypto_provider() {
    // An error only says a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client from the pod's service account, or else the local kubeconfig.
pub async fn client() -> Result<::kube::Client, KubeError> {
    install_crypto_provider();
    ::kube::Client::try_default()
        .await
        .map_err(|e| KubeError::Config(e.to_string()))
}

/// Follows one Node.
pub struct NodeWatcher {
    api: Api<Node>,
    name: String,
}

impl NodeWatcher {
    /// Watches Node `name` through `client`.
    pub fn new(client: ::kube::Client, name: &str) -> Self {
        Self {
            api: Api::all(client),
            name: name.to_string(),
        }
    }

    /// Reads the Node once.
    pub async fn get(&self) -> Result<NodeView, KubeError> {
        Ok(view_of(&self.api.get(&self.name).await?))
    }

    /// Publishes the Node's view on `tx` (only changes) until `shutdown` turns true: a get,
    /// then a watch from its resourceVersion; after an error, a backoff and a new get.
    pub async fn run(
        self,
        tx: watch::Sender<Option<NodeView>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let span = info_span!("kube_node", node = %self.name);
        async {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
            while !*shutdown.borrow() {
                let follow = self.follow(&tx, &mut backoff);
                let result = tokio::select! {
                    r = follow => r,
                    _ = shutdown.changed() => continue,
                };
                if let Err(e) = result {
                    warn!(error = %e, code = e.code(), "following the Kubernetes Node");
                    let delay = backoff.next_delay();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn follow(
        &self,
        tx: &watch::Sender<Option<NodeView>>,
        backoff: &mut Backoff,
    ) -> Result<(), KubeError> {
        let publish = |v: NodeView| {
            tx.send_if_modified(|cur| {
                let changed = cur
                    .as_ref()
                    .is_none_or(|c| c.topology != v.topology || c.unschedulable != v.unschedulable);
                *cur = Some(v);
                changed
            });
        };
        let first = self.get().await?;
        let mut version = first.resource_version.clone();
        publish(first);
        backoff.reset();
        let params = WatchParams::default()
            .fields(&format!("metadata.name={}", self.name))
            .timeout(WATCH_TIMEOUT_SECS);
        let mut events = self.api.watch(&params, &version).await?.boxed();
        while let Some(event) = events.try_next().await? {
            match event {
                WatchEvent::Added(n) | WatchEvent::Modified(n) => {
                    let v = view_of(&n);
                    version = v.resource_version.clone();
                    publish(v);
                }
                WatchEvent::Deleted(_) => warn!("the Kubernetes Node was deleted"),
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(status) => {
                    return Err(KubeError::Watch(format!(
                        "{} (from resourceVersion {version})",
                        status.message
                    )));
                }
            }
        }
        // The server ended the watch (its timeout): the caller gets and watches again.
        Ok(())
    }
}

/// The control-plane call a change of `spec.unschedulable` asks for, if any.
fn action(before: Option<bool>, now: bool, policy: OnCordon) -> Option<&'static str> {
    match (before, now, policy) {
        (_, _, OnCordon::None) => None,
        (Some(true), true, _) | (None | Some(false), false, _) => None,
        (_, true, OnCordon::Cordon) => Some("cordon"),
        (_, true, OnCordon::Drain) => Some("drain"),
        // Uncordoned after the agent saw it cordoned.
        (Some(true), false, _) => Some("uncordon"),
    }
}

async fn call(
    connector: &mut Connector,
    node: &str,
    what: &str,
    request_id: String,
) -> Result<(), KubeError> {
    let connected = connector
        .connect()
        .await
        .map_err(|e| KubeError::ControlPlane(e.to_string()))?;
    let mut client = NodeServiceClient::new(connected.channel);
    let name = node.to_string();
    let result = match what {
        "cordon" => client
            .cordon_node(CordonNodeRequest { name, request_id })
            .await
            .map(|_| ()),
        "drain" => client
            .drain_node(DrainNodeRequest { name, request_id })
            .await
            .map(|_| ()),
        _ => client
            .uncordon_node(UncordonNodeRequest { name, request_id })
            .await
            .map(|_| ()),
    };
    result.map_err(|s| {
        connector.failed();
        KubeError::ControlPlane(format!("{}: {}", connected.url, s.message()))
    })
}

/// Carries the Node's views to the agent (topology) and to the control plane (cordon,
/// drain, uncordon per `policy`) until `shutdown` turns true or the watcher goes away. A
/// failed call is retried after a backoff.
pub async fn react(
    agent: Arc<Agent>,
    mut views: watch::Receiver<Option<NodeView>>,
    control_plane: &str,
    policy: OnCordon,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), KubeError> {
    let mut connector = Connector::parse(control_plane)
        .map_err(|e| KubeError::ControlPlane(e.to_string()))?
        .tls(agent.control_plane_tls());
    let node = agent.node_id().to_string();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut seen: Option<bool> = None;
    loop {
        let view = views.borrow_and_update().clone();
        if let Some(v) = view {
            agent.set_topology(v.topology.clone());
            match action(seen, v.unschedulable, policy) {
                None => seen = Some(v.unschedulable),
                Some(what) => {
                    let id = format!("kube-{what}-{}-{}", node, v.resource_version);
                    let span =
                        info_span!("kube_cordon", node = %node, action = what, request_id = %id);
                    match call(&mut connector, &node, what, id).instrument(span).await {
                        Ok(()) => {
                            info!(node = %node, action = what, "the Kubernetes Node changed: done");
                            seen = Some(v.unschedulable);
                            backoff.reset();
                        }
                        Err(e) => {
                            warn!(error = %e, code = e.code(), action = what, "retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(backoff.next_delay()) => continue,
                                _ = shutdown.changed() => {}
                            }
                        }
                    }
                }
            }
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        tokio::select! {
            r = views.changed() => if r.is_err() { return Ok(()) },
            _ = shutdown.changed() => {}
        }
    }
}

/// Starts following Node `node_name` for `agent`: the watcher and the reactor, both ending
/// when `shutdown` turns true.
pub fn spawn(
    agent: Arc<Agent>,
    client: ::kube::Client,
    node_name: &str,
    control_plane: &str,
    policy: OnCordon,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = watch::channel(None);
    let watcher = NodeWatcher::new(client, node_name);
    tokio::spawn(watcher.run(tx, shutdown.clone()));
    let control_plane = control_plane.to_string();
    tokio::spawn(async move {
        if let Err(e) = react(agent, rx, &control_plane, policy, shutdown).await {
            warn!(error = %e, code = e.code(), "the Kubernetes Node is not followed");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_the_agent_sees_act() {
        let (c, d, n) = (OnCordon::Cordon, OnCordon::Drain, OnCordon::None);
        assert_eq!(action(None, false, c), None, "schedulable at start");
        assert_eq!(action(None, true, c), Some("cordon"));
        assert_eq!(action(None, true, d), Some("drain"));
        assert_eq!(action(Some(false), true, d), Some("drain"));
        assert_eq!(action(Some(true), true, c), None);
        assert_eq!(action(Some(true), false, c), Some("uncordon"));
        assert_eq!(action(Some(true), false, d), Some("uncordon"));
        assert_eq!(action(Some(false), false, c), None);
        assert_eq!(action(None, true, n), None);
    }
}

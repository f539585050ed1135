//! The control plane's Prometheus metrics (`--metrics-listen`, `GET /metrics`).
//!
//! What an operator watches a fleet controller by:
//! - `flotilla_cp_grpc_requests_total{method,code}` and
//!   `flotilla_cp_grpc_request_duration_seconds{method}`: every call this replica received
//!   (refusals and forwarded calls included; for streams, the time to the response head);
//! - `flotilla_cp_reconciles_total{result}` and `flotilla_cp_reconcile_duration_seconds{result}`
//!   (`result` = `wrote`, `unchanged` or `error`);
//! - `flotilla_cp_store_request_duration_seconds{op,result}`: every intent-store call
//!   ([`MeteredStore`]), so etcd trouble shows before anything times out;
//! - read when scraped, from the cache and the sessions: `flotilla_cp_leader` (1 on the
//!   leader), `flotilla_cp_agents_connected`, `flotilla_cp_clusters{phase}`,
//!   `flotilla_cp_nodes{phase}` and `flotilla_cp_operations{kind,phase}`.
//!
//! Every label set is bounded: methods are the API's (an unknown path is `other`), codes are
//! gRPC's seventeen, phases and kinds are enums. No cluster or node name is a label: fleets
//! of thousands would make thousands of series; those are in the API.

pub mod layer;

use std::sync::Arc;
use std::time::Instant;

use flotilla_intent_store::{
    IntentStore, Lease, LeaseId, LeaseInfo, RangeRequest, RangeResponse, Result as StoreResult,
    Txn, TxnResponse, WatchStream,
};
use flotilla_proto::v1::{ClusterPhase, NodePhase, OperationPhase, operation_spec};
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::context::Ctx;

pub use layer::CallMetricsLayer;

/// `{method,code}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `Service/Method` without the package (`ClusterService/CreateCluster`).
    pub method: String,
    /// The gRPC code's name.
    pub code: &'static str,
}

/// `{method}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// As in [`CallLabels`].
    pub method: String,
}

/// `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// How it ended.
    pub result: &'static str,
}

/// `{op,result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// The store call.
    pub op: &'static str,
    /// `ok` or the error's code.
    pub result: &'static str,
}

/// `{phase}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// The phase's name.
    pub phase: &'static str,
}

/// `{kind,phase}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The operation's kind.
    pub kind: &'static str,
    /// Its phase.
    pub phase: &'static str,
}

/// The control plane's metrics (cheap to clone; shared by the layers and the context).
#[derive(Clone)]
pub struct CpMetrics {
    registry: Arc<Registry>,
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<MethodLabel, Histogram>,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_seconds: Family<ResultLabel, Histogram>,
    store_seconds: Family<StoreLabels, Histogram>,
    leader: Gauge,
    agents: Gauge,
    clusters: Family<PhaseLabel, Gauge>,
    nodes: Family<PhaseLabel, Gauge>,
    operations: Family<OperationLabels, Gauge>,
}

impl std::fmt::Debug for CpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpMetrics").finish_non_exhaustive()
    }
}

fn seconds_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for CpMetrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("flotilla_cp");
        let calls = Family::<CallLabels, Counter>::default();
        r.register("grpc_requests", "gRPC calls received", calls.clone());
        let call_seconds =
            Family::<MethodLabel, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        r.register(
            "grpc_request_duration_seconds",
            "Time to answer a gRPC call (to the response head for streams)",
            call_seconds.clone(),
        );
        let reconciles = Family::<ResultLabel, Counter>::default();
        r.register("reconciles", "Cluster reconciles run", reconciles.clone());
        let reconcile_seconds =
            Family::<ResultLabel, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        r.register(
            "reconcile_duration_seconds",
            "Time one cluster reconcile took",
            reconcile_seconds.clone(),
        );
        let store_seconds =
            Family::<StoreLabels, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        r.register(
            "store_request_duration_seconds",
            "Time one intent-store call took",
            store_seconds.clone(),
        );
        let leader = Gauge::default();
        r.register("leader", "1 on the leader, 0 on a follower", leader.clone());
        let agents = Gauge::default();
        r.register(
            "agents_connected",
            "Agent sessions open on this replica",
            agents.clone(),
        );
        let clusters = Family::<PhaseLabel, Gauge>::default();
        r.register("clusters", "Clusters by phase", clusters.clone());
        let nodes = Family::<PhaseLabel, Gauge>::default();
        r.register("nodes", "Nodes by phase", nodes.clone());
        let operations = Family::<OperationLabels, Gauge>::default();
        r.register(
            "operations",
            "Operations by kind and phase",
            operations.clone(),
        );
        CpMetrics {
            registry: Arc::new(r),
            calls,
            call_seconds,
            reconciles,
            reconcile_seconds,
            store_seconds,
            leader,
            agents,
            clusters,
            nodes,
            operations,
        }
    }
}

/// The method label of gRPC path `/pkg.Service/Method`: `Service/Method` for Flotilla's and
/// gRPC's own services, `other` for anything else (paths come from the network).
pub fn method_label(path: &str) -> String {
    let trimmed = path.trim_start_matches('/');
    let Some((service, method)) = trimmed.split_once('/') else {
        return "other".into();
    };
    let known = [
        "flotilla.v1.",
        "flotilla.agent.v1.",
        "grpc.health.v1.",
        "grpc.reflection.",
    ];
    let ok_chars = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
    };
    if known.iter().any(|k| service.starts_with(k)) && ok_chars(service) && ok_chars(method) {
        let short = service.rsplit('.').next().unwrap_or(service);
        format!("{short}/{method}")
    } else {
        "other".into()
    }
}

impl CpMetrics {
    /// Records one gRPC call.
    pub fn observe_call(&self, path: &str, code: tonic::Code, started: Instant) {
        let method = method_label(path);
        self.calls
            .get_or_create(&CallLabels {
                method: method.clone(),
                code: crate::audit::code_name(code),
            })
            .inc();
        self.call_seconds
            .get_or_create(&MethodLabel { method })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Records one reconcile.
    pub fn observe_reconcile(&self, result: &'static str, started: Instant) {
        let l = ResultLabel { result };
        self.reconciles.get_or_create(&l).inc();
        self.reconcile_seconds
            .get_or_create(&l)
            .observe(started.elapsed().as_secs_f64());
    }

    fn observe_store(&self, op: &'static str, result: &'static str, started: Instant) {
        self.store_seconds
            .get_or_create(&StoreLabels { op, result })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Refreshes the scrape-time gauges from `ctx` and renders the exposition text.
    pub fn render(&self, ctx: &Ctx) -> String {
        self.leader.set(i64::from(ctx.leader.epoch().is_some()));
        self.agents
            .set(i64::try_from(ctx.sessions.connected().len()).unwrap_or(i64::MAX));
        self.clusters.clear();
        self.nodes.clear();
        self.operations.clear();
        ctx.cache.read(|st| {
            for c in st.clusters.values() {
                let phase = c.value.status.as_ref().map_or(0, |s| s.phase);
                let phase = ClusterPhase::try_from(phase).map_or("unknown", |p| p.as_str_name());
                self.clusters.get_or_create(&PhaseLabel { phase }).inc();
            }
            for n in st.nodes.values() {
                let phase = n.value.status.as_ref().map_or(0, |s| s.phase);
                let phase = NodePhase::try_from(phase).map_or("unknown", |p| p.as_str_name());
                self.nodes.get_or_create(&PhaseLabel { phase }).inc();
            }
            for o in st.operations.values() {
                let kind = match o.value.spec.as_ref().and_then(|s| s.kind.as_ref()) {
                    Some(operation_spec::Kind::MigrateTopic(_)) => "migrate_topic",
                    Some(operation_spec::Kind::ScaleIn(_)) => "scale_in",
                    Some(operation_spec::Kind::ScaleOut(_)) => "scale_out",
                    Some(operation_spec::Kind::RollingRestart(_)) => "rolling_restart",
                    Some(operation_spec::Kind::DrainNode(_)) => "drain_node",
                    _ => "other",
                };
                let phase = o.value.status.as_ref().map_or(0, |s| s.phase);
                let phase = OperationPhase::try_from(phase).map_or("unknown", |p| p.as_str_name());
                self.operations
                    .get_or_create(&OperationLabels { kind, phase })
                    .inc();
            }
        });
        flotilla_metrics::http::encode_text(&self.registry)
    }
}

/// An [`IntentStore`] that times every call into [`CpMetrics`].
pub struct MeteredStore {
    inner: Arc<dyn IntentStore>,
    metrics: CpMetrics,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn IntentStore>, metrics: CpMetrics) -> Arc<dyn IntentStore> {
        Arc::new(MeteredStore { inner, metrics })
    }

    fn timed<'a, T: Send + 'a>(
        &'a self,
        op: &'static str,
        fut: BoxFuture<'a, StoreResult<T>>,
    ) -> BoxFuture<'a, StoreResult<T>> {
        Box::pin(async move {
            let started = Instant::now();
            let r = fut.await;
            let result = match &r {
                Ok(_) => "ok",
                Err(e) => e.code(),
            };
            self.metrics.observe_store(op, result, started);
            r
        })
    }
}

impl IntentStore for MeteredStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<flotilla_intent_store::KeyValue>>> {
        self.timed("get", self.inner.get(key))
    }

    fn range(&self, req: RangeRequest) -> BoxFuture<'_, StoreResult<RangeResponse>> {
        self.timed("range", self.inner.range(req))
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, StoreResult<TxnResponse>> {
        self.timed("txn", self.inner.txn(txn))
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        start_revision: i64,
    ) -> BoxFuture<'a, StoreResult<WatchStream>> {
        self.timed("watch", self.inner.watch(prefix, start_revision))
    }

    fn compact(&self, revision: i64) -> BoxFuture<'_, StoreResult<()>> {
        self.timed("compact", self.inner.compact(revision))
    }

    fn lease_grant(&self, ttl_secs: i64) -> BoxFuture<'_, StoreResult<Lease>> {
        self.timed("lease_grant", self.inner.lease_grant(ttl_secs))
    }

    fn lease_keep_alive(&self, id: LeaseId) -> BoxFuture<'_, StoreResult<i64>> {
        self.timed("lease_keep_alive", self.inner.lease_keep_alive(id))
    }

    fn lease_revoke(&self, id: LeaseId) -> BoxFuture<'_, StoreResult<()>> {
        self.timed("lease_revoke", self.inner.lease_revoke(id))
    }

    fn lease_time_to_live(&self, id: LeaseId) -> BoxFuture<'_, StoreResult<LeaseInfo>> {
        self.timed("lease_time_to_live", self.inner.lease_time_to_live(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(
            method_label("/flotilla.v1.ClusterService/CreateCluster"),
            "ClusterService/CreateCluster"
        );
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "Health/Check");
        assert_eq!(method_label("/evil.Service/x"), "other");
        assert_eq!(method_label("/flotilla.v1.X/a b"), "other");
        assert_eq!(
            method_label(&format!("/flotilla.v1.X/{}", "a".repeat(65))),
            "other"
        );
        assert_eq!(method_label("nothing"), "other");
    }
}

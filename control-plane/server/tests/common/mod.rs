//! Test harness: a control plane on a loopback port over a real store (embedded in a temp dir,
//! or a real etcd), gRPC clients, fake agents, request builders. The bounded waits come from
//! `flotilla_intent_store::testing`, and tests against a real etcd start it with its
//! `EtcdServer`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use flotilla_cp::testing::cluster;
use flotilla_cp::testing::{FakeAgent, FakeAgentOptions, channel};
use flotilla_cp::{Config, ControlPlane};
pub use flotilla_intent_store::testing::{PATIENCE, wait_until};
use flotilla_intent_store::{EmbeddedOptions, EmbeddedStore, IntentStore, LeasesOnReopen};
use flotilla_proto::v1::{
    BrokerSpec, Cluster, CreateClusterRequest, DeleteClusterRequest, GetClusterRequest,
    ListOperationsRequest, Operation, UpdateClusterRequest,
    cluster_service_client::ClusterServiceClient, node_service_client::NodeServiceClient,
    operation_service_client::OperationServiceClient,
};
use tonic::transport::Channel;

/// Short timings for tests.
pub fn test_config(name: &str) -> Config {
    Config {
        advertise: name.to_string(),
        node_heartbeat_timeout: Duration::from_secs(2),
        resync_interval: Duration::from_secs(5),
        leader_lease_ttl: Duration::from_secs(2),
        reconcile_workers: 2,
        command_timeout: Duration::from_secs(5),
        // These replicas advertise names, not addresses: followers answer NOT_LEADER
        // themselves. `start_forwarding` starts replicas that forward.
        forward_to_leader: false,
        ..Config::default()
    }
}

/// A control plane under test.
pub struct Harness {
    pub cp: ControlPlane,
    pub channel: Channel,
    pub dir: Option<tempfile::TempDir>,
}

impl Harness {
    pub fn clusters(&self) -> ClusterServiceClient<Channel> {
        ClusterServiceClient::new(self.channel.clone())
    }
    pub fn nodes(&self) -> NodeServiceClient<Channel> {
        NodeServiceClient::new(self.channel.clone())
    }
    pub fn operations(&self) -> OperationServiceClient<Channel> {
        OperationServiceClient::new(self.channel.clone())
    }

    /// Connects a fake agent for `node` (and waits for its first desired state).
    pub async fn agent(&self, node: &str) -> FakeAgent {
        self.agent_with(FakeAgentOptions::new(node)).await
    }

    pub async fn agent_with(&self, opts: FakeAgentOptions) -> FakeAgent {
        let a = FakeAgent::connect(self.channel.clone(), opts)
            .await
            .expect("agent connects");
        a.wait_desired(PATIENCE, |_| true)
            .await
            .expect("first desired state");
        a
    }

    pub fn epoch(&self) -> Option<i64> {
        self.cp.ctx.leader.epoch()
    }

    /// Waits until the cluster satisfies `f`.
    pub async fn wait_cluster(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&Cluster) -> bool,
    ) -> Cluster {
        let client = self.clusters();
        wait_until(what, || {
            let mut client = client.clone();
            let name = name.to_string();
            let f = &f;
            async move {
                let c = client
                    .get_cluster(GetClusterRequest { name })
                    .await
                    .ok()?
                    .into_inner();
                f(&c).then_some(c)
            }
        })
        .await;
        self.get_cluster(name).await
    }

    /// Reads cluster `name`, which must exist.
    pub async fn get_cluster(&self, name: &str) -> Cluster {
        self.clusters()
            .get_cluster(GetClusterRequest {
                name: name.to_string(),
            })
            .await
            .expect("get cluster")
            .into_inner()
    }

    /// Every operation, done or not.
    pub async fn all_operations(&self) -> Vec<Operation> {
        self.operations()
            .list_operations(ListOperationsRequest {
                include_done: true,
                ..Default::default()
            })
            .await
            .expect("list operations")
            .into_inner()
            .operations
    }
}

/// Starts a control plane on `store` and waits until it leads (when `expect_leader`).
pub async fn start_on(store: Arc<dyn IntentStore>, config: Config, expect_leader: bool) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let cp = ControlPlane::start(config, store, listener)
        .await
        .expect("start control plane");
    let channel = channel(cp.addr);
    let h = Harness {
        cp,
        channel,
        dir: None,
    };
    if expect_leader {
        wait_until("leadership", || async { h.epoch() }).await;
        h.cp.ctx.cache.wait_ready().await;
    }
    h
}

/// Starts a replica on `store` that advertises its real address and forwards to the leader
/// when it follows.
pub async fn start_forwarding(store: Arc<dyn IntentStore>) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address").to_string();
    let config = Config {
        forward_to_leader: true,
        ..test_config(&addr)
    };
    let cp = ControlPlane::start(config, store, listener)
        .await
        .expect("start control plane");
    let channel = channel(cp.addr);
    Harness {
        cp,
        channel,
        dir: None,
    }
}

/// How the tests open an embedded store: leases left by an earlier process expire on reopen.
pub fn embedded_options() -> EmbeddedOptions {
    EmbeddedOptions {
        leases_on_reopen: LeasesOnReopen::Expire,
        ..EmbeddedOptions::default()
    }
}

/// Opens the embedded store in `dir` with [`embedded_options`].
pub async fn open_embedded(dir: &Path) -> Arc<dyn IntentStore> {
    Arc::new(
        EmbeddedStore::open_with(dir, embedded_options())
            .await
            .expect("open embedded store"),
    )
}

/// A control plane on a fresh embedded store.
pub async fn start_embedded() -> Harness {
    let dir = tempfile::Builder::new()
        .prefix("flotilla-cp-")
        .tempdir()
        .expect("temp dir");
    let store = open_embedded(dir.path()).await;
    let mut h = start_on(store, test_config("cp-test"), true).await;
    h.dir = Some(dir);
    h
}

/// The broker spec of `c` (which must have one).
pub fn broker_mut(c: &mut Cluster) -> &mut BrokerSpec {
    c.spec
        .as_mut()
        .and_then(|s| s.broker.as_mut())
        .expect("a cluster with a broker spec")
}

// ===== requests =====

/// CreateCluster of `c` with `request_id` (may be empty).
pub fn create_req(c: Cluster, request_id: &str) -> CreateClusterRequest {
    CreateClusterRequest {
        cluster: Some(c),
        request_id: request_id.into(),
        validate_only: false,
    }
}

/// UpdateCluster to `c` with `request_id` (may be empty).
pub fn update_req(c: Cluster, request_id: &str) -> UpdateClusterRequest {
    UpdateClusterRequest {
        cluster: Some(c),
        request_id: request_id.into(),
        validate_only: false,
        force: false,
    }
}

/// DeleteCluster of `name` with `etag` and `request_id` (either may be empty).
pub fn delete_req(name: &str, etag: &str, request_id: &str) -> DeleteClusterRequest {
    DeleteClusterRequest {
        name: name.into(),
        etag: etag.into(),
        request_id: request_id.into(),
    }
}

// ===== assertions on errors and the store =====

/// Checks `status` has `code` and an ErrorInfo with `reason` in the `flotilla.io` domain;
/// returns the ErrorInfo metadata.
pub fn assert_error(
    status: &tonic::Status,
    code: tonic::Code,
    reason: &str,
) -> std::collections::HashMap<String, String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), code, "unexpected status {status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "unexpected reason in {status:?}");
    assert_eq!(info.domain, "flotilla.io");
    info.metadata
}

/// The fields named by the BadRequest detail of `status`.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The store's current revision.
pub async fn store_revision(store: &Arc<dyn IntentStore>) -> i64 {
    store
        .range(
            flotilla_intent_store::RangeRequest::prefix(flotilla_intent_store::keys::ROOT)
                .with_limit(1),
        )
        .await
        .expect("range")
        .revision
}

/// Waits until every cluster's status is folded for its generation and the reconcile queue
/// is idle (nothing queued or running).
pub async fn settle(h: &Harness) {
    wait_until("reconciler settled", || async {
        let folded = h.cp.ctx.cache.read(|st| {
            st.clusters.values().all(|c| {
                let g = c.value.metadata.as_ref().map_or(0, |m| m.generation);
                c.value
                    .status
                    .as_ref()
                    .is_some_and(|s| s.observed_generation == g && !s.conditions.is_empty())
            })
        });
        (folded && h.cp.queue.is_idle()).then_some(())
    })
    .await;
}

/// Creates `c`, returning the stored cluster.
pub async fn create_cluster(h: &Harness, c: Cluster) -> Cluster {
    h.clusters()
        .create_cluster(create_req(c, ""))
        .await
        .expect("create cluster")
        .into_inner()
}

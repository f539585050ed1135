//! Test harness: a control plane on a loopback port over a real store (embedded in a temp dir,
//! or a real etcd), gRPC clients, fake agents, a real etcd server, bounded waits.

#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use flotilla_cp::testing::{FakeAgent, FakeAgentOptions, channel};
use flotilla_cp::{Config, ControlPlane};
use flotilla_intent_store::{
    EmbeddedOptions, EmbeddedStore, EtcdStore, IntentStore, LeasesOnReopen,
};
use flotilla_proto::v1::{
    BrokerMode, BrokerSpec, Cluster, ClusterSpec, GetClusterRequest, NameServerSpec, ObjectMeta,
    cluster_service_client::ClusterServiceClient, node_service_client::NodeServiceClient,
    operation_service_client::OperationServiceClient,
};
use tonic::transport::Channel;

/// Upper bound for anything a test waits on (a hang guard, not a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` every 25 ms until it returns `Some`; panics after [`PATIENCE`].
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Short timings for tests.
pub fn test_config(name: &str) -> Config {
    Config {
        advertise: name.to_string(),
        node_heartbeat_timeout: Duration::from_secs(2),
        resync_interval: Duration::from_secs(5),
        leader_lease_ttl: Duration::from_secs(2),
        reconcile_workers: 2,
        command_timeout: Duration::from_secs(5),
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
        let mut client = self.clusters();
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
        client
            .get_cluster(GetClusterRequest {
                name: name.to_string(),
            })
            .await
            .expect("get cluster")
            .into_inner()
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

pub async fn open_embedded(dir: &Path) -> Arc<dyn IntentStore> {
    Arc::new(
        EmbeddedStore::open_with(
            dir,
            EmbeddedOptions {
                leases_on_reopen: LeasesOnReopen::Expire,
                ..EmbeddedOptions::default()
            },
        )
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

/// A master/slave (or DLedger) cluster spec.
pub fn cluster(
    name: &str,
    namesrvs: u32,
    groups: u32,
    per_group: u32,
    mode: BrokerMode,
) -> Cluster {
    Cluster {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            ..Default::default()
        }),
        spec: Some(ClusterSpec {
            nameserver: Some(NameServerSpec {
                replicas: namesrvs,
                port: 0,
                resources: None,
            }),
            broker: Some(BrokerSpec {
                groups,
                replicas_per_group: per_group,
                mode: mode as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

// ===== a real etcd =====

/// Where Debian's `etcd-server` installs the server.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    l.local_addr().expect("address").port()
}

/// A real single-member etcd on free loopback ports, data in a temp dir, killed on drop.
pub struct Etcd {
    child: Child,
    pub endpoint: String,
    dir: tempfile::TempDir,
}

impl Etcd {
    pub async fn start() -> Self {
        assert!(
            Path::new(ETCD_BIN).exists(),
            "{ETCD_BIN} is missing: install Debian's etcd-server (apt-get install etcd-server); \
             the control plane's HA tests need a real etcd"
        );
        let dir = tempfile::Builder::new()
            .prefix("cp-etcd-")
            .tempdir()
            .expect("temp dir");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
        let log_err = log.try_clone().expect("log");
        let data: PathBuf = dir.path().join("data");
        let child = Command::new(ETCD_BIN)
            .args(["--name", "cp-test", "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("cp-test={peer}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "10", "--election-timeout", "100"])
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {ETCD_BIN}: {e}"));
        let mut etcd = Etcd {
            child,
            endpoint: client,
            dir,
        };
        let ep = etcd.endpoint.clone();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = etcd.child.try_wait() {
                panic!("etcd exited early ({status})");
            }
            if let Ok(store) = EtcdStore::connect(std::slice::from_ref(&ep)).await
                && store.get("/probe").await.is_ok()
            {
                return etcd;
            }
            assert!(tokio::time::Instant::now() < deadline, "etcd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn store(&self) -> Arc<dyn IntentStore> {
        Arc::new(
            EtcdStore::connect(std::slice::from_ref(&self.endpoint))
                .await
                .expect("connect etcd"),
        )
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        .create_cluster(flotilla_proto::v1::CreateClusterRequest {
            cluster: Some(c),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .expect("create cluster")
        .into_inner()
}

//! A whole Flotilla as real processes: `flotilla-cp` on the embedded store and one
//! `flotilla-agent` per node, each node on its own loopback address, for end-to-end tests of the
//! control plane, the agents and the brokers they supervise.
//!
//! Every fleet takes a random `127.x.y.0/24` block for its nodes (`127.x.y.1`, `127.x.y.2`, …),
//! so fleets of tests running side by side never compete for ports and the default RocketMQ
//! ports (9876, 10911) can be used as they would be on real machines.
//!
//! Brokers and nameservers are spawned detached by the agents and outlive them by design, so
//! dropping a [`Fleet`] also kills every process whose working directory is inside the fleet's
//! temporary directory (the agents run each instance in its own directory there).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::v1::node_service_client::NodeServiceClient;
use flotilla_proto::v1::{
    BrokerMode, BrokerSpec, Cluster, ClusterPhase, ClusterSpec, GetClusterRequest, InstanceKind,
    Member, NameServerSpec, ObjectMeta, Placement, UpdateClusterRequest, placement::Spread,
};
use flotilla_proto::v1::{GetNodeRequest, NodePhase};
use tonic::transport::Channel;

use crate::{Proc, bin_path, free_port, temp_dir, wait_for_port, wait_until};

/// How long a fleet waits for things that take a few seconds on an idle machine.
pub const FLEET_WAIT: Duration = Duration::from_secs(90);

/// One agent process and the node it stands for.
pub struct AgentProc {
    /// Node id.
    pub node: String,
    /// The node's loopback address.
    pub ip: String,
    /// The `--control-plane` this agent is given (default: the fleet's `cp_addr`).
    pub control_plane: Option<String>,
    proc: Option<Proc>,
}

/// One `flotilla-cp` replica.
pub struct CpReplica {
    /// Its gRPC address (also its advertise name).
    pub addr: String,
    proc: Option<Proc>,
}

/// Where the fleet's control plane keeps intent.
enum CpStore {
    /// The embedded store under the fleet's directory (one replica).
    Embedded,
    /// A real etcd at these endpoints (any number of replicas).
    Etcd(String),
}

/// A running control plane and its agents.
pub struct Fleet {
    dir: tempfile::TempDir,
    /// The address clients of the fleet use: the one replica's address, or the list of every
    /// replica (`a,b,c`) for an HA fleet.
    pub cp_addr: String,
    /// The control-plane replicas.
    pub cps: Vec<CpReplica>,
    /// Extra environment for control-plane processes started from now on (e.g. fail points).
    pub cp_env: Vec<(String, String)>,
    store: CpStore,
    block: String,
    /// Agents by node id.
    pub agents: BTreeMap<String, AgentProc>,
    /// With [`Fleet::start_with_metrics`]: the `/metrics` address of each process started
    /// (`cp-0`, …, and node ids).
    pub metrics: BTreeMap<String, String>,
    with_metrics: bool,
}

fn random_block() -> String {
    let a: u8 = rand::random_range(1..=254);
    let b: u8 = rand::random_range(1..=254);
    format!("127.{a}.{b}")
}

impl Fleet {
    /// Starts a control plane and `nodes` agents (`node-1` … on `127.x.y.1` …).
    pub async fn start(nodes: usize) -> Fleet {
        let mut fleet = Self::new(CpStore::Embedded, 1);
        fleet.start_cp().await;
        for i in 1..=nodes {
            fleet.add_agent(&format!("node-{i}"), None);
        }
        fleet
    }

    /// [`Fleet::start`], every process also serving Prometheus metrics
    /// (`--metrics-listen`, addresses in [`Fleet::metrics`]) and logging JSON lines.
    pub async fn start_with_metrics(nodes: usize) -> Fleet {
        let mut fleet = Self::new(CpStore::Embedded, 1);
        fleet.with_metrics = true;
        fleet.start_cp().await;
        for i in 1..=nodes {
            fleet.add_agent(&format!("node-{i}"), None);
        }
        fleet
    }

    /// The `--metrics-listen` flag for process `name`, when the fleet serves metrics (the
    /// same address across restarts).
    fn metrics_flag(&mut self, name: &str) -> Vec<String> {
        if !self.with_metrics {
            return vec![];
        }
        let addr = self
            .metrics
            .entry(name.to_string())
            .or_insert_with(|| format!("127.0.0.1:{}", free_port()))
            .clone();
        vec!["--metrics-listen".into(), addr]
    }

    /// Starts `replicas` control planes on the etcd at `etcd_endpoints`, and no agents
    /// (add them with [`Fleet::add_agent`]).
    pub async fn start_ha(etcd_endpoints: &str, replicas: usize) -> Fleet {
        let mut fleet = Self::new(CpStore::Etcd(etcd_endpoints.to_string()), replicas);
        fleet.start_cp().await;
        fleet
    }

    fn new(store: CpStore, replicas: usize) -> Fleet {
        let cps: Vec<CpReplica> = (0..replicas)
            .map(|_| CpReplica {
                addr: format!("127.0.0.1:{}", free_port()),
                proc: None,
            })
            .collect();
        Fleet {
            dir: temp_dir("flotilla-fleet-"),
            cp_addr: cps
                .iter()
                .map(|c| c.addr.as_str())
                .collect::<Vec<_>>()
                .join(","),
            cps,
            cp_env: Vec::new(),
            store,
            block: random_block(),
            agents: BTreeMap::new(),
            metrics: BTreeMap::new(),
            with_metrics: false,
        }
    }

    /// Adds node `node` (on the next loopback address of the block) and starts its agent,
    /// given `control_plane` (default: the fleet's `cp_addr`).
    pub fn add_agent(&mut self, node: &str, control_plane: Option<&str>) {
        let i = self.agents.len() + 1;
        self.agents.insert(
            node.to_string(),
            AgentProc {
                node: node.to_string(),
                ip: format!("{}.{i}", self.block),
                control_plane: control_plane.map(str::to_string),
                proc: None,
            },
        );
        self.start_agent(node);
    }

    /// The fleet's directory (logs, store, agent data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.log"))
    }

    /// Starts (or restarts) every control-plane replica that is not running, on the same
    /// addresses and store.
    pub async fn start_cp(&mut self) {
        for i in 0..self.cps.len() {
            self.start_cp_replica(i).await;
        }
    }

    /// Starts (or restarts) replica `i` on its address, unless it runs.
    pub async fn start_cp_replica(&mut self, i: usize) {
        if self.cps[i].proc.is_some() {
            return;
        }
        let addr = self.cps[i].addr.clone();
        let mut cmd = Command::new(bin_path("flotilla-cp"));
        cmd.args(["--listen", &addr]);
        match &self.store {
            CpStore::Embedded => {
                let store = format!("embedded:{}", self.dir().join("cp").display());
                cmd.args(["--store", &store]);
            }
            CpStore::Etcd(endpoints) => {
                cmd.args(["--etcd-endpoints", endpoints, "--leader-lease-ttl", "3s"]);
            }
        }
        cmd.args(["--node-heartbeat-timeout", "6s", "--resync-interval", "5s"]);
        // The fleet tests are about operations, not security (tests/tests/security_tls.rs).
        cmd.arg("--insecure");
        cmd.args(self.metrics_flag(&format!("cp-{i}")));
        if self.with_metrics {
            cmd.args(["--log-format", "json"]);
        }
        cmd.env("RUST_LOG", "info");
        cmd.envs(self.cp_env.iter().map(|(k, v)| (k, v)));
        let log = if self.cps.len() == 1 {
            self.log("cp")
        } else {
            self.log(&format!("cp-{i}"))
        };
        self.cps[i].proc = Some(Proc::spawn("flotilla-cp", &mut cmd, Some(&log)));
        wait_for_port(&addr, FLEET_WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    /// Waits (without blocking the runtime) until control-plane replica `i` exits on its
    /// own, up to `timeout`; its exit status, or `None` if it still runs (or never ran).
    pub async fn wait_cp_exit(
        &mut self,
        i: usize,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let p = self.cps[i].proc.as_mut()?;
            if let Some(status) = p.wait_exit(Duration::from_millis(1)) {
                self.cps[i].proc = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// SIGKILLs control-plane replica `i`.
    pub fn kill_cp_replica(&mut self, i: usize) {
        if let Some(mut p) = self.cps[i].proc.take() {
            p.kill();
        }
    }

    /// Stops every control-plane replica with SIGTERM and waits for them to exit.
    pub fn stop_cp(&mut self) {
        for cp in &mut self.cps {
            if let Some(mut p) = cp.proc.take() {
                p.signal(nix::sys::signal::Signal::SIGTERM);
                if p.wait_exit(Duration::from_secs(20)).is_none() {
                    p.kill();
                }
            }
        }
    }

    /// Starts (or restarts) the agent of `node` with the same data dir.
    pub fn start_agent(&mut self, node: &str) {
        let data = self.dir().join(node);
        let log = self.log(node);
        let fleet_cp = self.cp_addr.clone();
        let metrics = self.metrics_flag(node);
        let a = self.agents.get_mut(node).expect("a node of this fleet");
        let cp = a.control_plane.clone().unwrap_or(fleet_cp);
        let mut cmd = Command::new(bin_path("flotilla-agent"));
        cmd.args([
            "--control-plane",
            &cp,
            "--node-id",
            node,
            "--data-dir",
            &data.display().to_string(),
            "--advertise-address",
            &a.ip,
            "--report-interval-secs",
            "1",
            "--insecure",
        ]);
        if !metrics.is_empty() {
            cmd.args(["--log-format", "json"]);
        }
        cmd.args(metrics);
        cmd.env("RUST_LOG", "info");
        a.proc = Some(Proc::spawn(node, &mut cmd, Some(&log)));
    }

    /// SIGKILLs the agent of `node` (its instances keep running).
    pub fn kill_agent(&mut self, node: &str) {
        if let Some(a) = self.agents.get_mut(node)
            && let Some(mut p) = a.proc.take()
        {
            p.kill();
        }
    }

    /// The last lines of every log of the fleet, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut files: Vec<PathBuf> = walk(self.dir())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            out.push_str(&format!("\n===== {} =====\n{tail}\n", f.display()));
        }
        out
    }

    /// A ClusterService client.
    pub async fn clusters(&self) -> ClusterServiceClient<Channel> {
        self.try_clusters()
            .await
            .expect("connect to the control plane")
    }

    /// A gRPC channel to the control plane: the first replica that accepts a connection
    /// (`None`: none reachable now).
    pub async fn channel(&self) -> Option<Channel> {
        let mut c = flotilla_client::Connector::parse(&self.cp_addr)
            .ok()?
            .connect_timeout(Duration::from_secs(3));
        c.connect().await.ok().map(|c| c.channel)
    }

    async fn try_clusters(&self) -> Option<ClusterServiceClient<Channel>> {
        Some(ClusterServiceClient::new(self.channel().await?))
    }

    /// Creates a cluster through the API.
    /// Until a leader is elected the control plane answers NOT_LEADER, which applied
    /// nothing: that answer is retried, up to the fleet's wait.
    pub async fn create_cluster(&self, c: Cluster) -> Cluster {
        let req = flotilla_proto::v1::CreateClusterRequest {
            cluster: Some(c),
            request_id: String::new(),
            validate_only: false,
        };
        let deadline = tokio::time::Instant::now() + FLEET_WAIT;
        loop {
            match self.clusters().await.create_cluster(req.clone()).await {
                Ok(r) => return r.into_inner(),
                Err(s)
                    if s.code() == tonic::Code::Unavailable
                        && s.message() == "not the leader"
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => panic!("create cluster: {s:?}"),
            }
        }
    }

    /// Reads a cluster through the API.
    pub async fn get_cluster(&self, name: &str) -> Option<Cluster> {
        let mut c = self.try_clusters().await?;
        c.get_cluster(GetClusterRequest {
            name: name.to_string(),
        })
        .await
        .ok()
        .map(tonic::Response::into_inner)
    }

    /// Applies `edit` to the cluster's spec and updates it (etag-guarded), retrying on a
    /// concurrent status write.
    pub async fn update_cluster(&self, name: &str, edit: impl Fn(&mut ClusterSpec)) -> Cluster {
        for _ in 0..20 {
            let mut c = self.get_cluster(name).await.expect("cluster exists");
            if let Some(spec) = c.spec.as_mut() {
                edit(spec);
            }
            c.status = None;
            match self
                .clusters()
                .await
                .update_cluster(UpdateClusterRequest {
                    cluster: Some(c),
                    request_id: String::new(),
                    validate_only: false,
                    force: false,
                })
                .await
            {
                Ok(r) => return r.into_inner().cluster.expect("updated cluster"),
                Err(s) if s.code() == tonic::Code::Aborted => continue,
                Err(s) => panic!("update cluster: {s:?}"),
            }
        }
        panic!("update cluster {name}: the etag kept changing");
    }

    /// Waits until `pred` holds for the cluster; returns that cluster.
    pub async fn wait_cluster(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&Cluster) -> bool,
    ) -> Cluster {
        let pred = &pred;
        let r = wait_until(what, FLEET_WAIT, || async move {
            self.get_cluster(name).await.filter(|c| pred(c))
        })
        .await;
        match r {
            Ok(c) => c,
            Err(e) => {
                let now = self.get_cluster(name).await;
                panic!("{e}\ncluster now: {now:#?}\n{}", self.logs())
            }
        }
    }

    /// Waits until every agent of the fleet is connected (node Ready) and has heartbeated
    /// after `t`: proof that agents started after `t` have said Hello and reported.
    pub async fn wait_nodes_ready_since(&self, t: SystemTime) {
        let since = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let nodes: Vec<String> = self.agents.keys().cloned().collect();
        let nodes = &nodes;
        let r = wait_until(
            "nodes ready with fresh heartbeats",
            FLEET_WAIT,
            || async move {
                let mut client = NodeServiceClient::new(self.channel().await?);
                for n in nodes {
                    let node = client
                        .get_node(GetNodeRequest { name: n.clone() })
                        .await
                        .ok()?
                        .into_inner();
                    let st = node.status?;
                    let hb = st.last_heartbeat?;
                    let hb = hb.seconds as f64 + f64::from(hb.nanos) / 1e9;
                    if st.phase != NodePhase::Ready as i32 || hb <= since {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
        if let Err(e) = r {
            panic!("{e}\n{}", self.logs());
        }
    }

    /// Waits until the cluster is Running with every member ready.
    pub async fn wait_running(&self, name: &str) -> Cluster {
        self.wait_cluster(name, "cluster running", is_running).await
    }
}

/// Whether the cluster is Running, its status is current and every member is ready.
pub fn is_running(c: &Cluster) -> bool {
    let gen_ = c.metadata.as_ref().map(|m| m.generation).unwrap_or(-1);
    c.status.as_ref().is_some_and(|s| {
        s.phase == ClusterPhase::Running as i32
            && s.observed_generation == gen_
            && !s.members.is_empty()
            && s.members.iter().all(|m| m.ready && m.pid > 0)
    })
}

/// The members of a cluster's status.
pub fn members(c: &Cluster) -> Vec<Member> {
    c.status
        .as_ref()
        .map(|s| s.members.clone())
        .unwrap_or_default()
}

/// The broker members.
pub fn brokers(c: &Cluster) -> Vec<Member> {
    members(c)
        .into_iter()
        .filter(|m| m.kind == InstanceKind::Broker as i32)
        .collect()
}

/// Member name → pid.
pub fn pids(c: &Cluster) -> BTreeMap<String, i64> {
    members(c).into_iter().map(|m| (m.name, m.pid)).collect()
}

/// The nameserver list clients use (`a:1;b:2`).
pub fn namesrv_addr(c: &Cluster) -> String {
    c.status
        .as_ref()
        .map(|s| s.namesrv_addr.clone())
        .unwrap_or_default()
}

/// A cluster spec: `nameservers` nameservers and `groups` broker groups of `replicas` members
/// in `mode`, with `config` as broker config, spread over distinct nodes.
pub fn cluster(
    name: &str,
    nameservers: u32,
    groups: u32,
    replicas: u32,
    mode: BrokerMode,
    config: &[(&str, &str)],
) -> Cluster {
    Cluster {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            ..Default::default()
        }),
        spec: Some(ClusterSpec {
            nameserver: Some(NameServerSpec {
                replicas: nameservers,
                ..Default::default()
            }),
            broker: Some(BrokerSpec {
                groups,
                replicas_per_group: replicas,
                mode: mode as i32,
                config: crate::TEST_DISK_KEYS
                    .iter()
                    .chain(config)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            allow_restart: true,
            placement: Some(Placement {
                spread: Spread::Preferred as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn copy_logs(from: &Path, to: &Path) -> std::io::Result<()> {
    for f in walk(from) {
        if f.extension().is_some_and(|e| e == "log")
            && let Ok(rel) = f.strip_prefix(from)
        {
            let dest = to.join(rel);
            if let Some(d) = dest.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::copy(&f, &dest)?;
        }
    }
    Ok(())
}

/// Pids of processes whose working directory is inside `dir`.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// Whether a process with this pid is alive (and not a zombie).
pub fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::env::var_os("FLOTILLA_KEEP_TEST_DIRS").is_some() {
            let kept = self.dir.path().with_extension("kept");
            let _ = std::fs::remove_dir_all(&kept);
            let _ = copy_logs(self.dir.path(), &kept);
        }
        for a in self.agents.values_mut() {
            if let Some(mut p) = a.proc.take() {
                p.kill();
            }
        }
        for cp in &mut self.cps {
            if let Some(mut p) = cp.proc.take() {
                p.kill();
            }
        }
        for pid in processes_under(self.dir.path()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

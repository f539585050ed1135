//! Fleet benchmark: one `flotilla-cp` process (the real binary, embedded store in a temp
//! dir) and 1,000 fake agents from `flotilla_cp::testing` in this process, each on its own
//! gRPC connection over loopback, running 100 clusters.
//!
//! It reports:
//! - cold start: process start → leader → 1,000 agents registered → 100 clusters created →
//!   every node holds its desired state → every cluster reports Running;
//! - reconcile latency of one spec change (a broker config value), from the UpdateCluster
//!   call until every agent hosting the cluster's brokers holds the new config (p50/p99);
//! - warm restart: a new process on the same store → every reconnected agent holds its
//!   desired state under the new epoch;
//! - resident memory (VmRSS/VmHWM of the flotilla-cp process).
//!
//! `cargo bench -p flotilla-cp --bench fleet` (numbers in `control-plane/BENCHMARKS.md`).
//! `FLEET_AGENTS`, `FLEET_CLUSTERS` and `FLEET_CHANGES` shrink it for a quick run.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_cp::testing::{FakeAgent, FakeAgentOptions, channel, cluster};
use flotilla_proto::v1::{
    BrokerMode, ClusterPhase, CordonNodeRequest, CreateClusterRequest, GetClusterRequest,
    ListClustersRequest, UpdateClusterRequest, cluster_service_client::ClusterServiceClient,
    node_service_client::NodeServiceClient,
};
use futures::{StreamExt, TryStreamExt};
use tonic::Code;

/// Instances per cluster: 1 nameserver + 3 groups × 3 replicas.
const NAMESRVS: u32 = 1;
const GROUPS: u32 = 3;
const PER_GROUP: u32 = 3;
/// Anything the benchmark waits on must happen within this (a hang guard).
const PATIENCE: Duration = Duration::from_secs(300);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

/// Reads `Max open files` (soft) from /proc/self/limits.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// (VmRSS, VmHWM) of `pid` in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn spawn_cp(dir: &std::path::Path, addr: SocketAddr) -> anyhow::Result<Child> {
    Command::new(env!("CARGO_BIN_EXE_flotilla-cp"))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--store")
        .arg(format!("embedded:{}", dir.display()))
        .args(["--advertise", "bench-cp"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning flotilla-cp")
}

/// Stops the process with SIGTERM (graceful: resign, close sessions) and waits.
fn stop_cp(child: &mut Child) -> anyhow::Result<()> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    child.wait()?;
    Ok(())
}

/// Waits until the control plane at `addr` leads: a write to an unknown node is NOT_FOUND
/// (a follower or a process not yet serving answers UNAVAILABLE).
async fn wait_leader(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    let mut nodes = NodeServiceClient::new(channel(addr));
    loop {
        let r = nodes
            .cordon_node(CordonNodeRequest {
                name: "leader-probe".into(),
                request_id: String::new(),
            })
            .await;
        if matches!(&r, Err(s) if s.code() == Code::NotFound) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no leader: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect_agents(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<FakeAgent>> {
    let mut agents: Vec<FakeAgent> = futures::stream::iter(0..n)
        .map(|i| async move {
            // One connection per agent, as with real agents on separate machines.
            let mut opts = FakeAgentOptions::new(&format!("node-{i:04}"));
            opts.report_interval = Duration::from_secs(5);
            let a = FakeAgent::connect(channel(addr), opts)
                .await
                .with_context(|| format!("agent {i}"))?;
            a.wait_desired(PATIENCE, |_| true)
                .await
                .with_context(|| format!("agent {i}: no first desired state"))?;
            anyhow::Ok(a)
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    agents.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(agents)
}

fn held_instances(agents: &[FakeAgent]) -> usize {
    agents
        .iter()
        .map(|a| a.desired().map_or(0, |d| d.instances.len()))
        .sum()
}

async fn wait_for<F: FnMut() -> bool>(what: &str, mut f: F) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn all_running(
    clusters: &mut ClusterServiceClient<tonic::transport::Channel>,
    n: usize,
) -> bool {
    match clusters
        .list_clusters(ListClustersRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            r.clusters.len() == n
                && r.clusters.iter().all(|c| {
                    c.status
                        .as_ref()
                        .is_some_and(|s| s.phase == ClusterPhase::Running as i32)
                })
        }
        Err(_) => false,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn run() -> anyhow::Result<()> {
    let n_agents = env_or("FLEET_AGENTS", 1000);
    let n_clusters = env_or("FLEET_CLUSTERS", 100);
    let n_changes = env_or("FLEET_CHANGES", 50);
    let per_cluster = usize::try_from(NAMESRVS + GROUPS * PER_GROUP)?;
    let expected = n_clusters * per_cluster;
    // Each agent is one connection: one fd here and one in flotilla-cp.
    let limit = open_files_limit().unwrap_or(0);
    println!("open files limit (soft): {limit}");
    if limit < (n_agents as u64) + 512 {
        bail!(
            "RLIMIT_NOFILE {limit} is too low for {n_agents} agents; raise it (ulimit -n {})",
            n_agents + 1024
        );
    }
    let dir = tempfile::Builder::new().prefix("fleet-bench-").tempdir()?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;

    // ===== cold start =====
    let t0 = Instant::now();
    let mut child = spawn_cp(dir.path(), addr)?;
    let pid = child.id();
    wait_leader(addr).await?;
    let t_leader = t0.elapsed();
    let agents = connect_agents(addr, n_agents).await?;
    let t_agents = t0.elapsed();
    let mut clusters = ClusterServiceClient::new(channel(addr));
    let names: Vec<String> = (0..n_clusters).map(|i| format!("c{i:03}")).collect();
    futures::stream::iter(names.clone())
        .map(|name| {
            let mut c = clusters.clone();
            async move {
                c.create_cluster(CreateClusterRequest {
                    cluster: Some(cluster(
                        &name,
                        NAMESRVS,
                        GROUPS,
                        PER_GROUP,
                        BrokerMode::MasterSlave,
                    )),
                    request_id: format!("create-{name}"),
                    validate_only: false,
                })
                .await
                .with_context(|| format!("create {name}"))
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let t_created = t0.elapsed();
    wait_for("every node to hold its desired state", || {
        held_instances(&agents) == expected
    })
    .await?;
    let t_desired = t0.elapsed();
    let deadline = Instant::now() + PATIENCE;
    while !all_running(&mut clusters, n_clusters).await {
        if Instant::now() > deadline {
            bail!("clusters not Running");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t_running = t0.elapsed();
    let (rss_cold, _) = memory_mib(pid);

    // ===== one spec change at a time =====
    let mut lat = Vec::with_capacity(n_changes);
    for k in 0..n_changes {
        let name = &names[(k * 37) % n_clusters];
        let value = (100 + k).to_string();
        let hosts: Vec<&FakeAgent> = agents
            .iter()
            .filter(|a| {
                a.desired()
                    .is_some_and(|d| d.instances.iter().any(|i| i.cluster == *name))
            })
            .collect();
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut c = clusters
                .get_cluster(GetClusterRequest { name: name.clone() })
                .await?
                .into_inner();
            if let Some(m) = c.metadata.as_mut() {
                m.etag.clear();
            }
            if let Some(b) = c.spec.as_mut().and_then(|s| s.broker.as_mut()) {
                b.config.insert("fileReservedTime".into(), value.clone());
            }
            match clusters
                .update_cluster(UpdateClusterRequest {
                    cluster: Some(c),
                    request_id: String::new(),
                    validate_only: false,
                    force: false,
                })
                .await
            {
                Ok(_) => break,
                Err(s) if s.code() == Code::Aborted && attempts < 50 => continue,
                Err(s) => bail!("update {name}: {s}"),
            }
        }
        let waits = hosts.iter().map(|a| {
            let (name, value) = (name.clone(), value.clone());
            a.wait_desired(PATIENCE, move |d| {
                d.instances
                    .iter()
                    .filter(|i| i.cluster == name && i.config.contains_key("brokerName"))
                    .all(|i| i.config.get("fileReservedTime") == Some(&value))
            })
        });
        let got = futures::future::join_all(waits).await;
        if got.iter().any(Option::is_none) {
            bail!("change {k} of {name} did not reach every host");
        }
        lat.push(started.elapsed());
    }
    lat.sort();
    let (rss_after_changes, hwm) = memory_mib(pid);

    // ===== warm restart =====
    let old_epoch = agents
        .iter()
        .map(FakeAgent::highest_epoch)
        .max()
        .unwrap_or(0);
    stop_cp(&mut child)?;
    drop(agents);
    let t1 = Instant::now();
    let mut child = spawn_cp(dir.path(), addr)?;
    let pid2 = child.id();
    wait_leader(addr).await?;
    let t2_leader = t1.elapsed();
    let agents = connect_agents(addr, n_agents).await?;
    wait_for("every reconnected node to hold its desired state", || {
        held_instances(&agents) == expected
            && agents
                .iter()
                .all(|a| a.desired().is_some_and(|d| d.epoch > old_epoch))
    })
    .await?;
    let t2_desired = t1.elapsed();
    let (rss_warm, hwm_warm) = memory_mib(pid2);
    stop_cp(&mut child)?;

    println!(
        "fleet: {n_agents} agents (one gRPC connection each), {n_clusters} clusters × {per_cluster} instances = {expected}"
    );
    println!("cold start:");
    println!("  leader elected            {}", ms(t_leader));
    println!("  all agents registered     {}", ms(t_agents));
    println!("  all clusters created      {}", ms(t_created));
    println!("  every node holds desired  {}", ms(t_desired));
    println!("  every cluster Running     {}", ms(t_running));
    println!(
        "spec change → every host holds it ({} changes, sequential): p50 {}  p99 {}  max {}",
        lat.len(),
        ms(percentile(&lat, 50.0)),
        ms(percentile(&lat, 99.0)),
        ms(lat.last().copied().unwrap_or_default())
    );
    println!("warm restart (same store, agents reconnect):");
    println!("  leader elected            {}", ms(t2_leader));
    println!("  every node holds desired  {}", ms(t2_desired));
    println!("flotilla-cp memory:");
    println!("  VmRSS after cold start    {rss_cold:.1} MiB");
    println!("  VmRSS after changes       {rss_after_changes:.1} MiB (peak VmHWM {hwm:.1} MiB)");
    println!("  VmRSS after warm restart  {rss_warm:.1} MiB (peak VmHWM {hwm_warm:.1} MiB)");
    Ok(())
}

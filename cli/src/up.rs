//! `flotilla up`: a whole Flotilla on one machine with one command.
//!
//! It starts the control plane on the embedded store (`<data-dir>/cp`), three agents as
//! separate processes (node-a, node-b, node-c, each with its own data dir and its own loopback
//! address 127.0.0.1/2/3, so the same ports on different "nodes" never collide), and a default
//! cluster (one nameserver, one broker group: a 3-member DLedger group, or with
//! `--mode master-slave` one master and one slave, or with `--mode single` one broker). It
//! waits until the cluster is Ready, prints the nameserver address and how to produce, and
//! runs until SIGINT/SIGTERM. Then it stops the agents (which stop their instances) and the
//! control plane, in that order.
//!
//! "Flotilla is up" is printed only when the cluster's `Ready` condition is True by the one
//! readiness rule (`flotilla_cp::reconcile::readiness`): every group has exactly one writable
//! master registered as brokerId 0 with every nameserver and caught-up replicas. Before that a
//! client's first send would fail with "route not exist".
//!
//! Everything lives under the data dir (default `./flotilla-data`), including the ports chosen
//! on the first run (`up.json`), so running `flotilla up` again resumes the same cluster.
//!
//! Process lifecycle: children run in their own process groups, so a terminal's Ctrl-C
//! reaches only this command, which then shuts them down in order (agents, which stop their
//! instances, then the control plane), each within a bounded grace. SIGINT, SIGTERM and
//! SIGHUP (the terminal closed) all do that. If this command is killed outright (SIGKILL),
//! the kernel sends each child SIGTERM (`PR_SET_PDEATHSIG`), and the agents, started with
//! `--stop-instances-on-exit`, stop their brokers and nameserver: nothing is left behind.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla_proto::v1::{Cluster, ConditionStatus, GetClusterRequest};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::apply::{self, ClusterFile, ResourcesFile, StorageFile};

/// `flotilla up` failed.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// A binary next to `flotilla` is missing.
    #[error("{0} not found (build it with `cargo build --bins`)")]
    MissingBinary(PathBuf),
    /// A child process exited early.
    #[error("{0} exited unexpectedly; see its log {1}")]
    ChildExited(String, PathBuf),
    /// The cluster did not become ready in time.
    #[error("the cluster was not ready after {0:?}")]
    NotReady(Duration),
}

impl UpError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingBinary(_) => "UP_MISSING_BINARY",
            Self::ChildExited(..) => "UP_CHILD_EXITED",
            Self::NotReady(_) => "UP_NOT_READY",
        }
    }
}

/// Broker layout of the default cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpMode {
    /// One DLedger (Raft) group of three members.
    Dledger,
    /// One master and one slave.
    MasterSlave,
    /// One broker (master only).
    Single,
}

impl std::fmt::Display for UpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Dledger => "one DLedger group of three",
            Self::MasterSlave => "one master and one slave",
            Self::Single => "one broker",
        })
    }
}

/// Flags of `flotilla up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Where everything is kept; running again with the same dir resumes the cluster.
    #[arg(long, default_value = "./flotilla-data")]
    pub data_dir: PathBuf,
    /// Broker layout of the default cluster (first run only; later runs keep the cluster).
    #[arg(long, value_enum, default_value = "dledger", env = "FLOTILLA_UP_MODE")]
    pub mode: UpMode,
    /// Cluster name.
    #[arg(long, default_value = "flotilla")]
    pub cluster: String,
    /// Control-plane listen address (default 127.0.0.1:7443, or a free port if taken).
    #[arg(long)]
    pub cp_listen: Option<String>,
    /// Nameserver port (default 9876, or a free port if taken).
    #[arg(long)]
    pub namesrv_port: Option<u16>,
    /// Broker base port (default 10911, or a free port if taken).
    #[arg(long)]
    pub broker_port: Option<u16>,
    /// Directory holding flotilla-cp, flotilla-agent, flotilla-broker, flotilla-namesrv
    /// (default: the directory of this `flotilla`).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// How long to wait for the cluster to become ready.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    pub ready_timeout: Duration,
}

/// What the first run chose, kept in `<data-dir>/up.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpState {
    /// Layout version.
    pub version: u32,
    /// Control-plane listen address.
    pub cp_listen: String,
    /// Nameserver port.
    pub namesrv_port: u16,
    /// Broker base port.
    pub broker_port: u16,
    /// Cluster name.
    pub cluster: String,
    /// Broker layout.
    pub mode: UpMode,
}

/// The processes of a running `flotilla up`, in `<data-dir>/run.json` (for tools and tests).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RunState {
    /// pid of flotilla-cp.
    pub cp_pid: u32,
    /// node id → agent pid.
    pub agent_pids: Vec<(String, u32)>,
}

/// Node ids and their loopback addresses.
pub const NODES: [(&str, &str); 3] = [
    ("node-a", "127.0.0.1"),
    ("node-b", "127.0.0.2"),
    ("node-c", "127.0.0.3"),
];

fn bindable(ip: &str, port: u16) -> bool {
    TcpListener::bind((ip, port)).is_ok()
}

fn free_port(ip: &str) -> anyhow::Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

fn port_free_everywhere(ports: &[u16]) -> bool {
    NODES
        .iter()
        .all(|(_, ip)| ports.iter().all(|p| bindable(ip, *p)))
}

fn pick_namesrv_port() -> anyhow::Result<u16> {
    if port_free_everywhere(&[9876]) {
        return Ok(9876);
    }
    for _ in 0..100 {
        let p = free_port("127.0.0.1")?;
        if port_free_everywhere(&[p]) {
            return Ok(p);
        }
    }
    anyhow::bail!("no free nameserver port")
}

fn pick_broker_port() -> anyhow::Result<u16> {
    let block = |p: u16| [p - 2, p - 1, p, p + 1];
    if port_free_everywhere(&block(10911)) {
        return Ok(10911);
    }
    for _ in 0..200 {
        let p = free_port("127.0.0.1")?;
        if p > 3 && p < u16::MAX - 2 && port_free_everywhere(&block(p)) {
            return Ok(p);
        }
    }
    anyhow::bail!("no free broker port block")
}

fn load_or_choose(args: &UpArgs, data: &Path) -> anyhow::Result<UpState> {
    let path = data.join("up.json");
    let prev: Option<UpState> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let st = match prev {
        Some(mut p) => {
            if let Some(l) = &args.cp_listen {
                p.cp_listen = l.clone();
            }
            if let Some(n) = args.namesrv_port {
                p.namesrv_port = n;
            }
            if let Some(b) = args.broker_port {
                p.broker_port = b;
            }
            p
        }
        None => {
            let cp_listen = match &args.cp_listen {
                Some(l) => l.clone(),
                None if bindable("127.0.0.1", 7443) => "127.0.0.1:7443".to_string(),
                None => format!("127.0.0.1:{}", free_port("127.0.0.1")?),
            };
            UpState {
                version: 1,
                cp_listen,
                namesrv_port: match args.namesrv_port {
                    Some(p) => p,
                    None => pick_namesrv_port()?,
                },
                broker_port: match args.broker_port {
                    Some(p) => p,
                    None => pick_broker_port()?,
                },
                cluster: args.cluster.clone(),
                mode: args.mode,
            }
        }
    };
    std::fs::write(&path, serde_json::to_vec_pretty(&st)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(st)
}

/// The default cluster of `flotilla up`.
pub fn default_cluster(st: &UpState) -> anyhow::Result<Cluster> {
    let (mode, replicas) = match st.mode {
        UpMode::Dledger => ("dledger", 3),
        UpMode::MasterSlave => ("master-slave", 2),
        UpMode::Single => ("master-slave", 1),
    };
    let f = ClusterFile {
        name: st.cluster.clone(),
        nameservers: 1,
        nameserver_port: u32::from(st.namesrv_port),
        groups: 1,
        replicas_per_group: replicas,
        mode: mode.to_string(),
        master_role: String::new(),
        in_sync_replicas: 0,
        broker_port: u32::from(st.broker_port),
        config: [("autoCreateTopicEnable".to_string(), "true".to_string())]
            .into_iter()
            .collect(),
        allow_restart: true,
        spread: "required".to_string(),
        storage: StorageFile::default(),
        resources: ResourcesFile::default(),
        labels: Default::default(),
        version: String::new(),
        console: None,
    };
    Ok(f.to_cluster()?)
}

struct Managed {
    name: String,
    child: Child,
    log: PathBuf,
}

fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> anyhow::Result<Managed> {
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Managed {
        name: name.to_string(),
        child,
        log: log.to_path_buf(),
    })
}

/// Makes the child receive SIGTERM when this process dies, however it dies.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits; `flotilla up` spawns from
/// the runtime's main thread (`block_on`), which lives as long as the process. A parent that
/// died between fork and `prctl` is caught by comparing the parent pid afterwards.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec. It only makes two system
    // calls (prctl, getppid), which are async-signal-safe; it allocates nothing and takes no
    // lock, so it cannot deadlock on state copied from the parent's other threads.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            if nix::unistd::getppid() != parent {
                // ESRCH: the parent is already gone.
                return Err(std::io::Error::from_raw_os_error(
                    nix::errno::Errno::ESRCH as i32,
                ));
            }
            Ok(())
        });
    }
}

async fn stop(m: &mut Managed, grace: Duration) {
    if let Ok(Some(_)) = m.child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(m.child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = m.child.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{} did not stop in {grace:?}: killing it", m.name);
    let _ = m.child.kill();
    let _ = m.child.wait();
}

/// The cluster's `Ready` condition, for the generation just applied: the one readiness rule
/// folded by the control plane (a writable brokerId 0 registered with every nameserver in
/// every group). Neither "processes started" nor the phase alone.
fn cluster_ready(c: &Cluster) -> bool {
    let Some(st) = &c.status else {
        return false;
    };
    let generation = c.metadata.as_ref().map(|m| m.generation).unwrap_or(0);
    st.observed_generation >= generation
        && st
            .conditions
            .iter()
            .any(|k| k.r#type == "Ready" && k.status == ConditionStatus::True as i32)
}

async fn wait_ready(
    server: &str,
    name: &str,
    children: &mut [Managed],
    timeout: Duration,
) -> anyhow::Result<Cluster> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if let Some(e) = exited_child(children) {
            anyhow::bail!(e);
        }
        if let Ok(mut client) = crate::client::clusters(server).await
            && let Ok(resp) = client
                .get_cluster(GetClusterRequest {
                    name: name.to_string(),
                })
                .await
        {
            let c = resp.into_inner();
            let line = crate::get::cluster_line(&c);
            if line != last {
                println!("  {line}");
                last = line;
            }
            if cluster_ready(&c) {
                return Ok(c);
            }
        }
        if Instant::now() >= deadline {
            anyhow::bail!(UpError::NotReady(timeout));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_for_port(addr: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn ensure_cluster(server: &str, st: &UpState) -> anyhow::Result<()> {
    let mut client = crate::client::clusters(server).await?;
    match client
        .get_cluster(GetClusterRequest {
            name: st.cluster.clone(),
        })
        .await
    {
        Ok(_) => {
            println!("Resuming cluster {:?}.", st.cluster);
            Ok(())
        }
        Err(s) if s.code() == tonic::Code::NotFound => {
            apply::apply(server, default_cluster(st)?).await?;
            println!("Created cluster {:?} ({:?}).", st.cluster, st.mode);
            Ok(())
        }
        Err(s) => Err(s.into()),
    }
}

/// The signals that stop `flotilla up`: SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal
/// closed). Installed before any child starts, so none of them can kill this process
/// before it has stopped its children.
struct ShutdownSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    /// Waits for the first of them; returns its name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

async fn stop_all(cp: &mut Managed, agents: &mut [Managed]) {
    println!("Stopping: agents (and their instances), then the control plane…");
    for a in agents.iter() {
        if let Ok(pid) = i32::try_from(a.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for a in agents.iter_mut() {
        stop(a, Duration::from_secs(60)).await;
    }
    stop(cp, Duration::from_secs(20)).await;
}

fn print_banner(st: &UpState, c: &Cluster, data: &Path, flotilla: &Path) {
    let status = c.status.clone().unwrap_or_default();
    let namesrv = if status.namesrv_addr.is_empty() {
        format!("127.0.0.1:{}", st.namesrv_port)
    } else {
        status.namesrv_addr.clone()
    };
    // The writable master the readiness rule found (the elected leader for DLedger).
    let master = status
        .groups
        .iter()
        .find(|g| g.ready)
        .and_then(|g| status.members.iter().find(|m| m.name == g.master))
        .map(|m| m.address.clone())
        .unwrap_or_default();
    let exe = flotilla.display();
    println!();
    println!("Flotilla is up: cluster {:?} ({}).", st.cluster, st.mode);
    println!("  nameserver     {namesrv}");
    println!("  control plane  {}", st.cp_listen);
    println!("  data           {}", data.display());
    println!();
    println!(
        "Point any RocketMQ client at namesrvAddr={namesrv}; topics are created on first send."
    );
    if !master.is_empty() {
        println!("Produce 10000 messages to the writable master now:");
        println!("  {exe} bench --broker {master} --messages 10000");
    }
    println!("Watch the members (roles, ids, readiness, offsets):");
    println!(
        "  {exe} get members {} --server {}",
        st.cluster, st.cp_listen
    );
    println!();
    println!("Press Ctrl-C to stop. Run `flotilla up` again to resume this cluster.");
}

/// Runs `flotilla up`.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let data = if args.data_dir.is_absolute() {
        args.data_dir.clone()
    } else {
        std::env::current_dir()?.join(&args.data_dir)
    };
    std::fs::create_dir_all(&data)?;
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    for b in [
        "flotilla-cp",
        "flotilla-agent",
        "flotilla-broker",
        "flotilla-namesrv",
    ] {
        let p = bin_dir.join(b);
        if !p.exists() {
            anyhow::bail!(UpError::MissingBinary(p));
        }
    }
    let st = load_or_choose(&args, &data)?;
    let logs = data.join("logs");
    let mut signals = ShutdownSignals::install()?;
    let flotilla = std::env::current_exe()?;
    let mut cp = spawn(
        "flotilla-cp",
        &bin_dir.join("flotilla-cp"),
        &[
            "--listen".into(),
            st.cp_listen.clone(),
            "--store".into(),
            format!("embedded:{}", data.join("cp").display()),
            // One machine, loopback only; TLS for `up` is still to come (issue #19).
            "--insecure".into(),
        ],
        &logs.join("cp.log"),
    )?;
    let mut agents = Vec::new();
    for (node, ip) in NODES {
        let a = spawn(
            node,
            &bin_dir.join("flotilla-agent"),
            &[
                "--control-plane".into(),
                st.cp_listen.clone(),
                "--node-id".into(),
                node.into(),
                "--data-dir".into(),
                data.join(node).display().to_string(),
                "--advertise-address".into(),
                ip.into(),
                "--bin-dir".into(),
                bin_dir.display().to_string(),
                "--stop-instances-on-exit".into(),
                "--insecure".into(),
            ],
            &logs.join(format!("{node}.log")),
        );
        match a {
            Ok(a) => agents.push(a),
            Err(e) => {
                stop_all(&mut cp, &mut agents).await;
                return Err(e);
            }
        }
    }
    let run_state = RunState {
        cp_pid: cp.child.id(),
        agent_pids: agents
            .iter()
            .map(|a| (a.name.clone(), a.child.id()))
            .collect(),
    };
    let _ = std::fs::write(
        data.join("run.json"),
        serde_json::to_vec_pretty(&run_state)?,
    );
    println!(
        "Started flotilla-cp ({}) and agents node-a, node-b, node-c; logs in {}",
        st.cp_listen,
        logs.display()
    );

    let mut all: Vec<Managed> = Vec::new();
    all.push(cp);
    all.append(&mut agents);
    // Everything up does until it is stopped: only an error ends it on its own.
    let work = async {
        if !wait_for_port(&st.cp_listen, Duration::from_secs(30)).await {
            anyhow::bail!(UpError::ChildExited(
                "flotilla-cp".into(),
                logs.join("cp.log")
            ));
        }
        ensure_cluster(&st.cp_listen, &st).await?;
        println!(
            "Waiting for the cluster to become ready (a writable master registered with every nameserver)…"
        );
        let c = wait_ready(&st.cp_listen, &st.cluster, &mut all, args.ready_timeout).await?;
        print_banner(&st, &c, &data, &flotilla);
        Err(child_exit(&mut all).await.into())
    };
    let result = tokio::select! {
        r = work => r,
        sig = signals.recv() => {
            println!("{sig} received.");
            Ok(())
        }
    };
    let mut cp = all.remove(0);
    stop_all(&mut cp, &mut all).await;
    let _ = std::fs::remove_file(data.join("run.json"));
    println!("Stopped.");
    result
}

/// The first child that has exited, as the error `up` stops with.
fn exited_child(children: &mut [Managed]) -> Option<UpError> {
    children.iter_mut().find_map(|c| match c.child.try_wait() {
        Ok(Some(status)) => Some(UpError::ChildExited(
            format!("{} ({status})", c.name),
            c.log.clone(),
        )),
        _ => None,
    })
}

/// Resolves when any child exits on its own (after "is up"): the whole `up` then stops
/// rather than run on half-dead.
async fn child_exit(children: &mut [Managed]) -> UpError {
    loop {
        if let Some(e) = exited_child(children) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cluster_per_mode() {
        let mut st = UpState {
            version: 1,
            cp_listen: "127.0.0.1:7443".into(),
            namesrv_port: 9876,
            broker_port: 10911,
            cluster: "flotilla".into(),
            mode: UpMode::Dledger,
        };
        let c = default_cluster(&st).unwrap();
        let b = c.spec.as_ref().unwrap().broker.clone().unwrap();
        assert_eq!((b.groups, b.replicas_per_group), (1, 3));
        st.mode = UpMode::MasterSlave;
        let b = default_cluster(&st).unwrap().spec.unwrap().broker.unwrap();
        assert_eq!(b.replicas_per_group, 2);
        assert_eq!(b.mode, flotilla_proto::v1::BrokerMode::MasterSlave as i32);
        st.mode = UpMode::Single;
        let c = default_cluster(&st).unwrap();
        assert_eq!(c.spec.unwrap().broker.unwrap().replicas_per_group, 1);
    }

    #[test]
    fn state_is_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let args = UpArgs {
            data_dir: tmp.path().to_path_buf(),
            mode: UpMode::Single,
            cluster: "c".into(),
            cp_listen: Some("127.0.0.1:1".into()),
            namesrv_port: Some(2),
            broker_port: Some(5),
            bin_dir: None,
            ready_timeout: Duration::from_secs(1),
        };
        let a = load_or_choose(&args, tmp.path()).unwrap();
        let again = UpArgs {
            cp_listen: None,
            namesrv_port: None,
            broker_port: None,
            mode: UpMode::Dledger,
            ..args
        };
        let b = load_or_choose(&again, tmp.path()).unwrap();
        assert_eq!(a, b);
    }
}

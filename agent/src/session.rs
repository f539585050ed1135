//! The agent's session with the control plane, and the agent's top-level run loop.
//!
//! The agent dials the control plane (so nodes behind NAT work) and holds one bidirectional
//! `AgentService.Connect` stream: `Hello` first (with the inventory of what already runs here),
//! then `Report`s every few seconds and on every observed change, and a `CommandResult` per
//! command. From the control plane come whole `DesiredState`s, applied by the supervisor,
//! and `Command`s, executed one at a time against local instances. Both are fenced by epoch.
//!
//! The agent is given a list of control-plane addresses (or a DNS name with several
//! records); any replica will do, since followers forward the stream to the leader. When a
//! session breaks or is refused, the agent tries the next address at once; after every
//! address failed once it waits a jittered exponential backoff (capped at 3 s, so agents
//! find a new leader within seconds of its election). In between
//! it keeps supervising the last desired state (restarting crashed processes, starting or
//! stopping nothing new), because `apply` is only ever called with a state received on a live
//! stream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use flotilla_proto::agent::v1::agent_message::Message as Out;
use flotilla_proto::agent::v1::agent_service_client::AgentServiceClient;
use flotilla_proto::agent::v1::control_message::Message as In;
use flotilla_proto::agent::v1::{
    AgentMessage, Command, CommandError, CommandResult, DesiredState, Hello, Report,
};
use flotilla_proto::v1::{Capacity, NodeTopology};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, info, info_span, warn};

use crate::commands;
use crate::epoch::EpochGuard;
use crate::journal::{self, Journal};
use crate::state::{AGENT_RECORD_VERSION, AgentRecord, StateDir, proto_to_hex};
use crate::supervisor::backoff::Backoff;
use crate::supervisor::{Supervisor, SupervisorConfig};
use flotilla_client::{Connected, Connector};

/// A session open at least this long counts as healthy: when it breaks, every address gets
/// an immediate try again.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// The agent version sent in Hello.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Starting or running the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The control-plane address is not a valid URI.
    #[error("invalid control-plane address {0:?}")]
    BadAddress(String),
    /// No control-plane address accepted a connection.
    #[error("cannot reach the control plane: {0}")]
    Connect(String),
    /// A replica accepted the connection but not the session (no leader yet, the leader
    /// unreachable from it, …).
    #[error("the control plane refused the session: {0}")]
    Refused(String),
    /// The stream broke.
    #[error("stream to the control plane broke: {0}")]
    Stream(String),
    /// Persisted agent state could not be loaded.
    #[error("agent state: {0}")]
    State(String),
}

impl SessionError {
    /// Whether the session had been established (the control plane had spoken) before it
    /// ended: a broken session is retried at once, a refused one counts against the round.
    pub fn opened(&self) -> bool {
        matches!(self, Self::Stream(_))
    }

    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadAddress(_) => "AGENT_BAD_CONTROL_PLANE_ADDRESS",
            Self::Connect(_) => "AGENT_CONNECT_FAILED",
            Self::Refused(_) => "AGENT_SESSION_REFUSED",
            Self::Stream(_) => "AGENT_STREAM_BROKEN",
            Self::State(_) => "AGENT_STATE",
        }
    }
}

/// Agent settings (the command-line flags).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Control-plane addresses: a comma-separated list of `host:port` or URLs; a DNS name
    /// that resolves to several addresses counts as each of them (`flotilla_client`).
    pub control_plane: String,
    /// Node name.
    pub node_id: String,
    /// Data dir.
    pub data_dir: PathBuf,
    /// Address others reach this node on.
    pub advertise_address: String,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Where flotilla-broker and flotilla-namesrv live.
    pub bin_dir: PathBuf,
    /// Period of reports.
    pub report_interval: Duration,
    /// Period of supervision rounds.
    pub tick_interval: Duration,
    /// Stop every instance when the agent is asked to exit (`flotilla up`); by default
    /// instances outlive the agent.
    pub stop_instances_on_exit: bool,
    /// TLS towards the control plane: its CA and this node's certificate (whose identity
    /// must be `flotilla://agent/<node_id>`). `None` is plaintext (`--insecure`).
    pub tls: Option<flotilla_client::ClientTls>,
}

/// The running agent.
pub struct Agent {
    cfg: AgentConfig,
    connector: Mutex<Connector>,
    sup: Arc<Mutex<Supervisor>>,
    epoch: Arc<parking_lot::Mutex<EpochGuard>>,
    journal: Arc<Mutex<Journal>>,
    state: StateDir,
    applied_generation: AtomicI64,
    seq: AtomicU64,
    boot_id: String,
    /// Where the node is, once known (on Kubernetes, from its Node: [`crate::kube`]).
    topology: parking_lot::Mutex<Option<NodeTopology>>,
    /// Whether a session with the control plane is open (the health service's readiness).
    session_open: watch::Sender<bool>,
    /// Prometheus metrics.
    metrics: crate::metrics::AgentMetrics,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn capacity(data_dir: &std::path::Path) -> Capacity {
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let disk_free_bytes = nix::sys::statvfs::statvfs(data_dir)
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
        .unwrap_or(0);
    Capacity {
        memory_mib,
        cpu_millis: u32::try_from(cpus * 1000).unwrap_or(u32::MAX),
        disk_free_bytes,
    }
}

fn now_timestamp() -> prost_types::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

impl Agent {
    /// Loads persisted state and re-adopts running instances.
    pub fn new(cfg: AgentConfig) -> Result<Arc<Self>, SessionError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| SessionError::State(format!("{}: {e}", cfg.data_dir.display())))?;
        let state = StateDir::new(cfg.data_dir.clone());
        let rec = state
            .load_agent()
            .map_err(|e| SessionError::State(e.to_string()))?;
        let epoch =
            EpochGuard::load(&cfg.data_dir).map_err(|e| SessionError::State(e.to_string()))?;
        let journal = Journal::open(&cfg.data_dir, journal::DEFAULT_CAPACITY)
            .map_err(|e| SessionError::State(e.to_string()))?;
        let mut sup = Supervisor::new(
            SupervisorConfig::new(
                cfg.data_dir.clone(),
                cfg.bin_dir.clone(),
                cfg.node_id.clone(),
            ),
            flotilla_remoting::RemotingClient::default(),
        );
        sup.recover();
        let connector = Connector::parse(&cfg.control_plane)
            .map_err(|e| SessionError::BadAddress(e.to_string()))?
            .tls(cfg.tls.clone());
        Ok(Arc::new(Self {
            connector: Mutex::new(connector),
            applied_generation: AtomicI64::new(rec.applied_generation),
            cfg,
            sup: Arc::new(Mutex::new(sup)),
            epoch: Arc::new(parking_lot::Mutex::new(epoch)),
            journal: Arc::new(Mutex::new(journal)),
            state,
            seq: AtomicU64::new(0),
            boot_id: boot_id(),
            topology: parking_lot::Mutex::new(None),
            session_open: watch::Sender::new(false),
            metrics: crate::metrics::AgentMetrics::default(),
        }))
    }

    /// The agent's Prometheus metrics (served by `--metrics-listen`).
    pub fn metrics(&self) -> crate::metrics::AgentMetrics {
        self.metrics.clone()
    }

    /// Runs until `shutdown` turns true: supervision rounds plus the control-plane session
    /// (reconnecting with backoff).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let ticker = {
            let me = self.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let mut iv = tokio::time::interval(me.cfg.tick_interval);
                loop {
                    tokio::select! {
                        _ = iv.tick() => {
                            let mut sup = me.sup.lock().await;
                            sup.tick().await;
                            me.metrics.observe_instances(&sup.observations());
                        }
                        _ = stop.changed() => if *stop.borrow() { break },
                    }
                }
            })
        };
        // Capped low: after a leader dies, agents must find the new one within seconds.
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(3));
        // Sessions that failed since the last backoff: every address gets one immediate try
        // before the agent waits.
        let mut failed_in_round = 0usize;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let started = tokio::time::Instant::now();
            match self.clone().session(&mut shutdown, &mut backoff).await {
                Ok(()) => {}
                Err(e) => {
                    warn!(error = %e, code = e.code(), "session ended");
                    self.connector.lock().await.failed();
                    // A session that ran for a while starts a new round; one that broke at
                    // once counts against it, so a flapping replica still meets the backoff.
                    if e.opened() && started.elapsed() >= STABLE_SESSION {
                        failed_in_round = 0;
                    }
                    failed_in_round += 1;
                }
            }
            if *shutdown.borrow() {
                break;
            }
            let addresses = self.connector.lock().await.len();
            if failed_in_round < addresses {
                continue;
            }
            failed_in_round = 0;
            let delay = backoff.next_delay();
            info!(?delay, "reconnecting to the control plane");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => {}
            }
        }
        ticker.abort();
        if self.cfg.stop_instances_on_exit {
            info!("stopping every instance before exit");
            self.sup
                .lock()
                .await
                .stop_all(Duration::from_secs(30))
                .await;
        }
    }

    async fn hello(&self) -> Hello {
        let inventory = self.sup.lock().await.observations();
        Hello {
            node_id: self.cfg.node_id.clone(),
            boot_id: self.boot_id.clone(),
            agent_version: AGENT_VERSION.to_string(),
            advertise_address: self.cfg.advertise_address.clone(),
            capacity: Some(capacity(&self.cfg.data_dir)),
            labels: self.cfg.labels.clone().into_iter().collect(),
            inventory,
            highest_epoch_seen: self.epoch.lock().highest(),
            applied_generation: self.applied_generation.load(Ordering::SeqCst),
            data_dir: self.cfg.data_dir.display().to_string(),
            topology: self.topology.lock().clone(),
        }
    }

    /// Follows whether a session with the control plane is open.
    pub fn session_state(&self) -> watch::Receiver<bool> {
        self.session_open.subscribe()
    }

    /// This node's name.
    pub fn node_id(&self) -> &str {
        &self.cfg.node_id
    }

    /// How this agent reaches the control plane over TLS (`None`: plaintext).
    pub fn control_plane_tls(&self) -> Option<flotilla_client::ClientTls> {
        self.cfg.tls.clone()
    }

    /// Records where the node is; the next Hello and report carry it.
    pub fn set_topology(&self, topology: NodeTopology) {
        *self.topology.lock() = Some(topology);
    }

    async fn report(&self) -> Report {
        let sup = self.sup.lock().await;
        Report {
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            time: Some(now_timestamp()),
            instances: sup.observations(),
            applied_generation: self.applied_generation.load(Ordering::SeqCst),
            highest_epoch_seen: self.epoch.lock().highest(),
            limits_mechanism: sup.limits_mechanism().to_string(),
            capacity: Some(capacity(&self.cfg.data_dir)),
            topology: self.topology.lock().clone(),
        }
    }

    async fn session(
        self: Arc<Self>,
        shutdown: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<(), SessionError> {
        let Connected { url, channel } = self
            .connector
            .lock()
            .await
            .connect()
            .await
            .map_err(|e| SessionError::Connect(e.to_string()))?;
        let mut client = AgentServiceClient::new(channel);
        let (tx, rx) = mpsc::channel::<AgentMessage>(256);
        let hello = self.hello().await;
        tx.send(AgentMessage {
            message: Some(Out::Hello(hello)),
        })
        .await
        .map_err(|e| SessionError::Stream(e.to_string()))?;
        let resp = client
            .connect(ReceiverStream::new(rx))
            .await
            .map_err(|e| SessionError::Refused(format!("{url}: {}", e.message())))?;
        let mut inbound = resp.into_inner();
        // A follower that cannot reach the leader answers with a status only when the first
        // message is read: the session counts as open once the control plane has spoken.
        let first = inbound
            .message()
            .await
            .map_err(|e| SessionError::Refused(format!("{url}: {}", e.message())))?;
        info!(control_plane = %url, "connected");
        backoff.reset();
        self.session_open.send_replace(true);
        self.metrics.set_connected(true);

        let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(1024);
        let worker = {
            let me = self.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(cmd) = cmd_rx.recv().await {
                    let result = me.handle_command(cmd).await;
                    let msg = AgentMessage {
                        message: Some(Out::CommandResult(result)),
                    };
                    if tx.send(msg).await.is_err() {
                        break;
                    }
                }
            })
        };
        let changed = self.sup.lock().await.changed();
        let mut iv = tokio::time::interval(self.cfg.report_interval);
        let mut pending_first = Some(first);
        let result = loop {
            let next = async {
                match pending_first.take() {
                    Some(m) => Ok(m),
                    None => inbound.message().await,
                }
            };
            tokio::select! {
                msg = next => match msg {
                    Ok(Some(m)) => match m.message {
                        Some(In::DesiredState(ds)) => {
                            self.handle_desired(ds).await;
                            let r = self.report().await;
                            if tx.send(AgentMessage { message: Some(Out::Report(r)) }).await.is_err() {
                                break Err(SessionError::Stream("outbound closed".into()));
                            }
                        }
                        Some(In::Command(c)) => match cmd_tx.send(c).await {
                            Ok(()) => {}
                            Err(_) => break Err(SessionError::Stream("command worker gone".into())),
                        },
                        None => {}
                    },
                    Ok(None) => break Err(SessionError::Stream("closed by the control plane".into())),
                    Err(status) => break Err(SessionError::Stream(status.to_string())),
                },
                _ = iv.tick() => {
                    let r = self.report().await;
                    if tx.send(AgentMessage { message: Some(Out::Report(r)) }).await.is_err() {
                        break Err(SessionError::Stream("outbound closed".into()));
                    }
                }
                _ = changed.notified() => {
                    let r = self.report().await;
                    if tx.send(AgentMessage { message: Some(Out::Report(r)) }).await.is_err() {
                        break Err(SessionError::Stream("outbound closed".into()));
                    }
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break Ok(());
                    }
                }
            }
        };
        worker.abort();
        self.session_open.send_replace(false);
        self.metrics.set_connected(false);
        result
    }

    /// Applies a desired state received from the control plane (epoch-fenced).
    pub async fn handle_desired(&self, ds: DesiredState) {
        let span = info_span!(
            "desired_state",
            node = %self.cfg.node_id,
            epoch = ds.epoch,
            generation = ds.generation
        );
        async {
            if let Err(e) = self.epoch.lock().check(ds.epoch) {
                warn!(error = %e, reason = e.code(), "desired state refused");
                return;
            }
            self.sup.lock().await.apply(&ds).await;
            self.applied_generation
                .store(ds.generation, Ordering::SeqCst);
            let rec = AgentRecord {
                version: AGENT_RECORD_VERSION,
                applied_generation: ds.generation,
                desired_pb: proto_to_hex(&ds),
            };
            if let Err(e) = self.state.save_agent(&rec) {
                warn!(error = %e, code = e.code(), "cannot persist the desired state");
            }
        }
        .instrument(span)
        .await
    }

    /// Executes one command: epoch fence, journal lookup, generation check, then the action.
    pub async fn handle_command(&self, cmd: Command) -> CommandResult {
        let action_name = cmd
            .action
            .as_ref()
            .map(commands::action_name)
            .unwrap_or("none");
        let span = info_span!(
            "command",
            command_id = %cmd.command_id,
            instance = %cmd.instance,
            action = action_name,
            epoch = cmd.epoch,
            // The control plane's trace id for this command (see flotilla_client::trace).
            trace_id = flotilla_client::trace::trace_id(&cmd.traceparent).unwrap_or("")
        );
        async {
            let fail = |code: i32, reason: &str, message: String| CommandResult {
                command_id: cmd.command_id.clone(),
                success: false,
                error: Some(CommandError {
                    code,
                    reason: reason.to_string(),
                    message,
                }),
                duplicate: false,
                result: None,
            };
            if let Err(e) = self.epoch.lock().check(cmd.epoch) {
                warn!(error = %e, "command refused");
                return fail(9, e.code(), e.to_string());
            }
            let mut journal = self.journal.lock().await;
            if let Some(prev) = journal.get(&cmd.command_id) {
                info!("duplicate command: returning the recorded result");
                return prev;
            }
            let applied = self.applied_generation.load(Ordering::SeqCst);
            if cmd.expected_generation != 0 && cmd.expected_generation != applied {
                return fail(
                    9,
                    "GENERATION_MISMATCH",
                    format!(
                        "command expects generation {}, the node applied {applied}",
                        cmd.expected_generation
                    ),
                );
            }
            let Some(action) = cmd.action.as_ref() else {
                return fail(3, "INVALID_COMMAND", "command without action".to_string());
            };
            let (addr, client) = {
                let sup = self.sup.lock().await;
                match sup.admin_address(&cmd.instance) {
                    Ok(a) => (a, sup.client()),
                    Err(e) => {
                        let code = if e.code() == "INSTANCE_NOT_FOUND" {
                            5
                        } else {
                            14
                        };
                        return fail(code, e.code(), e.to_string());
                    }
                }
            };
            let started = std::time::Instant::now();
            let outcome = commands::execute(&client, &addr, action).await;
            self.metrics.observe_command(
                commands::action_name(action),
                outcome.as_ref().map_or_else(|e| e.code(), |_| "ok"),
                started.elapsed(),
            );
            let result = match outcome {
                Ok(r) => {
                    if let flotilla_proto::agent::v1::command::Action::UpdateNameservers(u) = action
                    {
                        let kv =
                            BTreeMap::from([("namesrvAddr".to_string(), u.namesrv_addr.clone())]);
                        self.sup.lock().await.note_online_change(&cmd.instance, &kv);
                    }
                    info!("command applied");
                    CommandResult {
                        command_id: cmd.command_id.clone(),
                        success: true,
                        error: None,
                        duplicate: false,
                        result: r,
                    }
                }
                Err(e) => {
                    warn!(error = %e, code = e.code(), "command failed");
                    let res = CommandResult {
                        command_id: cmd.command_id.clone(),
                        success: false,
                        error: Some(e.to_proto()),
                        duplicate: false,
                        result: None,
                    };
                    if !e.is_final() {
                        return res;
                    }
                    res
                }
            };
            if !commands::is_read_only(action)
                && let Err(e) = journal.record(&cmd.command_id, &result)
            {
                warn!(error = %e, code = e.code(), "cannot journal the command");
            }
            result
        }
        .instrument(span)
        .await
    }

    /// The supervisor (for tests and embedding).
    pub fn supervisor(&self) -> Arc<Mutex<Supervisor>> {
        self.sup.clone()
    }
}

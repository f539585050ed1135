//! The supervisor: runs the instances of the node's desired state and keeps them running.
//!
//! For every instance it prepares storage, renders the config file, spawns the process
//! detached, records its identity in a versioned state file, watches it (by `wait()` for its
//! own children, by polling `/proc` for re-adopted ones, which are not its children), restarts
//! it with exponential backoff when the restart policy allows, probes readiness over the
//! remoting protocol, and stops it with SIGTERM then SIGKILL after a grace period.
//!
//! Changes arrive as whole desired states ([`Supervisor::apply`]). Between them the supervisor
//! only holds what it has: while the agent is disconnected nobody calls `apply`, so crashed
//! processes are restarted but nothing new is started or stopped (DESIGN principle 5). A config
//! change that keeps the `restart_hash` is applied online (UPDATE_BROKER_CONFIG, see
//! [`crate::online`]); one that needs a restart waits for `may_restart`.
//!
//! On start, [`Supervisor::recover`] reads the state files and re-adopts every process whose
//! pid, start time and command line still match; a live pid that does not match is reported
//! ORPHANED and never signalled.

pub mod backoff;
pub mod limits;
pub mod logs;
pub mod proc_identity;
pub mod process;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_proto::agent::v1::{
    DesiredState, Instance, InstanceObservation, InstanceState, ProcessExit, RestartPolicy,
};
use flotilla_proto::v1::InstanceKind;
use flotilla_remoting::RemotingClient;
use nix::sys::signal::Signal;
use tokio::sync::Notify;
use tracing::{info, info_span, warn};

use crate::probe::{self, ProbeResult};
use crate::render;
use crate::state::{INSTANCE_RECORD_VERSION, InstanceRecord, StateDir, proto_to_hex};
use backoff::Backoff;
use limits::Mechanism;
use logs::LogPolicy;
use proc_identity::Identity;

/// Supervisor errors surfaced to callers (commands that target an instance).
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No instance of that name on this node.
    #[error("instance {0} is not on this node")]
    InstanceNotFound(String),
    /// The instance exists but is not running.
    #[error("instance {0} is not running")]
    NotRunning(String),
}

impl SupervisorError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InstanceNotFound(_) => "INSTANCE_NOT_FOUND",
            Self::NotRunning(_) => "INSTANCE_NOT_RUNNING",
        }
    }
}

/// Supervisor settings.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The agent's data dir (state files, ephemeral instance dirs).
    pub data_dir: PathBuf,
    /// Where `flotilla-broker` and `flotilla-namesrv` live.
    pub bin_dir: PathBuf,
    /// Node id (names the cgroup sub-tree).
    pub node_id: String,
    /// SIGTERM → SIGKILL grace period.
    pub stop_grace: Duration,
    /// First restart delay.
    pub restart_base: Duration,
    /// Longest restart delay.
    pub restart_max: Duration,
    /// A process up this long gets its restart backoff reset.
    pub stable_after: Duration,
    /// Log rotation policy.
    pub log_policy: LogPolicy,
}

impl SupervisorConfig {
    /// Defaults for a data dir and bin dir.
    pub fn new(data_dir: PathBuf, bin_dir: PathBuf, node_id: String) -> Self {
        Self {
            data_dir,
            bin_dir,
            node_id,
            stop_grace: Duration::from_secs(10),
            restart_base: Duration::from_millis(500),
            restart_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(30),
            log_policy: LogPolicy::default(),
        }
    }
}

/// A process the supervisor watches.
#[derive(Debug)]
struct Running {
    pid: i32,
    start_time_ticks: u64,
    cmdline: Vec<String>,
    /// Present when this agent spawned it (then it reaps it); absent when re-adopted.
    child: Option<tokio::process::Child>,
    started_at: Instant,
}

/// What to do once a stopping process has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    /// Forget the instance (removed from the desired state).
    Remove,
    /// Start it again (config change needing a restart).
    Restart,
    /// Keep it stopped.
    Stay,
}

#[derive(Debug)]
struct Stopping {
    deadline: Instant,
    killed: bool,
    then: AfterStop,
}

#[derive(Debug)]
struct Managed {
    spec: Instance,
    kind: InstanceKind,
    dir: PathBuf,
    proc_: Option<Running>,
    state: InstanceState,
    restarts: u32,
    /// Config the process runs with (effective, rendered).
    running_config: BTreeMap<String, String>,
    running_config_hash: String,
    running_restart_hash: String,
    backoff: Backoff,
    next_start: Option<Instant>,
    last_exit: Option<ProcessExit>,
    probe: Option<ProbeResult>,
    message: String,
    stopping: Option<Stopping>,
    /// Keys to apply online (UPDATE_BROKER_CONFIG) and the spec they come from.
    online_pending: Option<(BTreeMap<String, String>, Instance)>,
    orphan: Option<(i32, u64)>,
}

impl Managed {
    fn new(spec: Instance, kind: InstanceKind, dir: PathBuf, cfg: &SupervisorConfig) -> Self {
        Self {
            spec,
            kind,
            dir,
            proc_: None,
            state: InstanceState::Pending,
            restarts: 0,
            running_config: BTreeMap::new(),
            running_config_hash: String::new(),
            running_restart_hash: String::new(),
            backoff: Backoff::new(cfg.restart_base, cfg.restart_max),
            next_start: None,
            last_exit: None,
            probe: None,
            message: String::new(),
            stopping: None,
            online_pending: None,
            orphan: None,
        }
    }

    /// The config the process runs with (the rendered one before it first started).
    fn config(&self) -> std::borrow::Cow<'_, BTreeMap<String, String>> {
        if self.running_config.is_empty() {
            std::borrow::Cow::Owned(render::effective_config(&self.spec, &self.dir))
        } else {
            std::borrow::Cow::Borrowed(&self.running_config)
        }
    }

    /// The nameservers the running broker is configured with (`namesrvAddr`).
    fn nameservers(&self) -> Vec<String> {
        self.config()
            .get("namesrvAddr")
            .map(|v| probe::nameservers_of(v))
            .unwrap_or_default()
    }

    fn listen_address(&self) -> String {
        render::listen_address(self.kind, &self.config())
    }
}

fn desired_hash(spec: &Instance, effective: &BTreeMap<String, String>) -> String {
    if spec.config_hash.is_empty() {
        render::config_hash(effective)
    } else {
        spec.config_hash.clone()
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

fn exit_of(status: std::process::ExitStatus) -> ProcessExit {
    use std::os::unix::process::ExitStatusExt;
    ProcessExit {
        code: status.code().unwrap_or(-1),
        signal: status.signal().unwrap_or(0),
        time: Some(now_timestamp()),
    }
}

/// A snapshot of what changed-detection compares (to report on every change).
/// What a report carries that the control plane waits on: a change of any of these sends a
/// report at once (role, brokerId, writability and registrations included, so an election
/// reaches the readiness rule without waiting for the periodic report).
type Fingerprint = Vec<(
    String,
    i32,
    i32,
    Option<(i32, i64, bool, Vec<String>)>,
    u32,
    String,
)>;

/// The supervisor of one node. Driven by [`Supervisor::apply`] and a periodic
/// [`Supervisor::tick`].
pub struct Supervisor {
    cfg: SupervisorConfig,
    state: StateDir,
    mech: Mechanism,
    client: RemotingClient,
    instances: BTreeMap<String, Managed>,
    changed: Arc<Notify>,
    last_fingerprint: Fingerprint,
}

impl Supervisor {
    /// A supervisor with no instances yet (call [`Supervisor::recover`] next).
    pub fn new(cfg: SupervisorConfig, client: RemotingClient) -> Self {
        let mech = limits::detect(&cfg.node_id);
        info!(mechanism = mech.name(), "resource limits");
        Self {
            state: StateDir::new(cfg.data_dir.clone()),
            cfg,
            mech,
            client,
            instances: BTreeMap::new(),
            changed: Arc::new(Notify::new()),
            last_fingerprint: Vec::new(),
        }
    }

    /// Notified whenever an observation changes (state, pid, readiness, restarts, hash).
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// "cgroup2" or "rlimit".
    pub fn limits_mechanism(&self) -> &'static str {
        self.mech.name()
    }

    /// The remoting client used for probes and admin calls.
    pub fn client(&self) -> RemotingClient {
        self.client.clone()
    }

    /// Re-adopts what the state files describe: verified processes are watched again without
    /// restarting them; processes that exited while the agent was away are restarted per
    /// their policy; live pids that fail verification are reported ORPHANED, never killed.
    pub fn recover(&mut self) {
        let (records, errors) = self.state.load_instances();
        for e in errors {
            warn!(error = %e, code = e.code(), "unreadable instance record");
        }
        for rec in records {
            let path = self.state.instance_path(&rec.name);
            let spec = match rec.spec(&path) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, code = e.code(), "instance record without spec");
                    continue;
                }
            };
            let Ok(kind) = render::kind(&spec) else {
                continue;
            };
            let mut m = Managed::new(spec, kind, rec.dir.clone(), &self.cfg);
            m.restarts = rec.restarts;
            m.running_config_hash = rec.config_hash.clone();
            m.running_restart_hash = rec.restart_hash.clone();
            m.running_config = render::effective_config(&m.spec, &m.dir);
            let identity = if rec.pid > 0 {
                proc_identity::verify(rec.pid, rec.start_time_ticks, &rec.cmdline)
            } else {
                Identity::Gone
            };
            match identity {
                Identity::Verified => {
                    info!(instance = %rec.name, pid = rec.pid, "re-adopted running process");
                    m.proc_ = Some(Running {
                        pid: rec.pid,
                        start_time_ticks: rec.start_time_ticks,
                        cmdline: rec.cmdline.clone(),
                        child: None,
                        started_at: Instant::now(),
                    });
                    m.state = InstanceState::Starting;
                    m.message = "re-adopted".to_string();
                }
                Identity::Gone => {
                    let policy = RestartPolicy::try_from(m.spec.restart_policy)
                        .unwrap_or(RestartPolicy::Always);
                    if rec.pid > 0 {
                        m.message = "exited while the agent was away".to_string();
                    }
                    if policy == RestartPolicy::Never && rec.pid > 0 {
                        m.state = InstanceState::Failed;
                    } else {
                        m.state = InstanceState::Backoff;
                        m.next_start = Some(Instant::now());
                    }
                }
                Identity::Mismatch(why) => {
                    warn!(instance = %rec.name, pid = rec.pid, %why, "cannot verify process: orphaned");
                    m.state = InstanceState::Orphaned;
                    m.orphan = Some((rec.pid, rec.start_time_ticks));
                    m.message = why;
                }
            }
            self.instances.insert(rec.name.clone(), m);
        }
        self.notify_if_changed();
    }

    /// Applies a desired state: starts new instances, stops removed ones, applies config
    /// changes online or (when allowed) by restart.
    pub async fn apply(&mut self, desired: &DesiredState) {
        let span = info_span!(
            "apply_desired_state",
            epoch = desired.epoch,
            generation = desired.generation
        );
        let _g = span.enter();
        let wanted: BTreeSet<String> = desired.instances.iter().map(|i| i.name.clone()).collect();
        for spec in &desired.instances {
            self.apply_instance(spec);
        }
        let removed: Vec<String> = self
            .instances
            .keys()
            .filter(|n| !wanted.contains(*n))
            .cloned()
            .collect();
        for name in removed {
            self.remove_instance(&name);
        }
        drop(_g);
        self.run_online_updates().await;
        self.notify_if_changed();
    }

    fn apply_instance(&mut self, spec: &Instance) {
        let kind = match render::kind(spec) {
            Ok(k) => k,
            Err(e) => {
                warn!(instance = %spec.name, error = %e, "skipping instance");
                return;
            }
        };
        let dir = match render::instance_dir(spec, &self.cfg.data_dir) {
            Ok(d) => d,
            Err(e) => {
                warn!(instance = %spec.name, error = %e, "skipping instance");
                return;
            }
        };
        let Some(m) = self.instances.get_mut(&spec.name) else {
            let mut m = Managed::new(spec.clone(), kind, dir, &self.cfg);
            m.next_start = Some(Instant::now());
            info!(instance = %spec.name, "new instance");
            self.instances.insert(spec.name.clone(), m);
            self.start_due();
            return;
        };
        if m.orphan.is_some() {
            m.spec = spec.clone();
            return;
        }
        if m.stopping
            .as_ref()
            .is_some_and(|s| s.then == AfterStop::Remove)
        {
            // Wanted again while being removed: start it again once stopped.
            if let Some(s) = m.stopping.as_mut() {
                s.then = AfterStop::Restart;
            }
            m.spec = spec.clone();
            m.dir = dir;
            return;
        }
        let effective = render::effective_config(spec, &dir);
        let new_hash = desired_hash(spec, &effective);
        if m.proc_.is_none() {
            // Not running: take the new spec; a changed spec re-arms a failed instance.
            let changed = new_hash != m.running_config_hash;
            m.spec = spec.clone();
            m.dir = dir;
            if changed
                && matches!(
                    m.state,
                    InstanceState::Failed | InstanceState::Stopped | InstanceState::Pending
                )
                && m.stopping.is_none()
            {
                m.next_start = Some(Instant::now());
                m.backoff.reset();
            }
            return;
        }
        if new_hash == m.running_config_hash && effective == m.running_config {
            m.spec = spec.clone();
            return;
        }
        let online_ok = !spec.restart_hash.is_empty()
            && spec.restart_hash == m.running_restart_hash
            && m.kind == InstanceKind::Broker;
        if online_ok && let Some(diff) = crate::online::changed_keys(&m.running_config, &effective)
        {
            info!(instance = %spec.name, keys = ?diff.keys().collect::<Vec<_>>(), "online config change");
            m.online_pending = Some((diff, spec.clone()));
            return;
        }
        if spec.may_restart {
            info!(instance = %spec.name, "config change needs a restart: restarting");
            m.spec = spec.clone();
            m.dir = dir;
            Self::begin_stop(m, self.cfg.stop_grace, AfterStop::Restart);
        } else {
            m.message = "config change waits for restart permission".to_string();
            // Keep the new spec aside: the running config stays what it is.
            m.spec = Instance {
                may_restart: false,
                ..spec.clone()
            };
        }
    }

    fn remove_instance(&mut self, name: &str) {
        let Some(m) = self.instances.get_mut(name) else {
            return;
        };
        if m.orphan.is_some() {
            // Never ours to kill: forget it.
            info!(instance = name, "forgetting orphaned instance");
            let _ = self.state.remove_instance(name);
            self.instances.remove(name);
            return;
        }
        if m.proc_.is_some() {
            Self::begin_stop(m, self.cfg.stop_grace, AfterStop::Remove);
        } else {
            self.finish_remove(name);
        }
    }

    fn finish_remove(&mut self, name: &str) {
        if let Some(m) = self.instances.remove(name) {
            info!(instance = name, "instance removed");
            let _ = self.state.remove_instance(name);
            // EPHEMERAL data goes with the instance, but only ever under the agent's data dir.
            if render::is_ephemeral(&m.spec) && m.dir.starts_with(&self.cfg.data_dir) {
                let _ = std::fs::remove_dir_all(&m.dir);
            }
        }
    }

    fn begin_stop(m: &mut Managed, grace: Duration, then: AfterStop) {
        m.next_start = None;
        let Some(p) = &m.proc_ else {
            return;
        };
        match process::signal_verified(p.pid, p.start_time_ticks, Signal::SIGTERM) {
            Ok(_) => {}
            Err(e) => warn!(instance = %m.spec.name, error = %e, "SIGTERM failed"),
        }
        m.state = InstanceState::Stopping;
        m.stopping = Some(Stopping {
            deadline: Instant::now() + grace,
            killed: false,
            then,
        });
    }

    /// Stops every running instance (SIGTERM, then SIGKILL after the grace period) and waits
    /// for them to exit; records stay, so the next agent start restarts them. Used by
    /// `flotilla up` on shutdown.
    pub async fn stop_all(&mut self, timeout: Duration) {
        let names: Vec<String> = self.instances.keys().cloned().collect();
        for n in &names {
            if let Some(m) = self.instances.get_mut(n)
                && m.proc_.is_some()
            {
                Self::begin_stop(m, self.cfg.stop_grace, AfterStop::Stay);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            self.check_exits();
            self.enforce_stop_deadlines();
            let running = self.instances.values().any(|m| m.proc_.is_some());
            if !running || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One supervision round: reap exits, enforce stop deadlines, start due restarts, rotate
    /// logs, retry online updates and probe readiness.
    pub async fn tick(&mut self) {
        self.check_exits();
        self.enforce_stop_deadlines();
        self.start_due();
        for m in self.instances.values() {
            let log = logs::log_path(&m.dir, &m.spec.name);
            if let Err(e) = logs::rotate_if_needed(&log, self.cfg.log_policy) {
                warn!(error = %e, "log rotation failed");
            }
        }
        self.run_online_updates().await;
        self.probe_all().await;
        self.notify_if_changed();
    }

    fn check_exits(&mut self) {
        let names: Vec<String> = self.instances.keys().cloned().collect();
        for name in names {
            self.settle_cmdline(&name);
            let exit = {
                let Some(m) = self.instances.get_mut(&name) else {
                    continue;
                };
                let Some(p) = m.proc_.as_mut() else {
                    continue;
                };
                match p.child.as_mut() {
                    Some(child) => match child.try_wait() {
                        Ok(Some(status)) => Some(exit_of(status)),
                        Ok(None) => None,
                        Err(_) => (!proc_identity::alive(p.pid, p.start_time_ticks)).then(|| {
                            ProcessExit {
                                code: -1,
                                signal: 0,
                                time: Some(now_timestamp()),
                            }
                        }),
                    },
                    None => (!proc_identity::alive(p.pid, p.start_time_ticks)).then(|| {
                        // Not our child: the exit status is unknown.
                        ProcessExit {
                            code: -1,
                            signal: 0,
                            time: Some(now_timestamp()),
                        }
                    }),
                }
            };
            if let Some(exit) = exit {
                self.on_exit(&name, exit);
            }
        }
    }

    /// Right after spawn the child may still be inside execve, so the command line read then
    /// can be empty: read it again until it is known, and record it.
    fn settle_cmdline(&mut self, name: &str) {
        let Some(run) = self.instances.get_mut(name).and_then(|m| m.proc_.as_mut()) else {
            return;
        };
        if !run.cmdline.is_empty() {
            return;
        }
        if let Some(c) = proc_identity::read_cmdline(run.pid)
            && !c.is_empty()
        {
            run.cmdline = c;
            self.save_record(name);
        }
    }

    fn on_exit(&mut self, name: &str, exit: ProcessExit) {
        let grace_then = {
            let Some(m) = self.instances.get_mut(name) else {
                return;
            };
            let ran_for = m
                .proc_
                .as_ref()
                .map(|p| p.started_at.elapsed())
                .unwrap_or_default();
            let pid = m.proc_.as_ref().map(|p| p.pid).unwrap_or(0);
            m.proc_ = None;
            m.probe = None;
            m.last_exit = Some(exit);
            m.online_pending = None;
            match m.stopping.take() {
                Some(s) => {
                    info!(instance = name, pid, "stopped");
                    Some(s.then)
                }
                None => {
                    m.restarts = m.restarts.saturating_add(1);
                    if ran_for >= self.cfg.stable_after {
                        m.backoff.reset();
                    }
                    let policy = RestartPolicy::try_from(m.spec.restart_policy)
                        .unwrap_or(RestartPolicy::Always);
                    let clean = exit.code == 0 && exit.signal == 0;
                    warn!(
                        instance = name,
                        pid,
                        code = exit.code,
                        signal = exit.signal,
                        "process exited"
                    );
                    match policy {
                        RestartPolicy::Never => {
                            m.state = InstanceState::Failed;
                            m.message = "exited; restart policy NEVER".to_string();
                        }
                        RestartPolicy::OnFailure if clean => {
                            m.state = InstanceState::Stopped;
                            m.message = "exited cleanly; restart policy ON_FAILURE".to_string();
                        }
                        _ => {
                            let delay = m.backoff.next_delay();
                            m.state = InstanceState::Backoff;
                            m.next_start = Some(Instant::now() + delay);
                            m.message = format!("exited; restarting in {delay:?}");
                        }
                    }
                    None
                }
            }
        };
        match grace_then {
            Some(AfterStop::Remove) => self.finish_remove(name),
            Some(AfterStop::Restart) => {
                if let Some(m) = self.instances.get_mut(name) {
                    m.state = InstanceState::Pending;
                    m.next_start = Some(Instant::now());
                    m.backoff.reset();
                }
                self.start_due();
            }
            Some(AfterStop::Stay) => {
                if let Some(m) = self.instances.get_mut(name) {
                    m.state = InstanceState::Stopped;
                }
                self.save_record(name);
            }
            None => self.save_record(name),
        }
    }

    fn enforce_stop_deadlines(&mut self) {
        let now = Instant::now();
        for m in self.instances.values_mut() {
            let (Some(s), Some(p)) = (m.stopping.as_mut(), m.proc_.as_ref()) else {
                continue;
            };
            if !s.killed && now >= s.deadline {
                warn!(instance = %m.spec.name, pid = p.pid, "grace period over: SIGKILL");
                if let Err(e) = process::signal_verified(p.pid, p.start_time_ticks, Signal::SIGKILL)
                {
                    warn!(error = %e, "SIGKILL failed");
                }
                s.killed = true;
            }
        }
    }

    fn start_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .instances
            .iter()
            .filter(|(_, m)| {
                m.proc_.is_none()
                    && m.orphan.is_none()
                    && m.stopping.is_none()
                    && m.next_start.is_some_and(|t| t <= now)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.start(&name);
        }
    }

    fn start(&mut self, name: &str) {
        let Some(m) = self.instances.get_mut(name) else {
            return;
        };
        m.next_start = None;
        let span = info_span!("start_instance", instance = name);
        let _g = span.enter();
        match Self::spawn_instance(&self.cfg, &self.mech, m) {
            Ok(()) => {
                if let Some(p) = &m.proc_ {
                    info!(pid = p.pid, "started");
                }
                m.state = InstanceState::Starting;
                m.message.clear();
            }
            Err(e) => {
                let delay = m.backoff.next_delay();
                warn!(error = %e, ?delay, "start failed");
                m.state = InstanceState::Backoff;
                m.message = format!("start failed: {e}");
                m.next_start = Some(Instant::now() + delay);
            }
        }
        drop(_g);
        self.save_record(name);
    }

    fn spawn_instance(
        cfg: &SupervisorConfig,
        mech: &Mechanism,
        m: &mut Managed,
    ) -> Result<(), String> {
        std::fs::create_dir_all(&m.dir).map_err(|e| format!("{}: {e}", m.dir.display()))?;
        let effective = render::effective_config(&m.spec, &m.dir);
        let text =
            render::render_properties(&m.spec.name, &effective).map_err(|e| e.to_string())?;
        let conf = m.dir.join(render::config_file_name(m.kind));
        crate::state::write_atomic(&conf, text.as_bytes()).map_err(|e| e.to_string())?;
        let (prog, args) = render::command_line(m.kind, &effective, &conf);
        let program = render::program_path(&cfg.bin_dir, &m.spec, prog);
        let (exec, exec_args) =
            limits::wrap_command(mech, m.spec.resources.as_ref(), &program, &args);
        let (out, err) = logs::open_for_process(&logs::log_path(&m.dir, &m.spec.name))
            .map_err(|e| e.to_string())?;
        let sp = process::spawn_detached(&exec, &exec_args, &m.dir, out, err)
            .map_err(|e| e.to_string())?;
        if let Err(e) =
            limits::apply_after_spawn(mech, &m.spec.name, m.spec.resources.as_ref(), sp.pid)
        {
            warn!(error = %e, "could not apply cgroup limits");
        }
        // std's spawn returns after exec, so /proc already shows the program's own command
        // line (wrappers that exec again are re-read once the instance is ready).
        let cmdline = proc_identity::read_cmdline(sp.pid).unwrap_or_default();
        m.running_config_hash = desired_hash(&m.spec, &effective);
        m.running_restart_hash = m.spec.restart_hash.clone();
        m.running_config = effective;
        m.proc_ = Some(Running {
            pid: sp.pid,
            start_time_ticks: sp.start_time_ticks,
            cmdline,
            child: Some(sp.child),
            started_at: Instant::now(),
        });
        Ok(())
    }

    fn save_record(&self, name: &str) {
        let Some(m) = self.instances.get(name) else {
            return;
        };
        let (pid, ticks, cmdline) = match &m.proc_ {
            Some(p) => (p.pid, p.start_time_ticks, p.cmdline.clone()),
            None => (0, 0, Vec::new()),
        };
        let rec = InstanceRecord {
            version: INSTANCE_RECORD_VERSION,
            name: name.to_string(),
            pid,
            start_time_ticks: ticks,
            cmdline,
            config_hash: m.running_config_hash.clone(),
            restart_hash: m.running_restart_hash.clone(),
            restarts: m.restarts,
            dir: m.dir.clone(),
            spec_pb: proto_to_hex(&m.spec),
        };
        if let Err(e) = self.state.save_instance(&rec) {
            warn!(instance = name, error = %e, code = e.code(), "cannot save instance record");
        }
    }

    async fn run_online_updates(&mut self) {
        let pending: Vec<(String, String, BTreeMap<String, String>, Instance)> = self
            .instances
            .iter()
            .filter(|(_, m)| m.proc_.is_some() && m.stopping.is_none())
            .filter_map(|(n, m)| {
                m.online_pending
                    .as_ref()
                    .map(|(d, s)| (n.clone(), m.listen_address(), d.clone(), s.clone()))
            })
            .collect();
        for (name, addr, diff, spec) in pending {
            let span = info_span!("online_update", instance = %name);
            let _g = span.enter();
            let res = if diff.is_empty() {
                Ok(())
            } else {
                crate::online::update_broker_config(&self.client, &addr, &diff).await
            };
            let Some(m) = self.instances.get_mut(&name) else {
                continue;
            };
            match res {
                Ok(()) => {
                    let effective = render::effective_config(&spec, &m.dir);
                    let conf = m.dir.join(render::config_file_name(m.kind));
                    match render::render_properties(&name, &effective) {
                        Ok(text) => {
                            if let Err(e) = crate::state::write_atomic(&conf, text.as_bytes()) {
                                warn!(error = %e, "cannot rewrite config file");
                            }
                        }
                        Err(e) => warn!(error = %e, "cannot render config"),
                    }
                    info!(keys = ?diff.keys().collect::<Vec<_>>(), "applied online");
                    m.running_config_hash = desired_hash(&spec, &effective);
                    m.running_config = effective;
                    m.spec = spec;
                    m.online_pending = None;
                    m.message.clear();
                    drop(_g);
                    self.save_record(&name);
                }
                Err(e) => {
                    m.message = format!("online update pending: {e}");
                }
            }
        }
    }

    async fn probe_all(&mut self) {
        let targets: Vec<(String, InstanceKind, String, Vec<String>)> = self
            .instances
            .iter()
            .filter(|(_, m)| m.proc_.is_some() && m.stopping.is_none())
            .map(|(n, m)| (n.clone(), m.kind, m.listen_address(), m.nameservers()))
            .collect();
        // Each nameserver is asked once per round, for every broker of this node.
        let mut infos = probe::ClusterInfos::new();
        for (name, kind, addr, nameservers) in targets {
            let mut res = probe::probe(&self.client, kind, &addr).await;
            if let Ok(p) = res.as_mut()
                && kind == InstanceKind::Broker
            {
                probe::fetch_cluster_infos(&self.client, &nameservers, &mut infos).await;
                p.registered_nameservers = probe::registered_at(p, &nameservers, &infos);
            }
            let Some(m) = self.instances.get_mut(&name) else {
                continue;
            };
            if m.proc_.is_none() || m.stopping.is_some() {
                continue;
            }
            match res {
                Ok(p) => {
                    let first_ready = m.probe.is_none();
                    m.probe = Some(p);
                    m.state = InstanceState::Running;
                    if first_ready {
                        // A wrapper (prlimit) has exec'd the real program by now.
                        if let Some(run) = m.proc_.as_mut()
                            && let Some(c) = proc_identity::read_cmdline(run.pid)
                            && c != run.cmdline
                        {
                            run.cmdline = c;
                            self.save_record(&name);
                        }
                    }
                }
                Err(e) => {
                    m.probe = None;
                    m.state = InstanceState::Starting;
                    if m.online_pending.is_none() {
                        m.message = format!("not ready: {e}");
                    }
                }
            }
        }
    }

    /// Records that an online change was applied by a command (the rendered file and record
    /// follow the running broker).
    pub fn note_online_change(&mut self, name: &str, kv: &BTreeMap<String, String>) {
        let Some(m) = self.instances.get_mut(name) else {
            return;
        };
        let mut spec = m.spec.clone();
        for (k, v) in kv {
            spec.config.insert(k.clone(), v.clone());
        }
        let effective = render::effective_config(&spec, &m.dir);
        if let Ok(text) = render::render_properties(name, &effective) {
            let conf = m.dir.join(render::config_file_name(m.kind));
            let _ = crate::state::write_atomic(&conf, text.as_bytes());
        }
        m.running_config = effective;
    }

    /// The address an instance serves on, for admin commands.
    pub fn admin_address(&self, name: &str) -> Result<String, SupervisorError> {
        let m = self
            .instances
            .get(name)
            .ok_or_else(|| SupervisorError::InstanceNotFound(name.to_string()))?;
        if m.proc_.is_none() {
            return Err(SupervisorError::NotRunning(name.to_string()));
        }
        Ok(m.listen_address())
    }

    /// The current observation of every instance.
    pub fn observations(&self) -> Vec<InstanceObservation> {
        self.instances
            .iter()
            .map(|(name, m)| {
                let (pid, ticks) = match (&m.proc_, m.orphan) {
                    (Some(p), _) => (i64::from(p.pid), p.start_time_ticks),
                    (None, Some((pid, t))) => (i64::from(pid), t),
                    _ => (0, 0),
                };
                let probe = m.probe.clone().unwrap_or_default();
                InstanceObservation {
                    name: name.clone(),
                    kind: m.kind as i32,
                    cluster: m.spec.cluster.clone(),
                    pid,
                    start_time_ticks: ticks,
                    state: m.state as i32,
                    restarts: m.restarts,
                    last_exit: m.last_exit,
                    role: probe.role as i32,
                    broker_id: probe.broker_id,
                    term: probe.term,
                    config_hash: m.running_config_hash.clone(),
                    commit_log: probe.commit_log,
                    registered_nameservers: probe.registered_nameservers,
                    writable: probe.writable,
                    ready: m.state == InstanceState::Running && m.probe.is_some(),
                    listen_address: m.listen_address(),
                    message: m.message.clone(),
                }
            })
            .collect()
    }

    fn fingerprint(&self) -> Fingerprint {
        self.instances
            .iter()
            .map(|(n, m)| {
                (
                    n.clone(),
                    m.state as i32,
                    m.proc_.as_ref().map(|p| p.pid).unwrap_or(0),
                    m.probe.as_ref().map(|p| {
                        (
                            p.role as i32,
                            p.broker_id,
                            p.writable,
                            p.registered_nameservers.clone(),
                        )
                    }),
                    m.restarts,
                    m.running_config_hash.clone(),
                )
            })
            .collect()
    }

    fn notify_if_changed(&mut self) {
        let fp = self.fingerprint();
        if fp != self.last_fingerprint {
            self.last_fingerprint = fp;
            self.changed.notify_one();
        }
    }

    /// Names of supervised instances.
    pub fn instance_names(&self) -> Vec<String> {
        self.instances.keys().cloned().collect()
    }

    /// The instance directory of `name`.
    pub fn instance_dir(&self, name: &str) -> Option<&Path> {
        self.instances.get(name).map(|m| m.dir.as_path())
    }
}

#[cfg(test)]
mod tests;

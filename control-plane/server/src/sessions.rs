//! Agent sessions: the `AgentService.Connect` stream of every connected node.
//!
//! An agent opens one bidirectional stream and must say `Hello` first (else
//! `INVALID_ARGUMENT`). Only the leader accepts sessions (followers answer `UNAVAILABLE` with
//! the leader's name, like every write). On Hello the node is registered (Ready), its
//! inventory is stored as observed state under a lease of `--node-heartbeat-timeout`, and its
//! full `DesiredState` is sent. Afterwards:
//!
//! - each `Report` renews the node's lease, updates observed state (written only when the
//!   instances changed, so periodic heartbeats cost no writes) and marks the node Ready
//!   again if it had been NotReady;
//! - a node whose reports stop for longer than the heartbeat timeout turns NotReady (the
//!   sweeper); when the stream ends it turns NotReady at once;
//! - every change of the node's desired state (seen through the cache) is pushed, stamped
//!   with the current epoch;
//! - an agent that reports `highest_epoch_seen` above this leader's epoch has obeyed a newer
//!   leader: this replica steps down;
//! - `CommandResult`s complete the waiters of [`Sessions::send_command`], the internal API the
//!   business services and workflows use to run an imperative step on a node.
//!
//! A session belongs to one leadership term: when the epoch changes, the stream is closed and
//! the agent reconnects (to whichever replica leads).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use flotilla_intent_store::{LeaseId, Op, StoreError, Txn, keys};
use flotilla_proto::agent::v1::{
    AgentMessage, Command, CommandResult, ControlMessage, DesiredState, Hello, Report,
    agent_message, agent_service_server::AgentService, control_message,
};
use flotilla_proto::v1::{NodePhase, NodeTopology};
use futures::Stream;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::cache::Change;
use crate::context::Ctx;
use crate::errors::ApiError;
use crate::registry;
use crate::security::Caller;
use crate::validate;
use flotilla_client::Principal;

/// Why a command could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// This replica is not the leader.
    #[error("not the leader")]
    NotLeader,
    /// The node has no connected agent.
    #[error("node {0} has no connected agent")]
    NodeNotConnected(String),
    /// No result arrived in time.
    #[error("command {0} timed out")]
    Timeout(String),
    /// The stream ended before the result arrived.
    #[error("session of node {0} closed before the command completed")]
    SessionClosed(String),
    /// The command is malformed (no command_id).
    #[error("invalid command: {0}")]
    InvalidCommand(String),
}

impl CommandError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::NotLeader => "NOT_LEADER",
            CommandError::NodeNotConnected(_) => "NODE_NOT_CONNECTED",
            CommandError::Timeout(_) => "COMMAND_TIMEOUT",
            CommandError::SessionClosed(_) => "SESSION_CLOSED",
            CommandError::InvalidCommand(_) => "INVALID_COMMAND",
        }
    }
}

type Outbound = mpsc::Sender<Result<ControlMessage, Status>>;

struct Session {
    id: u64,
    epoch: i64,
    tx: Outbound,
    cancel: CancellationToken,
    pending: HashMap<String, Vec<oneshot::Sender<CommandResult>>>,
    last_report: Instant,
    last_report_time: SystemTime,
    last_keepalive: Instant,
    lease: LeaseId,
    observed_fingerprint: Vec<u8>,
    last_sent: Option<(i64, i64)>,
    not_ready: bool,
    limits_mechanism: String,
    /// The topology last written to the node record (from Hello, then reports).
    topology: Option<NodeTopology>,
}

/// Connected agents, by node name.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
    next_id: AtomicU64,
}

fn fingerprint(report: &Report) -> Vec<u8> {
    let mut r = report.clone();
    r.seq = 0;
    r.time = None;
    r.capacity = None;
    r.encode_to_vec()
}

impl Sessions {
    /// Whether `node` has a connected agent.
    pub fn is_connected(&self, node: &str) -> bool {
        self.inner.lock().contains_key(node)
    }

    /// Nodes with a connected agent.
    pub fn connected(&self) -> Vec<String> {
        let mut v: Vec<_> = self.inner.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// When the node's agent last reported (Hello counts).
    pub fn last_heartbeat(&self, node: &str) -> Option<SystemTime> {
        self.inner.lock().get(node).map(|s| s.last_report_time)
    }

    /// Closes a node's session (the agent will reconnect).
    pub fn disconnect(&self, node: &str) {
        if let Some(s) = self.inner.lock().remove(node) {
            s.cancel.cancel();
        }
    }

    /// Closes every session.
    pub fn disconnect_all(&self) {
        for (_, s) in self.inner.lock().drain() {
            s.cancel.cancel();
        }
    }

    /// Sends `cmd` to `node`'s agent, stamped with the current epoch, and waits up to
    /// `timeout` for its `CommandResult`. `cmd.command_id` must be set (deterministic per
    /// step, so a retry is recognised by the agent's journal).
    pub async fn send_command(
        &self,
        ctx: &Ctx,
        node: &str,
        mut cmd: Command,
        timeout: Duration,
    ) -> Result<CommandResult, CommandError> {
        if cmd.command_id.is_empty() {
            return Err(CommandError::InvalidCommand(
                "command_id is required".into(),
            ));
        }
        let epoch = ctx.leader.epoch().ok_or(CommandError::NotLeader)?;
        cmd.epoch = epoch;
        if cmd.traceparent.is_empty() {
            cmd.traceparent = flotilla_client::trace::new_traceparent();
        }
        let id = cmd.command_id.clone();
        let trace_id = flotilla_client::trace::trace_id(&cmd.traceparent).unwrap_or("");
        let span = info_span!("command", node, command_id = %id, epoch, trace_id);
        async {
            let (tx, rx) = oneshot::channel();
            let sender = {
                let mut map = self.inner.lock();
                let s = map
                    .get_mut(node)
                    .ok_or_else(|| CommandError::NodeNotConnected(node.to_string()))?;
                s.pending.entry(id.clone()).or_default().push(tx);
                s.tx.clone()
            };
            let msg = ControlMessage {
                message: Some(control_message::Message::Command(cmd)),
            };
            if sender.send(Ok(msg)).await.is_err() {
                return Err(CommandError::SessionClosed(node.to_string()));
            }
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => {
                    info!(success = r.success, "command answered");
                    Ok(r)
                }
                Ok(Err(_)) => Err(CommandError::SessionClosed(node.to_string())),
                Err(_) => {
                    if let Some(s) = self.inner.lock().get_mut(node) {
                        s.pending.remove(&id);
                    }
                    Err(CommandError::Timeout(id.clone()))
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Pushes the node's current desired state if it differs from what was last sent.
    pub fn push_desired(&self, ctx: &Ctx, node: &str) {
        let Some(epoch) = ctx.leader.epoch() else {
            return;
        };
        let ds = ctx.cache.read(|st| {
            st.desired
                .get(node)
                .map(|d| d.value.clone())
                .unwrap_or_default()
        });
        let tx = {
            let mut map = self.inner.lock();
            let Some(s) = map.get_mut(node) else { return };
            if s.epoch != epoch || s.last_sent == Some((ds.generation, epoch)) {
                return;
            }
            s.last_sent = Some((ds.generation, epoch));
            s.tx.clone()
        };
        let msg = ControlMessage {
            message: Some(control_message::Message::DesiredState(DesiredState {
                epoch,
                ..ds
            })),
        };
        crate::context::Stats::add(&ctx.stats.desired_pushes, 1);
        if let Err(mpsc::error::TrySendError::Full(msg)) = tx.try_send(Ok(msg)) {
            tokio::spawn(async move {
                let _ = tx.send(msg).await;
            });
        }
    }
}

/// Starts the tasks that push desired states on change and sweep missed heartbeats.
pub fn spawn_background(ctx: &Arc<Ctx>) {
    let mut changes = ctx.cache.subscribe();
    let c = ctx.clone();
    tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                ch = changes.recv() => ch,
                _ = c.shutdown.cancelled() => return,
            };
            match change {
                Some(Change::Desired(node)) => c.sessions.push_desired(&c, &node),
                Some(Change::All) => {
                    for node in c.sessions.connected() {
                        c.sessions.push_desired(&c, &node);
                    }
                }
                Some(_) => {}
                None => return,
            }
        }
    });
    let c = ctx.clone();
    tokio::spawn(
        async move {
            let timeout = c.config.node_heartbeat_timeout;
            let period = (timeout / 4).max(Duration::from_millis(50));
            let mut leader_since: Option<(i64, Instant)> = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = c.shutdown.cancelled() => return,
                }
                let Some(epoch) = c.leader.epoch() else {
                    leader_since = None;
                    continue;
                };
                if leader_since.is_none_or(|(e, _)| e != epoch) {
                    leader_since = Some((epoch, Instant::now()));
                }
                let now = Instant::now();
                let stale: Vec<String> = {
                    let mut map = c.sessions.inner.lock();
                    map.iter_mut()
                        .filter(|(_, s)| !s.not_ready && now - s.last_report > timeout)
                        .map(|(n, s)| {
                            s.not_ready = true;
                            n.clone()
                        })
                        .collect()
                };
                for node in stale {
                    info!(node, "heartbeats missed; node NotReady");
                    if let Err(e) =
                        registry::set_phase(&c, &node, NodePhase::NotReady, "HeartbeatMissed", None)
                            .await
                    {
                        warn!(node, error = %e, "marking node NotReady failed");
                    }
                }
                let settled = leader_since.is_some_and(|(_, t)| now - t > timeout);
                if settled {
                    let orphans: Vec<String> = c.cache.read(|st| {
                        st.nodes
                            .iter()
                            .filter(|(_, n)| {
                                n.value
                                    .status
                                    .as_ref()
                                    .is_some_and(|s| s.phase == NodePhase::Ready as i32)
                            })
                            .map(|(k, _)| k.clone())
                            .collect()
                    });
                    for node in orphans {
                        if !c.sessions.is_connected(&node) {
                            let _ = registry::set_phase(
                                &c,
                                &node,
                                NodePhase::NotReady,
                                "AgentDisconnected",
                                None,
                            )
                            .await;
                        }
                    }
                }
            }
        }
        .instrument(info_span!("heartbeat_sweeper")),
    );
}

/// The `AgentService` implementation.
pub struct AgentApi {
    ctx: Arc<Ctx>,
}

impl AgentApi {
    /// Serves agents from `ctx`.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }
}

fn status(e: ApiError) -> Status {
    e.into()
}

async fn write_observed(
    ctx: &Ctx,
    node: &str,
    report: &Report,
    lease: LeaseId,
) -> Result<(), crate::fenced::WriteError> {
    let key = keys::observed(node).map_err(crate::fenced::WriteError::Store)?;
    let value = report.encode_to_vec();
    let resp = ctx
        .writer
        .txn(Txn::new().and_then([Op::put_with_lease(key.clone(), value.clone(), lease)]))
        .await?;
    ctx.cache.apply(&[(key, Some(value))], resp.revision);
    Ok(())
}

/// An agent's certificate names one node; its session may speak for that node only. Without
/// TLS (`--insecure`) there is no identity to check, which is said on every session.
fn check_identity(caller: Option<&Caller>, node: &str, insecure: bool) -> Result<(), Status> {
    match caller {
        Some(Caller(Principal::Agent(n))) if n == node => Ok(()),
        Some(Caller(p)) => Err(Status::permission_denied(format!(
            "{p} may not open the session of node {node}: an agent's certificate must name \
             its node (flotilla://agent/{node})"
        ))),
        None if insecure => {
            warn!(%node, "agent session without TLS (--insecure): its node id is not verified");
            Ok(())
        }
        None => Err(Status::unauthenticated(format!(
            "the session of node {node} needs the agent's client certificate"
        ))),
    }
}

impl AgentApi {
    async fn hello(&self, hello: &Hello) -> Result<(i64, LeaseId), Status> {
        let ctx = &self.ctx;
        let mut v = validate::Violations::default();
        validate::node_name(&mut v, "hello.node_id", &hello.node_id);
        v.into_result("INVALID_REQUEST").map_err(status)?;
        let epoch = ctx.writer.require_leader().await.map_err(status)?;
        if hello.highest_epoch_seen > epoch {
            ctx.leader.step_down("agent has seen a higher epoch");
            return Err(status(ApiError::NotLeader { leader: None }));
        }
        registry::register(ctx, hello).await.map_err(status)?;
        let ttl = i64::try_from(ctx.config.node_heartbeat_timeout.as_secs().max(1)).unwrap_or(15);
        let lease = ctx
            .store
            .lease_grant(ttl)
            .await
            .map_err(|e| status(ApiError::Store(e)))?;
        let report = Report {
            seq: 0,
            time: Some(SystemTime::now().into()),
            instances: hello.inventory.clone(),
            applied_generation: hello.applied_generation,
            highest_epoch_seen: hello.highest_epoch_seen,
            limits_mechanism: String::new(),
            capacity: hello.capacity,
            topology: hello.topology.clone(),
        };
        if let Err(e) = write_observed(ctx, &hello.node_id, &report, lease.id).await {
            return Err(status(ctx.writer.api_error(e, &hello.node_id).await));
        }
        Ok((epoch, lease.id))
    }

    async fn on_report(&self, node: &str, id: u64, epoch: i64, report: Report) -> bool {
        let ctx = &self.ctx;
        if report.highest_epoch_seen > epoch {
            ctx.leader.step_down("agent reported a higher epoch");
            return false;
        }
        let ka_period = ctx.config.node_heartbeat_timeout / 3;
        let fp = fingerprint(&report);
        let (lease, keepalive, changed, was_not_ready, lm_changed, topology_changed) = {
            let mut map = ctx.sessions.inner.lock();
            let Some(s) = map.get_mut(node).filter(|s| s.id == id) else {
                return false;
            };
            let now = Instant::now();
            s.last_report = now;
            s.last_report_time = SystemTime::now();
            let keepalive = now - s.last_keepalive >= ka_period;
            if keepalive {
                s.last_keepalive = now;
            }
            let changed = s.observed_fingerprint != fp;
            s.observed_fingerprint = fp.clone();
            let was = s.not_ready;
            s.not_ready = false;
            let lm_changed = s.limits_mechanism != report.limits_mechanism;
            s.limits_mechanism = report.limits_mechanism.clone();
            // A report without topology keeps the one the node has.
            let topology_changed = report.topology.is_some() && s.topology != report.topology;
            if topology_changed {
                s.topology = report.topology.clone();
            }
            (
                s.lease,
                keepalive,
                changed,
                was,
                lm_changed,
                topology_changed,
            )
        };
        let mut lease = lease;
        let mut force_write = false;
        if keepalive {
            match ctx.store.lease_keep_alive(lease).await {
                Ok(_) => {}
                Err(StoreError::LeaseNotFound(_)) => {
                    let ttl = i64::try_from(ctx.config.node_heartbeat_timeout.as_secs().max(1))
                        .unwrap_or(15);
                    match ctx.store.lease_grant(ttl).await {
                        Ok(l) => {
                            lease = l.id;
                            force_write = true;
                            if let Some(s) = ctx.sessions.inner.lock().get_mut(node) {
                                s.lease = l.id;
                            }
                        }
                        Err(e) => warn!(node, error = %e, "lease grant failed"),
                    }
                }
                Err(e) => warn!(node, error = %e, "lease keep-alive failed"),
            }
        }
        if (changed || force_write)
            && let Err(e) = write_observed(ctx, node, &report, lease).await
        {
            warn!(node, error = %e, code = e.code(), "writing observed state failed");
            if let Some(s) = ctx.sessions.inner.lock().get_mut(node) {
                s.observed_fingerprint.clear();
            }
        }
        if topology_changed
            && let Some(t) = report.topology.clone()
            && let Err(e) = registry::set_topology(ctx, node, t).await
        {
            warn!(node, error = %e, "recording the node's topology failed");
            if let Some(s) = ctx.sessions.inner.lock().get_mut(node) {
                s.topology = None;
            }
        }
        if was_not_ready || lm_changed {
            let lm =
                (!report.limits_mechanism.is_empty()).then_some(report.limits_mechanism.as_str());
            if let Err(e) =
                registry::set_phase(ctx, node, NodePhase::Ready, "HeartbeatResumed", lm).await
            {
                warn!(node, error = %e, "marking node Ready failed");
            }
        }
        true
    }

    fn on_result(&self, node: &str, result: CommandResult) {
        let waiters = {
            let mut map = self.ctx.sessions.inner.lock();
            map.get_mut(node)
                .and_then(|s| s.pending.remove(&result.command_id))
        };
        match waiters {
            Some(ws) => {
                for w in ws {
                    let _ = w.send(result.clone());
                }
            }
            None => debug!(node, command_id = %result.command_id, "result without waiter"),
        }
    }
}

type ConnectStream = Pin<Box<dyn Stream<Item = Result<ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ConnectStream = ConnectStream;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let caller = request.extensions().get::<Caller>().cloned();
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(Duration::from_secs(30), inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 30 s"))??;
        let hello = match first.and_then(|m| m.message) {
            Some(agent_message::Message::Hello(h)) => h,
            _ => {
                return Err(status(ApiError::InvalidArgument {
                    reason: "HELLO_REQUIRED",
                    violations: vec![crate::errors::Violation::new(
                        "message",
                        "the first message of a session must be Hello",
                    )],
                }));
            }
        };
        let node = hello.node_id.clone();
        check_identity(
            caller.as_ref(),
            &node,
            self.ctx.config.security.is_insecure(),
        )?;
        let span = info_span!("agent_session", node = %node);
        let (epoch, lease) = self.hello(&hello).instrument(span.clone()).await?;
        let (tx, rx) = mpsc::channel(256);
        let cancel = CancellationToken::new();
        let id = self.ctx.sessions.next_id.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        {
            let mut map = self.ctx.sessions.inner.lock();
            let old = map.insert(
                node.clone(),
                Session {
                    id,
                    epoch,
                    tx,
                    cancel: cancel.clone(),
                    pending: HashMap::new(),
                    last_report: now,
                    last_report_time: SystemTime::now(),
                    last_keepalive: now,
                    lease,
                    observed_fingerprint: Vec::new(),
                    last_sent: None,
                    not_ready: false,
                    limits_mechanism: String::new(),
                    topology: hello.topology.clone(),
                },
            );
            if let Some(old) = old {
                old.cancel.cancel();
            }
        }
        info!(parent: &span, epoch, "agent connected");
        self.ctx.sessions.push_desired(&self.ctx, &node);
        let api = AgentApi {
            ctx: self.ctx.clone(),
        };
        tokio::spawn(
            async move {
                let mut leader = api.ctx.leader.subscribe();
                loop {
                    tokio::select! {
                        msg = inbound.message() => match msg {
                            Ok(Some(AgentMessage { message: Some(m) })) => match m {
                                agent_message::Message::Report(r) => {
                                    if !api.on_report(&node, id, epoch, r).await {
                                        break;
                                    }
                                }
                                agent_message::Message::CommandResult(r) => api.on_result(&node, r),
                                agent_message::Message::Hello(_) => {
                                    debug!("repeated Hello ignored");
                                }
                            },
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => break,
                        },
                        r = leader.changed() => {
                            let still = r.is_ok()
                                && leader.borrow().as_ref().map(|k| k.epoch()) == Some(epoch);
                            if !still {
                                break;
                            }
                        }
                        _ = cancel.cancelled() => break,
                        _ = api.ctx.shutdown.cancelled() => break,
                    }
                }
                let removed = {
                    let mut map = api.ctx.sessions.inner.lock();
                    if map.get(&node).is_some_and(|s| s.id == id) {
                        map.remove(&node)
                    } else {
                        None
                    }
                };
                if let Some(s) = removed {
                    let leader_name = api.ctx.leader.leader_name().await;
                    let _ = s.tx.try_send(Err(status(ApiError::NotLeader {
                        leader: leader_name,
                    })));
                    if api.ctx.leader.epoch() == Some(epoch) {
                        info!("agent disconnected; node NotReady");
                        let _ = registry::set_phase(
                            &api.ctx,
                            &node,
                            NodePhase::NotReady,
                            "AgentDisconnected",
                            None,
                        )
                        .await;
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

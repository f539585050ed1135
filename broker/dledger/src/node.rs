//! The Raft member: elections, replication of CommitLog bytes, the commit offset, the lease,
//! leadership transfer.
//!
//! # State and concurrency
//!
//! All Raft state of a member sits in one mutex ([`State`]). Every RPC handler runs to
//! completion under it — including the store calls of an append (`truncate_to`,
//! `append_raw`), which are synchronous memory copies — so a vote can never interleave with
//! half an append. Nothing awaits while holding it. Background work runs in tasks:
//!
//! * the **server** accepts peer connections (`crate::transport::serve`);
//! * the **ticker** starts elections when the election deadline passes and, on the leader,
//!   steps down once no majority has answered for a minimum election timeout (writes stop
//!   earlier, when the lease lapses);
//! * an **election** task per campaign (pre-vote, then vote), at most one at a time;
//! * a **replicator** per follower while leading, which streams record-aligned CommitLog
//!   chunks, probes after a mismatch and sends heartbeats when idle.
//!
//! # What the log is
//!
//! The broker appends messages to the leader's store itself (`put_message`); this engine
//! never writes on the leader, it only watches the store's end offset and ships the bytes.
//! On followers it is the only writer (`append_raw`, `truncate_to`). The term of each byte
//! comes from the epoch log (`crate::epoch`).
//!
//! # Visibility
//!
//! Every member sets its store's confirm offset to the commit offset it knows, so a reader
//! that honours `MessageStore::confirm_offset` never sees bytes that could still be truncated.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_message_store::MessageStore;
use flotilla_message_store::codec::{BLANK_MAGIC, MAGIC_V1, MAGIC_V2, peek_header};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use parking_lot::Mutex;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::DLedgerConfig;
use crate::epoch::{Epoch, EpochLog};
use crate::error::{CommitError, MembershipError, StartError, TransferError};
use crate::persist::{DurableState, HardState};
use crate::quorum::{lease_holds, next_commit};
use crate::transport::{Handler, PeerClient, serve};
use crate::wire::{AppendOutcome, Request, Response};

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one); read-only.
    Follower,
    /// Campaigning for votes.
    Candidate,
    /// The group's master: the only writer.
    Leader,
}

/// What a member currently is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleState {
    /// The role.
    pub role: Role,
    /// The member's current term.
    pub term: u64,
    /// The leader of `term`, if known (this member's id when it leads).
    pub leader_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepDown {
    LeaseExpired,
    HigherTerm,
    Shutdown,
}

#[derive(Debug, Clone)]
struct Progress {
    next: i64,
    matched: i64,
    probing: bool,
    last_ack: Option<Instant>,
}

#[derive(Debug)]
struct State {
    hs: HardState,
    role: Role,
    leader_id: Option<String>,
    epochs: EpochLog,
    commit: i64,
    election_deadline: Instant,
    last_leader_contact: Option<Instant>,
    progress: HashMap<String, Progress>,
    term_start: i64,
    transferring: bool,
    election_running: bool,
    stepped_down: Option<(u64, StepDown)>,
}

pub(crate) struct Core {
    cfg: DLedgerConfig,
    store: MessageStore,
    durable: DurableState,
    state: Mutex<State>,
    role_tx: watch::Sender<RoleState>,
    role_events: broadcast::Sender<RoleState>,
    commit_tx: watch::Sender<i64>,
    shutdown_tx: watch::Sender<bool>,
    is_shutdown: AtomicBool,
    repl_clients: HashMap<String, Arc<PeerClient>>,
    vote_clients: HashMap<String, Arc<PeerClient>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The DLedger engine of one broker. Dropping it stops it (like [`DLedger::shutdown`]).
pub struct DLedger {
    core: Arc<Core>,
}

impl std::fmt::Debug for DLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DLedger")
            .field("group", &self.core.cfg.group)
            .field("self_id", &self.core.cfg.self_id)
            .finish()
    }
}

fn random_timeout(cfg: &DLedgerConfig) -> Duration {
    let (lo, hi) = (
        cfg.election_timeout_min.as_millis() as u64,
        cfg.election_timeout_max.as_millis() as u64,
    );
    Duration::from_millis(rand::rng().random_range(lo..=hi.max(lo)))
}

impl DLedger {
    /// Starts the member: loads term, vote and epochs from `cfg.data_dir`, listens for peers
    /// (on `cfg.listen`, or on all interfaces at the port of this member's peer entry) and
    /// begins as a follower. `store` must be this broker's store; nothing else may write to it
    /// while this member is not the leader.
    pub async fn start(cfg: DLedgerConfig, store: MessageStore) -> Result<DLedger, StartError> {
        cfg.validate()?;
        let addr = match cfg.listen {
            Some(a) => a,
            None => {
                let me = cfg.self_peer().map(|p| p.addr.clone()).unwrap_or_default();
                let port = me
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .ok_or_else(|| StartError::BadListenAddress(me.clone()))?;
                SocketAddr::from(([0, 0, 0, 0], port))
            }
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        DLedger::start_with_listener(cfg, store, listener)
    }

    /// Like [`DLedger::start`] with an already bound listener (tests bind port 0 first).
    pub fn start_with_listener(
        cfg: DLedgerConfig,
        store: MessageStore,
        listener: TcpListener,
    ) -> Result<DLedger, StartError> {
        cfg.validate()?;
        let span = tracing::info_span!("dledger", group = %cfg.group, id = %cfg.self_id);
        let _g = span.enter();
        let durable = DurableState::open(&cfg.data_dir)?;
        let hs = durable.load_hard_state()?;
        let mut epochs = durable.load_epochs()?;
        let end = store.commitlog_max_offset();
        if !durable.has_epochs() && end > 0 {
            return Err(StartError::UnmanagedData { end });
        }
        let before = epochs.clone();
        epochs.truncate_after(end);
        if epochs != before {
            tracing::warn!(
                end,
                "epochs beyond the CommitLog end dropped (log was cut short)"
            );
            durable.save_epochs(&epochs)?;
        }
        if !durable.has_epochs() {
            durable.save_epochs(&epochs)?;
        }
        let role = RoleState {
            role: Role::Follower,
            term: hs.term,
            leader_id: None,
        };
        let (role_tx, _) = watch::channel(role);
        let (role_events, _) = broadcast::channel(1024);
        let (commit_tx, _) = watch::channel(0);
        let (shutdown_tx, _) = watch::channel(false);
        let mk = |timeout: Duration| -> HashMap<String, Arc<PeerClient>> {
            cfg.others()
                .map(|p| {
                    (
                        p.id.clone(),
                        Arc::new(PeerClient::new(&cfg.group, p.clone(), timeout)),
                    )
                })
                .collect()
        };
        let repl_clients = mk(cfg.rpc_timeout);
        let vote_clients = mk(cfg.rpc_timeout);
        tracing::info!(
            term = hs.term,
            voted_for = ?hs.voted_for,
            last_term = epochs.last_term(),
            end,
            "dledger member starting"
        );
        let state = State {
            hs,
            role: Role::Follower,
            leader_id: None,
            epochs,
            commit: 0,
            election_deadline: Instant::now() + random_timeout(&cfg),
            last_leader_contact: None,
            progress: HashMap::new(),
            term_start: 0,
            transferring: false,
            election_running: false,
            stepped_down: None,
        };
        let core = Arc::new(Core {
            cfg,
            store,
            durable,
            state: Mutex::new(state),
            role_tx,
            role_events,
            commit_tx,
            shutdown_tx,
            is_shutdown: AtomicBool::new(false),
            repl_clients,
            vote_clients,
            tasks: Mutex::new(Vec::new()),
        });
        let server = tokio::spawn(
            serve(
                listener,
                core.cfg.group.clone(),
                Arc::new(RpcHandler(core.clone())),
                core.shutdown_tx.subscribe(),
            )
            .instrument(span.clone()),
        );
        let ticker = tokio::spawn(run_ticker(core.clone()).instrument(span.clone()));
        core.tasks.lock().extend([server, ticker]);
        Ok(DLedger { core })
    }

    /// Watch of this member's role, term and leader.
    pub fn role(&self) -> watch::Receiver<RoleState> {
        self.core.role_tx.subscribe()
    }

    /// Every role transition, in order (a watch may skip intermediate states; this does not,
    /// unless the receiver lags by more than 1024 events).
    pub fn role_events(&self) -> broadcast::Receiver<RoleState> {
        self.core.role_events.subscribe()
    }

    /// This member's id.
    pub fn self_id(&self) -> &str {
        &self.core.cfg.self_id
    }

    /// The commit offset this member knows (bytes below it are on a majority).
    pub fn commit_offset(&self) -> i64 {
        self.core.state.lock().commit
    }

    /// Watch of the commit offset.
    pub fn commit_watch(&self) -> watch::Receiver<i64> {
        self.core.commit_tx.subscribe()
    }

    /// The epoch log (term start offsets), oldest first.
    pub fn epochs(&self) -> Vec<Epoch> {
        self.core.state.lock().epochs.entries().to_vec()
    }

    /// Whether the broker may append to its store now: this member leads, holds its lease
    /// and is not handing leadership over. Check before every `put_message`; a write made
    /// while not writable is never acknowledged and is truncated by the next leader.
    pub fn is_writable(&self) -> bool {
        let core = &self.core;
        if core.is_shutdown.load(Ordering::Acquire) {
            return false;
        }
        let st = core.state.lock();
        st.role == Role::Leader && !st.transferring && core.lease_ok(&st)
    }

    /// Waits until every byte below `end_offset` (the CommitLog end after the broker's append)
    /// is committed, i.e. stored on a majority in this leader's term.
    #[tracing::instrument(level = "debug", skip(self), fields(group = %self.core.cfg.group))]
    pub async fn wait_committed(
        &self,
        end_offset: i64,
        timeout: Duration,
    ) -> Result<(), CommitError> {
        let core = &self.core;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut role_rx = core.role_tx.subscribe();
        let mut commit_rx = core.commit_tx.subscribe();
        let mut shutdown_rx = core.shutdown_tx.subscribe();
        if core.is_shutdown.load(Ordering::Acquire) {
            return Err(CommitError::ShutDown);
        }
        let term = {
            let st = core.state.lock();
            if st.role != Role::Leader {
                return Err(CommitError::NotLeader {
                    leader: st.leader_id.clone(),
                });
            }
            st.hs.term
        };
        loop {
            if core.is_shutdown.load(Ordering::Acquire) {
                return Err(CommitError::ShutDown);
            }
            let commit = {
                let mut st = core.state.lock();
                if st.hs.term != term || st.role != Role::Leader {
                    return Err(match st.stepped_down {
                        Some((t, StepDown::LeaseExpired)) if t == term => CommitError::LeaseExpired,
                        Some((t, StepDown::Shutdown)) if t == term => CommitError::ShutDown,
                        _ => CommitError::NotLeader {
                            leader: st.leader_id.clone(),
                        },
                    });
                }
                if core.cfg.quorum() == 1 {
                    core.recompute_commit(&mut st);
                }
                if st.commit >= end_offset {
                    return Ok(());
                }
                if !core.lease_ok(&st) {
                    return Err(CommitError::LeaseExpired);
                }
                st.commit
            };
            tokio::select! {
                _ = role_rx.changed() => {}
                _ = commit_rx.changed() => {}
                _ = shutdown_rx.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(CommitError::Timeout { end_offset, commit, timeout });
                }
            }
        }
    }

    /// Hands leadership to `to`: stops taking writes, waits until `to` has the whole log, tells
    /// it to campaign at once (Raft's TimeoutNow) and waits until it leads.
    #[tracing::instrument(skip(self), fields(group = %self.core.cfg.group, from = %self.core.cfg.self_id))]
    pub async fn transfer_leadership(
        &self,
        to: &str,
        timeout: Duration,
    ) -> Result<(), TransferError> {
        let core = &self.core;
        if !core.cfg.peers.iter().any(|p| p.id == to) {
            return Err(TransferError::UnknownPeer(to.to_string()));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut role_rx = core.role_tx.subscribe();
        let term = {
            let mut st = core.state.lock();
            if st.role != Role::Leader {
                return Err(TransferError::NotLeader {
                    leader: st.leader_id.clone(),
                });
            }
            if to == core.cfg.self_id {
                return Ok(());
            }
            st.transferring = true;
            st.hs.term
        };
        let result = self.do_transfer(to, term, deadline, &mut role_rx).await;
        if result.is_err() {
            let mut st = core.state.lock();
            if st.hs.term == term {
                st.transferring = false;
            }
        }
        result.map_err(|e| match e {
            TransferError::Timeout { to, .. } => TransferError::Timeout { to, timeout },
            e => e,
        })
    }

    async fn do_transfer(
        &self,
        to: &str,
        term: u64,
        deadline: tokio::time::Instant,
        role_rx: &mut watch::Receiver<RoleState>,
    ) -> Result<(), TransferError> {
        let core = &self.core;
        let timeout_err = || TransferError::Timeout {
            to: to.to_string(),
            timeout: Duration::ZERO,
        };
        let tick = core.tick();
        // 1. Wait until the target has everything.
        loop {
            {
                let st = core.state.lock();
                if st.hs.term != term || st.role != Role::Leader {
                    return Err(TransferError::NotLeader {
                        leader: st.leader_id.clone(),
                    });
                }
                let end = core.store.commitlog_max_offset();
                if st.progress.get(to).is_some_and(|p| p.matched >= end) {
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(timeout_err());
            }
            tokio::time::sleep(tick).await;
        }
        // 2. Tell it to campaign now.
        let Some(client) = core.vote_clients.get(to) else {
            return Err(TransferError::UnknownPeer(to.to_string()));
        };
        let req = Request::TimeoutNow {
            term,
            leader: core.cfg.self_id.clone(),
        };
        // A call can fail on a connection that the target's last restart closed; the next
        // call dials anew, so a transport error is retried until the deadline.
        loop {
            match client.call(&req).await {
                Ok(Response::TimeoutNow { accepted: true, .. }) => break,
                Ok(other) => {
                    tracing::warn!(?other, "transfer target refused TimeoutNow");
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "TimeoutNow failed; retrying"),
            }
            {
                let st = core.state.lock();
                if st.hs.term != term || st.role != Role::Leader {
                    return Err(TransferError::NotLeader {
                        leader: st.leader_id.clone(),
                    });
                }
            }
            if core.is_shutdown.load(Ordering::Acquire) {
                return Err(TransferError::ShutDown);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(timeout_err());
            }
            tokio::time::sleep(tick).await;
        }
        // 3. Wait until it leads.
        loop {
            {
                let r = role_rx.borrow_and_update();
                if r.term > term && r.leader_id.as_deref() == Some(to) {
                    return Ok(());
                }
            }
            if core.is_shutdown.load(Ordering::Acquire) {
                return Err(TransferError::ShutDown);
            }
            tokio::select! {
                _ = role_rx.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return Err(timeout_err()),
            }
        }
    }

    /// Membership changes are not supported; always refuses with a clear error.
    pub fn change_membership(&self, _peers: &[crate::config::Peer]) -> Result<(), MembershipError> {
        Err(MembershipError::Unsupported)
    }

    /// Stops the member: steps down, closes the listener and every connection, stops all
    /// tasks. Does not touch the store (the broker shuts it down).
    pub async fn shutdown(&self) {
        let handles = self.core.begin_shutdown();
        // Tasks watch the shutdown flag and end on their own (the server closes every peer
        // connection); one stuck in an RPC is aborted after the RPC timeout.
        let grace = self.core.cfg.rpc_timeout;
        for mut h in handles {
            if tokio::time::timeout(grace, &mut h).await.is_err() {
                h.abort();
                let _ = h.await;
            }
        }
    }
}

impl Drop for DLedger {
    fn drop(&mut self) {
        for h in self.core.begin_shutdown() {
            h.abort();
        }
    }
}

impl Core {
    fn tick(&self) -> Duration {
        (self.cfg.heartbeat_interval / 5).clamp(Duration::from_millis(5), Duration::from_millis(50))
    }

    fn begin_shutdown(&self) -> Vec<JoinHandle<()>> {
        if !self.is_shutdown.swap(true, Ordering::AcqRel) {
            let _ = self.shutdown_tx.send(true);
            let mut st = self.state.lock();
            if st.role == Role::Leader {
                let term = st.hs.term;
                st.stepped_down = Some((term, StepDown::Shutdown));
            }
            st.role = Role::Follower;
            st.leader_id = None;
            st.progress.clear();
            self.publish(&st);
            drop(st);
            for c in self.repl_clients.values().chain(self.vote_clients.values()) {
                c.close();
            }
            tracing::info!(group = %self.cfg.group, id = %self.cfg.self_id, "dledger member stopped");
        }
        std::mem::take(&mut *self.tasks.lock())
    }

    fn spawn(self: &Arc<Self>, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        // Checked under the task lock: `begin_shutdown` sets the flag before taking the list,
        // so a task is either refused here or aborted there.
        let mut tasks = self.tasks.lock();
        if self.is_shutdown.load(Ordering::Acquire) {
            return;
        }
        tasks.retain(|t| !t.is_finished());
        tasks.push(tokio::spawn(fut));
    }

    fn lease_ok(&self, st: &State) -> bool {
        self.majority_heard_within(st, self.cfg.lease)
    }

    /// Whether a majority (this member included) answered requests sent within `d`.
    fn majority_heard_within(&self, st: &State, d: Duration) -> bool {
        let acks: Vec<Option<Instant>> = st.progress.values().map(|p| p.last_ack).collect();
        lease_holds(&acks, self.cfg.quorum(), d, Instant::now())
    }

    fn publish(&self, st: &State) {
        let rs = RoleState {
            role: st.role,
            term: st.hs.term,
            leader_id: st.leader_id.clone(),
        };
        let changed = self.role_tx.send_if_modified(|cur| {
            if *cur == rs {
                false
            } else {
                *cur = rs.clone();
                true
            }
        });
        if changed {
            tracing::info!(role = ?rs.role, term = rs.term, leader = ?rs.leader_id, "role changed");
            let _ = self.role_events.send(rs);
        }
    }

    fn reset_election_timer(&self, st: &mut State) {
        st.election_deadline = Instant::now() + random_timeout(&self.cfg);
    }

    fn save_hs(&self, st: &mut State, hs: HardState) -> bool {
        match self.durable.save_hard_state(&hs) {
            Ok(()) => {
                st.hs = hs;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, code = e.code(), "saving term/vote failed");
                false
            }
        }
    }

    /// Moves to follower of `term` (persisting a higher term). Returns false when the term
    /// could not be persisted (the caller must then refuse whatever it was doing).
    fn become_follower(&self, st: &mut State, term: u64, leader: Option<String>) -> bool {
        let old_term = st.hs.term;
        if term > st.hs.term {
            let hs = HardState {
                term,
                voted_for: None,
            };
            if !self.save_hs(st, hs) {
                return false;
            }
        }
        if st.role == Role::Leader {
            // Remembered so that writers waiting in the old term learn why they failed.
            st.stepped_down = Some((old_term, StepDown::HigherTerm));
        }
        if st.role != Role::Follower {
            st.progress.clear();
            st.transferring = false;
        }
        st.role = Role::Follower;
        st.leader_id = leader;
        self.publish(st);
        true
    }

    fn step_down_from_lease(&self, st: &mut State) {
        let term = st.hs.term;
        tracing::warn!(
            term,
            "no majority heard from for an election timeout; stepping down"
        );
        st.stepped_down = Some((term, StepDown::LeaseExpired));
        st.role = Role::Follower;
        st.leader_id = None;
        st.progress.clear();
        st.transferring = false;
        self.reset_election_timer(st);
        self.publish(st);
    }

    fn set_commit(&self, st: &mut State, c: i64) {
        if c > st.commit {
            st.commit = c;
            self.store.set_confirm_offset(c);
            self.commit_tx.send_replace(c);
        }
    }

    fn recompute_commit(&self, st: &mut State) {
        if st.role != Role::Leader {
            return;
        }
        let mut matches = Vec::with_capacity(st.progress.len() + 1);
        matches.push(self.store.commitlog_max_offset());
        matches.extend(st.progress.values().map(|p| p.matched));
        if let Some(c) = next_commit(&matches, self.cfg.quorum(), st.term_start, st.commit) {
            self.set_commit(st, c);
        }
    }

    fn up_to_date(&self, st: &State, last_term: u64, end: i64) -> bool {
        (last_term, end) >= (st.epochs.last_term(), self.store.commitlog_max_offset())
    }

    fn handle_vote(
        self: &Arc<Self>,
        term: u64,
        candidate: String,
        last_term: u64,
        end_offset: i64,
        pre_vote: bool,
        transfer: bool,
    ) -> Response {
        let mut st = self.state.lock();
        let up_to_date = self.up_to_date(&st, last_term, end_offset);
        if pre_vote {
            let sticky = !transfer
                && match st.role {
                    Role::Leader => true,
                    _ => st
                        .last_leader_contact
                        .is_some_and(|t| t.elapsed() < self.cfg.election_timeout_min),
                };
            let granted = term > st.hs.term && up_to_date && !sticky;
            tracing::debug!(%candidate, term, granted, sticky, up_to_date, "pre-vote");
            return Response::Vote {
                term: st.hs.term,
                granted,
            };
        }
        if term < st.hs.term {
            return Response::Vote {
                term: st.hs.term,
                granted: false,
            };
        }
        if term > st.hs.term && !self.become_follower(&mut st, term, None) {
            return Response::Vote {
                term: st.hs.term,
                granted: false,
            };
        }
        let free = st
            .hs
            .voted_for
            .as_deref()
            .is_none_or(|v| v == candidate.as_str());
        let mut granted = false;
        if free && up_to_date {
            let hs = HardState {
                term: st.hs.term,
                voted_for: Some(candidate.clone()),
            };
            granted = self.save_hs(&mut st, hs);
            if granted {
                self.reset_election_timer(&mut st);
            }
        }
        tracing::info!(%candidate, term, granted, up_to_date, "vote");
        Response::Vote {
            term: st.hs.term,
            granted,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_append(
        &self,
        term: u64,
        leader: String,
        prev_offset: i64,
        prev_term: u64,
        epochs: Vec<Epoch>,
        commit: i64,
        data: Bytes,
    ) -> Response {
        let mut st = self.state.lock();
        let failed = |st: &State, code: &str, message: String| Response::Append {
            term: st.hs.term,
            outcome: AppendOutcome::Failed {
                code: code.to_string(),
                message,
            },
        };
        if term < st.hs.term {
            return failed(&st, "DLEDGER_STALE_TERM", format!("term {term} is stale"));
        }
        if (term > st.hs.term
            || st.role != Role::Follower
            || st.leader_id.as_deref() != Some(leader.as_str()))
            && !self.become_follower(&mut st, term, Some(leader))
        {
            return failed(&st, "DLEDGER_PERSIST_IO", "cannot persist term".into());
        }
        st.last_leader_contact = Some(Instant::now());
        self.reset_election_timer(&mut st);
        let end = self.store.commitlog_max_offset();
        if prev_offset > end || st.epochs.term_before(prev_offset) != prev_term {
            let q = prev_offset.min(end).max(0);
            return Response::Append {
                term: st.hs.term,
                outcome: AppendOutcome::Mismatch {
                    end: q,
                    epoch: st.epochs.containing_before(q),
                },
            };
        }
        // Raft's rule: delete only on a real conflict (a different term at the same offset).
        // A repeated or stale append — a retry after a timeout, a request on an old
        // connection processed after a newer one — matches what is held and cuts nothing.
        let req_end = prev_offset + data.len() as i64;
        let conflict = st
            .epochs
            .first_conflict(end, prev_offset, prev_term, &epochs, req_end);
        let keep = conflict.unwrap_or(end);
        if let Some(at) = conflict {
            if at < st.commit {
                tracing::error!(
                    at,
                    commit = st.commit,
                    "leader's log conflicts with committed bytes; refusing"
                );
                return failed(
                    &st,
                    "DLEDGER_TRUNCATE_COMMITTED",
                    format!("conflict at {at} is below commit {}", st.commit),
                );
            }
            tracing::warn!(from = at, end, "truncating conflicting suffix");
            if let Err(e) = self.store.truncate_to(at) {
                tracing::error!(error = %e, "truncate failed");
                return failed(&st, e.code(), e.to_string());
            }
        }
        let mut new_epochs = st.epochs.clone();
        if conflict.is_some() {
            new_epochs.truncate_from(keep);
        }
        // Epochs before `keep` are already here (no conflict before it), and so may be one
        // starting at it.
        for e in epochs.into_iter().filter(|e| e.start >= keep) {
            if new_epochs.entries().contains(&e) {
                continue;
            }
            if let Err(err) = new_epochs.push(e) {
                return failed(&st, err.code(), err.to_string());
            }
        }
        if new_epochs != st.epochs {
            if let Err(e) = self.durable.save_epochs(&new_epochs) {
                tracing::error!(error = %e, "saving epochs failed");
                return failed(&st, e.code(), e.to_string());
            }
            st.epochs = new_epochs;
        }
        // Only the part beyond what is held (and agrees) is written.
        if keep < req_end {
            let skip = usize::try_from(keep - prev_offset).unwrap_or(0);
            if let Some(rest) = data.get(skip..)
                && let Err(e) = self.store.append_raw(keep, rest)
            {
                tracing::error!(error = %e, "append_raw failed");
                return failed(&st, e.code(), e.to_string());
            }
        }
        // Verified up to the append's end (held bytes beyond it are checked by later appends).
        self.set_commit(&mut st, commit.min(req_end));
        Response::Append {
            term: st.hs.term,
            outcome: AppendOutcome::Ok { end: req_end },
        }
    }

    fn handle_timeout_now(self: &Arc<Self>, term: u64, leader: String) -> Response {
        let st = self.state.lock();
        let ok = term == st.hs.term
            && st.role == Role::Follower
            && st.leader_id.as_deref() == Some(leader.as_str());
        let cur = st.hs.term;
        drop(st);
        if ok {
            tracing::info!(%leader, term, "leadership transfer: campaigning now");
            let me = self.clone();
            self.spawn(run_election(me, true));
        }
        Response::TimeoutNow {
            term: cur,
            accepted: ok,
        }
    }

    fn become_leader(self: &Arc<Self>, st: &mut State, acks: HashMap<String, Instant>) {
        if self.is_shutdown.load(Ordering::Acquire) {
            return;
        }
        let term = st.hs.term;
        let end = self.store.commitlog_max_offset();
        let mut epochs = st.epochs.clone();
        if let Err(e) = epochs.push(Epoch { term, start: end }) {
            tracing::error!(error = %e, "cannot open epoch; staying candidate");
            return;
        }
        if let Err(e) = self.durable.save_epochs(&epochs) {
            tracing::error!(error = %e, "saving epochs failed; staying candidate");
            return;
        }
        st.epochs = epochs;
        st.term_start = end;
        st.role = Role::Leader;
        st.leader_id = Some(self.cfg.self_id.clone());
        st.transferring = false;
        st.stepped_down = None;
        st.progress = self
            .cfg
            .others()
            .map(|p| {
                (
                    p.id.clone(),
                    Progress {
                        next: end,
                        matched: 0,
                        probing: true,
                        last_ack: acks.get(&p.id).copied(),
                    },
                )
            })
            .collect();
        tracing::info!(term, start = end, "became leader");
        self.recompute_commit(st);
        self.publish(st);
        for p in self.cfg.others() {
            let span = tracing::info_span!("replicate", group = %self.cfg.group, id = %self.cfg.self_id, peer = %p.id, term);
            self.spawn(run_replicator(self.clone(), p.id.clone(), term).instrument(span));
        }
    }

    /// Sends a vote request to every peer, stopping once `quorum - 1` grants arrived or all
    /// answered. Returns the granting peers with the time the request was sent, and the
    /// highest term seen.
    async fn collect_votes(&self, req: Request) -> (HashMap<String, Instant>, u64) {
        let need = self.cfg.quorum().saturating_sub(1);
        let sent = Instant::now();
        let mut calls: FuturesUnordered<_> = self
            .vote_clients
            .iter()
            .map(|(id, c)| {
                let req = &req;
                async move { (id.clone(), c.call(req).await) }
            })
            .collect();
        let mut granted = HashMap::new();
        let mut max_term = 0;
        while granted.len() < need {
            let Some((id, res)) = calls.next().await else {
                break;
            };
            match res {
                Ok(Response::Vote { term, granted: g }) => {
                    max_term = max_term.max(term);
                    if g {
                        granted.insert(id, sent);
                    }
                }
                Ok(other) => tracing::debug!(peer = %id, ?other, "unexpected vote answer"),
                Err(e) => tracing::debug!(peer = %id, error = %e, "vote request failed"),
            }
        }
        (granted, max_term)
    }

    fn build_append(&self, peer: &str, term: u64) -> Option<Request> {
        let (prev, probing, commit, epochs) = {
            let st = self.state.lock();
            if st.hs.term != term || st.role != Role::Leader {
                return None;
            }
            let p = st.progress.get(peer)?;
            (p.next, p.probing, st.commit, st.epochs.clone())
        };
        let data = if probing {
            Bytes::new()
        } else if prev < self.store.commitlog_min_offset() {
            tracing::error!(
                peer,
                prev,
                min = self.store.commitlog_min_offset(),
                "follower needs bytes retention already deleted; it cannot catch up"
            );
            Bytes::new()
        } else {
            match read_aligned(&self.store, prev, self.cfg.max_append_bytes) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(prev, error = %e, "cannot read the CommitLog for replication");
                    Bytes::new()
                }
            }
        };
        let len = data.len() as i64;
        let req = Request::Append {
            term,
            leader: self.cfg.self_id.clone(),
            prev_offset: prev,
            prev_term: epochs.term_before(prev),
            epochs: epochs.in_range(prev, prev + len),
            commit,
            data,
        };
        Some(req)
    }
}

/// The transport's view of a member.
struct RpcHandler(Arc<Core>);

impl Handler for RpcHandler {
    fn handle(&self, req: Request) -> Response {
        let core = &self.0;
        let _span =
            tracing::debug_span!("rpc", group = %core.cfg.group, id = %core.cfg.self_id).entered();
        if core.is_shutdown.load(Ordering::Acquire) {
            return Response::Error {
                code: "DLEDGER_SHUT_DOWN".into(),
                message: "member is shutting down".into(),
            };
        }
        match req {
            Request::Append {
                term,
                leader,
                prev_offset,
                prev_term,
                epochs,
                commit,
                data,
            } => core.handle_append(term, leader, prev_offset, prev_term, epochs, commit, data),
            Request::Vote {
                term,
                candidate,
                last_term,
                end_offset,
                pre_vote,
                transfer,
            } => core.handle_vote(term, candidate, last_term, end_offset, pre_vote, transfer),
            Request::TimeoutNow { term, leader } => core.handle_timeout_now(term, leader),
        }
    }
}

/// Reads record-aligned bytes from `from`: whole records (and a whole end-of-file blank), at
/// most `max` bytes unless the first record alone is larger, never crossing a file end.
fn read_aligned(store: &MessageStore, from: i64, max: usize) -> Result<Bytes, String> {
    let mut len = 0usize;
    let mut pos = from;
    loop {
        let Some(h) = store.read_raw(pos, 8) else {
            break;
        };
        let Some((size, magic)) = peek_header(&h) else {
            break;
        };
        if size <= 8 || !(magic == MAGIC_V1 || magic == MAGIC_V2 || magic == BLANK_MAGIC) {
            return Err(format!(
                "no record header at {pos} (size {size}, magic {magic:#x})"
            ));
        }
        let size = size as usize;
        if len > 0 && len + size > max {
            break;
        }
        len += size;
        pos += size as i64;
        if magic == BLANK_MAGIC || len >= max {
            break;
        }
    }
    if len == 0 {
        return Ok(Bytes::new());
    }
    match store.read_raw(from, len) {
        Some(b) if b.len() == len => Ok(b),
        Some(b) => Err(format!("short read at {from}: {} of {len} bytes", b.len())),
        None => Err(format!("nothing readable at {from}")),
    }
}

async fn run_ticker(core: Arc<Core>) {
    let mut shutdown = core.shutdown_tx.subscribe();
    let tick = core.tick();
    loop {
        tokio::select! {
            _ = crate::transport::stopped(&mut shutdown) => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let mut st = core.state.lock();
        match st.role {
            Role::Leader => {
                // Writes stop as soon as the lease lapses (`is_writable`, `wait_committed`);
                // the leader itself steps down only when no majority has answered for a whole
                // minimum election timeout (Raft's check-quorum). Stepping down at the lease
                // made a new leader give up at once whenever its first heartbeat round took
                // longer than what was left of its lease — the lease counts from the vote
                // requests, and both ends fsync the new epoch before that round completes —
                // costing the group another election timeout and term.
                if !core.majority_heard_within(&st, core.cfg.election_timeout_min) {
                    core.step_down_from_lease(&mut st);
                }
            }
            Role::Follower | Role::Candidate => {
                if Instant::now() >= st.election_deadline && !st.election_running {
                    core.reset_election_timer(&mut st);
                    drop(st);
                    let span = tracing::info_span!("election", group = %core.cfg.group, id = %core.cfg.self_id);
                    core.spawn(run_election(core.clone(), false).instrument(span));
                }
            }
        }
    }
}

struct ElectionGuard(Arc<Core>);

impl Drop for ElectionGuard {
    fn drop(&mut self) {
        self.0.state.lock().election_running = false;
    }
}

async fn run_election(core: Arc<Core>, transfer: bool) {
    let (term, last_term, end) = {
        let mut st = core.state.lock();
        if st.role == Role::Leader
            || st.election_running
            || core.is_shutdown.load(Ordering::Acquire)
        {
            return;
        }
        st.election_running = true;
        (
            st.hs.term,
            st.epochs.last_term(),
            core.store.commitlog_max_offset(),
        )
    };
    let _guard = ElectionGuard(core.clone());
    let quorum = core.cfg.quorum();
    if !transfer {
        let (granted, _) = core
            .collect_votes(Request::Vote {
                term: term + 1,
                candidate: core.cfg.self_id.clone(),
                last_term,
                end_offset: end,
                pre_vote: true,
                transfer: false,
            })
            .await;
        if granted.len() + 1 < quorum {
            tracing::debug!(granted = granted.len(), "pre-vote lost");
            return;
        }
    }
    let new_term = {
        let mut st = core.state.lock();
        if st.hs.term != term || st.role == Role::Leader || core.is_shutdown.load(Ordering::Acquire)
        {
            return;
        }
        // A leader appeared while we were pre-voting.
        if !transfer
            && st
                .last_leader_contact
                .is_some_and(|t| t.elapsed() < core.cfg.election_timeout_min)
        {
            return;
        }
        let hs = HardState {
            term: term + 1,
            voted_for: Some(core.cfg.self_id.clone()),
        };
        if !core.save_hs(&mut st, hs) {
            return;
        }
        st.role = Role::Candidate;
        st.leader_id = None;
        core.reset_election_timer(&mut st);
        core.publish(&st);
        tracing::info!(term = term + 1, transfer, "campaigning");
        term + 1
    };
    let (last_term, end) = {
        let st = core.state.lock();
        (st.epochs.last_term(), core.store.commitlog_max_offset())
    };
    let (granted, max_term) = core
        .collect_votes(Request::Vote {
            term: new_term,
            candidate: core.cfg.self_id.clone(),
            last_term,
            end_offset: end,
            pre_vote: false,
            transfer,
        })
        .await;
    let mut st = core.state.lock();
    if max_term > st.hs.term {
        core.become_follower(&mut st, max_term, None);
        return;
    }
    if st.hs.term == new_term && st.role == Role::Candidate && granted.len() + 1 >= quorum {
        core.become_leader(&mut st, granted);
    } else {
        tracing::debug!(granted = granted.len(), "election lost");
    }
}

async fn run_replicator(core: Arc<Core>, peer: String, term: u64) {
    let Some(client) = core.repl_clients.get(&peer).cloned() else {
        return;
    };
    let mut store_rx = core.store.new_message_notifier();
    let mut commit_rx = core.commit_tx.subscribe();
    let mut shutdown = core.shutdown_tx.subscribe();
    let hb = core.cfg.heartbeat_interval;
    loop {
        let Some(req) = core.build_append(&peer, term) else {
            return;
        };
        let Request::Append {
            commit: sent_commit,
            ..
        } = &req
        else {
            return;
        };
        let sent_commit = *sent_commit;
        let sent_at = Instant::now();
        let res = client.call(&req).await;
        let mut backoff = false;
        {
            let mut st = core.state.lock();
            if st.hs.term != term || st.role != Role::Leader {
                return;
            }
            match res {
                Err(e) => {
                    tracing::debug!(error = %e, code = e.code(), "append failed");
                    if let Some(p) = st.progress.get_mut(&peer) {
                        p.probing = true;
                    }
                    backoff = true;
                }
                Ok(Response::Append { term: t, outcome }) => {
                    if t > term {
                        tracing::info!(peer_term = t, "peer has a higher term; stepping down");
                        core.become_follower(&mut st, t, None);
                        core.reset_election_timer(&mut st);
                        return;
                    }
                    let leader_end = core.store.commitlog_max_offset();
                    let epochs = st.epochs.clone();
                    let Some(p) = st.progress.get_mut(&peer) else {
                        return;
                    };
                    p.last_ack = Some(p.last_ack.map_or(sent_at, |a| a.max(sent_at)));
                    match outcome {
                        AppendOutcome::Ok { end } => {
                            p.matched = end;
                            p.next = end;
                            p.probing = false;
                            core.recompute_commit(&mut st);
                        }
                        AppendOutcome::Mismatch { end, epoch } => {
                            let next = epochs.divergence_point(leader_end, end, epoch);
                            tracing::info!(
                                follower_end = end,
                                ?epoch,
                                next,
                                "log mismatch; probing"
                            );
                            p.next = next;
                            p.probing = true;
                        }
                        AppendOutcome::Failed { code, message } => {
                            tracing::warn!(%code, %message, "follower could not apply append");
                            p.probing = true;
                            backoff = true;
                        }
                    }
                }
                Ok(Response::Error { code, message }) => {
                    tracing::warn!(%code, %message, "peer refused append");
                    backoff = true;
                }
                Ok(other) => {
                    tracing::warn!(?other, "unexpected answer to append");
                    backoff = true;
                }
            }
        }
        let idle = {
            let st = core.state.lock();
            let end = core.store.commitlog_max_offset();
            match st.progress.get(&peer) {
                Some(p) => backoff || (!p.probing && p.next >= end && sent_commit >= st.commit),
                None => return,
            }
        };
        if idle {
            let wake = tokio::time::Instant::from_std(sent_at) + hb;
            tokio::select! {
                _ = crate::transport::stopped(&mut shutdown) => return,
                _ = tokio::time::sleep_until(wake) => {}
                _ = store_rx.changed(), if !backoff => {}
                _ = commit_rx.changed(), if !backoff => {}
            }
        }
    }
}

//! DLedger mode in the broker: the brokers of one broker name form a Raft group
//! (`flotilla-dledger`) whose log is this broker's CommitLog.
//!
//! # Why this module exists
//!
//! The engine replicates bytes and elects a leader; the broker has to turn that into
//! RocketMQ behaviour, which is what this module does:
//!
//! * **Config** ([`DLedgerKeys`]): `enableDLegerCommitLog`, `dLegerGroup` (default
//!   `brokerName`), `dLegerPeers` (`n0-host:port;…`, split on the first `-`),
//!   `dLegerSelfId` (must be a peer), plus Flotilla's tuning keys
//!   `flotillaDLegerElectionTimeoutMills` (minimum; the maximum is twice it),
//!   `flotillaDLegerHeartbeatIntervalMills`, `flotillaDLegerLeaseMills` and
//!   `flotillaDLegerCommitTimeoutMills` (how long a send waits for a majority, default 2500
//!   ms like Java DLedger). As in Java, `brokerId` is forced to -1.
//! * **Role** ([`DLedgerRuntime::effective_role`]): leader → SYNC_MASTER with brokerId 0;
//!   follower or candidate → SLAVE with brokerId `1 + index of dLegerSelfId in dLegerPeers`
//!   (stable and distinct per member, so the nameserver, which keeps one id per address,
//!   replaces this address's old id-0 entry when the member re-registers as a slave).
//!   [`run_role_watch`] re-registers with every nameserver as soon as the role flips and logs
//!   one `dledger role change` line per transition.
//! * **Writes** ([`DLedgerGate`]): a send is refused *before* it is appended unless the engine
//!   says this member may write (leader, lease held, no transfer running) — a follower's
//!   CommitLog has exactly one writer, the engine. After the append the send waits until a
//!   majority holds the bytes; losing leadership or the lease while waiting answers
//!   SERVICE_NOT_AVAILABLE (the client retries elsewhere after a route refresh), a
//!   majority that does not answer in time answers FLUSH_SLAVE_TIMEOUT (the write may still
//!   commit).
//! * **Reads**: the store runs with a strict confirm offset (unset = nothing confirmed) and
//!   every member's engine sets it to the commit offset it knows; pulls, GET_MAX_OFFSET and
//!   delayed delivery read below it ([`crate::broker::Broker::read_bound`]), so no consumer
//!   ever sees bytes a new leader could truncate. Held pulls are woken when the commit
//!   offset moves (the store's arrival notification fires at append time, before commit).
//! * **Metadata** ([`run_metadata_follow`]): topics, subscription groups, consumer offsets
//!   and delay offsets live in each member's config files, not in the replicated log, so a
//!   follower copies them from the leader's broker (remoting) address every
//!   `flotillaSlaveSyncIntervalMills` and at once when the leader changes, with the classic
//!   slave's sync (`crate::ha::metadata_sync`). The leader's broker address is not its
//!   DLedger peer address (that is the Raft port): candidates are the REGISTER_BROKER
//!   reply's `masterAddr`, then every address the nameservers list for this broker name
//!   (id 0 first), and one is used only when its GET_BROKER_RUNTIME_INFO says it is
//!   `LEADER` with the `dLegerSelfId` our engine knows as leader — a stale nameserver entry
//!   or an old leader can never overwrite a follower's tables. The leader owns its
//!   metadata and never syncs; a follower that is elected keeps what it copied last, so a
//!   failover loses at most one interval of offset commits (those messages are redelivered).
//! * **Leadership transfer**: FLOTILLA_TRANSFER_LEADERSHIP (see `processor::admin`).
//!
//! Classic HA (`crate::ha`) does not start in this mode.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotilla_dledger::{CommitError, DLedger, DLedgerConfig, Peer, Role, RoleState};
use flotilla_remoting::protocol::{ClusterInfo, KVTable, decode_body};
use flotilla_remoting::{
    ClientConfig, RemotingClient, RemotingCommand, request_code, response_code,
};
use tokio::sync::watch;

use crate::broker::Broker;
use crate::config::{BrokerRole, ConfigError};
use crate::replication::{BoxFuture, GateOutcome, ReplicationGate};

/// How long a send waits for a majority by default (Java DLedger's 2500 ms).
pub const DEFAULT_COMMIT_TIMEOUT: Duration = Duration::from_millis(2500);

/// The DLedger keys of `broker.conf`, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct DLedgerKeys {
    /// `dLegerGroup` (default: `brokerName`).
    pub group: String,
    /// `dLegerSelfId`.
    pub self_id: String,
    /// `dLegerPeers`, parsed.
    pub peers: Vec<Peer>,
    /// Minimum election timeout (`flotillaDLegerElectionTimeoutMills`; maximum = 2×).
    pub election_timeout: Duration,
    /// Leader heartbeat (`flotillaDLegerHeartbeatIntervalMills`).
    pub heartbeat_interval: Duration,
    /// Leader lease (`flotillaDLegerLeaseMills`).
    pub lease: Duration,
    /// How long a send waits for a majority (`flotillaDLegerCommitTimeoutMills`).
    pub commit_timeout: Duration,
}

fn invalid(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

impl DLedgerKeys {
    /// Parses the keys; `raw(key)` gives the trimmed value or the key's default.
    pub fn parse(raw: impl Fn(&str) -> String, broker_name: &str) -> Result<Self, ConfigError> {
        let ms = |key: &str| -> Result<Option<Duration>, ConfigError> {
            let v = raw(key);
            if v.is_empty() {
                return Ok(None);
            }
            match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(Duration::from_millis(n))),
                _ => Err(invalid(key, &v, "milliseconds (a positive integer)")),
            }
        };
        let group = Some(raw("dLegerGroup"))
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| broker_name.to_string());
        let peers_raw = raw("dLegerPeers");
        let peers = flotilla_dledger::parse_peers(&peers_raw).map_err(|e| {
            invalid(
                "dLegerPeers",
                &peers_raw,
                &format!("id-host:port entries separated by ';' ({e})"),
            )
        })?;
        let self_id = raw("dLegerSelfId");
        if self_id.is_empty() {
            return Err(ConfigError::Inconsistent(
                "enableDLegerCommitLog=true needs dLegerSelfId".into(),
            ));
        }
        if !peers.iter().any(|p| p.id == self_id) {
            let ids: Vec<&str> = peers.iter().map(|p| p.id.as_str()).collect();
            return Err(ConfigError::Inconsistent(format!(
                "dLegerSelfId {self_id} is not one of the dLegerPeers ids {ids:?}"
            )));
        }
        let election_timeout =
            ms("flotillaDLegerElectionTimeoutMills")?.unwrap_or(Duration::from_millis(1000));
        let heartbeat_interval = ms("flotillaDLegerHeartbeatIntervalMills")?
            .unwrap_or_else(|| (election_timeout / 5).min(Duration::from_millis(200)));
        let lease = ms("flotillaDLegerLeaseMills")?.unwrap_or(election_timeout * 4 / 5);
        let commit_timeout =
            ms("flotillaDLegerCommitTimeoutMills")?.unwrap_or(DEFAULT_COMMIT_TIMEOUT);
        let keys = DLedgerKeys {
            group,
            self_id,
            peers,
            election_timeout,
            heartbeat_interval,
            lease,
            commit_timeout,
        };
        keys.engine_config(Path::new("."))
            .validate()
            .map_err(|e| ConfigError::Inconsistent(format!("DLedger settings: {e}")))?;
        Ok(keys)
    }

    /// The engine configuration (its `listen` is left unset; see [`listen_addr`]).
    pub fn engine_config(&self, data_dir: &Path) -> DLedgerConfig {
        let mut c = DLedgerConfig::new(
            self.group.clone(),
            self.self_id.clone(),
            self.peers.clone(),
            data_dir,
        );
        c.election_timeout_min = self.election_timeout;
        c.election_timeout_max = self.election_timeout * 2;
        c.heartbeat_interval = self.heartbeat_interval;
        c.lease = self.lease;
        c.rpc_timeout = self.election_timeout.min(Duration::from_millis(1000));
        c
    }

    /// The brokerId this member registers with while it follows: `1 + index in peers`.
    pub fn slave_id(&self) -> i64 {
        let idx = self
            .peers
            .iter()
            .position(|p| p.id == self.self_id)
            .unwrap_or(0);
        i64::try_from(idx).unwrap_or(0) + 1
    }

    /// This member's peer address (`host:port`).
    pub fn self_addr(&self) -> Option<&str> {
        self.peers
            .iter()
            .find(|p| p.id == self.self_id)
            .map(|p| p.addr.as_str())
    }
}

/// Where the engine listens: the host of this member's peer entry when it is an IP
/// address, else `brokerIP1` (a host name is not resolved here: in Kubernetes it names
/// this pod, whose own address is `brokerIP1`), on the entry's port. Never the wildcard
/// unless one of those says so.
pub fn listen_addr(keys: &DLedgerKeys, broker_ip1: &str) -> Result<SocketAddr, ConfigError> {
    let entry = keys.self_addr().unwrap_or_default();
    let bad = || invalid("dLegerPeers", entry, "this member's entry as host:port");
    let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let ip: std::net::IpAddr = broker_ip1
        .parse()
        .map_err(|_| invalid("brokerIP1", broker_ip1, "an IP address"))?;
    Ok(SocketAddr::new(ip, port))
}

/// The running engine plus what the broker derives from it.
pub struct DLedgerRuntime {
    /// The engine.
    pub engine: DLedger,
    role_rx: watch::Receiver<RoleState>,
    slave_id: i64,
    commit_timeout: Duration,
}

impl std::fmt::Debug for DLedgerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DLedgerRuntime")
            .field("engine", &self.engine)
            .field("slave_id", &self.slave_id)
            .finish()
    }
}

/// The broker role and id a DLedger role maps to.
pub fn broker_role_of(role: Role, slave_id: i64) -> (BrokerRole, i64) {
    match role {
        Role::Leader => (BrokerRole::SyncMaster, 0),
        Role::Follower | Role::Candidate => (BrokerRole::Slave, slave_id),
    }
}

/// Java DLedger's names of the roles (`dLegerRole` in runtime info).
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "LEADER",
        Role::Follower => "FOLLOWER",
        Role::Candidate => "CANDIDATE",
    }
}

impl DLedgerRuntime {
    /// Wraps a started engine.
    pub fn new(engine: DLedger, keys: &DLedgerKeys) -> Arc<Self> {
        let role_rx = engine.role();
        Arc::new(Self {
            engine,
            role_rx,
            slave_id: keys.slave_id(),
            commit_timeout: keys.commit_timeout,
        })
    }

    /// The engine's current role, term and leader.
    pub fn role_state(&self) -> RoleState {
        self.role_rx.borrow().clone()
    }

    /// The broker role and id this member has now.
    pub fn effective_role(&self) -> (BrokerRole, i64) {
        broker_role_of(self.role_rx.borrow().role, self.slave_id)
    }

    /// Whether a send may be appended now.
    pub fn is_writable(&self) -> bool {
        self.engine.is_writable()
    }
}

/// Outcome of waiting for a majority, as the send path sees it.
pub fn gate_outcome(r: Result<(), CommitError>) -> GateOutcome {
    match r {
        Ok(()) => GateOutcome::Ok,
        Err(CommitError::Timeout { .. }) => GateOutcome::FlushSlaveTimeout,
        Err(CommitError::NotLeader { .. } | CommitError::LeaseExpired | CommitError::ShutDown) => {
            GateOutcome::NotLeader
        }
    }
}

/// The DLedger [`ReplicationGate`]: a send is acknowledged once a majority holds it.
pub struct DLedgerGate {
    dl: Arc<DLedgerRuntime>,
}

impl DLedgerGate {
    /// A gate over `dl`.
    pub fn new(dl: Arc<DLedgerRuntime>) -> Self {
        Self { dl }
    }
}

impl ReplicationGate for DLedgerGate {
    fn after_append(&self, end_offset: i64) -> BoxFuture<'_, GateOutcome> {
        Box::pin(async move {
            let r = self
                .dl
                .engine
                .wait_committed(end_offset, self.dl.commit_timeout)
                .await;
            if let Err(e) = &r {
                tracing::warn!(end_offset, error = %e, code = e.code(), "send not committed by a majority");
            }
            gate_outcome(r)
        })
    }

    fn before_append(&self) -> bool {
        self.dl.is_writable()
    }
}

/// Follows the engine's role: re-registers with every nameserver as soon as this member
/// becomes or stops being the leader, wakes held pulls when the commit offset moves, and
/// logs every transition (`dledger role change`, with role and term).
pub async fn run_role_watch(b: Arc<Broker>, dl: Arc<DLedgerRuntime>) {
    let mut roles = dl.engine.role_events();
    let mut commit = dl.engine.commit_watch();
    let mut was_master: Option<bool> = None;
    let mut apply = |rs: &RoleState, b: &Broker| {
        let (role, id) = broker_role_of(rs.role, dl.slave_id);
        tracing::info!(
            dledger_role = role_name(rs.role),
            term = rs.term,
            leader = ?rs.leader_id,
            broker_role = role.name(),
            broker_id = id,
            "dledger role change"
        );
        let master = rs.role == Role::Leader;
        if was_master != Some(master) {
            was_master = Some(master);
            b.registrar.trigger();
            b.long_polling.wake_all();
        }
    };
    let initial = dl.role_state();
    apply(&initial, &b);
    loop {
        tokio::select! {
            () = b.stop.cancelled() => return,
            ev = roles.recv() => match ev {
                Ok(rs) => apply(&rs, &b),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let rs = dl.role_state();
                    apply(&rs, &b);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            r = commit.changed() => {
                if r.is_err() {
                    return;
                }
                b.long_polling.wake_all();
            }
        }
    }
}

/// Why a follower could not copy the leader's metadata this round (logged; retried).
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// No leader is known (an election is running).
    #[error("no DLedger leader is known yet")]
    NoLeader,
    /// No candidate address answered as the leader our engine knows.
    #[error("no broker address answers as DLedger leader {leader} (tried {tried:?})")]
    LeaderNotFound {
        /// The leader's DLedger id.
        leader: String,
        /// Addresses asked.
        tried: Vec<String>,
    },
    /// Fetching or applying the tables failed.
    #[error(transparent)]
    Sync(#[from] crate::ha::HaError),
}

impl FollowError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoLeader => "DLEDGER_NO_LEADER",
            Self::LeaderNotFound { .. } => "DLEDGER_LEADER_ADDR_NOT_FOUND",
            Self::Sync(e) => e.code(),
        }
    }
}

const FOLLOW_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the broker at `addr` says it is the DLedger leader `leader` of our group.
async fn answers_as_leader(client: &RemotingClient, addr: &str, leader: &str) -> bool {
    let r = client
        .invoke(
            addr,
            RemotingCommand::request(request_code::GET_BROKER_RUNTIME_INFO),
            FOLLOW_CALL_TIMEOUT,
        )
        .await;
    let Ok(r) = r else {
        client.close_addr(addr);
        return false;
    };
    if r.code != response_code::SUCCESS {
        return false;
    }
    let Ok(kv) = decode_body::<KVTable>(&r.body) else {
        return false;
    };
    kv.table.get("dLegerRole").map(String::as_str) == Some("LEADER")
        && kv.table.get("dLegerSelfId").map(String::as_str) == Some(leader)
}

/// The addresses the nameservers list for `broker_name` (id order: the master first).
async fn nameserver_addrs(client: &RemotingClient, b: &Broker, broker_name: &str) -> Vec<String> {
    for ns in &b.config().namesrv_addr {
        let r = client
            .invoke(
                ns,
                RemotingCommand::request(request_code::GET_BROKER_CLUSTER_INFO),
                FOLLOW_CALL_TIMEOUT,
            )
            .await;
        match r {
            Ok(r) if r.code == response_code::SUCCESS => {
                if let Ok(ci) = decode_body::<ClusterInfo>(&r.body) {
                    return ci
                        .broker_addr_table
                        .get(broker_name)
                        .map(|bd| bd.broker_addrs.values().cloned().collect())
                        .unwrap_or_default();
                }
            }
            Ok(_) => {}
            Err(_) => client.close_addr(ns),
        }
    }
    Vec::new()
}

/// Finds the current leader's broker address (see the module docs), trying `cached` first.
async fn find_leader_addr(
    client: &RemotingClient,
    b: &Broker,
    leader: &str,
    cached: Option<&str>,
) -> Result<String, FollowError> {
    let cfg = b.config();
    let me = cfg.broker_addr();
    let mut tried: Vec<String> = Vec::new();
    let mut candidates: Vec<String> = cached.map(str::to_string).into_iter().collect();
    candidates.extend(b.ha.master_addr());
    let mut asked_ns = false;
    loop {
        while let Some(addr) = candidates.first().cloned() {
            candidates.remove(0);
            if addr == me || tried.contains(&addr) {
                continue;
            }
            tried.push(addr.clone());
            if answers_as_leader(client, &addr, leader).await {
                return Ok(addr);
            }
        }
        if asked_ns {
            return Err(FollowError::LeaderNotFound {
                leader: leader.to_string(),
                tried,
            });
        }
        asked_ns = true;
        candidates = nameserver_addrs(client, b, &cfg.broker_name).await;
    }
}

/// One follower round: find the leader's broker, fetch its tables, apply them unless this
/// member became the leader meanwhile. Returns the leader's address.
async fn follow_once(
    b: &Broker,
    dl: &DLedgerRuntime,
    client: &RemotingClient,
    cached: Option<&str>,
) -> Result<String, FollowError> {
    let Some(leader) = dl.role_state().leader_id else {
        return Err(FollowError::NoLeader);
    };
    let addr = find_leader_addr(client, b, &leader, cached).await?;
    let snap = crate::ha::metadata_sync::fetch_all(client, &addr, true).await;
    let snap = snap.inspect_err(|_| client.close_addr(&addr))?;
    if dl.role_state().role == Role::Leader {
        // Elected while fetching: this member's tables are the truth now.
        return Ok(addr);
    }
    let changed = crate::ha::metadata_sync::apply(b, &addr, &snap)?;
    if changed > 0 {
        tracing::info!(changed, leader = %leader, addr = %addr, "metadata synced from the DLedger leader");
    }
    Ok(addr)
}

/// While this member follows, copies the leader's topics, subscription groups, consumer
/// offsets and delay offsets every `flotillaSlaveSyncIntervalMills` and whenever the role
/// or the leader changes; the leader does nothing (it owns its metadata).
pub async fn run_metadata_follow(b: Arc<Broker>, dl: Arc<DLedgerRuntime>) {
    let client = RemotingClient::new(ClientConfig {
        connect_timeout: Duration::from_secs(1),
        ..ClientConfig::default()
    });
    // The leader may have ACL on: sign as the broker (`innerClientAuthenticationCredentials`).
    client.set_credentials(b.config().inner_credentials.clone());
    let mut roles = dl.engine.role_events();
    let mut leader_addr: Option<String> = None;
    let mut failing = false;
    loop {
        let rs = dl.role_state();
        let mut period = b.ha.config().metadata_sync_interval;
        if rs.role == Role::Leader {
            leader_addr = None;
        } else {
            match follow_once(&b, &dl, &client, leader_addr.as_deref()).await {
                Ok(addr) => {
                    if failing {
                        tracing::info!(leader = %addr, "metadata sync from the DLedger leader works again");
                    }
                    failing = false;
                    leader_addr = Some(addr);
                    b.ha.metadata_synced(true);
                }
                Err(e) => {
                    if !failing && !matches!(e, FollowError::NoLeader) {
                        tracing::warn!(error = %e, code = e.code(), "metadata sync from the DLedger leader failed");
                    }
                    failing = true;
                    leader_addr = None;
                    b.ha.metadata_synced(false);
                    // The leader is probably just being elected or registered: retry soon.
                    period = period.min(Duration::from_millis(500));
                }
            }
        }
        tokio::select! {
            () = b.stop.cancelled() => return,
            ev = roles.recv() => {
                if matches!(ev, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
            () = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;

    const PEERS: &str = "n0-127.0.0.1:40911;n1-my-host.ns.svc:40912;n2-127.0.0.1:40913";

    #[test]
    fn keys_parse_and_force_broker_id() {
        let c = BrokerConfig::parse(&format!(
            "brokerName=RaftNode00\nbrokerId=3\nbrokerRole=ASYNC_MASTER\n\
             enableDLegerCommitLog=true\ndLegerPeers={PEERS}\ndLegerSelfId=n1\n"
        ))
        .unwrap();
        assert_eq!(c.broker_id, -1);
        assert_eq!(c.broker_role, BrokerRole::Slave);
        let k = c.dledger.clone().unwrap();
        assert_eq!(k.group, "RaftNode00");
        assert_eq!(k.self_id, "n1");
        assert_eq!(k.peers[1].addr, "my-host.ns.svc:40912");
        assert_eq!(k.slave_id(), 2);
        assert_eq!(k.commit_timeout, DEFAULT_COMMIT_TIMEOUT);
        assert!(c.unknown_keys().is_empty(), "{:?}", c.unknown_keys());
        let e = k.engine_config(Path::new("/tmp/x"));
        assert_eq!(e.election_timeout_max, 2 * e.election_timeout_min);
        assert!(e.validate().is_ok());
        assert_eq!(e.listen, None);
    }

    #[test]
    fn tuning_keys_and_group() {
        let c = BrokerConfig::parse(&format!(
            "enableDLegerCommitLog=true\ndLegerGroup=g1\ndLegerPeers={PEERS}\ndLegerSelfId=n2\n\
             flotillaDLegerElectionTimeoutMills=400\nflotillaDLegerHeartbeatIntervalMills=50\n\
             flotillaDLegerLeaseMills=300\nflotillaDLegerCommitTimeoutMills=900\n"
        ))
        .unwrap();
        let k = c.dledger.unwrap();
        assert_eq!(k.group, "g1");
        assert_eq!(k.election_timeout, Duration::from_millis(400));
        assert_eq!(k.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(k.lease, Duration::from_millis(300));
        assert_eq!(k.commit_timeout, Duration::from_millis(900));
        // Only the election timeout given: heartbeat and lease derive from it.
        let c = BrokerConfig::parse(&format!(
            "enableDLegerCommitLog=true\ndLegerPeers={PEERS}\ndLegerSelfId=n0\n\
             flotillaDLegerElectionTimeoutMills=300\n"
        ))
        .unwrap();
        let k = c.dledger.unwrap();
        assert!(k.engine_config(Path::new(".")).validate().is_ok());
    }

    #[test]
    fn bad_keys_fail_clearly() {
        let e = BrokerConfig::parse(&format!(
            "enableDLegerCommitLog=true\ndLegerPeers={PEERS}\ndLegerSelfId=n7\n"
        ))
        .unwrap_err();
        assert_eq!(e.code(), "CONFIG_INCONSISTENT");
        assert!(e.to_string().contains("n7"), "{e}");
        let e = BrokerConfig::parse("enableDLegerCommitLog=true\ndLegerPeers=n0:127.0.0.1:1\n")
            .unwrap_err();
        assert!(e.to_string().contains("dLegerPeers"), "{e}");
        let e = BrokerConfig::parse(&format!(
            "enableDLegerCommitLog=true\ndLegerPeers={PEERS}\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("dLegerSelfId"), "{e}");
        let e = BrokerConfig::parse(&format!(
            "enableDLegerCommitLog=true\ndLegerPeers={PEERS}\ndLegerSelfId=n0\n\
             flotillaDLegerElectionTimeoutMills=300\nflotillaDLegerLeaseMills=500\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("lease"), "{e}");
        let e = BrokerConfig::parse("enableDLegerCommitLog=maybe").unwrap_err();
        assert!(e.to_string().contains("enableDLegerCommitLog"), "{e}");
        // Off: the classic checks still apply.
        assert!(BrokerConfig::parse("brokerRole=SLAVE\nbrokerId=0").is_err());
        assert!(BrokerConfig::default().dledger.is_none());
    }

    #[test]
    fn listen_address_comes_from_the_peer_entry() {
        let c = BrokerConfig::parse(&format!(
            "enableDLegerCommitLog=true\ndLegerPeers={PEERS}\ndLegerSelfId=n2\n"
        ))
        .unwrap();
        let k = c.dledger.unwrap();
        assert_eq!(
            listen_addr(&k, "10.0.0.1").unwrap(),
            "127.0.0.1:40913".parse::<SocketAddr>().unwrap()
        );
        let mut k2 = k.clone();
        k2.self_id = "n1".into();
        // A host name: brokerIP1 on the entry's port.
        assert_eq!(
            listen_addr(&k2, "10.0.0.1").unwrap(),
            "10.0.0.1:40912".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn roles_map_to_broker_ids() {
        assert_eq!(broker_role_of(Role::Leader, 2), (BrokerRole::SyncMaster, 0));
        assert_eq!(broker_role_of(Role::Follower, 2), (BrokerRole::Slave, 2));
        assert_eq!(broker_role_of(Role::Candidate, 3), (BrokerRole::Slave, 3));
        assert_eq!(role_name(Role::Candidate), "CANDIDATE");
    }

    #[test]
    fn commit_errors_map_to_send_outcomes() {
        assert_eq!(gate_outcome(Ok(())), GateOutcome::Ok);
        assert_eq!(
            gate_outcome(Err(CommitError::NotLeader { leader: None })),
            GateOutcome::NotLeader
        );
        assert_eq!(
            gate_outcome(Err(CommitError::LeaseExpired)),
            GateOutcome::NotLeader
        );
        assert_eq!(
            gate_outcome(Err(CommitError::Timeout {
                end_offset: 1,
                commit: 0,
                timeout: Duration::from_millis(1)
            })),
            GateOutcome::FlushSlaveTimeout
        );
    }
}

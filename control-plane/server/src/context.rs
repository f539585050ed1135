//! The shared context every part of the control plane works from: the store, the fenced
//! writer, leadership, the reflector cache, the agent sessions and the configuration.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flotilla_intent_store::{Compare, IntentStore, Op, Txn, TxnResponse};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::fenced::{WriteError, Writer};
use crate::leader::LeaderHandle;
use crate::sessions::Sessions;

/// One write of [`Ctx::commit`]: key → value, `None` = delete.
pub type Write = (String, Option<Vec<u8>>);

/// Tunables of one control-plane process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Name other replicas and clients know this one by (the election value; reported as
    /// `leader` in NOT_LEADER errors).
    pub advertise: String,
    /// A node whose agent sent no report for this long turns NotReady; also the TTL of the
    /// node's observed-state lease.
    pub node_heartbeat_timeout: Duration,
    /// Every cluster is reconciled at least this often.
    pub resync_interval: Duration,
    /// TTL of the leader lease.
    pub leader_lease_ttl: Duration,
    /// Clusters reconciled in parallel (one reconcile per cluster at a time regardless).
    pub reconcile_workers: usize,
    /// Default timeout of commands sent to agents.
    pub command_timeout: Duration,
    /// A follower forwards API calls and agent streams to the leader ([`crate::forward`]);
    /// off, it answers writes and agent streams `NOT_LEADER` itself.
    pub forward_to_leader: bool,
    /// TLS and authentication of the port ([`crate::security`]).
    pub security: crate::security::Security,
    /// Also serve gRPC health alone, plaintext, on this `host:port` (Kubernetes' gRPC probes
    /// cannot speak TLS).
    pub health_listen: Option<String>,
    /// Audit records kept in the store ([`crate::audit`]); older ones are removed.
    pub audit_retention: usize,
    /// Serve Prometheus metrics (`GET /metrics`, plaintext HTTP) on this `host:port`.
    pub metrics_listen: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            advertise: "127.0.0.1:7443".into(),
            node_heartbeat_timeout: Duration::from_secs(15),
            resync_interval: Duration::from_secs(60),
            leader_lease_ttl: Duration::from_secs(5),
            reconcile_workers: 2,
            command_timeout: Duration::from_secs(30),
            forward_to_leader: true,
            security: crate::security::Security::Insecure,
            health_listen: None,
            audit_retention: crate::audit::DEFAULT_RETENTION,
            metrics_listen: None,
        }
    }
}

/// Counters for tests, benchmarks and logs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Reconciles run.
    pub reconciles: AtomicU64,
    /// Reconciles that wrote something.
    pub reconcile_writes: AtomicU64,
    /// Desired-state keys written.
    pub desired_writes: AtomicU64,
    /// Cluster status writes.
    pub status_writes: AtomicU64,
    /// DesiredState messages pushed to agents.
    pub desired_pushes: AtomicU64,
}

impl Stats {
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }

    /// Bumps a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::SeqCst);
    }
}

/// The shared context.
pub struct Ctx {
    /// The store.
    pub store: Arc<dyn IntentStore>,
    /// Fenced writes.
    pub writer: Writer,
    /// Leadership.
    pub leader: LeaderHandle,
    /// The reflector.
    pub cache: Arc<Cache>,
    /// Connected agents.
    pub sessions: Sessions,
    /// Configuration.
    pub config: Config,
    /// Process shutdown.
    pub shutdown: CancellationToken,
    /// Counters.
    pub stats: Stats,
    /// Prometheus metrics ([`crate::metrics`]).
    pub metrics: crate::metrics::CpMetrics,
    /// config_hash → restart_hash of every instance this process rendered, so an observed
    /// hash can be classified as "only online keys differ" (no restart needed).
    pub restart_hashes: Mutex<HashMap<String, String>>,
}

impl Ctx {
    /// Commits `writes` (key → value, `None` = delete) under `compares`, fenced; on success
    /// applies them to the cache at once. `extra` ops (e.g. request records) are added to
    /// the success branch; `failure` ops to the failure branch.
    pub async fn commit(
        &self,
        compares: Vec<Compare>,
        writes: Vec<Write>,
        failure: Vec<Op>,
    ) -> Result<TxnResponse, WriteError> {
        let ops = writes.iter().map(|(k, v)| match v {
            Some(v) => Op::put(k.clone(), v.clone()),
            None => Op::delete(k.clone()),
        });
        let txn = Txn::new().when(compares).and_then(ops).or_else(failure);
        let resp = self.writer.txn(txn).await?;
        self.cache.apply(&writes, resp.revision);
        Ok(resp)
    }

    /// Remembers a rendered instance's hashes.
    pub fn remember_hashes(&self, config_hash: &str, restart_hash: &str) {
        let mut m = self.restart_hashes.lock();
        if m.len() > 200_000 {
            m.clear();
        }
        m.insert(config_hash.to_string(), restart_hash.to_string());
    }

    /// The restart hash of a config hash this process rendered.
    pub fn restart_hash_of(&self, config_hash: &str) -> Option<String> {
        self.restart_hashes.lock().get(config_hash).cloned()
    }
}

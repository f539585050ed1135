//! Leader election: which control-plane replica may act, and its epoch.
//!
//! Replicas sharing one store campaign on [`keys::LEADER_ELECTION`] with their advertise name;
//! the winner's key create revision is the **epoch** (principle 4). The leader keeps its lease
//! alive every `ttl/3` and steps down on its *local* deadline (Patroni/horaedb style) before
//! the store would expire the key, when told to ([`LeaderHandle::step_down`], e.g. an agent
//! has seen a higher epoch), or when a fenced write finds the key gone. After stepping down it
//! waits one TTL and campaigns again, so another replica gets its chance; a later win always
//! has a higher epoch.
//!
//! Everything leader-only (reconciler, agent sessions, intent writes) reads the current
//! [`LeaderKey`] from the handle; the fencing compare in [`crate::fenced`] makes a stale view
//! harmless.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flotilla_intent_store::{IntentStore, LeaderKey, StoreError, keys};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

/// Errors of the election loop (logged and retried, never surfaced to clients).
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The store failed while campaigning or renewing.
    #[error("election store error: {0}")]
    Store(#[from] StoreError),
}

impl LeaderError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            LeaderError::Store(e) => e.code(),
        }
    }
}

struct Inner {
    store: Arc<dyn IntentStore>,
    state: watch::Sender<Option<LeaderKey>>,
    step_down: Notify,
    step_downs: AtomicU64,
    name: String,
}

/// Shared view of this replica's leadership.
#[derive(Clone)]
pub struct LeaderHandle {
    inner: Arc<Inner>,
}

impl LeaderHandle {
    fn new(store: Arc<dyn IntentStore>, name: String, initial: Option<LeaderKey>) -> Self {
        let (state, _) = watch::channel(initial);
        Self {
            inner: Arc::new(Inner {
                store,
                state,
                step_down: Notify::new(),
                step_downs: AtomicU64::new(0),
                name,
            }),
        }
    }

    /// A handle that believes it holds `key` and never campaigns: for tests of fencing (a
    /// control plane coming back with a stale view).
    pub fn pinned(store: Arc<dyn IntentStore>, name: String, key: LeaderKey) -> Self {
        Self::new(store, name, Some(key))
    }

    /// The leadership this replica believes it holds.
    pub fn current(&self) -> Option<LeaderKey> {
        self.inner.state.borrow().clone()
    }

    /// The current epoch, when leader.
    pub fn epoch(&self) -> Option<i64> {
        self.inner.state.borrow().as_ref().map(LeaderKey::epoch)
    }

    /// Follows leadership changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<LeaderKey>> {
        self.inner.state.subscribe()
    }

    /// This replica's advertise name (the election value).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How many times this replica stepped down.
    pub fn step_downs(&self) -> u64 {
        self.inner.step_downs.load(Ordering::SeqCst)
    }

    /// Stops acting as leader now (the election loop resigns and campaigns again later).
    pub fn step_down(&self, reason: &str) {
        let was = self.inner.state.send_replace(None);
        if let Some(key) = was {
            warn!(epoch = key.epoch(), reason, "stepping down");
            self.inner.step_downs.fetch_add(1, Ordering::SeqCst);
            self.inner.step_down.notify_one();
        }
    }

    /// The current leader's name, read from the store (for NOT_LEADER errors).
    pub async fn leader_name(&self) -> Option<String> {
        match self.inner.store.leader(keys::LEADER_ELECTION).await {
            Ok(Some(l)) => String::from_utf8(l.value).ok(),
            _ => None,
        }
    }

    fn set(&self, key: Option<LeaderKey>) {
        self.inner.state.send_replace(key);
    }
}

/// Starts the election loop; it runs until `shutdown`, then resigns.
pub fn spawn(
    store: Arc<dyn IntentStore>,
    name: String,
    ttl: Duration,
    shutdown: CancellationToken,
) -> LeaderHandle {
    let handle = LeaderHandle::new(store.clone(), name.clone(), None);
    let h = handle.clone();
    tokio::spawn(
        async move {
            let mut failures = 0u32;
            loop {
                if shutdown.is_cancelled() {
                    break;
                }
                match term(&store, &h, &name, ttl, &shutdown).await {
                    Ok(()) => failures = 0,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        warn!(error = %e, code = e.code(), "election attempt failed");
                    }
                }
                h.set(None);
                if shutdown.is_cancelled() {
                    break;
                }
                // Give the other replicas a chance (and back off on errors).
                let wait = crate::backoff::delay(failures, Duration::from_millis(200), ttl);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait.max(ttl / 2)) => {}
                }
            }
        }
        .instrument(info_span!("election")),
    );
    handle
}

/// One term: grant a lease, campaign, lead until the lease is lost, a step-down is asked or
/// shutdown; then resign and revoke.
async fn term(
    store: &Arc<dyn IntentStore>,
    h: &LeaderHandle,
    name: &str,
    ttl: Duration,
    shutdown: &CancellationToken,
) -> Result<(), LeaderError> {
    let ttl_secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(5);
    let lease = store.lease_grant(ttl_secs).await?;
    let lost = CancellationToken::new();
    let keeper = tokio::spawn(keep_alive(
        store.clone(),
        lease.id,
        Duration::from_secs(u64::try_from(lease.ttl.max(1)).unwrap_or(5)),
        lost.clone(),
    ));
    let result = async {
        let key = tokio::select! {
            r = store.campaign(keys::LEADER_ELECTION, name.as_bytes().to_vec(), lease.id) => r?,
            _ = lost.cancelled() => return Ok(()),
            _ = shutdown.cancelled() => return Ok(()),
        };
        info!(epoch = key.epoch(), "elected leader");
        h.set(Some(key.clone()));
        tokio::select! {
            _ = h.inner.step_down.notified() => {}
            _ = lost.cancelled() => warn!("leader lease lost"),
            _ = shutdown.cancelled() => {}
        }
        h.set(None);
        if let Err(e) = store.resign(&key).await {
            warn!(error = %e, "resign failed");
        }
        Ok(())
    }
    .await;
    keeper.abort();
    if let Err(e) = store.lease_revoke(lease.id).await
        && !matches!(e, StoreError::LeaseNotFound(_))
    {
        warn!(error = %e, "lease revoke failed");
    }
    result
}

/// Renews the lease every `ttl/3`; cancels `lost` when the store says it is gone or when the
/// local deadline (last success + ttl − margin) passes.
async fn keep_alive(
    store: Arc<dyn IntentStore>,
    lease: flotilla_intent_store::LeaseId,
    ttl: Duration,
    lost: CancellationToken,
) {
    let period = (ttl / 3).max(Duration::from_millis(100));
    let margin = ttl / 6;
    let mut deadline = Instant::now() + ttl - margin;
    loop {
        tokio::time::sleep(period).await;
        match store.lease_keep_alive(lease).await {
            Ok(granted) if granted > 0 => {
                let granted = Duration::from_secs(u64::try_from(granted).unwrap_or(1));
                deadline = Instant::now() + granted.saturating_sub(margin);
            }
            Ok(_) | Err(StoreError::LeaseNotFound(_)) => {
                lost.cancel();
                return;
            }
            Err(e) => {
                warn!(error = %e, "lease keep-alive failed");
                if Instant::now() >= deadline {
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

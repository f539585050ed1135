//! The reflector: an in-memory copy of the store's Flotilla keys, kept current by one prefix
//! watch (list, then watch from the listed revision + 1; re-list on compaction).
//!
//! The reconciler and the agent sessions read this copy instead of the store, so a reconcile
//! of one cluster over a thousand nodes costs no store reads. Writers apply what they
//! committed right away ([`Cache::apply`]), so the next reconcile sees its own writes even
//! before the watch delivers them; the watch then re-applies them harmlessly (a value is only
//! replaced by a newer revision). Every applied change is announced to subscribers as a
//! [`Change`], which is what wakes the level-triggered reconciler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_intent_store::{EventKind, IntentStore, RangeRequest, StoreError, keys};
use flotilla_proto::agent::v1::{DesiredState, Report};
use flotilla_proto::v1::{Cluster, Node, Operation};
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

/// A cached value and the revision it was written at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    /// The decoded value.
    pub value: T,
    /// Its `mod_revision` (the etag).
    pub mod_revision: i64,
}

/// Everything the control plane keeps under `/flotilla/v1/`.
#[derive(Debug, Default, Clone)]
pub struct State {
    /// Clusters by name.
    pub clusters: BTreeMap<String, Versioned<Cluster>>,
    /// Node registrations by node name.
    pub nodes: BTreeMap<String, Versioned<Node>>,
    /// Desired states by node name.
    pub desired: BTreeMap<String, Versioned<DesiredState>>,
    /// Last reports by node name.
    pub observed: BTreeMap<String, Versioned<Report>>,
    /// Operations by id.
    pub operations: BTreeMap<String, Versioned<Operation>>,
    /// Highest revision applied.
    pub revision: i64,
    /// Revision at which each key was last deleted (so a late event cannot resurrect it).
    deleted: BTreeMap<String, i64>,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A cluster was written or deleted.
    Cluster(String),
    /// A node registration was written or deleted.
    Node(String),
    /// A node's desired state was written or deleted.
    Desired(String),
    /// A node's observed state was written or deleted (report or lease expiry).
    Observed(String),
    /// An operation was written or deleted.
    Operation(String),
    /// The cache was re-listed: anything may have changed.
    All,
}

/// Errors of the reflector (logged; the reflector re-lists).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl CacheError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            CacheError::Store(e) => e.code(),
        }
    }
}

/// The shared cache.
pub struct Cache {
    state: RwLock<State>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Change>>>,
    ready: watch::Sender<bool>,
}

fn upsert<T: Message + Default>(
    map: &mut BTreeMap<String, Versioned<T>>,
    name: &str,
    value: Option<&[u8]>,
    rev: i64,
) -> bool {
    if map.get(name).is_some_and(|v| v.mod_revision >= rev) {
        return false;
    }
    match value {
        Some(bytes) => match T::decode(bytes) {
            Ok(v) => {
                map.insert(
                    name.to_string(),
                    Versioned {
                        value: v,
                        mod_revision: rev,
                    },
                );
                true
            }
            Err(e) => {
                warn!(name, error = %e, "undecodable record skipped");
                false
            }
        },
        None => map.remove(name).is_some(),
    }
}

impl State {
    /// Applies one write (`None` = delete); returns the change if anything changed.
    fn apply(&mut self, key: &str, value: Option<&[u8]>, rev: i64) -> Option<Change> {
        self.revision = self.revision.max(rev);
        if value.is_some() && self.deleted.get(key).is_some_and(|d| *d >= rev) {
            return None;
        }
        if value.is_none() {
            self.deleted.insert(key.to_string(), rev);
        } else {
            self.deleted.remove(key);
        }
        if let Some(name) = keys::name_under(keys::CLUSTERS, key) {
            return upsert(&mut self.clusters, name, value, rev)
                .then(|| Change::Cluster(name.to_string()));
        }
        if let Some(nk) = keys::parse_node_key(key) {
            return match nk {
                keys::NodeKey::Node(n) => {
                    upsert(&mut self.nodes, n, value, rev).then(|| Change::Node(n.to_string()))
                }
                keys::NodeKey::Desired(n) => {
                    upsert(&mut self.desired, n, value, rev).then(|| Change::Desired(n.to_string()))
                }
            };
        }
        if let Some(name) = keys::name_under(keys::OBSERVED, key) {
            return upsert(&mut self.observed, name, value, rev)
                .then(|| Change::Observed(name.to_string()));
        }
        if let Some(name) = keys::name_under(keys::OPERATIONS, key) {
            return upsert(&mut self.operations, name, value, rev)
                .then(|| Change::Operation(name.to_string()));
        }
        None
    }
}

impl Cache {
    /// An empty, not yet ready cache.
    pub fn new() -> Arc<Self> {
        let (ready, _) = watch::channel(false);
        Arc::new(Self {
            state: RwLock::new(State::default()),
            subscribers: Mutex::new(Vec::new()),
            ready,
        })
    }

    /// Reads the state under a lock (keep the closure short and synchronous).
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read())
    }

    /// Subscribes to changes.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Change> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.lock().push(tx);
        rx
    }

    /// Waits until the first listing is loaded.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    fn notify(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let mut subs = self.subscribers.lock();
        subs.retain(|s| changes.iter().all(|c| s.send(c.clone()).is_ok()));
    }

    /// Applies writes this process committed at `rev` (`None` = delete).
    pub fn apply(&self, writes: &[(String, Option<Vec<u8>>)], rev: i64) {
        let changes: Vec<Change> = {
            let mut st = self.state.write();
            writes
                .iter()
                .filter_map(|(k, v)| st.apply(k, v.as_deref(), rev))
                .collect()
        };
        self.notify(changes);
    }

    async fn relist(&self, store: &Arc<dyn IntentStore>) -> Result<i64, CacheError> {
        let mut fresh = State::default();
        let mut req = RangeRequest::prefix(keys::ROOT).with_limit(1000);
        let mut first_rev = 0;
        loop {
            let resp = store.range(req.clone()).await?;
            if first_rev == 0 {
                first_rev = resp.revision;
            }
            for kv in &resp.kvs {
                fresh.apply(&kv.key, Some(&kv.value), kv.mod_revision);
            }
            match resp.next_page(&req) {
                Some(n) => req = n,
                None => break,
            }
        }
        fresh.revision = fresh.revision.max(first_rev);
        fresh.deleted.clear();
        *self.state.write() = fresh;
        self.ready.send_replace(true);
        self.notify(vec![Change::All]);
        Ok(first_rev)
    }

    /// Runs the reflector until `shutdown`.
    pub fn spawn(self: &Arc<Self>, store: Arc<dyn IntentStore>, shutdown: CancellationToken) {
        let cache = self.clone();
        tokio::spawn(
            async move {
                let mut failures = 0u32;
                loop {
                    let r = tokio::select! {
                        r = cache.list_and_watch(&store) => r,
                        _ = shutdown.cancelled() => return,
                    };
                    if let Err(e) = r {
                        failures = failures.saturating_add(1);
                        warn!(error = %e, code = e.code(), "reflector restarting");
                    } else {
                        failures = 0;
                    }
                    let wait = crate::backoff::delay(
                        failures,
                        Duration::from_millis(100),
                        Duration::from_secs(5),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
            .instrument(info_span!("reflector")),
        );
    }

    async fn list_and_watch(&self, store: &Arc<dyn IntentStore>) -> Result<(), CacheError> {
        let rev = self.relist(store).await?;
        let mut events = store.watch(keys::ROOT, rev + 1).await?;
        while let Some(ev) = events.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(StoreError::Compacted { .. }) => {
                    debug!("watch compacted; re-listing");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let change = {
                let mut st = self.state.write();
                match ev.kind {
                    EventKind::Put => st.apply(&ev.kv.key, Some(&ev.kv.value), ev.kv.mod_revision),
                    EventKind::Delete => st.apply(&ev.kv.key, None, ev.kv.mod_revision),
                }
            };
            if let Some(c) = change {
                self.notify(vec![c]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_revisions_win_and_deletes_stick() {
        let mut st = State::default();
        let c = Cluster::default().encode_to_vec();
        let key = "/flotilla/v1/clusters/a";
        assert_eq!(
            st.apply(key, Some(&c), 5),
            Some(Change::Cluster("a".into()))
        );
        assert_eq!(st.apply(key, Some(&c), 4), None);
        assert_eq!(st.apply(key, None, 6), Some(Change::Cluster("a".into())));
        assert_eq!(st.apply(key, Some(&c), 5), None);
        assert!(st.clusters.is_empty());
        assert_eq!(
            st.apply("/flotilla/v1/nodes/n1/desired", Some(&[]), 7),
            Some(Change::Desired("n1".into()))
        );
        assert_eq!(st.apply("/flotilla/v1/requests/x", Some(&[]), 8), None);
    }
}

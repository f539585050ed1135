//! The embedded backend: the default store, durable on one machine (`--store embedded:<dir>`).
//!
//! Like kine's SQLite mode it gives a single-server deployment etcd's semantics without an
//! etcd cluster: a redb file (`<dir>/intent.redb`) holds the keys, a revision log for
//! watch-from-revision, the counters and the leases (see [`engine`] for the tables). There is
//! no high availability: one process opens the directory at a time (a second open fails with
//! `Storage`), and that process is the only writer.
//!
//! Semantics that differ from etcd only where one machine makes them moot:
//!
//! - **Election** goes through the same recipe as on etcd ([`crate::election`]); with a single
//!   writer a campaign succeeds at once unless another candidate key still exists.
//! - **Leases on reopen** ([`LeasesOnReopen`]): by default each lease found on disk gets a fresh
//!   full TTL from the moment of opening, as etcd does when a new leader takes over. A holder
//!   that is still around (there is none after a crash of the only process) may keep it alive;
//!   otherwise it expires one TTL after the restart and its keys are deleted with delete
//!   events. [`LeasesOnReopen::Expire`] instead ends them during open, which lets a restarted
//!   single control plane win the election without waiting for its old candidate key.
//! - **Lease ids** are sequential (persisted counter), never reused.
//! - **Epochs** grow across restarts because revisions are persisted and the epoch is the
//!   leader key's create revision.
//!
//! Blocking work (redb commits fsync) runs on tokio's blocking pool; the lease-expiry task and
//! the watch tasks hold the engine weakly and stop when the store is dropped.

mod codec;
mod engine;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{Notify, oneshot};
use tokio::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, info_span, warn};

use self::engine::Engine;
use crate::error::{Result, StoreError};
use crate::store::{IntentStore, WatchStream};
use crate::types::{
    KeyValue, Lease, LeaseId, LeaseInfo, RangeRequest, RangeResponse, Txn, TxnResponse,
};

/// File name of the database inside the store directory.
pub const DB_FILE: &str = "intent.redb";

/// What happens, on open, to leases that were live when the store was last closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeasesOnReopen {
    /// Each lease gets a fresh full TTL (etcd's behaviour on leader change).
    #[default]
    Renew,
    /// Every lease ends during open; attached keys are deleted (with delete events).
    Expire,
}

/// Options of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Lease handling on reopen.
    pub leases_on_reopen: LeasesOnReopen,
    /// How many revisions the live fan-out buffers per watcher before a slow watcher falls
    /// back to catching up from the revision log (default 1024).
    pub fanout_capacity: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            leases_on_reopen: LeasesOnReopen::default(),
            fanout_capacity: 1024,
        }
    }
}

/// The embedded [`IntentStore`]. Must be created inside a tokio runtime.
pub struct EmbeddedStore {
    engine: Arc<Engine>,
    dir: PathBuf,
    /// Wakes the expiry task when a lease is granted or renewed (its deadline may move).
    lease_changed: Arc<Notify>,
    /// Dropping this stops the expiry task.
    _stop: oneshot::Sender<()>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("embedded store task failed: {e}")))?
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, EmbeddedOptions::default()).await
    }

    /// Opens (creating if needed) the store in `dir`.
    pub async fn open_with(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let span = info_span!("embedded_open", dir = %dir.display());
        let d = dir.clone();
        let engine = blocking(move || {
            std::fs::create_dir_all(&d).map_err(|e| {
                StoreError::Storage(format!("create store directory {}: {e}", d.display()))
            })?;
            let (engine, leases) = Engine::open(&d.join(DB_FILE), options.fanout_capacity)?;
            if options.leases_on_reopen == LeasesOnReopen::Expire {
                engine.expire_now(&leases)?;
            }
            Ok(engine)
        })
        .instrument(span)
        .await?;
        let engine = Arc::new(engine);
        let lease_changed = Arc::new(Notify::new());
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(expiry_loop(
            Arc::downgrade(&engine),
            lease_changed.clone(),
            stopped,
        ));
        Ok(Self {
            engine,
            dir,
            lease_changed,
            _stop: stop,
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Ends leases when their deadline passes. Sleeps until the earliest deadline, or until a
/// lease changes, or until the store is dropped.
async fn expiry_loop(engine: Weak<Engine>, changed: Arc<Notify>, mut stop: oneshot::Receiver<()>) {
    loop {
        let Some(e) = engine.upgrade() else { return };
        let next = match blocking(move || e.expire_due()).await {
            Ok(next) => next,
            Err(err) => {
                // Retry soon: a failing disk must not leave leases immortal.
                warn!(error = %err, "lease expiry failed");
                Some(Instant::now() + Duration::from_millis(500))
            }
        };
        let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut stop => return,
            _ = changed.notified() => {}
            _ = tokio::time::sleep_until(sleep_until) => {}
        }
    }
}

impl IntentStore for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>>> {
        let engine = self.engine.clone();
        let k = key.to_string();
        Box::pin(blocking(move || engine.get(&k)).instrument(info_span!("store_get", key)))
    }

    fn range(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse>> {
        let engine = self.engine.clone();
        let span = info_span!("store_range", prefix = %req.prefix, limit = req.limit);
        Box::pin(blocking(move || engine.range(&req)).instrument(span))
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>> {
        let engine = self.engine.clone();
        let span = info_span!(
            "store_txn",
            compares = txn.compares.len(),
            success = txn.success.len(),
            failure = txn.failure.len()
        );
        Box::pin(blocking(move || engine.txn(&txn)).instrument(span))
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: i64,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        Box::pin(async move {
            let rx = watch::start(&self.engine, prefix.to_string(), from_revision).await?;
            Ok(ReceiverStream::new(rx).boxed())
        })
    }

    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<()>> {
        let engine = self.engine.clone();
        Box::pin(
            blocking(move || engine.compact(revision))
                .instrument(info_span!("store_compact", revision)),
        )
    }

    fn lease_grant(&self, ttl_secs: i64) -> BoxFuture<'_, Result<Lease>> {
        let engine = self.engine.clone();
        let changed = self.lease_changed.clone();
        Box::pin(
            async move {
                let lease = blocking(move || engine.lease_grant(ttl_secs)).await?;
                changed.notify_one();
                Ok(lease)
            }
            .instrument(info_span!("lease_grant", ttl = ttl_secs)),
        )
    }

    fn lease_keep_alive(&self, id: LeaseId) -> BoxFuture<'_, Result<i64>> {
        let engine = self.engine.clone();
        Box::pin(
            blocking(move || engine.lease_keep_alive(id))
                .instrument(info_span!("lease_keep_alive", lease = %id)),
        )
    }

    fn lease_revoke(&self, id: LeaseId) -> BoxFuture<'_, Result<()>> {
        let engine = self.engine.clone();
        Box::pin(
            blocking(move || engine.lease_revoke(id))
                .instrument(info_span!("lease_revoke", lease = %id)),
        )
    }

    fn lease_time_to_live(&self, id: LeaseId) -> BoxFuture<'_, Result<LeaseInfo>> {
        let engine = self.engine.clone();
        Box::pin(blocking(move || engine.lease_time_to_live(id)))
    }
}

//! The `IntentStore` trait: one narrow interface with etcd's semantics.
//!
//! The control plane holds an `Arc<dyn IntentStore>` and never learns which backend it talks
//! to (principle 8 of `DESIGN.md`). The trait is therefore object-safe: methods return boxed
//! futures ([`BoxFuture`]) and watches return a boxed stream ([`WatchStream`]), so no
//! `async-trait` macro is needed and every backend implements exactly the same signatures.
//!
//! What every backend promises (checked by the conformance suite in `tests/conformance.rs`):
//!
//! - **Revisions.** One counter over the keyspace, starting at 1 on an empty store. Each
//!   transaction that writes bumps it by exactly one; reads and failed compares do not.
//! - **Transactions** are atomic and serialisable: compares and operations see one state.
//! - **Watches** deliver every change under a prefix with revision `>= from_revision`, in
//!   revision order, without gaps, first replaying history and then streaming live changes.
//!   When `watch` returns, the watch is registered: any later write is delivered. A start
//!   revision older than the compaction point yields `Err(StoreError::Compacted)` as the
//!   stream's item and ends the stream; so does a watcher that fell so far behind that the
//!   history it needs was compacted meanwhile. Callers then re-list and watch from the listed
//!   revision + 1. Other errors (transport) also end the stream.
//! - **Leases** expire `ttl` seconds after the last keep-alive (etcd may take up to about a
//!   second more); expiry or revoke deletes the attached keys at one revision, and watchers
//!   see the deletes.
//! - **Election** uses etcd's concurrency recipe (see [`crate::election`]); the winner's key
//!   revision is the control-plane epoch.

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::election::{self, Leader, LeaderKey};
use crate::error::Result;
use crate::types::{
    KeyValue, Lease, LeaseId, LeaseInfo, Op, OpResponse, RangeRequest, RangeResponse, Txn,
    TxnResponse, WatchEvent,
};

/// The stream a watch returns: events in revision order, or one final error.
pub type WatchStream = BoxStream<'static, Result<WatchEvent>>;

/// etcd's data model and guarantees, behind one object-safe trait. See the module docs.
pub trait IntentStore: Send + Sync + 'static {
    /// Which backend this is (`"embedded"` or `"etcd"`), for logs and status pages.
    fn backend(&self) -> &'static str;

    /// Reads one key.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>>>;

    /// Lists keys under a prefix, optionally paged.
    fn range(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse>>;

    /// Runs a transaction atomically.
    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>>;

    /// Watches every key under `prefix` from `from_revision` (inclusive); `0` means "changes
    /// after now". See the module docs for the compaction contract.
    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: i64,
    ) -> BoxFuture<'a, Result<WatchStream>>;

    /// Drops history before `revision`: watches from an older revision get
    /// [`StoreError::Compacted`](crate::StoreError). Compacting at or below the current
    /// compaction point yields `Compacted`; above the current revision, `FutureRevision`.
    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<()>>;

    /// Grants a lease of `ttl_secs` seconds (at least 1).
    fn lease_grant(&self, ttl_secs: i64) -> BoxFuture<'_, Result<Lease>>;

    /// Renews a lease once; returns its TTL in seconds, or `LeaseNotFound` when it has
    /// already expired or been revoked. Call it about every `ttl / 3`.
    fn lease_keep_alive(&self, id: LeaseId) -> BoxFuture<'_, Result<i64>>;

    /// Ends a lease now, deleting its keys (watchers see the deletes). `LeaseNotFound` when
    /// it is already gone.
    fn lease_revoke(&self, id: LeaseId) -> BoxFuture<'_, Result<()>>;

    /// Remaining TTL and attached keys of a lease; `LeaseNotFound` when it is gone.
    fn lease_time_to_live(&self, id: LeaseId) -> BoxFuture<'_, Result<LeaseInfo>>;

    // ===== provided =====

    /// Puts one key (without compares); returns the write's revision.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            let resp = self
                .txn(Txn::new().and_then([Op::Put {
                    key: key.to_string(),
                    value,
                    lease,
                }]))
                .await?;
            Ok(resp.revision)
        })
    }

    /// Deletes one key; returns whether it existed.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let resp = self.txn(Txn::new().and_then([Op::delete(key)])).await?;
            Ok(matches!(
                resp.responses.first(),
                Some(OpResponse::Delete { deleted }) if *deleted > 0
            ))
        })
    }

    /// Campaigns in election `name` with `value`, holding candidacy with `lease`; resolves
    /// once elected. The returned key's `revision` is the epoch. See [`crate::election`].
    fn campaign<'a>(
        &'a self,
        name: &'a str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> BoxFuture<'a, Result<LeaderKey>> {
        Box::pin(election::campaign(self, name, value, lease))
    }

    /// The current leader of election `name`, if any.
    fn leader<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Leader>>> {
        Box::pin(election::leader(self, name))
    }

    /// Gives up leadership (deletes the leader key if it is still ours).
    fn resign<'a>(&'a self, leader: &'a LeaderKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(election::resign(self, leader))
    }
}

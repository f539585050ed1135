//! Leader election and fencing, written once over the [`IntentStore`] primitives.
//!
//! The recipe is etcd's `concurrency.Election`, so both backends behave identically and a
//! control plane on etcd interoperates with `etcdctl elect`:
//!
//! 1. A candidate puts `<name>/<lease-hex>` with its lease, only if absent (a repeated
//!    campaign with the same lease re-uses the key and updates its value).
//! 2. Candidates are ordered by `create_revision`; the oldest is the leader. A candidate waits
//!    until every key under `<name>/` with a smaller create revision is deleted (resigned,
//!    revoked or expired), watching its immediate predecessor only.
//! 3. The leader's key create revision is the **epoch**. It only grows: revisions are
//!    persisted by both backends, so a later leader (even after a restart) has a higher one.
//!
//! Fencing: every intent write is guarded by [`LeaderKey::fence`], a compare that the leader
//! key still exists with the epoch's create revision. A deposed leader (lease expired, or it
//! resigned) fails the compare, whatever its in-memory view says.
//!
//! A campaign that is dropped before it resolves leaves its candidate key behind until the
//! lease ends; callers that abandon a campaign should revoke the lease (as etcd's clients do).
//!
//! In embedded mode there is a single writer, so a campaign succeeds at once unless another
//! candidate key is still held (e.g. by a lease that survived a restart; see
//! [`crate::embedded`]).

use futures::StreamExt;
use tracing::{Instrument, debug, info_span};

use crate::error::{Result, StoreError};
use crate::store::IntentStore;
use crate::types::{Compare, EventKind, KeyValue, LeaseId, Op, RangeRequest, Txn};

/// Proof of leadership: the winning candidate key and its create revision (the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderKey {
    /// The election name (a key prefix without trailing `/`).
    pub name: String,
    /// The candidate key, `<name>/<lease-hex>`.
    pub key: String,
    /// The key's create revision: the epoch.
    pub revision: i64,
    /// The lease holding the key.
    pub lease: LeaseId,
}

impl LeaderKey {
    /// The epoch of this leadership (the key's create revision).
    pub fn epoch(&self) -> i64 {
        self.revision
    }

    /// The compare that holds only while this leadership lasts. Add it to every intent write
    /// (or use [`Txn::fenced_by`]).
    pub fn fence(&self) -> Compare {
        Compare::CreateRevision(self.key.clone(), self.revision)
    }
}

/// The current leader as seen by anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// The leader's candidate key.
    pub key: String,
    /// The value it campaigned (or proclaimed) with.
    pub value: Vec<u8>,
    /// The key's create revision: the epoch.
    pub revision: i64,
    /// The lease holding the key.
    pub lease: Option<LeaseId>,
}

fn candidate_prefix(name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(StoreError::InvalidArgument("empty election name".into()));
    }
    Ok(format!("{name}/"))
}

/// All candidates of an election and the revision the listing saw.
async fn candidates<S: IntentStore + ?Sized>(
    store: &S,
    prefix: &str,
) -> Result<(Vec<KeyValue>, i64)> {
    let mut req = RangeRequest::prefix(prefix).with_limit(256);
    let mut out = Vec::new();
    let mut revision = 0;
    loop {
        let resp = store.range(req.clone()).await?;
        if revision == 0 {
            revision = resp.revision;
        }
        let next = resp.next_page(&req);
        out.extend(resp.kvs);
        match next {
            Some(n) => req = n,
            None => return Ok((out, revision)),
        }
    }
}

/// See [`IntentStore::campaign`].
pub async fn campaign<S: IntentStore + ?Sized>(
    store: &S,
    name: &str,
    value: Vec<u8>,
    lease: LeaseId,
) -> Result<LeaderKey> {
    let prefix = candidate_prefix(name)?;
    let key = format!("{prefix}{lease}");
    let span = info_span!("campaign", election = %name, key = %key);
    async move {
        let resp = store
            .txn(
                Txn::new()
                    .when([Compare::Absent(key.clone())])
                    .and_then([Op::put_with_lease(key.clone(), value.clone(), lease)])
                    .or_else([Op::get(key.clone())]),
            )
            .await?;
        let my_rev = if resp.succeeded {
            resp.revision
        } else {
            let existing = resp
                .get_result(0)
                .cloned()
                .ok_or_else(|| StoreError::ElectionLost { key: key.clone() })?;
            if existing.value != value {
                // Re-campaign with the same lease: keep our place in line, refresh the value.
                store
                    .txn(
                        Txn::new()
                            .when([Compare::CreateRevision(
                                key.clone(),
                                existing.create_revision,
                            )])
                            .and_then([Op::put_with_lease(key.clone(), value.clone(), lease)]),
                    )
                    .await?
                    .into_success()
                    .map_err(|_| StoreError::ElectionLost { key: key.clone() })?;
            }
            existing.create_revision
        };
        loop {
            let (kvs, revision) = candidates(store, &prefix).await?;
            if !kvs
                .iter()
                .any(|kv| kv.key == key && kv.create_revision == my_rev)
            {
                return Err(StoreError::ElectionLost { key: key.clone() });
            }
            let predecessor = kvs
                .iter()
                .filter(|kv| kv.create_revision < my_rev)
                .max_by_key(|kv| kv.create_revision);
            let Some(pred) = predecessor else {
                debug!(epoch = my_rev, "elected");
                return Ok(LeaderKey {
                    name: name.to_string(),
                    key: key.clone(),
                    revision: my_rev,
                    lease,
                });
            };
            debug!(waiting_on = %pred.key, "waiting for predecessor");
            wait_for_delete(store, &prefix, &pred.key, &key, revision + 1).await?;
        }
    }
    .instrument(span)
    .await
}

/// Waits until `target` is deleted (or our own key is, which is an error). A compacted or
/// broken watch simply returns, and the caller re-lists.
async fn wait_for_delete<S: IntentStore + ?Sized>(
    store: &S,
    prefix: &str,
    target: &str,
    mine: &str,
    from_revision: i64,
) -> Result<()> {
    let mut events = store.watch(prefix, from_revision).await?;
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(StoreError::Compacted { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if ev.kind == EventKind::Delete {
            if ev.kv.key == target {
                return Ok(());
            }
            if ev.kv.key == mine {
                return Err(StoreError::ElectionLost {
                    key: mine.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// See [`IntentStore::leader`].
pub async fn leader<S: IntentStore + ?Sized>(store: &S, name: &str) -> Result<Option<Leader>> {
    let prefix = candidate_prefix(name)?;
    let (kvs, _) = candidates(store, &prefix).await?;
    Ok(kvs
        .into_iter()
        .min_by_key(|kv| kv.create_revision)
        .map(|kv| Leader {
            key: kv.key,
            value: kv.value,
            revision: kv.create_revision,
            lease: kv.lease,
        }))
}

/// See [`IntentStore::resign`]. Resigning a leadership that is already gone is not an error.
pub async fn resign<S: IntentStore + ?Sized>(store: &S, leader: &LeaderKey) -> Result<()> {
    store
        .txn(
            Txn::new()
                .when([leader.fence()])
                .and_then([Op::delete(leader.key.clone())]),
        )
        .instrument(info_span!("resign", key = %leader.key, epoch = leader.revision))
        .await?;
    Ok(())
}

//! The embedded store's synchronous core: redb tables, the revision log, leases.
//!
//! Everything here blocks (redb commits fsync), so the async façade in [`super`] calls it
//! from `spawn_blocking`. One mutex ([`Engine::state`]) serialises writers; readers use redb's
//! MVCC snapshots and take no lock.
//!
//! Tables (one redb file, `intent.redb`):
//!
//! | table | key → value | why |
//! |---|---|---|
//! | `kv` | key → record ([`codec::encode_kv`]) | current state |
//! | `log` | revision → events of that revision | watch from a revision |
//! | `meta` | name → i64 (`revision`, `compact_revision`, `lease_seq`) | counters |
//! | `leases` | lease id → granted TTL (s) | leases survive restart |
//!
//! Every write commits the new keys, the log entry and the revision in one redb transaction,
//! so after a crash the three agree. Compaction deletes log entries below the compaction
//! point. Lease deadlines are kept in memory only: on reopen each lease gets a fresh full TTL
//! (as etcd does on leader change) or is expired at once, per [`super::LeasesOnReopen`].
//! Keys attached to a lease are indexed in memory and rebuilt from `kv` on open.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::broadcast;
use tokio::time::{Duration, Instant};
use tracing::{debug, info};

use super::codec;
use crate::error::{Result, StoreError};
use crate::types::{
    EventKind, KeyValue, Lease, LeaseId, LeaseInfo, Op, OpResponse, RangeRequest, RangeResponse,
    Txn, TxnResponse, WatchEvent,
};

const KV: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<'_, i64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'_, &str, i64> = TableDefinition::new("meta");
const LEASES: TableDefinition<'_, i64, i64> = TableDefinition::new("leases");

const META_REVISION: &str = "revision";
const META_COMPACT: &str = "compact_revision";
const META_LEASE_SEQ: &str = "lease_seq";

pub(crate) fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

/// All events of one revision, as fanned out to live watchers.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) revision: i64,
    pub(crate) events: Vec<WatchEvent>,
}

struct LeaseState {
    ttl: i64,
    deadline: Instant,
    keys: BTreeSet<String>,
}

/// Writer-side state, guarded by [`Engine::state`].
struct State {
    revision: i64,
    compact_revision: i64,
    lease_seq: i64,
    leases: HashMap<LeaseId, LeaseState>,
}

/// The open database plus writer state and the live event fan-out.
pub(crate) struct Engine {
    db: Database,
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Batch>>,
}

/// A key whose lease attachment changes when the transaction commits.
struct Attach {
    key: String,
    old: Option<LeaseId>,
    new: Option<LeaseId>,
}

/// Mutations of one write transaction, collected until commit.
struct Apply<'t> {
    kv: redb::Table<'t, &'static str, &'static [u8]>,
    rev: i64,
    events: Vec<WatchEvent>,
    attach: Vec<Attach>,
}

impl Apply<'_> {
    fn read(&self, key: &str) -> Result<Option<KeyValue>> {
        match self.kv.get(key).map_err(storage)? {
            Some(v) => Ok(Some(codec::decode_kv(key, v.value())?)),
            None => Ok(None),
        }
    }

    fn put(&mut self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<()> {
        let prev = self.read(key)?;
        let kv = KeyValue {
            key: key.to_string(),
            value: value.to_vec(),
            create_revision: prev.as_ref().map_or(self.rev, |p| p.create_revision),
            mod_revision: self.rev,
            version: prev.as_ref().map_or(0, |p| p.version) + 1,
            lease,
        };
        self.kv
            .insert(key, codec::encode_kv(&kv).as_slice())
            .map_err(storage)?;
        let old = prev.as_ref().and_then(|p| p.lease);
        if old != lease {
            self.attach.push(Attach {
                key: key.to_string(),
                old,
                new: lease,
            });
        }
        self.events.push(WatchEvent {
            kind: EventKind::Put,
            kv,
            prev,
        });
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<bool> {
        let Some(prev) = self.read(key)? else {
            return Ok(false);
        };
        self.kv.remove(key).map_err(storage)?;
        if prev.lease.is_some() {
            self.attach.push(Attach {
                key: key.to_string(),
                old: prev.lease,
                new: None,
            });
        }
        self.events.push(WatchEvent {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_string(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: self.rev,
                version: 0,
                lease: None,
            },
            prev: Some(prev),
        });
        Ok(true)
    }

    fn delete_prefix(&mut self, prefix: &str) -> Result<i64> {
        let mut keys = Vec::new();
        for entry in self.kv.range(prefix..).map_err(storage)? {
            let (k, _) = entry.map_err(storage)?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            keys.push(k.to_string());
        }
        let mut n = 0;
        for k in keys {
            if self.delete(&k)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn read_meta(table: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<Option<i64>> {
    Ok(table.get(name).map_err(storage)?.map(|g| g.value()))
}

fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl.max(1)).unwrap_or(1))
}

impl Engine {
    /// Opens (or creates) the database at `path` and rebuilds the in-memory state; the live
    /// fan-out buffers `fanout_capacity` revisions per watcher before it lags. Returns
    /// the engine and the leases found on disk (the caller renews or expires them).
    pub(crate) fn open(path: &Path, fanout_capacity: usize) -> Result<(Engine, Vec<LeaseId>)> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Storage(format!(
                "{} is already open (another process or store instance holds it)",
                path.display()
            )),
            other => storage(other),
        })?;
        let tx = db.begin_write().map_err(storage)?;
        let (revision, compact_revision, lease_seq, granted) = {
            let mut meta = tx.open_table(META).map_err(storage)?;
            tx.open_table(LOG).map_err(storage)?;
            let revision = match read_meta(&meta, META_REVISION)? {
                Some(r) => r,
                None => {
                    // etcd starts an empty keyspace at revision 1.
                    meta.insert(META_REVISION, 1).map_err(storage)?;
                    1
                }
            };
            let compact = read_meta(&meta, META_COMPACT)?.unwrap_or(0);
            let seq = read_meta(&meta, META_LEASE_SEQ)?.unwrap_or(0);
            let leases = tx.open_table(LEASES).map_err(storage)?;
            let mut granted = HashMap::new();
            for entry in leases.iter().map_err(storage)? {
                let (id, ttl) = entry.map_err(storage)?;
                granted.insert(LeaseId(id.value()), ttl.value());
            }
            (revision, compact, seq, granted)
        };
        let mut orphans = Vec::new();
        let mut leases: HashMap<LeaseId, LeaseState> = HashMap::new();
        let now = Instant::now();
        {
            let kv = tx.open_table(KV).map_err(storage)?;
            for entry in kv.iter().map_err(storage)? {
                let (k, v) = entry.map_err(storage)?;
                let kv = codec::decode_kv(k.value(), v.value())?;
                let Some(lease) = kv.lease else { continue };
                match granted.get(&lease) {
                    Some(ttl) => {
                        leases
                            .entry(lease)
                            .or_insert_with(|| LeaseState {
                                ttl: *ttl,
                                deadline: now + ttl_duration(*ttl),
                                keys: BTreeSet::new(),
                            })
                            .keys
                            .insert(kv.key);
                    }
                    None => orphans.push(kv.key),
                }
            }
        }
        for (id, ttl) in &granted {
            leases.entry(*id).or_insert_with(|| LeaseState {
                ttl: *ttl,
                deadline: now + ttl_duration(*ttl),
                keys: BTreeSet::new(),
            });
        }
        tx.commit().map_err(storage)?;
        let (events, _) = broadcast::channel(fanout_capacity.max(1));
        let engine = Engine {
            db,
            state: Mutex::new(State {
                revision,
                compact_revision,
                lease_seq,
                leases,
            }),
            events,
        };
        if !orphans.is_empty() {
            // Keys whose lease record is missing can only come from a damaged file; a lease
            // that does not exist has expired, so its keys go.
            info!(
                count = orphans.len(),
                "deleting keys attached to unknown leases"
            );
            let ops = orphans.into_iter().map(Op::delete);
            engine.txn(&Txn::new().and_then(ops))?;
        }
        info!(revision, compact_revision, leases = granted.len(), path = %path.display(), "embedded store open");
        Ok((engine, granted.into_keys().collect()))
    }

    /// Commits a write transaction: the log entry and revision when `events` is non-empty;
    /// otherwise commits only when `must_commit` (lease-table changes) and aborts when not.
    /// Then publishes the new state to memory and to live watchers.
    fn finish(
        &self,
        st: &mut State,
        tx: WriteTransaction,
        rev: i64,
        events: Vec<WatchEvent>,
        attach: Vec<Attach>,
        must_commit: bool,
    ) -> Result<i64> {
        if events.is_empty() {
            if must_commit {
                tx.commit().map_err(storage)?;
            } else {
                tx.abort().map_err(storage)?;
            }
            return Ok(st.revision);
        }
        {
            let mut log = tx.open_table(LOG).map_err(storage)?;
            log.insert(rev, codec::encode_events(&events).as_slice())
                .map_err(storage)?;
            let mut meta = tx.open_table(META).map_err(storage)?;
            meta.insert(META_REVISION, rev).map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        st.revision = rev;
        for a in attach {
            if let Some(old) = a.old
                && let Some(l) = st.leases.get_mut(&old)
            {
                l.keys.remove(&a.key);
            }
            if let Some(new) = a.new
                && let Some(l) = st.leases.get_mut(&new)
            {
                l.keys.insert(a.key);
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(Arc::new(Batch {
            revision: rev,
            events,
        }));
        Ok(rev)
    }

    pub(crate) fn txn(&self, txn: &Txn) -> Result<TxnResponse> {
        txn.validate()?;
        let mut st = self.state.lock();
        let tx = self.db.begin_write().map_err(storage)?;
        let rev = st.revision + 1;
        let (succeeded, responses, events, attach) = {
            let mut a = Apply {
                kv: tx.open_table(KV).map_err(storage)?,
                rev,
                events: Vec::new(),
                attach: Vec::new(),
            };
            let mut ok = true;
            for c in &txn.compares {
                if !c.holds(a.read(c.key())?.as_ref()) {
                    ok = false;
                    break;
                }
            }
            let ops = if ok { &txn.success } else { &txn.failure };
            let mut responses = Vec::with_capacity(ops.len());
            for op in ops {
                responses.push(match op {
                    Op::Put { key, value, lease } => {
                        if let Some(l) = lease
                            && !st.leases.contains_key(l)
                        {
                            return Err(StoreError::LeaseNotFound(*l));
                        }
                        a.put(key, value, *lease)?;
                        OpResponse::Put
                    }
                    Op::Delete { key } => OpResponse::Delete {
                        deleted: i64::from(a.delete(key)?),
                    },
                    Op::DeletePrefix { prefix } => OpResponse::Delete {
                        deleted: a.delete_prefix(prefix)?,
                    },
                    Op::Get { key } => OpResponse::Get(a.read(key)?),
                });
            }
            (ok, responses, a.events, a.attach)
        };
        let revision = self.finish(&mut st, tx, rev, events, attach, false)?;
        Ok(TxnResponse {
            succeeded,
            revision,
            responses,
        })
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let rtx = self.db.begin_read().map_err(storage)?;
        let kv = rtx.open_table(KV).map_err(storage)?;
        match kv.get(key).map_err(storage)? {
            Some(v) => Ok(Some(codec::decode_kv(key, v.value())?)),
            None => Ok(None),
        }
    }

    pub(crate) fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let start = req.start_key();
        if !start.starts_with(&req.prefix) {
            return Err(StoreError::InvalidArgument(format!(
                "range start {start:?} is outside prefix {:?}",
                req.prefix
            )));
        }
        let rtx = self.db.begin_read().map_err(storage)?;
        let meta = rtx.open_table(META).map_err(storage)?;
        let revision = read_meta(&meta, META_REVISION)?.unwrap_or(1);
        let table = rtx.open_table(KV).map_err(storage)?;
        let mut kvs = Vec::new();
        let mut more = false;
        for entry in table.range(start..).map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let key = k.value();
            if !key.starts_with(&req.prefix) {
                break;
            }
            if req.limit > 0 && kvs.len() == req.limit {
                more = true;
                break;
            }
            kvs.push(codec::decode_kv(key, v.value())?);
        }
        Ok(RangeResponse {
            kvs,
            more,
            revision,
        })
    }

    pub(crate) fn compact(&self, revision: i64) -> Result<()> {
        let mut st = self.state.lock();
        if revision <= st.compact_revision {
            return Err(StoreError::Compacted {
                compact_revision: st.compact_revision,
            });
        }
        if revision > st.revision {
            return Err(StoreError::FutureRevision {
                revision,
                current: st.revision,
            });
        }
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut log = tx.open_table(LOG).map_err(storage)?;
            log.retain_in(..revision, |_, _| false).map_err(storage)?;
            let mut meta = tx.open_table(META).map_err(storage)?;
            meta.insert(META_COMPACT, revision).map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        st.compact_revision = revision;
        debug!(revision, "compacted");
        Ok(())
    }

    /// Registers a live watcher: the receiver gets every batch after the returned revision.
    pub(crate) fn subscribe(&self) -> (broadcast::Receiver<Arc<Batch>>, i64) {
        let st = self.state.lock();
        (self.events.subscribe(), st.revision)
    }

    /// Events under `prefix` with revision in `from..=to`, or `Compacted` when `from` is older
    /// than the compaction point.
    pub(crate) fn read_log(&self, prefix: &str, from: i64, to: i64) -> Result<Vec<WatchEvent>> {
        let rtx = self.db.begin_read().map_err(storage)?;
        let meta = rtx.open_table(META).map_err(storage)?;
        let compact_revision = read_meta(&meta, META_COMPACT)?.unwrap_or(0);
        if from < compact_revision {
            return Err(StoreError::Compacted { compact_revision });
        }
        let log = rtx.open_table(LOG).map_err(storage)?;
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        for entry in log.range(from..=to).map_err(storage)? {
            let (_, v) = entry.map_err(storage)?;
            out.extend(
                codec::decode_events(v.value())?
                    .into_iter()
                    .filter(|ev| ev.kv.key.starts_with(prefix)),
            );
        }
        Ok(out)
    }

    // ===== leases =====

    pub(crate) fn lease_grant(&self, ttl: i64) -> Result<Lease> {
        if ttl <= 0 {
            return Err(StoreError::InvalidArgument(format!(
                "lease TTL must be positive, got {ttl}"
            )));
        }
        let mut st = self.state.lock();
        let id = LeaseId(st.lease_seq + 1);
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut leases = tx.open_table(LEASES).map_err(storage)?;
            leases.insert(id.0, ttl).map_err(storage)?;
            let mut meta = tx.open_table(META).map_err(storage)?;
            meta.insert(META_LEASE_SEQ, id.0).map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        st.lease_seq = id.0;
        st.leases.insert(
            id,
            LeaseState {
                ttl,
                deadline: Instant::now() + ttl_duration(ttl),
                keys: BTreeSet::new(),
            },
        );
        Ok(Lease { id, ttl })
    }

    pub(crate) fn lease_keep_alive(&self, id: LeaseId) -> Result<i64> {
        let mut st = self.state.lock();
        let now = Instant::now();
        match st.leases.get_mut(&id) {
            // An expired lease is gone even if the expiry task has not deleted it yet.
            Some(l) if l.deadline > now => {
                l.deadline = now + ttl_duration(l.ttl);
                Ok(l.ttl)
            }
            _ => Err(StoreError::LeaseNotFound(id)),
        }
    }

    pub(crate) fn lease_time_to_live(&self, id: LeaseId) -> Result<LeaseInfo> {
        let st = self.state.lock();
        let now = Instant::now();
        match st.leases.get(&id) {
            Some(l) if l.deadline > now => {
                let left = l.deadline - now;
                let secs = i64::try_from(left.as_secs()).unwrap_or(i64::MAX)
                    + i64::from(left.subsec_nanos() > 0);
                Ok(LeaseInfo {
                    id,
                    ttl: secs,
                    granted_ttl: l.ttl,
                    keys: l.keys.iter().cloned().collect(),
                })
            }
            _ => Err(StoreError::LeaseNotFound(id)),
        }
    }

    pub(crate) fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        let mut st = self.state.lock();
        if !st.leases.contains_key(&id) {
            return Err(StoreError::LeaseNotFound(id));
        }
        self.revoke_locked(&mut st, id)
    }

    /// Deletes a lease and its keys at one revision.
    fn revoke_locked(&self, st: &mut State, id: LeaseId) -> Result<()> {
        let keys: Vec<String> = st
            .leases
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default();
        let tx = self.db.begin_write().map_err(storage)?;
        let rev = st.revision + 1;
        let (events, attach) = {
            let mut a = Apply {
                kv: tx.open_table(KV).map_err(storage)?,
                rev,
                events: Vec::new(),
                attach: Vec::new(),
            };
            for k in &keys {
                a.delete(k)?;
            }
            let mut leases = tx.open_table(LEASES).map_err(storage)?;
            leases.remove(id.0).map_err(storage)?;
            (a.events, a.attach)
        };
        self.finish(st, tx, rev, events, attach, true)?;
        st.leases.remove(&id);
        debug!(lease = %id, keys = keys.len(), "lease ended");
        Ok(())
    }

    /// Revokes every lease whose deadline has passed; returns the next deadline.
    pub(crate) fn expire_due(&self) -> Result<Option<Instant>> {
        let mut st = self.state.lock();
        let now = Instant::now();
        let due: Vec<LeaseId> = st
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            info!(lease = %id, "lease expired");
            self.revoke_locked(&mut st, id)?;
        }
        Ok(st.leases.values().map(|l| l.deadline).min())
    }

    /// Expires the given leases now (used on reopen with [`super::LeasesOnReopen::Expire`]).
    pub(crate) fn expire_now(&self, ids: &[LeaseId]) -> Result<()> {
        let mut st = self.state.lock();
        for id in ids {
            if st.leases.contains_key(id) {
                self.revoke_locked(&mut st, *id)?;
            }
        }
        Ok(())
    }
}

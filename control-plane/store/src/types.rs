//! The data model of the intent store: etcd's, narrowed to what the control plane uses.
//!
//! Keys are UTF-8 strings (the store layout in `DESIGN.md` is all text); values are opaque
//! bytes (protobuf). Every key carries etcd's four counters:
//!
//! - `create_revision`: the store revision at which the key was (last) created; `0` means
//!   absent, which is why [`Compare::Absent`] is `create_revision == 0`;
//! - `mod_revision`: the revision of its last write; the API's etag;
//! - `version`: writes since creation (1 after the first put, reset by a delete);
//! - `lease`: the lease the key is attached to, if any.
//!
//! The store revision is a single counter over the whole keyspace: every transaction that
//! writes bumps it by exactly one (all writes of one transaction share it), and reads report
//! the revision they saw so a caller can list and then watch from `revision + 1` without a gap.

use std::fmt;

/// A lease identifier. Never 0 (0 means "no lease" on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    /// Lower-case hex, as etcd prints lease ids (and as election candidate keys use them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// One key with its value and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (empty in delete events).
    pub value: Vec<u8>,
    /// Revision at which the key was created; 0 in delete events.
    pub create_revision: i64,
    /// Revision of the last write (for delete events: the revision of the delete).
    pub mod_revision: i64,
    /// Number of writes since creation; 0 in delete events.
    pub version: i64,
    /// Lease the key is attached to.
    pub lease: Option<LeaseId>,
}

/// A prefix listing, optionally paged.
///
/// Keys come back in byte order. With `limit > 0` at most `limit` keys are returned and
/// [`RangeResponse::more`] says whether more follow; [`RangeResponse::next_page`] builds the
/// request for the next page (which reads at the store's then-current revision; callers that
/// need one consistent snapshot across pages should instead rely on the watch from the first
/// page's revision to catch up).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeRequest {
    /// Every key starting with this prefix; `""` means the whole keyspace.
    pub prefix: String,
    /// Start at this key (inclusive) instead of at `prefix`; must itself start with `prefix`.
    pub start: Option<String>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
}

impl RangeRequest {
    /// All keys under `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            start: None,
            limit: 0,
        }
    }

    /// At most `limit` keys per page.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Start at `key` (inclusive).
    pub fn starting_at(mut self, key: impl Into<String>) -> Self {
        self.start = Some(key.into());
        self
    }

    /// The first key of the scan.
    pub(crate) fn start_key(&self) -> &str {
        self.start.as_deref().unwrap_or(&self.prefix)
    }
}

/// The result of a [`RangeRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeResponse {
    /// Matching keys, in byte order.
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` allowed.
    pub more: bool,
    /// The store revision this read saw. Watch from `revision + 1` to follow on from it.
    pub revision: i64,
}

impl RangeResponse {
    /// The request for the page after this one, or `None` when this was the last page.
    pub fn next_page(&self, req: &RangeRequest) -> Option<RangeRequest> {
        if !self.more {
            return None;
        }
        let last = self.kvs.last()?;
        let mut next = req.clone();
        // The smallest key strictly greater than `last`.
        next.start = Some(format!("{}\0", last.key));
        Some(next)
    }
}

/// One condition of a transaction. All compares of a [`Txn`] must hold for its `success`
/// branch to run. An absent key has create and mod revision 0; a [`Compare::Value`] on an
/// absent key is false (as in etcd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals the given revision (0 = absent).
    ModRevision(String, i64),
    /// The key's `create_revision` equals the given revision (0 = absent). With a leader's key
    /// and epoch this is the fencing compare ([`crate::LeaderKey::fence`]).
    CreateRevision(String, i64),
    /// The key does not exist (`create_revision == 0`).
    Absent(String),
    /// The key exists and its value equals the given bytes.
    Value(String, Vec<u8>),
}

impl Compare {
    /// The key the compare looks at.
    pub fn key(&self) -> &str {
        match self {
            Compare::ModRevision(k, _)
            | Compare::CreateRevision(k, _)
            | Compare::Absent(k)
            | Compare::Value(k, _) => k,
        }
    }

    /// Evaluates the compare against the key's current state.
    pub(crate) fn holds(&self, kv: Option<&KeyValue>) -> bool {
        match self {
            Compare::ModRevision(_, rev) => kv.map_or(0, |kv| kv.mod_revision) == *rev,
            Compare::CreateRevision(_, rev) => kv.map_or(0, |kv| kv.create_revision) == *rev,
            Compare::Absent(_) => kv.is_none(),
            Compare::Value(_, value) => kv.is_some_and(|kv| kv.value == *value),
        }
    }
}

/// One operation of a transaction branch. Operations run in order and later ones see the
/// writes of earlier ones. A key may be written (put or delete) at most once per branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or overwrite a key, attached to `lease` (the lease must exist).
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// Attach the key to this lease; `None` detaches it from any lease.
        lease: Option<LeaseId>,
    },
    /// Delete one key (no effect, and no revision bump, when absent).
    Delete {
        /// The key.
        key: String,
    },
    /// Delete every key under a prefix.
    DeletePrefix {
        /// The prefix; must not be empty (deleting the whole keyspace is refused).
        prefix: String,
    },
    /// Read one key.
    Get {
        /// The key.
        key: String,
    },
}

impl Op {
    /// A put without lease.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    /// A put attached to `lease`.
    pub fn put_with_lease(
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        }
    }

    /// A delete of one key.
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }

    /// A read of one key.
    pub fn get(key: impl Into<String>) -> Self {
        Op::Get { key: key.into() }
    }
}

/// A transaction: `if all(compares) then success else failure`, atomically, at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Txn {
    /// Conditions; an empty list always holds.
    pub compares: Vec<Compare>,
    /// Run when every compare holds.
    pub success: Vec<Op>,
    /// Run otherwise.
    pub failure: Vec<Op>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds conditions.
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }

    /// Adds operations to the success branch.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.success.extend(ops);
        self
    }

    /// Adds operations to the failure branch.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.failure.extend(ops);
        self
    }

    /// Guards the transaction with a leader's epoch: it succeeds only while `leader` still
    /// holds the election (see [`crate::LeaderKey::fence`]).
    pub fn fenced_by(mut self, leader: &crate::LeaderKey) -> Self {
        self.compares.insert(0, leader.fence());
        self
    }

    /// Checks the shape every backend enforces (so both reject the same transactions).
    pub(crate) fn validate(&self) -> crate::Result<()> {
        for branch in [&self.success, &self.failure] {
            let mut written = std::collections::HashSet::new();
            // etcd refuses a put or delete of a key that a prefix delete of the same branch
            // also covers; refuse it everywhere so both backends agree.
            let prefixes: Vec<&str> = branch
                .iter()
                .filter_map(|op| match op {
                    Op::DeletePrefix { prefix } => Some(prefix.as_str()),
                    _ => None,
                })
                .collect();
            for op in branch {
                if let Op::Put { key, .. } | Op::Delete { key } = op
                    && prefixes.iter().any(|p| key.starts_with(p))
                {
                    return Err(crate::StoreError::InvalidArgument(format!(
                        "key {key} is also covered by a prefix delete in the same transaction"
                    )));
                }
                match op {
                    Op::Put { key, .. } | Op::Delete { key } => {
                        if key.is_empty() {
                            return Err(crate::StoreError::InvalidArgument("empty key".into()));
                        }
                        if !written.insert(key.as_str()) {
                            return Err(crate::StoreError::InvalidArgument(format!(
                                "key {key} written twice in one transaction"
                            )));
                        }
                    }
                    Op::DeletePrefix { prefix } if prefix.is_empty() => {
                        return Err(crate::StoreError::InvalidArgument(
                            "refusing to delete the whole keyspace".into(),
                        ));
                    }
                    Op::Get { key } if key.is_empty() => {
                        return Err(crate::StoreError::InvalidArgument("empty key".into()));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The result of one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResponse {
    /// The put happened.
    Put,
    /// How many keys were deleted.
    Delete {
        /// Number of keys deleted (0 when none existed).
        deleted: i64,
    },
    /// The key read, if present.
    Get(Option<KeyValue>),
}

/// The result of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (and the success branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction (its own revision when it wrote).
    pub revision: i64,
    /// One response per operation of the branch that ran.
    pub responses: Vec<OpResponse>,
}

impl TxnResponse {
    /// `Ok(self)` when the compares held, [`StoreError::TxnConflict`](crate::StoreError)
    /// otherwise.
    pub fn into_success(self) -> crate::Result<Self> {
        if self.succeeded {
            Ok(self)
        } else {
            Err(crate::StoreError::TxnConflict(format!(
                "compares failed at revision {}",
                self.revision
            )))
        }
    }

    /// The key read by the `i`-th operation, when it was a [`Op::Get`] that found one.
    pub fn get_result(&self, i: usize) -> Option<&KeyValue> {
        match self.responses.get(i) {
            Some(OpResponse::Get(kv)) => kv.as_ref(),
            _ => None,
        }
    }
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated.
    Put,
    /// Deleted (explicitly, by prefix, or because its lease ended).
    Delete,
}

/// One change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change. For deletes only `key` and `mod_revision` (the delete's
    /// revision) are set.
    pub kv: KeyValue,
    /// The key before the change, when it existed.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: LeaseId,
    /// The TTL the store granted, in seconds (etcd may raise a too-small TTL).
    pub ttl: i64,
}

/// What the store knows about a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Its id.
    pub id: LeaseId,
    /// Seconds left before it expires.
    pub ttl: i64,
    /// The TTL it was granted with.
    pub granted_ttl: i64,
    /// Keys attached to it, sorted.
    pub keys: Vec<String>,
}

/// The smallest string greater than every string starting with `prefix`, as a byte vector
/// (etcd's `range_end` for a prefix); `[0]` (meaning "to the end") for an empty prefix or one
/// made only of `0xff` bytes.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b""), vec![0]);
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
    }

    #[test]
    fn compares_on_absent_keys() {
        assert!(Compare::Absent("k".into()).holds(None));
        assert!(Compare::ModRevision("k".into(), 0).holds(None));
        assert!(Compare::CreateRevision("k".into(), 0).holds(None));
        assert!(!Compare::Value("k".into(), vec![]).holds(None));
    }

    #[test]
    fn duplicate_writes_are_rejected() {
        let txn = Txn::new().and_then([Op::put("a", "1"), Op::delete("a")]);
        assert!(matches!(
            txn.validate(),
            Err(crate::StoreError::InvalidArgument(_))
        ));
        let overlap = Txn::new().or_else([
            Op::DeletePrefix {
                prefix: "/p/".into(),
            },
            Op::put("/p/x", "1"),
        ]);
        assert!(overlap.validate().is_err());
        let fine = Txn::new().and_then([
            Op::DeletePrefix {
                prefix: "/p/".into(),
            },
            Op::put("/q/x", "1"),
        ]);
        assert!(fine.validate().is_ok());
    }

    #[test]
    fn next_page_starts_after_the_last_key() {
        let req = RangeRequest::prefix("/p/").with_limit(1);
        let resp = RangeResponse {
            kvs: vec![KeyValue {
                key: "/p/a".into(),
                value: vec![],
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                lease: None,
            }],
            more: true,
            revision: 2,
        };
        assert_eq!(
            resp.next_page(&req).and_then(|r| r.start),
            Some("/p/a\0".to_string())
        );
    }
}

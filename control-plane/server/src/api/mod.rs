//! The public `flotilla.v1` services this control plane serves: clusters, nodes, operations,
//! and the business API (topics, consumer groups) that reaches brokers through their agents
//! ([`brokers`]).
//!
//! Each RPC validates its input ([`crate::validate`]), runs under a tracing span named after
//! the method with the resource name and request id, writes only through the fenced writer
//! (so followers answer UNAVAILABLE/NOT_LEADER and a deposed leader cannot write), and maps
//! every failure to an [`ApiError`](crate::errors::ApiError). Shared here: etags (a stored
//! object's etag is its `mod_revision`), loading and committing one object, idempotent
//! mutations (retry on unasked-for conflicts, replay of a racing repeat), paging tokens and
//! the watch stream (list-then-watch from a revision, OUT_OF_RANGE on compaction, bookmarks).

pub mod audit;
pub mod brokers;
pub mod cluster;
pub mod group;
pub mod message;
pub mod node;
pub mod operation;
pub mod topic;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use flotilla_intent_store::{Compare, EventKind, KeyValue, RangeRequest, StoreError, keys};
use flotilla_proto::v1::{Cluster, Node, ObjectMeta, Operation, WatchEventType};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status};
use tracing::{Instrument, Span};

use crate::context::{Ctx, Write};
use crate::errors::{ApiError, decode};
use crate::fenced::WriteError;
use crate::requests;
use crate::validate::{self, Violations};

/// How often an idle watch sends a bookmark.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

/// How often a mutation without an etag is retried when a background writer (the
/// reconciler's status write, the heartbeat sweeper) moved the object's revision between its
/// read and its write.
pub const CONFLICT_RETRIES: usize = 8;

/// Runs `f` again while it fails with CONCURRENT_MODIFICATION. Only mutations the caller made
/// unconditional (no etag) fail that way — with an etag a lost race is ETAG_MISMATCH — so
/// re-reading and re-applying them is what the caller asked for.
pub async fn retry_conflicts<T, F, Fut>(mut f: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Err(ApiError::ConcurrentModification(what)) if attempt < CONFLICT_RETRIES => {
                tracing::debug!(object = %what, attempt, "concurrent write; retrying");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Runs a mutation that may carry a request id under `span`, for the tonic handler: retried
/// on conflicts the caller did not ask for ([`retry_conflicts`]), and when it lost a race to
/// a repeat of itself, answered with that repeat's result ([`requests::or_replay`], etag
/// fixed up by `set_etag`). An empty `request_id` replays nothing.
pub async fn idempotent<T, F, Fut>(
    ctx: &Ctx,
    method: &str,
    request_id: &str,
    span: Span,
    set_etag: impl FnOnce(&mut T, i64),
    f: F,
) -> Result<Response<T>, Status>
where
    T: prost::Message + Default,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let result = retry_conflicts(f).instrument(span).await;
    let out = requests::or_replay(ctx, method, request_id, result, set_etag).await?;
    Ok(Response::new(out))
}

/// A stored resource with `ObjectMeta` (clusters, nodes, operations): what the generic
/// etag, load, list and watch helpers here need to know about it.
pub trait Object: prost::Message + Default {
    /// Its metadata, if set.
    fn meta(&self) -> Option<&ObjectMeta>;
    /// Its metadata field.
    fn meta_slot(&mut self) -> &mut Option<ObjectMeta>;
}

macro_rules! impl_object {
    ($($t:ty),*) => {$(
        impl Object for $t {
            fn meta(&self) -> Option<&ObjectMeta> {
                self.metadata.as_ref()
            }
            fn meta_slot(&mut self) -> &mut Option<ObjectMeta> {
                &mut self.metadata
            }
        }
    )*};
}

impl_object!(Cluster, Node, Operation);

/// The name of `obj` (empty without metadata).
pub fn name_of<T: Object>(obj: &T) -> String {
    obj.meta().map(|m| m.name.clone()).unwrap_or_default()
}

/// Sets the etag of `obj` (when it has metadata) to the revision `rev`.
pub fn set_etag<T: Object>(obj: &mut T, rev: i64) {
    if let Some(m) = obj.meta_slot().as_mut() {
        m.etag = rev.to_string();
    }
}

/// Clears the etag of `obj`: it is never stored (the revision is).
pub fn clear_etag<T: Object>(obj: &mut T) {
    if let Some(m) = obj.meta_slot().as_mut() {
        m.etag.clear();
    }
}

/// Decodes a stored object, its etag set to the record's `mod_revision`.
pub fn decode_stored<T: Object>(kv: &KeyValue) -> Result<T, ApiError> {
    let mut obj: T = decode(&kv.key, &kv.value)?;
    set_etag(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// Reads the object at `key` with its revision (etag set); `not_found` when absent.
pub async fn load<T: Object>(
    ctx: &Ctx,
    key: &str,
    not_found: impl FnOnce() -> ApiError,
) -> Result<(T, i64), ApiError> {
    let kv = ctx.store.get(key).await?.ok_or_else(not_found)?;
    Ok((decode_stored(&kv)?, kv.mod_revision))
}

/// Whether the labels of `obj` match the parsed label selector `sel`.
pub fn selected<T: Object>(obj: &T, sel: &[(String, String)]) -> bool {
    match obj.meta() {
        Some(m) => validate::matches_selector(&m.labels, sel),
        None => validate::matches_selector(&Default::default(), sel),
    }
}

/// ETAG_MISMATCH when the caller sent an etag (`given`, parsed) that is not `current`.
pub fn check_etag(name: &str, given: Option<i64>, current: i64) -> Result<(), ApiError> {
    match given {
        Some(e) if e != current => Err(ApiError::EtagMismatch {
            name: name.to_string(),
            given: e.to_string(),
            current: current.to_string(),
        }),
        _ => Ok(()),
    }
}

/// What a lost compare-and-swap on `name` means when the caller sent the etag `given`
/// (`parsed` is `Some`): ETAG_MISMATCH; without an etag, `None` (the writer's mapping,
/// CONCURRENT_MODIFICATION, which [`retry_conflicts`] retries).
pub fn etag_race(name: &str, given: &str, parsed: Option<i64>) -> Option<ApiError> {
    parsed.map(|_| ApiError::EtagMismatch {
        name: name.to_string(),
        given: given.to_string(),
        current: "changed".into(),
    })
}

/// Commits `writes` under `compares` and returns `out` with the commit's revision set by
/// `set_etag`. A failed compare is `on_conflict` when given; every other failure (and a
/// failed compare without `on_conflict`) is mapped by the writer for `name`.
pub async fn commit_stamped<T>(
    ctx: &Ctx,
    compares: Vec<Compare>,
    writes: Vec<Write>,
    mut out: T,
    set_etag: impl FnOnce(&mut T, i64),
    name: &str,
    on_conflict: Option<ApiError>,
) -> Result<T, ApiError> {
    match (ctx.commit(compares, writes, vec![]).await, on_conflict) {
        (Ok(resp), _) => {
            set_etag(&mut out, resp.revision);
            Ok(out)
        }
        (Err(WriteError::Conflict { .. }), Some(e)) => Err(e),
        (Err(e), _) => Err(ctx.writer.api_error(e, name).await),
    }
}

/// Encodes a page token (the next key, hex).
pub fn encode_page_token(key: &str) -> String {
    hex::encode(key.as_bytes())
}

/// Decodes a page token; it must point under `prefix`.
pub fn decode_page_token(v: &mut Violations, token: &str, prefix: &str) -> Option<String> {
    if token.is_empty() {
        return None;
    }
    match hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|k| k.starts_with(prefix))
    {
        Some(k) => Some(k),
        None => {
            v.add("page_token", "not a token returned by this API");
            None
        }
    }
}

/// One page of keys under `prefix`: (kvs, next page token, revision).
pub async fn list_page(
    ctx: &Ctx,
    prefix: &str,
    limit: usize,
    start: Option<String>,
) -> Result<(Vec<KeyValue>, String, i64), ApiError> {
    let mut req = RangeRequest::prefix(prefix).with_limit(limit);
    if let Some(s) = start {
        req = req.starting_at(s);
    }
    let resp = ctx.store.range(req.clone()).await?;
    let next = resp
        .next_page(&req)
        .and_then(|r| r.start)
        .map(|k| encode_page_token(&k))
        .unwrap_or_default();
    Ok((resp.kvs, next, resp.revision))
}

/// INVALID_REQUEST unless a watch request's `revision` is >= 0 and its `name`, when given,
/// passes `check_name`.
pub fn validate_watch(
    revision: i64,
    name: &str,
    check_name: impl FnOnce(&mut Violations, &str, &str),
) -> Result<(), ApiError> {
    let mut v = Violations::default();
    if revision < 0 {
        v.add("revision", "must be >= 0");
    }
    if !name.is_empty() {
        check_name(&mut v, "name", name);
    }
    v.into_result("INVALID_REQUEST")
}

/// Watches the objects of type `T` under `prefix` (see [`watch_stream`]): each event carries
/// the object (or, for a delete whose object is unknown, one with only its name) with its
/// etag set to the event's revision; `wrap` builds the response from (event type, object,
/// revision), and a bookmark is `wrap(Bookmark, None, revision)`.
pub fn watch_objects<T, R>(
    ctx: Arc<Ctx>,
    prefix: &'static str,
    revision: i64,
    name: String,
    wrap: fn(WatchEventType, Option<T>, i64) -> R,
) -> ReceiverStream<Result<R, Status>>
where
    T: Object + 'static,
    R: Send + 'static,
{
    let make: MakeEvent<R> = Arc::new(
        move |t: WatchEventType, _key: &str, name: &str, bytes: Option<&[u8]>, rev: i64| {
            let mut obj = bytes.and_then(|b| T::decode(b).ok()).unwrap_or_else(|| {
                let mut o = T::default();
                *o.meta_slot() = Some(ObjectMeta {
                    name: name.to_string(),
                    ..Default::default()
                });
                o
            });
            set_etag(&mut obj, rev);
            Some(wrap(t, Some(obj), rev))
        },
    );
    let bookmark = Arc::new(move |rev: i64| wrap(WatchEventType::Bookmark, None, rev));
    watch_stream(
        ctx,
        prefix,
        revision,
        name,
        keys::name_under,
        make,
        bookmark,
    )
}

/// Builds one watch response: (event type, key, object name, value bytes if known — for a
/// delete, the previous value —, revision); `None` sends nothing for the event.
pub type MakeEvent<R> =
    Arc<dyn Fn(WatchEventType, &str, &str, Option<&[u8]>, i64) -> Option<R> + Send + Sync>;

/// The object name a key under a prefix belongs to, or `None` for keys the watch ignores
/// (usually [`keys::name_under`]: single-segment keys only).
pub type NameOf = for<'a> fn(&str, &'a str) -> Option<&'a str>;

/// Streams events for the keys under `prefix` that `name_of` maps to an object (optionally
/// only `name`) after `revision`; `revision == 0` first sends the current keys as PUT events.
pub fn watch_stream<R: Send + 'static>(
    ctx: Arc<Ctx>,
    prefix: &'static str,
    revision: i64,
    name: String,
    name_of: NameOf,
    make: MakeEvent<R>,
    bookmark: Arc<dyn Fn(i64) -> R + Send + Sync>,
) -> ReceiverStream<Result<R, Status>> {
    let (tx, rx) = mpsc::channel(128);
    tokio::spawn(async move {
        let wanted = |key: &str| {
            name_of(prefix, key)
                .filter(|n| name.is_empty() || *n == name)
                .map(str::to_string)
        };
        let mut from = revision + 1;
        if revision == 0 {
            let mut req = RangeRequest::prefix(prefix).with_limit(500);
            let mut first = 0;
            loop {
                let resp = match ctx.store.range(req.clone()).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(ApiError::Store(e).into())).await;
                        return;
                    }
                };
                if first == 0 {
                    first = resp.revision;
                }
                for kv in &resp.kvs {
                    if let Some(n) = wanted(&kv.key)
                        && let Some(ev) = make(
                            WatchEventType::Put,
                            &kv.key,
                            &n,
                            Some(&kv.value),
                            kv.mod_revision,
                        )
                        && tx.send(Ok(ev)).await.is_err()
                    {
                        return;
                    }
                }
                match resp.next_page(&req) {
                    Some(n) => req = n,
                    None => break,
                }
            }
            from = first + 1;
        }
        let mut events = match ctx.store.watch(prefix, from).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(ApiError::Store(e).into())).await;
                return;
            }
        };
        let mut last = from - 1;
        let mut tick = tokio::time::interval(BOOKMARK_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        last = ev.revision();
                        let Some(n) = wanted(&ev.kv.key) else { continue };
                        let out = match ev.kind {
                            EventKind::Put => make(WatchEventType::Put, &ev.kv.key, &n, Some(&ev.kv.value), last),
                            EventKind::Delete => make(
                                WatchEventType::Delete,
                                &ev.kv.key,
                                &n,
                                ev.prev.as_ref().map(|p| p.value.as_slice()),
                                last,
                            ),
                        };
                        if let Some(out) = out
                            && tx.send(Ok(out)).await.is_err() {
                                return;
                            }
                    }
                    Some(Err(StoreError::Compacted { compact_revision })) => {
                        let e = ApiError::WatchRevisionCompacted { revision, compact_revision };
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Err(ApiError::Store(e).into())).await;
                        return;
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    if tx.send(Ok(bookmark(last))).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
                _ = ctx.shutdown.cancelled() => return,
            }
        }
    });
    ReceiverStream::new(rx)
}

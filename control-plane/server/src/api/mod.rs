//! The public `flotilla.v1` services this control plane serves: clusters, nodes, operations.
//!
//! Each RPC validates its input ([`crate::validate`]), runs under a tracing span named after
//! the method with the resource name and request id, writes only through the fenced writer
//! (so followers answer UNAVAILABLE/NOT_LEADER and a deposed leader cannot write), and maps
//! every failure to an [`ApiError`](crate::errors::ApiError). Shared here: paging tokens and
//! the watch stream (list-then-watch from a revision, OUT_OF_RANGE on compaction, bookmarks).

pub mod cluster;
pub mod node;
pub mod operation;

use std::sync::Arc;
use std::time::Duration;

use flotilla_intent_store::{EventKind, KeyValue, RangeRequest, StoreError, keys};
use flotilla_proto::v1::WatchEventType;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::context::Ctx;
use crate::errors::ApiError;
use crate::validate::Violations;

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

/// Builds one watch response: (event type, object name, object bytes if known, revision).
pub type MakeEvent<R> =
    Arc<dyn Fn(WatchEventType, &str, Option<&[u8]>, i64) -> Option<R> + Send + Sync>;

/// Streams events for single-segment keys under `prefix` (optionally only `name`) after
/// `revision`; `revision == 0` first sends the current objects as PUT events.
pub fn watch_stream<R: Send + 'static>(
    ctx: Arc<Ctx>,
    prefix: &'static str,
    revision: i64,
    name: String,
    make: MakeEvent<R>,
    bookmark: Arc<dyn Fn(i64) -> R + Send + Sync>,
) -> ReceiverStream<Result<R, Status>> {
    let (tx, rx) = mpsc::channel(128);
    tokio::spawn(async move {
        let wanted = |key: &str| {
            keys::name_under(prefix, key)
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
                        && let Some(ev) =
                            make(WatchEventType::Put, &n, Some(&kv.value), kv.mod_revision)
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
                            EventKind::Put => make(WatchEventType::Put, &n, Some(&ev.kv.value), last),
                            EventKind::Delete => make(
                                WatchEventType::Delete,
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

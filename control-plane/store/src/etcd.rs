//! The etcd backend (`--etcd-endpoints a,b,c`): the HA store, on the `etcd-client` crate.
//!
//! The trait was cut from etcd's API, so this module is a 1:1 mapping:
//!
//! | trait | etcd |
//! |---|---|
//! | `get`, `range` | `Range` (prefix = `[prefix, prefix_end)`, `limit`, `more`) |
//! | `txn` | `Txn` with `Compare{MOD,CREATE,VALUE} == …`; `Absent` is `CREATE == 0` |
//! | `watch` | `Watch` with `start_revision` and `prev_kv`; a response with `compact_revision` becomes `Compacted` |
//! | `compact` | `Compact` (physical, so the history is really gone when it returns) |
//! | leases | `LeaseGrant`, one round of `LeaseKeepAlive`, `LeaseRevoke`, `LeaseTimeToLive(keys)` |
//! | election | the shared recipe in [`crate::election`] (same keys as etcd's `concurrency` package) |
//!
//! Errors: etcd's "required revision has been compacted" / "is a future revision" / "requested
//! lease not found" become `Compacted` / `FutureRevision` / `LeaseNotFound`; gRPC
//! `InvalidArgument` becomes `InvalidArgument`; everything else (transport, no leader,
//! timeouts) is `Unavailable` and worth retrying. TLS endpoints are not supported yet.

use std::time::Duration;

use etcd_client::{
    Client, CompactionOptions, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    LeaseTimeToLiveOptions, PutOptions, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, debug, info_span};

use crate::error::{Result, StoreError};
use crate::store::{IntentStore, WatchStream};
use crate::types::{
    Compare, EventKind, KeyValue, Lease, LeaseId, LeaseInfo, Op, OpResponse, RangeRequest,
    RangeResponse, Txn, TxnResponse, WatchEvent, prefix_end,
};

/// Events buffered between the watch task and the consumer.
const WATCH_CHANNEL: usize = 256;

/// The etcd [`IntentStore`].
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// Maps an etcd client error; `lease` names the lease a "lease not found" refers to.
fn map_err(e: etcd_client::Error, lease: Option<LeaseId>) -> StoreError {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => {
            let msg = status.message();
            if msg.contains("required revision has been compacted") {
                StoreError::Compacted {
                    compact_revision: 0,
                }
            } else if msg.contains("required revision is a future revision") {
                StoreError::FutureRevision {
                    revision: 0,
                    current: 0,
                }
            } else if msg.contains("lease not found") {
                StoreError::LeaseNotFound(lease.unwrap_or(LeaseId(0)))
            } else if status.code() == tonic::Code::InvalidArgument {
                StoreError::InvalidArgument(msg.to_string())
            } else {
                StoreError::Unavailable(format!("etcd: {status}"))
            }
        }
        E::LeaseKeepAliveError(_) => StoreError::LeaseNotFound(lease.unwrap_or(LeaseId(0))),
        E::InvalidArgs(msg) => StoreError::InvalidArgument(msg),
        other => StoreError::Unavailable(format!("etcd: {other}")),
    }
}

fn convert_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv
        .key_str()
        .map_err(|_| StoreError::Storage("etcd returned a non-UTF-8 key".into()))?;
    Ok(KeyValue {
        key: key.to_string(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    })
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map_or(0, |h| h.revision())
}

/// The first key of a scan: etcd has no empty key, `"\0"` starts the keyspace.
fn scan_start(key: &str) -> Vec<u8> {
    if key.is_empty() {
        vec![0]
    } else {
        key.as_bytes().to_vec()
    }
}

fn convert_compare(c: &Compare) -> etcd_client::Compare {
    match c {
        Compare::ModRevision(k, r) => {
            etcd_client::Compare::mod_revision(k.as_str(), CompareOp::Equal, *r)
        }
        Compare::CreateRevision(k, r) => {
            etcd_client::Compare::create_revision(k.as_str(), CompareOp::Equal, *r)
        }
        Compare::Absent(k) => {
            etcd_client::Compare::create_revision(k.as_str(), CompareOp::Equal, 0)
        }
        Compare::Value(k, v) => {
            etcd_client::Compare::value(k.as_str(), CompareOp::Equal, v.clone())
        }
    }
}

fn convert_op(op: &Op) -> TxnOp {
    match op {
        Op::Put { key, value, lease } => TxnOp::put(
            key.as_str(),
            value.clone(),
            lease.map(|l| PutOptions::new().with_lease(l.0)),
        ),
        Op::Delete { key } => TxnOp::delete(key.as_str(), None),
        Op::DeletePrefix { prefix } => TxnOp::delete(
            prefix.as_str(),
            Some(DeleteOptions::new().with_range(prefix_end(prefix.as_bytes()))),
        ),
        Op::Get { key } => TxnOp::get(key.as_str(), None),
    }
}

fn convert_event(ev: &etcd_client::Event) -> Result<WatchEvent> {
    let kv = ev
        .kv()
        .ok_or_else(|| StoreError::Unavailable("etcd watch event without a key".into()))?;
    Ok(WatchEvent {
        kind: match ev.event_type() {
            EventType::Put => EventKind::Put,
            EventType::Delete => EventKind::Delete,
        },
        kv: convert_kv(kv)?,
        prev: ev.prev_kv().map(convert_kv).transpose()?,
    })
}

impl EtcdStore {
    /// Connects to an etcd cluster (`http://host:port` endpoints). Fails with `Unavailable`
    /// when no endpoint answers a status request within a few seconds.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(StoreError::InvalidSpec("no etcd endpoints".into()));
        }
        let span = info_span!("etcd_connect", endpoints = %endpoints.join(","));
        async {
            let options = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
            let client = Client::connect(endpoints, Some(options))
                .await
                .map_err(|e| map_err(e, None))?;
            // Prove the cluster answers before handing the store out.
            let mut probe = client.clone();
            tokio::time::timeout(Duration::from_secs(5), probe.status())
                .await
                .map_err(|_| StoreError::Unavailable("etcd did not answer within 5s".into()))?
                .map_err(|e| map_err(e, None))?;
            Ok(Self {
                client,
                endpoints: endpoints.to_vec(),
            })
        }
        .instrument(span)
        .await
    }

    /// The endpoints this store was connected with.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    async fn do_get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(|e| map_err(e, None))?;
        resp.kvs().first().map(convert_kv).transpose()
    }

    async fn do_range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let start = req.start_key();
        if !start.starts_with(&req.prefix) {
            return Err(StoreError::InvalidArgument(format!(
                "range start {start:?} is outside prefix {:?}",
                req.prefix
            )));
        }
        let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
        let options = GetOptions::new()
            .with_range(prefix_end(req.prefix.as_bytes()))
            .with_limit(limit);
        let resp = self
            .client
            .kv_client()
            .get(scan_start(start), Some(options))
            .await
            .map_err(|e| map_err(e, None))?;
        Ok(RangeResponse {
            kvs: resp.kvs().iter().map(convert_kv).collect::<Result<_>>()?,
            more: resp.more(),
            revision: header_revision(resp.header()),
        })
    }

    async fn do_txn(&self, txn: Txn) -> Result<TxnResponse> {
        txn.validate()?;
        let lease = txn
            .success
            .iter()
            .chain(&txn.failure)
            .find_map(|op| match op {
                Op::Put { lease, .. } => *lease,
                _ => None,
            });
        let etxn = etcd_client::Txn::new()
            .when(txn.compares.iter().map(convert_compare).collect::<Vec<_>>())
            .and_then(txn.success.iter().map(convert_op).collect::<Vec<_>>())
            .or_else(txn.failure.iter().map(convert_op).collect::<Vec<_>>());
        let resp = self
            .client
            .kv_client()
            .txn(etxn)
            .await
            .map_err(|e| map_err(e, lease))?;
        let mut responses = Vec::new();
        for r in resp.op_responses() {
            responses.push(match r {
                TxnOpResponse::Put(_) => OpResponse::Put,
                TxnOpResponse::Delete(d) => OpResponse::Delete {
                    deleted: d.deleted(),
                },
                TxnOpResponse::Get(g) => {
                    OpResponse::Get(g.kvs().first().map(convert_kv).transpose()?)
                }
                TxnOpResponse::Txn(_) => {
                    return Err(StoreError::Unavailable(
                        "etcd answered a nested transaction we did not send".into(),
                    ));
                }
            });
        }
        Ok(TxnResponse {
            succeeded: resp.succeeded(),
            revision: header_revision(resp.header()),
            responses,
        })
    }

    async fn do_watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        let mut options = WatchOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_prev_key();
        if from_revision > 0 {
            options = options.with_start_revision(from_revision);
        }
        let mut stream = self
            .client
            .watch_client()
            .watch(scan_start(prefix), Some(options))
            .await
            .map_err(|e| map_err(e, None))?;
        // Wait for etcd to confirm the watch, so that every later write is delivered.
        let first = stream.message().await.map_err(|e| map_err(e, None))?;
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
        let mut pending = Vec::new();
        match first {
            Some(resp) if resp.created() => pending.push(resp),
            Some(resp) => pending.push(resp),
            None => {
                return Err(StoreError::Unavailable(
                    "etcd closed the watch before confirming it".into(),
                ));
            }
        }
        let span = info_span!("watch", prefix = %prefix, from = from_revision);
        tokio::spawn(
            async move {
                let mut next = pending.pop();
                loop {
                    let resp = match next.take() {
                        Some(r) => r,
                        None => {
                            let msg = tokio::select! {
                                _ = tx.closed() => return,
                                m = stream.message() => m,
                            };
                            match msg {
                                Ok(Some(r)) => r,
                                Ok(None) => {
                                    let _ = tx
                                        .send(Err(StoreError::Unavailable(
                                            "etcd closed the watch".into(),
                                        )))
                                        .await;
                                    return;
                                }
                                Err(e) => {
                                    let _ = tx.send(Err(map_err(e, None))).await;
                                    return;
                                }
                            }
                        }
                    };
                    if resp.compact_revision() > 0 {
                        debug!(
                            compact_revision = resp.compact_revision(),
                            "watch compacted"
                        );
                        let _ = tx
                            .send(Err(StoreError::Compacted {
                                compact_revision: resp.compact_revision(),
                            }))
                            .await;
                        return;
                    }
                    for ev in resp.events() {
                        if tx.send(convert_event(ev)).await.is_err() {
                            return;
                        }
                    }
                    if resp.canceled() {
                        let _ = tx
                            .send(Err(StoreError::Unavailable(format!(
                                "etcd cancelled the watch: {}",
                                resp.cancel_reason()
                            ))))
                            .await;
                        return;
                    }
                }
            }
            .instrument(span),
        );
        Ok(ReceiverStream::new(rx).boxed())
    }

    async fn do_keep_alive(&self, id: LeaseId) -> Result<i64> {
        let (mut keeper, mut stream) = self
            .client
            .lease_client()
            .keep_alive(id.0)
            .await
            .map_err(|e| map_err(e, Some(id)))?;
        // The call above already renewed once but does not return the TTL; ask once more.
        keeper
            .keep_alive()
            .await
            .map_err(|e| map_err(e, Some(id)))?;
        match stream.message().await.map_err(|e| map_err(e, Some(id)))? {
            Some(resp) if resp.ttl() > 0 => Ok(resp.ttl()),
            Some(_) => Err(StoreError::LeaseNotFound(id)),
            None => Err(StoreError::Unavailable(
                "etcd closed the keep-alive stream".into(),
            )),
        }
    }

    async fn do_time_to_live(&self, id: LeaseId) -> Result<LeaseInfo> {
        let resp = self
            .client
            .lease_client()
            .time_to_live(id.0, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .map_err(|e| map_err(e, Some(id)))?;
        if resp.ttl() < 0 {
            return Err(StoreError::LeaseNotFound(id));
        }
        let mut keys = resp
            .keys()
            .iter()
            .map(|k| {
                String::from_utf8(k.clone())
                    .map_err(|_| StoreError::Storage("etcd returned a non-UTF-8 key".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        keys.sort();
        Ok(LeaseInfo {
            id,
            ttl: resp.ttl(),
            granted_ttl: resp.granted_ttl(),
            keys,
        })
    }
}

impl IntentStore for EtcdStore {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>>> {
        Box::pin(self.do_get(key).instrument(info_span!("store_get", key)))
    }

    fn range(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse>> {
        let span = info_span!("store_range", prefix = %req.prefix, limit = req.limit);
        Box::pin(self.do_range(req).instrument(span))
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>> {
        let span = info_span!(
            "store_txn",
            compares = txn.compares.len(),
            success = txn.success.len(),
            failure = txn.failure.len()
        );
        Box::pin(self.do_txn(txn).instrument(span))
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: i64,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        Box::pin(self.do_watch(prefix, from_revision))
    }

    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<()>> {
        Box::pin(
            async move {
                self.client
                    .kv_client()
                    .compact(revision, Some(CompactionOptions::new().with_physical()))
                    .await
                    .map_err(|e| match map_err(e, None) {
                        StoreError::FutureRevision { .. } => StoreError::FutureRevision {
                            revision,
                            current: 0,
                        },
                        other => other,
                    })?;
                Ok(())
            }
            .instrument(info_span!("store_compact", revision)),
        )
    }

    fn lease_grant(&self, ttl_secs: i64) -> BoxFuture<'_, Result<Lease>> {
        Box::pin(
            async move {
                if ttl_secs <= 0 {
                    return Err(StoreError::InvalidArgument(format!(
                        "lease TTL must be positive, got {ttl_secs}"
                    )));
                }
                let resp = self
                    .client
                    .lease_client()
                    .grant(ttl_secs, None)
                    .await
                    .map_err(|e| map_err(e, None))?;
                Ok(Lease {
                    id: LeaseId(resp.id()),
                    ttl: resp.ttl(),
                })
            }
            .instrument(info_span!("lease_grant", ttl = ttl_secs)),
        )
    }

    fn lease_keep_alive(&self, id: LeaseId) -> BoxFuture<'_, Result<i64>> {
        Box::pin(
            self.do_keep_alive(id)
                .instrument(info_span!("lease_keep_alive", lease = %id)),
        )
    }

    fn lease_revoke(&self, id: LeaseId) -> BoxFuture<'_, Result<()>> {
        Box::pin(
            async move {
                self.client
                    .lease_client()
                    .revoke(id.0)
                    .await
                    .map_err(|e| map_err(e, Some(id)))?;
                Ok(())
            }
            .instrument(info_span!("lease_revoke", lease = %id)),
        )
    }

    fn lease_time_to_live(&self, id: LeaseId) -> BoxFuture<'_, Result<LeaseInfo>> {
        Box::pin(self.do_time_to_live(id))
    }
}

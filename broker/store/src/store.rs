//! [`MessageStore`]: the public face of the store, tying CommitLog, ConsumeQueues, index,
//! flushing, checkpointing, recovery and retention together.
//!
//! # Concurrency and dispatch
//!
//! Appends take one mutex (the *put lock*) for the time it takes to copy the encoded records
//! into the mapped CommitLog file and to **dispatch them synchronously**: the ConsumeQueue
//! entry and index entries of each record are written before the lock is released. Queue
//! offsets are therefore assigned in CommitLog order with no separate reput thread, and a
//! record is visible to `get_message` as soon as `put_message` returns. The `dispatched`
//! watermark (CommitLog offset below which every record has been dispatched) is what the
//! checkpoint records; after a crash, recovery re-dispatches from there.
//!
//! Readers never take the put lock: they read published positions (atomics) and the mapped
//! bytes under each segment's shared lock.
//!
//! SYNC_FLUSH waiting happens *after* the put lock is released, so concurrent producers'
//! records pile up while one `msync` runs and are made durable together (group commit).
//!
//! Dropping every handle without [`MessageStore::shutdown`] behaves like a crash (the abort
//! file stays, the next open validates the log tail).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::{broadcast, watch};

use crate::checkpoint::{self, Checkpoint};
use crate::codec::{self, DecodedRecord, RecordFields};
use crate::commitlog::{CommitLog, ScanEnd};
use crate::config::{FlushDiskType, StoreConfig};
use crate::consume_queue::{Boundary, ConsumeQueue, CqEntry};
use crate::error::StoreError;
use crate::flush::{FlushSignals, run_flusher};
use crate::index::Index;
use crate::message::{
    AppendResult, Arrival, GetMessageResult, GetStatus, MessageInner, PutResult, PutStatus,
    RecordPosition,
};
use crate::retention::{self, RetentionReport};
use crate::warmup::{WarmSignal, run_warmer};

/// Longest topic accepted: it becomes a directory name under `consumequeue/`.
pub const MAX_TOPIC_LEN: usize = 255;
/// Most ConsumeQueue entries one `get_message` call scans (bounds filtered pulls).
const MAX_SCAN_ENTRIES: i64 = 16_000;

type CqTable = HashMap<String, HashMap<i32, Arc<ConsumeQueue>>>;

/// Shared state behind every [`MessageStore`] handle.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) cfg: StoreConfig,
    pub(crate) commitlog: CommitLog,
    pub(crate) cqs: RwLock<CqTable>,
    pub(crate) index: Index,
    put_lock: Mutex<()>,
    pub(crate) dispatched: AtomicI64,
    confirm_offset: AtomicI64,
    /// Set in DLedger mode: an unset confirm offset means "nothing confirmed" rather than
    /// "everything" (see [`MessageStore::set_confirm_strict`]).
    confirm_strict: AtomicBool,
    pub(crate) disk_full: AtomicBool,
    pub(crate) disk_ratio_bits: AtomicU64,
    flush_signals: Arc<FlushSignals>,
    warm_signal: Arc<WarmSignal>,
    hk_signal: Arc<(Mutex<bool>, Condvar)>,
    shutdown: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    notifier: watch::Sender<i64>,
    arrivals: broadcast::Sender<Arrival>,
    _lock_file: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush_signals.stop();
        self.warm_signal.stop();
        *self.hk_signal.0.lock() = true;
        self.hk_signal.1.notify_all();
    }
}

/// The message store. Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Debug, Clone)]
pub struct MessageStore {
    inner: Arc<Inner>,
}

/// Checks a topic name: non-empty, at most [`MAX_TOPIC_LEN`] bytes, RocketMQ's character set
/// (`[%|a-zA-Z0-9_-]`), so it is also a safe directory name.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

fn cq_dir(root: &Path, topic: &str, queue_id: i32) -> PathBuf {
    root.join("consumequeue")
        .join(topic)
        .join(queue_id.to_string())
}

/// The first queue offset of `cq` whose record ends above `phys_bound` (its max offset when
/// every record ends at or below it). Entries are in CommitLog order, so this is a binary
/// search; the common case (everything visible) costs one lookup.
fn visible_max(cq: &ConsumeQueue, phys_bound: i64) -> i64 {
    let (min, max) = (cq.min_offset(), cq.max_offset());
    if phys_bound == i64::MAX || max <= min {
        return max;
    }
    let ends_below = |q: i64| {
        cq.get(q)
            .is_none_or(|e| e.phys_offset + i64::from(e.size) <= phys_bound)
    };
    if ends_below(max - 1) {
        return max;
    }
    // Invariant: every offset < lo is visible, `hi` is not.
    let (mut lo, mut hi) = (min, max - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if ends_below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

struct Prepared<'a> {
    msg: &'a MessageInner,
    crc: i32,
    len: usize,
    tags_code: i64,
}

impl Inner {
    fn fields<'a>(&self, m: &'a MessageInner, store_ts: i64) -> RecordFields<'a> {
        RecordFields {
            topic: &m.topic,
            queue_id: m.queue_id,
            flag: m.flag,
            body: &m.body,
            properties: &m.properties,
            sys_flag: m.sys_flag,
            born_timestamp: m.born_timestamp,
            born_host: m.born_host,
            store_timestamp: store_ts,
            store_host: self.cfg.store_host,
            reconsume_times: m.reconsume_times,
            prepared_transaction_offset: m.prepared_transaction_offset,
        }
    }

    pub(crate) fn cq(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.cqs.read().get(topic)?.get(&queue_id).cloned()
    }

    pub(crate) fn cq_or_create(
        &self,
        topic: &str,
        queue_id: i32,
    ) -> Result<Arc<ConsumeQueue>, StoreError> {
        if let Some(q) = self.cq(topic, queue_id) {
            return Ok(q);
        }
        let mut table = self.cqs.write();
        let by_q = table.entry(topic.to_string()).or_default();
        if let Some(q) = by_q.get(&queue_id) {
            return Ok(q.clone());
        }
        let q = Arc::new(ConsumeQueue::load(
            &cq_dir(&self.cfg.root, topic, queue_id),
            topic,
            queue_id,
            self.cfg.cq_entries_per_file,
        )?);
        by_q.insert(queue_id, q.clone());
        Ok(q)
    }

    pub(crate) fn all_cqs(&self) -> Vec<Arc<ConsumeQueue>> {
        self.cqs
            .read()
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// Dispatches one record (already in the CommitLog) to its ConsumeQueue and the index.
    /// Idempotent: entries already present are skipped. A queue whose entries stop short of
    /// the record's queue offset (lost entries) is restarted at that offset.
    pub(crate) fn dispatch(&self, pos: i64, rec: &DecodedRecord<'_>) -> Result<(), StoreError> {
        if valid_topic(rec.topic) && rec.queue_id >= 0 {
            let cq = self.cq_or_create(rec.topic, rec.queue_id)?;
            let max = cq.max_offset();
            if rec.queue_offset >= max {
                if rec.queue_offset > max {
                    tracing::warn!(
                        topic = rec.topic,
                        queue_id = rec.queue_id,
                        max,
                        found = rec.queue_offset,
                        "consume queue misses entries; restarting it at the record's offset"
                    );
                    cq.reset_to(rec.queue_offset)?;
                }
                let tags = if rec.sys_flag & codec::TRANSACTION_MASK == 0x4 {
                    0
                } else {
                    codec::tags_code(codec::property(rec.properties, codec::PROPERTY_TAGS))
                };
                cq.append(
                    rec.queue_offset,
                    CqEntry {
                        phys_offset: pos,
                        size: rec.total_size,
                        tags_code: tags,
                    },
                )?;
            }
        }
        self.index_record(
            rec.topic,
            pos,
            rec.total_size,
            rec.store_timestamp,
            rec.properties,
        )
    }

    fn index_record(
        &self,
        topic: &str,
        pos: i64,
        size: i32,
        store_ts: i64,
        props: &str,
    ) -> Result<(), StoreError> {
        let keys = codec::property(props, codec::PROPERTY_KEYS).unwrap_or("");
        let uniq = codec::property(props, codec::PROPERTY_UNIQ_KEY);
        if keys.is_empty() && uniq.is_none() {
            self.index.advance(pos + i64::from(size));
            return Ok(());
        }
        let it = keys.split(' ').chain(uniq);
        self.index.add(topic, pos, size, store_ts, it)
    }

    fn notify(&self, touched: &[(&str, i32, i64)]) {
        // Waking a watch costs a few percent of an append; skip it while nobody watches
        // (`new_message_notifier` publishes the current value when someone subscribes).
        if self.notifier.receiver_count() > 0 {
            self.notifier.send_replace(self.commitlog.max_offset());
        }
        if self.arrivals.receiver_count() > 0 {
            for (topic, queue_id, max_offset) in touched {
                let _ = self.arrivals.send(Arrival {
                    topic: Arc::from(*topic),
                    queue_id: *queue_id,
                    max_offset: *max_offset,
                });
            }
        }
    }

    /// Appends a batch under the put lock. Returns the result and the end offset to wait for.
    fn append_batch(&self, batch: &[MessageInner]) -> (PutResult, i64) {
        let _span = tracing::debug_span!(
            "append",
            count = batch.len(),
            topic = batch.first().map(|m| m.topic.as_str())
        )
        .entered();
        if self.shutdown.load(Ordering::Acquire) {
            return (PutResult::failed(PutStatus::ServiceNotAvailable), 0);
        }
        if self.disk_full.load(Ordering::Acquire) {
            return (PutResult::failed(PutStatus::DiskFull), 0);
        }
        if batch.is_empty() {
            return (PutResult::failed(PutStatus::MessageIllegal), 0);
        }
        let mut prepared = Vec::with_capacity(batch.len());
        for m in batch {
            match self.prepare(m) {
                Ok(p) => prepared.push(p),
                Err(s) => return (PutResult::failed(s), 0),
            }
        }
        let guard = self.put_lock.lock();
        if self.shutdown.load(Ordering::Acquire) {
            return (PutResult::failed(PutStatus::ServiceNotAvailable), 0);
        }
        let store_ts = self.cfg.clock.now_ms();
        let mut records = Vec::with_capacity(prepared.len());
        let mut touched: Vec<(&str, i32, i64)> = Vec::new();
        // Consecutive records of one batch usually go to the same queue: look it up once.
        let mut cq: Option<Arc<ConsumeQueue>> = None;
        let mut wrote_bytes = 0usize;
        for p in &prepared {
            match self.append_one(&mut cq, p, store_ts) {
                Ok(rp) => {
                    wrote_bytes += rp.size as usize;
                    records.push(rp);
                    match touched.last_mut() {
                        Some(t) if t.0 == p.msg.topic && t.1 == p.msg.queue_id => {
                            t.2 = rp.queue_offset + 1
                        }
                        _ => touched.push((
                            p.msg.topic.as_str(),
                            p.msg.queue_id,
                            rp.queue_offset + 1,
                        )),
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, code = e.code(), "append failed");
                    let end = self.commitlog.max_offset();
                    self.dispatched.store(end, Ordering::Release);
                    drop(guard);
                    self.notify(&touched);
                    let status = match e {
                        StoreError::Segment(_) => PutStatus::CreateMappedFileFailed,
                        _ => PutStatus::UnknownError,
                    };
                    return (PutResult::failed(status), 0);
                }
            }
        }
        let end = self.commitlog.max_offset();
        self.dispatched.store(end, Ordering::Release);
        drop(guard);
        self.warm_signal.after_append(end);
        self.notify(&touched);
        let (Some(first), count) = (records.first().copied(), records.len()) else {
            return (PutResult::failed(PutStatus::UnknownError), 0);
        };
        let append = AppendResult {
            wrote_offset: first.phys_offset,
            wrote_bytes,
            store_host: self.cfg.store_host,
            records,
            store_timestamp: store_ts,
            logical_offset: first.queue_offset,
            count,
        };
        (
            PutResult {
                status: PutStatus::PutOk,
                append: Some(append),
            },
            end,
        )
    }

    fn prepare<'a>(&self, m: &'a MessageInner) -> Result<Prepared<'a>, PutStatus> {
        if !valid_topic(&m.topic) || m.queue_id < 0 {
            return Err(PutStatus::MessageIllegal);
        }
        if m.properties.len() > codec::MAX_PROPERTIES_LEN {
            return Err(PutStatus::PropertiesSizeExceeded);
        }
        let len = match codec::record_len(&self.fields(m, 0)) {
            Ok(l) => l,
            Err(codec::CodecError::FieldTooLarge("properties")) => {
                return Err(PutStatus::PropertiesSizeExceeded);
            }
            Err(_) => return Err(PutStatus::MessageIllegal),
        };
        if len > self.cfg.max_message_size
            || len + codec::END_FILE_MIN_BLANK_LENGTH > self.commitlog.file_size()
        {
            return Err(PutStatus::MessageIllegal);
        }
        Ok(Prepared {
            msg: m,
            crc: codec::body_crc(&m.body),
            len,
            tags_code: m.effective_tags_code(),
        })
    }

    fn append_one(
        &self,
        last_cq: &mut Option<Arc<ConsumeQueue>>,
        p: &Prepared<'_>,
        store_ts: i64,
    ) -> Result<RecordPosition, StoreError> {
        let m = p.msg;
        let cq = match last_cq {
            Some(q) if q.queue_id() == m.queue_id && q.topic() == m.topic => q,
            _ => last_cq.insert(self.cq_or_create(&m.topic, m.queue_id)?),
        };
        let q = cq.max_offset();
        let pos = self.commitlog.prepare(p.len)?;
        let fields = self.fields(m, store_ts);
        self.commitlog.write_at_with(pos, p.len, |dst| {
            codec::encode_record_into(dst, &fields, q, pos, p.crc)?;
            Ok(())
        })?;
        let size = p.len as i32;
        cq.append(
            q,
            CqEntry {
                phys_offset: pos,
                size,
                tags_code: p.tags_code,
            },
        )?;
        self.index_record(&m.topic, pos, size, store_ts, &m.properties)?;
        Ok(RecordPosition {
            phys_offset: pos,
            size,
            queue_offset: q,
        })
    }

    /// Flushes ConsumeQueues and the index, then writes the checkpoint.
    pub(crate) fn checkpoint_once(&self) -> Result<Checkpoint, StoreError> {
        let dispatched = self.dispatched.load(Ordering::Acquire);
        for cq in self.all_cqs() {
            cq.flush()?;
        }
        let index_safe = self.index.flush()?;
        let cp = Checkpoint {
            commitlog_flushed: self.commitlog.flushed_offset(),
            cq_safe: dispatched,
            index_safe,
            confirm_offset: self.confirm_offset.load(Ordering::Acquire),
            timestamp_ms: self.cfg.clock.now_ms(),
        };
        cp.save(&self.cfg.root)?;
        Ok(cp)
    }
}

fn run_housekeeping(weak: Weak<Inner>, signal: Arc<(Mutex<bool>, Condvar)>) {
    let mut last_retention = Instant::now();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let interval = inner.cfg.checkpoint_interval;
        let retention_every = inner.cfg.retention_interval;
        drop(inner);
        let stop = {
            let mut s = signal.0.lock();
            if !*s {
                signal.1.wait_for(&mut s, interval);
            }
            *s
        };
        if stop {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        let _span = tracing::debug_span!("housekeeping").entered();
        if let Err(e) = inner.checkpoint_once() {
            tracing::error!(error = %e, code = e.code(), "checkpoint failed");
        }
        if last_retention.elapsed() >= retention_every {
            last_retention = Instant::now();
            retention::run_once(&inner, false);
        }
    }
}

impl MessageStore {
    /// Opens (or creates) the store at `cfg.root`, recovering after a crash if the abort file
    /// is present, and starts the background services.
    #[tracing::instrument(skip_all, fields(root = %cfg.root.display()))]
    pub fn open(cfg: StoreConfig) -> Result<MessageStore, StoreError> {
        cfg.validate()?;
        let root = cfg.root.clone();
        std::fs::create_dir_all(&root)
            .map_err(StoreError::io(format!("create {}", root.display())))?;
        let lock_file = checkpoint::lock_store(&root)?;
        checkpoint::check_format(&root)?;
        let recovered = crate::recovery::recover(&cfg)?;
        let (notifier, _) = watch::channel(recovered.commitlog.max_offset());
        let (arrivals, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            commitlog: recovered.commitlog,
            cqs: RwLock::new(HashMap::new()),
            index: recovered.index,
            put_lock: Mutex::new(()),
            dispatched: AtomicI64::new(0),
            confirm_offset: AtomicI64::new(recovered.confirm_offset),
            confirm_strict: AtomicBool::new(false),
            disk_full: AtomicBool::new(false),
            disk_ratio_bits: AtomicU64::new(0),
            flush_signals: Arc::new(FlushSignals::default()),
            warm_signal: Arc::new(WarmSignal::default()),
            hk_signal: Arc::new((Mutex::new(false), Condvar::new())),
            shutdown: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            notifier,
            arrivals,
            _lock_file: lock_file,
            cfg,
        });
        {
            let mut table = inner.cqs.write();
            for cq in recovered.cqs {
                table
                    .entry(cq.topic().to_string())
                    .or_default()
                    .insert(cq.queue_id(), Arc::new(cq));
            }
        }
        crate::recovery::redispatch(&inner, recovered.redispatch_from)?;
        inner
            .dispatched
            .store(inner.commitlog.max_offset(), Ordering::Release);
        let cl_min = inner.commitlog.min_offset();
        for cq in inner.all_cqs() {
            cq.trim_to(cl_min)?;
        }
        inner.checkpoint_once()?;
        checkpoint::create_abort(&inner.cfg.root)?;
        retention::update_disk_state(&inner);
        if inner.cfg.background_services {
            let mut threads = inner.threads.lock();
            let (w, s) = (Arc::downgrade(&inner), inner.flush_signals.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("store-flush".into())
                    .spawn(move || run_flusher(w, s))
                    .map_err(StoreError::io("spawn flusher"))?,
            );
            let (w, s) = (Arc::downgrade(&inner), inner.warm_signal.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("store-warmup".into())
                    .spawn(move || run_warmer(w, s))
                    .map_err(StoreError::io("spawn warm-up"))?,
            );
            let (w, s) = (Arc::downgrade(&inner), inner.hk_signal.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("store-housekeeping".into())
                    .spawn(move || run_housekeeping(w, s))
                    .map_err(StoreError::io("spawn housekeeping"))?,
            );
        }
        tracing::info!(
            min = inner.commitlog.min_offset(),
            max = inner.commitlog.max_offset(),
            "message store open"
        );
        Ok(MessageStore { inner })
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }

    /// Appends one message. With SYNC_FLUSH (and `WAIT` not `false`) returns only once it is
    /// durable, or FLUSH_DISK_TIMEOUT after `sync_flush_timeout` (the record stays stored).
    pub async fn put_message(&self, msg: MessageInner) -> PutResult {
        self.put_messages(vec![msg]).await
    }

    /// Appends a batch as consecutive records (consecutive queue offsets per queue) with one
    /// durability wait for the whole batch.
    pub async fn put_messages(&self, batch: Vec<MessageInner>) -> PutResult {
        let (mut result, end) = self.inner.append_batch(&batch);
        if result.status != PutStatus::PutOk {
            return result;
        }
        match self.inner.cfg.flush {
            // WAIT=false on every message: do not wait (checked only here, off the ASYNC path).
            FlushDiskType::Sync if batch.iter().all(MessageInner::wait_store_msg_ok) => {
                if self.inner.commitlog.flushed_offset() >= end {
                    return result;
                }
                let rx = self.inner.flush_signals.request(end);
                let ok = if self.inner.cfg.background_services {
                    matches!(
                        tokio::time::timeout(self.inner.cfg.sync_flush_timeout, rx).await,
                        Ok(Ok(true))
                    )
                } else {
                    // No flusher thread: flush inline.
                    self.inner.commitlog.flush().is_ok_and(|f| f >= end)
                };
                if !ok {
                    result.status = PutStatus::FlushDiskTimeout;
                }
            }
            FlushDiskType::Sync => self.inner.flush_signals.kick(),
            FlushDiskType::Async => {
                let dirty =
                    self.inner.commitlog.max_offset() - self.inner.commitlog.flushed_offset();
                if dirty > self.inner.cfg.max_dirty_bytes as i64 {
                    self.inner.flush_signals.kick();
                }
            }
        }
        result
    }

    /// Pulls up to `max_msgs` records (at most `max_bytes`, but always at least one) from a
    /// queue starting at queue offset `offset`, keeping those whose tags code passes `filter`.
    #[tracing::instrument(level = "debug", skip(self, filter))]
    pub fn get_message(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_msgs: i32,
        max_bytes: usize,
        filter: &dyn Fn(i64) -> bool,
    ) -> GetMessageResult {
        self.get_message_below(
            topic,
            queue_id,
            offset,
            max_msgs,
            max_bytes,
            filter,
            i64::MAX,
        )
    }

    /// Like [`MessageStore::get_message`], but only records that end at or below the
    /// CommitLog offset `phys_bound` exist for the reader: the queue's max offset is cut
    /// there ([`MessageStore::max_offset_in_queue_below`]). Replication passes its confirm
    /// offset so consumers never see bytes a new leader could still truncate.
    #[allow(clippy::too_many_arguments)]
    pub fn get_message_below(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_msgs: i32,
        max_bytes: usize,
        filter: &dyn Fn(i64) -> bool,
        phys_bound: i64,
    ) -> GetMessageResult {
        let mut r = GetMessageResult {
            status: GetStatus::NoMatchedLogicQueue,
            next_begin_offset: 0,
            min_offset: 0,
            max_offset: 0,
            messages: Vec::new(),
            queue_offsets: Vec::new(),
        };
        let Some(cq) = self.inner.cq(topic, queue_id) else {
            return r;
        };
        let min = cq.min_offset();
        let max = visible_max(&cq, phys_bound);
        r.min_offset = min;
        r.max_offset = max;
        if max == 0 {
            r.status = GetStatus::NoMessageInQueue;
            return r;
        }
        if offset < min {
            r.status = GetStatus::OffsetTooSmall;
            r.next_begin_offset = min;
            return r;
        }
        if offset == max {
            r.status = GetStatus::OffsetOverflowOne;
            r.next_begin_offset = offset;
            return r;
        }
        if offset > max {
            r.status = GetStatus::OffsetOverflowBadly;
            r.next_begin_offset = max;
            return r;
        }
        let cl = &self.inner.commitlog;
        let cl_min = cl.min_offset();
        let limit = max.min(offset + MAX_SCAN_ENTRIES);
        let (mut q, mut bytes, mut filtered) = (offset, 0usize, false);
        while q < limit && (r.messages.len() as i64) < i64::from(max_msgs.max(1)) {
            let Some(e) = cq.get(q) else {
                q += 1;
                continue;
            };
            if e.phys_offset < cl_min {
                q += 1;
                continue;
            }
            if !filter(e.tags_code) {
                filtered = true;
                q += 1;
                continue;
            }
            if !r.messages.is_empty() && bytes + e.size as usize > max_bytes {
                break;
            }
            if let Some(rec) = cl.read_record(e.phys_offset) {
                bytes += rec.len();
                r.messages.push(rec);
                r.queue_offsets.push(q);
            }
            q += 1;
        }
        r.next_begin_offset = q;
        r.status = if !r.messages.is_empty() {
            GetStatus::Found
        } else if filtered {
            GetStatus::NoMatchedMessage
        } else {
            GetStatus::OffsetFoundNull
        };
        r
    }

    /// Next queue offset to be written (0 for an unknown queue).
    pub fn max_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner.cq(topic, queue_id).map_or(0, |q| q.max_offset())
    }

    /// Next queue offset whose record ends at or below the CommitLog offset `phys_bound`
    /// (the queue's max offset as a reader bounded there sees it; 0 for an unknown queue).
    pub fn max_offset_in_queue_below(&self, topic: &str, queue_id: i32, phys_bound: i64) -> i64 {
        self.inner
            .cq(topic, queue_id)
            .map_or(0, |q| visible_max(&q, phys_bound))
    }

    /// First readable queue offset (0 for an unknown queue).
    pub fn min_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner.cq(topic, queue_id).map_or(0, |q| q.min_offset())
    }

    /// CommitLog offset of the record at a queue offset.
    pub fn commitlog_offset_in_queue(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
    ) -> Option<i64> {
        self.inner
            .cq(topic, queue_id)?
            .get(offset)
            .map(|e| e.phys_offset)
    }

    /// Queue offset for a store timestamp (see [`Boundary`]); 0 for an unknown queue.
    pub fn offset_by_time(
        &self,
        topic: &str,
        queue_id: i32,
        ts_ms: i64,
        boundary: Boundary,
    ) -> i64 {
        self.inner.cq(topic, queue_id).map_or(0, |q| {
            q.offset_by_time(&self.inner.commitlog, ts_ms, boundary)
        })
    }

    /// Store time of the oldest readable message of a queue.
    pub fn earliest_message_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let cq = self.inner.cq(topic, queue_id)?;
        let cl = &self.inner.commitlog;
        let (mut q, max) = (cq.min_offset(), cq.max_offset());
        let limit = max.min(q + MAX_SCAN_ENTRIES);
        while q < limit {
            if let Some(ts) = cq.get(q).and_then(|e| cl.store_timestamp(e.phys_offset)) {
                return Some(ts);
            }
            q += 1;
        }
        None
    }

    /// Store time of the message at a queue offset.
    pub fn message_store_time(&self, topic: &str, queue_id: i32, offset: i64) -> Option<i64> {
        let e = self.inner.cq(topic, queue_id)?.get(offset)?;
        self.inner.commitlog.store_timestamp(e.phys_offset)
    }

    /// One raw record by CommitLog offset (VIEW_MESSAGE_BY_ID).
    pub fn look_message_by_offset(&self, phys_offset: i64) -> Option<Bytes> {
        if phys_offset < self.inner.commitlog.min_offset() {
            return None;
        }
        self.inner.commitlog.read_record(phys_offset)
    }

    /// Records of `topic` whose KEYS contain `key` (or whose UNIQ_KEY is `key`; only UNIQ_KEY
    /// when `unique`) stored within `[begin_ms, end_ms]`, newest first, at most `max`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn query_message(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin_ms: i64,
        end_ms: i64,
        unique: bool,
    ) -> Vec<Bytes> {
        let cl = &self.inner.commitlog;
        let cands = self
            .inner
            .index
            .candidates(topic, key, begin_ms, end_ms, cl.min_offset());
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for phys in cands {
            if out.len() >= max {
                break;
            }
            if !seen.insert(phys) {
                continue;
            }
            let hit = cl.with_record(phys, |b| {
                let rec = codec::decode_record(b, false).ok()?;
                let uniq_match =
                    codec::property(rec.properties, codec::PROPERTY_UNIQ_KEY) == Some(key);
                let key_match = !unique
                    && codec::property(rec.properties, codec::PROPERTY_KEYS)
                        .is_some_and(|ks| ks.split(' ').any(|k| k == key));
                (rec.topic == topic && (uniq_match || key_match)).then(|| Bytes::copy_from_slice(b))
            });
            if let Some(Some(b)) = hit {
                out.push(b);
            }
        }
        out
    }

    /// First CommitLog offset still stored.
    pub fn commitlog_min_offset(&self) -> i64 {
        self.inner.commitlog.min_offset()
    }

    /// CommitLog offset just past the last record.
    pub fn commitlog_max_offset(&self) -> i64 {
        self.inner.commitlog.max_offset()
    }

    /// Bytes of CommitLog `[from, to)` currently in the page cache (`mincore`), a
    /// multiple of the page size; `None` where the system cannot tell. For runtime info and
    /// for checking the `page_cache_window`.
    pub fn commitlog_resident_bytes(&self, from: i64, to: i64) -> Option<u64> {
        let mut pages = 0usize;
        for (seg, s, e) in self.inner.commitlog.files().spans(from, to) {
            pages += seg.resident_pages(s, e)?;
        }
        Some((pages * crate::mmap::PAGE_SIZE) as u64)
    }

    /// CommitLog offset up to which data is durable.
    pub fn flushed_offset(&self) -> i64 {
        self.inner.commitlog.flushed_offset()
    }

    /// Replication confirm offset (defaults to the max offset until HA sets it, or to 0
    /// when [`MessageStore::set_confirm_strict`] is on).
    pub fn confirm_offset(&self) -> i64 {
        let c = self.inner.confirm_offset.load(Ordering::Acquire);
        if c <= 0 {
            if self.inner.confirm_strict.load(Ordering::Acquire) {
                return 0;
            }
            self.commitlog_max_offset()
        } else {
            c.min(self.commitlog_max_offset())
        }
    }

    /// Sets the replication confirm offset.
    pub fn set_confirm_offset(&self, offset: i64) {
        self.inner.confirm_offset.store(offset, Ordering::Release);
    }

    /// Strict confirm offset (DLedger): an unset (`<= 0`) confirm offset means no byte is
    /// confirmed yet. Without it a fresh group would show every byte until the first
    /// commit, including bytes a new leader may truncate.
    pub fn set_confirm_strict(&self, strict: bool) {
        self.inner.confirm_strict.store(strict, Ordering::Release);
    }

    /// CommitLog offset below which every record is in its ConsumeQueue and the index.
    pub fn dispatched_offset(&self) -> i64 {
        self.inner.dispatched.load(Ordering::Acquire)
    }

    /// Flushes the CommitLog now; returns the flushed offset.
    pub fn flush(&self) -> Result<i64, StoreError> {
        self.inner.commitlog.flush()
    }

    /// Raw CommitLog bytes from `from` (at most `max_len`, never past the end of one file or
    /// of the log) — what a master ships to a slave.
    pub fn read_raw(&self, from: i64, max_len: usize) -> Option<Bytes> {
        self.inner.commitlog.read_raw(from, max_len)
    }

    /// Appends raw CommitLog bytes verbatim at `at` (which must be the current end), as
    /// received from a master: records, blank markers and padding land at exactly the same
    /// offsets. `data` may end inside a record; complete records are validated (magic, size,
    /// position, CRC) and dispatched, an incomplete tail waits for the next call. Returns the
    /// number of bytes written (all of `data`). A corrupt record is cut off and reported.
    #[tracing::instrument(level = "debug", skip(self, data), fields(len = data.len()))]
    pub fn append_raw(&self, at: i64, data: &[u8]) -> Result<usize, StoreError> {
        let inner = &self.inner;
        if inner.shutdown.load(Ordering::Acquire) {
            return Err(StoreError::ShutDown);
        }
        let _g = inner.put_lock.lock();
        let cl = &inner.commitlog;
        let expected = cl.max_offset();
        if at != expected {
            return Err(StoreError::OffsetMismatch { at, expected });
        }
        let mut pos = at;
        let mut rest = data;
        while !rest.is_empty() {
            let seg = cl.files().get_or_create(pos)?;
            let n = ((seg.end() - pos) as usize).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            cl.write_unpublished(pos, chunk)?;
            pos += n as i64;
            rest = tail;
        }
        cl.publish(pos);
        let from = inner.dispatched.load(Ordering::Acquire);
        let (end, why) = cl.scan(from, pos, true, |p, rec| inner.dispatch(p, rec))?;
        inner.dispatched.store(end, Ordering::Release);
        if why == ScanEnd::Corrupt {
            cl.truncate(end)?;
            inner.notify(&[]);
            return Err(StoreError::InvalidRawData {
                offset: end,
                reason: "record failed validation".into(),
            });
        }
        inner.notify(&[]);
        Ok(data.len())
    }

    /// Makes an empty CommitLog start at `offset` (a file boundary) instead of 0, so that a
    /// new slave can take a master's log from the start of the master's last file (classic
    /// HA ships only that file to a slave that reports offset 0). Refused unless the log is
    /// empty (max offset 0, nothing written).
    #[tracing::instrument(level = "info", skip(self))]
    pub fn start_empty_log_at(&self, offset: i64) -> Result<(), StoreError> {
        let inner = &self.inner;
        let _g = inner.put_lock.lock();
        let cl = &inner.commitlog;
        if cl.max_offset() != 0 || offset < 0 || offset % cl.file_size() as i64 != 0 {
            return Err(StoreError::BadTruncateOffset(offset));
        }
        if offset == 0 {
            return Ok(());
        }
        cl.truncate(0)?;
        cl.files().get_or_create(offset)?;
        cl.set_positions(offset, offset);
        inner.index.advance(offset);
        inner.dispatched.store(offset, Ordering::Release);
        inner.notify(&[]);
        Ok(())
    }

    /// Cuts the CommitLog back to `offset` (a record boundary), removing ConsumeQueue and
    /// index entries of the removed records (slave truncation after a master change).
    #[tracing::instrument(level = "info", skip(self))]
    pub fn truncate_to(&self, offset: i64) -> Result<(), StoreError> {
        let inner = &self.inner;
        let _g = inner.put_lock.lock();
        let cl = &inner.commitlog;
        let (min, max) = (cl.min_offset(), cl.max_offset());
        if offset < min || offset > max {
            return Err(StoreError::BadTruncateOffset(offset));
        }
        if offset < max && offset % cl.file_size() as i64 != 0 {
            let at_record = cl
                .with_record(offset, |b| {
                    codec::decode_record(b, false).is_ok_and(|r| r.phys_offset == offset)
                })
                .unwrap_or(false);
            let at_blank = cl
                .read_raw(offset, 8)
                .and_then(|b| codec::peek_header(&b))
                .is_some_and(|(_, magic)| magic == codec::BLANK_MAGIC);
            if !at_record && !at_blank {
                return Err(StoreError::BadTruncateOffset(offset));
            }
        }
        cl.truncate(offset)?;
        for cq in inner.all_cqs() {
            cq.truncate_phys(offset)?;
        }
        inner.index.truncate(offset)?;
        let d = inner.dispatched.load(Ordering::Acquire).min(offset);
        inner.dispatched.store(d, Ordering::Release);
        inner.notify(&[]);
        Ok(())
    }

    /// A watch of the CommitLog max offset, updated after every dispatch (wakes long polls).
    pub fn new_message_notifier(&self) -> watch::Receiver<i64> {
        // Subscribe first, then publish: an append racing with this call either sees the
        // receiver and notifies, or is covered by this value. The new receiver starts with
        // the current value seen, as a plain `subscribe` would.
        let mut rx = self.inner.notifier.subscribe();
        self.inner
            .notifier
            .send_replace(self.inner.commitlog.max_offset());
        rx.borrow_and_update();
        rx
    }

    /// Per-queue arrival notifications (topic, queue, new max offset).
    pub fn subscribe_arrivals(&self) -> broadcast::Receiver<Arrival> {
        self.inner.arrivals.subscribe()
    }

    /// Deletes a topic's ConsumeQueues (its records age out of the CommitLog normally).
    #[tracing::instrument(level = "info", skip(self))]
    pub fn delete_topic(&self, topic: &str) -> Result<(), StoreError> {
        let _g = self.inner.put_lock.lock();
        let removed = self.inner.cqs.write().remove(topic);
        if let Some(queues) = removed {
            for cq in queues.values() {
                cq.destroy()?;
            }
        }
        if valid_topic(topic) {
            let dir = self.inner.cfg.root.join("consumequeue").join(topic);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(format!("remove {}", dir.display()))(e)),
            }
        }
        Ok(())
    }

    /// Topics that have ConsumeQueues.
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.inner.cqs.read().keys().cloned().collect();
        t.sort();
        t
    }

    /// Queue ids present for a topic.
    pub fn queue_ids(&self, topic: &str) -> Vec<i32> {
        let mut q: Vec<i32> = self
            .inner
            .cqs
            .read()
            .get(topic)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        q.sort_unstable();
        q
    }

    /// (min, max) offsets of every queue of every topic.
    pub fn queue_offsets(&self) -> BTreeMap<(String, i32), (i64, i64)> {
        self.inner
            .all_cqs()
            .iter()
            .map(|q| {
                (
                    (q.topic().to_string(), q.queue_id()),
                    (q.min_offset(), q.max_offset()),
                )
            })
            .collect()
    }

    /// Runs one retention pass now (also runs every `retention_interval` in the background).
    /// `manual` deletes expired files regardless of the hour (TRIGGER_DELETE_FILES).
    pub fn run_retention_once(&self, manual: bool) -> RetentionReport {
        retention::run_once(&self.inner, manual)
    }

    /// Whether writes are refused because the disk is full.
    pub fn is_disk_full(&self) -> bool {
        self.inner.disk_full.load(Ordering::Acquire)
    }

    /// Flushes ConsumeQueues and index and writes the checkpoint now.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.inner.checkpoint_once().map(|_| ())
    }

    /// Clean shutdown: stop background services, flush everything, write the checkpoint and
    /// delete the abort file. Later appends answer SERVICE_NOT_AVAILABLE.
    #[tracing::instrument(level = "info", skip(self))]
    pub fn shutdown(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        if inner.shutdown.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        inner.flush_signals.stop();
        inner.warm_signal.stop();
        *inner.hk_signal.0.lock() = true;
        inner.hk_signal.1.notify_all();
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *inner.threads.lock());
        for t in threads {
            let _ = t.join();
        }
        let _g = inner.put_lock.lock();
        inner.commitlog.flush()?;
        inner.checkpoint_once()?;
        checkpoint::remove_abort(&inner.cfg.root)?;
        tracing::info!(
            max = inner.commitlog.max_offset(),
            "message store shut down cleanly"
        );
        Ok(())
    }
}

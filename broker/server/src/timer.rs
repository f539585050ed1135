//! Timer messages: `TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`, `TIMER_DELAY_MS` (RocketMQ 5) and
//! `__STARTDELIVERTIME` (the older absolute delivery time), held until due.
//!
//! # What a sender sees (as Java's `HookUtils.transformTimerMessage` answers)
//! - A message with a positive `DELAY` level is a delay-level message: its timer properties
//!   are dropped and [`crate::schedule`] handles it.
//! - `timerWheelEnable=false`: SYSTEM_ERROR "accurate timer message is not enabled, …".
//! - The due time is `now + TIMER_DELAY_SEC × 1000`, else `now + TIMER_DELAY_MS`, else
//!   `TIMER_DELIVER_MS`, else `__STARTDELIVERTIME` (Java's open-source broker ignores the last;
//!   delivering it at once would be silently wrong, so it is an absolute time here too). A
//!   value that is not an integer, or a due time more than `timerMaxDelaySec` ahead, is
//!   refused with MESSAGE_ILLEGAL and Java's remark. A due time not in the future is a plain
//!   message.
//! - The due time is rounded down to `timerPrecisionMs` (one precision less when exact, as
//!   Java does) and written to `TIMER_OUT_MS`; the message is stored in
//!   `rmq_sys_wheel_timer` queue 0 with `REAL_TOPIC`/`REAL_QID`. When due it is put back to
//!   its topic and queue with `TIMER_ENQUEUE_MS` (when it was stored) and `TIMER_DEQUEUE_MS`
//!   (when it was put back), everything else (tags, keys, user properties, born time) as
//!   sent. Like Java, delivery may therefore come up to one precision before the asked time.
//! - A batch holding a timer message is refused (MESSAGE_ILLEGAL, naming the property).
//!   Java applies timer properties only to a whole request, so the messages of a batch would
//!   be delivered at once; every RocketMQ client already refuses to batch them.
//!
//! # Why this design and not Java's wheel + log
//! Java keeps a `timerwheel` (one slot per second over two days) and a `timerlog` it writes
//! itself, with a checkpoint of both. Here the timer topic's consume queue already is a
//! durable, crash-recovered log of every timer message (rebuilt from the CommitLog on
//! recovery), so only an index by due time is missing. It is kept in `timer/` under the
//! store root as one append-only file per minute of due time (bucket `due / 60 000`), each a
//! list of 16-byte records `(due ms, timer-queue offset)`, big-endian. Memory holds only the
//! entries of the buckets due now or in the next minute and the set of bucket ids (at most
//! `timerMaxDelaySec / 60`), so it does not grow with the number of pending messages.
//!
//! `config/timerCheckpoint.json` records `indexedOffset` (every timer-queue entry below it is
//! in a bucket file) and `doneMs` (every indexed entry due before it has been put back).
//! Entries are put back in `(due, offset)` order; an entry indexed late (its due time already
//! below `doneMs`) is filed at `doneMs`, so it can never hide behind the checkpoint. The
//! checkpoint is written after the bucket files are synced and the CommitLog flushed, and a
//! bucket file is deleted once `doneMs` passed its end. After any stop — clean, SIGKILL or
//! power loss — the broker reloads the buckets, skips what `doneMs` covers, and re-indexes
//! the timer queue from `indexedOffset`: nothing is lost, and at most the put-backs since the
//! last checkpoint (about one second) are delivered twice (at-least-once, like Java).
//!
//! Put-backs go through [`Broker::put`](crate::broker::Broker::put) like sends, so they wait
//! for the same replication gate; only the master (DLedger leader) indexes and delivers, and
//! it reads the timer queue only below the commit bound. The checkpoint is local: a member
//! taking over as master starts from its own, which may deliver again what the old master
//! already delivered (never less).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_message_store::codec::{self, decode_record};
use flotilla_message_store::metadata;
use flotilla_message_store::{GetStatus, MessageInner, PutStatus};
use flotilla_remoting::response_code as code;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::broker::{Broker, props, remove_property, set_property};
use crate::config::BrokerConfig;
use crate::topic_config::now_ms;

/// The system topic timer messages wait in (Java's `TimerMessageStore.TIMER_TOPIC`).
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";

/// Width of one due-time bucket file (ms).
pub const BUCKET_MS: i64 = 60_000;

/// Timer property names (Java's `MessageConst`).
pub mod tprops {
    /// Absolute due time (ms since the epoch).
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    /// Delay in seconds from the send.
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    /// Delay in milliseconds from the send.
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    /// The older absolute due time (ms since the epoch).
    pub const START_DELIVER_TIME: &str = "__STARTDELIVERTIME";
    /// The due time the broker holds the message until (precision-rounded).
    pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
    /// When the timer message was stored.
    pub const TIMER_ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
    /// When it was put back to its topic.
    pub const TIMER_DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
    /// Cancels an earlier timer message (Java's delete marker): needs a future due time.
    pub const TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
}

/// The properties that make a message a timer message, in the order they are read.
pub const TIMER_PROPERTIES: [&str; 4] = [
    tprops::TIMER_DELAY_SEC,
    tprops::TIMER_DELAY_MS,
    tprops::TIMER_DELIVER_MS,
    tprops::START_DELIVER_TIME,
];

/// The first timer property a message's properties carry, if any.
pub fn timer_property(properties: &str) -> Option<&'static str> {
    TIMER_PROPERTIES
        .into_iter()
        .find(|k| codec::property(properties, k).is_some())
}

/// Timer failures: refusals of a send, and the timer store's own.
#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    /// `timerWheelEnable=false` and the message carries a timer property.
    #[error("accurate timer message is not enabled, timerWheelEnable is false")]
    NotEnabled,
    /// The due time is not an integer, is more than `timerMaxDelaySec` ahead, or a delete
    /// marker's due time is not in the future (Java's WHEEL_TIMER_MSG_ILLEGAL).
    #[error(
        "timer message illegal, the delay time should not be bigger than the max delay {max_ms}ms; \
         or if set del msg, the delay time should be bigger than the current time"
    )]
    Illegal {
        /// `timerMaxDelaySec` in ms.
        max_ms: i64,
    },
    /// A batch holds a timer message.
    #[error("a batch cannot hold timer messages ({key}): send them one by one")]
    InBatch {
        /// The timer property found.
        key: &'static str,
    },
    /// `timerCheckpoint.json` could not be read or written.
    #[error("timerCheckpoint.json: {0}")]
    Persist(#[from] metadata::MetadataError),
    /// A bucket file could not be read, written or synced.
    #[error("timer bucket file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl TimerError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotEnabled => "TIMER_NOT_ENABLED",
            Self::Illegal { .. } => "TIMER_MESSAGE_ILLEGAL",
            Self::InBatch { .. } => "TIMER_IN_BATCH",
            Self::Persist(_) => "TIMER_PERSIST_FAILED",
            Self::Io { .. } => "TIMER_IO_FAILED",
        }
    }

    /// The remoting response code a send refused with this error gets.
    pub fn response_code(&self) -> i32 {
        match self {
            Self::Illegal { .. } | Self::InBatch { .. } => code::MESSAGE_ILLEGAL,
            _ => code::SYSTEM_ERROR,
        }
    }
}

/// Refuses a batch (more than one message) that holds a timer message.
pub fn check_batch(msgs: &[MessageInner]) -> Result<(), TimerError> {
    if msgs.len() > 1
        && let Some(key) = msgs.iter().find_map(|m| timer_property(&m.properties))
    {
        return Err(TimerError::InBatch { key });
    }
    Ok(())
}

/// Turns a timer message due in the future into a message of [`TIMER_TOPIC`] (see the module
/// docs for the rules); leaves every other message as it is.
pub fn transform(m: &mut MessageInner, cfg: &BrokerConfig, now: i64) -> Result<(), TimerError> {
    if m.topic == TIMER_TOPIC {
        return Ok(());
    }
    let delay_level = codec::property(&m.properties, props::DELAY)
        .and_then(|v| v.trim().parse::<i32>().ok())
        .unwrap_or(0);
    if delay_level > 0 {
        // A delay-level message: the level wins, as in Java.
        for k in TIMER_PROPERTIES {
            if codec::property(&m.properties, k).is_some() {
                m.properties = remove_property(&m.properties, k);
            }
        }
        return Ok(());
    }
    if codec::property(&m.properties, tprops::TIMER_OUT_MS).is_some() {
        return Ok(());
    }
    let Some(key) = timer_property(&m.properties) else {
        return Ok(());
    };
    if !cfg.timer_wheel_enable {
        return Err(TimerError::NotEnabled);
    }
    let max_ms = cfg.timer_max_delay_sec.saturating_mul(1000);
    let illegal = || TimerError::Illegal { max_ms };
    let value = codec::property(&m.properties, key)
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(illegal)?;
    let mut deliver_ms = match key {
        tprops::TIMER_DELAY_SEC => now.saturating_add(value.saturating_mul(1000)),
        tprops::TIMER_DELAY_MS => now.saturating_add(value),
        _ => value,
    };
    if deliver_ms <= now {
        if codec::property(&m.properties, tprops::TIMER_DEL_UNIQKEY).is_some() {
            return Err(illegal());
        }
        return Ok(());
    }
    if deliver_ms - now > max_ms {
        return Err(illegal());
    }
    let precision = cfg.timer_precision_ms.max(1);
    if deliver_ms % precision == 0 {
        deliver_ms -= precision;
    } else {
        deliver_ms = deliver_ms / precision * precision;
    }
    let mut p = set_property(&m.properties, tprops::TIMER_OUT_MS, &deliver_ms.to_string());
    p = set_property(&p, props::REAL_TOPIC, &m.topic);
    p = set_property(&p, props::REAL_QID, &m.queue_id.to_string());
    m.properties = p;
    m.topic = TIMER_TOPIC.to_string();
    m.queue_id = 0;
    m.tags_code = Some(deliver_ms);
    Ok(())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Checkpoint {
    /// Every timer-queue entry below this offset is in a bucket file.
    indexed_offset: i64,
    /// Every indexed entry due before this time has been put back.
    done_ms: i64,
}

/// One bucket record: (due ms, timer-queue offset).
pub type Entry = (i64, i64);

/// Encodes bucket records (16 bytes each, big-endian).
pub fn encode_entries(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 16);
    for (due, qoff) in entries {
        out.extend_from_slice(&due.to_be_bytes());
        out.extend_from_slice(&qoff.to_be_bytes());
    }
    out
}

/// Decodes bucket records; a torn record at the end (a crash mid-append) is ignored.
pub fn decode_entries(data: &[u8]) -> Vec<Entry> {
    data.chunks_exact(16)
        .map(|c| {
            let mut due = [0u8; 8];
            let mut qoff = [0u8; 8];
            due.copy_from_slice(&c[..8]);
            qoff.copy_from_slice(&c[8..]);
            (i64::from_be_bytes(due), i64::from_be_bytes(qoff))
        })
        .collect()
}

struct State {
    ckpt: Checkpoint,
    /// The checkpoint as last written.
    saved: Checkpoint,
    /// Bucket ids with a file on disk.
    buckets: BTreeSet<i64>,
    /// Every bucket below this id is loaded into `ready`.
    loaded_until: i64,
    /// Entries of loaded buckets not yet put back, in delivery order.
    ready: BTreeSet<Entry>,
    /// Timer-queue offsets in `ready` (a re-indexed entry is not loaded twice).
    in_ready: HashSet<i64>,
    /// Buckets appended to since the last sync.
    unsynced: BTreeSet<i64>,
}

/// The timer store: the due-time index over [`TIMER_TOPIC`] and its checkpoint.
pub struct TimerService {
    dir: PathBuf,
    ckpt_path: PathBuf,
    state: Mutex<State>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TimerError + '_ {
    move |source| TimerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl TimerService {
    /// Opens the index under `root` (`timer/` and `config/timerCheckpoint.json`).
    pub fn load(root: &Path) -> Result<Self, TimerError> {
        let dir = root.join("timer");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let ckpt_path = root.join("config").join("timerCheckpoint.json");
        let ckpt = metadata::load_json::<Checkpoint>(&ckpt_path)?.unwrap_or_default();
        let mut buckets = BTreeSet::new();
        for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let name = e.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".idx"))
                .and_then(|n| n.parse::<i64>().ok())
            {
                buckets.insert(id / BUCKET_MS);
            }
        }
        tracing::info!(
            indexed_offset = ckpt.indexed_offset,
            done_ms = ckpt.done_ms,
            buckets = buckets.len(),
            "timer store opened"
        );
        Ok(Self {
            dir,
            ckpt_path,
            state: Mutex::new(State {
                ckpt,
                saved: ckpt,
                buckets,
                loaded_until: i64::MIN,
                ready: BTreeSet::new(),
                in_ready: HashSet::new(),
                unsynced: BTreeSet::new(),
            }),
        })
    }

    fn bucket_path(&self, bucket: i64) -> PathBuf {
        self.dir
            .join(format!("{:013}.idx", bucket.saturating_mul(BUCKET_MS)))
    }

    /// Messages indexed and not yet put back that are loaded in memory, and bucket files.
    pub fn pending(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.ready.len(), s.buckets.len())
    }

    /// Files `(due, offset)` records of newly read timer-queue entries and moves the indexed
    /// offset to `next`. Due times below `doneMs` are filed at `doneMs`.
    fn index(&self, entries: &[Entry], next: i64) -> Result<(), TimerError> {
        let mut s = self.state.lock();
        let done = s.ckpt.done_ms;
        let mut by_bucket: BTreeMap<i64, Vec<Entry>> = BTreeMap::new();
        for &(due, qoff) in entries {
            let due = due.max(done);
            by_bucket
                .entry(due / BUCKET_MS)
                .or_default()
                .push((due, qoff));
        }
        for (bucket, list) in by_bucket {
            let path = self.bucket_path(bucket);
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            f.write_all(&encode_entries(&list)).map_err(io(&path))?;
            s.buckets.insert(bucket);
            s.unsynced.insert(bucket);
            if bucket < s.loaded_until {
                for e in list {
                    if s.in_ready.insert(e.1) {
                        s.ready.insert(e);
                    }
                }
            }
        }
        s.ckpt.indexed_offset = s.ckpt.indexed_offset.max(next);
        Ok(())
    }

    /// Loads every bucket due before `now + BUCKET_MS` not loaded yet.
    fn load_due(&self, now: i64) -> Result<(), TimerError> {
        let mut s = self.state.lock();
        let until = now / BUCKET_MS + 2;
        if s.loaded_until >= until {
            return Ok(());
        }
        let from = s.loaded_until;
        let todo: Vec<i64> = s.buckets.range(from..until).copied().collect();
        let done = s.ckpt.done_ms;
        for bucket in todo {
            let path = self.bucket_path(bucket);
            let data = match std::fs::read(&path) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io(&path)(e)),
            };
            for e in decode_entries(&data) {
                if e.0 >= done && s.in_ready.insert(e.1) {
                    s.ready.insert(e);
                }
            }
        }
        s.loaded_until = until;
        Ok(())
    }

    /// The next entry due at or before `now`, if any.
    fn next_due(&self, now: i64) -> Option<Entry> {
        self.state
            .lock()
            .ready
            .first()
            .copied()
            .filter(|e| e.0 <= now)
    }

    /// When the earliest loaded entry is due.
    fn earliest(&self) -> Option<i64> {
        self.state.lock().ready.first().map(|e| e.0)
    }

    /// `e` was put back (or cannot be: its record is gone).
    fn delivered(&self, e: Entry) {
        let mut s = self.state.lock();
        s.ready.remove(&e);
        s.in_ready.remove(&e.1);
        s.ckpt.done_ms = s.ckpt.done_ms.max(e.0);
    }

    /// Nothing loaded is due at or before `now`: everything due up to `now` is done.
    fn caught_up(&self, now: i64) {
        let mut s = self.state.lock();
        if s.ready.first().is_none_or(|e| e.0 > now) && s.loaded_until > now / BUCKET_MS {
            s.ckpt.done_ms = s.ckpt.done_ms.max(now + 1);
        }
    }

    /// Whether the checkpoint or a bucket file changed since the last [`Self::persist`].
    pub fn is_dirty(&self) -> bool {
        let s = self.state.lock();
        s.ckpt != s.saved || !s.unsynced.is_empty()
    }

    fn indexed_offset(&self) -> i64 {
        self.state.lock().ckpt.indexed_offset
    }

    /// Syncs appended bucket files, then writes the checkpoint (the caller flushed the
    /// CommitLog, so the put-backs `doneMs` counts are durable), then deletes the bucket
    /// files the checkpoint's `doneMs` has passed.
    pub fn persist(&self) -> Result<(), TimerError> {
        let (ckpt, unsynced) = {
            let mut s = self.state.lock();
            if s.ckpt == s.saved && s.unsynced.is_empty() {
                return Ok(());
            }
            (s.ckpt, std::mem::take(&mut s.unsynced))
        };
        let restore = |unsynced: BTreeSet<i64>| self.state.lock().unsynced.extend(unsynced);
        for bucket in &unsynced {
            let path = self.bucket_path(*bucket);
            let r = std::fs::File::open(&path).and_then(|f| f.sync_data());
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    restore(unsynced.clone());
                    return Err(io(&path)(e));
                }
            }
        }
        if let Err(e) = metadata::save_json(&self.ckpt_path, &ckpt) {
            restore(unsynced);
            return Err(e.into());
        }
        let finished: Vec<i64> = {
            let mut s = self.state.lock();
            s.saved = ckpt;
            let finished: Vec<i64> = s
                .buckets
                .iter()
                .copied()
                .take_while(|b| (b + 1).saturating_mul(BUCKET_MS) <= ckpt.done_ms)
                .collect();
            for b in &finished {
                s.buckets.remove(b);
                s.unsynced.remove(b);
            }
            finished
        };
        for b in finished {
            let path = self.bucket_path(b);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a timer bucket");
            }
        }
        Ok(())
    }

    /// Indexes and delivers timer messages until the broker stops (idle while not master).
    pub async fn run(broker: Arc<Broker>) {
        let notify = broker.long_polling.notify_for(TIMER_TOPIC, 0);
        let mut last_persist = std::time::Instant::now();
        loop {
            if broker.stop.is_cancelled() {
                return;
            }
            if !broker.is_master() {
                tokio::select! {
                    () = broker.stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let span = tracing::info_span!("timer_round", topic = TIMER_TOPIC);
            let wait = {
                let _g = span.enter();
                round(&broker).await
            };
            if last_persist.elapsed() >= Duration::from_secs(1) {
                last_persist = std::time::Instant::now();
                let b = broker.clone();
                let r = tokio::task::spawn_blocking(move || persist_with_flush(&b)).await;
                if let Ok(Err(e)) = r {
                    tracing::error!(error = %e, code = e.code(), "cannot persist the timer store");
                }
            }
            if wait.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = broker.stop.cancelled() => return,
                () = &mut notified => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Flushes the CommitLog, then persists the timer store (see [`TimerService::persist`]).
pub fn persist_with_flush(b: &Broker) -> Result<(), TimerError> {
    if !b.timer.is_dirty() {
        return Ok(());
    }
    if let Err(e) = b.store.flush() {
        tracing::warn!(error = %e, "CommitLog flush before the timer checkpoint failed");
        return Ok(());
    }
    b.timer.persist()
}

/// One pass: index new timer-queue entries, load due buckets, put back what is due.
/// Returns how long to wait before the next pass (zero: more work right away).
async fn round(b: &Broker) -> Duration {
    let retry = Duration::from_secs(1);
    let t = &b.timer;
    let offset = t.indexed_offset();
    let r = b.store.get_message_below(
        TIMER_TOPIC,
        0,
        offset,
        64,
        4 << 20,
        &|_| true,
        b.read_bound(),
    );
    let mut more = false;
    match r.status {
        GetStatus::Found => {
            let mut entries = Vec::with_capacity(r.messages.len());
            let mut next = offset;
            for (raw, qoff) in r.messages.iter().zip(r.queue_offsets.iter()) {
                next = qoff + 1;
                let Ok(rec) = decode_record(raw, false) else {
                    tracing::warn!(offset = qoff, "undecodable timer record skipped");
                    continue;
                };
                let due = codec::property(rec.properties, tprops::TIMER_OUT_MS)
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(rec.store_timestamp);
                entries.push((due, *qoff));
            }
            let next = next.max(r.next_begin_offset);
            if let Err(e) = t.index(&entries, next) {
                tracing::error!(error = %e, code = e.code(), "cannot index timer messages");
                return retry;
            }
            more = true;
        }
        GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => {
            let _ = t.index(&[], r.next_begin_offset);
            more = true;
        }
        GetStatus::NoMatchedMessage | GetStatus::OffsetFoundNull
            if r.next_begin_offset > offset =>
        {
            let _ = t.index(&[], r.next_begin_offset);
            more = true;
        }
        _ => {}
    }
    let now = now_ms();
    if let Err(e) = t.load_due(now) {
        tracing::error!(error = %e, code = e.code(), "cannot load timer buckets");
        return retry;
    }
    // Put back what is due, in (due, offset) order.
    let mut budget = 256;
    while let Some(e) = t.next_due(now_ms()) {
        if budget == 0 {
            return Duration::ZERO;
        }
        budget -= 1;
        match put_back(b, e).await {
            Ok(()) => t.delivered(e),
            Err(status) => {
                tracing::warn!(
                    offset = e.1,
                    status = status.code(),
                    "put-back of a timer message failed; retrying"
                );
                return retry;
            }
        }
    }
    let now = now_ms();
    t.caught_up(now);
    if more {
        return Duration::ZERO;
    }
    let next_bucket = (now / BUCKET_MS + 1) * BUCKET_MS;
    let until = t.earliest().unwrap_or(next_bucket).min(next_bucket);
    Duration::from_millis(u64::try_from(until - now).unwrap_or(0).clamp(1, 1000))
}

/// Puts the timer message at timer-queue offset `e.1` back to its topic. A record that is
/// gone (retention) or has no real topic counts as done.
async fn put_back(b: &Broker, e: Entry) -> Result<(), PutStatus> {
    let r = b
        .store
        .get_message_below(TIMER_TOPIC, 0, e.1, 1, 4 << 20, &|_| true, b.read_bound());
    let raw = match (r.status, r.messages.first(), r.queue_offsets.first()) {
        (GetStatus::Found, Some(raw), Some(q)) if *q == e.1 => raw,
        (GetStatus::OffsetOverflowOne | GetStatus::OffsetOverflowBadly, _, _) => {
            // Not readable yet (below the commit bound after a leader change): retry.
            return Err(PutStatus::ServiceNotAvailable);
        }
        _ => {
            tracing::warn!(offset = e.1, "timer record gone; skipped");
            return Ok(());
        }
    };
    let Ok(rec) = decode_record(raw, false) else {
        tracing::warn!(offset = e.1, "undecodable timer record skipped");
        return Ok(());
    };
    let Some(topic) = codec::property(rec.properties, props::REAL_TOPIC).filter(|t| !t.is_empty())
    else {
        tracing::warn!(offset = e.1, "timer record without REAL_TOPIC skipped");
        return Ok(());
    };
    let queue_id = codec::property(rec.properties, props::REAL_QID)
        .and_then(|q| q.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let mut p = set_property(
        rec.properties,
        tprops::TIMER_ENQUEUE_MS,
        &rec.store_timestamp.to_string(),
    );
    p = set_property(&p, tprops::TIMER_DEQUEUE_MS, &now_ms().to_string());
    let msg = MessageInner {
        topic: topic.to_string(),
        queue_id,
        flag: rec.flag,
        body: bytes::Bytes::copy_from_slice(rec.body),
        properties: p,
        sys_flag: rec.sys_flag,
        born_timestamp: rec.born_timestamp,
        born_host: rec.born_host,
        reconsume_times: rec.reconsume_times,
        prepared_transaction_offset: rec.prepared_transaction_offset,
        tags_code: None,
    };
    let put = b.put(vec![msg]).await;
    // Stored locally (replicas may lag, as a send answered with the same status): moving on
    // avoids storing it twice.
    if put.append.is_some()
        && matches!(
            put.status,
            PutStatus::PutOk
                | PutStatus::FlushDiskTimeout
                | PutStatus::FlushSlaveTimeout
                | PutStatus::SlaveNotAvailable
        )
    {
        Ok(())
    } else {
        Err(put.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BrokerConfig {
        BrokerConfig::default()
    }

    fn msg(props: &str) -> MessageInner {
        let mut m = MessageInner::new("Orders", 3, &b"x"[..]);
        m.properties = props.to_string();
        m
    }

    #[test]
    fn delays_become_timer_messages_with_java_rounding() {
        let now = 1_000_000_500;
        let mut m = msg("TIMER_DELAY_SEC\u{1}5\u{2}KEYS\u{1}k\u{2}");
        transform(&mut m, &cfg(), now).unwrap();
        assert_eq!((m.topic.as_str(), m.queue_id), (TIMER_TOPIC, 0));
        // now + 5 s = 1_000_005_500 → rounded down to the second.
        assert_eq!(
            codec::property(&m.properties, tprops::TIMER_OUT_MS),
            Some("1000005000")
        );
        assert_eq!(
            codec::property(&m.properties, props::REAL_TOPIC),
            Some("Orders")
        );
        assert_eq!(codec::property(&m.properties, props::REAL_QID), Some("3"));
        // An exact multiple loses one precision.
        let mut m = msg("TIMER_DELIVER_MS\u{1}1000010000\u{2}");
        transform(&mut m, &cfg(), now).unwrap();
        assert_eq!(
            codec::property(&m.properties, tprops::TIMER_OUT_MS),
            Some("1000009000")
        );
        for p in [
            "TIMER_DELAY_MS\u{1}2500\u{2}",
            "__STARTDELIVERTIME\u{1}1000003000\u{2}",
        ] {
            let mut m = msg(p);
            transform(&mut m, &cfg(), now).unwrap();
            assert_eq!(m.topic, TIMER_TOPIC, "{p}");
        }
    }

    #[test]
    fn refusals_and_pass_throughs() {
        let now = 1_000_000_000;
        let mut c = cfg();
        // Past due: a plain message.
        let mut m = msg("TIMER_DELIVER_MS\u{1}5\u{2}");
        transform(&mut m, &c, now).unwrap();
        assert_eq!(m.topic, "Orders");
        // A delay level wins and drops the timer properties.
        let mut m = msg("DELAY\u{1}2\u{2}TIMER_DELAY_SEC\u{1}5\u{2}");
        transform(&mut m, &c, now).unwrap();
        assert_eq!(m.topic, "Orders");
        assert_eq!(timer_property(&m.properties), None);
        // Above the max delay (3 days), or not a number.
        for p in [
            "TIMER_DELAY_SEC\u{1}259201\u{2}",
            "TIMER_DELAY_MS\u{1}abc\u{2}",
            "TIMER_DELAY_SEC\u{1} 5\u{2}",
        ] {
            let e = transform(&mut msg(p), &c, now).unwrap_err();
            assert_eq!(e.response_code(), code::MESSAGE_ILLEGAL, "{p}");
            assert!(e.to_string().contains("259200000ms"), "{e}");
        }
        transform(&mut msg("TIMER_DELAY_SEC\u{1}259200\u{2}"), &c, now).unwrap();
        c.timer_wheel_enable = false;
        let e = transform(&mut msg("TIMER_DELAY_SEC\u{1}5\u{2}"), &c, now).unwrap_err();
        assert_eq!(e.response_code(), code::SYSTEM_ERROR);
        assert_eq!(
            e.to_string(),
            "accurate timer message is not enabled, timerWheelEnable is false"
        );
        let batch = vec![msg(""), msg("TIMER_DELAY_MS\u{1}10\u{2}")];
        assert_eq!(check_batch(&batch).unwrap_err().code(), "TIMER_IN_BATCH");
        check_batch(&batch[1..]).unwrap();
    }

    #[test]
    fn bucket_records_round_trip_and_ignore_a_torn_tail() {
        let e = vec![(1, 2), (i64::MAX, -1), (1_700_000_000_000, 42)];
        let mut data = encode_entries(&e);
        assert_eq!(data.len(), 48);
        data.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_entries(&data), e);
    }

    #[test]
    fn index_load_deliver_persist_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let t = TimerService::load(dir.path()).unwrap();
        let now = 10 * BUCKET_MS + 500;
        // One due now, one next minute, one in an hour.
        t.index(
            &[
                (now - 100, 0),
                (now + BUCKET_MS, 1),
                (now + 60 * BUCKET_MS, 2),
            ],
            3,
        )
        .unwrap();
        t.load_due(now).unwrap();
        assert_eq!(t.next_due(now), Some((now - 100, 0)));
        t.delivered((now - 100, 0));
        t.caught_up(now);
        assert_eq!(t.next_due(now), None);
        t.persist().unwrap();
        // Reopen: the delivered entry is not loaded again; the others are.
        let t = TimerService::load(dir.path()).unwrap();
        assert_eq!(t.indexed_offset(), 3);
        t.load_due(now).unwrap();
        assert_eq!(t.earliest(), Some(now + BUCKET_MS));
        // A late entry (due long ago) is filed at doneMs and due at once.
        t.index(&[(5, 3)], 4).unwrap();
        assert_eq!(t.next_due(now + 1).map(|e| e.1), Some(3));
        // Re-indexing an already loaded entry does not duplicate it.
        t.index(&[(now + BUCKET_MS, 1)], 4).unwrap();
        assert_eq!(t.pending().0, 2);
        // Once everything in a bucket is done, its file goes.
        let later = now + 2 * BUCKET_MS;
        t.load_due(later).unwrap();
        for _ in 0..3 {
            if let Some(e) = t.next_due(later) {
                t.delivered(e);
            }
        }
        t.caught_up(later);
        t.persist().unwrap();
        assert_eq!(t.pending(), (0, 1), "only the bucket an hour ahead is left");
    }
}

//! Delayed delivery: delay levels, SCHEDULE_TOPIC_XXXX, and the re-put when due.
//!
//! A message with a `DELAY` level (retries from CONSUMER_SEND_MSG_BACK, or a producer's
//! delayed message) is stored in `SCHEDULE_TOPIC_XXXX`, queue `level - 1`, with its real
//! topic and queue in `REAL_TOPIC`/`REAL_QID`. One task per level reads its queue in order;
//! since every message of a level waits the same time, due times rise with the queue offset
//! and a task only ever waits for its head message. Delivered offsets per level are kept
//! in memory and persisted to `config/delayOffset.json` with the consumer offsets, so a
//! crash re-delivers at most one interval of delayed messages (at-least-once).
//! `messageDelayLevel` sets the levels; tests use short ones (`100ms 200ms …`).
//! Re-puts go through [`Broker::put`](crate::broker::Broker::put) like sends, so they wait
//! for the same replication gate (a DLedger quorum) before the level's offset moves on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flotilla_message_store::codec::{self, decode_record};
use flotilla_message_store::metadata;
use flotilla_message_store::{GetStatus, MessageInner};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::broker::{Broker, props, remove_property, set_property};
use crate::config::BrokerConfig;
use crate::topic_config::{SCHEDULE_TOPIC, now_ms};

/// Scheduler failures.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// `delayOffset.json` could not be read or written.
    #[error("delayOffset.json: {0}")]
    Persist(#[from] metadata::MetadataError),
}

impl ScheduleError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Persist(_) => "SCHEDULE_PERSIST_FAILED",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct DelayOffsetTable {
    /// level → next queue offset to deliver.
    offset_table: BTreeMap<i32, i64>,
}

/// The delay scheduler.
pub struct ScheduleService {
    path: PathBuf,
    offsets: Mutex<BTreeMap<i32, i64>>,
    dirty: AtomicBool,
}

impl ScheduleService {
    /// Loads delivered offsets under `root`.
    pub fn load(root: &std::path::Path) -> Result<Self, ScheduleError> {
        let path = root.join("config").join("delayOffset.json");
        let t = metadata::load_json::<DelayOffsetTable>(&path)?.unwrap_or_default();
        Ok(Self {
            path,
            offsets: Mutex::new(t.offset_table),
            dirty: AtomicBool::new(false),
        })
    }

    /// Persists delivered offsets if they changed.
    pub fn persist(&self) -> Result<(), ScheduleError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let t = DelayOffsetTable {
            offset_table: self.offsets.lock().clone(),
        };
        metadata::save_json(&self.path, &t)
            .inspect_err(|_| self.dirty.store(true, Ordering::Release))?;
        Ok(())
    }

    /// Delivered offsets by level (GET_ALL_DELAY_OFFSET).
    pub fn offsets(&self) -> BTreeMap<i32, i64> {
        self.offsets.lock().clone()
    }

    /// Replaces the delivered offsets (a DLedger follower copying its leader's, so that it
    /// resumes delayed delivery where the leader stood if it takes over).
    pub fn set_offsets(&self, offsets: &BTreeMap<i32, i64>) {
        let mut cur = self.offsets.lock();
        if *cur != *offsets {
            cur.clone_from(offsets);
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// If `m` carries a positive `DELAY` level (and is not already a schedule message),
    /// rewrites it into a schedule message for that level.
    pub fn maybe_delay(&self, m: &mut MessageInner, cfg: &BrokerConfig) {
        if m.topic == SCHEDULE_TOPIC {
            return;
        }
        let Some(level) =
            codec::property(&m.properties, props::DELAY).and_then(|v| v.trim().parse::<i32>().ok())
        else {
            return;
        };
        if level <= 0 {
            return;
        }
        let max = i32::try_from(cfg.message_delay_level.len()).unwrap_or(i32::MAX);
        let level = level.min(max);
        let Some(delay) = usize::try_from(level - 1)
            .ok()
            .and_then(|i| cfg.message_delay_level.get(i))
        else {
            return;
        };
        let due = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let mut p = set_property(&m.properties, props::REAL_TOPIC, &m.topic);
        p = set_property(&p, props::REAL_QID, &m.queue_id.to_string());
        p = set_property(&p, props::DELAY, &level.to_string());
        m.properties = p;
        m.topic = SCHEDULE_TOPIC.to_string();
        m.queue_id = level - 1;
        m.tags_code = Some(due);
    }

    /// Runs one delivery task per level until the broker stops.
    pub async fn run(broker: Arc<Broker>) {
        let levels = broker.config().message_delay_level.len();
        let mut set = tokio::task::JoinSet::new();
        for level in 1..=levels {
            let b = broker.clone();
            let level = i32::try_from(level).unwrap_or(i32::MAX);
            set.spawn(async move { deliver_level(b, level).await });
        }
        broker.stop.cancelled().await;
        set.abort_all();
    }
}

async fn deliver_level(b: Arc<Broker>, level: i32) {
    let qid = level - 1;
    let notify = b.long_polling.notify_for(SCHEDULE_TOPIC, qid);
    loop {
        if b.stop.is_cancelled() {
            return;
        }
        if !b.is_master() {
            // DLedger follower: the leader delivers; check again shortly.
            tokio::select! {
                () = b.stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        let cfg = b.config();
        let delay = usize::try_from(qid)
            .ok()
            .and_then(|i| cfg.message_delay_level.get(i).copied())
            .unwrap_or(Duration::from_secs(1));
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let offset = b.schedule.offsets.lock().get(&level).copied().unwrap_or(0);
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let r = b.store.get_message_below(
            SCHEDULE_TOPIC,
            qid,
            offset,
            32,
            4 << 20,
            &|_| true,
            b.read_bound(),
        );
        let mut wait = Duration::from_secs(1);
        match r.status {
            GetStatus::Found => {
                let mut next = offset;
                let mut blocked = false;
                for (raw, qoff) in r.messages.iter().zip(r.queue_offsets.iter()) {
                    let Ok(rec) = decode_record(raw, false) else {
                        tracing::warn!(level, offset = qoff, "undecodable schedule record skipped");
                        next = qoff + 1;
                        continue;
                    };
                    let due = rec.store_timestamp.saturating_add(delay_ms);
                    let now = now_ms();
                    if due > now {
                        wait = Duration::from_millis(u64::try_from(due - now).unwrap_or(0));
                        blocked = true;
                        break;
                    }
                    let real_topic = codec::property(rec.properties, props::REAL_TOPIC)
                        .unwrap_or("")
                        .to_string();
                    let real_qid = codec::property(rec.properties, props::REAL_QID)
                        .and_then(|q| q.parse::<i32>().ok())
                        .unwrap_or(0);
                    if real_topic.is_empty() {
                        next = qoff + 1;
                        continue;
                    }
                    let msg = MessageInner {
                        topic: real_topic,
                        queue_id: real_qid,
                        flag: rec.flag,
                        body: bytes::Bytes::copy_from_slice(rec.body),
                        properties: remove_property(rec.properties, props::DELAY),
                        sys_flag: rec.sys_flag,
                        born_timestamp: rec.born_timestamp,
                        born_host: rec.born_host,
                        reconsume_times: rec.reconsume_times,
                        prepared_transaction_offset: rec.prepared_transaction_offset,
                        tags_code: None,
                    };
                    // Through the replication gate, as a send: in a DLedger group the
                    // level's offset moves on only once the re-put is committed, so a
                    // failover before that re-delivers instead of losing the message.
                    let put = b.put(vec![msg]).await;
                    // Stored locally (replicas may lag, as a send answered with the same
                    // status): moving on avoids storing it twice.
                    if put.append.is_none()
                        || !matches!(
                            put.status,
                            flotilla_message_store::PutStatus::PutOk
                                | flotilla_message_store::PutStatus::FlushDiskTimeout
                                | flotilla_message_store::PutStatus::FlushSlaveTimeout
                                | flotilla_message_store::PutStatus::SlaveNotAvailable
                        )
                    {
                        tracing::warn!(
                            level,
                            status = put.status.code(),
                            "re-put of a delayed message failed; retrying"
                        );
                        blocked = true;
                        wait = Duration::from_secs(1);
                        break;
                    }
                    next = qoff + 1;
                }
                if next != offset {
                    b.schedule.offsets.lock().insert(level, next);
                    b.schedule.dirty.store(true, Ordering::Release);
                }
                if !blocked {
                    continue;
                }
            }
            GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => {
                b.schedule.offsets.lock().insert(level, r.next_begin_offset);
                b.schedule.dirty.store(true, Ordering::Release);
                continue;
            }
            GetStatus::NoMatchedMessage | GetStatus::OffsetFoundNull
                if r.next_begin_offset > offset =>
            {
                b.schedule.offsets.lock().insert(level, r.next_begin_offset);
                b.schedule.dirty.store(true, Ordering::Release);
                continue;
            }
            _ => {}
        }
        tokio::select! {
            () = b.stop.cancelled() => return,
            () = &mut notified => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

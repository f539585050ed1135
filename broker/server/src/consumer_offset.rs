//! Committed consumer offsets (`config/consumerOffset.json`), kept in memory and flushed.
//!
//! Consumers commit offsets constantly (UPDATE_CONSUMER_OFFSET every 5 s per queue, and on
//! every pull with the commit bit), so commits only update memory; a background task
//! persists the table atomically every `flushConsumerOffsetInterval` when it changed, and
//! once more at shutdown. After a crash a consumer may therefore re-read up to one interval
//! of messages — at-least-once, never a loss. Pull offsets (where each group last pulled)
//! are kept for GET_CONSUME_STATS but never persisted.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use flotilla_message_store::metadata::{self, ConsumerOffsetTable};
use parking_lot::{Mutex, RwLock};

use crate::topic_config::now_ms;

/// Offset table failures.
#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    /// The table could not be read or persisted.
    #[error("consumerOffset.json: {0}")]
    Persist(#[from] metadata::MetadataError),
}

impl OffsetError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Persist(_) => "OFFSET_PERSIST_FAILED",
        }
    }
}

/// Owns committed and pull offsets.
pub struct ConsumerOffsetManager {
    path: PathBuf,
    table: RwLock<ConsumerOffsetTable>,
    dirty: AtomicBool,
    pull: Mutex<HashMap<(String, i32), i64>>,
    resets: Mutex<HashMap<(String, i32), i64>>,
    persist_lock: Mutex<()>,
}

impl ConsumerOffsetManager {
    /// Loads the table under `root`.
    pub fn load(root: &std::path::Path) -> Result<Self, OffsetError> {
        let path = metadata::consumer_offsets_path(root);
        let table = metadata::load_json::<ConsumerOffsetTable>(&path)?.unwrap_or_default();
        Ok(Self {
            path,
            table: RwLock::new(table),
            dirty: AtomicBool::new(false),
            pull: Mutex::new(HashMap::new()),
            resets: Mutex::new(HashMap::new()),
            persist_lock: Mutex::new(()),
        })
    }

    /// The committed offset of (group, topic, queue).
    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.table.read().get(topic, group, queue_id)
    }

    /// Commits an offset (memory only; see [`Self::persist`]).
    pub fn commit(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        let mut t = self.table.write();
        if t.get(topic, group, queue_id) != Some(offset) {
            t.set(topic, group, queue_id, offset);
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Copies `src`'s committed offsets on `topic` to `dest` (CLONE_GROUP_OFFSET), replacing
    /// `dest`'s for the same queues.
    pub fn clone_offsets(&self, src: &str, dest: &str, topic: &str) {
        let from = self.offsets_of(src, topic);
        if from.is_empty() {
            return;
        }
        let mut t = self.table.write();
        for (q, o) in from {
            t.set(topic, dest, q, o);
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Records where a group last pulled (for consume stats).
    pub fn record_pull(&self, group: &str, topic: &str, queue_id: i32, next_offset: i64) {
        self.pull.lock().insert(
            (ConsumerOffsetTable::key(topic, group), queue_id),
            next_offset,
        );
    }

    /// Records a server-side offset reset: the group's next pull on the queue is answered
    /// PULL_OFFSET_MOVED to `offset`, so online consumers jump there too.
    pub fn request_reset(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        self.resets
            .lock()
            .insert((ConsumerOffsetTable::key(topic, group), queue_id), offset);
    }

    /// Takes a pending reset of a queue, if any.
    pub fn take_reset(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        let mut r = self.resets.lock();
        if r.is_empty() {
            return None;
        }
        r.remove(&(ConsumerOffsetTable::key(topic, group), queue_id))
    }

    /// Where a group last pulled.
    pub fn pull_offset(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.pull
            .lock()
            .get(&(ConsumerOffsetTable::key(topic, group), queue_id))
            .copied()
    }

    /// Committed offsets of a group on a topic (queue → offset).
    pub fn offsets_of(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.table
            .read()
            .offset_table
            .get(&ConsumerOffsetTable::key(topic, group))
            .cloned()
            .unwrap_or_default()
    }

    /// Topics a group has offsets for.
    pub fn topics_of(&self, group: &str) -> Vec<String> {
        let suffix = format!("@{group}");
        self.table
            .read()
            .offset_table
            .keys()
            .filter_map(|k| k.strip_suffix(&suffix).map(str::to_string))
            .collect()
    }

    /// Removes every offset of a group (DELETE_SUBSCRIPTIONGROUP) or of a topic.
    pub fn remove_where(&self, pred: impl Fn(&str, &str) -> bool) {
        let mut t = self.table.write();
        let before = t.offset_table.len();
        t.offset_table.retain(|k, _| match k.rsplit_once('@') {
            Some((topic, group)) => !pred(topic, group),
            None => true,
        });
        if t.offset_table.len() != before {
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// A snapshot (GET_ALL_CONSUMER_OFFSET).
    pub fn snapshot(&self) -> ConsumerOffsetTable {
        self.table.read().clone()
    }

    /// Persists the table if it changed since the last persist.
    pub fn persist(&self) -> Result<(), OffsetError> {
        let _g = self.persist_lock.lock();
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let snap = {
            let mut t = self.table.write();
            t.data_version.next_version(now_ms());
            t.clone()
        };
        if let Err(e) = metadata::save_json(&self.path, &snap) {
            self.dirty.store(true, Ordering::Release);
            return Err(e.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_persist_reload() {
        let dir = tempfile::tempdir().unwrap();
        let m = ConsumerOffsetManager::load(dir.path()).unwrap();
        m.commit("g", "T", 1, 42);
        assert_eq!(m.query("g", "T", 1), Some(42));
        m.persist().unwrap();
        let again = ConsumerOffsetManager::load(dir.path()).unwrap();
        assert_eq!(again.query("g", "T", 1), Some(42));
        assert_eq!(again.topics_of("g"), vec!["T".to_string()]);
        again.remove_where(|_, g| g == "g");
        assert_eq!(again.query("g", "T", 1), None);
    }
}

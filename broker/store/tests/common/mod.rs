//! Helpers shared by the store's integration tests: small-segment configs, a settable clock
//! and a disk-usage probe the test controls.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use flotilla_message_store::{
    Clock, DiskUsageProbe, FlushDiskType, MessageInner, MessageStore, StoreConfig,
};

/// A clock whose time and hour the test sets.
#[derive(Debug)]
pub struct TestClock {
    pub now: AtomicI64,
    pub hour: AtomicU32,
}

impl TestClock {
    pub fn new(now: i64) -> Arc<TestClock> {
        Arc::new(TestClock {
            now: AtomicI64::new(now),
            hour: AtomicU32::new(12),
        })
    }
    pub fn set(&self, now: i64) {
        self.now.store(now, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set_hour(&self, h: u32) {
        self.hour.store(h, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
    fn hour_of_day(&self) -> u32 {
        self.hour.load(Ordering::SeqCst)
    }
}

/// A disk-usage probe returning what the test sets.
#[derive(Debug, Default)]
pub struct TestDisk {
    bits: AtomicU64,
}

impl TestDisk {
    pub fn new(ratio: f64) -> Arc<TestDisk> {
        let d = TestDisk::default();
        d.set(ratio);
        Arc::new(d)
    }
    pub fn set(&self, ratio: f64) {
        self.bits.store(ratio.to_bits(), Ordering::SeqCst);
    }
}

impl DiskUsageProbe for TestDisk {
    fn used_ratio(&self, _path: &Path) -> std::io::Result<f64> {
        Ok(f64::from_bits(self.bits.load(Ordering::SeqCst)))
    }
}

/// A "disk" of `capacity` bytes whose usage is the real size of the CommitLog directory.
#[derive(Debug)]
pub struct DirSizeDisk {
    pub capacity: u64,
}

impl DiskUsageProbe for DirSizeDisk {
    fn used_ratio(&self, path: &Path) -> std::io::Result<f64> {
        let mut used = 0u64;
        for e in std::fs::read_dir(path.join("commitlog"))? {
            used += e?.metadata()?.len();
        }
        Ok(used as f64 / self.capacity as f64)
    }
}

/// A config with 64 KiB CommitLog files, 64-entry ConsumeQueue files and no background
/// threads, so tests drive flushing and retention themselves.
pub fn small_config(root: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::new(root);
    cfg.commitlog_file_size = 64 * 1024;
    cfg.cq_entries_per_file = 64;
    cfg.index_entries_per_file = 50;
    cfg.max_message_size = 16 * 1024;
    cfg.background_services = false;
    cfg.flush = FlushDiskType::Async;
    cfg
}

pub fn msg(topic: &str, queue_id: i32, body: &[u8]) -> MessageInner {
    MessageInner::new(topic, queue_id, body.to_vec())
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn open(cfg: StoreConfig) -> MessageStore {
    MessageStore::open(cfg).expect("open store")
}

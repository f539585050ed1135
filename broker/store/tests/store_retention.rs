//! Retention with small files, an injected clock and injected disk usage.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a location

mod common;

use std::sync::Arc;

use common::*;
use flotilla_message_store::codec::decode_record;
use flotilla_message_store::{GetStatus, MessageStore, PutStatus, StoreConfig};

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_700_000_000_000;

fn files(dir: &std::path::Path, sub: &str) -> usize {
    std::fs::read_dir(dir.join(sub))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn fill(store: &MessageStore, rt: &tokio::runtime::Runtime, from: u64, n: u64) {
    for i in from..from + n {
        let m =
            msg("Ret", (i % 2) as i32, &[i as u8; 2000]).with_property("KEYS", &format!("k{i}"));
        assert_eq!(rt.block_on(store.put_message(m)).status, PutStatus::PutOk);
    }
}

fn config(dir: &std::path::Path, clock: Arc<TestClock>, disk: Arc<TestDisk>) -> StoreConfig {
    let mut cfg = small_config(dir);
    cfg.clock = clock;
    cfg.disk_probe = disk;
    cfg.file_reserved_hours = 1;
    cfg.delete_when = "04;05".into();
    cfg
}

#[test]
fn expired_files_are_deleted_at_delete_when_or_under_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(T0);
    let disk = TestDisk::new(0.10);
    let store = open(config(dir.path(), clock.clone(), disk.clone()));
    let rt = rt();
    fill(&store, &rt, 0, 300); // ~600 KB: about 9 files written at T0
    clock.set(T0 + 2 * HOUR);
    fill(&store, &rt, 300, 100); // more files at T0 + 2h
    let cl_files = files(dir.path(), "commitlog");
    assert!(cl_files >= 11, "{cl_files}");

    // Not the hour, no pressure: nothing happens.
    clock.set_hour(12);
    let r = store.run_retention_once(false);
    assert!(!r.deletion_allowed);
    assert_eq!(r.commitlog_files_deleted, 0);

    // 04:00 — files whose newest record is older than 1 h (written at T0) go.
    clock.set_hour(4);
    let r = store.run_retention_once(false);
    assert!(r.deletion_allowed);
    assert!(r.commitlog_files_deleted >= 7, "{r:?}");
    assert_eq!(
        files(dir.path(), "commitlog"),
        cl_files - r.commitlog_files_deleted
    );
    let min = store.commitlog_min_offset();
    assert_eq!(min, r.min_offset);
    assert!(min > 0);
    // Queues and index were trimmed to the new minimum.
    let g = store.get_message("Ret", 0, 0, 1, 1 << 20, &|_| true);
    assert_eq!(g.status, GetStatus::OffsetTooSmall);
    let qmin = store.min_offset_in_queue("Ret", 0);
    assert_eq!(g.next_begin_offset, qmin);
    let first = store.get_message("Ret", 0, qmin, 1, 1 << 20, &|_| true);
    assert_eq!(first.status, GetStatus::Found);
    assert!(store.commitlog_offset_in_queue("Ret", 0, qmin).unwrap() >= min);
    assert!(decode_record(&first.messages[0], true).unwrap().phys_offset >= min);
    assert!(r.cq_files_deleted > 0, "{r:?}");
    assert!(
        store
            .query_message("Ret", "k0", 5, 0, i64::MAX, false)
            .is_empty()
    );
    assert_eq!(
        store
            .query_message("Ret", "k399", 5, 0, i64::MAX, false)
            .len(),
        1
    );
    // Files written at T0+2h are not expired yet at T0+2h.
    let again = store.run_retention_once(false);
    assert_eq!(again.commitlog_files_deleted, 0);

    // Later, disk pressure above 75 % deletes expired files at any hour.
    clock.set(T0 + 4 * HOUR);
    fill(&store, &rt, 400, 40); // a fresh active file
    clock.set_hour(12);
    disk.set(0.80);
    let r = store.run_retention_once(false);
    assert!(r.deletion_allowed);
    assert!(r.commitlog_files_deleted >= 1, "{r:?}");
    assert!(
        store
            .look_message_by_offset(store.commitlog_min_offset())
            .is_some()
    );
    // The last file is never deleted.
    assert!(files(dir.path(), "commitlog") >= 1);

    // A restart after retention keeps the trimmed state.
    store.shutdown().unwrap();
    let min = store.commitlog_min_offset();
    drop(store);
    disk.set(0.1);
    let store = open(config(dir.path(), clock.clone(), disk.clone()));
    assert_eq!(store.commitlog_min_offset(), min);
    assert_eq!(
        store.get_message("Ret", 1, 0, 1, 1024, &|_| true).status,
        GetStatus::OffsetTooSmall
    );
}

#[test]
fn forced_cleaning_above_85_percent_ignores_age() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(T0);
    let mut cfg = config(dir.path(), clock.clone(), TestDisk::new(0.0));
    cfg.file_reserved_hours = 72;
    let file_size = cfg.commitlog_file_size;
    let store = open(cfg);
    let rt = rt();
    fill(&store, &rt, 0, 260); // ~8 files, all fresh
    store.shutdown().unwrap();
    drop(store);
    let n = files(dir.path(), "commitlog") as u64;
    // A disk of a size where the current files are 87 % full; one file less is below 85 %.
    let capacity = (n * file_size) as f64 / 0.87;
    let mut cfg = config(dir.path(), clock.clone(), TestDisk::new(0.0));
    cfg.file_reserved_hours = 72;
    cfg.disk_probe = Arc::new(DirSizeDisk {
        capacity: capacity as u64,
    });
    let store = open(cfg);
    let r = store.run_retention_once(false);
    assert!(
        r.disk_used_ratio > 0.85 && r.disk_used_ratio < 0.90,
        "{r:?}"
    );
    assert_eq!(r.commitlog_files_deleted, 1, "{r:?}");
    assert!(!r.disk_full);
    assert_eq!(files(dir.path(), "commitlog") as u64, n - 1);
    assert_eq!(store.commitlog_min_offset(), file_size as i64);
}

#[test]
fn writes_are_refused_at_90_percent_and_resume_below() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(T0);
    let disk = TestDisk::new(0.10);
    let store = open(config(dir.path(), clock.clone(), disk.clone()));
    let rt = rt();
    fill(&store, &rt, 0, 3);
    let max = store.commitlog_max_offset();
    disk.set(0.95);
    let r = store.run_retention_once(false);
    assert!(r.disk_full);
    assert!(store.is_disk_full());
    let put = rt.block_on(store.put_message(msg("Ret", 0, b"refused")));
    assert_eq!(put.status, PutStatus::DiskFull);
    assert_eq!(put.status.code(), "DISK_FULL");
    assert!(put.append.is_none());
    assert_eq!(store.commitlog_max_offset(), max);
    // Reads still work.
    assert_eq!(
        store
            .get_message("Ret", 0, 0, 8, 1 << 20, &|_| true)
            .messages
            .len(),
        2
    );
    disk.set(0.50);
    store.run_retention_once(false);
    assert!(!store.is_disk_full());
    assert_eq!(
        rt.block_on(store.put_message(msg("Ret", 0, b"ok"))).status,
        PutStatus::PutOk
    );
    // The disk-full state is also evaluated at open.
    store.shutdown().unwrap();
    drop(store);
    disk.set(0.91);
    let store = open(config(dir.path(), clock, disk));
    assert_eq!(
        rt.block_on(store.put_message(msg("Ret", 0, b"no"))).status,
        PutStatus::DiskFull
    );
}

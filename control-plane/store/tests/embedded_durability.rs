//! Embedded-only checks: what must survive a restart, and the single-process guarantees.

// Tests may unwrap (house rule); clippy's allow-unwrap-in-tests covers only #[test] fns,
// not the shared check functions of an integration-test crate.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{next_event, next_item, wait_until};
use flotilla_intent_store::{
    EmbeddedOptions, EmbeddedStore, EventKind, IntentStore, LeasesOnReopen, RangeRequest,
    StoreError, StoreSpec,
};

/// Reopens a store whose previous instance was just dropped. Background tasks of the old
/// instance may hold the file for a moment after the drop, so this polls.
async fn reopen(dir: &Path, options: EmbeddedOptions) -> Arc<dyn IntentStore> {
    wait_until("the store file to be released", || {
        let options = options.clone();
        async move {
            match EmbeddedStore::open_with(dir, options).await {
                Ok(s) => Some(Arc::new(s) as Arc<dyn IntentStore>),
                Err(StoreError::Storage(msg)) if msg.contains("already open") => None,
                Err(e) => panic!("reopen failed: {e}"),
            }
        }
    })
    .await
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("intent-store-")
        .tempdir()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_data_and_compaction_survive_reopen() {
    let dir = temp_dir();
    let spec = StoreSpec::parse(&format!("embedded:{}", dir.path().display())).unwrap();
    let s = spec.open().await.unwrap();
    assert_eq!(s.backend(), "embedded");
    let r1 = s.put("/d/a", b"1".to_vec(), None).await.unwrap();
    let r2 = s.put("/d/b", b"2".to_vec(), None).await.unwrap();
    let r3 = s.put("/d/a", b"3".to_vec(), None).await.unwrap();
    s.compact(r2).await.unwrap();
    drop(s);

    let s = reopen(dir.path(), EmbeddedOptions::default()).await;
    let listed = s.range(RangeRequest::prefix("/d/")).await.unwrap();
    assert_eq!(listed.revision, r3, "the revision survives");
    let a = &listed.kvs[0];
    assert_eq!(
        (
            a.value.as_slice(),
            a.create_revision,
            a.mod_revision,
            a.version
        ),
        (&b"3"[..], r1, r3, 2)
    );
    assert_eq!(listed.kvs[1].value, b"2");

    // The compaction point survives: older history is gone, newer history replays.
    let mut old = s.watch("/d/", r1).await.unwrap();
    assert_eq!(
        next_item(&mut old).await.unwrap_err(),
        StoreError::Compacted {
            compact_revision: r2
        }
    );
    let mut replay = s.watch("/d/", r2).await.unwrap();
    assert_eq!(next_event(&mut replay).await.revision(), r2);
    assert_eq!(next_event(&mut replay).await.revision(), r3);

    // Writes continue from the persisted revision.
    let r4 = s.put("/d/c", b"4".to_vec(), None).await.unwrap();
    assert_eq!(r4, r3 + 1);
    assert_eq!(next_event(&mut replay).await.revision(), r4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_is_higher_after_reopen() {
    let dir = temp_dir();
    let s = reopen(dir.path(), EmbeddedOptions::default()).await;
    let lease = s.lease_grant(30).await.unwrap();
    let first = s
        .campaign("/e/leader", b"cp".to_vec(), lease.id)
        .await
        .unwrap();
    drop(s);

    // The old process is gone; its lease cannot be renewed by anyone, so expire it on open.
    let options = EmbeddedOptions {
        leases_on_reopen: LeasesOnReopen::Expire,
        ..EmbeddedOptions::default()
    };
    let s = reopen(dir.path(), options).await;
    assert_eq!(s.leader("/e/leader").await.unwrap(), None);
    let lease2 = s.lease_grant(30).await.unwrap();
    assert_ne!(lease2.id, lease.id, "lease ids are never reused");
    let second = s
        .campaign("/e/leader", b"cp".to_vec(), lease2.id)
        .await
        .unwrap();
    assert!(
        second.epoch() > first.epoch(),
        "epoch {} after restart must exceed {}",
        second.epoch(),
        first.epoch()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_reopen_with_a_fresh_ttl() {
    let dir = temp_dir();
    let s = reopen(dir.path(), EmbeddedOptions::default()).await;
    let long = s.lease_grant(60).await.unwrap();
    let short = s.lease_grant(1).await.unwrap();
    s.put("/l/long", b"l".to_vec(), Some(long.id))
        .await
        .unwrap();
    let rev = s
        .put("/l/short", b"s".to_vec(), Some(short.id))
        .await
        .unwrap();
    drop(s);

    let s = reopen(dir.path(), EmbeddedOptions::default()).await;
    // The long lease is still there, with its keys, and can be kept alive.
    assert_eq!(s.lease_keep_alive(long.id).await.unwrap(), 60);
    let info = s.lease_time_to_live(long.id).await.unwrap();
    assert_eq!(info.keys, vec!["/l/long".to_string()]);
    // The short one still expires after the restart, with a delete event.
    let mut w = s.watch("/l/", rev + 1).await.unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.kind, ev.kv.key.as_str()),
        (EventKind::Delete, "/l/short")
    );
    assert!(s.get("/l/long").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_of_the_same_directory_fails() {
    let dir = temp_dir();
    let _s = EmbeddedStore::open(dir.path()).await.unwrap();
    let err = EmbeddedStore::open(dir.path()).await.err().unwrap();
    assert_eq!(err.code(), "STORE_STORAGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_catches_up_from_the_log() {
    let dir = temp_dir();
    let options = EmbeddedOptions {
        fanout_capacity: 2,
        ..EmbeddedOptions::default()
    };
    let s = reopen(dir.path(), options).await;
    let mut w = s.watch("/lag/", 0).await.unwrap();
    // Far more writes than the fan-out and the watch channel buffer, without reading.
    let mut first = 0;
    let n = 400;
    for i in 0..n {
        let r = s.put(&format!("/lag/{i:04}"), vec![1], None).await.unwrap();
        if i == 0 {
            first = r;
        }
    }
    for i in 0..n {
        let ev = next_event(&mut w).await;
        assert_eq!(ev.revision(), first + i, "no event lost or reordered");
        assert_eq!(ev.kv.key, format!("/lag/{i:04}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_when_the_store_is_dropped() {
    let dir = temp_dir();
    let s = reopen(dir.path(), EmbeddedOptions::default()).await;
    let mut w = s.watch("/x/", 0).await.unwrap();
    drop(s);
    assert_eq!(
        next_item(&mut w).await.unwrap_err().code(),
        "STORE_UNAVAILABLE"
    );
}

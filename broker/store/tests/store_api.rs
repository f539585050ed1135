//! End-to-end behaviour of the public API on real files: put/get, statuses, batches, file
//! rolling, bad input, time and key lookups, notifications, replication hooks, reopen.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a location

mod common;

use std::sync::Arc;

use common::*;
use flotilla_message_store::codec::{self, decode_record};
use flotilla_message_store::{
    Boundary, FlushDiskType, GetStatus, MessageInner, MessageStore, PutStatus, StoreConfig,
};

fn all(_: i64) -> bool {
    true
}

#[test]
fn put_then_get_returns_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(small_config(dir.path()));
    let rt = rt();
    let m = msg("TopicA", 1, b"hello")
        .with_property("TAGS", "TagA")
        .with_property("KEYS", "k1 k2");
    let r = rt.block_on(store.put_message(m));
    assert_eq!(r.status, PutStatus::PutOk);
    let a = r.append.unwrap();
    assert_eq!((a.wrote_offset, a.logical_offset, a.count), (0, 0, 1));
    assert_eq!(
        a.msg_ids()[0],
        codec::message_id(&store.config().store_host, 0)
    );
    assert_eq!(a.msg_ids()[0].len(), 32);

    let g = store.get_message("TopicA", 1, 0, 32, 1 << 20, &all);
    assert_eq!(g.status, GetStatus::Found);
    assert_eq!((g.next_begin_offset, g.min_offset, g.max_offset), (1, 0, 1));
    let raw = &g.messages[0];
    assert_eq!(raw.len(), a.wrote_bytes);
    assert_eq!(store.look_message_by_offset(0).as_ref(), Some(raw));
    assert_eq!(store.read_raw(0, 1 << 20).as_ref(), Some(raw));
    let d = decode_record(raw, true).unwrap();
    assert_eq!(d.body, b"hello");
    assert_eq!(d.topic, "TopicA");
    assert_eq!(d.queue_id, 1);
    assert_eq!(d.queue_offset, 0);
    assert_eq!(d.phys_offset, 0);
    assert_eq!(codec::property(d.properties, "TAGS"), Some("TagA"));

    // Tag filtering uses the Java hash code.
    let want = codec::tags_code(Some("TagA"));
    let g = store.get_message("TopicA", 1, 0, 32, 1 << 20, &|t| t == want);
    assert_eq!(g.status, GetStatus::Found);
    let g = store.get_message("TopicA", 1, 0, 32, 1 << 20, &|t| t == want + 1);
    assert_eq!(g.status, GetStatus::NoMatchedMessage);
    assert_eq!(g.next_begin_offset, 1);
}

#[test]
fn get_statuses_follow_rocketmq() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(small_config(dir.path()));
    let rt = rt();
    assert_eq!(
        store.get_message("Nope", 0, 0, 1, 1024, &all).status,
        GetStatus::NoMatchedLogicQueue
    );
    for i in 0..3 {
        rt.block_on(store.put_message(msg("T", 0, format!("m{i}").as_bytes())));
    }
    assert_eq!(
        store.get_message("T", 0, 3, 1, 1024, &all).status,
        GetStatus::OffsetOverflowOne
    );
    let g = store.get_message("T", 0, 9, 1, 1024, &all);
    assert_eq!(
        (g.status, g.next_begin_offset),
        (GetStatus::OffsetOverflowBadly, 3)
    );
    let g = store.get_message("T", 0, -1, 1, 1024, &all);
    assert_eq!(
        (g.status, g.next_begin_offset),
        (GetStatus::OffsetTooSmall, 0)
    );
    // max_msgs and max_bytes bound the batch; the first message is always returned.
    let g = store.get_message("T", 0, 0, 2, 1 << 20, &all);
    assert_eq!((g.messages.len(), g.next_begin_offset), (2, 2));
    let g = store.get_message("T", 0, 0, 32, 1, &all);
    assert_eq!((g.messages.len(), g.next_begin_offset), (1, 1));
    assert_eq!(store.max_offset_in_queue("T", 0), 3);
    assert_eq!(store.min_offset_in_queue("T", 0), 0);
    assert_eq!(store.topics(), vec!["T".to_string()]);
    assert_eq!(store.queue_ids("T"), vec![0]);
}

#[test]
fn batch_gets_consecutive_records_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(small_config(dir.path()));
    let rt = rt();
    rt.block_on(store.put_message(msg("B", 2, b"first")));
    let batch: Vec<MessageInner> = (0..10)
        .map(|i| msg("B", 2, format!("b{i}").as_bytes()))
        .collect();
    let r = rt.block_on(store.put_messages(batch));
    assert_eq!(r.status, PutStatus::PutOk);
    let a = r.append.unwrap();
    assert_eq!((a.count, a.logical_offset), (10, 1));
    for (i, w) in a.records.windows(2).enumerate() {
        assert_eq!(
            w[1].phys_offset,
            w[0].phys_offset + i64::from(w[0].size),
            "record {i}"
        );
        assert_eq!(w[1].queue_offset, w[0].queue_offset + 1);
    }
    assert_eq!(a.msg_id_list().split(',').count(), 10);
    let g = store.get_message("B", 2, 1, 32, 1 << 20, &all);
    assert_eq!(g.messages.len(), 10);
    for (i, m) in g.messages.iter().enumerate() {
        assert_eq!(
            decode_record(m, true).unwrap().body,
            format!("b{i}").as_bytes()
        );
    }
}

#[test]
fn records_never_span_files_and_blank_markers_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let file_size = cfg.commitlog_file_size as i64;
    let store = open(cfg);
    let rt = rt();
    let body = vec![7u8; 3000];
    let mut positions = Vec::new();
    for _ in 0..100 {
        let r = rt.block_on(store.put_message(msg("Roll", 0, &body)));
        let rp = r.append.unwrap().records[0];
        assert_eq!(
            rp.phys_offset / file_size,
            (rp.phys_offset + i64::from(rp.size) - 1) / file_size,
            "record at {} spans files",
            rp.phys_offset
        );
        positions.push(rp);
    }
    // Where a file was rolled, the previous file ends with [remaining][BLANK_MAGIC].
    let rolled = positions
        .windows(2)
        .find(|w| w[1].phys_offset % file_size == 0)
        .unwrap();
    let end = rolled[0].phys_offset + i64::from(rolled[0].size);
    let raw = store.read_raw(end, 8).unwrap();
    let (size, magic) = codec::peek_header(&raw).unwrap();
    assert_eq!(magic, codec::BLANK_MAGIC);
    assert_eq!(i64::from(size), rolled[1].phys_offset - end);
    let files: Vec<_> = std::fs::read_dir(dir.path().join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        files.contains(&"00000000000000065536".to_string()),
        "{files:?}"
    );
    // Everything reads back through the ConsumeQueue.
    let mut off = 0;
    for _ in 0..200 {
        let g = store.get_message("Roll", 0, off, 7, 1 << 20, &all);
        if g.status != GetStatus::Found {
            break;
        }
        for (m, q) in g.messages.iter().zip(&g.queue_offsets) {
            let d = decode_record(m, true).unwrap();
            assert_eq!(d.queue_offset, *q);
            assert_eq!(d.body.len(), 3000);
        }
        off = g.next_begin_offset;
    }
    assert_eq!(off, 100);
}

#[test]
fn bad_input_is_rejected_without_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(small_config(dir.path()));
    let rt = rt();
    rt.block_on(store.put_message(msg("Good", 0, b"x")));
    let before = store.commitlog_max_offset();
    let cases: Vec<(MessageInner, PutStatus)> = vec![
        (msg("", 0, b"x"), PutStatus::MessageIllegal),
        (msg("bad/topic", 0, b"x"), PutStatus::MessageIllegal),
        (msg("..", 0, b"x"), PutStatus::MessageIllegal),
        (msg(&"t".repeat(300), 0, b"x"), PutStatus::MessageIllegal),
        (msg("Good", -1, b"x"), PutStatus::MessageIllegal),
        (
            msg("Good", 0, &vec![0u8; 17 * 1024]),
            PutStatus::MessageIllegal,
        ),
        (
            msg("Good", 0, b"x").with_property("K", &"v".repeat(40_000)),
            PutStatus::PropertiesSizeExceeded,
        ),
    ];
    for (m, want) in cases {
        let r = rt.block_on(store.put_message(m));
        assert_eq!(r.status, want);
        assert!(r.append.is_none());
    }
    // One bad message fails the whole batch.
    let r = rt.block_on(store.put_messages(vec![msg("Good", 0, b"a"), msg("", 0, b"b")]));
    assert_eq!(r.status, PutStatus::MessageIllegal);
    assert_eq!(
        rt.block_on(store.put_messages(vec![])).status,
        PutStatus::MessageIllegal
    );
    assert_eq!(store.commitlog_max_offset(), before);
    assert_eq!(store.max_offset_in_queue("Good", 0), 1);
    // A long (V2) topic within limits is fine.
    let long = "L".repeat(200);
    let r = rt.block_on(store.put_message(msg(&long, 0, b"v2")));
    assert_eq!(r.status, PutStatus::PutOk);
    let g = store.get_message(&long, 0, 0, 1, 1024, &all);
    assert_eq!(
        decode_record(&g.messages[0], true).unwrap().magic,
        codec::MAGIC_V2
    );
    // Default 4 MiB limit.
    let dir2 = tempfile::tempdir().unwrap();
    let big = open(StoreConfig {
        background_services: false,
        ..StoreConfig::new(dir2.path())
    });
    let r = rt.block_on(big.put_message(msg("T", 0, &vec![1u8; (4 << 20) + 1])));
    assert_eq!(r.status, PutStatus::MessageIllegal);
    big.shutdown().unwrap();
    store.shutdown().unwrap();
    let r = rt.block_on(store.put_message(msg("Good", 0, b"late")));
    assert_eq!(r.status, PutStatus::ServiceNotAvailable);
}

#[test]
fn ipv6_hosts_set_sysflag_bits() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path());
    cfg.store_host = "[::1]:10911".parse().unwrap();
    let store = open(cfg);
    let rt = rt();
    let mut m = msg("V6", 0, b"x");
    m.born_host = "[fe80::2]:4000".parse().unwrap();
    let r = rt.block_on(store.put_message(m));
    let a = r.append.unwrap();
    assert_eq!(a.msg_ids()[0].len(), 56);
    let raw = store.look_message_by_offset(0).unwrap();
    let d = decode_record(&raw, true).unwrap();
    assert_eq!(d.sys_flag & 0x30, 0x30);
    assert_eq!(d.born_host, "[fe80::2]:4000".parse().unwrap());
    assert_eq!(d.store_host, "[::1]:10911".parse().unwrap());
}

#[test]
fn time_search_and_earliest_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(1_000);
    let mut cfg = small_config(dir.path());
    cfg.clock = clock.clone();
    let store = open(cfg);
    let rt = rt();
    // Timestamps: 1000, 1000, 2000, 2000, 3000
    for t in [1_000, 1_000, 2_000, 2_000, 3_000] {
        clock.set(t);
        rt.block_on(store.put_message(msg("Time", 0, b"x")));
    }
    assert_eq!(store.earliest_message_time("Time", 0), Some(1_000));
    assert_eq!(store.offset_by_time("Time", 0, 2_000, Boundary::Lower), 2);
    assert_eq!(store.offset_by_time("Time", 0, 2_000, Boundary::Upper), 3);
    assert_eq!(store.offset_by_time("Time", 0, 1_500, Boundary::Lower), 2);
    assert_eq!(store.offset_by_time("Time", 0, 1_500, Boundary::Upper), 1);
    assert_eq!(store.offset_by_time("Time", 0, 0, Boundary::Lower), 0);
    assert_eq!(store.offset_by_time("Time", 0, 0, Boundary::Upper), 0);
    assert_eq!(store.offset_by_time("Time", 0, 9_000, Boundary::Lower), 5);
    assert_eq!(store.offset_by_time("Time", 0, 9_000, Boundary::Upper), 4);
    assert_eq!(store.offset_by_time("Nope", 0, 9_000, Boundary::Upper), 0);
    assert_eq!(store.earliest_message_time("Nope", 0), None);
    assert_eq!(store.message_store_time("Time", 0, 4), Some(3_000));
}

#[test]
fn query_by_key_and_unique_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(10_000);
    let mut cfg = small_config(dir.path());
    cfg.clock = clock.clone();
    let store = open(cfg);
    let rt = rt();
    for i in 0..120 {
        clock.set(10_000 + i * 10);
        let m = msg("Q", (i % 3) as i32, format!("body{i}").as_bytes())
            .with_property("KEYS", &format!("order-{} all", i % 4))
            .with_property("UNIQ_KEY", &format!("U{i:04}"));
        rt.block_on(store.put_message(m));
    }
    rt.block_on(store.put_message(msg("Other", 0, b"o").with_property("KEYS", "order-1")));
    let hits = store.query_message("Q", "order-1", 100, 0, i64::MAX, false);
    assert_eq!(hits.len(), 30);
    for h in &hits {
        let d = decode_record(h, true).unwrap();
        assert_eq!(d.topic, "Q");
        assert!(
            codec::property(d.properties, "KEYS")
                .unwrap()
                .starts_with("order-1 ")
        );
    }
    assert_eq!(
        store.query_message("Q", "all", 7, 0, i64::MAX, false).len(),
        7
    );
    // Time range [10_000, 10_090] covers i = 0..=9.
    assert_eq!(
        store
            .query_message("Q", "all", 100, 10_000, 10_090, false)
            .len(),
        10
    );
    let u = store.query_message("Q", "U0042", 10, 0, i64::MAX, true);
    assert_eq!(u.len(), 1);
    assert_eq!(decode_record(&u[0], true).unwrap().body, b"body42");
    assert!(
        store
            .query_message("Q", "order-1", 10, 0, i64::MAX, true)
            .is_empty()
    );
    assert!(
        store
            .query_message("Q", "missing", 10, 0, i64::MAX, false)
            .is_empty()
    );
    // The index survives a clean restart and a crash (drop without shutdown).
    store.shutdown().unwrap();
    drop(store);
    let mut cfg = small_config(dir.path());
    cfg.clock = clock.clone();
    let store = open(cfg);
    assert_eq!(
        store
            .query_message("Q", "order-1", 100, 0, i64::MAX, false)
            .len(),
        30
    );
    drop(store);
    let mut cfg = small_config(dir.path());
    cfg.clock = clock.clone();
    let store = open(cfg);
    assert_eq!(
        store
            .query_message("Q", "order-1", 100, 0, i64::MAX, false)
            .len(),
        30
    );
    assert_eq!(
        store
            .query_message("Q", "U0119", 10, 0, i64::MAX, true)
            .len(),
        1
    );
}

#[test]
fn index_is_rebuilt_when_its_files_are_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(small_config(dir.path()));
    let rt = rt();
    for i in 0..40 {
        rt.block_on(store.put_message(msg("R", 0, b"x").with_property("KEYS", &format!("k{i}"))));
    }
    drop(store); // crash
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let store = open(small_config(dir.path()));
    for i in 0..40 {
        assert_eq!(
            store
                .query_message("R", &format!("k{i}"), 5, 0, i64::MAX, false)
                .len(),
            1
        );
    }
    assert_eq!(store.max_offset_in_queue("R", 0), 40);
}

#[test]
fn consume_queues_are_rebuilt_when_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(small_config(dir.path()));
    let rt = rt();
    for i in 0..200 {
        rt.block_on(store.put_message(msg("C", i % 2, &[1u8; 700])));
    }
    drop(store);
    std::fs::remove_dir_all(dir.path().join("consumequeue")).unwrap();
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let store = open(small_config(dir.path()));
    assert_eq!(store.max_offset_in_queue("C", 0), 100);
    assert_eq!(store.max_offset_in_queue("C", 1), 100);
    let g = store.get_message("C", 1, 99, 5, 1 << 20, &all);
    assert_eq!(g.status, GetStatus::Found);
    assert_eq!(
        decode_record(&g.messages[0], true).unwrap().queue_offset,
        99
    );
}

#[test]
fn notifier_and_arrivals_fire_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(small_config(dir.path()));
    let rt = rt();
    let mut watch = store.new_message_notifier();
    let mut arrivals = store.subscribe_arrivals();
    rt.block_on(async {
        let s = store.clone();
        let h = tokio::spawn(async move { s.put_message(msg("N", 3, b"x")).await });
        watch.changed().await.unwrap();
        assert!(*watch.borrow() > 0);
        let a = arrivals.recv().await.unwrap();
        assert_eq!((&*a.topic, a.queue_id, a.max_offset), ("N", 3, 1));
        assert!(h.await.unwrap().is_ok());
    });
    // Appends made while nobody watches are not lost to a later watcher.
    drop(watch);
    assert!(rt.block_on(store.put_message(msg("N", 3, b"y"))).is_ok());
    let late = store.new_message_notifier();
    assert_eq!(*late.borrow(), store.commitlog_max_offset());
    assert!(
        !late.has_changed().unwrap(),
        "starts with the current value seen"
    );
}

#[test]
fn sync_flush_acknowledges_durable_appends_with_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path());
    cfg.flush = FlushDiskType::Sync;
    cfg.background_services = true;
    let store = open(cfg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..16 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut ends = Vec::new();
                for i in 0..20 {
                    let r = s
                        .put_message(msg("S", w % 4, format!("{w}-{i}").as_bytes()))
                        .await;
                    assert_eq!(r.status, PutStatus::PutOk);
                    let rp = r.append.unwrap().records[0];
                    ends.push(rp.phys_offset + i64::from(rp.size));
                }
                ends
            }));
        }
        for t in tasks {
            for end in t.await.unwrap() {
                assert!(store.flushed_offset() >= end);
            }
        }
    });
    let total: i64 = (0..4).map(|q| store.max_offset_in_queue("S", q)).sum();
    assert_eq!(total, 320);
    // WAIT=false returns without waiting for the flush.
    let r = rt.block_on(store.put_message(msg("S", 0, b"nowait").with_property("WAIT", "false")));
    assert_eq!(r.status, PutStatus::PutOk);
    store.shutdown().unwrap();
}

#[test]
fn clean_restart_keeps_everything_and_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(small_config(dir.path()));
    let rt = rt();
    for i in 0..150 {
        rt.block_on(store.put_message(msg("R", i % 3, &vec![i as u8; 500])));
    }
    let max = store.commitlog_max_offset();
    store.shutdown().unwrap();
    assert!(!dir.path().join("abort").exists());
    drop(store);
    let store = open(small_config(dir.path()));
    assert!(dir.path().join("abort").exists());
    assert_eq!(store.commitlog_max_offset(), max);
    assert_eq!(store.max_offset_in_queue("R", 0), 50);
    let r = rt.block_on(store.put_message(msg("R", 0, b"after")));
    assert_eq!(r.append.unwrap().logical_offset, 50);
    let text = std::fs::read_to_string(dir.path().join("FORMAT")).unwrap();
    assert!(text.contains("version=1"));
}

#[test]
fn newer_format_and_double_open_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(small_config(dir.path()));
    let e = MessageStore::open(small_config(dir.path())).unwrap_err();
    assert_eq!(e.code(), "STORE_LOCKED");
    store.shutdown().unwrap();
    drop(store);
    std::fs::write(
        dir.path().join("FORMAT"),
        "format=flotilla-message-store\nversion=2\n",
    )
    .unwrap();
    let e = MessageStore::open(small_config(dir.path())).unwrap_err();
    assert_eq!(e.code(), "STORE_UNSUPPORTED_FORMAT");
    assert!(e.to_string().contains("version 2"));
}

#[test]
fn delete_topic_removes_its_queues() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(small_config(dir.path()));
    let rt = rt();
    rt.block_on(store.put_message(msg("Gone", 0, b"x")));
    rt.block_on(store.put_message(msg("Kept", 0, b"y")));
    store.delete_topic("Gone").unwrap();
    store.delete_topic("../etc").unwrap();
    assert!(!dir.path().join("consumequeue/Gone").exists());
    assert_eq!(
        store.get_message("Gone", 0, 0, 1, 1024, &all).status,
        GetStatus::NoMatchedLogicQueue
    );
    assert_eq!(store.topics(), vec!["Kept".to_string()]);
    // Re-creating the topic starts at queue offset 0.
    let r = rt.block_on(store.put_message(msg("Gone", 0, b"again")));
    assert_eq!(r.append.unwrap().logical_offset, 0);
}

#[test]
fn replication_hooks_copy_the_log_byte_for_byte() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(small_config(d1.path()));
    let slave = open(small_config(d2.path()));
    let rt = rt();
    for i in 0..120 {
        let m = msg("H", i % 2, &vec![i as u8; 900]).with_property("KEYS", &format!("k{i}"));
        rt.block_on(master.put_message(m));
    }
    // Ship in odd-sized chunks so records and blank markers are split across calls.
    let mut pos = 0;
    for _ in 0..10_000 {
        let Some(chunk) = master.read_raw(pos, 1_777) else {
            break;
        };
        assert_eq!(slave.append_raw(pos, &chunk).unwrap(), chunk.len());
        pos += chunk.len() as i64;
    }
    assert_eq!(pos, master.commitlog_max_offset());
    assert_eq!(slave.commitlog_max_offset(), pos);
    assert_eq!(slave.dispatched_offset(), pos);
    for q in 0..2 {
        assert_eq!(slave.max_offset_in_queue("H", q), 60);
        let a = master.get_message("H", q, 0, 100, 1 << 24, &all);
        let b = slave.get_message("H", q, 0, 100, 1 << 24, &all);
        assert_eq!(a.messages, b.messages);
    }
    assert_eq!(
        slave.query_message("H", "k77", 5, 0, i64::MAX, false).len(),
        1
    );
    for f in std::fs::read_dir(d1.path().join("commitlog")).unwrap() {
        let f = f.unwrap();
        let other = std::fs::read(d2.path().join("commitlog").join(f.file_name())).unwrap();
        assert!(
            std::fs::read(f.path()).unwrap() == other,
            "file {:?} differs",
            f.file_name()
        );
    }
    // Wrong offset, and corrupt data, are refused.
    assert_eq!(
        slave.append_raw(pos + 1, b"x").unwrap_err().code(),
        "STORE_OFFSET_MISMATCH"
    );
    let mut bad = master.read_raw(0, 2000).unwrap().to_vec();
    bad[100] ^= 0xFF; // inside the body of the first record: CRC mismatch
    let before = slave.commitlog_max_offset();
    let garbage = {
        // A record claiming to be at `before` but with a broken body.
        let rec_len = codec::peek_header(&bad).unwrap().0 as usize;
        let mut r = bad[..rec_len].to_vec();
        r[28..36].copy_from_slice(&before.to_be_bytes());
        r
    };
    let e = slave.append_raw(before, &garbage).unwrap_err();
    assert_eq!(e.code(), "STORE_INVALID_RAW_DATA");
    assert_eq!(slave.commitlog_max_offset(), before);

    // Truncation removes records, queue entries and index entries past the offset.
    let cut = master.commitlog_offset_in_queue("H", 0, 30).unwrap();
    slave.truncate_to(cut).unwrap();
    assert_eq!(slave.commitlog_max_offset(), cut);
    assert_eq!(slave.max_offset_in_queue("H", 0), 30);
    assert_eq!(slave.max_offset_in_queue("H", 1), 30);
    assert!(
        slave
            .query_message("H", "k77", 5, 0, i64::MAX, false)
            .is_empty()
    );
    assert_eq!(
        slave.query_message("H", "k59", 5, 0, i64::MAX, false).len(),
        1
    );
    assert_eq!(
        slave.truncate_to(cut + 3).unwrap_err().code(),
        "STORE_BAD_TRUNCATE_OFFSET"
    );
    // And replication resumes from there.
    let mut pos = cut;
    for _ in 0..10_000 {
        let Some(chunk) = master.read_raw(pos, 4096) else {
            break;
        };
        slave.append_raw(pos, &chunk).unwrap();
        pos += chunk.len() as i64;
    }
    assert_eq!(slave.max_offset_in_queue("H", 0), 60);
    let slave_arc = Arc::new(slave);
    assert_eq!(
        slave_arc.get_message("H", 1, 59, 1, 1 << 20, &all).messages,
        master.get_message("H", 1, 59, 1, 1 << 20, &all).messages
    );
}

#[test]
fn bounded_reads_stop_at_the_confirm_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(small_config(dir.path()));
    let rt = rt();
    let mut ends = Vec::new();
    for i in 0..5 {
        let r = rt.block_on(store.put_message(msg("T", 0, format!("m{i}").as_bytes())));
        let a = r.append.unwrap();
        ends.push(a.wrote_offset + a.wrote_bytes as i64);
    }
    // Unbounded: everything.
    assert_eq!(store.max_offset_in_queue_below("T", 0, i64::MAX), 5);
    // Bound inside record 3: records 0..=2 are visible.
    let bound = ends[2] + 1;
    assert_eq!(store.max_offset_in_queue_below("T", 0, bound), 3);
    assert_eq!(store.max_offset_in_queue_below("T", 0, ends[2]), 3);
    assert_eq!(store.max_offset_in_queue_below("T", 0, 0), 0);
    assert_eq!(store.max_offset_in_queue_below("T", 0, ends[4]), 5);
    let g = store.get_message_below("T", 0, 0, 32, 1 << 20, &all, bound);
    assert_eq!(g.status, GetStatus::Found);
    assert_eq!(g.messages.len(), 3);
    assert_eq!((g.next_begin_offset, g.max_offset), (3, 3));
    let g = store.get_message_below("T", 0, 3, 32, 1 << 20, &all, bound);
    assert_eq!(g.status, GetStatus::OffsetOverflowOne);
    assert_eq!(g.next_begin_offset, 3);
    let g = store.get_message_below("T", 0, 0, 32, 1 << 20, &all, 0);
    assert_eq!(g.status, GetStatus::NoMessageInQueue);

    // Strict confirm offset: unset means nothing is confirmed.
    assert_eq!(store.confirm_offset(), ends[4]);
    store.set_confirm_strict(true);
    assert_eq!(store.confirm_offset(), 0);
    store.set_confirm_offset(ends[1]);
    assert_eq!(store.confirm_offset(), ends[1]);
}

#[test]
fn warm_up_thread_running_ahead_leaves_records_exact_across_files() {
    // Files large enough for the background warm-up thread (>= 16 MiB) and background
    // services on, so it pre-faults ahead of the writer while records roll across files.
    let dir = tempfile::tempdir().unwrap();
    let cfg = background_config(dir.path());
    let store = open(cfg.clone());
    let body: Vec<u8> = (0..4000u32).map(|i| (i % 253) as u8).collect();
    let ends = fill(&store, "Warm", 40, &body);
    assert!(
        store.commitlog_max_offset() > 2 * (16 << 20),
        "rolled into a third file"
    );
    assert_queue_exact(&store, "Warm", ends, &body);
    store.shutdown().unwrap();
    drop(store);
    let store = open(cfg);
    assert_eq!(store.max_offset_in_queue("Warm", 0), ends);
    assert_queue_exact(&store, "Warm", ends, &body);
    store.shutdown().unwrap();
}

/// Files large enough (16 MiB) for the background warm-up thread, with the background
/// flush, checkpoint and retention threads running.
fn background_config(root: &std::path::Path) -> StoreConfig {
    let mut cfg = small_config(root);
    cfg.commitlog_file_size = 16 << 20;
    cfg.cq_entries_per_file = 100_000;
    cfg.background_services = true;
    cfg
}

/// Reads queue 0 of `topic` from the start and checks that all `n` records are there, in
/// order, each with exactly `body`.
fn assert_queue_exact(store: &MessageStore, topic: &str, n: i64, body: &[u8]) {
    let mut q = 0;
    while q < n {
        let g = store.get_message(topic, 0, q, 32, 1 << 20, &all);
        assert_eq!(g.status, GetStatus::Found);
        for (raw, qo) in g.messages.iter().zip(&g.queue_offsets) {
            let d = decode_record(raw, true).unwrap();
            assert_eq!((d.body, d.queue_offset), (body, *qo));
        }
        q = g.next_begin_offset;
    }
}

/// Appends about `mib` MiB of `body` records to queue 0 of `topic`, in batches of 16;
/// returns how many.
fn fill(store: &MessageStore, topic: &str, mib: usize, body: &[u8]) -> i64 {
    let rt = rt();
    let mut n = 0;
    for _ in 0..(mib << 20) / (body.len() * 16) {
        let batch = (0..16).map(|_| msg(topic, 0, body)).collect();
        let r = rt.block_on(store.put_messages(batch));
        assert_eq!(r.status, PutStatus::PutOk);
        n += r.append.unwrap().count as i64;
    }
    n
}

/// Waits (bounded) until the page cache of CommitLog `[0, below)` holds at most `max` bytes;
/// returns what it held last.
fn resident_settles(store: &MessageStore, below: i64, max: u64) -> Option<u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let rt = rt();
    loop {
        let r = store.commitlog_resident_bytes(0, below)?;
        if r <= max || std::time::Instant::now() > deadline {
            return Some(r);
        }
        // The flusher releases on its own schedule; poll it, bounded by the deadline.
        rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(20)).await });
    }
}

#[test]
fn page_cache_window_releases_flushed_pages_behind_and_keeps_every_record() {
    let body: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let window = 16u64 << 20;
    // Control: without a window every written page stays cached (this test's premise).
    {
        let dir = tempfile::tempdir().unwrap();
        let store = open(background_config(dir.path()));
        fill(&store, "Cache", 48, &body);
        store.flush().unwrap();
        let Some(r) = store.commitlog_resident_bytes(0, 16 << 20) else {
            return; // no mincore here: nothing to observe
        };
        assert!(
            r > 8 << 20,
            "unbounded: the first file stays cached ({r} bytes)"
        );
        store.shutdown().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = background_config(dir.path());
    cfg.page_cache_window = Some(window);
    let store = open(cfg.clone());
    let n = fill(&store, "Cache", 48, &body);
    let max = store.commitlog_max_offset();
    // The flusher flushes on its own (ASYNC_FLUSH), then releases what is more than the
    // window behind; 4 MiB of slack for its step size.
    let below = max - window as i64 - (4 << 20);
    let left = resident_settles(&store, below, 0).unwrap();
    assert_eq!(left, 0, "pages more than the window behind are released");
    // The window itself stays cached for readers close behind the producers.
    assert!(
        store
            .commitlog_resident_bytes(max - (8 << 20), max)
            .unwrap()
            > 0
    );
    // Released pages read back from disk unchanged, through the normal read path.
    assert_queue_exact(&store, "Cache", n, &body);
    store.shutdown().unwrap();
    drop(store);
    let store = open(cfg);
    assert_eq!(store.max_offset_in_queue("Cache", 0), n);
    store.shutdown().unwrap();
}

#[test]
fn page_cache_window_below_minimum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path());
    cfg.page_cache_window = Some(1 << 20);
    let err = MessageStore::open(cfg).unwrap_err();
    assert_eq!(err.code(), "STORE_INVALID_CONFIG", "{err}");
}

//! Crash safety on real processes and real files.
//!
//! `sigkill_during_sync_flush_appends_loses_nothing_acknowledged` re-executes this test binary
//! as a child (`crash_child`, enabled by an environment variable) that appends with
//! SYNC_FLUSH from several tasks and prints every acknowledged record on stdout. The parent
//! SIGKILLs it after a random number of acknowledgements, recovers the store, and checks that
//! every acknowledged record is present and intact, that the whole CommitLog is a valid chain
//! of records (no torn record visible), and that appending continues.
//!
//! SIGKILL keeps the page cache, so these tests prove recovery, not SYNC_FLUSH durability:
//! `tests/tests/broker_durability.rs` checks that, by tracing the broker's `msync` calls
//! against the moment each acknowledgement leaves.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a location

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use flotilla_message_store::codec::{self, decode_record};
use flotilla_message_store::{FlushDiskType, GetStatus, MessageStore, PutStatus, StoreConfig};
use rand::Rng;

const CHILD_ENV: &str = "FLOTILLA_STORE_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "FLOTILLA_STORE_CRASH_ROUND";
const TOPIC: &str = "Crash";

fn crash_config(root: &Path) -> StoreConfig {
    let mut cfg = small_config(root);
    cfg.flush = FlushDiskType::Sync;
    cfg.background_services = true;
    cfg
}

fn body(round: u32, seq: u64) -> Vec<u8> {
    let mut b = format!("r{round}s{seq}|").into_bytes();
    let fill = (seq as usize * 373 + round as usize * 101) % 2500;
    b.extend(std::iter::repeat_n(b'a' + (seq % 26) as u8, fill));
    b
}

/// The child: append until killed (bounded), printing `ACK round seq phys qid qoff size`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u32 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let store = MessageStore::open(crash_config(Path::new(&dir))).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..5_000u64 {
                    let seq = i * 4 + w;
                    let qid = (seq % 3) as i32;
                    let m = msg(TOPIC, qid, &body(round, seq))
                        .with_property("KEYS", &format!("r{round}s{seq}"));
                    let r = s.put_message(m).await;
                    assert_eq!(r.status, PutStatus::PutOk);
                    let rp = r.append.unwrap().records[0];
                    println!(
                        "ACK {round} {seq} {} {qid} {} {}",
                        rp.phys_offset, rp.queue_offset, rp.size
                    );
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    round: u32,
    seq: u64,
    phys: i64,
    qid: i32,
    qoff: i64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut it = line.strip_prefix("ACK ")?.split(' ');
    Some(Ack {
        round: it.next()?.parse().ok()?,
        seq: it.next()?.parse().ok()?,
        phys: it.next()?.parse().ok()?,
        qid: it.next()?.parse().ok()?,
        qoff: it.next()?.parse().ok()?,
    })
}

/// Walks the whole CommitLog from its minimum: every position must hold a valid record (CRC
/// checked) or a blank marker, ending exactly at the max offset.
fn check_log_chain(store: &MessageStore, file_size: i64) -> usize {
    let (mut pos, max) = (store.commitlog_min_offset(), store.commitlog_max_offset());
    let mut n = 0;
    while pos < max {
        let head = store.read_raw(pos, 8).expect("header readable");
        let (size, magic) = codec::peek_header(&head).unwrap();
        if magic == codec::BLANK_MAGIC {
            assert_eq!(
                (pos + i64::from(size)) % file_size,
                0,
                "blank marker at {pos}"
            );
            pos += i64::from(size);
            continue;
        }
        let rec = store
            .look_message_by_offset(pos)
            .unwrap_or_else(|| panic!("record at {pos}"));
        let d = decode_record(&rec, true).unwrap();
        assert_eq!(d.phys_offset, pos);
        pos += i64::from(size);
        n += 1;
    }
    assert_eq!(pos, max);
    n
}

fn verify(store: &MessageStore, acks: &[Ack]) {
    for a in acks {
        let raw = store
            .look_message_by_offset(a.phys)
            .unwrap_or_else(|| panic!("acknowledged record {a:?} missing"));
        let d = decode_record(&raw, true).unwrap();
        assert_eq!(d.body, body(a.round, a.seq).as_slice(), "{a:?}");
        assert_eq!((d.queue_id, d.queue_offset), (a.qid, a.qoff));
        let g = store.get_message(TOPIC, a.qid, a.qoff, 1, 1 << 20, &|_| true);
        assert_eq!(g.status, GetStatus::Found, "{a:?}");
        assert_eq!(g.messages[0], raw);
    }
    // Every queue entry points at an intact record with the right queue offset.
    for qid in 0..3 {
        let mut off = store.min_offset_in_queue(TOPIC, qid);
        let max = store.max_offset_in_queue(TOPIC, qid);
        for _ in 0..100_000 {
            if off >= max {
                break;
            }
            let g = store.get_message(TOPIC, qid, off, 64, 1 << 24, &|_| true);
            assert_eq!(g.status, GetStatus::Found);
            for (m, q) in g.messages.iter().zip(&g.queue_offsets) {
                let d = decode_record(m, true).unwrap();
                assert_eq!((d.queue_id, d.queue_offset), (qid, *q));
            }
            off = g.next_begin_offset;
        }
        assert_eq!(off, max);
    }
}

#[test]
fn sigkill_during_sync_flush_appends_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut acks: Vec<Ack> = Vec::new();
    let file_size = small_config(dir.path()).commitlog_file_size as i64;
    let rt = rt();
    for round in 0..6u32 {
        let kill_after = rng.random_range(1..150usize);
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0usize;
        let mut line = String::new();
        while seen < kill_after {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(a) = parse_ack(line.trim_end()) {
                acks.push(a);
                seen += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        // Acknowledgements printed before the kill are still in the pipe.
        for l in out.lines() {
            let Ok(l) = l else { break };
            if let Some(a) = parse_ack(&l) {
                acks.push(a);
            }
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "child was killed");
        assert!(
            dir.path().join("abort").exists(),
            "crash leaves the abort file"
        );

        let store = MessageStore::open(crash_config(dir.path())).unwrap();
        verify(&store, &acks);
        let records = check_log_chain(&store, file_size);
        assert!(records >= acks.len());
        // Appending continues where the recovered queue ends.
        let before = store.max_offset_in_queue(TOPIC, 0);
        let r = rt.block_on(store.put_message(msg(TOPIC, 0, b"after-recovery")));
        assert_eq!(r.status, PutStatus::PutOk);
        assert_eq!(r.append.unwrap().logical_offset, before);
        if round % 2 == 0 {
            store.shutdown().unwrap();
        }
        drop(store);
    }
    let by_round: BTreeMap<u32, usize> = acks.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.round).or_default() += 1;
        m
    });
    assert_eq!(
        by_round.len(),
        6,
        "every round acknowledged something: {by_round:?}"
    );
}

fn write_at(path: &Path, pos: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, pos).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn corruption_in_last_file_truncates_there() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let file_size = cfg.commitlog_file_size as i64;
    let store = open(cfg);
    let rt = rt();
    let mut recs = Vec::new();
    for i in 0..300u64 {
        let m = msg("Cor", (i % 2) as i32, &body(0, i)).with_property("KEYS", &format!("k{i}"));
        let r = rt.block_on(store.put_message(m));
        recs.push(r.append.unwrap().records[0]);
    }
    store.flush().unwrap();
    store.checkpoint().unwrap();
    drop(store); // crash: the abort file stays
    let last_start = recs.last().unwrap().phys_offset / file_size * file_size;
    let in_last: Vec<usize> = (0..recs.len())
        .filter(|i| recs[*i].phys_offset >= last_start)
        .collect();
    assert!(in_last.len() >= 3, "need several records in the last file");
    let k = in_last[in_last.len() / 2];
    let victim = recs[k];
    let path = dir
        .path()
        .join("commitlog")
        .join(format!("{last_start:020}"));
    // Flip a byte in the middle of the victim's body.
    let pos = (victim.phys_offset - last_start) as u64 + u64::from(victim.size as u32) / 2;
    let mut b = [0u8; 1];
    {
        use std::os::unix::fs::FileExt;
        std::fs::File::open(&path)
            .unwrap()
            .read_exact_at(&mut b, pos)
            .unwrap();
    }
    write_at(&path, pos, &[b[0] ^ 0x5A]);

    let store = open(small_config(dir.path()));
    assert_eq!(store.commitlog_max_offset(), victim.phys_offset);
    for (i, r) in recs.iter().enumerate() {
        let got = store.look_message_by_offset(r.phys_offset);
        assert_eq!(got.is_some(), i < k, "record {i}");
    }
    // Queues and index were cut to match.
    for q in 0..2 {
        let expected = (0..k).filter(|i| i % 2 == q).count() as i64;
        assert_eq!(store.max_offset_in_queue("Cor", q as i32), expected);
    }
    assert_eq!(
        store
            .query_message("Cor", &format!("k{}", k - 1), 5, 0, i64::MAX, false)
            .len(),
        1
    );
    assert!(
        store
            .query_message("Cor", &format!("k{k}"), 5, 0, i64::MAX, false)
            .is_empty()
    );
    assert!(
        store
            .query_message("Cor", "k299", 5, 0, i64::MAX, false)
            .is_empty()
    );
    let q = (k % 2) as i32;
    let before = store.max_offset_in_queue("Cor", q);
    let r = rt.block_on(store.put_message(msg("Cor", q, b"again").with_property("KEYS", "k299")));
    assert_eq!(
        r.append.as_ref().unwrap().records[0].phys_offset,
        victim.phys_offset
    );
    assert_eq!(r.append.unwrap().logical_offset, before);
    assert_eq!(
        store
            .query_message("Cor", "k299", 5, 0, i64::MAX, false)
            .len(),
        1
    );
}

#[test]
fn torn_tail_record_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let file_size = cfg.commitlog_file_size as i64;
    let store = open(cfg);
    let rt = rt();
    for i in 0..10u64 {
        rt.block_on(store.put_message(msg("Torn", 0, &body(1, i))));
    }
    let end = store.commitlog_max_offset();
    // Half of a copy of the first record, written where the next record would go.
    let rec = store.look_message_by_offset(0).unwrap();
    drop(store);
    let start = end / file_size * file_size;
    let path = dir.path().join("commitlog").join(format!("{start:020}"));
    let mut torn = rec[..rec.len() / 2].to_vec();
    torn[28..36].copy_from_slice(&end.to_be_bytes());
    write_at(&path, (end - start) as u64, &torn);

    let store = open(small_config(dir.path()));
    assert_eq!(store.commitlog_max_offset(), end);
    assert_eq!(store.max_offset_in_queue("Torn", 0), 10);
    let r = rt.block_on(store.put_message(msg("Torn", 0, b"next")));
    assert_eq!(r.append.unwrap().records[0].phys_offset, end);
    let g = store.get_message("Torn", 0, 10, 1, 1 << 20, &|_| true);
    assert_eq!(decode_record(&g.messages[0], true).unwrap().body, b"next");
    store.shutdown().unwrap();
    drop(store);
    // After the clean shutdown the record survives a fast (checkpoint-trusting) start.
    let store = open(small_config(dir.path()));
    assert_eq!(store.max_offset_in_queue("Torn", 0), 11);
}

//! Property test: random batches on tiny CommitLog files (8 KiB, so records constantly hit
//! file boundaries) read back through the CommitLog, ConsumeQueues, the index and the
//! timestamp search — before and after a restart (clean or crash).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a location

mod common;

use std::collections::HashMap;

use common::*;
use flotilla_message_store::codec::{self, decode_record};
use flotilla_message_store::{Boundary, GetStatus, MessageStore, PutStatus, RecordPosition};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Batch {
    queue: i32,
    bodies: Vec<usize>,
    tag: Option<u8>,
    keyed: bool,
}

fn batch() -> impl Strategy<Value = Batch> {
    (
        0..3i32,
        prop::collection::vec(0..3000usize, 1..5),
        prop::option::of(0..3u8),
        any::<bool>(),
    )
        .prop_map(|(queue, bodies, tag, keyed)| Batch {
            queue,
            bodies,
            tag,
            keyed,
        })
}

#[derive(Debug, Clone)]
struct Expect {
    pos: RecordPosition,
    queue: i32,
    body: Vec<u8>,
    tag: Option<u8>,
    key: Option<String>,
    ts: i64,
}

fn check(store: &MessageStore, exp: &[Expect], file_size: i64) -> Result<(), TestCaseError> {
    let mut per_queue: HashMap<i32, Vec<&Expect>> = HashMap::new();
    for e in exp {
        per_queue.entry(e.queue).or_default().push(e);
        let start = e.pos.phys_offset;
        let end = start + i64::from(e.pos.size);
        prop_assert_eq!(
            start / file_size,
            (end - 1) / file_size,
            "record spans files"
        );
        let raw = store
            .look_message_by_offset(start)
            .expect("record readable");
        let d = decode_record(&raw, true).unwrap();
        prop_assert_eq!(d.body, e.body.as_slice());
        prop_assert_eq!(d.queue_offset, e.pos.queue_offset);
        prop_assert_eq!(d.store_timestamp, e.ts);
        if let Some(k) = &e.key {
            let hits = store.query_message("P", k, 10, e.ts, e.ts, false);
            prop_assert_eq!(hits.len(), 1);
            prop_assert_eq!(&hits[0], &raw);
        }
    }
    for (q, list) in &per_queue {
        prop_assert_eq!(store.max_offset_in_queue("P", *q), list.len() as i64);
        // Sequential read through the ConsumeQueue in small pulls.
        let mut off = 0i64;
        let mut got = Vec::new();
        for _ in 0..1000 {
            let g = store.get_message("P", *q, off, 3, 5000, &|_| true);
            if g.status != GetStatus::Found {
                prop_assert_eq!(g.status, GetStatus::OffsetOverflowOne);
                break;
            }
            got.extend(g.messages);
            off = g.next_begin_offset;
        }
        prop_assert_eq!(got.len(), list.len());
        for (raw, e) in got.iter().zip(list) {
            prop_assert_eq!(decode_record(raw, true).unwrap().body, e.body.as_slice());
        }
        // Tag filtering.
        let want = codec::tags_code(Some("tag1"));
        let g = store.get_message("P", *q, 0, 1000, 1 << 24, &|t| t == want);
        let n = list.iter().filter(|e| e.tag == Some(1)).count();
        prop_assert_eq!(g.messages.len(), n);
        // Time search agrees with a linear scan.
        for e in list.iter().step_by(3) {
            let lower = list.iter().position(|x| x.ts >= e.ts).unwrap() as i64;
            let upper = list.iter().rposition(|x| x.ts <= e.ts).unwrap() as i64;
            prop_assert_eq!(store.offset_by_time("P", *q, e.ts, Boundary::Lower), lower);
            prop_assert_eq!(store.offset_by_time("P", *q, e.ts, Boundary::Upper), upper);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_read_back(batches in prop::collection::vec(batch(), 1..40), crash in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new(1_000_000);
        let mut cfg = small_config(dir.path());
        cfg.commitlog_file_size = 8 * 1024;
        cfg.cq_entries_per_file = 8;
        cfg.index_entries_per_file = 8;
        cfg.max_message_size = 4096;
        cfg.clock = clock.clone();
        let file_size = cfg.commitlog_file_size as i64;
        let store = open(cfg.clone());
        let rt = rt();
        let mut exp = Vec::new();
        let mut n = 0u64;
        for b in &batches {
            // Several batches share a timestamp, so equal-time runs are exercised.
            clock.advance(if n.is_multiple_of(2) { 0 } else { 7 });
            let mut msgs = Vec::new();
            let mut meta = Vec::new();
            for len in &b.bodies {
                n += 1;
                let body: Vec<u8> = (0..*len).map(|i| (i as u64 * 31 + n) as u8).collect();
                let mut m = msg("P", b.queue, &body);
                if let Some(t) = b.tag {
                    m = m.with_property("TAGS", &format!("tag{t}"));
                }
                let key = b.keyed.then(|| format!("key{n}"));
                if let Some(k) = &key {
                    m = m.with_property("KEYS", &format!("{k} shared"));
                }
                msgs.push(m);
                meta.push((body, key));
            }
            let r = rt.block_on(store.put_messages(msgs));
            prop_assert_eq!(r.status, PutStatus::PutOk);
            let a = r.append.unwrap();
            for (pos, (body, key)) in a.records.iter().zip(meta) {
                exp.push(Expect { pos: *pos, queue: b.queue, body, tag: b.tag, key, ts: a.store_timestamp });
            }
        }
        check(&store, &exp, file_size)?;
        if !crash {
            store.shutdown().unwrap();
        }
        drop(store);
        let store = open(cfg);
        check(&store, &exp, file_size)?;
    }
}

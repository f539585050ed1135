//! A follower's handling of appends, with the test as the leader.
//!
//! One real member (`n0`: real store, real listener) whose two peers are unreachable, so it
//! can never win an election; the test speaks the peer protocol to it as `n1`, the leader of
//! term 1 (and later as `n2`, the leader of term 2), with CommitLog bytes taken from real
//! stores the test fills itself. Raft's rule under test: a follower deletes entries only on a
//! real conflict — a different term at the same offset — never because an append is stale
//! or repeated. Such appends arrive whenever an RPC times out and the leader re-probes, or a
//! request on an old connection is processed after a newer one; truncating then would drop
//! bytes the leader may already have counted toward the commit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a location

mod support;

use std::time::Duration;

use bytes::Bytes;
use flotilla_dledger::transport::PeerClient;
use flotilla_dledger::wire::{AppendOutcome, Request, Response};
use flotilla_dledger::{DLedger, DLedgerConfig, Epoch, Peer};
use flotilla_message_store::{MessageInner, MessageStore, PutStatus};
use support::{dump, open_store, tune, wait_until};
use tokio::net::TcpListener;

const FILE: u64 = 64 * 1024;
const GROUP: &str = "RaftNode00";

/// A loopback address nothing listens on (bound, then released).
async fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

struct Follower {
    _dir: tempfile::TempDir,
    store: MessageStore,
    dl: DLedger,
    client: PeerClient,
}

async fn follower() -> Follower {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("store"), FILE);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peers = vec![
        Peer {
            id: "n0".into(),
            addr: addr.clone(),
        },
        Peer {
            id: "n1".into(),
            addr: dead_addr().await,
        },
        Peer {
            id: "n2".into(),
            addr: dead_addr().await,
        },
    ];
    let mut cfg = DLedgerConfig::new(GROUP, "n0", peers, dir.path().join("dl"));
    tune(&mut cfg);
    let dl = DLedger::start_with_listener(cfg, store.clone(), listener).unwrap();
    let client = PeerClient::new(
        GROUP,
        Peer {
            id: "n0".into(),
            addr,
        },
        Duration::from_secs(5),
    );
    Follower {
        _dir: dir,
        store,
        dl,
        client,
    }
}

/// A leader's log: a store filled with `bodies` (one message each), and the log end after
/// each.
async fn leader_log(bodies: &[String]) -> (tempfile::TempDir, MessageStore, Vec<i64>) {
    leader_log_after(None, bodies).await
}

/// A leader's log that starts with `prefix`'s bytes up to an offset (a later term's leader
/// holding an earlier term's bytes), then `bodies`.
async fn leader_log_after(
    prefix: Option<(&MessageStore, i64)>,
    bodies: &[String],
) -> (tempfile::TempDir, MessageStore, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("store"), FILE);
    if let Some((from, upto)) = prefix {
        store.append_raw(0, &bytes(from, 0, upto)).unwrap();
    }
    let mut ends = vec![store.commitlog_max_offset()];
    for b in bodies {
        let r = store
            .put_message(MessageInner::new("TopicTest", 0, b.as_bytes().to_vec()))
            .await;
        assert_eq!(r.status, PutStatus::PutOk);
        ends.push(store.commitlog_max_offset());
    }
    (dir, store, ends)
}

fn bytes(store: &MessageStore, from: i64, to: i64) -> Bytes {
    let b = store
        .read_raw(from, usize::try_from(to - from).unwrap())
        .unwrap();
    assert_eq!(b.len() as i64, to - from, "one read within a segment");
    b
}

#[allow(clippy::too_many_arguments)]
async fn append(
    f: &Follower,
    term: u64,
    leader: &str,
    prev_offset: i64,
    prev_term: u64,
    epochs: Vec<Epoch>,
    commit: i64,
    data: Bytes,
) -> AppendOutcome {
    let req = Request::Append {
        term,
        leader: leader.to_string(),
        prev_offset,
        prev_term,
        epochs,
        commit,
        data,
    };
    match f.client.call(&req).await.expect("the follower answers") {
        Response::Append { outcome, .. } => outcome,
        other => panic!("unexpected answer {other:?}"),
    }
}

fn ep(term: u64, start: i64) -> Epoch {
    Epoch { term, start }
}

fn bodies(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag}-{i}-{}", "b".repeat(200)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_or_repeated_appends_never_truncate_matching_bytes() {
    let f = follower().await;
    // Term 1's leader log: 12 messages; the follower gets them in three appends.
    let (_d1, l1, e) = leader_log(&bodies("t1", 12)).await;
    let (a, b, c) = (e[4], e[8], e[12]);
    let first = || bytes(&l1, 0, a);
    let ok = |end| AppendOutcome::Ok { end };

    assert_eq!(
        append(&f, 1, "n1", 0, 0, vec![ep(1, 0)], 0, first()).await,
        ok(a)
    );
    assert_eq!(
        append(&f, 1, "n1", a, 1, vec![], 0, bytes(&l1, a, b)).await,
        ok(b)
    );
    assert_eq!(
        append(&f, 1, "n1", b, 1, vec![], a, bytes(&l1, b, c)).await,
        ok(c)
    );
    assert_eq!(f.store.commitlog_max_offset(), c);
    let held = dump(&f.store);
    assert_eq!(held, dump(&l1));

    // Repeats and stale copies of earlier appends, as a retry or an old connection delivers
    // them after newer ones: each is acknowledged up to its own end, and nothing is cut.
    let stale = [
        (a, 1, vec![], bytes(&l1, a, b)),           // the middle one again
        (0, 0, vec![ep(1, 0)], first()),            // the very first append again
        (a, 1, vec![], Bytes::new()),               // an old heartbeat probing at `a`
        (b, 1, vec![], bytes(&l1, b, e[10])),       // a shorter copy of the last one
        (e[9], 1, vec![], bytes(&l1, e[9], e[11])), // overlapping, inside the held bytes
    ];
    for (prev, prev_term, epochs, data) in stale {
        let to = prev + data.len() as i64;
        let got = append(&f, 1, "n1", prev, prev_term, epochs, a, data).await;
        assert_eq!(got, ok(to), "stale append at {prev}..{to}");
        assert_eq!(
            f.store.commitlog_max_offset(),
            c,
            "a stale append at {prev}..{to} kept every matching byte"
        );
        assert_eq!(dump(&f.store), held);
    }
    assert_eq!(f.dl.epochs(), vec![ep(1, 0)]);
    // The commit it learns never goes backwards, nor past what the append verified.
    assert_eq!(f.dl.commit_offset(), a);

    // An append that overlaps the held bytes and extends them: only the new part is written.
    let (_d1b, l1b, e2) = leader_log_after(Some((&l1, c)), &bodies("t1-more", 2)).await;
    let d = e2[2];
    assert_eq!(
        append(&f, 1, "n1", b, 1, vec![], b, bytes(&l1b, b, d)).await,
        ok(d)
    );
    assert_eq!(f.store.commitlog_max_offset(), d);
    assert_eq!(dump(&f.store), dump(&l1b));
    wait_until(
        "the follower learns the commit",
        Duration::from_secs(5),
        || f.dl.commit_offset() == b,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_conflict_truncates_at_the_first_differing_term() {
    let f = follower().await;
    // Term 1 wrote 8 messages; only the first 4 were committed before its leader died.
    let (_d1, l1, e) = leader_log(&bodies("t1", 8)).await;
    let (a, c) = (e[4], e[8]);
    assert_eq!(
        append(&f, 1, "n1", 0, 0, vec![ep(1, 0)], 0, bytes(&l1, 0, c)).await,
        AppendOutcome::Ok { end: c }
    );
    assert_eq!(
        append(&f, 1, "n1", c, 1, vec![], a, Bytes::new()).await,
        AppendOutcome::Ok { end: c }
    );
    // Term 2's leader held only the first 4 of them, and wrote its own from there.
    let (_d2, l2, e2) = leader_log_after(Some((&l1, a)), &bodies("t2-other", 3)).await;
    assert_eq!(e2[0], a);
    let d = e2[3];
    assert_ne!(
        bytes(&l2, a, e2[1]),
        bytes(&l1, a, e[5]),
        "the logs differ from `a` on"
    );

    // A stale heartbeat of the new leader at `a`, carrying its epoch: the bytes from `a` on
    // are term 1 here, term 2 there — a real conflict, cut exactly there.
    assert_eq!(
        append(&f, 2, "n2", a, 1, vec![ep(2, a)], a, Bytes::new()).await,
        AppendOutcome::Ok { end: a }
    );
    assert_eq!(f.store.commitlog_max_offset(), a);
    assert_eq!(f.dl.epochs(), vec![ep(1, 0), ep(2, a)]);
    // Then the new leader's bytes, and a repeat of them that changes nothing.
    for _ in 0..2 {
        assert_eq!(
            append(&f, 2, "n2", a, 1, vec![ep(2, a)], a, bytes(&l2, a, d)).await,
            AppendOutcome::Ok { end: d }
        );
        assert_eq!(f.store.commitlog_max_offset(), d);
        assert_eq!(dump(&f.store), dump(&l2));
    }
    assert_eq!(f.dl.epochs(), vec![ep(1, 0), ep(2, a)]);

    // The same conflict met by a data append that starts before it: the matching prefix is
    // kept, the cut is at the epoch boundary, not at the append's start.
    let g = follower().await;
    assert_eq!(
        append(&g, 1, "n1", 0, 0, vec![ep(1, 0)], 0, bytes(&l1, 0, c)).await,
        AppendOutcome::Ok { end: c }
    );
    let from = e[2];
    assert_eq!(
        append(&g, 2, "n2", from, 1, vec![ep(2, a)], 0, bytes(&l2, from, d)).await,
        AppendOutcome::Ok { end: d }
    );
    assert_eq!(dump(&g.store), dump(&l2));
    assert_eq!(g.dl.epochs(), vec![ep(1, 0), ep(2, a)]);
}

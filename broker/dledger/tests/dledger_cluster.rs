//! Three-member DLedger groups in one process: real stores on temp dirs, real loopback TCP,
//! a fault proxy on every link.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a location

mod support;

use std::time::Duration;

use flotilla_dledger::{CommitError, DLedger, DLedgerConfig, Peer, Role, TransferError};
use support::{Cluster, contains, dump, open_store, tune, wait_until};

const FILE: u64 = 64 * 1024;
const ELECT: Duration = Duration::from_secs(15);
const COMMIT: Duration = Duration::from_secs(5);

fn others(n: usize, not: usize) -> Vec<usize> {
    (0..n).filter(|&i| i != not).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_one_leader_and_replicates_byte_identically() {
    let c = Cluster::start(3, FILE).await;
    let all = [0, 1, 2];
    let l = c.wait_leader(&all, ELECT).await;
    assert!(c.dl(l).is_writable());
    let term = c.role_of(l).unwrap().term;
    for f in others(3, l) {
        assert!(!c.dl(f).is_writable());
        // Followers refuse to acknowledge and point at the leader.
        assert_eq!(
            c.dl(f).wait_committed(1, COMMIT).await,
            Err(CommitError::NotLeader {
                leader: Some(format!("n{l}"))
            })
        );
    }

    let end = c.put(l, "first", 40, 300).await;
    c.dl(l).wait_committed(end, COMMIT).await.unwrap();
    assert!(c.dl(l).commit_offset() >= end);
    assert!(c.store(l).confirm_offset() >= end);

    // Followers hold the same bytes, learn the commit offset and expose only committed data.
    for f in others(3, l) {
        let s = c.store(f);
        wait_until("follower catches up and learns the commit", COMMIT, || {
            s.commitlog_max_offset() == end && c.dl(f).commit_offset() >= end
        })
        .await;
        assert_eq!(s.confirm_offset(), end);
        assert_eq!(dump(s), dump(c.store(l)));
        assert_eq!(c.dl(f).epochs(), c.dl(l).epochs());
        // The follower's ConsumeQueues were built from the replicated records.
        assert_eq!(s.max_offset_in_queue("TopicTest", 0), 10);
    }
    assert_eq!(c.dl(l).epochs().last().unwrap().term, term);
    assert!(c.dl(l).change_membership(&[]).is_err());
    c.assert_one_leader_per_term();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_a_new_one_and_keeps_acknowledged_writes() {
    let mut c = Cluster::start(3, FILE).await;
    let old = c.wait_leader(&[0, 1, 2], ELECT).await;
    let old_term = c.role_of(old).unwrap().term;
    let acked = c.put(old, "before", 30, 500).await;
    c.dl(old).wait_committed(acked, COMMIT).await.unwrap();
    let acked_bytes = dump(c.store(old));

    c.kill(old).await;
    let rest = others(3, old);
    let new = c.wait_leader(&rest, ELECT).await;
    assert_ne!(new, old);
    assert!(c.role_of(new).unwrap().term > old_term);

    // The new leader holds every acknowledged byte (Raft's leader completeness); the other
    // survivor may have lagged, but catches up from it.
    let d = dump(c.store(new));
    assert!(d.len() >= acked_bytes.len());
    assert_eq!(&d[..acked_bytes.len()], &acked_bytes[..]);
    // The new leader takes writes with a majority of two.
    let end = c.put(new, "after", 20, 500).await;
    c.dl(new).wait_committed(end, COMMIT).await.unwrap();
    let f = rest.iter().copied().find(|&i| i != new).unwrap();
    wait_until("survivor follower catches up", COMMIT, || {
        c.store(f).commitlog_max_offset() == end
    })
    .await;
    let d = dump(c.store(f));
    assert_eq!(d, dump(c.store(new)));
    assert_eq!(&d[..acked_bytes.len()], &acked_bytes[..]);
    c.assert_one_leader_per_term();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_stops_acknowledging_and_truncates_on_heal() {
    let c = Cluster::start(3, FILE).await;
    let old = c.wait_leader(&[0, 1, 2], ELECT).await;
    let committed = c.put(old, "committed", 10, 200).await;
    c.dl(old).wait_committed(committed, COMMIT).await.unwrap();

    c.isolate(old);
    // Written on the cut-off leader: can never be acknowledged.
    let stray_end = c.put(old, "stray", 5, 200).await;
    let r = c.dl(old).wait_committed(stray_end, COMMIT).await;
    assert!(
        matches!(
            r,
            Err(CommitError::LeaseExpired) | Err(CommitError::NotLeader { .. })
        ),
        "{r:?}"
    );
    wait_until("old leader steps down after its lease", ELECT, || {
        c.role_of(old).unwrap().role != Role::Leader
    })
    .await;
    assert!(!c.dl(old).is_writable());

    let rest = others(3, old);
    let new = c.wait_leader(&rest, ELECT).await;
    let end = c.put(new, "new-leader", 10, 200).await;
    c.dl(new).wait_committed(end, COMMIT).await.unwrap();

    c.heal_all();
    let new_id = format!("n{new}");
    wait_until("old leader rejoins and matches the new log", ELECT, || {
        let r = c.role_of(old).unwrap();
        r.role == Role::Follower
            && r.leader_id.as_deref() == Some(new_id.as_str())
            && c.store(old).commitlog_max_offset() == end
            && dump(c.store(old)) == dump(c.store(new))
    })
    .await;
    let d = dump(c.store(old));
    assert!(
        !contains(&d, b"stray-0-"),
        "uncommitted suffix was not truncated"
    );
    assert!(contains(&d, b"new-leader-9-"));
    assert!(contains(&d, b"committed-9-"));
    assert_eq!(c.dl(old).epochs(), c.dl(new).epochs());
    c.assert_one_leader_per_term();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_across_commitlog_files() {
    let c = Cluster::start(3, FILE).await;
    let l = c.wait_leader(&[0, 1, 2], ELECT).await;
    let lagger = others(3, l)[0];
    c.isolate(lagger);
    let end = c.put(l, "bulk", 300, 1000).await;
    c.dl(l).wait_committed(end, COMMIT).await.unwrap();
    assert!(end > 4 * FILE as i64, "the log spans several files ({end})");
    assert_eq!(c.store(lagger).commitlog_max_offset(), 0);

    c.heal_all();
    wait_until("lagging follower catches up", ELECT, || {
        c.store(lagger).commitlog_max_offset() == end
    })
    .await;
    // Leadership may have moved while the lagger was cut off; compare with whoever leads.
    assert_eq!(dump(c.store(lagger)), dump(c.store(l)));
    let s = c.store(lagger);
    assert_eq!(
        (0..4)
            .map(|q| s.max_offset_in_queue("TopicTest", q))
            .sum::<i64>(),
        300
    );
    c.assert_one_leader_per_term();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfer_moves_the_master() {
    let c = Cluster::start(3, FILE).await;
    let l = c.wait_leader(&[0, 1, 2], ELECT).await;
    let end = c.put(l, "t", 5, 100).await;
    c.dl(l).wait_committed(end, COMMIT).await.unwrap();
    let target = others(3, l)[1];
    assert_eq!(
        c.dl(l)
            .transfer_leadership("n9", COMMIT)
            .await
            .unwrap_err()
            .code(),
        "DLEDGER_UNKNOWN_PEER"
    );
    assert!(matches!(
        c.dl(target)
            .transfer_leadership(&format!("n{l}"), COMMIT)
            .await,
        Err(TransferError::NotLeader { .. })
    ));
    c.dl(l)
        .transfer_leadership(&format!("n{target}"), ELECT)
        .await
        .unwrap();
    let now = c.wait_leader(&[0, 1, 2], ELECT).await;
    assert_eq!(now, target);
    let end2 = c.put(target, "t2", 5, 100).await;
    c.dl(target).wait_committed(end2, COMMIT).await.unwrap();
    c.assert_one_leader_per_term();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfer_reaches_a_target_that_restarted_since_the_election() {
    // The leader's vote connection to the target dates from the election; the target's
    // restart closed it. A rolling restart hands leadership to such a member: the first
    // TimeoutNow on the dead connection fails, and the transfer must dial anew, not wait
    // out its deadline.
    let mut c = Cluster::start(3, FILE).await;
    let l = c.wait_leader(&[0, 1, 2], ELECT).await;
    let target = others(3, l)[0];
    let end = c.put(l, "before", 5, 100).await;
    c.dl(l).wait_committed(end, COMMIT).await.unwrap();
    c.kill(target).await;
    c.restart(target, FILE).await;
    let end = c.put(l, "after", 5, 100).await;
    c.dl(l).wait_committed(end, COMMIT).await.unwrap();
    let s = c.store(target).clone();
    wait_until("the restarted member catches up", COMMIT, || {
        s.commitlog_max_offset() == end
    })
    .await;
    c.dl(l)
        .transfer_leadership(&format!("n{target}"), ELECT)
        .await
        .unwrap();
    assert_eq!(c.wait_leader(&[0, 1, 2], ELECT).await, target);
    c.assert_one_leader_per_term();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_member_group_commits_alone_and_keeps_term_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |listener_port: u16| {
        let mut cfg = DLedgerConfig::new(
            "solo",
            "n0",
            vec![Peer {
                id: "n0".into(),
                addr: format!("127.0.0.1:{listener_port}"),
            }],
            dir.path().join("dl"),
        );
        tune(&mut cfg);
        cfg
    };
    let store = open_store(&dir.path().join("store"), FILE);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dl = DLedger::start_with_listener(mk(port), store.clone(), listener).unwrap();
    let mut role = dl.role();
    wait_until("solo member leads", ELECT, || {
        role.borrow_and_update().role == Role::Leader
    })
    .await;
    let term = dl.role().borrow().term;
    let msg = flotilla_message_store::MessageInner::new("TopicSolo", 0, "hello");
    store.put_message(msg).await;
    let end = store.commitlog_max_offset();
    dl.wait_committed(end, COMMIT).await.unwrap();
    dl.shutdown().await;
    assert_eq!(
        dl.wait_committed(end, COMMIT).await,
        Err(CommitError::ShutDown)
    );
    assert!(!dl.is_writable());
    drop(dl);

    // Restart on the same files: the term only moves forward, the epochs are kept.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dl = DLedger::start_with_listener(mk(port), store.clone(), listener).unwrap();
    wait_until("solo member leads again", ELECT, || {
        dl.role().borrow().role == Role::Leader
    })
    .await;
    assert!(dl.role().borrow().term > term);
    let epochs = dl.epochs();
    assert_eq!(epochs.len(), 2, "{epochs:?}");
    assert_eq!(epochs[1].start, end);
    dl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_store_written_outside_dledger() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("store"), FILE);
    store
        .put_message(flotilla_message_store::MessageInner::new("T", 0, "x"))
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = DLedgerConfig::new(
        "g",
        "n0",
        vec![Peer {
            id: "n0".into(),
            addr: format!("127.0.0.1:{port}"),
        }],
        dir.path().join("dl"),
    );
    let err = DLedger::start_with_listener(cfg, store, listener).unwrap_err();
    assert_eq!(err.code(), "DLEDGER_UNMANAGED_DATA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_keeps_its_state_and_catches_up() {
    let mut c = Cluster::start(3, FILE).await;
    let l = c.wait_leader(&[0, 1, 2], ELECT).await;
    let f = others(3, l)[0];
    let end = c.put(l, "a", 20, 400).await;
    c.dl(l).wait_committed(end, COMMIT).await.unwrap();
    wait_until("follower has the first batch", COMMIT, || {
        c.store(f).commitlog_max_offset() == end
    })
    .await;
    let term = c.role_of(f).unwrap().term;
    let epochs = c.dl(f).epochs();

    c.kill(f).await;
    // A majority of two still commits while the follower is down.
    let end2 = c.put(l, "b", 200, 400).await;
    c.dl(l).wait_committed(end2, COMMIT).await.unwrap();

    c.restart(f, FILE).await;
    assert!(c.role_of(f).unwrap().term >= term, "term went backwards");
    assert_eq!(c.dl(f).epochs(), epochs, "epochs were not persisted");
    wait_until("restarted follower catches up", ELECT, || {
        c.store(f).commitlog_max_offset() == end2
    })
    .await;
    let leader = c.wait_leader(&[0, 1, 2], ELECT).await;
    assert_eq!(dump(c.store(f)), dump(c.store(leader)));
    c.assert_one_leader_per_term();
}

//! The store conformance suite: one set of checks, run against both backends.
//!
//! Every check is a plain async function over `Arc<dyn IntentStore>`; the `conformance!` macro
//! instantiates each of them as `embedded::<name>` (a fresh redb store in a temp dir) and
//! `etcd::<name>` (a fresh real etcd server on free loopback ports). Lease TTLs are 1–2 s;
//! waits are bounded polls or watch events, never fixed sleeps, except where a lease must be
//! seen to outlive its TTL.

// Tests may unwrap (house rule); clippy's allow-unwrap-in-tests covers only #[test] fns,
// not the shared check functions of an integration-test crate.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{next_event, next_item, wait_until};
use flotilla_intent_store::{
    Compare, EventKind, IntentStore, Op, OpResponse, RangeRequest, StoreError, Txn,
};

type Store = Arc<dyn IntentStore>;

async fn current_revision(s: &Store) -> i64 {
    s.range(RangeRequest::prefix("/zz-none/"))
        .await
        .unwrap()
        .revision
}

// ===== revisions =====

async fn revisions_increase(s: Store) {
    let r0 = current_revision(&s).await;
    assert!(r0 >= 1, "an empty store starts at revision >= 1");

    let r1 = s.put("/rev/a", b"1".to_vec(), None).await.unwrap();
    assert_eq!(r1, r0 + 1, "a put bumps the revision by one");
    let kv = s.get("/rev/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        (r1, r1, 1, None)
    );

    let r2 = s.put("/rev/a", b"2".to_vec(), None).await.unwrap();
    assert_eq!(r2, r1 + 1);
    let kv = s.get("/rev/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    assert_eq!(kv.value, b"2");

    // Two writes in one transaction share one revision.
    let resp = s
        .txn(Txn::new().and_then([Op::put("/rev/b", "b"), Op::put("/rev/c", "c")]))
        .await
        .unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.revision, r2 + 1);
    let b = s.get("/rev/b").await.unwrap().unwrap();
    let c = s.get("/rev/c").await.unwrap().unwrap();
    assert_eq!((b.mod_revision, c.mod_revision), (r2 + 1, r2 + 1));

    // Reads, failed compares and deletes of absent keys do not bump it.
    let failed = s
        .txn(
            Txn::new()
                .when([Compare::Absent("/rev/a".into())])
                .and_then([Op::put("/rev/a", "x")]),
        )
        .await
        .unwrap();
    assert!(!failed.succeeded);
    assert_eq!(failed.revision, r2 + 1);
    assert!(!s.delete("/rev/missing").await.unwrap());
    assert_eq!(current_revision(&s).await, r2 + 1);
    assert_eq!(s.get("/rev/missing").await.unwrap(), None);
}

// ===== compare-and-swap =====

async fn cas_on_revisions_and_absence(s: Store) {
    let create = Txn::new()
        .when([Compare::Absent("/cas/k".into())])
        .and_then([Op::put("/cas/k", "v1")])
        .or_else([Op::get("/cas/k")]);
    let first = s.txn(create.clone()).await.unwrap();
    assert!(
        first.succeeded,
        "create-if-absent succeeds on an absent key"
    );
    assert_eq!(first.responses, vec![OpResponse::Put]);
    let second = s.txn(create).await.unwrap();
    assert!(
        !second.succeeded,
        "create-if-absent fails once the key exists"
    );
    let existing = second.get_result(0).expect("failure branch read the key");
    assert_eq!(existing.value, b"v1");
    assert_eq!(existing.mod_revision, first.revision);
    assert_eq!(
        second.clone().into_success().unwrap_err().code(),
        "TXN_CONFLICT"
    );

    // Update guarded by mod revision: stale fails, current succeeds.
    let stale = s
        .txn(
            Txn::new()
                .when([Compare::ModRevision("/cas/k".into(), first.revision - 1)])
                .and_then([Op::put("/cas/k", "stale")]),
        )
        .await
        .unwrap();
    assert!(!stale.succeeded);
    let update = s
        .txn(
            Txn::new()
                .when([Compare::ModRevision("/cas/k".into(), first.revision)])
                .and_then([Op::put("/cas/k", "v2")]),
        )
        .await
        .unwrap();
    assert!(update.succeeded);
    assert_eq!(s.get("/cas/k").await.unwrap().unwrap().value, b"v2");
    // The old etag no longer matches.
    let again = s
        .txn(
            Txn::new()
                .when([Compare::ModRevision("/cas/k".into(), first.revision)])
                .and_then([Op::put("/cas/k", "v3")]),
        )
        .await
        .unwrap();
    assert!(!again.succeeded);

    // Create revision: survives updates, 0 for absent keys.
    let by_create = s
        .txn(
            Txn::new()
                .when([
                    Compare::CreateRevision("/cas/k".into(), first.revision),
                    Compare::CreateRevision("/cas/absent".into(), 0),
                    Compare::ModRevision("/cas/absent".into(), 0),
                    Compare::Value("/cas/k".into(), b"v2".to_vec()),
                ])
                .and_then([Op::get("/cas/k")]),
        )
        .await
        .unwrap();
    assert!(by_create.succeeded);
    let wrong_value = s
        .txn(Txn::new().when([Compare::Value("/cas/k".into(), b"nope".to_vec())]))
        .await
        .unwrap();
    assert!(!wrong_value.succeeded);
    let value_on_absent = s
        .txn(Txn::new().when([Compare::Value("/cas/absent".into(), Vec::new())]))
        .await
        .unwrap();
    assert!(
        !value_on_absent.succeeded,
        "a value compare on an absent key is false"
    );

    // Delete guarded by mod revision, then the key can be created afresh.
    let kv = s.get("/cas/k").await.unwrap().unwrap();
    let del = s
        .txn(
            Txn::new()
                .when([Compare::ModRevision("/cas/k".into(), kv.mod_revision)])
                .and_then([Op::delete("/cas/k")]),
        )
        .await
        .unwrap();
    assert!(del.succeeded);
    assert_eq!(del.responses, vec![OpResponse::Delete { deleted: 1 }]);
    let rev = s.put("/cas/k", b"again".to_vec(), None).await.unwrap();
    let kv = s.get("/cas/k").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.version),
        (rev, 1),
        "recreated key starts over"
    );

    // Both backends reject the same malformed transactions.
    let dup = s
        .txn(Txn::new().and_then([Op::put("/cas/d", "1"), Op::put("/cas/d", "2")]))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), "STORE_INVALID_ARGUMENT");
}

// ===== range =====

async fn range_pages_by_prefix(s: Store) {
    for i in 0..5 {
        s.put(&format!("/pg/k{i}"), vec![i], None).await.unwrap();
    }
    s.put("/pf", b"outside".to_vec(), None).await.unwrap();
    s.put("/pg0", b"outside".to_vec(), None).await.unwrap();
    let all = s.range(RangeRequest::prefix("/pg/")).await.unwrap();
    assert!(!all.more);
    let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/pg/k0", "/pg/k1", "/pg/k2", "/pg/k3", "/pg/k4"]);
    assert_eq!(all.revision, current_revision(&s).await);

    let mut req = RangeRequest::prefix("/pg/").with_limit(2);
    let mut pages = Vec::new();
    loop {
        let resp = s.range(req.clone()).await.unwrap();
        pages.push(resp.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>());
        match resp.next_page(&req) {
            Some(next) => req = next,
            None => break,
        }
    }
    assert_eq!(
        pages,
        vec![
            vec!["/pg/k0".to_string(), "/pg/k1".into()],
            vec!["/pg/k2".into(), "/pg/k3".into()],
            vec!["/pg/k4".into()],
        ]
    );
    let exact = s
        .range(RangeRequest::prefix("/pg/").with_limit(5))
        .await
        .unwrap();
    assert!(
        !exact.more,
        "more is false when the limit is exactly reached"
    );
    let empty = s.range(RangeRequest::prefix("/nothing/")).await.unwrap();
    assert!(empty.kvs.is_empty() && !empty.more);
}

// ===== delete =====

async fn delete_and_delete_prefix(s: Store) {
    s.put("/del/a", b"a".to_vec(), None).await.unwrap();
    s.put("/del/b/1", b"1".to_vec(), None).await.unwrap();
    s.put("/del/b/2", b"2".to_vec(), None).await.unwrap();
    s.put("/del/c", b"c".to_vec(), None).await.unwrap();
    assert!(s.delete("/del/a").await.unwrap());
    assert!(!s.delete("/del/a").await.unwrap());
    let before = current_revision(&s).await;
    let resp = s
        .txn(Txn::new().and_then([Op::DeletePrefix {
            prefix: "/del/b/".into(),
        }]))
        .await
        .unwrap();
    assert_eq!(resp.responses, vec![OpResponse::Delete { deleted: 2 }]);
    assert_eq!(resp.revision, before + 1, "a prefix delete is one revision");
    let left = s.range(RangeRequest::prefix("/del/")).await.unwrap();
    assert_eq!(
        left.kvs
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        ["/del/c"]
    );
}

// ===== watch =====

async fn watch_replays_history_then_streams_live(s: Store) {
    let r1 = s.put("/w/a", b"1".to_vec(), None).await.unwrap();
    s.put("/other/x", b"x".to_vec(), None).await.unwrap();
    let r3 = s.put("/w/a", b"2".to_vec(), None).await.unwrap();
    let r4 = s
        .txn(Txn::new().and_then([Op::delete("/w/a"), Op::put("/w/b", "b")]))
        .await
        .unwrap()
        .revision;

    let mut w = s.watch("/w/", r1).await.unwrap();
    let e1 = next_event(&mut w).await;
    assert_eq!(
        (e1.kind, e1.kv.key.as_str(), e1.revision()),
        (EventKind::Put, "/w/a", r1)
    );
    assert_eq!(e1.kv.value, b"1");
    let e2 = next_event(&mut w).await;
    assert_eq!((e2.kind, e2.revision()), (EventKind::Put, r3));
    assert_eq!(
        e2.prev.as_ref().map(|p| p.value.clone()),
        Some(b"1".to_vec())
    );
    let e3 = next_event(&mut w).await;
    assert_eq!(
        (e3.kind, e3.kv.key.as_str(), e3.revision()),
        (EventKind::Delete, "/w/a", r4)
    );
    assert_eq!(
        e3.prev.as_ref().map(|p| p.value.clone()),
        Some(b"2".to_vec())
    );
    let e4 = next_event(&mut w).await;
    assert_eq!(
        (e4.kind, e4.kv.key.as_str(), e4.revision()),
        (EventKind::Put, "/w/b", r4)
    );

    // Live: changes after the watch started, and nothing outside the prefix.
    s.put("/other/y", b"y".to_vec(), None).await.unwrap();
    let r6 = s.put("/w/c", b"c".to_vec(), None).await.unwrap();
    let e5 = next_event(&mut w).await;
    assert_eq!(
        (e5.kv.key.as_str(), e5.revision(), e5.kv.create_revision),
        ("/w/c", r6, r6)
    );

    // Resume: a second watcher from the revision after the first event sees the rest.
    let mut resumed = s.watch("/w/", r1 + 1).await.unwrap();
    assert_eq!(next_event(&mut resumed).await.revision(), r3);

    // From 0: only changes after now.
    let mut fresh = s.watch("/w/", 0).await.unwrap();
    let r7 = s.put("/w/d", b"d".to_vec(), None).await.unwrap();
    let e = next_event(&mut fresh).await;
    assert_eq!((e.kv.key.as_str(), e.revision()), ("/w/d", r7));
}

async fn watch_after_compaction_is_compacted(s: Store) {
    let r1 = s.put("/cmp/a", b"1".to_vec(), None).await.unwrap();
    s.put("/cmp/a", b"2".to_vec(), None).await.unwrap();
    let r3 = s.put("/cmp/a", b"3".to_vec(), None).await.unwrap();
    s.compact(r3).await.unwrap();

    let mut old = s.watch("/cmp/", r1).await.unwrap();
    match next_item(&mut old).await {
        Err(StoreError::Compacted { compact_revision }) => assert_eq!(compact_revision, r3),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert_eq!(
        StoreError::Compacted {
            compact_revision: r3
        }
        .code(),
        "STORE_COMPACTED"
    );

    // The caller's recovery: re-list, then watch from the listed revision + 1.
    let listed = s.range(RangeRequest::prefix("/cmp/")).await.unwrap();
    assert_eq!(listed.kvs[0].value, b"3");
    let mut w = s.watch("/cmp/", listed.revision + 1).await.unwrap();
    let r4 = s.put("/cmp/a", b"4".to_vec(), None).await.unwrap();
    assert_eq!(next_event(&mut w).await.revision(), r4);

    // Compacting at or below the compaction point, or into the future, is refused.
    assert!(matches!(
        s.compact(r3).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        s.compact(r4 + 100).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

// ===== leases =====

async fn lease_expiry_deletes_keys(s: Store) {
    let lease = s.lease_grant(1).await.unwrap();
    assert!(lease.ttl >= 1);
    let rev = s
        .put("/lease/exp/k", b"v".to_vec(), Some(lease.id))
        .await
        .unwrap();
    assert_eq!(
        s.get("/lease/exp/k").await.unwrap().unwrap().lease,
        Some(lease.id)
    );
    let info = s.lease_time_to_live(lease.id).await.unwrap();
    assert_eq!(info.keys, vec!["/lease/exp/k".to_string()]);
    assert_eq!(info.granted_ttl, lease.ttl);

    let mut w = s.watch("/lease/exp/", rev + 1).await.unwrap();
    // Nobody keeps it alive: the store deletes the key and says so.
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.kind, ev.kv.key.as_str()),
        (EventKind::Delete, "/lease/exp/k")
    );
    assert_eq!(s.get("/lease/exp/k").await.unwrap(), None);
    assert_eq!(
        s.lease_keep_alive(lease.id).await.unwrap_err(),
        StoreError::LeaseNotFound(lease.id)
    );
    assert!(matches!(
        s.lease_time_to_live(lease.id).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    // A put under an expired lease is refused.
    let err = s
        .put("/lease/exp/k2", b"v".to_vec(), Some(lease.id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "LEASE_NOT_FOUND");
}

async fn keep_alive_extends_lease(s: Store) {
    // 2 s TTL renewed every 250 ms: a loaded machine may stall well over a second without
    // the lease lapsing.
    let lease = s.lease_grant(2).await.unwrap();
    s.put("/lease/ka/k", b"v".to_vec(), Some(lease.id))
        .await
        .unwrap();
    // Keep it alive for longer than its TTL; the key must survive throughout. (Outliving the
    // TTL is the point, so this test has to let time pass.)
    let span = Duration::from_secs(u64::try_from(lease.ttl).unwrap() + 1);
    let until = tokio::time::Instant::now() + span;
    while tokio::time::Instant::now() < until {
        let ttl = s.lease_keep_alive(lease.id).await.unwrap();
        assert_eq!(ttl, lease.ttl);
        assert!(s.get("/lease/ka/k").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Then it lapses.
    wait_until("the lease to expire", || async {
        s.get("/lease/ka/k").await.unwrap().is_none().then_some(())
    })
    .await;
}

async fn revoke_deletes_attached_keys(s: Store) {
    let lease = s.lease_grant(30).await.unwrap();
    let other = s.lease_grant(30).await.unwrap();
    s.put("/lease/rv/a", b"a".to_vec(), Some(lease.id))
        .await
        .unwrap();
    s.put("/lease/rv/b", b"b".to_vec(), Some(lease.id))
        .await
        .unwrap();
    s.put("/lease/rv/c", b"c".to_vec(), Some(other.id))
        .await
        .unwrap();
    // Moving a key to no lease detaches it.
    s.put("/lease/rv/moved", b"m".to_vec(), Some(lease.id))
        .await
        .unwrap();
    let before = s.put("/lease/rv/moved", b"m".to_vec(), None).await.unwrap();
    let info = s.lease_time_to_live(lease.id).await.unwrap();
    assert_eq!(
        info.keys,
        vec!["/lease/rv/a".to_string(), "/lease/rv/b".into()]
    );
    assert!(info.ttl > 0 && info.ttl <= 30);

    let mut w = s.watch("/lease/rv/", before + 1).await.unwrap();
    s.lease_revoke(lease.id).await.unwrap();
    let e1 = next_event(&mut w).await;
    let e2 = next_event(&mut w).await;
    let mut deleted = vec![e1.kv.key.clone(), e2.kv.key.clone()];
    deleted.sort();
    assert_eq!(deleted, ["/lease/rv/a", "/lease/rv/b"]);
    assert_eq!((e1.kind, e2.kind), (EventKind::Delete, EventKind::Delete));
    assert_eq!(
        e1.revision(),
        e2.revision(),
        "a revoke deletes at one revision"
    );

    let left = s.range(RangeRequest::prefix("/lease/rv/")).await.unwrap();
    assert_eq!(
        left.kvs
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        ["/lease/rv/c", "/lease/rv/moved"]
    );
    assert_eq!(
        s.lease_revoke(lease.id).await.unwrap_err().code(),
        "LEASE_NOT_FOUND"
    );
    s.lease_revoke(other.id).await.unwrap();
    assert_eq!(s.get("/lease/rv/c").await.unwrap(), None);
}

// ===== election and fencing =====

const ELECTION: &str = "/elect/cp";

async fn election_one_leader_then_successor_on_resign(s: Store) {
    let la = s.lease_grant(30).await.unwrap();
    let lb = s.lease_grant(30).await.unwrap();
    let a = s.campaign(ELECTION, b"a".to_vec(), la.id).await.unwrap();
    assert_eq!(a.key, format!("{ELECTION}/{}", la.id));
    assert_eq!(
        s.get(&a.key).await.unwrap().unwrap().create_revision,
        a.epoch()
    );

    let s2 = s.clone();
    let b_task = tokio::spawn(async move { s2.campaign(ELECTION, b"b".to_vec(), lb.id).await });
    let b_key = format!("{ELECTION}/{}", lb.id);
    wait_until("b to become a candidate", || async {
        s.get(&b_key).await.unwrap().map(|_| ())
    })
    .await;
    let leader = s.leader(ELECTION).await.unwrap().unwrap();
    assert_eq!(
        (leader.value.as_slice(), leader.revision),
        (&b"a"[..], a.epoch())
    );
    assert!(!b_task.is_finished(), "b must wait while a leads");

    s.resign(&a).await.unwrap();
    let b = tokio::time::timeout(common::PATIENCE, b_task)
        .await
        .expect("b elected after a resigned")
        .unwrap()
        .unwrap();
    assert!(
        b.epoch() > a.epoch(),
        "epochs grow: {} > {}",
        b.epoch(),
        a.epoch()
    );
    let leader = s.leader(ELECTION).await.unwrap().unwrap();
    assert_eq!(
        (leader.value.as_slice(), leader.key.as_str()),
        (&b"b"[..], b.key.as_str())
    );

    // Fencing: the deposed leader's writes fail, the current leader's succeed.
    let stale = s
        .txn(
            Txn::new()
                .fenced_by(&a)
                .and_then([Op::put("/intent/x", "from-a")]),
        )
        .await
        .unwrap();
    assert!(!stale.succeeded, "a deposed leader cannot write");
    assert_eq!(s.get("/intent/x").await.unwrap(), None);
    s.txn(
        Txn::new()
            .fenced_by(&b)
            .and_then([Op::put("/intent/x", "from-b")]),
    )
    .await
    .unwrap()
    .into_success()
    .unwrap();

    // Resigning twice is harmless; an empty election has no leader.
    s.resign(&a).await.unwrap();
    s.resign(&b).await.unwrap();
    assert_eq!(s.leader(ELECTION).await.unwrap(), None);
}

async fn election_successor_on_lease_expiry(s: Store) {
    let la = s.lease_grant(1).await.unwrap();
    let lb = s.lease_grant(30).await.unwrap();
    let a = s.campaign(ELECTION, b"a".to_vec(), la.id).await.unwrap();
    let s2 = s.clone();
    let b_task = tokio::spawn(async move { s2.campaign(ELECTION, b"b".to_vec(), lb.id).await });
    // a never renews its lease: when it expires, b takes over.
    let b = tokio::time::timeout(common::PATIENCE, b_task)
        .await
        .expect("b elected after a's lease expired")
        .unwrap()
        .unwrap();
    assert!(b.epoch() > a.epoch());
    assert_eq!(s.get(&a.key).await.unwrap(), None);
    let fenced = s
        .txn(
            Txn::new()
                .fenced_by(&a)
                .and_then([Op::put("/intent/y", "a")]),
        )
        .await
        .unwrap();
    assert!(!fenced.succeeded, "an expired leader is fenced off");
    // Campaigning again with the same lease re-uses the key (and refreshes the value).
    let again = s.campaign(ELECTION, b"b2".to_vec(), lb.id).await.unwrap();
    assert_eq!(
        (again.key.as_str(), again.epoch()),
        (b.key.as_str(), b.epoch())
    );
    assert_eq!(s.leader(ELECTION).await.unwrap().unwrap().value, b"b2");
}

async fn campaign_fails_when_own_lease_is_gone(s: Store) {
    let lease = s.lease_grant(30).await.unwrap();
    s.lease_revoke(lease.id).await.unwrap();
    let err = s
        .campaign(ELECTION, b"x".to_vec(), lease.id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "LEASE_NOT_FOUND");
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = super::common::embedded().await;
                    super::$name(f.store.clone()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = super::common::etcd().await;
                    super::$name(f.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    revisions_increase,
    cas_on_revisions_and_absence,
    range_pages_by_prefix,
    delete_and_delete_prefix,
    watch_replays_history_then_streams_live,
    watch_after_compaction_is_compacted,
    lease_expiry_deletes_keys,
    keep_alive_extends_lease,
    revoke_deletes_attached_keys,
    election_one_leader_then_successor_on_resign,
    election_successor_on_lease_expiry,
    campaign_fails_when_own_lease_is_gone,
);

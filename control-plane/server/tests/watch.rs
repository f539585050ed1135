//! WatchClusters / WatchOperations over real gRPC: resuming from a revision delivers exactly
//! the later events; a compacted revision is OUT_OF_RANGE and the client re-lists.

// Helpers here may unwrap like the tests themselves (clippy.toml only exempts #[test] fns).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flotilla_intent_store::testing::EtcdServer;
use flotilla_proto::v1::{
    BrokerMode, ListClustersRequest, WatchClustersRequest, WatchClustersResponse, WatchEventType,
};
use tonic::Code;

/// Reads events until `done` says so (bounded by PATIENCE).
async fn collect(
    stream: &mut tonic::Streaming<WatchClustersResponse>,
    mut done: impl FnMut(&[WatchClustersResponse]) -> bool,
) -> Vec<WatchClustersResponse> {
    let mut out = Vec::new();
    while !done(&out) {
        let ev = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("watch event within PATIENCE")
            .expect("watch stream healthy")
            .expect("watch stream open");
        if ev.r#type != WatchEventType::Bookmark as i32 {
            out.push(ev);
        }
    }
    out
}

/// Watches clusters (only `name` unless empty) from `revision`.
async fn watch(h: &Harness, revision: i64, name: &str) -> tonic::Streaming<WatchClustersResponse> {
    h.clusters()
        .watch_clusters(WatchClustersRequest {
            revision,
            name: name.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn name(ev: &WatchClustersResponse) -> String {
    ev.cluster
        .as_ref()
        .and_then(|c| c.metadata.as_ref())
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

async fn watch_resumes_and_reports_compaction(h: &Harness) {
    let mut client = h.clusters();
    create_cluster(h, cluster("before-1", 1, 1, 1, BrokerMode::MasterSlave)).await;
    create_cluster(h, cluster("before-2", 1, 1, 1, BrokerMode::MasterSlave)).await;
    settle(h).await;
    let r = client
        .list_clusters(ListClustersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .revision;
    let after = ["after-1", "after-2", "after-3"];
    for n in after {
        create_cluster(h, cluster(n, 1, 1, 1, BrokerMode::MasterSlave)).await;
    }
    h.clusters()
        .delete_cluster(delete_req("after-1", "", ""))
        .await
        .unwrap();

    // Resume from R: the three creates after R arrive in order, nothing from before R.
    let mut stream = watch(h, r, "").await;
    let events = collect(&mut stream, |evs| {
        // Every "after" cluster seen, and the delete request of after-1 seen.
        after.iter().all(|n| evs.iter().any(|e| name(e) == *n))
            && evs.iter().any(|e| {
                name(e) == "after-1"
                    && e.cluster
                        .as_ref()
                        .and_then(|c| c.metadata.as_ref())
                        .is_some_and(|m| m.delete_time.is_some())
            })
    })
    .await;
    assert!(
        events.iter().all(|e| e.revision > r),
        "an event at or before {r}"
    );
    assert!(
        events.iter().all(|e| name(e).starts_with("after-")),
        "events from before the revision: {:?}",
        events.iter().map(name).collect::<Vec<_>>()
    );
    let revs: Vec<i64> = events.iter().map(|e| e.revision).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "out of order: {revs:?}"
    );
    let first_seen: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for e in &events {
            if !v.contains(&name(e)) {
                v.push(name(e));
            }
        }
        v
    };
    assert_eq!(first_seen, after, "creates arrive in commit order");
    // The etag of each event is its revision.
    for e in &events {
        let etag = &e.cluster.as_ref().unwrap().metadata.as_ref().unwrap().etag;
        assert_eq!(*etag, e.revision.to_string());
    }
    // A watch on one name only sees that name.
    let mut one = watch(h, r, "after-2").await;
    let evs = collect(&mut one, |evs| !evs.is_empty()).await;
    assert_eq!(name(&evs[0]), "after-2");
    assert_eq!(evs[0].r#type, WatchEventType::Put as i32);
    drop(one);
    // The live part continues: a later create arrives on the open stream.
    create_cluster(h, cluster("live-1", 1, 1, 1, BrokerMode::MasterSlave)).await;
    let live = collect(&mut stream, |evs| evs.iter().any(|e| name(e) == "live-1")).await;
    assert!(live.iter().all(|e| e.revision > *revs.last().unwrap()));
    drop(stream);

    // Compact past R: resuming from R is OUT_OF_RANGE; the client re-lists and resumes.
    settle(h).await;
    let now = store_revision(&h.cp.ctx.store).await;
    h.cp.ctx.store.compact(now).await.unwrap();
    let mut stale = watch(h, r, "").await;
    let err = tokio::time::timeout(PATIENCE, async {
        loop {
            match stale.message().await {
                Ok(Some(ev)) if ev.r#type == WatchEventType::Bookmark as i32 => continue,
                Ok(other) => panic!("expected OUT_OF_RANGE, got {other:?}"),
                Err(s) => return s,
            }
        }
    })
    .await
    .expect("compaction error within PATIENCE");
    let md = assert_error(&err, Code::OutOfRange, "WATCH_REVISION_COMPACTED");
    assert_eq!(md["compact_revision"], now.to_string());
    let listed = client
        .list_clusters(ListClustersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.revision >= now);
    assert!(
        listed
            .clusters
            .iter()
            .any(|c| c.metadata.as_ref().unwrap().name == "live-1")
    );
    let mut resumed = watch(h, listed.revision, "").await;
    create_cluster(
        h,
        cluster("after-compaction", 1, 1, 1, BrokerMode::MasterSlave),
    )
    .await;
    let evs = collect(&mut resumed, |evs| {
        evs.iter().any(|e| name(e) == "after-compaction")
    })
    .await;
    assert!(evs.iter().all(|e| e.revision > listed.revision));
    // Revision 0 lists first: every current cluster arrives as a PUT.
    let mut fresh = watch(h, 0, "").await;
    let evs = collect(&mut fresh, |evs| {
        ["before-1", "before-2", "after-compaction"]
            .iter()
            .all(|n| evs.iter().any(|e| name(e) == *n))
    })
    .await;
    assert!(evs.iter().all(|e| e.r#type == WatchEventType::Put as i32));
}

#[tokio::test]
async fn watch_resumes_from_revision_and_compaction_is_out_of_range() {
    let h = start_embedded().await;
    watch_resumes_and_reports_compaction(&h).await;
}

#[tokio::test]
async fn watch_on_etcd_resumes_from_revision_and_compaction_is_out_of_range() {
    let etcd = EtcdServer::start().await;
    let h = start_on(etcd.store().await, test_config("cp-watch"), true).await;
    watch_resumes_and_reports_compaction(&h).await;
    h.cp.shutdown().await;
}

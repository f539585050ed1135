//! Restarting the control plane on the embedded store: intent survives, the epoch grows.

// Helpers here may unwrap like the tests themselves (clippy.toml only exempts #[test] fns).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use flotilla_proto::v1::{
    BrokerMode, ListClustersRequest, ListNodesRequest, OperationPhase, UpdateClusterRequest,
};

/// Everything the API lists, by name, with etag and generation (what must survive).
async fn snapshot(h: &Harness) -> BTreeMap<String, (String, i64)> {
    let mut out = BTreeMap::new();
    let clusters = h
        .clusters()
        .list_clusters(ListClustersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .clusters;
    for c in clusters {
        let m = c.metadata.unwrap();
        out.insert(format!("cluster/{}", m.name), (m.uid, m.generation));
    }
    let nodes = h
        .nodes()
        .list_nodes(ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .nodes;
    for n in nodes {
        let m = n.metadata.unwrap();
        out.insert(format!("node/{}", m.name), (m.uid, m.generation));
    }
    for o in h.all_operations().await {
        let m = o.metadata.unwrap();
        out.insert(format!("operation/{}", m.name), (m.uid, m.generation));
    }
    out
}

/// What each node was last told: node → (generation, instance count).
fn desired_summary(h: &Harness) -> BTreeMap<String, (i64, usize)> {
    h.cp.ctx.cache.read(|st| {
        st.desired
            .iter()
            .map(|(n, d)| (n.clone(), (d.value.generation, d.value.instances.len())))
            .collect()
    })
}

#[tokio::test]
async fn restart_on_embedded_store_keeps_intent_and_raises_epoch() {
    let dir = tempfile::Builder::new()
        .prefix("flotilla-cp-restart-")
        .tempdir()
        .unwrap();
    let h = start_on(open_embedded(dir.path()).await, test_config("cp-1"), true).await;
    let first_epoch = h.epoch().unwrap();
    let a = h.agent("node-a").await;
    let b = h.agent("node-b").await;
    create_cluster(&h, cluster("orders", 1, 2, 2, BrokerMode::MasterSlave)).await;
    create_cluster(&h, cluster("billing", 1, 1, 1, BrokerMode::Dledger)).await;
    settle(&h).await;
    // Scale "orders" in: the update also stores a ScaleIn operation. Fake agents cannot
    // answer the drain check (no brokers behind them), so it is forced; the workflow runs it
    // to the end before the restart.
    let mut orders = h.get_cluster("orders").await;
    broker_mut(&mut orders).groups = 1;
    // No etag: the reconciler keeps writing status while the agents report.
    orders.metadata.as_mut().unwrap().etag.clear();
    let up = h
        .clusters()
        .update_cluster(UpdateClusterRequest {
            force: true,
            ..update_req(orders, "")
        })
        .await
        .unwrap()
        .into_inner();
    let op = up.operation.expect("scale-in creates an operation");
    let op_name = op.metadata.unwrap().name;
    wait_until("the scale-in workflow finishes", || async {
        h.all_operations()
            .await
            .into_iter()
            .find(|o| o.metadata.as_ref().is_some_and(|m| m.name == op_name))
            .and_then(|o| o.status)
            .filter(|s| s.done && s.phase == OperationPhase::Succeeded as i32)
    })
    .await;
    settle(&h).await;
    let before = snapshot(&h).await;
    assert_eq!(
        before.keys().filter(|k| k.starts_with("cluster/")).count(),
        2
    );
    assert_eq!(before.keys().filter(|k| k.starts_with("node/")).count(), 2);
    assert_eq!(
        before
            .keys()
            .filter(|k| k.starts_with("operation/"))
            .count(),
        1
    );
    // Stop everything and let go of the store (one process may open it at a time).
    drop((a, b));
    h.cp.shutdown().await;
    // What the nodes were last told (the cache holds this process's own writes).
    let desired_before = desired_summary(&h);
    assert!(desired_before.values().any(|(_, n)| *n > 0));
    drop(h);
    let store = wait_until("store reopens after the first process let go", || async {
        flotilla_intent_store::EmbeddedStore::open_with(dir.path(), embedded_options())
            .await
            .ok()
    })
    .await;

    let h2 = start_on(std::sync::Arc::new(store), test_config("cp-1"), true).await;
    let second_epoch = h2.epoch().unwrap();
    assert!(
        second_epoch > first_epoch,
        "epoch after restart {second_epoch} must exceed {first_epoch}"
    );
    assert_eq!(
        snapshot(&h2).await,
        before,
        "intent changed across the restart"
    );
    assert_eq!(desired_summary(&h2), desired_before);

    // The returning agents get their desired state again, stamped with the new epoch.
    let a2 = h2.agent("node-a").await;
    let ds = a2
        .wait_desired(PATIENCE, |d| d.epoch == second_epoch)
        .await
        .expect("desired state under the new epoch");
    assert_eq!(ds.instances.len(), desired_before["node-a"].1);
    h2.cp.shutdown().await;
}

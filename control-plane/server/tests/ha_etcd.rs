//! Two control planes on one real etcd: one leader, followers refuse writes naming it,
//! failover raises the epoch, and a deposed leader's writes are fenced off.
//!
//! Every test here starts a real `etcd` (test names contain `etcd` for the nextest group).

// Helpers here may unwrap like the tests themselves (clippy.toml only exempts #[test] fns).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use flotilla_cp::ControlPlane;
use flotilla_cp::fenced::{WriteError, Writer};
use flotilla_cp::leader::LeaderHandle;
use flotilla_cp::testing::{FakeAgent, FakeAgentOptions};
use flotilla_intent_store::testing::EtcdServer;
use flotilla_intent_store::{Op, Txn, keys};
use flotilla_proto::v1::{BrokerMode, CordonNodeRequest, CreateClusterRequest};
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// CreateCluster of a small cluster `name`.
fn create_small(name: &str) -> CreateClusterRequest {
    create_req(cluster(name, 1, 1, 1, BrokerMode::MasterSlave), "")
}

/// Checks `status` is UNAVAILABLE / NOT_LEADER naming `leader`.
fn assert_not_leader(status: &tonic::Status, leader: &str) {
    let md = assert_error(status, Code::Unavailable, "NOT_LEADER");
    assert_eq!(
        md.get("leader").map(String::as_str),
        Some(leader),
        "{status:?}"
    );
}

#[tokio::test]
async fn etcd_one_leader_follower_refuses_writes_and_takes_over() {
    let etcd = EtcdServer::start().await;
    let a = start_on(etcd.store().await, test_config("cp-a"), false).await;
    let b = start_on(etcd.store().await, test_config("cp-b"), false).await;
    wait_until("one of two replicas leads", || async {
        (a.epoch().is_some() || b.epoch().is_some()).then_some(())
    })
    .await;
    a.cp.ctx.cache.wait_ready().await;
    b.cp.ctx.cache.wait_ready().await;
    assert!(
        a.epoch().is_some() ^ b.epoch().is_some(),
        "exactly one leader: a={:?} b={:?}",
        a.epoch(),
        b.epoch()
    );
    let (leader, follower, leader_name, follower_name) = if a.epoch().is_some() {
        (a, b, "cp-a", "cp-b")
    } else {
        (b, a, "cp-b", "cp-a")
    };
    let first_epoch = leader.epoch().unwrap();
    // The election key names the leader, and the follower knows it.
    assert_eq!(
        follower.cp.ctx.leader.leader_name().await.as_deref(),
        Some(leader_name)
    );

    // Writes through the leader work; the follower serves reads.
    let created = leader
        .clusters()
        .create_cluster(create_small("orders"))
        .await
        .unwrap()
        .into_inner();
    let got = follower.get_cluster("orders").await;
    assert_eq!(
        got.metadata.unwrap().uid,
        created.metadata.clone().unwrap().uid
    );

    // Every write the follower is asked for: UNAVAILABLE naming the leader.
    let err = follower
        .clusters()
        .create_cluster(create_small("other"))
        .await
        .unwrap_err();
    assert_not_leader(&err, leader_name);
    let err = follower
        .clusters()
        .update_cluster(update_req(created.clone(), ""))
        .await
        .unwrap_err();
    assert_not_leader(&err, leader_name);
    let err = follower
        .clusters()
        .delete_cluster(delete_req("orders", "", ""))
        .await
        .unwrap_err();
    assert_not_leader(&err, leader_name);
    let err = follower
        .nodes()
        .cordon_node(CordonNodeRequest {
            name: "node-a".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_not_leader(&err, leader_name);
    // Agents are refused too (they reconnect to the leader).
    let err = FakeAgent::connect(follower.channel.clone(), FakeAgentOptions::new("node-a"))
        .await
        .err()
        .expect("follower refuses agent sessions");
    assert_not_leader(&err, leader_name);
    let agent = leader.agent("node-a").await;
    assert_eq!(agent.highest_epoch(), first_epoch);
    assert!(follower.epoch().is_none());

    // Stop the leader: the follower takes over with a higher epoch.
    drop(agent);
    leader.cp.shutdown().await;
    let second_epoch = wait_until("follower takes over", || async { follower.epoch() }).await;
    assert!(
        second_epoch > first_epoch,
        "new epoch {second_epoch} must exceed {first_epoch}"
    );
    assert_eq!(
        follower.cp.ctx.leader.leader_name().await.as_deref(),
        Some(follower_name)
    );
    // It now accepts writes, and the agent coming back gets the new epoch.
    follower
        .clusters()
        .create_cluster(create_small("payments"))
        .await
        .expect("the new leader accepts writes");
    let agent = follower.agent("node-a").await;
    agent
        .wait_desired(PATIENCE, |d| d.epoch == second_epoch)
        .await
        .expect("desired state under the new epoch");
    follower.cp.shutdown().await;
}

#[tokio::test]
async fn etcd_stale_leader_cannot_write() {
    let etcd = EtcdServer::start().await;
    let a = start_on(etcd.store().await, test_config("cp-a"), true).await;
    let old_key = a.cp.ctx.leader.current().expect("a leads");
    a.cp.shutdown().await;
    drop(a);
    let b = start_on(etcd.store().await, test_config("cp-b"), true).await;
    let new_epoch = b.epoch().unwrap();
    assert!(new_epoch > old_key.epoch());
    b.clusters()
        .create_cluster(create_small("orders"))
        .await
        .unwrap();

    // 1. Directly against the store: a write fenced by the old epoch does not commit.
    let store = etcd.store().await;
    let key = keys::cluster("stale").unwrap();
    let resp = store
        .txn(
            Txn::new()
                .fenced_by(&old_key)
                .and_then([Op::put(key.clone(), b"x".to_vec())]),
        )
        .await
        .unwrap();
    assert!(!resp.succeeded, "a write fenced by a stale epoch committed");
    assert!(store.get(&key).await.unwrap().is_none());

    // 2. Through a writer that still believes it leads: refused, and it steps down.
    let stale = LeaderHandle::pinned(store.clone(), "cp-a".into(), old_key.clone());
    let writer = Writer::new(store.clone(), stale.clone());
    let err = writer
        .txn(Txn::new().and_then([Op::put(key.clone(), b"x".to_vec())]))
        .await
        .unwrap_err();
    assert!(matches!(err, WriteError::NotLeader), "{err:?}");
    assert!(stale.current().is_none(), "a fenced-off writer steps down");
    assert_eq!(stale.step_downs(), 1);
    assert!(store.get(&key).await.unwrap().is_none());

    // 3. A whole control plane coming back with the stale view: its API refuses writes,
    //    naming the real leader, and nothing it tries reaches the store.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pinned = LeaderHandle::pinned(store.clone(), "cp-a".into(), old_key.clone());
    let old = ControlPlane::start_with_leader(
        test_config("cp-a"),
        store.clone(),
        listener,
        pinned,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let old_channel = flotilla_cp::testing::channel(old.addr);
    let mut old_clusters =
        flotilla_proto::v1::cluster_service_client::ClusterServiceClient::new(old_channel.clone());
    let err = old_clusters
        .create_cluster(create_small("stale"))
        .await
        .unwrap_err();
    assert_not_leader(&err, "cp-b");
    assert!(store.get(&key).await.unwrap().is_none());
    // An agent that has obeyed the new leader is not taken over by the old one.
    let mut opts = FakeAgentOptions::new("node-x");
    opts.highest_epoch_seen = new_epoch;
    let err = FakeAgent::connect(old_channel, opts)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(old.ctx.leader.current().is_none());
    // The real leader is unaffected.
    assert_eq!(b.epoch(), Some(new_epoch));
    let orders = b.get_cluster("orders").await;
    assert_eq!(orders.metadata.unwrap().generation, 1);
    old.shutdown().await;
    b.cp.shutdown().await;
    let _ = Arc::clone(&store);
}

/// With forwarding on (the default), a follower serves every call by passing it to the
/// leader: writes, node commands and the agents' stream all work through either replica.
#[tokio::test]
async fn etcd_followers_forward_writes_and_agent_streams_to_the_leader() {
    let etcd = EtcdServer::start().await;
    let a = start_forwarding(etcd.store().await).await;
    let b = start_forwarding(etcd.store().await).await;
    wait_until("one of two replicas leads", || async {
        (a.epoch().is_some() || b.epoch().is_some()).then_some(())
    })
    .await;
    let (leader, follower) = if a.epoch().is_some() { (a, b) } else { (b, a) };
    let epoch = leader.epoch().unwrap();
    // The follower has read who leads.
    wait_until("follower knows the leader", || async {
        (follower.cp.ctx.leader.leader_name().await.as_deref() == Some(leader.cp.ctx.leader.name()))
            .then_some(())
    })
    .await;

    // Writes sent to the follower are made by the leader.
    let created = wait_until("create through the follower", || async {
        follower
            .clusters()
            .create_cluster(create_small("orders"))
            .await
            .ok()
            .map(|r| r.into_inner())
    })
    .await;
    let mut on_leader = leader.get_cluster("orders").await;
    assert_eq!(
        on_leader.metadata.as_ref().unwrap().uid,
        created.metadata.as_ref().unwrap().uid
    );
    // No etag: the reconciler keeps writing status.
    on_leader.metadata.as_mut().unwrap().etag.clear();
    follower
        .clusters()
        .update_cluster(update_req(on_leader, ""))
        .await
        .expect("update through the follower");
    // Errors come back with their details.
    let dup = follower
        .clusters()
        .create_cluster(create_small("orders"))
        .await
        .unwrap_err();
    assert_error(&dup, Code::AlreadyExists, "CLUSTER_ALREADY_EXISTS");

    // An agent given the follower's address gets a session with the leader.
    let agent = follower.agent("node-a").await;
    assert_eq!(agent.highest_epoch(), epoch);
    assert!(leader.cp.ctx.sessions.is_connected("node-a"));
    assert!(!follower.cp.ctx.sessions.is_connected("node-a"));

    // The leader goes away: the proxied stream ends, and the agent, reconnecting through the
    // same address, gets the new leader's epoch.
    leader.cp.shutdown().await;
    let second = wait_until("follower takes over", || async { follower.epoch() }).await;
    assert!(second > epoch);
    let agent = wait_until("agent reconnects through the same address", || async {
        let a = FakeAgent::connect(follower.channel.clone(), FakeAgentOptions::new("node-a"))
            .await
            .ok()?;
        a.wait_desired(PATIENCE, |d| d.epoch == second).await?;
        Some(a)
    })
    .await;
    assert!(follower.cp.ctx.sessions.is_connected("node-a"));
    drop(agent);
    follower.cp.shutdown().await;
}

//! etcd-only checks: connecting through a spec, unreachable endpoints, and an election between
//! two independent clients (two control planes) of one real etcd.

// Tests may unwrap (house rule); clippy's allow-unwrap-in-tests covers only #[test] fns.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;

use common::EtcdServer;
use flotilla_intent_store::{EtcdStore, Op, StoreSpec, Txn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_opens_etcd_and_two_control_planes_elect_one_leader() {
    let server = EtcdServer::start().await;
    let spec = StoreSpec::from_flags(None, Some(&server.endpoint()), "/unused".as_ref()).unwrap();
    let cp1 = spec.open().await.unwrap();
    let cp2 = spec.open().await.unwrap();
    assert_eq!(cp1.backend(), "etcd");

    let l1 = cp1.lease_grant(30).await.unwrap();
    let l2 = cp2.lease_grant(30).await.unwrap();
    let k1 = cp1
        .campaign("/flotilla/v1/leader", b"cp1".to_vec(), l1.id)
        .await
        .unwrap();
    let cp2c = cp2.clone();
    let second = tokio::spawn(async move {
        cp2c.campaign("/flotilla/v1/leader", b"cp2".to_vec(), l2.id)
            .await
    });
    // cp2 sees cp1 as leader while it waits.
    let leader = cp2.leader("/flotilla/v1/leader").await.unwrap().unwrap();
    assert_eq!(leader.value, b"cp1");
    assert!(!second.is_finished());

    // cp1 dies: its lease is revoked (as etcd would on expiry); cp2 takes over.
    cp1.lease_revoke(l1.id).await.unwrap();
    let k2 = tokio::time::timeout(common::PATIENCE, second)
        .await
        .expect("cp2 elected")
        .unwrap()
        .unwrap();
    assert!(k2.epoch() > k1.epoch());
    // cp1's in-flight write, fenced by its old epoch, is refused even through its own client.
    let resp = cp1
        .txn(
            Txn::new()
                .fenced_by(&k1)
                .and_then([Op::put("/flotilla/v1/clusters/c", "x")]),
        )
        .await
        .unwrap();
    assert!(!resp.succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_are_unavailable() {
    // A port nobody listens on (bound, then released).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = EtcdStore::connect(&[format!("http://127.0.0.1:{port}")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "STORE_UNAVAILABLE", "{err}");
}

//! Nameservers 1 → 3 → 1 under a running producer, with real processes and the real client.
//!
//! Scale-up: the new nameservers start, every broker's list is updated online and the broker
//! registers with each; no broker restarts. Scale-down: the leaving nameservers are first
//! taken out of every broker's list (online), and only then stopped, so brokers end with
//! exactly the current set. Every send is acknowledged throughout and every acknowledged
//! message is consumed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::v1::{BrokerMode, InstanceKind, WatchClustersRequest};
use flotilla_remoting::RemotingClient;
use flotilla_tests::broker_proc::{broker_config, create_topic, registered_at, route};
use flotilla_tests::fleet::{self, Fleet, alive, brokers, members, namesrv_addr, pids};
use flotilla_tests::rmq::{self, Client};
use flotilla_tests::wait_until;
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(120);

async fn broker_namesrv_addr(addr: &str) -> String {
    broker_config(&RemotingClient::default(), addr)
        .await
        .remove("namesrvAddr")
        .unwrap_or_default()
}

fn set_of(list: &str) -> BTreeSet<String> {
    list.split(';')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nameservers_one_three_one_under_load_without_a_broker_restart() {
    let fleet = Fleet::start(3).await;
    fleet
        .create_cluster(fleet::cluster("nsx", 1, 1, 1, BrokerMode::MasterSlave, &[]))
        .await;
    let c = fleet.wait_running("nsx").await;
    let ns0 = namesrv_addr(&c);
    let broker = brokers(&c).pop().expect("broker");
    let admin = RemotingClient::default();
    create_topic(&admin, &broker.address, "nsseq", 4, 6).await;
    wait_until("the nameserver routes nsseq", WAIT, || async {
        route(&admin, &ns0, "nsseq").await.map(|_| ())
    })
    .await
    .expect("route");

    // A producer that knows only the first nameserver (which stays throughout).
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (ns, stop) = (ns0.clone(), stop.clone());
        tokio::spawn(async move {
            let client = Client::new("ns-producer");
            let mut p = client.producer_with_timeout(&ns, "pg-nsx", 3000).await;
            let (mut tried, mut acked) = (0usize, BTreeSet::new());
            // Bounded: the test stops it long before.
            for i in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tried += 1;
                acked.extend(rmq::send_all(&p, "nsseq", [format!("n-{i}")], 20).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            p.shutdown().await;
            client.shutdown().await;
            (tried, acked)
        })
    };

    // 1 → 3.
    fleet
        .update_cluster("nsx", |s| {
            if let Some(ns) = s.nameserver.as_mut() {
                ns.replicas = 3;
            }
        })
        .await;
    let c = fleet
        .wait_cluster("nsx", "three nameservers running", |c| {
            fleet::is_running(c) && set_of(&namesrv_addr(c)).len() == 3
        })
        .await;
    let three = set_of(&namesrv_addr(&c));
    for ns in &three {
        wait_until(
            "the broker registered with every nameserver",
            WAIT,
            || async {
                registered_at(&admin, ns, &broker.address)
                    .await
                    .then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: {ns}\n{}", fleet.logs()));
    }
    assert_eq!(set_of(&broker_namesrv_addr(&broker.address).await), three);
    assert_eq!(pids(&c).get(&broker.name), Some(&broker.pid));
    let leaving: Vec<(String, i64)> = members(&c)
        .into_iter()
        .filter(|m| m.kind == InstanceKind::Namesrv as i32 && m.address != ns0)
        .map(|m| (m.address, m.pid))
        .collect();
    assert_eq!(leaving.len(), 2);

    // 3 → 1, watching every status the control plane writes.
    let mut watch = ClusterServiceClient::new(fleet.channel().await.expect("control plane"))
        .watch_clusters(WatchClustersRequest {
            revision: 0,
            name: "nsx".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    fleet
        .update_cluster("nsx", |s| {
            if let Some(ns) = s.nameserver.as_mut() {
                ns.replicas = 1;
            }
        })
        .await;
    // The first status whose nameserver list has shrunk still runs the leaving nameservers
    // (written in the same transaction as the brokers' new lists): they stop only after.
    let first = tokio::time::timeout(WAIT, async {
        while let Some(Ok(ev)) = watch.next().await {
            let Some(c) = ev.cluster else { continue };
            if c.status
                .as_ref()
                .is_some_and(|s| s.nameserver_addresses.len() == 1)
            {
                return Some(c);
            }
        }
        None
    })
    .await
    .expect("a status with one nameserver address")
    .expect("watch ended");
    let ns_members = members(&first)
        .iter()
        .filter(|m| m.kind == InstanceKind::Namesrv as i32)
        .count();
    assert_eq!(
        ns_members, 3,
        "the leaving nameservers were stopped together with the brokers' list change"
    );
    drop(watch);

    // While they go: a leaving nameserver is never dead while the broker still lists it
    // (liveness read first, then the broker's list, so a hit is a real violation).
    let start = tokio::time::Instant::now();
    for _ in 0..6000 {
        let dead: Vec<&String> = leaving
            .iter()
            .filter(|(_, p)| !alive(*p))
            .map(|(a, _)| a)
            .collect();
        let listed = set_of(&broker_namesrv_addr(&broker.address).await);
        for a in &dead {
            assert!(
                !listed.contains(*a),
                "nameserver {a} stopped while the broker still listed it: {listed:?}"
            );
        }
        if dead.len() == leaving.len() {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "the leaving nameservers never stopped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c = fleet
        .wait_cluster("nsx", "one nameserver left", |c| {
            fleet::is_running(c)
                && members(c)
                    .iter()
                    .filter(|m| m.kind == InstanceKind::Namesrv as i32)
                    .count()
                    == 1
        })
        .await;
    assert_eq!(namesrv_addr(&c), ns0);
    assert_eq!(broker_namesrv_addr(&broker.address).await, ns0);
    assert!(leaving.iter().all(|(_, p)| !alive(*p)));
    assert_eq!(
        pids(&c).get(&broker.name),
        Some(&broker.pid),
        "the broker was restarted"
    );
    assert!(alive(broker.pid));

    stop.store(true, Ordering::Relaxed);
    let (tried, acked) = producer.await.expect("producer task");
    assert_eq!(acked.len(), tried, "some sends were never acknowledged");
    assert!(tried > 10, "too few sends: {tried}");
    let client = Client::new("ns-consumer");
    rmq::consume_all(&client, &ns0, "cg-nsx", "nsseq", &acked, WAIT).await;
    client.shutdown().await;
}

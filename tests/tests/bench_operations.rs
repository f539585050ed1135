//! How long operations take with real processes: a nameserver change reaching every broker,
//! a broker-group scale-out serving, a topic migration of a drained backlog. Ignored by
//! default (a benchmark, not a test); numbers go to `control-plane/BENCHMARKS.md`.
//!
//! ```text
//! cargo build --workspace --bins
//! cargo nextest run -p flotilla-tests --test bench_operations --run-ignored only --no-capture
//! ```
//!
//! `FLOTILLA_BENCH_ROUNDS` (default 5) sets the number of nameserver changes measured.
//! Every wait is bounded; the fleet runs on loopback.
// Test helpers may unwrap: a panic is a benchmark failure with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flotilla_proto::v1::operation_service_client::OperationServiceClient;
use flotilla_proto::v1::topic_service_client::TopicServiceClient;
use flotilla_proto::v1::{
    BrokerMode, Cluster, GetOperationRequest, InstanceKind, ListOperationsRequest,
    MigrateTopicRequest, OperationPhase, operation_spec,
};
use flotilla_remoting::RemotingClient;
use flotilla_tests::broker_proc::{broker_config, create_topic, route};
use flotilla_tests::fleet::{self, Fleet, brokers, members, namesrv_addr};
use flotilla_tests::rmq::{self, Client};
use flotilla_tests::wait_until;

const WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(5);

async fn listed_nameservers(addr: &str) -> String {
    broker_config(&RemotingClient::default(), addr)
        .await
        .remove("namesrvAddr")
        .unwrap_or_default()
}

fn ns_ready(c: &Cluster, n: usize) -> bool {
    members(c)
        .iter()
        .filter(|m| m.kind == InstanceKind::Namesrv as i32 && m.ready)
        .count()
        == n
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name}: n={} min {} p50 {} max {}",
        v.len(),
        ms(v[0]),
        ms(p(0.5)),
        ms(v[v.len() - 1])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly (see the module docs)"]
async fn bench_operations() {
    let rounds: usize = std::env::var("FLOTILLA_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let fleet = Fleet::start(3).await;
    fleet
        .create_cluster(fleet::cluster(
            "bench",
            1,
            2,
            1,
            BrokerMode::MasterSlave,
            &[],
        ))
        .await;
    let c = fleet.wait_running("bench").await;
    let bs = brokers(&c);

    // 1. Nameserver 1 → 2: from the new nameserver Ready to every broker listing it.
    let (mut from_ready, mut from_update) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t0 = Instant::now();
        fleet
            .update_cluster("bench", |s| s.nameserver.as_mut().unwrap().replicas = 2)
            .await;
        let mut ready_at = None;
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "nameserver change never landed");
            let c = fleet.get_cluster("bench").await.expect("cluster");
            if ready_at.is_none() && ns_ready(&c, 2) {
                ready_at = Some(Instant::now());
            }
            let mut all = true;
            for b in &bs {
                all &= listed_nameservers(&b.address).await.split(';').count() == 2;
            }
            if all {
                let done = Instant::now();
                from_update.push(done - t0);
                from_ready.push(done.saturating_duration_since(ready_at.unwrap_or(done)));
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        fleet
            .update_cluster("bench", |s| s.nameserver.as_mut().unwrap().replicas = 1)
            .await;
        fleet
            .wait_cluster("bench", "back to one nameserver", |c| {
                fleet::is_running(c)
                    && members(c)
                        .iter()
                        .filter(|m| m.kind == InstanceKind::Namesrv as i32)
                        .count()
                        == 1
            })
            .await;
    }
    summary(
        "nameserver change: new nameserver Ready -> every broker lists it",
        from_ready,
    );
    summary(
        "nameserver change: UpdateCluster -> every broker lists it",
        from_update,
    );

    // 2. Scale-out 2 → 3 groups: until the new group is Ready and its metadata copy done.
    let admin = RemotingClient::default();
    create_topic(&admin, &bs[0].address, "benchtopic", 8, 6).await;
    let t0 = Instant::now();
    fleet
        .update_cluster("bench", |s| s.broker.as_mut().unwrap().groups = 3)
        .await;
    let c = fleet
        .wait_cluster("bench", "three groups Ready", |c| {
            fleet::is_running(c) && brokers(c).len() == 3
        })
        .await;
    let serving = t0.elapsed();
    let ops = OperationServiceClient::new(fleet.channel().await.expect("cp"));
    wait_until("scale-out copied", WAIT, || {
        let mut ops = ops.clone();
        async move {
            ops.list_operations(ListOperationsRequest {
                cluster: "bench".into(),
                include_done: true,
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .operations
            .into_iter()
            .find(|o| {
                matches!(
                    o.spec.as_ref().and_then(|s| s.kind.as_ref()),
                    Some(operation_spec::Kind::ScaleOut(_))
                ) && o.status.as_ref().is_some_and(|s| s.done)
            })
        }
    })
    .await
    .expect("scale-out done");
    let copied = t0.elapsed();
    println!(
        "scale-out 2 -> 3 groups: new group Ready {}, metadata copied {}",
        ms(serving),
        ms(copied)
    );

    // 3. Migration of a drained backlog (1000 messages produced and consumed first).
    fleet
        .create_cluster(fleet::cluster(
            "benchdst",
            1,
            1,
            1,
            BrokerMode::MasterSlave,
            &[],
        ))
        .await;
    fleet.wait_running("benchdst").await;
    let ns = namesrv_addr(&c);
    let src = brokers(&c);
    for b in &src {
        create_topic(&admin, &b.address, "moving", 4, 6).await;
    }
    wait_until("moving routed", WAIT, || async {
        route(&admin, &ns, "moving").await.map(|_| ())
    })
    .await
    .expect("route");
    let client = Client::new("bench-ops");
    let mut producer = client.producer(&ns, "pg-bench-ops").await;
    let sent = rmq::send_all(&producer, "moving", (0..1000).map(|i| format!("m-{i}")), 3).await;
    producer.shutdown().await;
    rmq::consume_all(&client, &ns, "cg-bench-ops", "moving", &sent, WAIT).await;
    client.shutdown().await;
    let t0 = Instant::now();
    let op = TopicServiceClient::new(fleet.channel().await.expect("cp"))
        .migrate_topic(MigrateTopicRequest {
            topic: "moving".into(),
            source_cluster: "bench".into(),
            target_cluster: "benchdst".into(),
            consumer_groups: vec!["cg-bench-ops".into()],
            keep_source: false,
            request_id: String::new(),
        })
        .await
        .expect("migration")
        .into_inner();
    let name = op.metadata.expect("metadata").name;
    let done = wait_until("migration done", WAIT, || {
        let mut ops = ops.clone();
        let name = name.clone();
        async move {
            let op = ops
                .get_operation(GetOperationRequest { name })
                .await
                .ok()?
                .into_inner();
            op.status.filter(|s| s.done)
        }
    })
    .await
    .expect("migration finished");
    assert_eq!(done.phase, OperationPhase::Succeeded as i32, "{done:?}");
    let steps: BTreeMap<usize, &String> = done.history.iter().enumerate().collect();
    println!(
        "topic migration, drained backlog of {} messages, {} source groups: {} ({} history lines)",
        sent.len(),
        src.len(),
        ms(t0.elapsed()),
        steps.len()
    );
}

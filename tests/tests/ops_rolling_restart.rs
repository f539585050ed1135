//! Rolling restarts as Operations, with real processes and the real client.
//!
//! - `RestartCluster` on a three-member DLedger group under a running producer: the
//!   nameserver first, then the followers, the leader last after handing leadership over;
//!   every member gets a new pid and every acknowledged message is consumed afterwards.
//! - A restart-only spec change that a broker cannot start with (`aclEnable=true` with no
//!   RocketMQ home for `conf/plain_acl.yml`, which our broker refuses) stops the roll at the
//!   first member (the slave): the operation FAILS naming it, the cluster turns Degraded with `RollFailed`, the master is
//!   never restarted and keeps taking writes; `RollbackOperation` restores the previous spec
//!   and rolls the slave back, leaving the cluster Running with the master's pid unchanged.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::v1::operation_service_client::OperationServiceClient;
use flotilla_proto::v1::{
    BrokerMode, ClusterPhase, ConditionStatus, GetOperationRequest, ListOperationsRequest,
    MemberRole, Operation, OperationPhase, RestartClusterRequest, ResumeOperationRequest,
    RollbackOperationRequest, UpdateClusterRequest, operation_spec,
};
use flotilla_remoting::RemotingClient;
use flotilla_tests::broker_proc::{create_topic, route, topic_queues};
use flotilla_tests::fleet::{self, Fleet, brokers, namesrv_addr, pids};
use flotilla_tests::rmq::{self, Client};
use flotilla_tests::wait_until;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(120);
// Under the 300 s nextest limit, so a stuck roll reports where it waits.
const ROLL_WAIT: Duration = Duration::from_secs(230);

async fn wait_done(ops: &OperationServiceClient<Channel>, name: &str, fleet: &Fleet) -> Operation {
    // The last answer is kept: on a time-out its history and handles say where the roll waits.
    let last = Arc::new(std::sync::Mutex::new(None::<Operation>));
    wait_until(&format!("operation {name} done"), ROLL_WAIT, || {
        let mut ops = ops.clone();
        let name = name.to_string();
        let last = last.clone();
        async move {
            let op = ops
                .get_operation(GetOperationRequest { name })
                .await
                .ok()?
                .into_inner();
            let done = op.status.as_ref().is_some_and(|s| s.done);
            if let Ok(mut l) = last.lock() {
                *l = Some(op.clone());
            }
            done.then_some(op)
        }
    })
    .await
    .unwrap_or_else(|e| {
        let seen = last.lock().ok().and_then(|l| l.clone());
        panic!(
            "{e}\nlast status: {:#?}\n{}",
            seen.and_then(|o| o.status),
            fleet.logs()
        )
    })
}

fn phase(op: &Operation) -> i32 {
    op.status.as_ref().map_or(0, |s| s.phase)
}

fn history(op: &Operation) -> Vec<String> {
    op.status
        .as_ref()
        .map(|s| s.history.clone())
        .unwrap_or_default()
}

/// Sends sequence-stamped bodies until `stop`, each retried (routes change while members
/// restart); returns the bodies the broker acknowledged.
fn produce_until(
    ns: String,
    topic: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<BTreeSet<String>> {
    tokio::spawn(async move {
        let client = Client::new("roll-producer");
        let mut producer = client.producer_with_timeout(&ns, "pg-roll", 3000).await;
        let mut acked = BTreeSet::new();
        // Bounded: at most 5000 messages, and the test stops it long before.
        for i in 0..5000 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            acked.extend(rmq::send_all(&producer, topic, [format!("seq-{i}")], 20).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        producer.shutdown().await;
        client.shutdown().await;
        acked
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_rolling_restart_of_a_dledger_group_under_load_loses_no_acknowledged_message() {
    let fleet = Fleet::start(3).await;
    fleet
        .create_cluster(fleet::cluster("roll", 1, 1, 3, BrokerMode::Dledger, &[]))
        .await;
    let c = fleet.wait_running("roll").await;
    let ns = namesrv_addr(&c);
    let admin = RemotingClient::default();
    let leader = brokers(&c)
        .into_iter()
        .find(|b| b.role == MemberRole::Leader as i32)
        .expect("a DLedger leader");
    // On the leader; the followers copy it (so whichever leads later has it).
    create_topic(&admin, &leader.address, "seq", 4, 6).await;
    for b in brokers(&c) {
        wait_until("a follower copied the topic", WAIT, || async {
            topic_queues(&admin, &b.address, "seq")
                .await
                .filter(|&q| q == 4)
        })
        .await
        .expect("topic on every member");
    }
    wait_until("the nameserver routes seq", WAIT, || async {
        route(&admin, &ns, "seq").await.map(|_| ())
    })
    .await
    .expect("route");
    let before = pids(&c);

    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_until(ns.clone(), "seq", stop.clone());

    let ch = fleet.channel().await.expect("control plane");
    let mut clusters = ClusterServiceClient::new(ch.clone());
    let mut ops = OperationServiceClient::new(ch);

    // A dry run answers the operation and starts nothing.
    let dry = clusters
        .restart_cluster(RestartClusterRequest {
            name: "roll".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry run")
        .into_inner();
    assert!(matches!(
        dry.spec.as_ref().and_then(|s| s.kind.as_ref()),
        Some(operation_spec::Kind::RollingRestart(_))
    ));
    let listed = ops
        .list_operations(ListOperationsRequest {
            cluster: "roll".into(),
            include_done: true,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .operations;
    assert!(
        listed.is_empty(),
        "a dry run stored an operation: {listed:?}"
    );
    // An unknown member is refused with its field path.
    let bad = clusters
        .restart_cluster(RestartClusterRequest {
            name: "roll".into(),
            members: vec!["roll-9-9".into()],
            ..Default::default()
        })
        .await
        .expect_err("unknown member");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("members[0]"), "{bad:?}");

    let op = clusters
        .restart_cluster(RestartClusterRequest {
            name: "roll".into(),
            reason: "test roll".into(),
            request_id: "roll-1".into(),
            ..Default::default()
        })
        .await
        .expect("restart accepted")
        .into_inner();
    let name = op.metadata.expect("metadata").name;
    let done = wait_done(&ops, &name, &fleet).await;
    let h = history(&done);
    assert_eq!(
        phase(&done),
        OperationPhase::Succeeded as i32,
        "{h:#?}\n{}",
        fleet.logs()
    );

    // Order: the nameserver, then the followers, the leader of the start last, after it
    // handed leadership over.
    let order: Vec<String> = done
        .status
        .as_ref()
        .and_then(|s| s.handles.get("order"))
        .expect("order handle")
        .split(',')
        .map(str::to_string)
        .collect();
    assert_eq!(order.len(), 4, "{order:?}");
    assert_eq!(order[0], "roll-namesrv-0", "{order:?}");
    assert_eq!(order[3], leader.name, "the leader restarts last: {order:?}");
    assert!(
        h.iter()
            .any(|l| l.starts_with(&format!("{}: leadership handed to", leader.name))),
        "{h:#?}"
    );
    let restarted_lines: Vec<&String> = h
        .iter()
        .filter(|l| l.contains(" restarted (pid "))
        .collect();
    assert_eq!(restarted_lines.len(), 4, "{h:#?}");

    let c = fleet.wait_running("roll").await;
    let after = pids(&c);
    for (m, pid) in &before {
        assert_ne!(after.get(m), Some(pid), "{m} was not restarted");
    }

    // A second look changes nothing: no member restarts again once the roll is over.
    let c2 = fleet.wait_running("roll").await;
    assert_eq!(pids(&c2), after);

    stop.store(true, Ordering::Relaxed);
    let acked = producer.await.expect("producer task");
    assert!(
        acked.len() > 20,
        "too few sends acknowledged: {}",
        acked.len()
    );
    let client = Client::new("roll-consumer");
    rmq::consume_all(&client, &ns, "cg-roll", "seq", &acked, WAIT).await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_cannot_start_stops_the_roll_and_rollback_restores_the_group() {
    let fleet = Fleet::start(2).await;
    fleet
        .create_cluster(fleet::cluster("bad", 1, 1, 2, BrokerMode::MasterSlave, &[]))
        .await;
    let c = fleet.wait_running("bad").await;
    let ns = namesrv_addr(&c);
    let master = brokers(&c)
        .into_iter()
        .find(|b| b.broker_id == 0)
        .expect("master");
    let slave = brokers(&c)
        .into_iter()
        .find(|b| b.broker_id != 0)
        .expect("slave");
    let admin = RemotingClient::default();
    create_topic(&admin, &master.address, "still", 4, 6).await;

    let ch = fleet.channel().await.expect("control plane");
    let mut clusters = ClusterServiceClient::new(ch.clone());
    let mut ops = OperationServiceClient::new(ch);

    // aclEnable is restart-only, and without a RocketMQ home our broker refuses to start with it.
    let mut next = fleet.get_cluster("bad").await.expect("cluster");
    next.status = None;
    if let Some(b) = next.spec.as_mut().and_then(|s| s.broker.as_mut()) {
        b.config.insert("aclEnable".into(), "true".into());
    }
    let r = clusters
        .update_cluster(UpdateClusterRequest {
            cluster: Some(next),
            request_id: "acl-on".into(),
            validate_only: false,
            force: false,
        })
        .await
        .expect("update accepted")
        .into_inner();
    let roll = r.operation.expect("a rolling restart operation");
    assert!(matches!(
        roll.spec.as_ref().and_then(|s| s.kind.as_ref()),
        Some(operation_spec::Kind::RollingRestart(_))
    ));
    let name = roll.metadata.expect("metadata").name;
    let failed = wait_done(&ops, &name, &fleet).await;
    let st = failed.status.clone().expect("status");
    assert_eq!(st.phase, OperationPhase::Failed as i32, "{:#?}", st.history);
    let err = st.error.expect("error");
    assert_eq!(err.reason, "ROLL_MEMBER_FAILED");
    assert!(err.message.contains(&slave.name), "{err:?}");

    // Degraded with the reason; the master never restarted and still takes writes.
    let c = fleet
        .wait_cluster("bad", "Degraded by the failed roll", |c| {
            c.status.as_ref().is_some_and(|s| {
                s.phase == ClusterPhase::Degraded as i32
                    && s.conditions.iter().any(|k| {
                        k.r#type == "Degraded"
                            && k.status == ConditionStatus::True as i32
                            && k.reason == "RollFailed"
                    })
            })
        })
        .await;
    assert_eq!(pids(&c).get(&master.name), Some(&master.pid));
    let sent = rmq::first_sends(&ns, "still-writable", "still", 5).await;
    assert_eq!(sent.len(), 5, "the master stopped taking writes");

    // Roll back: the previous spec comes back and the slave with it.
    let back = ops
        .rollback_operation(RollbackOperationRequest {
            name: name.clone(),
            request_id: "rollback-1".into(),
        })
        .await
        .expect("rollback accepted")
        .into_inner();
    assert_eq!(
        phase(back.operation.as_ref().expect("rolled-back operation")),
        OperationPhase::Cancelled as i32
    );
    let back_name = back
        .rollback
        .and_then(|o| o.metadata)
        .expect("rollback operation")
        .name;
    let done = wait_done(&ops, &back_name, &fleet).await;
    assert_eq!(
        phase(&done),
        OperationPhase::Succeeded as i32,
        "{:#?}\n{}",
        history(&done),
        fleet.logs()
    );
    let c = fleet.wait_running("bad").await;
    assert!(
        !c.spec
            .as_ref()
            .and_then(|s| s.broker.as_ref())
            .is_some_and(|b| b.config.contains_key("aclEnable"))
    );
    assert_eq!(
        pids(&c).get(&master.name),
        Some(&master.pid),
        "the master was restarted"
    );

    // The rolled-back operation is over: it cannot be resumed.
    let refused = ops
        .resume_operation(ResumeOperationRequest {
            name,
            request_id: String::new(),
        })
        .await
        .expect_err("resume of a cancelled roll");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
}

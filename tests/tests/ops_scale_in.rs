//! Scale-in as a durable Operation, with real processes: a control plane, three agents, real
//! brokers and the real RocketMQ client.
//!
//! - Refused (FAILED_PRECONDITION, `SCALE_IN_REFUSED`, naming the group and its lag) while a
//!   leaving group holds unconsumed messages; accepted once the consumers drained it; the
//!   workflow stops writes, waits, stops the group, which unregisters from the nameserver;
//!   the remaining group's broker is never restarted and keeps taking sends.
//! - Refused while a topic lives only on the leaving group; `force` starts it anyway.

use std::collections::BTreeSet;
use std::time::Duration;

use flotilla_proto::v1::operation_service_client::OperationServiceClient;
use flotilla_proto::v1::{
    BrokerMode, Cluster, OperationPhase, UpdateClusterRequest, UpdateClusterResponse,
    WaitOperationRequest,
};
use flotilla_remoting::RemotingClient;
use flotilla_tests::broker_proc::{cluster_info, create_topic, route};
use flotilla_tests::fleet::{self, Fleet, alive, brokers, namesrv_addr, pids};
use flotilla_tests::rmq::{self, Client};
use flotilla_tests::wait_until;
use tonic_types::StatusExt;

const WAIT: Duration = Duration::from_secs(90);

/// UpdateCluster with `groups` broker groups (and `force`), as a client would send it.
async fn scale_to(
    fleet: &Fleet,
    name: &str,
    groups: u32,
    force: bool,
) -> Result<UpdateClusterResponse, tonic::Status> {
    let mut c: Cluster = fleet.get_cluster(name).await.expect("cluster exists");
    if let Some(b) = c.spec.as_mut().and_then(|s| s.broker.as_mut()) {
        b.groups = groups;
    }
    c.status = None;
    fleet
        .clusters()
        .await
        .update_cluster(UpdateClusterRequest {
            cluster: Some(c),
            request_id: String::new(),
            validate_only: false,
            force,
        })
        .await
        .map(tonic::Response::into_inner)
}

fn refusal(status: &tonic::Status) -> String {
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "SCALE_IN_REFUSED");
    status.message().to_string()
}

/// Waits for the operation to end and checks it succeeded through every step.
async fn wait_succeeded(fleet: &Fleet, op: &str) {
    let ch = fleet.channel().await.expect("control plane");
    let ops = OperationServiceClient::new(ch);
    let done = wait_until("operation done", WAIT, || {
        let mut ops = ops.clone();
        async move {
            let o = ops
                .wait_operation(WaitOperationRequest {
                    name: op.to_string(),
                    timeout: Some(prost_types::Duration {
                        seconds: 5,
                        nanos: 0,
                    }),
                })
                .await
                .ok()?
                .into_inner();
            o.status.clone().filter(|s| s.done).map(|_| o)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
    let st = done.status.expect("status");
    assert_eq!(
        st.phase,
        OperationPhase::Succeeded as i32,
        "{st:#?}\n{}",
        fleet.logs()
    );
    for step in ["StopWrites", "WaitDrained", "StopMembers"] {
        assert!(
            st.history.iter().any(|h| h == &format!("{step} done")),
            "{step} in {:?}",
            st.history
        );
    }
    assert!(st.point_of_no_return_passed);
}

/// Brokers of `group` the nameserver lists.
async fn listed(ns: &str, group: &str) -> bool {
    cluster_info(&RemotingClient::default(), ns)
        .await
        .is_some_and(|ci| ci.broker_addr_table.contains_key(group))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_waits_for_consumers_and_never_loses_a_message() {
    let fleet = Fleet::start(3).await;
    fleet
        .create_cluster(fleet::cluster(
            "shop",
            1,
            2,
            1,
            BrokerMode::MasterSlave,
            &[],
        ))
        .await;
    let c = fleet.wait_running("shop").await;
    let ns = namesrv_addr(&c);
    let admin = RemotingClient::default();
    for b in brokers(&c) {
        create_topic(&admin, &b.address, "orders", 4, 6).await;
    }
    wait_until(
        "the nameserver routes orders to both groups",
        WAIT,
        || async {
            route(&admin, &ns, "orders")
                .await
                .filter(|r| r.broker_datas.len() == 2)
                .map(|_| ())
        },
    )
    .await
    .expect("route");
    let before = pids(&c);

    // Produce, consume everything, then produce more: cg-shop lags on both groups.
    let client = Client::new("scale-in");
    let mut producer = client.producer(&ns, "pg-shop").await;
    let first = rmq::send_all(&producer, "orders", (0..40).map(|i| format!("a-{i}")), 3).await;
    assert_eq!(first.len(), 40);
    rmq::consume_all(&client, &ns, "cg-shop", "orders", &first, WAIT).await;
    let second = rmq::send_all(&producer, "orders", (0..40).map(|i| format!("b-{i}")), 3).await;
    assert_eq!(second.len(), 40);

    let err = scale_to(&fleet, "shop", 1, false)
        .await
        .expect_err("refused while cg-shop lags on shop-1");
    let why = refusal(&err);
    assert!(why.contains("shop-1/cg-shop="), "{why}");

    // Consume the rest: the same request is accepted.
    rmq::consume_all(&client, &ns, "cg-shop", "orders", &second, WAIT).await;
    let resp = wait_until("scale-in accepted once drained", WAIT, || async {
        scale_to(&fleet, "shop", 1, false).await.ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
    let op = resp.operation.expect("a scale-in operation");
    let op_name = op.metadata.expect("metadata").name;
    wait_succeeded(&fleet, &op_name).await;

    let leaving = before
        .iter()
        .find(|(n, _)| n.starts_with("shop-1-"))
        .map(|(_, p)| *p)
        .expect("shop-1 member");
    let r = wait_until("shop-1 stopped", WAIT, || async {
        (!alive(leaving)).then_some(())
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
    let r = wait_until("shop-1 unregistered", WAIT, || async {
        (!listed(&ns, "shop-1").await).then_some(())
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));

    let c = fleet.wait_running("shop").await;
    let staying = brokers(&c);
    assert_eq!(staying.len(), 1);
    assert_eq!(
        before.get(&staying[0].name),
        Some(&staying[0].pid),
        "the remaining group was not restarted"
    );
    // Producers carry on with the remaining group.
    let third = rmq::send_all(&producer, "orders", (0..20).map(|i| format!("c-{i}")), 5).await;
    assert_eq!(third.len(), 20);
    let everything: BTreeSet<String> = third.clone();
    rmq::consume_all(&client, &ns, "cg-shop", "orders", &everything, WAIT).await;
    producer.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_of_the_last_group_of_a_topic_needs_force() {
    let fleet = Fleet::start(3).await;
    fleet
        .create_cluster(fleet::cluster("hub", 1, 2, 1, BrokerMode::MasterSlave, &[]))
        .await;
    let c = fleet.wait_running("hub").await;
    let admin = RemotingClient::default();
    let leaving = brokers(&c)
        .into_iter()
        .find(|b| b.group == "hub-1")
        .expect("hub-1 member");
    create_topic(&admin, &leaving.address, "lonely", 4, 6).await;

    let err = scale_to(&fleet, "hub", 1, false)
        .await
        .expect_err("refused: lonely lives only on hub-1");
    let why = refusal(&err);
    assert!(why.contains("lonely"), "{why}");

    let resp = scale_to(&fleet, "hub", 1, true).await.expect("force");
    let op = resp.operation.expect("a scale-in operation");
    wait_succeeded(&fleet, &op.metadata.expect("metadata").name).await;
    let r = wait_until("hub-1 stopped", WAIT, || async {
        (!alive(leaving.pid)).then_some(())
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
}

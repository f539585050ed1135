//! Scale-out with real processes: groups 1 → 2 together with nameservers 1 → 2 through
//! `UpdateCluster`. The existing broker keeps its pid; the new group gets the source group's
//! topics and subscription groups copied once by a ScaleOut operation; restarting the new
//! broker afterwards copies nothing again.

use std::time::Duration;

use flotilla_proto::v1::operation_service_client::OperationServiceClient;
use flotilla_proto::v1::{BrokerMode, ListOperationsRequest, OperationPhase, operation_spec};
use flotilla_remoting::{RemotingClient, RemotingCommand, request_code};
use flotilla_tests::broker_proc::{call, create_topic, topic_queues};
use flotilla_tests::fleet::{self, Fleet, alive, brokers, namesrv_addr, pids};
use flotilla_tests::wait_until;

const WAIT: Duration = Duration::from_secs(90);

async fn has_group(admin: &RemotingClient, addr: &str, group: &str) -> bool {
    let Some(r) = call(
        admin,
        addr,
        RemotingCommand::request(request_code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
    )
    .await
    else {
        return false;
    };
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v.get("subscriptionGroupTable")
        .and_then(|t| t.get(group))
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_groups_get_the_source_metadata_once_and_old_members_keep_running() {
    let fleet = Fleet::start(3).await;
    fleet
        .create_cluster(fleet::cluster(
            "grow",
            1,
            1,
            1,
            BrokerMode::MasterSlave,
            &[],
        ))
        .await;
    let c = fleet.wait_running("grow").await;
    let admin = RemotingClient::default();
    let source = brokers(&c).pop().expect("grow-0 member");
    create_topic(&admin, &source.address, "orders", 8, 6).await;
    let r = call(
        &admin,
        &source.address,
        RemotingCommand::request(request_code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(
            serde_json::to_vec(&serde_json::json!({
                "groupName": "cg-grow",
                "consumeEnable": true,
                "consumeFromMinEnable": true,
                "consumeBroadcastEnable": false,
                "retryQueueNums": 1,
                "retryMaxTimes": 5,
                "brokerId": 0,
                "whichBrokerWhenConsumeSlowly": 1
            }))
            .expect("json"),
        ),
    )
    .await
    .expect("create subscription group");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let before = pids(&c);

    fleet
        .update_cluster("grow", |s| {
            if let Some(ns) = s.nameserver.as_mut() {
                ns.replicas = 2;
            }
            if let Some(b) = s.broker.as_mut() {
                b.groups = 2;
            }
        })
        .await;
    let c = fleet
        .wait_cluster("grow", "two groups and two nameservers running", |c| {
            fleet::is_running(c) && brokers(c).len() == 2 && namesrv_addr(c).split(';').count() == 2
        })
        .await;
    assert_eq!(
        pids(&c).get(&source.name),
        before.get(&source.name),
        "the existing broker was not restarted"
    );
    assert!(alive(source.pid));

    // The ScaleOut operation ends Succeeded with the copy done.
    let ch = fleet.channel().await.expect("control plane");
    let ops = OperationServiceClient::new(ch);
    let op = wait_until("scale-out operation succeeded", WAIT, || {
        let mut ops = ops.clone();
        async move {
            ops.list_operations(ListOperationsRequest {
                cluster: "grow".into(),
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
                ) && o
                    .status
                    .as_ref()
                    .is_some_and(|s| s.done && s.phase == OperationPhase::Succeeded as i32)
            })
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
    let handles = op.status.expect("status").handles;
    assert_eq!(
        handles.get("copied/grow-1-0").map(String::as_str),
        Some("grow-0")
    );

    let new = brokers(&c)
        .into_iter()
        .find(|b| b.group == "grow-1")
        .expect("grow-1 member");
    assert_eq!(topic_queues(&admin, &new.address, "orders").await, Some(8));
    assert!(has_group(&admin, &new.address, "cg-grow").await);

    // Delete the copied topic on the new broker, then kill it: the agent restarts it and
    // nothing is copied again.
    let r = call(
        &admin,
        &new.address,
        RemotingCommand::request(request_code::DELETE_TOPIC_IN_BROKER).with_ext("topic", "orders"),
    )
    .await
    .expect("delete topic");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(new.pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the new broker");
    let c = fleet
        .wait_cluster("grow", "the new broker restarted", |c| {
            fleet::is_running(c)
                && brokers(c)
                    .iter()
                    .any(|b| b.name == new.name && b.pid > 0 && b.pid != new.pid)
        })
        .await;
    let restarted = brokers(&c)
        .into_iter()
        .find(|b| b.name == new.name)
        .expect("restarted member");
    assert_eq!(
        topic_queues(&admin, &restarted.address, "orders").await,
        None
    );
}

//! Topic migration between two clusters with real processes and the real client:
//! `TopicService.MigrateTopic` returns an Operation that creates the consumer group and the
//! topic on the target, makes the source read-only, waits until the group drained the
//! source, deletes the topic from the source brokers and nameserver, and creates the retry
//! topic on the target. Every message produced on the source is consumed; producers and
//! consumers carry on against the target.

use std::collections::BTreeSet;
use std::time::Duration;

use flotilla_proto::v1::operation_service_client::OperationServiceClient;
use flotilla_proto::v1::topic_service_client::TopicServiceClient;
use flotilla_proto::v1::{BrokerMode, GetOperationRequest, MigrateTopicRequest, OperationPhase};
use flotilla_remoting::RemotingClient;
use flotilla_tests::broker_proc::{create_topic, route, topic_queues};
use flotilla_tests::fleet::{self, Fleet, brokers, namesrv_addr};
use flotilla_tests::rmq::{self, Client};
use flotilla_tests::wait_until;

const WAIT: Duration = Duration::from_secs(90);

/// A fleet of three nodes running two one-group clusters, both Running.
async fn two_clusters(
    src: &str,
    dst: &str,
) -> (
    Fleet,
    flotilla_proto::v1::Cluster,
    flotilla_proto::v1::Cluster,
) {
    let fleet = Fleet::start(3).await;
    for name in [src, dst] {
        fleet
            .create_cluster(fleet::cluster(name, 1, 1, 1, BrokerMode::MasterSlave, &[]))
            .await;
    }
    let a = fleet.wait_running(src).await;
    let b = fleet.wait_running(dst).await;
    (fleet, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_moves_to_another_cluster_with_every_message_consumed() {
    let (fleet, src, dst) = two_clusters("src", "dst").await;
    let (src_ns, dst_ns) = (namesrv_addr(&src), namesrv_addr(&dst));
    let src_broker = brokers(&src).pop().expect("src broker");
    let dst_broker = brokers(&dst).pop().expect("dst broker");
    let admin = RemotingClient::default();
    create_topic(&admin, &src_broker.address, "orders", 6, 6).await;
    wait_until("the source nameserver routes orders", WAIT, || async {
        route(&admin, &src_ns, "orders").await.map(|_| ())
    })
    .await
    .expect("route");

    // cg-move consumed the topic on the source, then falls behind by 20 messages.
    let client = Client::new("migrate");
    let mut producer = client.producer(&src_ns, "pg-move").await;
    let first = rmq::send_all(&producer, "orders", (0..30).map(|i| format!("a-{i}")), 3).await;
    assert_eq!(first.len(), 30);
    rmq::consume_all(&client, &src_ns, "cg-move", "orders", &first, WAIT).await;
    let backlog = rmq::send_all(&producer, "orders", (0..20).map(|i| format!("b-{i}")), 3).await;
    assert_eq!(backlog.len(), 20);
    producer.shutdown().await;

    let ch = fleet.channel().await.expect("control plane");
    let op = TopicServiceClient::new(ch.clone())
        .migrate_topic(MigrateTopicRequest {
            topic: "orders".into(),
            source_cluster: "src".into(),
            target_cluster: "dst".into(),
            consumer_groups: Vec::new(),
            keep_source: false,
            request_id: "migrate-orders-1".into(),
        })
        .await
        .expect("migration accepted")
        .into_inner();
    let op_name = op.metadata.expect("metadata").name;
    let ops = OperationServiceClient::new(ch);

    // It waits in WaitDrained until the backlog is consumed on the source.
    let r = wait_until("migration waits for the backlog", WAIT, || {
        let mut ops = ops.clone();
        let name = op_name.clone();
        async move {
            let o = ops
                .get_operation(GetOperationRequest { name })
                .await
                .ok()?
                .into_inner();
            let st = o.status?;
            (st.step == "WaitDrained"
                && st.handles.get("lag/src-0/cg-move").map(String::as_str) == Some("20"))
            .then_some(())
        }
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
    assert!(topic_queues(&admin, &dst_broker.address, "orders").await == Some(6));
    rmq::consume_all(&client, &src_ns, "cg-move", "orders", &backlog, WAIT).await;

    let done = wait_until("migration done", WAIT, || {
        let mut ops = ops.clone();
        let name = op_name.clone();
        async move {
            let o = ops
                .get_operation(GetOperationRequest { name })
                .await
                .ok()?
                .into_inner();
            o.status.filter(|s| s.done)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
    assert_eq!(
        done.phase,
        OperationPhase::Succeeded as i32,
        "{done:#?}\n{}",
        fleet.logs()
    );
    assert!(done.point_of_no_return_passed);
    // The source holds no copy: not on its broker, not in its nameserver's routes.
    assert_eq!(
        topic_queues(&admin, &src_broker.address, "orders").await,
        None
    );
    assert!(route(&admin, &src_ns, "orders").await.is_none());
    // The target has the topic with the source's queues, and the group's retry topic.
    assert_eq!(
        topic_queues(&admin, &dst_broker.address, "orders").await,
        Some(6)
    );
    assert!(
        topic_queues(&admin, &dst_broker.address, "%RETRY%cg-move")
            .await
            .is_some()
    );

    // Clients carry on against the target.
    let mut producer = client.producer(&dst_ns, "pg-move").await;
    let later: BTreeSet<String> =
        rmq::send_all(&producer, "orders", (0..20).map(|i| format!("c-{i}")), 5).await;
    assert_eq!(later.len(), 20);
    rmq::consume_all(&client, &dst_ns, "cg-move", "orders", &later, WAIT).await;
    producer.shutdown().await;
    client.shutdown().await;
}

/// `flotilla migrate topic` follows the operation to the end with a line per step;
/// `flotilla operation get -o json` shows it Succeeded; cancelling it then is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_follows_a_migration_to_completion() {
    let (fleet, left, _) = two_clusters("left", "right").await;
    let admin = RemotingClient::default();
    let src = brokers(&left).pop().expect("left broker");
    create_topic(&admin, &src.address, "events", 4, 6).await;

    let run = |args: Vec<String>| {
        let server = fleet.cp_addr.clone();
        async move {
            tokio::process::Command::new(flotilla_tests::bin_path("flotilla"))
                .args(&args)
                .env("FLOTILLA_SERVER", server)
                .output()
                .await
                .expect("run flotilla")
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let out = run(s(&[
        "migrate", "topic", "events", "--from", "left", "--to", "right",
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Succeeded: step 7/7 CreateRetryTopicOnTarget"),
        "{stdout}"
    );
    let op = stdout
        .split_whitespace()
        .find(|w| w.starts_with("op-"))
        .expect("operation name printed")
        .to_string();
    let out = run(s(&["operation", "get", &op, "-o", "json"])).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["phase"], "Succeeded");
    assert_eq!(v["kind"], "MigrateTopic");
    assert_eq!(v["point_of_no_return_passed"], true);
    let out = run(s(&["operation", "cancel", &op])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OPERATION_NOT_CANCELLABLE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(topic_queues(&admin, &src.address, "events").await, None);
}

/// The perm of `topic` on the broker at `addr` (GET_ALL_TOPIC_CONFIG).
async fn topic_perm(admin: &RemotingClient, addr: &str, topic: &str) -> Option<i64> {
    use flotilla_remoting::{RemotingCommand, request_code};
    let r = flotilla_tests::broker_proc::call(
        admin,
        addr,
        RemotingCommand::request(request_code::GET_ALL_TOPIC_CONFIG),
    )
    .await?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v.get("topicConfigTable")?.get(topic)?.get("perm")?.as_i64()
}

/// Two one-group clusters `src` and `dst`, topic `topic` on the source (routed), consumed
/// once by `group`, then a backlog of 10 more messages.
struct Backlogged {
    fleet: Fleet,
    ns: String,
    broker: String,
    admin: RemotingClient,
    client: Client,
    producer: rocketmq_client_rust::DefaultMQProducer,
    backlog: BTreeSet<String>,
}

async fn backlogged(src: &str, dst: &str, topic: &str, group: &str) -> Backlogged {
    let (fleet, c, _) = two_clusters(src, dst).await;
    let ns = namesrv_addr(&c);
    let broker = brokers(&c).pop().expect("broker").address;
    let admin = RemotingClient::default();
    create_topic(&admin, &broker, topic, 4, 6).await;
    wait_until("route", WAIT, || async {
        route(&admin, &ns, topic).await.map(|_| ())
    })
    .await
    .expect("route");
    let client = Client::new(topic);
    let producer = client.producer(&ns, &format!("pg-{topic}")).await;
    // A new producer may need a route refresh or two before its first send goes through.
    let first = rmq::send_all(&producer, topic, (0..10).map(|i| format!("x-{i}")), 30).await;
    assert_eq!(first.len(), 10);
    rmq::consume_all(&client, &ns, group, topic, &first, WAIT).await;
    let backlog = rmq::send_all(&producer, topic, (0..10).map(|i| format!("y-{i}")), 3).await;
    assert_eq!(backlog.len(), 10);
    Backlogged {
        fleet,
        ns,
        broker,
        admin,
        client,
        producer,
        backlog,
    }
}

/// Cancel while the migration waits for consumers: the source gets its write permission
/// back and keeps the topic; producers send to it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_the_point_of_no_return_leaves_the_source_as_it_was() {
    let Backlogged {
        fleet,
        ns,
        broker,
        admin,
        client,
        mut producer,
        backlog,
    } = backlogged("from", "into", "audit", "cg-audit").await;
    let ch = fleet.channel().await.expect("control plane");
    let op = TopicServiceClient::new(ch.clone())
        .migrate_topic(MigrateTopicRequest {
            topic: "audit".into(),
            source_cluster: "from".into(),
            target_cluster: "into".into(),
            consumer_groups: vec!["cg-audit".into()],
            keep_source: false,
            request_id: String::new(),
        })
        .await
        .expect("accepted")
        .into_inner();
    let name = op.metadata.expect("metadata").name;
    let mut ops = OperationServiceClient::new(ch);
    wait_until("waiting for the backlog", WAIT, || {
        let mut ops = ops.clone();
        let name = name.clone();
        async move {
            let st = ops
                .get_operation(GetOperationRequest { name })
                .await
                .ok()?
                .into_inner()
                .status?;
            (st.step == "WaitDrained").then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
    assert_eq!(topic_perm(&admin, &broker, "audit").await, Some(4));

    ops.cancel_operation(flotilla_proto::v1::CancelOperationRequest {
        name: name.clone(),
        request_id: String::new(),
    })
    .await
    .expect("cancel before the point of no return");
    let st = wait_until("cancelled", WAIT, || {
        let mut ops = ops.clone();
        let name = name.clone();
        async move {
            ops.get_operation(GetOperationRequest { name })
                .await
                .ok()?
                .into_inner()
                .status
                .filter(|s| s.done)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
    assert_eq!(st.phase, OperationPhase::Cancelled as i32, "{st:#?}");
    assert!(!st.point_of_no_return_passed);
    assert_eq!(topic_perm(&admin, &broker, "audit").await, Some(6));
    // Producers write to the source again, and the backlog is still there to consume.
    let more = rmq::send_all(&producer, "audit", (0..5).map(|i| format!("z-{i}")), 10).await;
    assert_eq!(more.len(), 5);
    let all: BTreeSet<String> = backlog.union(&more).cloned().collect();
    rmq::consume_all(&client, &ns, "cg-audit", "audit", &all, WAIT).await;
    producer.shutdown().await;
    client.shutdown().await;
}

async fn op_status(fleet: &Fleet, name: &str) -> Option<flotilla_proto::v1::OperationStatus> {
    OperationServiceClient::new(fleet.channel().await?)
        .get_operation(GetOperationRequest {
            name: name.to_string(),
        })
        .await
        .ok()?
        .into_inner()
        .status
}

/// The control plane restarts while a migration waits for consumers: the new process
/// resumes the operation at its recorded step and finishes it once the backlog is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_resumes_after_a_control_plane_restart() {
    let Backlogged {
        mut fleet,
        ns,
        broker,
        admin,
        client,
        mut producer,
        backlog,
    } = backlogged("old", "new", "bills", "cg-bills").await;
    producer.shutdown().await;
    let ch = fleet.channel().await.expect("control plane");
    let op = TopicServiceClient::new(ch)
        .migrate_topic(MigrateTopicRequest {
            topic: "bills".into(),
            source_cluster: "old".into(),
            target_cluster: "new".into(),
            consumer_groups: Vec::new(),
            keep_source: false,
            request_id: String::new(),
        })
        .await
        .expect("accepted")
        .into_inner();
    let name = op.metadata.expect("metadata").name;
    wait_until("waiting for the backlog", WAIT, || async {
        op_status(&fleet, &name)
            .await
            .filter(|s| s.step == "WaitDrained")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));

    fleet.stop_cp();
    fleet.start_cp().await;
    // The restarted control plane finds the operation where it was.
    let st = wait_until("the operation is read back", WAIT, || async {
        op_status(&fleet, &name).await
    })
    .await
    .expect("operation");
    assert_eq!(st.step, "WaitDrained", "{st:#?}");
    rmq::consume_all(&client, &ns, "cg-bills", "bills", &backlog, WAIT).await;
    let st = wait_until("the migration finishes", WAIT, || async {
        op_status(&fleet, &name).await.filter(|s| s.done)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
    assert_eq!(st.phase, OperationPhase::Succeeded as i32, "{st:#?}");
    // Each step ran to completion once: the history names each exactly once.
    for step in [
        "CreateGroupsOnTarget",
        "CreateTopicOnTarget",
        "StopWritesOnSource",
        "WaitDrained",
        "DeleteTopicOnSource",
    ] {
        let n = st
            .history
            .iter()
            .filter(|h| **h == format!("{step} done"))
            .count();
        assert_eq!(n, 1, "{step} in {:?}", st.history);
    }
    assert_eq!(topic_queues(&admin, &broker, "bills").await, None);
    client.shutdown().await;
}

/// The migration's steps in order (control-plane/server/src/workflow/migrate_topic.rs).
const MIGRATION_STEPS: [&str; 7] = [
    "CreateGroupsOnTarget",
    "CreateTopicOnTarget",
    "StopWritesOnSource",
    "WaitDrained",
    "DeleteTopicOnSource",
    "DeleteGroupsOnSource",
    "CreateRetryTopicOnTarget",
];

fn crash_after(step: &str) -> Vec<(String, String)> {
    vec![(
        flotilla_cp::failpoints::ENV.to_string(),
        format!("workflow-after-step=return({step})"),
    )]
}

/// The control plane dies right after each step is recorded, one step per run (a fail
/// point makes it exit there, where a SIGKILL cannot be aimed); each restarted control
/// plane resumes at the next step. The migration completes, each step ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_completes_with_the_control_plane_dying_after_every_step() {
    let Backlogged {
        mut fleet,
        ns,
        broker,
        admin,
        client,
        mut producer,
        backlog,
    } = backlogged("was", "now", "logs", "cg-logs").await;
    producer.shutdown().await;
    rmq::consume_all(&client, &ns, "cg-logs", "logs", &backlog, WAIT).await;

    fleet.stop_cp();
    fleet.cp_env = crash_after(MIGRATION_STEPS[0]);
    fleet.start_cp().await;
    let ch = fleet.channel().await.expect("control plane");
    let op = TopicServiceClient::new(ch)
        .migrate_topic(MigrateTopicRequest {
            topic: "logs".into(),
            source_cluster: "was".into(),
            target_cluster: "now".into(),
            consumer_groups: Vec::new(),
            keep_source: false,
            request_id: "migrate-logs-1".into(),
        })
        .await
        .expect("accepted")
        .into_inner();
    let name = op.metadata.expect("metadata").name;
    for (i, step) in MIGRATION_STEPS.iter().enumerate() {
        let exit = fleet.wait_cp_exit(0, WAIT).await.unwrap_or_else(|| {
            panic!(
                "the control plane did not stop after {step}\n{}",
                fleet.logs()
            )
        });
        assert_eq!(
            exit.code(),
            Some(flotilla_cp::failpoints::EXIT_CODE),
            "after {step}: {exit:?}\n{}",
            fleet.logs()
        );
        fleet.cp_env = MIGRATION_STEPS
            .get(i + 1)
            .map(|next| crash_after(next))
            .unwrap_or_default();
        fleet.start_cp().await;
        let st = wait_until("the operation is read back", WAIT, || async {
            op_status(&fleet, &name).await
        })
        .await
        .expect("operation");
        // What the store recorded before the exit: this step done, nothing after it.
        assert!(
            st.history.iter().any(|h| *h == format!("{step} done")),
            "{step}: {:?}",
            st.history
        );
        if let Some(next) = MIGRATION_STEPS.get(i + 2) {
            assert!(
                !st.history.iter().any(|h| *h == format!("{next} done")),
                "{next} ran before its turn: {:?}",
                st.history
            );
        }
    }
    let st = wait_until("the migration finishes", WAIT, || async {
        op_status(&fleet, &name).await.filter(|s| s.done)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
    assert_eq!(st.phase, OperationPhase::Succeeded as i32, "{st:#?}");
    for step in MIGRATION_STEPS {
        let n = st
            .history
            .iter()
            .filter(|h| **h == format!("{step} done"))
            .count();
        assert_eq!(n, 1, "{step} in {:?}", st.history);
    }
    assert_eq!(topic_queues(&admin, &broker, "logs").await, None);
    client.shutdown().await;
}

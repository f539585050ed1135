//! Admin requests the broker relays to one consumer on that consumer's own connection, as
//! Java's `AdminBrokerProcessor.callConsumer` does, against a real `flotilla-broker` and a
//! real push consumer of `rocketmq-client-rust`:
//!
//! - GET_CONSUMER_RUNNING_INFO (307): the client's `ConsumerRunningInfo` JSON comes back
//!   and names the topic the consumer subscribes.
//! - CONSUME_MESSAGE_DIRECTLY (309): the broker reads the message by its offset id and the
//!   consumer's listener consumes it (a topic the consumer does not subscribe, so only the
//!   relay can have delivered it); the answer is the client's `ConsumeMessageDirectlyResult`
//!   with `CR_SUCCESS`.
//! - An unknown client id is SYSTEM_ERROR "The Consumer <group> <clientId> not online"; an
//!   unknown or malformed message id is SYSTEM_ERROR naming the id.

use std::time::Duration;

use flotilla_remoting::{RemotingClient, RemotingCommand, request_code};
use flotilla_tests::broker_proc::{self as bp, Namesrv};
use flotilla_tests::rmq::{Client, Collector};
use flotilla_tests::{free_broker_port, temp_dir, wait_for_port, wait_until};
use rocketmq_client_rust::MQPushConsumer;

const WAIT: Duration = Duration::from_secs(30);
const SYSTEM_ERROR: i32 = 1;
const GROUP: &str = "cg-relay";

fn json(r: &RemotingCommand) -> serde_json::Value {
    flotilla_remoting::fastjson::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("a JSON body ({e}): {}", String::from_utf8_lossy(&r.body)))
}

fn running_info(client_id: &str) -> RemotingCommand {
    RemotingCommand::request(request_code::GET_CONSUMER_RUNNING_INFO)
        .with_ext("consumerGroup", GROUP)
        .with_ext("clientId", client_id)
        .with_ext("jstackEnable", false)
}

fn directly(client_id: &str, msg_id: &str) -> RemotingCommand {
    RemotingCommand::request(request_code::CONSUME_MESSAGE_DIRECTLY)
        .with_ext("consumerGroup", GROUP)
        .with_ext("clientId", client_id)
        .with_ext("msgId", msg_id)
        .with_ext("brokerName", "broker-relay")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_relays_admin_requests_to_the_consumer() {
    let root = temp_dir("broker-admin-relay");
    let ns = Namesrv::start(root.path(), "ns");
    let dir = root.path().join("broker");
    std::fs::create_dir_all(&dir).expect("broker dir");
    let port = free_broker_port();
    let base = format!(
        "brokerClusterName=RelayCluster\nbrokerName=broker-relay\nbrokerId=0\n\
         namesrvAddr={}\nlistenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
         storePathRootDir={}\nmappedFileSizeCommitLog=67108864\n",
        ns.addr,
        dir.join("store").display()
    );
    let conf = bp::write_conf(&dir, &base, &[]);
    let _proc = bp::spawn_broker(&dir, &conf, "broker-relay");
    let addr = format!("127.0.0.1:{port}");
    wait_for_port(&addr, WAIT).await.expect("broker listens");
    let admin = RemotingClient::default();
    bp::create_topic(&admin, &addr, "RelayTopic", 2, 6).await;
    bp::create_topic(&admin, &addr, "DirectTopic", 1, 6).await;
    wait_until("RelayTopic routed", WAIT, || {
        let (admin, ns) = (&admin, &ns.addr);
        async move { bp::route(admin, ns, "RelayTopic").await }
    })
    .await
    .expect("route");

    let client = Client::new("relay");
    let collector = Collector::default();
    let mut consumer = client.push_consumer(&ns.addr, GROUP).build();
    consumer
        .subscribe("RelayTopic", "*")
        .await
        .expect("subscribe");
    consumer.register_message_listener_concurrently(collector.clone());
    consumer.start().await.expect("consumer start");

    // The consumer's client id, once its heartbeat has arrived.
    let client_id = wait_until("consumer registered", WAIT, || {
        let (admin, addr) = (&admin, &addr);
        async move {
            let r = bp::call(
                admin,
                addr,
                RemotingCommand::request(request_code::GET_CONSUMER_LIST_BY_GROUP)
                    .with_ext("consumerGroup", GROUP),
            )
            .await?;
            (r.code == 0).then_some(())?;
            let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            v["consumerIdList"][0].as_str().map(str::to_string)
        }
    })
    .await
    .expect("client id");

    // GET_CONSUMER_RUNNING_INFO: the client's own ConsumerRunningInfo.
    let r = bp::call(&admin, &addr, running_info(&client_id))
        .await
        .expect("answered");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let v = json(&r);
    let topics: Vec<&str> = v["subscriptionSet"]
        .as_array()
        .unwrap_or_else(|| panic!("subscriptionSet in {v}"))
        .iter()
        .filter_map(|s| s["topic"].as_str())
        .collect();
    assert!(topics.contains(&"RelayTopic"), "{v}");

    // CONSUME_MESSAGE_DIRECTLY of a message on a topic the consumer does not subscribe.
    let sent = bp::send_raw(&admin, &addr, "DirectTopic", "direct-1")
        .await
        .expect("send answered");
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    let msg_id = sent.ext("msgId").expect("msgId").to_string();
    assert!(!collector.distinct().contains("direct-1"));
    let r = bp::call(&admin, &addr, directly(&client_id, &msg_id))
        .await
        .expect("answered");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let v = json(&r);
    // The broker relays the client's answer as is; rocketmq-client-rust 1.0 writes this body
    // with snake_case keys where Java's client writes `consumeResult`.
    let result = v.get("consumeResult").or_else(|| v.get("consume_result"));
    assert_eq!(result, Some(&serde_json::json!("CR_SUCCESS")), "{v}");
    assert!(
        collector.distinct().contains("direct-1"),
        "the listener saw {:?}",
        collector.distinct()
    );

    // An unknown client id: Java's SYSTEM_ERROR and text, for both codes.
    let r = bp::call(&admin, &addr, running_info("10.0.0.1@nobody"))
        .await
        .expect("answered");
    assert_eq!(r.code, SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("The Consumer <cg-relay> <10.0.0.1@nobody> not online")
    );
    let r = bp::call(&admin, &addr, directly("10.0.0.1@nobody", &msg_id))
        .await
        .expect("answered");
    assert_eq!(r.code, SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("The Consumer <cg-relay> <10.0.0.1@nobody> not online")
    );

    // An unknown message: the same store host, an offset past the end of the CommitLog.
    let unknown = format!(
        "{}{:016X}",
        msg_id.get(..msg_id.len() - 16).expect("offset id"),
        1_i64 << 40
    );
    let r = bp::call(&admin, &addr, directly(&client_id, &unknown))
        .await
        .expect("answered");
    assert_eq!(r.code, SYSTEM_ERROR);
    let remark = r.remark.unwrap_or_default();
    assert!(
        remark.contains("can not find message") && remark.contains(&unknown),
        "{remark}"
    );
    let r = bp::call(&admin, &addr, directly(&client_id, "not-a-message-id"))
        .await
        .expect("answered");
    assert_eq!(r.code, SYSTEM_ERROR);
    assert!(
        r.remark
            .as_deref()
            .is_some_and(|m| m.contains("not an offset message id")),
        "{:?}",
        r.remark
    );

    consumer.shutdown().await;
    client.shutdown().await;
}

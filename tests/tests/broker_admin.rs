//! Admin codes RocketMQ's tools use, answered as Java's `AdminBrokerProcessor` answers them,
//! field by field, against a real `flotilla-broker`:
//!
//! - GET_TOPIC_CONFIG (351): the topic's `TopicConfig` (`topicName`, `readQueueNums`,
//!   `writeQueueNums`, `perm`, …); an unknown topic is TOPIC_NOT_EXIST with Java's remark.
//! - QUERY_TOPIC_CONSUME_BY_WHO (300): `GroupList.groupList`, groups with offsets on the topic
//!   (and online subscribers).
//! - QUERY_TOPICS_BY_CONSUMER (343): `TopicList.topicList` and `brokerAddr`.
//! - CLONE_GROUP_OFFSET (314): `srcGroup`'s committed offsets copied to `destGroup`.
//! - An unknown code is still REQUEST_CODE_NOT_SUPPORTED.

use std::time::Duration;

use flotilla_remoting::{RemotingClient, RemotingCommand, request_code};
use flotilla_tests::broker_proc::{self as bp, Namesrv};
use flotilla_tests::{free_broker_port, temp_dir, wait_for_port};

const WAIT: Duration = Duration::from_secs(30);
const TOPIC_NOT_EXIST: i32 = 17;
const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;

fn json(r: &RemotingCommand) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_admin_codes_answer_as_java() {
    let root = temp_dir("broker-admin");
    let ns = Namesrv::start(root.path(), "ns");
    let dir = root.path().join("broker");
    std::fs::create_dir_all(&dir).expect("broker dir");
    let port = free_broker_port();
    let base = format!(
        "brokerClusterName=AdminCluster\nbrokerName=broker-admin\nbrokerId=0\n\
         namesrvAddr={}\nlistenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
         storePathRootDir={}\nmappedFileSizeCommitLog=67108864\n",
        ns.addr,
        dir.join("store").display()
    );
    let conf = bp::write_conf(&dir, &base, &[]);
    let _proc = bp::spawn_broker(&dir, &conf, "broker-admin");
    let addr = format!("127.0.0.1:{port}");
    wait_for_port(&addr, WAIT).await.expect("broker listens");
    let admin = RemotingClient::default();
    bp::create_topic(&admin, &addr, "AdminTopic", 2, 6).await;

    // GET_TOPIC_CONFIG.
    let r = bp::call(
        &admin,
        &addr,
        RemotingCommand::request(request_code::GET_TOPIC_CONFIG).with_ext("topic", "AdminTopic"),
    )
    .await
    .expect("answered");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let v = json(&r);
    assert_eq!(v["topicName"], "AdminTopic");
    assert_eq!(v["readQueueNums"], 2);
    assert_eq!(v["writeQueueNums"], 2);
    assert_eq!(v["perm"], 6);
    assert_eq!(v["topicFilterType"], "SINGLE_TAG");
    assert_eq!(v["order"], false);
    let r = bp::call(
        &admin,
        &addr,
        RemotingCommand::request(request_code::GET_TOPIC_CONFIG).with_ext("topic", "Nope"),
    )
    .await
    .expect("answered");
    assert_eq!(r.code, TOPIC_NOT_EXIST);
    assert_eq!(
        r.remark.as_deref(),
        Some("No topic in this broker. topic: Nope")
    );

    // A group with an offset on the topic.
    let r = bp::call(
        &admin,
        &addr,
        RemotingCommand::request(request_code::UPDATE_CONSUMER_OFFSET)
            .with_ext("consumerGroup", "cg-admin")
            .with_ext("topic", "AdminTopic")
            .with_ext("queueId", 1)
            .with_ext("commitOffset", 0),
    )
    .await
    .expect("answered");
    assert_eq!(r.code, 0, "{:?}", r.remark);

    let r = bp::call(
        &admin,
        &addr,
        RemotingCommand::request(request_code::QUERY_TOPIC_CONSUME_BY_WHO)
            .with_ext("topic", "AdminTopic"),
    )
    .await
    .expect("answered");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    assert_eq!(json(&r)["groupList"], serde_json::json!(["cg-admin"]));

    let r = bp::call(
        &admin,
        &addr,
        RemotingCommand::request(request_code::QUERY_TOPICS_BY_CONSUMER)
            .with_ext("group", "cg-admin"),
    )
    .await
    .expect("answered");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let v = json(&r);
    assert_eq!(v["topicList"], serde_json::json!(["AdminTopic"]));
    assert_eq!(v["brokerAddr"], addr.as_str());

    // CLONE_GROUP_OFFSET: cg-admin's offset (queue 1 → 0) copied to cg-clone.
    let r = bp::call(
        &admin,
        &addr,
        RemotingCommand::request(request_code::CLONE_GROUP_OFFSET)
            .with_ext("srcGroup", "cg-admin")
            .with_ext("destGroup", "cg-clone")
            .with_ext("offline", false),
    )
    .await
    .expect("answered");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let r = bp::call(
        &admin,
        &addr,
        RemotingCommand::request(request_code::QUERY_CONSUMER_OFFSET)
            .with_ext("consumerGroup", "cg-clone")
            .with_ext("topic", "AdminTopic")
            .with_ext("queueId", 1),
    )
    .await
    .expect("answered");
    assert_eq!((r.code, r.ext("offset")), (0, Some("0")), "{:?}", r.remark);
    let r = bp::call(
        &admin,
        &addr,
        RemotingCommand::request(request_code::QUERY_TOPIC_CONSUME_BY_WHO)
            .with_ext("topic", "AdminTopic"),
    )
    .await
    .expect("answered");
    assert_eq!(
        json(&r)["groupList"],
        serde_json::json!(["cg-admin", "cg-clone"])
    );

    let r = bp::call(&admin, &addr, RemotingCommand::request(9999))
        .await
        .expect("answered");
    assert_eq!(r.code, REQUEST_CODE_NOT_SUPPORTED);
}

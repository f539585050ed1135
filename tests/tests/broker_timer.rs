//! Timer messages (RocketMQ 5's `TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`, `TIMER_DELAY_MS`, and
//! the older `__STARTDELIVERTIME`) against a real `flotilla-broker`.
//!
//! The broker has no timer store yet, so it must not take such a message and deliver it at
//! once (what it used to do, silently): every send carrying one — single or inside a batch —
//! is refused with SYSTEM_ERROR and a remark naming the property, as a Java broker with its
//! timer wheel off answers, and nothing reaches the topic. Ordinary sends and the classic
//! delay levels are untouched.

use std::path::Path;
use std::time::Duration;

use flotilla_remoting::{RemotingClient, RemotingCommand, request_code};
use flotilla_tests::broker_proc::{self as bp, Namesrv};
use flotilla_tests::{Proc, free_broker_port, temp_dir, wait_for_port};

const WAIT: Duration = Duration::from_secs(30);
const TOPIC: &str = "TimerTopic";
const SYSTEM_ERROR: i32 = 1;

fn send(topic: &str, properties: &str, body: &[u8]) -> RemotingCommand {
    RemotingCommand::request(request_code::SEND_MESSAGE)
        .with_ext("producerGroup", "pg-timer")
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("defaultTopicQueueNums", 1)
        .with_ext("queueId", 0)
        .with_ext("sysFlag", 0)
        .with_ext("bornTimestamp", 1)
        .with_ext("flag", 0)
        .with_ext("properties", properties)
        .with_body(body.to_vec())
}

/// One message of a SEND_BATCH_MESSAGE body (the client's batch encoding).
fn batch_item(body: &[u8], props: &str) -> Vec<u8> {
    let total = 20 + body.len() + 2 + props.len();
    let mut v = Vec::new();
    v.extend_from_slice(&i32::try_from(total).expect("small").to_be_bytes());
    v.extend_from_slice(&0i32.to_be_bytes()); // magic
    v.extend_from_slice(&0i32.to_be_bytes()); // body CRC
    v.extend_from_slice(&0i32.to_be_bytes()); // flag
    v.extend_from_slice(&i32::try_from(body.len()).expect("small").to_be_bytes());
    v.extend_from_slice(body);
    v.extend_from_slice(&i16::try_from(props.len()).expect("small").to_be_bytes());
    v.extend_from_slice(props.as_bytes());
    v
}

fn prop(k: &str, v: &str) -> String {
    format!("{k}\u{1}{v}\u{2}")
}

struct Broker {
    _ns: Namesrv,
    _proc: Proc,
    addr: String,
}

async fn start(root: &Path) -> Broker {
    let ns = Namesrv::start(root, "ns");
    let dir = root.join("broker");
    std::fs::create_dir_all(&dir).expect("broker dir");
    let port = free_broker_port();
    let base = format!(
        "brokerClusterName=TimerCluster\nbrokerName=broker-timer\nbrokerId=0\n\
         namesrvAddr={}\nlistenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
         storePathRootDir={}\n",
        ns.addr,
        dir.join("store").display()
    );
    let conf = bp::write_conf(&dir, &base, &[]);
    let proc = bp::spawn_broker(&dir, &conf, "broker-timer");
    let addr = format!("127.0.0.1:{port}");
    wait_for_port(&addr, WAIT).await.expect("broker listens");
    Broker {
        _ns: ns,
        _proc: proc,
        addr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_messages_are_refused_not_delivered_early() {
    let root = temp_dir("broker-timer");
    let b = start(root.path()).await;
    let admin = RemotingClient::default();
    bp::create_topic(&admin, &b.addr, TOPIC, 1, 6).await;

    let due = "4102444800000"; // 2100-01-01: far in the future
    let cases = [
        ("TIMER_DELIVER_MS", due),
        ("TIMER_DELAY_SEC", "30"),
        ("TIMER_DELAY_MS", "30000"),
        ("__STARTDELIVERTIME", due),
    ];
    for (key, value) in cases {
        let props = format!("{}{}", prop("KEYS", "k1"), prop(key, value));
        let r = bp::call(&admin, &b.addr, send(TOPIC, &props, b"timer body"))
            .await
            .expect("the broker answers");
        assert_eq!(r.code, SYSTEM_ERROR, "{key}: {:?}", r.remark);
        let remark = r.remark.clone().unwrap_or_default();
        assert!(
            remark.contains(key) && remark.contains("timer"),
            "the refusal names {key}: {remark}"
        );
    }

    // A batch with one timer message among ordinary ones is refused whole.
    let mut body = batch_item(b"plain-1", "");
    body.extend(batch_item(b"timed", &prop("TIMER_DELAY_SEC", "30")));
    body.extend(batch_item(b"plain-2", ""));
    let r = bp::call(
        &admin,
        &b.addr,
        RemotingCommand::request(request_code::SEND_BATCH_MESSAGE)
            .with_ext("producerGroup", "pg-timer")
            .with_ext("topic", TOPIC)
            .with_ext("defaultTopic", "TBW102")
            .with_ext("defaultTopicQueueNums", 1)
            .with_ext("queueId", 0)
            .with_ext("sysFlag", 0)
            .with_ext("bornTimestamp", 1)
            .with_ext("flag", 0)
            .with_ext("batch", true)
            .with_body(body),
    )
    .await
    .expect("the broker answers the batch");
    assert_eq!(r.code, SYSTEM_ERROR, "batch: {:?}", r.remark);
    assert!(r.remark.unwrap_or_default().contains("TIMER_DELAY_SEC"));

    // Nothing reached the topic: no consumer can see a timer message early.
    assert_eq!(bp::max_offset(&admin, &b.addr, TOPIC, 0).await, 0);

    // Ordinary sends and the classic delay levels still work.
    let r = bp::call(&admin, &b.addr, send(TOPIC, &prop("KEYS", "k2"), b"plain"))
        .await
        .expect("plain send answered");
    assert_eq!(r.code, 0, "plain send: {:?}", r.remark);
    let r = bp::call(
        &admin,
        &b.addr,
        send(TOPIC, &prop("DELAY", "1"), b"delayed"),
    )
    .await
    .expect("delay-level send answered");
    assert_eq!(r.code, 0, "delay-level send: {:?}", r.remark);
    assert_eq!(bp::max_offset(&admin, &b.addr, TOPIC, 0).await, 1);
    flotilla_tests::wait_until("the delay-level message is delivered", WAIT, || async {
        (bp::max_offset(&admin, &b.addr, TOPIC, 0).await == 2).then_some(())
    })
    .await
    .expect("delivered after its 1 s level");
}

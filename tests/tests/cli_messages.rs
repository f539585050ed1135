//! End-to-end tests of message trace, dead-letter queues, producer connections and message
//! browsing through the `flotilla` CLI: a real control plane, agent, broker and nameserver,
//! the real RocketMQ client (`rocketmq-client-rust`) producing and consuming, and the real
//! `flotilla` binary.
//!
//! - A producer and a push consumer with the client's own tracing on (`enable_trace`) write
//!   their Pub / SubBefore / SubAfter records to `RMQ_SYS_TRACE_TOPIC` (created first, as a
//!   Java broker does with `traceTopicEnable`); `flotilla message trace ID` finds the
//!   publish and the consume of the message by the msgId the send returned, and `--key` finds
//!   it by its key.
//! - The producer is listed by `flotilla producer connections` while it runs (the broker's
//!   GET_PRODUCER_CONNECTION_LIST), and an idle producer group lists nobody.
//! - A consumer that always fails (max reconsume times 0) sends its message to
//!   `%DLQ%<group>`; `flotilla dlq list` shows it, `flotilla dlq resend` sends a copy to the
//!   original topic, which `flotilla message list` shows (body, key and unique key kept, the
//!   retry properties gone) and a consumer of the topic then receives.
//! - `message query` without a key lists by store time; bad inputs fail with the field and
//!   a stable code.

use std::collections::BTreeSet;
use std::time::Duration;

use flotilla_proto::v1::BrokerMode;
use flotilla_tests::cli::{fails, flotilla, json, ok, text, wait_leader};
use flotilla_tests::fleet::{self, Fleet, namesrv_addr};
use flotilla_tests::rmq::{self, Client, Collector};
use flotilla_tests::wait_until;
use rocketmq_client_rust::{
    ClientConfig, ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    DefaultMQProducer, MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
const CLUSTER: &str = "msgs";

/// Polls a JSON command until `done` accepts its output.
async fn json_until(
    fleet: &Fleet,
    what: &str,
    args: &[&str],
    done: impl Fn(&Value) -> bool,
) -> Value {
    let r = wait_until(what, WAIT, || async {
        let o = flotilla(fleet, args).await;
        o.status
            .success()
            .then(|| serde_json::from_slice::<Value>(&o.stdout).ok())
            .flatten()
            .filter(|v| done(v))
    })
    .await;
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}: last answer: {}", text(&flotilla(fleet, args).await)),
    }
}

/// The real client's config with its own tracing on.
fn traced() -> ClientConfig {
    let mut c = ClientConfig::default();
    c.set_enable_trace(true);
    c
}

/// A consumer listener that fails every message.
#[derive(Clone, Default)]
struct AlwaysFails {
    seen: std::sync::Arc<std::sync::Mutex<usize>>,
}

impl MessageListenerConcurrently for AlwaysFails {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _ctx: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        *self.seen.lock().expect("lock") += msgs.len();
        Ok(ConsumeConcurrentlyStatus::ReconsumeLater)
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_traces_dlqs_producers_and_browsing_end_to_end() {
    let fleet = Fleet::start(1).await;
    wait_leader(&fleet, WAIT).await;
    fleet
        .create_cluster(fleet::cluster(
            CLUSTER,
            1,
            1,
            1,
            BrokerMode::MasterSlave,
            &[],
        ))
        .await;
    let c = fleet.wait_running(CLUSTER).await;
    let ns = namesrv_addr(&c);
    for t in ["Traced", "Poison", "RMQ_SYS_TRACE_TOPIC"] {
        ok(
            &fleet,
            &["topic", "create", t, "-c", CLUSTER, "--queues", "2"],
        )
        .await;
    }
    ok(&fleet, &["group", "create", "cg-traced", "-c", CLUSTER]).await;
    ok(
        &fleet,
        &[
            "group",
            "create",
            "cg-dlq",
            "-c",
            CLUSTER,
            "--max-retries",
            "0",
        ],
    )
    .await;

    // A traced producer: listed while it runs, its send traced.
    let client = Client::new("cli-msgs");
    let mut producer = DefaultMQProducer::builder(client.runtime())
        .producer_group("pg-traced")
        .client_config(traced())
        .name_server_addr(ns.clone())
        .send_msg_timeout(5000)
        .build();
    producer.start().await.expect("traced producer start");
    // A traced consumer, started before the send: the client registers its trace hook only
    // once start() returns, so a message it pulls earlier is consumed untraced.
    let collector = Collector::default();
    let mut consumer = client
        .push_consumer(&ns, "cg-traced")
        .client_config(traced())
        .name_server_addr(ns.clone())
        .build();
    consumer.subscribe("Traced", "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(collector.clone());
    consumer.start().await.expect("traced consumer start");
    let keyed = rocketmq_model::common::message::message_single::Message::builder()
        .topic("Traced")
        .tags("tg")
        .key("trace-key-1")
        .body_slice(b"traced body")
        .build_unchecked();
    let sent = producer
        .send(keyed)
        .await
        .expect("send")
        .expect("a send result");
    let msg_id = sent
        .msg_id
        .as_ref()
        .map(|m| m.to_string())
        .expect("a msgId");
    let offset_id = sent.offset_msg_id.clone().expect("an offset id");

    let producers = json_until(
        &fleet,
        "the producer is listed",
        &[
            "producer",
            "connections",
            "pg-traced",
            "-c",
            CLUSTER,
            "-o",
            "json",
        ],
        |v| v["connections"].as_array().is_some_and(|c| !c.is_empty()),
    )
    .await;
    assert_eq!(producers["group"], "pg-traced", "{producers}");
    let conn = &producers["connections"][0];
    assert_eq!(conn["language"], "RUST", "{producers}");
    assert!(
        conn["client_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{producers}"
    );
    assert!(
        conn["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.")),
        "{producers}"
    );
    assert_eq!(
        strs(&conn["broker_names"]),
        [format!("{CLUSTER}-0")],
        "{producers}"
    );
    let table = ok(
        &fleet,
        &["producer", "connections", "pg-traced", "-c", CLUSTER],
    )
    .await;
    assert!(table.contains("RUST"), "{table}");
    let idle = json(
        &fleet,
        &[
            "producer",
            "connections",
            "pg-nobody",
            "-c",
            CLUSTER,
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(idle["connections"], serde_json::json!([]), "{idle}");

    // The trace has the publish and the consume.
    collector
        .wait_for(&BTreeSet::from(["traced body".to_string()]), WAIT)
        .await;
    let has = |t: &Value, kind: &str, group: &str| {
        t["records"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["type"] == kind && r["group"] == group))
    };
    let traces = json_until(
        &fleet,
        "the publish and the consume are traced",
        &["message", "trace", &msg_id, "-c", CLUSTER, "-o", "json"],
        |v| {
            v["traces"].as_array().is_some_and(|t| {
                t.len() == 1
                    && has(&t[0], "Pub", "pg-traced")
                    && has(&t[0], "SubBefore", "cg-traced")
                    && has(&t[0], "SubAfter", "cg-traced")
            })
        },
    )
    .await;
    assert_eq!(traces["trace_topic"], "RMQ_SYS_TRACE_TOPIC");
    let t = &traces["traces"][0];
    assert_eq!(t["message_id"], msg_id.as_str(), "{traces}");
    assert_eq!(t["topic"], "Traced", "{traces}");
    let publish = t["records"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["type"] == "Pub"))
        .expect("a Pub record");
    assert_eq!(publish["success"], true, "{traces}");
    assert_eq!(publish["tags"], "tg", "{traces}");
    assert_eq!(strs(&publish["keys"]), ["trace-key-1"], "{traces}");
    assert_eq!(
        publish["offset_message_id"]
            .as_str()
            .map(str::to_ascii_uppercase),
        Some(offset_id.to_ascii_uppercase()),
        "{traces}"
    );
    let consumes = t["consumes"].as_array().expect("consumes");
    assert!(
        consumes
            .iter()
            .any(|c| c["group"] == "cg-traced" && c["status"] == "SUCCESS" && c["success"] == true),
        "{traces}"
    );
    // By key, and by the offset id (its unique key is looked up).
    let by_key = json(
        &fleet,
        &[
            "message",
            "trace",
            "--key",
            "trace-key-1",
            "-c",
            CLUSTER,
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(
        by_key["traces"][0]["message_id"],
        msg_id.as_str(),
        "{by_key}"
    );
    let by_offset = json(
        &fleet,
        &[
            "message", "trace", &offset_id, "--topic", "Traced", "-c", CLUSTER, "-o", "json",
        ],
    )
    .await;
    assert_eq!(
        by_offset["traces"][0]["message_id"],
        msg_id.as_str(),
        "{by_offset}"
    );
    let table = ok(&fleet, &["message", "trace", &msg_id, "-c", CLUSTER]).await;
    assert!(
        table.contains("SubAfter") && table.contains("cg-traced"),
        "{table}"
    );
    consumer.shutdown().await;

    // A poison message goes to the DLQ, is listed there and resent to its topic.
    let failing = AlwaysFails::default();
    let mut bad = client
        .push_consumer(&ns, "cg-dlq")
        .max_reconsume_times(0)
        .build();
    bad.subscribe("Poison", "*").await.expect("subscribe");
    bad.register_message_listener_concurrently(failing.clone());
    bad.start().await.expect("failing consumer start");
    let poison = rocketmq_model::common::message::message_single::Message::builder()
        .topic("Poison")
        .key("p-1")
        .body_slice(b"poison-1")
        .build_unchecked();
    let psent = producer
        .send(poison)
        .await
        .expect("send")
        .expect("a send result");
    let poison_uniq = psent.msg_id.as_ref().map(|m| m.to_string()).expect("msgId");
    let dlq = json_until(
        &fleet,
        "the poison message is in the DLQ",
        &["dlq", "list", "cg-dlq", "-c", CLUSTER, "-o", "json"],
        |v| v.as_array().is_some_and(|m| m.len() == 1),
    )
    .await;
    bad.shutdown().await;
    let d = &dlq[0];
    assert_eq!(d["topic"], "%DLQ%cg-dlq", "{dlq}");
    assert_eq!(d["body"], "poison-1", "{dlq}");
    assert_eq!(d["properties"]["RETRY_TOPIC"], "Poison", "{dlq}");
    let dlq_id = d["message_id"].as_str().expect("an id").to_string();
    let resent = json(
        &fleet,
        &[
            "dlq",
            "resend",
            "cg-dlq",
            &dlq_id,
            "-c",
            CLUSTER,
            "--request-id",
            "resend-1",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(resent["topic"], "Poison", "{resent}");
    assert_eq!(resent["unique_key"], poison_uniq.as_str(), "{resent}");
    // The same request id again: recognised, sent once.
    let again = json(
        &fleet,
        &[
            "dlq",
            "resend",
            "cg-dlq",
            &dlq_id,
            "-c",
            CLUSTER,
            "--request-id",
            "resend-1",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(again["message_id"], resent["message_id"], "{again}");
    let listed = json(
        &fleet,
        &[
            "message", "list", "--topic", "Poison", "-c", CLUSTER, "-o", "json",
        ],
    )
    .await;
    let copies: Vec<&Value> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter(|m| m["body"] == "poison-1")
        .collect();
    assert_eq!(copies.len(), 2, "the original and one copy: {listed}");
    let copy = copies
        .iter()
        .find(|m| m["message_id"] == resent["message_id"])
        .expect("the copy is listed");
    assert_eq!(strs(&copy["keys"]), ["p-1"], "{listed}");
    assert_eq!(copy["unique_key"], poison_uniq.as_str(), "{listed}");
    assert!(copy["properties"].get("RETRY_TOPIC").is_none(), "{listed}");
    assert!(copy["properties"].get("DELAY").is_none(), "{listed}");
    // The broker stamps its region and trace switch on what it stores, as Java does.
    for m in &copies {
        assert_eq!(m["properties"]["MSG_REGION"], "DefaultRegion", "{listed}");
        assert_eq!(m["properties"]["TRACE_ON"], "true", "{listed}");
    }
    // One queue, one offset range.
    let q = copy["queue_id"].as_i64().expect("queue").to_string();
    let off = copy["queue_offset"].as_i64().expect("offset");
    let one = json(
        &fleet,
        &[
            "message",
            "list",
            "--topic",
            "Poison",
            "-c",
            CLUSTER,
            "--queue",
            &q,
            "--from-offset",
            &off.to_string(),
            "--to-offset",
            &(off + 1).to_string(),
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one[0]["message_id"], resent["message_id"], "{one}");
    // A consumer of the topic receives the copy.
    rmq::consume_all(
        &client,
        &ns,
        "cg-after",
        "Poison",
        &BTreeSet::from(["poison-1".to_string()]),
        WAIT,
    )
    .await;
    // By store time, without a key.
    let by_time = json(
        &fleet,
        &[
            "message", "query", "--topic", "Traced", "--from", "0", "-c", CLUSTER, "-o", "json",
        ],
    )
    .await;
    assert_eq!(by_time[0]["body"], "traced body", "{by_time}");
    producer.shutdown().await;
    client.shutdown().await;

    // Bad inputs.
    fails(
        &fleet,
        &["message", "trace", "-c", CLUSTER],
        None,
        2,
        "CLI_INVALID_ARGUMENT",
    )
    .await;
    let err = fails(
        &fleet,
        &["dlq", "resend", "cg-dlq", "not-an-id", "-c", CLUSTER],
        None,
        1,
        "INVALID_REQUEST",
    )
    .await;
    assert!(
        err.contains("message_id: must be the offset message id"),
        "{err}"
    );
    fails(
        &fleet,
        &["dlq", "list", "cg-nosuch", "-c", CLUSTER],
        None,
        1,
        "GROUP_NOT_FOUND",
    )
    .await;
    fails(
        &fleet,
        &["message", "list", "--topic", "Nope", "-c", CLUSTER],
        None,
        1,
        "TOPIC_NOT_FOUND",
    )
    .await;
    let err = fails(
        &fleet,
        &[
            "message", "list", "--topic", "Poison", "-c", CLUSTER, "--queue", "-1",
        ],
        None,
        2,
        "CLI_INVALID_ARGUMENT",
    )
    .await;
    assert!(err.contains("--queue"), "{err}");
    let err = fails(
        &fleet,
        &["producer", "connections", "bad.name", "-c", CLUSTER],
        None,
        1,
        "INVALID_REQUEST",
    )
    .await;
    assert!(err.contains("group: must match"), "{err}");
}

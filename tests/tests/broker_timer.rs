//! Timer messages (RocketMQ 5's `TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`, `TIMER_DELAY_MS`, and
//! the older `__STARTDELIVERTIME`) against a real `flotilla-broker` and the real
//! `rocketmq-client-rust` client.
//!
//! - Each property holds its message until due: a push consumer receives every one on its
//!   own topic with its tags, keys and user properties, in due-time order (not send order),
//!   each stored on its topic no earlier than its `TIMER_OUT_MS`, which is the asked time
//!   rounded down to `timerPrecisionMs`.
//! - Refusals as Java answers: due more than `timerMaxDelaySec` ahead or not a number →
//!   MESSAGE_ILLEGAL with Java's remark; `timerWheelEnable=false` → SYSTEM_ERROR; a batch
//!   holding a timer message → MESSAGE_ILLEGAL naming the property. Nothing refused is stored.
//! - Pending timer messages survive a SIGKILL of the broker: after the restart each is
//!   delivered exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_message_store::codec::{self, decode_all};
use flotilla_remoting::{RemotingClient, RemotingCommand, request_code};
use flotilla_tests::broker_proc::{self as bp, Namesrv};
use flotilla_tests::rmq::{self, Client};
use flotilla_tests::{Proc, free_broker_port, temp_dir, wait_for_port, wait_until};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MQPushConsumer,
    MessageListenerConcurrently, SendStatus,
};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;

const WAIT: Duration = Duration::from_secs(30);
const TOPIC: &str = "TimerTopic";
const SYSTEM_ERROR: i32 = 1;
const MESSAGE_ILLEGAL: i32 = 13;
const PRECISION_MS: i64 = 100;

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
    ns: Namesrv,
    proc: Option<Proc>,
    dir: std::path::PathBuf,
    conf: std::path::PathBuf,
    addr: String,
}

impl Broker {
    async fn start(root: &Path) -> Broker {
        let ns = Namesrv::start(root, "ns");
        let dir = root.join("broker");
        std::fs::create_dir_all(&dir).expect("broker dir");
        let port = free_broker_port();
        let base = format!(
            "brokerClusterName=TimerCluster\nbrokerName=broker-timer\nbrokerId=0\n\
             namesrvAddr={}\nlistenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
             storePathRootDir={}\nmappedFileSizeCommitLog=67108864\n\
             registerNameServerPeriod=2000\ntimerPrecisionMs={PRECISION_MS}\n",
            ns.addr,
            dir.join("store").display()
        );
        let conf = bp::write_conf(&dir, &base, &[]);
        let mut b = Broker {
            ns,
            proc: None,
            dir,
            conf,
            addr: format!("127.0.0.1:{port}"),
        };
        b.spawn().await;
        b
    }

    async fn spawn(&mut self) {
        self.proc = Some(bp::spawn_broker(&self.dir, &self.conf, "broker-timer"));
        wait_for_port(&self.addr, WAIT)
            .await
            .expect("broker listens");
    }

    /// SIGKILL, then a new process on the same store.
    async fn kill_and_restart(&mut self, admin: &RemotingClient) {
        if let Some(mut p) = self.proc.take() {
            p.kill(); // SIGKILL and reap
        }
        admin.close_addr(&self.addr);
        self.spawn().await;
    }

    /// Every record stored in queue 0 of `topic`: (body, properties, store timestamp).
    async fn stored(&self, admin: &RemotingClient, topic: &str) -> Vec<(String, String, i64)> {
        let r = bp::pull_raw(admin, &self.addr, topic, 0, 0, 64).await;
        if r.code != 0 {
            return Vec::new();
        }
        decode_all(&r.body, false)
            .expect("pull body decodes")
            .iter()
            .map(|m| {
                (
                    String::from_utf8_lossy(m.body).into_owned(),
                    m.properties.to_string(),
                    m.store_timestamp,
                )
            })
            .collect()
    }
}

/// What a push consumer saw of one message.
#[derive(Debug, Clone)]
struct Seen {
    queue_offset: i64,
    topic: String,
    tags: Option<String>,
    keys: Option<String>,
    color: Option<String>,
    timer_out_ms: Option<i64>,
    born: i64,
    stored: i64,
}

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<BTreeMap<String, Seen>>>,
}

impl MessageListenerConcurrently for Recorder {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _ctx: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut s = self.seen.lock().expect("recorder lock");
        for m in msgs {
            let prop = |k: &str| m.property(&k.into()).map(|v| v.to_string());
            s.insert(
                rmq::body_of(m),
                Seen {
                    queue_offset: m.queue_offset(),
                    topic: m.topic().to_string(),
                    tags: m.get_tags().map(|t| t.to_string()),
                    keys: m.get_keys().map(|k| k.to_string()),
                    color: prop("color"),
                    timer_out_ms: prop("TIMER_OUT_MS").and_then(|v| v.parse().ok()),
                    born: m.born_timestamp(),
                    stored: m.store_timestamp(),
                },
            );
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("ms fit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_messages_are_delivered_when_due_in_due_order_as_sent() {
    let root = temp_dir("broker-timer");
    let b = Broker::start(root.path()).await;
    let admin = RemotingClient::default();
    bp::create_topic(&admin, &b.addr, TOPIC, 1, 6).await;
    let (a, n) = (admin.clone(), b.ns.addr.clone());
    wait_until("route at the nameserver", WAIT, || {
        let (a, n) = (a.clone(), n.clone());
        async move { bp::route(&a, &n, TOPIC).await.map(|_| ()) }
    })
    .await
    .expect("route");

    let client = Client::new("timer");
    let producer = client.producer(&b.ns.addr, "pg-timer").await;
    // Sent latest-due first; (body, delay ms) with one property each.
    let born = now_ms();
    let cases: [(&str, i64); 4] = [
        ("deliver-ms", 4000),
        ("start-deliver-time", 3000),
        ("delay-sec", 2000),
        ("delay-ms", 1000),
    ];
    for (body, delay) in cases {
        let mut m = rmq::msg(TOPIC, &format!("tag-{body}"), body);
        m.set_keys(format!("key-{body}").as_str().into());
        m.put_property("color".into(), "red".into());
        let due = u64::try_from(born + delay).expect("positive");
        match body {
            "deliver-ms" => m.set_deliver_time_ms(due),
            "start-deliver-time" => {
                m.put_property("__STARTDELIVERTIME".into(), due.to_string().into())
            }
            "delay-sec" => m.set_delay_time_sec(u64::try_from(delay / 1000).expect("positive")),
            _ => m.set_delay_time_ms(u64::try_from(delay).expect("positive")),
        }
        let r = producer.send(m).await.expect("send").expect("a result");
        assert_eq!(r.send_status, SendStatus::SendOk, "{body}");
    }

    let rec = Recorder::default();
    let mut consumer = client.push_consumer(&b.ns.addr, "cg-timer").build();
    consumer.subscribe(TOPIC, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(rec.clone());
    consumer.start().await.expect("consumer start");
    let r2 = rec.clone();
    wait_until("every timer message consumed", WAIT, || {
        let r2 = r2.clone();
        async move { (r2.seen.lock().expect("lock").len() == cases.len()).then_some(()) }
    })
    .await
    .expect("all four delivered");
    let seen = rec.seen.lock().expect("lock").clone();
    for (body, delay) in cases {
        let s = &seen[body];
        assert_eq!(s.topic, TOPIC, "{body}");
        assert_eq!(s.tags.as_deref(), Some(format!("tag-{body}").as_str()));
        assert_eq!(s.keys.as_deref(), Some(format!("key-{body}").as_str()));
        assert_eq!(
            s.color.as_deref(),
            Some("red"),
            "{body}: user property kept"
        );
        let out = s.timer_out_ms.expect("TIMER_OUT_MS set");
        // Held: the due time is the asked one rounded down to the precision (the broker's
        // clock read the delays a little after `born`)…
        assert!(
            out >= born + delay - PRECISION_MS,
            "{body}: due {out}, born {born}"
        );
        assert!(s.born <= born + delay, "{body}");
        // …and it was put back on its topic no earlier than that.
        assert!(
            s.stored >= out,
            "{body}: stored {} before due {out}",
            s.stored
        );
    }
    // Put back in due order, whatever the send order.
    let mut order: Vec<(i64, &str)> = cases
        .iter()
        .map(|(body, _)| (seen[*body].queue_offset, *body))
        .collect();
    order.sort();
    let order: Vec<&str> = order.into_iter().map(|(_, b)| b).collect();
    assert_eq!(
        order,
        ["delay-ms", "delay-sec", "start-deliver-time", "deliver-ms"]
    );
    consumer.shutdown().await;
    let mut producer = producer;
    producer.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_refusals_are_javas_and_store_nothing() {
    let root = temp_dir("broker-timer-refuse");
    let b = Broker::start(root.path()).await;
    let admin = RemotingClient::default();
    bp::create_topic(&admin, &b.addr, TOPIC, 1, 6).await;

    let cases = [
        ("TIMER_DELAY_SEC", "259201".to_string()),
        ("TIMER_DELAY_MS", "abc".to_string()),
        ("TIMER_DELIVER_MS", (now_ms() + 4 * 86_400_000).to_string()),
    ];
    for (key, value) in &cases {
        let props = format!("{}{}", prop("KEYS", "k1"), prop(key, value));
        let r = bp::call(&admin, &b.addr, send(TOPIC, &props, b"timer body"))
            .await
            .expect("the broker answers");
        assert_eq!(r.code, MESSAGE_ILLEGAL, "{key}={value}: {:?}", r.remark);
        assert_eq!(
            r.remark.as_deref(),
            Some(
                "timer message illegal, the delay time should not be bigger than the max delay \
                 259200000ms; or if set del msg, the delay time should be bigger than the current time"
            )
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
    assert_eq!(r.code, MESSAGE_ILLEGAL, "batch: {:?}", r.remark);
    assert!(r.remark.unwrap_or_default().contains("TIMER_DELAY_SEC"));

    // The wheel switched off at runtime: Java's SYSTEM_ERROR.
    let r = bp::call(
        &admin,
        &b.addr,
        RemotingCommand::request(request_code::UPDATE_BROKER_CONFIG)
            .with_body(b"timerWheelEnable=false\n".to_vec()),
    )
    .await
    .expect("config update answered");
    assert_eq!(r.code, 0, "timerWheelEnable is live: {:?}", r.remark);
    let r = bp::call(
        &admin,
        &b.addr,
        send(TOPIC, &prop("TIMER_DELAY_SEC", "5"), b"timed"),
    )
    .await
    .expect("answered");
    assert_eq!(r.code, SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("accurate timer message is not enabled, timerWheelEnable is false")
    );

    // Nothing reached the topic or the timer topic.
    assert_eq!(bp::max_offset(&admin, &b.addr, TOPIC, 0).await, 0);
    assert!(b.stored(&admin, "rmq_sys_wheel_timer").await.is_empty());

    // Back on; a due time already past is a plain message; the classic delay levels still work.
    let r = bp::call(
        &admin,
        &b.addr,
        RemotingCommand::request(request_code::UPDATE_BROKER_CONFIG)
            .with_body(b"timerWheelEnable=true\n".to_vec()),
    )
    .await
    .expect("config update answered");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let r = bp::call(
        &admin,
        &b.addr,
        send(TOPIC, &prop("TIMER_DELIVER_MS", "5"), b"past"),
    )
    .await
    .expect("answered");
    assert_eq!(r.code, 0, "past due: {:?}", r.remark);
    let r = bp::call(
        &admin,
        &b.addr,
        send(TOPIC, &prop("DELAY", "1"), b"delayed"),
    )
    .await
    .expect("delay-level send answered");
    assert_eq!(r.code, 0, "delay-level send: {:?}", r.remark);
    assert_eq!(bp::max_offset(&admin, &b.addr, TOPIC, 0).await, 1);
    wait_until("the delay-level message is delivered", WAIT, || async {
        (bp::max_offset(&admin, &b.addr, TOPIC, 0).await == 2).then_some(())
    })
    .await
    .expect("delivered after its 1 s level");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_timer_messages_survive_a_broker_sigkill() {
    let root = temp_dir("broker-timer-kill");
    let mut b = Broker::start(root.path()).await;
    let admin = RemotingClient::default();
    bp::create_topic(&admin, &b.addr, TOPIC, 1, 6).await;
    let n = 5;
    for i in 0..n {
        let props = format!(
            "{}{}",
            prop("KEYS", &format!("k{i}")),
            prop("TIMER_DELAY_SEC", "8")
        );
        let r = bp::call(
            &admin,
            &b.addr,
            send(TOPIC, &props, format!("timed-{i}").as_bytes()),
        )
        .await
        .expect("answered");
        assert_eq!(r.code, 0, "{:?}", r.remark);
    }
    // Held in the timer topic, none delivered yet (eight seconds to go).
    assert_eq!(b.stored(&admin, "rmq_sys_wheel_timer").await.len(), n);
    assert_eq!(bp::max_offset(&admin, &b.addr, TOPIC, 0).await, 0);

    b.kill_and_restart(&admin).await;

    wait_until(
        "the timer messages are delivered after the restart",
        WAIT,
        || async {
            (bp::max_offset(&admin, &b.addr, TOPIC, 0).await >= i64::try_from(n).expect("small"))
                .then_some(())
        },
    )
    .await
    .expect("delivered after restart");
    let stored = b.stored(&admin, TOPIC).await;
    let mut bodies: Vec<&str> = stored.iter().map(|(body, _, _)| body.as_str()).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        ["timed-0", "timed-1", "timed-2", "timed-3", "timed-4"],
        "each once"
    );
    for (body, props, at) in &stored {
        let out: i64 = codec::property(props, "TIMER_OUT_MS")
            .and_then(|v| v.parse().ok())
            .expect("TIMER_OUT_MS");
        assert!(*at >= out, "{body} put back before its due time");
        assert!(codec::property(props, "TIMER_ENQUEUE_MS").is_some());
        assert!(codec::property(props, "TIMER_DEQUEUE_MS").is_some());
    }
    let _ = &b.ns;
}

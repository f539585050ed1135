//! End-to-end tests of `flotilla-broker` with a real `flotilla-namesrv` and the real
//! `rocketmq-client-rust` client: sends of every kind, push and pull consumers, tag
//! filtering, queries, retry/DLQ, offsets across restarts, ordering, write-disable and the
//! live nameserver list.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_remoting::protocol::{KVTable, decode_body};
use flotilla_remoting::{RemotingClient, RemotingCommand, request_code};
use flotilla_tests::broker_proc::{self, Namesrv, registered_at, route};
use flotilla_tests::rmq::{self, Client, Collector, body_of};
use flotilla_tests::{Proc, bin_path, free_broker_port, temp_dir, wait_for_port, wait_until};
use std::sync::Mutex as StdMutex;

/// `std::sync::Mutex` with a panicking `lock` (a poisoned lock is a failed test anyway).
#[derive(Default)]
struct Mutex<T>(StdMutex<T>);

impl<T> Mutex<T> {
    fn new(v: T) -> Self {
        Mutex(StdMutex::new(v))
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().expect("lock")
    }
}
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeOrderlyContext,
    ConsumeOrderlyStatus, DefaultLitePullConsumer, MQPushConsumer, MessageListenerConcurrently,
    MessageListenerOrderly, SendStatus,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;

const WAIT: Duration = Duration::from_secs(15);

// ------------------------------------------------------------------------------------------
// Harness

struct BrokerProc {
    proc: Proc,
    conf: PathBuf,
    addr: String,
    log: PathBuf,
}

fn write_conf(dir: &Path, port: u16, namesrv: &str, extra: &[(&str, &str)]) -> PathBuf {
    let store = dir.join("store");
    let mut text = format!(
        "# written by the test\nbrokerClusterName=TestCluster\nbrokerName=broker-t\nbrokerId=0\n\
         namesrvAddr={namesrv}\nlistenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
         storePathRootDir={}\nbrokerRole=ASYNC_MASTER\nflushDiskType=ASYNC_FLUSH\n\
         registerNameServerPeriod=2000\nmappedFileSizeCommitLog=67108864\n\
         messageDelayLevel=100ms 200ms 300ms 400ms 500ms 600ms 700ms 800ms\n\
         flushConsumerOffsetInterval=500\n",
        store.display()
    );
    for (k, v) in flotilla_tests::TEST_DISK_KEYS.iter().chain(extra) {
        text.push_str(&format!("{k}={v}\n"));
    }
    let path = dir.join("broker.conf");
    std::fs::write(&path, text).expect("write broker.conf");
    path
}

fn spawn_broker(dir: &Path, conf: &Path, port: u16) -> BrokerProc {
    let log = dir.join("broker.log");
    let mut cmd = Command::new(bin_path("flotilla-broker"));
    cmd.arg("-c").arg(conf).env("RUST_LOG", "info");
    BrokerProc {
        proc: Proc::spawn("flotilla-broker", &mut cmd, Some(&log)),
        conf: conf.to_path_buf(),
        addr: format!("127.0.0.1:{port}"),
        log,
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    ns: Namesrv,
    broker: BrokerProc,
    port: u16,
    admin: RemotingClient,
}

impl Cluster {
    async fn start(extra: &[(&str, &str)]) -> Cluster {
        let dir = temp_dir("broker-e2e");
        let ns = Namesrv::start(dir.path(), "namesrv");
        wait_for_port(&ns.addr, WAIT).await.expect("namesrv up");
        let port = free_broker_port();
        let conf = write_conf(dir.path(), port, &ns.addr, extra);
        let broker = spawn_broker(dir.path(), &conf, port);
        let c = Cluster {
            dir,
            ns,
            broker,
            port,
            admin: RemotingClient::default(),
        };
        c.wait_broker_registered(&c.ns.addr.clone()).await;
        c
    }

    async fn wait_broker_registered(&self, ns: &str) {
        let admin = self.admin.clone();
        let addr = self.broker.addr.clone();
        let ns = ns.to_string();
        let r = wait_until("broker registered with the nameserver", WAIT, || {
            let (admin, addr, ns) = (admin.clone(), addr.clone(), ns.clone());
            async move { registered_at(&admin, &ns, &addr).await.then_some(()) }
        })
        .await;
        if r.is_err() {
            panic!("{}", self.logs());
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.broker.log).unwrap_or_default()
    }

    async fn restart_broker(&mut self) {
        let conf = self.broker.conf.clone();
        self.broker.proc.kill();
        self.broker = spawn_broker(self.dir.path(), &conf, self.port);
        let ns = self.ns.addr.clone();
        wait_for_port(&self.broker.addr, WAIT)
            .await
            .expect("broker back");
        self.wait_broker_registered(&ns).await;
    }

    async fn admin(&self, cmd: RemotingCommand) -> RemotingCommand {
        self.admin
            .invoke(&self.broker.addr, cmd, Duration::from_secs(5))
            .await
            .expect("admin call")
    }

    async fn create_topic(&self, topic: &str, queues: i32, perm: i32) {
        broker_proc::create_topic(&self.admin, &self.broker.addr, topic, queues, perm).await;
        let (admin, ns, topic) = (self.admin.clone(), self.ns.addr.clone(), topic.to_string());
        wait_until("route with the new perm", WAIT, || {
            let (admin, ns, topic) = (admin.clone(), ns.clone(), topic.clone());
            async move {
                route(&admin, &ns, &topic)
                    .await
                    .filter(|r| r.queue_datas.iter().any(|q| q.perm == perm))
                    .map(|_| ())
            }
        })
        .await
        .expect("topic route visible");
    }

    async fn max_offset(&self, topic: &str, queue: i32) -> i64 {
        let r = self
            .admin(
                RemotingCommand::request(request_code::GET_MAX_OFFSET)
                    .with_ext("topic", topic)
                    .with_ext("queueId", queue),
            )
            .await;
        r.ext("offset").and_then(|v| v.parse().ok()).unwrap_or(-1)
    }

    async fn runtime_info(&self) -> BTreeMap<String, String> {
        let r = self
            .admin(RemotingCommand::request(
                request_code::GET_BROKER_RUNTIME_INFO,
            ))
            .await;
        assert_eq!(r.code, 0);
        decode_body::<KVTable>(&r.body).expect("kv table").table
    }
}

fn msg(topic: &str, tag: &str, body: String) -> Message {
    rmq::msg(topic, tag, &body)
}

async fn wait_count(what: &str, c: &Collector, n: usize) {
    let c2 = c.clone();
    wait_until(what, WAIT, || {
        let c = c2.clone();
        async move { (c.distinct().len() >= n).then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: got {} of {n}", c.distinct().len()));
}

// ------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_sends_of_every_kind_reach_a_push_consumer() {
    let cluster = Cluster::start(&[]).await;
    let topic = "SendKinds";
    cluster.create_topic(topic, 4, 6).await;
    let client = Client::new("sendkinds");
    let producer = client.producer(&cluster.ns.addr, "pg-kinds").await;

    // sync
    let mut expected = BTreeSet::new();
    for i in 0..20 {
        let r = producer
            .send(msg(topic, "a", format!("sync-{i}")))
            .await
            .expect("sync send")
            .expect("a send result");
        assert_eq!(r.send_status, SendStatus::SendOk);
        assert!(r.offset_msg_id.as_deref().is_some_and(|id| id.len() == 32));
        expected.insert(format!("sync-{i}"));
    }
    // async, with a bounded window
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let window = Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..50 {
        let permit = window.clone().acquire_owned().await.expect("semaphore");
        let (d, f) = (done.clone(), failed.clone());
        let permit = Arc::new(Mutex::new(Some(permit)));
        producer
            .send_with_callback(msg(topic, "a", format!("async-{i}")), move |r, e| {
                if r.is_some() && e.is_none() {
                    d.fetch_add(1, Ordering::SeqCst);
                } else {
                    f.fetch_add(1, Ordering::SeqCst);
                }
                permit.lock().take();
            })
            .await
            .expect("async send accepted");
        expected.insert(format!("async-{i}"));
    }
    let d2 = done.clone();
    wait_until("async sends acknowledged", WAIT, || {
        let d = d2.clone();
        async move { (d.load(Ordering::SeqCst) == 50).then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: failed {}", failed.load(Ordering::SeqCst)));
    // oneway
    for i in 0..10 {
        producer
            .send_oneway(msg(topic, "a", format!("oneway-{i}")))
            .await
            .expect("oneway send");
        expected.insert(format!("oneway-{i}"));
    }
    // batch
    let batch: Vec<Message> = (0..32)
        .map(|i| msg(topic, "a", format!("batch-{i}")))
        .collect();
    let r = producer.send_batch(batch).await.expect("batch send");
    assert_eq!(r.send_status, SendStatus::SendOk);
    assert_eq!(
        r.offset_msg_id.as_deref().map(|s| s.split(',').count()),
        Some(32),
        "a batch answers one offset msgId per message"
    );
    for i in 0..32 {
        expected.insert(format!("batch-{i}"));
    }

    let collector = Collector::default();
    let mut consumer = client.push_consumer(&cluster.ns.addr, "cg-kinds").build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(collector.clone());
    consumer.start().await.expect("consumer start");
    wait_count("all messages consumed", &collector, expected.len()).await;
    assert_eq!(collector.distinct(), expected);

    // The group shows up with its connection and its progress.
    let conns = cluster
        .admin(
            RemotingCommand::request(request_code::GET_CONSUMER_CONNECTION_LIST)
                .with_ext("consumerGroup", "cg-kinds"),
        )
        .await;
    assert_eq!(conns.code, 0, "{:?}", conns.remark);
    consumer.shutdown().await;
    let mut producer = producer;
    producer.shutdown().await;
    client.shutdown().await;
}

/// The TAGS of what one raw PULL_MESSAGE as group `cg-tags` returns from queue 0, offset 0,
/// with the given sysFlag and `subscription` header.
async fn pulled_tags(cluster: &Cluster, topic: &str, flag: i32, sub: &str) -> BTreeSet<String> {
    let cmd = broker_proc::pull_request("cg-tags", topic, 0, 0, 32)
        .with_ext("sysFlag", flag)
        .with_ext("subscription", sub);
    let r = cluster.admin(cmd).await;
    assert_eq!(r.code, 0, "pull: {:?}", r.remark);
    let mut tags = BTreeSet::new();
    let mut at = 0;
    while at < r.body.len() {
        let d = flotilla_message_store::codec::decode_record(&r.body[at..], false)
            .expect("stored record");
        let tag = flotilla_message_store::codec::property(d.properties, "TAGS");
        tags.insert(tag.unwrap_or("").to_string());
        at += d.total_size as usize;
    }
    tags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_tag_filtering_query_and_pull_consumer() {
    let cluster = Cluster::start(&[]).await;
    let topic = "Tagged";
    cluster.create_topic(topic, 2, 6).await;
    let client = Client::new("tags");
    let mut producer = client.producer(&cluster.ns.addr, "pg-tags").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let tag = ["TagA", "TagB", "TagC"][i % 3];
        let m = Message::builder()
            .topic(topic)
            .tags(tag)
            .key(format!("key-{i}"))
            .body_slice(format!("{tag}-{i}").as_bytes())
            .build_unchecked();
        let r = producer.send(m).await.expect("send").expect("result");
        ids.push((r.msg_id.clone(), r.offset_msg_id.clone()));
    }

    // Push consumer with a tag expression: only A and C arrive.
    let collector = Collector::default();
    let mut consumer = client.push_consumer(&cluster.ns.addr, "cg-tags").build();
    consumer
        .subscribe(topic, "TagA || TagC")
        .await
        .expect("subscribe");
    consumer.register_message_listener_concurrently(collector.clone());
    consumer.start().await.expect("start");
    wait_count("tagged messages", &collector, 20).await;
    assert!(collector.distinct().iter().all(|b| !b.starts_with("TagB")));
    // The broker filters too, not only the client. A push consumer's pull leaves the
    // subscription flag clear and sends `subscription=""`; the broker must filter by what the
    // group registered by heartbeat ("TagA || TagC"), as Java does.
    let expected: BTreeSet<String> = ["TagA", "TagC"].map(String::from).into();
    assert_eq!(
        pulled_tags(&cluster, topic, 0, "").await,
        expected,
        "push pull: registered filter"
    );
    // With the flag set, the request's own expression wins (pull consumers).
    let only_b: BTreeSet<String> = ["TagB"].map(String::from).into();
    assert_eq!(
        pulled_tags(&cluster, topic, 4, "TagB").await,
        only_b,
        "flagged pull: header filter"
    );

    // Lite pull consumer on TagB.
    let pull = DefaultLitePullConsumer::builder(client.runtime())
        .consumer_group("cg-pull".to_string())
        .name_server_addr(cluster.ns.addr.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build()
        .expect("lite pull consumer");
    pull.subscribe_with_expression(topic, "TagB")
        .await
        .expect("subscribe");
    pull.start().await.expect("start pull");
    let mut got = BTreeSet::new();
    for _ in 0..100 {
        for m in pull.poll_with_timeout(500).await {
            got.insert(body_of(&m));
        }
        if got.len() >= 10 {
            break;
        }
    }
    assert_eq!(got.len(), 10, "pulled {got:?}");
    assert!(got.iter().all(|b| b.starts_with("TagB")));
    pull.shutdown().await;

    // Query by key and view by id.
    let now = flotilla_remoting::protocol::now_millis() as u64;
    let q = producer
        .query_message(topic, "key-7", 32, 0, now + 60_000)
        .await
        .expect("query by key");
    assert_eq!(q.message_list().len(), 1);
    assert_eq!(body_of(&q.message_list()[0]), "TagB-7");
    let (uniq, offset_id) = ids[4].clone();
    let offset_id = offset_id.expect("offset msg id");
    let viewed = producer
        .view_message(topic, &offset_id)
        .await
        .expect("view by offset id");
    assert_eq!(body_of(&viewed), "TagB-4");
    let uniq = uniq.expect("uniq id").to_string();
    let viewed = producer
        .view_message(topic, &uniq)
        .await
        .expect("view by unique id");
    assert_eq!(body_of(&viewed), "TagB-4");

    consumer.shutdown().await;
    producer.shutdown().await;
    client.shutdown().await;
}

/// Fails every delivery, counting them per body.
#[derive(Clone, Default)]
struct Failer {
    deliveries: Arc<Mutex<HashMap<String, usize>>>,
}

impl MessageListenerConcurrently for Failer {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _ctx: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut d = self.deliveries.lock();
        for m in msgs {
            *d.entry(body_of(m)).or_default() += 1;
        }
        Ok(ConsumeConcurrentlyStatus::ReconsumeLater)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_failed_messages_are_retried_then_dead_lettered() {
    let cluster = Cluster::start(&[]).await;
    let topic = "Retried";
    cluster.create_topic(topic, 1, 6).await;
    let client = Client::new("retry");
    let mut producer = client.producer(&cluster.ns.addr, "pg-retry").await;
    for i in 0..3 {
        producer
            .send(msg(topic, "x", format!("fail-{i}")))
            .await
            .expect("send");
    }
    let failer = Failer::default();
    let mut consumer = client
        .push_consumer(&cluster.ns.addr, "cg-retry")
        .max_reconsume_times(2)
        .consume_message_batch_max_size(1)
        .build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(failer.clone());
    consumer.start().await.expect("start");
    // 1 first delivery + 2 redeliveries from %RETRY%, then the DLQ.
    let f2 = failer.clone();
    wait_until("three deliveries of every message", WAIT, || {
        let f = f2.clone();
        async move {
            let d = f.deliveries.lock();
            (d.len() == 3 && d.values().all(|n| *n >= 3)).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", failer.deliveries.lock()));
    let admin = cluster.admin.clone();
    let addr = cluster.broker.addr.clone();
    wait_until("messages in the DLQ", WAIT, || {
        let (admin, addr) = (admin.clone(), addr.clone());
        async move {
            let r = admin
                .invoke(
                    &addr,
                    RemotingCommand::request(request_code::GET_MAX_OFFSET)
                        .with_ext("topic", "%DLQ%cg-retry")
                        .with_ext("queueId", 0),
                    Duration::from_secs(2),
                )
                .await
                .ok()?;
            (r.ext("offset")? == "3").then_some(())
        }
    })
    .await
    .expect("three messages dead-lettered");
    assert!(cluster.max_offset("%RETRY%cg-retry", 0).await >= 6);
    consumer.shutdown().await;
    producer.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_offsets_survive_consumer_and_broker_restart() {
    let mut cluster = Cluster::start(&[("flushDiskType", "SYNC_FLUSH")]).await;
    let topic = "Durable";
    cluster.create_topic(topic, 2, 6).await;
    let client = Client::new("durable");
    let mut producer = client.producer(&cluster.ns.addr, "pg-durable").await;
    let send = |range: std::ops::Range<i32>| {
        let p = &producer;
        async move {
            for i in range {
                let r = p
                    .send(msg(topic, "d", format!("m-{i}")))
                    .await
                    .expect("send")
                    .expect("result");
                assert_eq!(r.send_status, SendStatus::SendOk);
            }
        }
    };
    send(0..40).await;
    let first = Collector::default();
    let mut consumer = client.push_consumer(&cluster.ns.addr, "cg-durable").build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(first.clone());
    consumer.start().await.expect("start");
    wait_count("first 40", &first, 40).await;
    consumer.shutdown().await; // commits offsets
    let committed: i64 = {
        let mut sum = 0;
        for q in 0..2 {
            let r = cluster
                .admin(
                    RemotingCommand::request(request_code::QUERY_CONSUMER_OFFSET)
                        .with_ext("consumerGroup", "cg-durable")
                        .with_ext("topic", topic)
                        .with_ext("queueId", q),
                )
                .await;
            sum += r
                .ext("offset")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
        }
        sum
    };
    assert_eq!(committed, 40, "offsets committed on shutdown");

    // Broker crash (SIGKILL) after the offsets were flushed; new messages follow.
    let c2 = cluster.admin.clone();
    let store = cluster.dir.path().join("store/config/consumerOffset.json");
    wait_until("offsets persisted", WAIT, || {
        let store = store.clone();
        let _ = &c2;
        async move {
            std::fs::read_to_string(&store)
                .ok()
                .filter(|t| t.contains("Durable@cg-durable"))
                .map(|_| ())
        }
    })
    .await
    .expect("consumerOffset.json written");
    cluster.restart_broker().await;
    send(40..60).await;

    let second = Collector::default();
    let mut consumer = client.push_consumer(&cluster.ns.addr, "cg-durable").build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(second.clone());
    consumer.start().await.expect("restart consumer");
    wait_count("the 20 new messages", &second, 20).await;
    let got = second.distinct();
    let expected: BTreeSet<String> = (40..60).map(|i| format!("m-{i}")).collect();
    assert!(
        expected.is_subset(&got),
        "missing {:?}",
        expected.difference(&got).collect::<Vec<_>>()
    );
    assert!(
        got.iter().all(|b| expected.contains(b)),
        "re-delivered old messages: {got:?}"
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    client.shutdown().await;
}

#[derive(Clone, Default)]
struct OrderedCollector {
    seen: Arc<Mutex<Vec<String>>>,
}

impl MessageListenerOrderly for OrderedCollector {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _ctx: &mut ConsumeOrderlyContext,
    ) -> ClientResult<ConsumeOrderlyStatus> {
        let mut s = self.seen.lock();
        for m in msgs {
            s.push(body_of(m));
        }
        Ok(ConsumeOrderlyStatus::Success)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_ordered_messages_to_one_queue_are_consumed_in_order() {
    let cluster = Cluster::start(&[]).await;
    let topic = "Ordered";
    cluster.create_topic(topic, 4, 6).await;
    let client = Client::new("ordered");
    let mut producer = client.producer(&cluster.ns.addr, "pg-ordered").await;
    for i in 0..100 {
        producer
            .send_with_selector(
                msg(topic, "o", format!("{i:03}")),
                |mqs, _m, _arg: &usize| mqs.first().cloned(),
                0usize,
            )
            .await
            .expect("ordered send");
    }
    let c = OrderedCollector::default();
    let mut consumer = client.push_consumer(&cluster.ns.addr, "cg-ordered").build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_orderly(c.clone());
    consumer.start().await.expect("start");
    let c2 = c.clone();
    wait_until("100 ordered messages", WAIT, || {
        let c = c2.clone();
        async move { (c.seen.lock().len() >= 100).then_some(()) }
    })
    .await
    .expect("ordered consumption");
    let seen = c.seen.lock().clone();
    let expected: Vec<String> = (0..100).map(|i| format!("{i:03}")).collect();
    assert_eq!(&seen[..100], &expected[..]);
    consumer.shutdown().await;
    producer.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_read_only_topic_refuses_sends() {
    let cluster = Cluster::start(&[]).await;
    let topic = "ReadOnly";
    cluster.create_topic(topic, 2, 6).await;
    // A direct send while writable works …
    let send = |c: &Cluster| {
        RemotingCommand::request(request_code::SEND_MESSAGE_V2)
            .with_ext("a", "pg")
            .with_ext("b", topic)
            .with_ext("c", "TBW102")
            .with_ext("d", 4)
            .with_ext("e", 0)
            .with_ext("f", 0)
            .with_ext("g", 0)
            .with_ext("h", 0)
            .with_ext("i", "")
            .with_ext("j", 0)
            .with_ext("m", false)
            .with_body(c.port.to_string())
    };
    assert_eq!(cluster.admin(send(&cluster)).await.code, 0);
    // … then the topic becomes read-only: the route advertises perm 4 and sends are refused.
    cluster.create_topic(topic, 2, 4).await;
    let r = cluster.admin(send(&cluster)).await;
    assert_eq!(r.code, 16, "NO_PERMISSION");
    assert!(r.remark.unwrap_or_default().contains("forbidden"));
    let client = Client::new("readonly");
    let mut producer = client.producer(&cluster.ns.addr, "pg-ro").await;
    let res = producer.send(msg(topic, "x", "nope".into())).await;
    assert!(
        res.is_err(),
        "the real client cannot send to a read-only topic: {res:?}"
    );
    producer.shutdown().await;
    client.shutdown().await;

    // Broker-wide write-disable through UPDATE_BROKER_CONFIG.
    cluster.create_topic("Other", 2, 6).await;
    let r = cluster
        .admin(
            RemotingCommand::request(request_code::UPDATE_BROKER_CONFIG)
                .with_body("brokerPermission=4\n"),
        )
        .await;
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let mut s = send(&cluster);
    s.put_ext("b", "Other");
    let r = cluster.admin(s).await;
    assert_eq!(r.code, 16);
    let (admin, ns) = (cluster.admin.clone(), cluster.ns.addr.clone());
    wait_until("route shows the reduced broker perm", WAIT, || {
        let (admin, ns) = (admin.clone(), ns.clone());
        async move {
            route(&admin, &ns, "Other")
                .await
                .filter(|r| r.queue_datas.iter().all(|q| q.perm == 4))
                .map(|_| ())
        }
    })
    .await
    .expect("reduced perm registered");
    assert_eq!(
        cluster.runtime_info().await["flotillaBrokerPermission"],
        "4"
    );
    let conf = std::fs::read_to_string(&cluster.broker.conf).expect("conf");
    assert!(conf.contains("brokerPermission=4"), "persisted: {conf}");
    assert!(conf.starts_with("# written by the test"), "comments kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_switches_nameservers_without_restart() {
    let cluster = Cluster::start(&[]).await;
    let ns2 = Namesrv::start(cluster.dir.path(), "namesrv2");
    wait_for_port(&ns2.addr, WAIT).await.expect("ns2 up");
    assert!(!registered_at(&cluster.admin, &ns2.addr, &cluster.broker.addr).await);
    let r = cluster
        .admin(
            RemotingCommand::request(request_code::UPDATE_BROKER_CONFIG)
                .with_body(format!("namesrvAddr={}\n", ns2.addr)),
        )
        .await;
    assert_eq!(r.code, 0, "{:?}", r.remark);
    cluster.wait_broker_registered(&ns2.addr).await;
    let (admin, ns1, addr) = (
        cluster.admin.clone(),
        cluster.ns.addr.clone(),
        cluster.broker.addr.clone(),
    );
    wait_until("unregistered from the old nameserver", WAIT, || {
        let (admin, ns1, addr) = (admin.clone(), ns1.clone(), addr.clone());
        async move { (!registered_at(&admin, &ns1, &addr).await).then_some(()) }
    })
    .await
    .expect("old nameserver forgot the broker");
    let info = cluster.runtime_info().await;
    assert_eq!(info["flotillaRegisteredNameservers"], ns2.addr);
    let conf = std::fs::read_to_string(&cluster.broker.conf).expect("conf");
    assert!(conf.contains(&format!("namesrvAddr={}", ns2.addr)));
    // Invalid values are refused with a clear remark and change nothing.
    let r = cluster
        .admin(
            RemotingCommand::request(request_code::UPDATE_BROKER_CONFIG)
                .with_body("brokerPermission=abc\n"),
        )
        .await;
    assert_eq!(r.code, 29);
    assert!(r.remark.unwrap_or_default().contains("brokerPermission"));
    // GET_BROKER_CONFIG reports every key, unknown ones included.
    let r = cluster
        .admin(RemotingCommand::request(request_code::GET_BROKER_CONFIG))
        .await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(text.contains(&format!("namesrvAddr={}", ns2.addr)));
    assert!(text.contains("flushConsumerOffsetInterval=500"));
}

#[test]
fn broker_invalid_config_is_a_clear_startup_error() {
    let dir = temp_dir("broker-badconf");
    let conf = write_conf(
        dir.path(),
        free_broker_port(),
        "127.0.0.1:1",
        &[("brokerRole", "BOSS")],
    );
    let out = Command::new(bin_path("flotilla-broker"))
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("run broker");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("brokerRole") && err.contains("BOSS"), "{err}");
}

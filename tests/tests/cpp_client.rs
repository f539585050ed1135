//! End-to-end tests of `flotilla-broker` and `flotilla-namesrv` with a second real client:
//! Apache's C++ client (librocketmq from PyPI's `rocketmq` 0.4.4, which the Python and cgo
//! Go clients wrap), driven by `tests/cpp/rmq_cpp.py`.
//!
//! The C++ client encodes its requests differently from the Java and Rust clients: booleans
//! as `"0"`/`"1"`, heartbeat enums as ordinals, `subVersion` as a string, a Java version
//! older than V4_9_4 (legacy route JSON). Before the broker decoded as Java does it sent 0 of
//! 300 messages and its consumers never registered. These tests cover what an application
//! on that client does: sync, async, oneway, orderly and batch sends; clustering and
//! broadcasting push consumers; tags and keys; delay levels; retries after a failed
//! consume; the DLQ.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use flotilla_remoting::protocol::{ConsumerConnection, decode_body};
use flotilla_remoting::{RemotingClient, RemotingCommand, request_code};
use flotilla_tests::broker_proc::{self, Namesrv, registered_at, route};
use flotilla_tests::cpp::{Consume, CppConsumer, Produce, bodies};
use flotilla_tests::{Proc, free_broker_port, temp_dir, wait_for_port, wait_until};

const WAIT: Duration = Duration::from_secs(30);

struct Cluster {
    dir: tempfile::TempDir,
    ns: Namesrv,
    _broker: Proc,
    addr: String,
    admin: RemotingClient,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = temp_dir("cpp-client");
        let ns = Namesrv::start(dir.path(), "namesrv");
        wait_for_port(&ns.addr, WAIT).await.expect("namesrv up");
        let port = free_broker_port();
        let base = format!(
            "brokerClusterName=CppCluster\nbrokerName=broker-cpp\nbrokerId=0\n\
             namesrvAddr={}\nlistenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
             storePathRootDir={}\nbrokerRole=ASYNC_MASTER\nflushDiskType=ASYNC_FLUSH\n\
             registerNameServerPeriod=2000\nmappedFileSizeCommitLog=67108864\n\
             messageDelayLevel=100ms 200ms 300ms 400ms 500ms 600ms 700ms 800ms\n\
             flushConsumerOffsetInterval=500\n",
            ns.addr,
            dir.path().join("store").display()
        );
        let conf = broker_proc::write_conf(dir.path(), &base, &[]);
        let broker = broker_proc::spawn_broker(dir.path(), &conf, "flotilla-broker");
        let addr = format!("127.0.0.1:{port}");
        let admin = RemotingClient::default();
        let (a, n, b) = (admin.clone(), ns.addr.clone(), addr.clone());
        let up = wait_until("broker registered with the nameserver", WAIT, || {
            let (a, n, b) = (a.clone(), n.clone(), b.clone());
            async move { registered_at(&a, &n, &b).await.then_some(()) }
        })
        .await;
        if up.is_err() {
            panic!("{}", broker_proc::broker_log(dir.path()));
        }
        Cluster {
            dir,
            ns,
            _broker: broker,
            addr,
            admin,
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn create_topic(&self, topic: &str, queues: i32) {
        broker_proc::create_topic(&self.admin, &self.addr, topic, queues, 6).await;
        let (a, n, t) = (self.admin.clone(), self.ns.addr.clone(), topic.to_string());
        wait_until("topic route at the nameserver", WAIT, || {
            let (a, n, t) = (a.clone(), n.clone(), t.clone());
            async move { route(&a, &n, &t).await.map(|_| ()) }
        })
        .await
        .expect("topic route visible");
    }

    async fn max_offset(&self, topic: &str, queue: i32) -> i64 {
        broker_proc::max_offset(&self.admin, &self.addr, topic, queue).await
    }

    async fn connections(&self, group: &str) -> Option<ConsumerConnection> {
        let r = broker_proc::call(
            &self.admin,
            &self.addr,
            RemotingCommand::request(request_code::GET_CONSUMER_CONNECTION_LIST)
                .with_ext("consumerGroup", group),
        )
        .await?;
        (r.code == 0).then_some(())?;
        decode_body(&r.body).ok()
    }

    /// Sends warm-up messages one at a time until every consumer got one: then each has
    /// finished its first rebalance, so a broadcasting consumer (whose offsets are local and
    /// start at the queue's end) misses nothing sent after.
    async fn warm_up(&self, topic: &str, tag: &str, consumers: &[&CppConsumer]) {
        for i in 0..60 {
            let prefix = format!("warm{i}");
            let mut p = Produce::new(&self.ns.addr, topic, &prefix, 1);
            p.tag = tag;
            let sent = p.run(self.dir());
            assert!(sent.iter().all(|s| s.ok), "warm-up send: {sent:?}");
            let want = bodies(&prefix, 1);
            let all = wait_until("a warm-up delivery", Duration::from_secs(2), || {
                let got = consumers.iter().all(|c| want.is_subset(&c.consumed()));
                async move { got.then_some(()) }
            })
            .await;
            if all.is_ok() {
                return;
            }
        }
        panic!("the C++ consumers never received a warm-up message");
    }
}

fn assert_all_ok(what: &str, sent: &[flotilla_tests::cpp::Sent], n: usize) {
    assert_eq!(sent.len(), n, "{what}: {sent:?}");
    let failed: Vec<_> = sent.iter().filter(|s| !s.ok).collect();
    assert!(
        failed.is_empty(),
        "{what}: {} failed: {failed:?}",
        failed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_sends_of_every_kind_reach_a_clustering_push_consumer() {
    let c = Cluster::start().await;
    let topic = "CppSends";
    c.create_topic(topic, 4).await;
    let consumer = Consume::new(&c.ns.addr, "cpp-cg-sends", topic)
        .start(c.dir(), "consumer")
        .await;
    let n = 40;
    let mut want = BTreeSet::new();
    for mode in ["sync", "async", "oneway", "batch", "orderly"] {
        let mut p = Produce::new(&c.ns.addr, topic, mode, n);
        p.mode = mode;
        p.tag = "TagA";
        p.keys = "key";
        p.shard = 3;
        let sent = p.run(c.dir());
        assert_all_ok(mode, &sent, n);
        if mode == "sync" {
            assert!(
                sent.iter().all(|s| s.msg_id.len() == 32),
                "sync sends have message ids: {sent:?}"
            );
        }
        want.extend(bodies(mode, n));
    }
    consumer
        .wait_for("every C++ send consumed", &want, WAIT)
        .await;
    let deliveries = consumer.deliveries();
    let first = deliveries
        .iter()
        .find(|d| d.body == "sync-7")
        .expect("sync-7 delivered");
    assert_eq!(
        (
            first.topic.as_str(),
            first.tags.as_str(),
            first.keys.as_str()
        ),
        (topic, "TagA", "key-7")
    );
    // The queue selector got the same argument each time: one queue, in order.
    let orderly: Vec<_> = deliveries
        .iter()
        .filter(|d| d.body.starts_with("orderly-"))
        .collect();
    let queues: BTreeSet<_> = orderly.iter().map(|d| d.queue_id).collect();
    assert_eq!(queues.len(), 1, "orderly sends spread over {queues:?}");
    let offsets: Vec<_> = orderly.iter().map(|d| d.queue_offset).collect();
    let mut sorted = offsets.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        n,
        "each orderly send stored once: {offsets:?}"
    );
    // All five kinds are stored: 200 messages over the topic's queues.
    let mut stored = 0;
    for q in 0..4 {
        stored += c.max_offset(topic, q).await;
    }
    assert_eq!(stored, 5 * i64::try_from(n).expect("small"));
    // The broker decoded the C++ heartbeat's enum ordinals.
    let conn = c.connections("cpp-cg-sends").await.expect("connections");
    assert_eq!(conn.message_model, "CLUSTERING");
    assert_eq!(conn.consume_type, "CONSUME_PASSIVELY");
    assert_eq!(conn.connection_set.len(), 1);
    assert_eq!(conn.connection_set[0].language, "CPP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_broadcasting_consumers_each_get_every_matching_tag() {
    let c = Cluster::start().await;
    let topic = "CppTags";
    c.create_topic(topic, 2).await;
    let mut spec = Consume::new(&c.ns.addr, "cpp-cg-bcast", topic);
    spec.broadcasting = true;
    spec.expr = "TagA || TagB";
    spec.instance = "one";
    let one = spec.start(c.dir(), "bcast-one").await;
    spec.instance = "two";
    let two = spec.start(c.dir(), "bcast-two").await;
    c.warm_up(topic, "TagA", &[&one, &two]).await;
    for tag in ["TagA", "TagB", "TagC"] {
        let mut p = Produce::new(&c.ns.addr, topic, tag, 15);
        p.tag = tag;
        assert_all_ok(tag, &p.run(c.dir()), 15);
    }
    let mut want = bodies("TagA", 15);
    want.extend(bodies("TagB", 15));
    one.wait_for("consumer one got TagA and TagB", &want, WAIT)
        .await;
    two.wait_for("consumer two got TagA and TagB", &want, WAIT)
        .await;
    // TagC was filtered out for both. A later TagA arriving proves the TagC messages (sent
    // before it) were passed over rather than still on their way.
    let mut p = Produce::new(&c.ns.addr, topic, "late", 1);
    p.tag = "TagA";
    assert_all_ok("late", &p.run(c.dir()), 1);
    one.wait_for("consumer one got the late TagA", &bodies("late", 1), WAIT)
        .await;
    two.wait_for("consumer two got the late TagA", &bodies("late", 1), WAIT)
        .await;
    for (name, consumer) in [("one", &one), ("two", &two)] {
        let tags: BTreeSet<_> = consumer.deliveries().into_iter().map(|d| d.tags).collect();
        assert!(!tags.contains("TagC"), "consumer {name} got TagC: {tags:?}");
    }
    let conn = c.connections("cpp-cg-bcast").await.expect("connections");
    assert_eq!(conn.message_model, "BROADCASTING");
    assert_eq!(conn.connection_set.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_delayed_orderly_retried_and_dead_lettered_messages() {
    let c = Cluster::start().await;
    for t in ["CppDelay", "CppOrder", "CppRetry", "CppDlq"] {
        c.create_topic(t, 2).await;
    }
    let delayed = Consume::new(&c.ns.addr, "cpp-cg-delay", "CppDelay")
        .start(c.dir(), "delayed")
        .await;
    let mut spec = Consume::new(&c.ns.addr, "cpp-cg-order", "CppOrder");
    spec.orderly = true;
    let orderly = spec.start(c.dir(), "orderly").await;
    let mut spec = Consume::new(&c.ns.addr, "cpp-cg-retry", "CppRetry");
    spec.fail_times = 2;
    let retried = spec.start(c.dir(), "retried").await;
    let mut spec = Consume::new(&c.ns.addr, "cpp-cg-dlq", "CppDlq");
    spec.fail_times = u32::MAX;
    let failing = spec.start(c.dir(), "failing").await;

    // Delay level 3 is 300 ms in this broker's messageDelayLevel.
    let mut p = Produce::new(&c.ns.addr, "CppDelay", "delayed", 5);
    p.delay_level = 3;
    assert_all_ok("delayed", &p.run(c.dir()), 5);
    // Orderly sends with one selector argument land in one queue, consumed in order.
    let mut p = Produce::new(&c.ns.addr, "CppOrder", "ordered", 30);
    p.mode = "orderly";
    p.shard = 1;
    assert_all_ok("orderly", &p.run(c.dir()), 30);
    assert_all_ok(
        "retried",
        &Produce::new(&c.ns.addr, "CppRetry", "retried", 3).run(c.dir()),
        3,
    );
    assert_all_ok(
        "dead",
        &Produce::new(&c.ns.addr, "CppDlq", "dead", 2).run(c.dir()),
        2,
    );

    delayed
        .wait_for("delayed messages consumed", &bodies("delayed", 5), WAIT)
        .await;
    for d in delayed.deliveries() {
        // Held in SCHEDULE_TOPIC_XXXX and stored again at its due time, not before.
        assert!(
            d.stored - d.born >= 300,
            "{} stored {} ms after it was born",
            d.body,
            d.stored - d.born
        );
    }

    orderly
        .wait_for("orderly messages consumed", &bodies("ordered", 30), WAIT)
        .await;
    let order: Vec<_> = orderly
        .deliveries()
        .into_iter()
        .filter(|d| !d.failed)
        .map(|d| d.body)
        .collect();
    let expected: Vec<_> = (0..30).map(|i| format!("ordered-{i}")).collect();
    assert_eq!(order, expected, "orderly consumption out of order");

    // Failed twice, then consumed: three deliveries each, the first with reconsumeTimes 0
    // and each redelivery from %RETRY% with a higher count. (The C++ client hands a pulled
    // batch to the listener message by message and sends the rest of the batch back when one
    // fails, so a message can be retried without its listener seeing that round: counts
    // rise, but not always by one.)
    retried
        .wait_for("retried messages consumed", &bodies("retried", 3), WAIT)
        .await;
    for body in bodies("retried", 3) {
        let seen: Vec<_> = retried
            .deliveries()
            .into_iter()
            .filter(|d| d.body == body)
            .collect();
        let times: Vec<_> = seen.iter().map(|d| d.reconsume_times).collect();
        let failed: Vec<_> = seen.iter().map(|d| d.failed).collect();
        assert_eq!(
            failed,
            vec![true, true, false],
            "deliveries of {body}: {times:?}"
        );
        assert_eq!(times[0], 0, "first delivery of {body}");
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "redeliveries of {body} count up: {times:?}"
        );
        assert!(seen[1..].iter().all(|d| d.topic == "CppRetry"), "{seen:?}");
    }

    // Always failing: the client's 16 retries, then %DLQ%.
    let (a, addr) = (c.admin.clone(), c.addr.clone());
    let dlq = wait_until(
        "both messages dead-lettered",
        Duration::from_secs(150),
        || {
            let (a, addr) = (a.clone(), addr.clone());
            async move {
                (broker_proc::max_offset(&a, &addr, "%DLQ%cpp-cg-dlq", 0).await == 2).then_some(())
            }
        },
    )
    .await;
    if dlq.is_err() {
        let d = failing.deliveries();
        panic!(
            "not dead-lettered; {} deliveries, last reconsume times {:?}",
            d.len(),
            d.last().map(|d| d.reconsume_times)
        );
    }
    // Each arrived there after the client's 16 retries, with its body intact; the send-back
    // that dead-letters counts one more, as Java's (`reconsumeTimes + 1`).
    let r = broker_proc::pull_raw(&c.admin, &c.addr, "%DLQ%cpp-cg-dlq", 0, 0, 8).await;
    let dead = flotilla_message_store::codec::decode_all(&r.body, false).expect("DLQ records");
    let mut got: Vec<_> = dead
        .iter()
        .map(|m| {
            (
                String::from_utf8_lossy(m.body).into_owned(),
                m.reconsume_times,
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("dead-0".to_string(), 17), ("dead-1".to_string(), 17)]
    );
    drop(failing);
}

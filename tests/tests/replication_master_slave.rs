//! End-to-end tests of classic master/slave HA: a real `flotilla-namesrv`, a master and a
//! slave `flotilla-broker` process, and the real `rocketmq-client-rust` client.
//!
//! - every message a SYNC_MASTER acknowledged is on the slave after the master is
//!   SIGKILLed, and consumable from it through the nameserver;
//! - a slave refuses sends, and follows topics created on the master;
//! - a SYNC_MASTER without a slave answers SLAVE_NOT_AVAILABLE;
//! - a slave restarted far behind catches up across CommitLog file boundaries, with the
//!   same queue offsets and byte-identical records; a brand-new slave starts at the
//!   master's last CommitLog file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_remoting::RemotingClient;
use flotilla_tests::broker_proc::{
    self as bp, Namesrv, broker_log, info_i64, registered_ids, runtime_info, spawn_broker,
    topic_queues,
};
use flotilla_tests::rmq::{self, Client, Collector};
use flotilla_tests::{Proc, free_broker_port, temp_dir, wait_for_port, wait_until};
use rocketmq_client_rust::{MQPushConsumer, SendStatus};

const WAIT: Duration = Duration::from_secs(30);
const CLUSTER: &str = "HaCluster";
const BROKER: &str = "broker-ha";

// ------------------------------------------------------------------------------------------
// Harness

struct Node {
    proc: Proc,
    dir: PathBuf,
    conf: PathBuf,
    addr: String,
    port: u16,
}

impl Node {
    /// Writes the config of a master (`id == 0`) or slave and starts the process.
    fn start(
        root: &Path,
        name: &str,
        ns: &str,
        id: i64,
        role: &str,
        extra: &[(&str, &str)],
    ) -> Node {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("node dir");
        let port = free_broker_port();
        let text = format!(
            "brokerClusterName={CLUSTER}\nbrokerName={BROKER}\nbrokerId={id}\nbrokerRole={role}\n\
             namesrvAddr={ns}\nlistenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
             storePathRootDir={}\nflushDiskType=ASYNC_FLUSH\nregisterNameServerPeriod=1000\n\
             flotillaSlaveSyncIntervalMills=500\nhaSendHeartbeatInterval=1000\n\
             flushConsumerOffsetInterval=500\n",
            dir.join("store").display()
        );
        let conf = flotilla_tests::broker_proc::write_conf(&dir, &text, extra);
        let proc = spawn_broker(&dir, &conf, name);
        Node {
            proc,
            dir,
            conf,
            addr: format!("127.0.0.1:{port}"),
            port,
        }
    }

    fn restart(&mut self, name: &str) {
        self.proc.kill();
        self.proc = spawn_broker(&self.dir, &self.conf, name);
    }

    fn log(&self) -> String {
        broker_log(&self.dir)
    }
}

/// A raw PULL of one queue (no suspend); returns (code, body).
async fn pull_raw(
    admin: &RemotingClient,
    addr: &str,
    topic: &str,
    queue: i32,
    from: i64,
    n: i32,
) -> (i32, bytes::Bytes) {
    let r = bp::pull_raw(admin, addr, topic, queue, from, n).await;
    (r.code, r.body)
}

async fn wait_registered(admin: &RemotingClient, ns: &str, id: i64, addr: &str, node: &Node) {
    let r = wait_until(&format!("broker id {id} registered"), WAIT, || async move {
        (registered_ids(admin, ns, BROKER)
            .await
            .get(&id)
            .map(String::as_str)
            == Some(addr))
        .then_some(())
    })
    .await;
    if let Err(e) = r {
        panic!("{e}\n{}", node.log());
    }
}

/// Waits until the master reports `n` connected, in-sync slaves.
async fn wait_in_sync(admin: &RemotingClient, master: &Node, slave: &Node, n: i64) {
    let r = wait_until("slave connected and in sync", WAIT, || async move {
        let info = runtime_info(admin, &master.addr).await?;
        let in_sync: i64 = info.get("flotillaHaInSyncSlaves")?.parse().ok()?;
        let conns: i64 = info.get("haConnectionCount")?.parse().ok()?;
        (in_sync == n && conns == n).then_some(())
    })
    .await;
    if let Err(e) = r {
        panic!("{e}\nmaster:\n{}\nslave:\n{}", master.log(), slave.log());
    }
}

/// Waits until the slave's CommitLog ends where the master's does.
async fn wait_caught_up(admin: &RemotingClient, master: &Node, slave: &Node) -> i64 {
    let r = wait_until("slave caught up with the master", WAIT, || async move {
        let m = info_i64(admin, &master.addr, "commitLogMaxOffset").await?;
        let s = info_i64(admin, &slave.addr, "commitLogMaxOffset").await?;
        (m == s && m > 0).then_some(m)
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}\nmaster:\n{}\nslave:\n{}", master.log(), slave.log()))
}

// ------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_master_acknowledged_messages_survive_master_kill() {
    let root = temp_dir("ha-e2e");
    let ns = Namesrv::start(root.path(), "namesrv");
    wait_for_port(&ns.addr, WAIT).await.expect("namesrv up");
    let admin = RemotingClient::default();
    let mut master = Node::start(
        root.path(),
        "master",
        &ns.addr,
        0,
        "SYNC_MASTER",
        &[("flotillaHaWaitTimeoutMills", "5000")],
    );
    wait_registered(&admin, &ns.addr, 0, &master.addr, &master).await;
    let topic = "HaSync";
    bp::create_topic(&admin, &master.addr, topic, 4, 6).await;

    // No slave yet: a SYNC_MASTER cannot confirm a copy.
    let r = bp::send_raw(&admin, &master.addr, topic, "raw")
        .await
        .expect("SEND_MESSAGE call");
    assert_eq!(
        r.code, 11,
        "SLAVE_NOT_AVAILABLE without a slave: {:?}",
        r.remark
    );

    let slave = Node::start(root.path(), "slave", &ns.addr, 1, "SLAVE", &[]);
    wait_registered(&admin, &ns.addr, 1, &slave.addr, &slave).await;
    wait_in_sync(&admin, &master, &slave, 1).await;

    // Metadata follows the master.
    let (a, s) = (&admin, slave.addr.clone());
    wait_until(
        "topic created before the slave started is on the slave",
        WAIT,
        || {
            let s = s.clone();
            async move { topic_queues(a, &s, topic).await.map(|_| ()) }
        },
    )
    .await
    .expect("topic synced");
    let later = "HaCreatedLater";
    bp::create_topic(&admin, &master.addr, later, 2, 6).await;
    wait_until(
        "topic created on the master appears on the slave",
        WAIT,
        || {
            let s = s.clone();
            async move { topic_queues(a, &s, later).await.map(|_| ()) }
        },
    )
    .await
    .expect("new topic synced");

    // The slave refuses writes.
    let r = bp::send_raw(&admin, &slave.addr, topic, "raw")
        .await
        .expect("SEND_MESSAGE call");
    assert_eq!(r.code, 16, "slave answers NO_PERMISSION: {:?}", r.remark);

    // Every send is acknowledged only once the slave has it.
    let client = Client::new("ha-sync");
    let producer = client
        .producer_with_timeout(&ns.addr, "pg-ha", 10_000)
        .await;
    let n = 200;
    let mut acked = BTreeSet::new();
    for i in 0..n {
        let body = format!("ha-{i}");
        let r = producer
            .send(rmq::msg(topic, "ha", &body))
            .await
            .expect("sync send")
            .expect("a send result");
        assert_eq!(r.send_status, SendStatus::SendOk, "send {i}");
        acked.insert(body);
    }
    let info = runtime_info(&admin, &master.addr)
        .await
        .expect("master runtime info");
    let master_max: i64 = info["commitLogMaxOffset"].parse().expect("offset");
    assert_eq!(info["haConnectionCount"], "1");
    assert_eq!(info["slaveFallBehindMuch"], "0", "{info:?}");
    let slave_max = info_i64(&admin, &slave.addr, "commitLogMaxOffset")
        .await
        .expect("slave info");
    assert!(
        slave_max >= master_max,
        "slave {slave_max} < master {master_max}"
    );

    // SIGKILL the master: the slave alone must still have every acknowledged message.
    master.proc.kill();
    drop(producer);
    let (a, n2) = (&admin, ns.addr.clone());
    wait_until("the nameserver forgets the dead master", WAIT, || {
        let n2 = n2.clone();
        async move { (!registered_ids(a, &n2, BROKER).await.contains_key(&0)).then_some(()) }
    })
    .await
    .expect("master unregistered");
    let mut per_queue = 0;
    for q in 0..4 {
        per_queue += bp::max_offset(&admin, &slave.addr, topic, q).await;
    }
    assert_eq!(
        per_queue,
        n as i64 + 1,
        "slave ConsumeQueues hold every message (+1 raw send)"
    );

    let collector = Collector::default();
    let mut consumer = client.push_consumer(&ns.addr, "cg-after-failover").build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(collector.clone());
    consumer.start().await.expect("consumer start");
    let c2 = collector.clone();
    let r = wait_until(
        "every acknowledged message consumed from the slave",
        WAIT,
        || {
            let c = c2.clone();
            async move { (c.distinct().len() > n).then_some(()) }
        },
    )
    .await;
    let seen = collector.distinct();
    let missing: Vec<&String> = acked.iter().filter(|b| !seen.contains(*b)).collect();
    assert!(
        r.is_ok() && missing.is_empty(),
        "missing {} of {n} acknowledged messages: {:?}\nslave:\n{}",
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>(),
        slave.log()
    );
    consumer.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slave_restarted_far_behind_catches_up_across_files() {
    let root = temp_dir("ha-e2e");
    let ns = Namesrv::start(root.path(), "namesrv");
    wait_for_port(&ns.addr, WAIT).await.expect("namesrv up");
    let admin = RemotingClient::default();
    // 64 KiB CommitLog files: the backlog below spans several of them.
    let small = [("mappedFileSizeCommitLog", "65536")];
    let master = Node::start(root.path(), "master", &ns.addr, 0, "ASYNC_MASTER", &small);
    wait_registered(&admin, &ns.addr, 0, &master.addr, &master).await;
    let mut slave = Node::start(root.path(), "slave", &ns.addr, 1, "SLAVE", &small);
    wait_registered(&admin, &ns.addr, 1, &slave.addr, &slave).await;
    wait_in_sync(&admin, &master, &slave, 1).await;
    let topic = "HaCatchUp";
    bp::create_topic(&admin, &master.addr, topic, 2, 6).await;

    let client = Client::new("ha-catchup");
    let mut producer = client
        .producer_with_timeout(&ns.addr, "pg-catchup", 10_000)
        .await;
    let filler = "x".repeat(1000);
    for i in 0..10 {
        let r = producer
            .send(rmq::msg(topic, "ha", &format!("early-{i}-{filler}")))
            .await
            .expect("send")
            .expect("result");
        assert_eq!(r.send_status, SendStatus::SendOk);
    }
    wait_caught_up(&admin, &master, &slave).await;

    // The slave goes away; the master writes ~6 files more.
    slave.proc.kill();
    let (a, m) = (&admin, master.addr.clone());
    wait_until("master notices the slave is gone", WAIT, || {
        let m = m.clone();
        async move { (info_i64(a, &m, "haConnectionCount").await? == 0).then_some(()) }
    })
    .await
    .expect("slave disconnected");
    for i in 0..400 {
        let r = producer
            .send(rmq::msg(topic, "ha", &format!("late-{i}-{filler}")))
            .await
            .expect("send")
            .expect("result");
        assert_eq!(r.send_status, SendStatus::SendOk);
    }
    let behind_by = info_i64(&admin, &master.addr, "commitLogMaxOffset")
        .await
        .expect("info");
    assert!(
        behind_by > 5 * 65536,
        "the backlog spans several CommitLog files"
    );

    slave.restart("slave");
    wait_for_port(&slave.addr, WAIT).await.expect("slave back");
    let end = wait_caught_up(&admin, &master, &slave).await;
    assert_eq!(end, behind_by);
    let files = std::fs::read_dir(slave.dir.join("store").join("commitlog"))
        .expect("slave commitlog dir")
        .count();
    assert!(files > 5, "slave has {files} CommitLog files");
    for q in 0..2 {
        let (m, s) = (
            bp::max_offset(&admin, &master.addr, topic, q).await,
            bp::max_offset(&admin, &slave.addr, topic, q).await,
        );
        assert_eq!(m, s, "queue {q}: slave ConsumeQueue matches the master's");
        // The slave serves the same bytes at the same queue offsets.
        let mut off = 0;
        while off < m {
            let (mc, mb) = pull_raw(&admin, &master.addr, topic, q, off, 32).await;
            let (sc, sb) = pull_raw(&admin, &slave.addr, topic, q, off, 32).await;
            assert_eq!((mc, sc), (0, 0), "pull queue {q} at {off}");
            assert_eq!(mb, sb, "queue {q} at {off}: records differ");
            off += 32;
        }
    }
    // A brand-new slave gets only the master's last file (Java's rule for a report of 0):
    // its log starts there and ends where the master's does.
    let fresh = Node::start(root.path(), "fresh", &ns.addr, 2, "SLAVE", &small);
    wait_registered(&admin, &ns.addr, 2, &fresh.addr, &fresh).await;
    let end2 = wait_caught_up(&admin, &master, &fresh).await;
    assert_eq!(end2, behind_by);
    let min = info_i64(&admin, &fresh.addr, "commitLogMinOffset")
        .await
        .expect("info");
    assert_eq!(
        min,
        behind_by - behind_by % 65536,
        "fresh slave starts at the last file"
    );
    assert!(min > 0);
    let _ = slave.port;
    producer.shutdown().await;
    client.shutdown().await;
}

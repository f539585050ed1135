//! End-to-end tests of transactional messages on a real `flotilla-broker`, with the frames a
//! Java `TransactionMQProducer` sends: a half message (`TRAN_MSG=true`, prepared sysFlag),
//! END_TRANSACTION commit and rollback, and a producer connection that answers the broker's
//! CHECK_TRANSACTION_STATE (UNKNOW first, then COMMIT) — through a broker restart.
//!
//! (The C++ client from PyPI, `rocketmq` 0.4.4, has no transactional producer, so the
//! producer here is a remoting connection speaking the protocol directly.)

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_message_store::codec::{self, decode_all, decode_message_id};
use flotilla_remoting::{
    ClientConfig, ProcessResult, RemotingClient, RemotingCommand, processor_fn, request_code,
};
use flotilla_tests::broker_proc::{self, Namesrv, registered_at};
use flotilla_tests::{Proc, free_broker_port, temp_dir, wait_for_port, wait_until};

const WAIT: Duration = Duration::from_secs(30);
const GROUP: &str = "pg-tx";
const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
const COMMIT: i32 = 8;
const ROLLBACK: i32 = 12;
const UNKNOWN: i32 = 0;

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// One CHECK_TRANSACTION_STATE the broker sent to the producer.
#[derive(Debug, Clone)]
struct Check {
    table_offset: i64,
    commit_log_offset: i64,
    msg_id: String,
    topic: String,
    check_times: Option<String>,
    body: String,
}

struct Cluster {
    dir: tempfile::TempDir,
    ns: Namesrv,
    broker: Option<Proc>,
    conf: PathBuf,
    addr: String,
    admin: RemotingClient,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = temp_dir("broker-tx");
        let ns = Namesrv::start(dir.path(), "namesrv");
        wait_for_port(&ns.addr, WAIT).await.expect("namesrv up");
        let port = free_broker_port();
        let base = format!(
            "brokerClusterName=TxCluster\nbrokerName=broker-tx\nbrokerId=0\n\
             namesrvAddr={}\nlistenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
             storePathRootDir={}\nbrokerRole=ASYNC_MASTER\nflushDiskType=SYNC_FLUSH\n\
             registerNameServerPeriod=2000\nmappedFileSizeCommitLog=67108864\n\
             flushConsumerOffsetInterval=200\n\
             transactionTimeOut=1000\ntransactionCheckInterval=200\ntransactionCheckMax=3\n",
            ns.addr,
            dir.path().join("store").display()
        );
        let conf = broker_proc::write_conf(dir.path(), &base, &[]);
        let mut c = Cluster {
            dir,
            ns,
            broker: None,
            conf,
            addr: format!("127.0.0.1:{port}"),
            admin: RemotingClient::default(),
        };
        c.spawn().await;
        c
    }

    async fn spawn(&mut self) {
        self.broker = Some(broker_proc::spawn_broker(
            self.dir.path(),
            &self.conf,
            "flotilla-broker",
        ));
        let (a, n, b) = (self.admin.clone(), self.ns.addr.clone(), self.addr.clone());
        let up = wait_until("broker registered", WAIT, || {
            let (a, n, b) = (a.clone(), n.clone(), b.clone());
            async move { registered_at(&a, &n, &b).await.then_some(()) }
        })
        .await;
        if up.is_err() {
            panic!("{}", broker_proc::broker_log(self.dir.path()));
        }
    }

    async fn restart(&mut self) {
        if let Some(mut p) = self.broker.take() {
            // SIGTERM: a clean stop persists offsets; then wait for the process to go.
            p.signal(nix::sys::signal::Signal::SIGTERM);
            assert!(p.wait_exit(WAIT).is_some(), "broker did not stop");
        }
        self.admin.close_addr(&self.addr);
        self.spawn().await;
    }

    async fn max_offset(&self, topic: &str) -> i64 {
        broker_proc::max_offset(&self.admin, &self.addr, topic, 0).await
    }

    /// Bodies stored in queue 0 of `topic`, with each record's sysFlag.
    async fn stored(&self, topic: &str) -> Vec<(String, i32)> {
        let r = broker_proc::pull_raw(&self.admin, &self.addr, topic, 0, 0, 64).await;
        if r.code != 0 {
            return Vec::new();
        }
        decode_all(&r.body, false)
            .expect("pull body decodes")
            .iter()
            .map(|m| (String::from_utf8_lossy(m.body).into_owned(), m.sys_flag))
            .collect()
    }
}

/// A producer connection: heartbeats as `GROUP` and records the checks it is sent.
struct Producer {
    client: RemotingClient,
    checks: Arc<Mutex<Vec<Check>>>,
}

impl Producer {
    async fn connect(addr: &str) -> Producer {
        let checks: Arc<Mutex<Vec<Check>>> = Arc::default();
        let seen = checks.clone();
        let handler = processor_fn(move |_ch, req: RemotingCommand| {
            let seen = seen.clone();
            async move {
                if req.code == request_code::CHECK_TRANSACTION_STATE {
                    let rec = decode_all(&req.body, false)
                        .ok()
                        .and_then(|v| v.into_iter().next());
                    let int = |k: &str| req.ext(k).and_then(|v| v.parse().ok()).unwrap_or(-1);
                    seen.lock().expect("lock").push(Check {
                        table_offset: int("tranStateTableOffset"),
                        commit_log_offset: int("commitLogOffset"),
                        msg_id: req.ext("msgId").unwrap_or_default().to_string(),
                        topic: rec
                            .as_ref()
                            .map(|r| r.topic.to_string())
                            .unwrap_or_default(),
                        check_times: rec.as_ref().and_then(|r| {
                            codec::property(r.properties, "TRANSACTION_CHECK_TIMES")
                                .map(str::to_string)
                        }),
                        body: rec
                            .as_ref()
                            .map(|r| String::from_utf8_lossy(r.body).into_owned())
                            .unwrap_or_default(),
                    });
                }
                ProcessResult::Ok(None)
            }
        });
        let client = RemotingClient::with_handler(ClientConfig::default(), Arc::new(handler));
        let p = Producer { client, checks };
        p.heartbeat(addr).await;
        p
    }

    async fn heartbeat(&self, addr: &str) {
        let body = format!(
            r#"{{"clientID":"127.0.0.1@tx-test","producerDataSet":[{{"groupName":"{GROUP}"}}],"consumerDataSet":[]}}"#
        );
        let r = self
            .client
            .invoke(
                addr,
                RemotingCommand::request(request_code::HEART_BEAT).with_body(body.into_bytes()),
                Duration::from_secs(5),
            )
            .await
            .expect("heartbeat");
        assert_eq!(r.code, 0, "heartbeat: {:?}", r.remark);
    }

    /// Sends a half message; returns (queue offset, CommitLog offset, UNIQ_KEY).
    async fn send_half(&self, addr: &str, topic: &str, body: &str) -> (i64, i64, String) {
        let uniq = format!("UNIQ-{body}");
        let props = format!(
            "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}{GROUP}\u{2}UNIQ_KEY\u{1}{uniq}\u{2}TAGS\u{1}tx\u{2}"
        );
        let r = self
            .client
            .invoke(
                addr,
                RemotingCommand::request(request_code::SEND_MESSAGE_V2)
                    .with_ext("a", GROUP)
                    .with_ext("b", topic)
                    .with_ext("c", "TBW102")
                    .with_ext("d", 4)
                    .with_ext("e", 0)
                    .with_ext("f", 4)
                    .with_ext("g", now_ms())
                    .with_ext("h", 0)
                    .with_ext("i", props)
                    .with_ext("j", 0)
                    .with_ext("k", false)
                    .with_ext("m", false)
                    .with_body(body.as_bytes().to_vec()),
                Duration::from_secs(5),
            )
            .await
            .expect("send half");
        assert_eq!(r.code, 0, "half send: {:?}", r.remark);
        assert_eq!(r.ext("transactionId"), Some(uniq.as_str()));
        let qoff = r
            .ext("queueOffset")
            .and_then(|v| v.parse().ok())
            .expect("queueOffset");
        let (_, phys) = decode_message_id(r.ext("msgId").expect("msgId")).expect("offset msg id");
        (qoff, phys, uniq)
    }

    async fn end(
        &self,
        addr: &str,
        qoff: i64,
        phys: i64,
        uniq: &str,
        decision: i32,
        from_check: bool,
    ) {
        let r = self
            .client
            .invoke(
                addr,
                RemotingCommand::request(request_code::END_TRANSACTION)
                    .with_ext("producerGroup", GROUP)
                    .with_ext("tranStateTableOffset", qoff)
                    .with_ext("commitLogOffset", phys)
                    .with_ext("commitOrRollback", decision)
                    .with_ext("fromTransactionCheck", from_check)
                    .with_ext("msgId", uniq)
                    .with_ext("transactionId", uniq),
                Duration::from_secs(5),
            )
            .await;
        if decision == UNKNOWN {
            // Java answers nothing for "unknown": the call times out or the client gives up.
            return;
        }
        let r = r.expect("END_TRANSACTION answered");
        assert_eq!(r.code, 0, "END_TRANSACTION {decision}: {:?}", r.remark);
    }

    fn checks_for(&self, body: &str) -> Vec<Check> {
        self.checks
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.body == body)
            .cloned()
            .collect()
    }

    async fn wait_checks(&self, body: &str, n: usize) -> Vec<Check> {
        let r = wait_until(&format!("{n} checks of {body}"), WAIT, || {
            let c = self.checks_for(body);
            async move { (c.len() >= n).then_some(c) }
        })
        .await;
        r.unwrap_or_else(|e| panic!("{e}: {:?}", self.checks_for(body)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_transactions_commit_rollback_and_check_back_through_a_restart() {
    let mut c = Cluster::start().await;
    let topic = "TxOrders";
    broker_proc::create_topic(&c.admin, &c.addr, topic, 1, 6).await;
    let p = Producer::connect(&c.addr).await;

    // A half message is stored in the half topic, and the real topic shows nothing.
    let (q1, phys1, u1) = p.send_half(&c.addr, topic, "commit-me").await;
    assert_eq!(c.max_offset(topic).await, 0, "a half message is invisible");
    assert_eq!(c.max_offset(HALF_TOPIC).await, 1);
    assert!(c.stored(topic).await.is_empty());
    // Commit: the message appears once in its topic, with the commit bit; an op record.
    p.end(&c.addr, q1, phys1, &u1, COMMIT, false).await;
    assert_eq!(
        c.stored(topic).await,
        vec![("commit-me".to_string(), COMMIT)]
    );
    assert_eq!(c.max_offset(OP_TOPIC).await, 1);
    // A repeated commit delivers nothing twice.
    p.end(&c.addr, q1, phys1, &u1, COMMIT, false).await;
    assert_eq!(c.max_offset(topic).await, 1);
    // From now on the committed transaction is never checked (a check before the commit
    // arrived, on a slow machine, is allowed: the commit decides its copy too).
    let commit_checks = p.checks_for("commit-me").len();

    // Rollback: nothing delivered, an op record.
    let (q2, phys2, u2) = p.send_half(&c.addr, topic, "roll-me-back").await;
    p.end(&c.addr, q2, phys2, &u2, ROLLBACK, false).await;
    assert_eq!(c.max_offset(OP_TOPIC).await, 2);
    let rollback_checks = p.checks_for("roll-me-back").len();
    // A wrong producer group or offset is refused.
    let (q3, phys3, _) = p.send_half(&c.addr, topic, "check-me").await;
    let wrong = p
        .client
        .invoke(
            &c.addr,
            RemotingCommand::request(request_code::END_TRANSACTION)
                .with_ext("producerGroup", "other-group")
                .with_ext("tranStateTableOffset", q3)
                .with_ext("commitLogOffset", phys3)
                .with_ext("commitOrRollback", COMMIT)
                .with_ext("msgId", "x"),
            Duration::from_secs(5),
        )
        .await
        .expect("answered");
    assert_ne!(wrong.code, 0);
    assert_eq!(wrong.remark.as_deref(), Some("The producer group wrong"));

    // Check-back: "check-me" is left open. The broker asks after transactionTimeOut; the
    // producer answers UNKNOW, the broker asks again (about a new copy), the producer
    // commits that copy.
    let first = p.wait_checks("check-me", 1).await;
    let ck = &first[0];
    assert_eq!(ck.topic, topic, "the check carries the real topic");
    assert_eq!(ck.check_times.as_deref(), Some("1"));
    assert_eq!(ck.msg_id, "UNIQ-check-me");
    assert!(ck.table_offset > q3, "the check names the re-put copy");
    p.end(
        &c.addr,
        ck.table_offset,
        ck.commit_log_offset,
        &ck.msg_id,
        UNKNOWN,
        true,
    )
    .await;
    let second = p.wait_checks("check-me", 2).await;
    let ck2 = second[1].clone();
    assert_eq!(ck2.check_times.as_deref(), Some("2"));
    assert!(ck2.table_offset > ck.table_offset);
    p.end(
        &c.addr,
        ck2.table_offset,
        ck2.commit_log_offset,
        &ck2.msg_id,
        COMMIT,
        true,
    )
    .await;
    let bodies: Vec<_> = c.stored(topic).await.into_iter().map(|(b, _)| b).collect();
    assert_eq!(bodies, vec!["commit-me", "check-me"]);
    // Resolved transactions are not checked again: not the committed, not the rolled back.
    assert_eq!(p.checks_for("commit-me").len(), commit_checks);
    assert_eq!(p.checks_for("roll-me-back").len(), rollback_checks);

    // Never answered: after transactionCheckMax (3) checks it is given up, not delivered.
    let _ = p.send_half(&c.addr, topic, "abandoned").await;
    p.wait_checks("abandoned", 3).await;
    let (a, addr) = (c.admin.clone(), c.addr.clone());
    wait_until("the abandoned transaction given up", WAIT, || {
        let (a, addr) = (a.clone(), addr.clone());
        async move {
            (broker_proc::max_offset(&a, &addr, "TRANS_CHECK_MAX_TIME_TOPIC", 0).await == 1)
                .then_some(())
        }
    })
    .await
    .expect("given up after transactionCheckMax checks");
    assert_eq!(p.checks_for("abandoned").len(), 3);

    // An open transaction survives a restart: the new broker asks again, and the commit
    // delivers it once; nothing resolved before the restart is checked or delivered again.
    let (_q5, _phys5, _) = p.send_half(&c.addr, topic, "across-restart").await;
    c.restart().await;
    let p2 = Producer::connect(&c.addr).await;
    let after = p2.wait_checks("across-restart", 1).await;
    let ck5 = &after[0];
    p2.end(
        &c.addr,
        ck5.table_offset,
        ck5.commit_log_offset,
        &ck5.msg_id,
        COMMIT,
        true,
    )
    .await;
    let bodies: Vec<_> = c.stored(topic).await.into_iter().map(|(b, _)| b).collect();
    assert_eq!(bodies, vec!["commit-me", "check-me", "across-restart"]);
    // A later open transaction is checked and committed after the restart too, which
    // proves the checker ran rounds over everything before it.
    let (_q6, _phys6, _) = p2.send_half(&c.addr, topic, "last").await;
    let last = p2.wait_checks("last", 1).await;
    p2.end(
        &c.addr,
        last[0].table_offset,
        last[0].commit_log_offset,
        &last[0].msg_id,
        COMMIT,
        true,
    )
    .await;
    let bodies: Vec<_> = c.stored(topic).await.into_iter().map(|(b, _)| b).collect();
    assert_eq!(
        bodies,
        vec!["commit-me", "check-me", "across-restart", "last"]
    );
    for old in ["commit-me", "roll-me-back", "check-me"] {
        assert!(
            p2.checks_for(old).is_empty(),
            "{old} checked after the restart"
        );
    }
}

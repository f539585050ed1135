//! End-to-end tests of DLedger broker groups: three real `flotilla-broker` processes with
//! `enableDLegerCommitLog=true`, a real `flotilla-namesrv`, and the real RocketMQ client.
//!
//! - exactly one member registers as brokerId 0; the client produces and consumes through the
//!   nameserver; a follower refuses a send without appending it; leadership transfer through
//!   FLOTILLA_TRANSFER_LEADERSHIP moves brokerId 0;
//! - the leader is SIGKILLed (and restarted) three times while a producer sends: every
//!   acknowledged message is consumable afterwards, queue offsets have no gaps, and no term
//!   ever had two leaders (polled runtime info and every broker's role-change log lines);
//! - a leader cut off by loopback fault proxies between the peers is replaced by the majority,
//!   acknowledges nothing after its lease, and rejoins as a follower with the new log.
//!
//! Everything binds 127.0.0.1; waits are bounded polls.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_remoting::{RemotingClient, RemotingCommand, request_code, response_code};
use flotilla_tests::broker_proc::{
    self as bp, Namesrv, broker_log, call, info_i64, registered_ids, runtime_info, spawn_broker,
    topic_queues,
};
use flotilla_tests::fault_proxy::FaultProxy;
use flotilla_tests::rmq::{self, Client};
use flotilla_tests::{Proc, free_broker_port, free_port, temp_dir, wait_until};
use rocketmq_client_rust::SendStatus;

const WAIT: Duration = Duration::from_secs(20);
const CLUSTER: &str = "RaftCluster";
const BROKER: &str = "RaftNode00";
const TOPIC: &str = "DlTopic";
const QUEUES: i32 = 4;
/// `flotillaSlaveSyncIntervalMills`: how often followers copy the leader's metadata.
const SYNC_MS: u64 = 500;

// ------------------------------------------------------------------------------------------
// Harness

struct Member {
    id: String,
    proc: Proc,
    dir: PathBuf,
    conf: PathBuf,
    addr: String,
}

impl Member {
    fn restart(&mut self) {
        self.proc.kill();
        self.proc = spawn_broker(&self.dir, &self.conf, &self.id);
    }

    fn log(&self) -> String {
        broker_log(&self.dir)
    }
}

/// A three-member group. `peers[i]` is member i's own `dLegerPeers` string (with fault
/// proxies, each member reaches the others through its own proxies).
struct Group {
    _dir: tempfile::TempDir,
    ns: Namesrv,
    members: Vec<Member>,
    admin: RemotingClient,
    _proxies: Vec<Vec<Option<FaultProxy>>>,
}

impl Group {
    async fn start(with_proxies: bool) -> Group {
        let dir = temp_dir("dledger");
        let ns = Namesrv::start(dir.path(), "namesrv");
        let n = 3;
        let ids: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
        let dl_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut proxies: Vec<Vec<Option<FaultProxy>>> = Vec::new();
        for i in 0..n {
            let mut row = Vec::new();
            for (j, port) in dl_ports.iter().enumerate() {
                if with_proxies && i != j {
                    let target = format!("127.0.0.1:{port}").parse().expect("addr");
                    row.push(Some(FaultProxy::start(target).await.expect("proxy")));
                } else {
                    row.push(None);
                }
            }
            proxies.push(row);
        }
        let mut members = Vec::new();
        for i in 0..n {
            let peers: Vec<String> = (0..n)
                .map(|j| {
                    let port = proxies[i][j]
                        .as_ref()
                        .map_or(dl_ports[j], |p| p.addr().port());
                    format!("{}-127.0.0.1:{port}", ids[j])
                })
                .collect();
            let mdir = dir.path().join(&ids[i]);
            std::fs::create_dir_all(&mdir).expect("member dir");
            let port = free_broker_port();
            let text = format!(
                "brokerClusterName={CLUSTER}\nbrokerName={BROKER}\nnamesrvAddr={}\n\
                 listenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
                 storePathRootDir={}\nflushDiskType=ASYNC_FLUSH\nregisterNameServerPeriod=1000\n\
                 flushConsumerOffsetInterval=500\nmappedFileSizeCommitLog=1048576\n\
                 enableDLegerCommitLog=true\ndLegerGroup={BROKER}\ndLegerPeers={}\n\
                 dLegerSelfId={}\nflotillaDLegerElectionTimeoutMills=600\n\
                 flotillaDLegerHeartbeatIntervalMills=100\nflotillaDLegerLeaseMills=450\n\
                 flotillaDLegerCommitTimeoutMills=2000\nflotillaSlaveSyncIntervalMills={SYNC_MS}\n",
                ns.addr,
                mdir.join("store").display(),
                peers.join(";"),
                ids[i],
            );
            let conf = flotilla_tests::broker_proc::write_conf(&mdir, &text, &[]);
            let proc = spawn_broker(&mdir, &conf, &ids[i]);
            members.push(Member {
                id: ids[i].clone(),
                proc,
                dir: mdir,
                conf,
                addr: format!("127.0.0.1:{port}"),
            });
        }
        Group {
            _dir: dir,
            ns,
            members,
            admin: RemotingClient::new(Default::default()),
            _proxies: proxies,
        }
    }

    /// The member that reports itself LEADER and writable, among `among`.
    async fn leader_among(&self, among: &[usize]) -> Option<usize> {
        let mut found = None;
        for &i in among {
            let info = runtime_info(&self.admin, &self.members[i].addr).await?;
            if info.get("dLegerRole").map(String::as_str) == Some("LEADER")
                && info.get("dLegerWritable").map(String::as_str) == Some("true")
            {
                if found.is_some() {
                    return None;
                }
                found = Some(i);
            }
        }
        found
    }

    async fn wait_leader(&self, among: &[usize]) -> usize {
        wait_until("a writable DLedger leader", WAIT, || {
            self.leader_among(among)
        })
        .await
        .expect("leader elected")
    }

    /// Creates the test topic on the leader only (UPDATE_AND_CREATE_TOPIC) and waits until
    /// both followers copied it from the leader.
    async fn create_topic(&self, leader: usize) {
        let m = &self.members[leader];
        bp::create_topic(&self.admin, &m.addr, TOPIC, QUEUES, 6).await;
        for f in &self.members {
            wait_until(
                "a follower to copy the topic from the leader",
                WAIT,
                || async {
                    topic_queues(&self.admin, &f.addr, TOPIC)
                        .await
                        .filter(|&q| q == QUEUES)
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.id));
        }
    }

    /// Waits until the nameserver lists exactly the leader as brokerId 0 and every member
    /// once.
    async fn wait_registered_leader(&self, leader: usize) {
        let want = self.members[leader].addr.clone();
        let n = self.members.len();
        wait_until("the leader registered as brokerId 0", WAIT, || async {
            let ids = registered_ids(&self.admin, &self.ns.addr, BROKER).await;
            let addrs: BTreeSet<&String> = ids.values().collect();
            (ids.get(&0) == Some(&want) && ids.len() == n && addrs.len() == n).then_some(())
        })
        .await
        .expect("registration (see namesrv.log)");
    }

    /// Every (term → leader ids) claim in the members' role-change log lines.
    fn logged_leaders(&self) -> BTreeMap<u64, BTreeSet<String>> {
        let mut out: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for m in &self.members {
            for line in m.log().lines() {
                if !line.contains("dledger role change") {
                    continue;
                }
                let line = strip_ansi(line);
                let role = field(&line, "dledger_role");
                let term = field(&line, "term").and_then(|t| t.parse::<u64>().ok());
                if let (Some("LEADER"), Some(term)) = (role.as_deref(), term) {
                    out.entry(term).or_default().insert(m.id.clone());
                }
            }
        }
        out
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `key=value` (quotes stripped) in a tracing line.
fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!(" {key}=");
    let at = line.find(&pat)? + pat.len();
    let v: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    Some(v.trim_matches('"').to_string())
}

/// The committed offset of `group` on each queue of the test topic (-1: none).
async fn group_offsets(admin: &RemotingClient, addr: &str, group: &str) -> Option<Vec<i64>> {
    let mut out = Vec::new();
    for q in 0..QUEUES {
        let r = call(
            admin,
            addr,
            RemotingCommand::request(request_code::QUERY_CONSUMER_OFFSET)
                .with_ext("consumerGroup", group)
                .with_ext("topic", TOPIC)
                .with_ext("queueId", q),
        )
        .await?;
        out.push(if r.code == 0 {
            r.ext("offset").and_then(|v| v.parse().ok()).unwrap_or(-1)
        } else {
            -1
        });
    }
    Some(out)
}

/// A hand-built SEND_MESSAGE of the test topic straight to `addr`; returns the response
/// code (-1: no answer).
async fn send_raw(admin: &RemotingClient, addr: &str, body: &str) -> (i32, Option<String>) {
    match bp::send_raw(admin, addr, TOPIC, body).await {
        Some(r) => (r.code, r.remark),
        None => (-1, None),
    }
}

async fn max_offset(admin: &RemotingClient, addr: &str, queue: i32) -> i64 {
    bp::max_offset(admin, addr, TOPIC, queue).await
}

/// Queue offsets of every record of a queue, read with raw pulls from 0 up to its max.
async fn queue_offsets(admin: &RemotingClient, addr: &str, queue: i32) -> Vec<i64> {
    let max = max_offset(admin, addr, queue).await;
    let mut out = Vec::new();
    let mut from = 0i64;
    for _ in 0..1000 {
        if from >= max {
            break;
        }
        let r = bp::pull_raw(admin, addr, TOPIC, queue, from, 32).await;
        assert_eq!(r.code, 0, "pull {queue}@{from}: {:?}", r.remark);
        let body = &r.body;
        let mut pos = 0usize;
        while pos + 28 <= body.len() {
            let size = i32::from_be_bytes(body[pos..pos + 4].try_into().expect("4 bytes"));
            let qoff = i64::from_be_bytes(body[pos + 20..pos + 28].try_into().expect("8 bytes"));
            out.push(qoff);
            pos += usize::try_from(size).expect("record size");
        }
        let next: i64 = r
            .ext("nextBeginOffset")
            .and_then(|v| v.parse().ok())
            .expect("nextBeginOffset");
        assert!(next > from, "pull made no progress at {from}");
        from = next;
    }
    out
}

/// Term → members that reported LEADER in it.
type LeaderLog = Arc<Mutex<BTreeMap<u64, BTreeSet<String>>>>;

/// Records every (term, member) that reported LEADER, polling all members until stopped.
fn spawn_role_poller(
    addrs: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
) -> (LeaderLog, tokio::task::JoinHandle<()>) {
    let seen: LeaderLog = Arc::default();
    let s2 = seen.clone();
    let task = tokio::spawn(async move {
        let admin = RemotingClient::new(Default::default());
        for _ in 0..20_000 {
            if stop.load(Ordering::Acquire) {
                break;
            }
            for (id, addr) in &addrs {
                if let Some(info) = runtime_info(&admin, addr).await
                    && info.get("dLegerRole").map(String::as_str) == Some("LEADER")
                    && let Some(term) = info.get("dLegerTerm").and_then(|t| t.parse().ok())
                {
                    s2.lock()
                        .expect("poller lock")
                        .entry(term)
                        .or_default()
                        .insert(id.clone());
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    (seen, task)
}

fn assert_one_leader_per_term(what: &str, m: &BTreeMap<u64, BTreeSet<String>>) {
    for (term, leaders) in m {
        assert!(
            leaders.len() <= 1,
            "{what}: term {term} had leaders {leaders:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_registers_as_master_and_serves_the_client() {
    let g = Group::start(false).await;
    let all = [0, 1, 2];
    let leader = g.wait_leader(&all).await;
    g.create_topic(leader).await;
    g.wait_registered_leader(leader).await;

    // Produce and consume through the nameserver with the real client.
    let client = Client::new("dl-a");
    let producer = client.producer(&g.ns.addr, "pg-dl-a").await;
    let bodies: Vec<String> = (0..20).map(|i| format!("a-{i}")).collect();
    let acked = rmq::send_all(&producer, TOPIC, bodies.clone(), 3).await;
    assert_eq!(acked.len(), bodies.len(), "every send acknowledged");
    rmq::consume_all(&client, &g.ns.addr, "cg-dl-a", TOPIC, &acked, WAIT).await;

    // A follower refuses a send and never appends it.
    let follower = (leader + 1) % 3;
    let faddr = &g.members[follower].addr;
    let before = info_i64(&g.admin, faddr, "commitLogMaxOffset")
        .await
        .expect("follower max offset");
    let (code, remark) = send_raw(&g.admin, faddr, "to-a-follower").await;
    assert_eq!(
        code,
        response_code::SERVICE_NOT_AVAILABLE,
        "follower answered {code}: {remark:?}"
    );
    assert!(
        remark.as_deref().unwrap_or("").contains("not master"),
        "{remark:?}"
    );
    let after = info_i64(&g.admin, faddr, "commitLogMaxOffset")
        .await
        .expect("follower max offset");
    let leader_max = info_i64(&g.admin, &g.members[leader].addr, "commitLogMaxOffset")
        .await
        .expect("leader max offset");
    assert!(
        after >= before && after <= leader_max,
        "follower appended on its own"
    );

    // Runtime info speaks the agent's keys.
    let info = runtime_info(&g.admin, &g.members[leader].addr)
        .await
        .expect("runtime info");
    assert_eq!(info["brokerId"], "0");
    assert_eq!(info["brokerRole"], "SYNC_MASTER");
    assert!(info["dLegerTerm"].parse::<u64>().expect("term") >= 1);
    assert_eq!(info["dLegerLeader"], g.members[leader].id);
    let finfo = runtime_info(&g.admin, faddr).await.expect("runtime info");
    assert_eq!(finfo["dLegerRole"], "FOLLOWER");
    assert_eq!(finfo["brokerId"], (follower + 1).to_string());

    // Leadership transfer from outside moves brokerId 0.
    let r = g
        .admin
        .invoke(
            &g.members[leader].addr,
            RemotingCommand::request(request_code::FLOTILLA_TRANSFER_LEADERSHIP)
                .with_ext("targetSelfId", g.members[follower].id.as_str())
                .with_ext("timeoutMillis", 10_000),
            Duration::from_secs(15),
        )
        .await
        .expect("transfer call");
    assert_eq!(r.code, 0, "transfer: {:?}", r.remark);
    assert_eq!(g.wait_leader(&all).await, follower);
    g.wait_registered_leader(follower).await;
    let producer2 = client.producer(&g.ns.addr, "pg-dl-a2").await;
    let more = rmq::send_all(&producer2, TOPIC, (0..5).map(|i| format!("a2-{i}")), 5).await;
    assert_eq!(more.len(), 5, "the new leader takes writes");
    assert_one_leader_per_term("logs", &g.logged_leaders());
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_loses_no_acknowledged_message() {
    let mut g = Group::start(false).await;
    let all = [0, 1, 2];
    let first = g.wait_leader(&all).await;
    g.create_topic(first).await;
    g.wait_registered_leader(first).await;
    let stop_poll = Arc::new(AtomicBool::new(false));
    let ids_addrs: Vec<(String, String)> = g
        .members
        .iter()
        .map(|m| (m.id.clone(), m.addr.clone()))
        .collect();
    let (polled, poller) = spawn_role_poller(ids_addrs, stop_poll.clone());

    // A producer sending continuously; on repeated failures it starts over with a fresh
    // client (fresh routes from the nameserver).
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop_send = Arc::new(AtomicBool::new(false));
    let ns = g.ns.addr.clone();
    let sender = {
        let acked = acked.clone();
        let stop = stop_send.clone();
        tokio::spawn(async move {
            let mut seq = 0u64;
            'outer: for attempt in 0..40 {
                let client = Client::new(&format!("dl-b{attempt}"));
                let producer = client.producer(&ns, &format!("pg-dl-b{attempt}")).await;
                let mut failures = 0;
                for _ in 0..2000 {
                    if stop.load(Ordering::Acquire) {
                        drop(producer);
                        tokio::spawn(client.shutdown());
                        break 'outer;
                    }
                    let body = format!("b-{seq}");
                    seq += 1;
                    // A send to a killed broker waits for the client's 5 s response
                    // timeout; give up sooner (an unanswered send is not acknowledged).
                    let sent = tokio::time::timeout(
                        Duration::from_millis(1500),
                        producer.send(rmq::msg(TOPIC, "t", &body)),
                    )
                    .await
                    .unwrap_or_else(|_| Ok(None));
                    match sent {
                        Ok(Some(r)) if r.send_status == SendStatus::SendOk => {
                            acked.lock().expect("acked lock").insert(body);
                            failures = 0;
                        }
                        other => {
                            let why = match &other {
                                Err(e) => rmq::error_chain(e),
                                Ok(r) => format!("{r:?}"),
                            };
                            eprintln!("send {body} not acknowledged: {why}");
                            failures += 1;
                            if failures >= 2 {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                // Shutting a client down may wait on the dead broker: do it aside.
                drop(producer);
                tokio::spawn(client.shutdown());
                eprintln!("sender: starting over with a fresh client");
            }
        })
    };
    let count = |a: &Arc<Mutex<BTreeSet<String>>>| a.lock().expect("acked lock").len();

    let t0 = std::time::Instant::now();
    let mut leader = first;
    for round in 0..3 {
        let base = count(&acked);
        wait_until("sends acknowledged before the kill", WAIT, || async {
            (count(&acked) >= base + 10).then_some(())
        })
        .await
        .expect("producer makes progress");
        eprintln!(
            "{:?} round {round}: SIGKILL leader {}",
            t0.elapsed(),
            g.members[leader].id
        );
        g.members[leader].proc.kill();
        let others: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
        let next = g.wait_leader(&others).await;
        g.members[leader].restart();
        let base = count(&acked);
        wait_until("sends acknowledged by the new leader", WAIT, || async {
            (count(&acked) >= base + 10).then_some(())
        })
        .await
        .expect("producer makes progress after failover");
        leader = next;
    }
    stop_send.store(true, Ordering::Release);
    sender.await.expect("sender task");
    let acked = acked.lock().expect("acked lock").clone();
    eprintln!(
        "{:?} rounds done, {} acknowledged",
        t0.elapsed(),
        acked.len()
    );
    assert!(acked.len() >= 60, "only {} acknowledged", acked.len());

    // Every member is back; the group converges.
    let leader = g.wait_leader(&all).await;
    g.wait_registered_leader(leader).await;
    let laddr = g.members[leader].addr.clone();

    // Every acknowledged message is consumable through the nameserver.
    let client = Client::new("dl-b-consume");
    rmq::consume_all(&client, &g.ns.addr, "cg-dl-b", TOPIC, &acked, WAIT).await;
    eprintln!("{:?} consumed", t0.elapsed());
    client.shutdown().await;

    // Per-queue offsets have no gaps.
    let mut total = 0;
    for q in 0..QUEUES {
        let offs = queue_offsets(&g.admin, &laddr, q).await;
        let want: Vec<i64> = (0..offs.len() as i64).collect();
        assert_eq!(offs, want, "queue {q} offsets");
        total += offs.len();
    }
    assert!(
        total >= acked.len(),
        "{total} records < {} acked",
        acked.len()
    );

    stop_poll.store(true, Ordering::Release);
    poller.await.expect("poller");
    let polled = polled.lock().expect("polled lock").clone();
    assert!(polled.len() >= 3, "terms seen: {polled:?}");
    assert_one_leader_per_term("polled runtime info", &polled);
    assert_one_leader_per_term("logs", &g.logged_leaders());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_is_replaced_and_rejoins_as_follower() {
    let g = Group::start(true).await;
    let all = [0usize, 1, 2];
    let old = g.wait_leader(&all).await;
    g.create_topic(old).await;
    g.wait_registered_leader(old).await;
    let client = Client::new("dl-c");
    let producer = client.producer(&g.ns.addr, "pg-dl-c").await;
    let mut acked = rmq::send_all(&producer, TOPIC, (0..10).map(|i| format!("c-{i}")), 3).await;
    assert_eq!(acked.len(), 10);

    // Cut the leader off from both peers, both directions.
    for (i, row) in g._proxies.iter().enumerate() {
        for (j, p) in row.iter().enumerate() {
            if let Some(p) = p
                && (i == old || j == old)
            {
                p.block();
            }
        }
    }
    // A write to the cut-off leader is never acknowledged.
    let (code, remark) = send_raw(&g.admin, &g.members[old].addr, "to-the-cut-off-leader").await;
    assert_ne!(code, 0, "isolated leader acknowledged a write: {remark:?}");

    let others: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    let new = g.wait_leader(&others).await;
    wait_until("the old leader to step down", WAIT, || async {
        let info = runtime_info(&g.admin, &g.members[old].addr).await?;
        (info.get("dLegerRole").map(String::as_str) != Some("LEADER")).then_some(())
    })
    .await
    .expect("old leader steps down after its lease");
    let (code, remark) = send_raw(&g.admin, &g.members[old].addr, "after-the-lease").await;
    assert_eq!(
        code,
        response_code::SERVICE_NOT_AVAILABLE,
        "old leader after its lease: {remark:?}"
    );
    g.wait_registered_leader(new).await;

    // The majority serves the real client.
    let client2 = Client::new("dl-c2");
    let producer2 = client2.producer(&g.ns.addr, "pg-dl-c2").await;
    let more = rmq::send_all(&producer2, TOPIC, (0..10).map(|i| format!("c2-{i}")), 5).await;
    assert_eq!(more.len(), 10, "the new leader takes writes");
    acked.extend(more);

    // Heal: the old leader follows the new one and holds its log.
    for row in &g._proxies {
        for p in row.iter().flatten() {
            p.unblock();
        }
    }
    let new_addr = g.members[new].addr.clone();
    let new_id = g.members[new].id.clone();
    wait_until(
        "the old leader to rejoin with the new log",
        WAIT,
        || async {
            let o = runtime_info(&g.admin, &g.members[old].addr).await?;
            let n = runtime_info(&g.admin, &new_addr).await?;
            let same = |k: &str| o.contains_key(k) && o.get(k) == n.get(k);
            (o.get("dLegerRole").map(String::as_str) == Some("FOLLOWER")
                && o.get("dLegerLeader") == Some(&new_id)
                && same("dLegerTerm")
                && same("commitLogMaxOffset")
                && same("dLegerCommitOffset"))
            .then_some(())
        },
    )
    .await
    .expect("old leader rejoins");
    assert_eq!(
        g.wait_leader(&all).await,
        new,
        "the old leader did not disrupt"
    );

    rmq::consume_all(&client2, &g.ns.addr, "cg-dl-c", TOPIC, &acked, WAIT).await;
    assert_one_leader_per_term("logs", &g.logged_leaders());
    client.shutdown().await;
    client2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_copy_leader_metadata_and_offsets_survive_failover() {
    let mut g = Group::start(false).await;
    let all = [0usize, 1, 2];
    let old = g.wait_leader(&all).await;
    // The topic is created on the leader only; create_topic waits for the followers' copies.
    g.create_topic(old).await;
    g.wait_registered_leader(old).await;
    let group = "cg-dl-d";
    let client = Client::new("dl-d");
    let producer = client.producer(&g.ns.addr, "pg-dl-d").await;
    let first = rmq::send_all(&producer, TOPIC, (0..40).map(|i| format!("d-{i}")), 3).await;
    assert_eq!(first.len(), 40);
    // Consume everything; the consumer commits its offsets to the leader when it stops.
    rmq::consume_all(&client, &g.ns.addr, group, TOPIC, &first, WAIT).await;
    let laddr = g.members[old].addr.clone();
    let mut ends = Vec::new();
    for q in 0..QUEUES {
        ends.push(max_offset(&g.admin, &laddr, q).await);
    }
    assert_eq!(ends.iter().sum::<i64>(), 40, "queue ends {ends:?}");
    wait_until(
        "the leader to hold the group's final offsets",
        WAIT,
        || async { (group_offsets(&g.admin, &laddr, group).await? == ends).then_some(()) },
    )
    .await
    .expect("consumer offsets committed to the leader");
    // Both followers copy them within the sync interval.
    for (i, m) in g.members.iter().enumerate() {
        if i == old {
            continue;
        }
        wait_until("a follower to copy the group's offsets", WAIT, || async {
            (group_offsets(&g.admin, &m.addr, group).await? == ends).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", m.id));
        let info = runtime_info(&g.admin, &m.addr).await.expect("runtime info");
        assert_eq!(info["flotillaMetadataSyncOk"], "true", "{}", m.id);
    }

    // Messages the first consumer sent back (CONSUMER_SEND_MSG_BACK) come again through the
    // retry topic whatever the offsets say; count them (normally none).
    let retry_topic = format!("%RETRY%{group}");
    let retried = bp::max_offset(&g.admin, &laddr, &retry_topic, 0)
        .await
        .max(0)
        + bp::max_offset(&g.admin, &laddr, "SCHEDULE_TOPIC_XXXX", 2)
            .await
            .max(0);
    eprintln!("sent back by the first consumer: {retried}");

    // SIGKILL the leader: the new leader already holds the topic and the offsets.
    g.members[old].proc.kill();
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    let new = g.wait_leader(&others).await;
    let naddr = g.members[new].addr.clone();
    assert_eq!(topic_queues(&g.admin, &naddr, TOPIC).await, Some(QUEUES));
    assert_eq!(
        group_offsets(&g.admin, &naddr, group).await,
        Some(ends.clone()),
        "offsets on the new leader"
    );
    wait_until("the new leader registered as brokerId 0", WAIT, || async {
        let ids = registered_ids(&g.admin, &g.ns.addr, BROKER).await;
        (ids.get(&0) == Some(&naddr)).then_some(())
    })
    .await
    .expect("new leader registered");

    // A new consumer of the same group resumes at the committed offsets: it gets the new
    // messages and none of the 40 consumed before the kill (the last sync preceded it).
    let producer2 = client.producer(&g.ns.addr, "pg-dl-d2").await;
    let after = rmq::send_all(&producer2, TOPIC, (0..10).map(|i| format!("d2-{i}")), 5).await;
    assert_eq!(after.len(), 10, "the new leader takes writes");
    let collector = rmq::Collector::default();
    {
        use rocketmq_client_rust::MQPushConsumer;
        let mut consumer = client.push_consumer(&g.ns.addr, group).build();
        consumer.subscribe(TOPIC, "*").await.expect("subscribe");
        consumer.register_message_listener_concurrently(collector.clone());
        consumer.start().await.expect("consumer start");
        collector.wait_for(&after, WAIT).await;
        consumer.shutdown().await;
    }
    let redelivered: Vec<String> = collector.distinct().intersection(&first).cloned().collect();
    assert!(
        i64::try_from(redelivered.len()).expect("small") <= retried,
        "consumed-before-failover messages redelivered: {redelivered:?} ({retried} sent back)"
    );
    client.shutdown().await;
}

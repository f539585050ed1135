//! Replication benchmark: DLedger failover time and replicated send throughput, measured on
//! real `flotilla-namesrv` / `flotilla-broker` processes (release builds) on 127.0.0.1.
//!
//! ```text
//! cargo build --release --bins
//! cargo run --release -p flotilla-tests --example replication_bench -- --rounds 20
//! ```
//!
//! **Failover** (a three-member DLedger group and a nameserver, the broker's default
//! election timings unless `--tuned-rounds` adds a labelled run with shorter ones). Each
//! round finds the leader (runtime info `dLegerRole=LEADER`, `dLegerWritable=true`),
//! SIGKILLs it and measures, from the kill, concurrently:
//!
//! - *elected*: a survivor reports itself writable leader in its runtime info;
//! - *(a) server-side*: a hand-built SEND_MESSAGE (our remoting client) sent in turn to each
//!   survivor until one answers SUCCESS — the group's own failover time;
//! - *(b) real client*: a long-lived `rocketmq-client-rust` producer, routed by the
//!   nameserver, sending until a send is acknowledged SEND_OK (adds the client's route
//!   refresh, every `pollNameServerInterval` = 30 s; the kill is made at a random phase of
//!   that period, and this is measured in the default-timings run only);
//! - *nameserver*: the nameserver lists a survivor as brokerId 0.
//!
//! The victim is then restarted and the next round starts once it follows the new leader
//! with the same CommitLog end, the nameserver lists the new leader as brokerId 0 and the
//! real client has had a send acknowledged again.
//!
//! **Throughput**: the same 1 KiB one-message-per-request sync-send workload
//! (`flotilla_broker::bench`, SEND_MESSAGE_V2 over our remoting client) against an
//! ASYNC_MASTER with a slave, a SYNC_MASTER with a slave, and the leader of a three-member
//! DLedger group, one topology at a time, at each `--concurrency` level.
//!
//! Every process is owned by a [`Proc`], which SIGKILLs it when dropped (also when this
//! program panics); every wait is bounded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla_broker::bench::{self, BenchOpts, PhaseReport, ProduceMode, Workload};
use flotilla_remoting::{RemotingClient, RemotingCommand, request_code};
use flotilla_tests::broker_proc::{
    self as bp, Namesrv, info_i64, registered_ids, runtime_info, spawn_broker,
};
use flotilla_tests::rmq::{self, Client};
use flotilla_tests::{Proc, free_broker_port, free_port, temp_dir, wait_for_port, wait_until};
use rocketmq_client_rust::{DefaultMQProducer, SendStatus};

/// Longest wait for any one condition (start-up, rejoin, registration).
const WAIT: Duration = Duration::from_secs(60);
/// A round whose failover has not completed after this is recorded as failed.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);
/// Pause between two probes of the same kind while measuring failover.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// The real client's default `pollNameServerInterval` (route refresh period).
const CLIENT_ROUTE_POLL: Duration = Duration::from_secs(30);
const CLUSTER: &str = "BenchCluster";
const TOPIC: &str = "FailoverTopic";

// ------------------------------------------------------------------------------------------
// Options

struct Opts {
    rounds: usize,
    tuned_rounds: usize,
    tuned: (u64, u64, u64),
    bench_secs: u64,
    concurrency: Vec<usize>,
    failover: bool,
    throughput: bool,
    real_client: bool,
    keep: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: replication_bench [--rounds N] [--tuned-rounds N] [--tuned ELECTION,HEARTBEAT,LEASE]\n\
         \x20                        [--bench-secs S] [--concurrency C1,C2,..] [--no-failover]\n\
         \x20                        [--no-throughput] [--no-real-client] [--keep]\n\
         defaults: --rounds 20 --tuned-rounds 0 --tuned 500,100,400 --bench-secs 10 --concurrency 1,32"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        rounds: 20,
        tuned_rounds: 0,
        tuned: (500, 100, 400),
        bench_secs: 10,
        concurrency: vec![1, 32],
        failover: true,
        throughput: true,
        real_client: true,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    let num =
        |v: Option<String>| -> u64 { v.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()) };
    let list = |v: Option<String>| -> Vec<u64> {
        let v = v.unwrap_or_else(|| usage());
        let out: Vec<u64> = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
        if out.is_empty() || out.contains(&0) {
            usage()
        }
        out
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => o.rounds = num(args.next()) as usize,
            "--tuned-rounds" => o.tuned_rounds = num(args.next()) as usize,
            "--tuned" => match list(args.next())[..] {
                [e, h, l] => o.tuned = (e, h, l),
                _ => usage(),
            },
            "--bench-secs" => o.bench_secs = num(args.next()).max(1),
            "--concurrency" => {
                o.concurrency = list(args.next()).into_iter().map(|c| c as usize).collect()
            }
            "--no-failover" => o.failover = false,
            "--no-throughput" => o.throughput = false,
            "--no-real-client" => o.real_client = false,
            "--keep" => o.keep = true,
            _ => usage(),
        }
    }
    o
}

// ------------------------------------------------------------------------------------------
// Statistics

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// `min / median / p90 / max` in seconds, plus how many rounds failed.
fn summary(samples: &[Option<Duration>]) -> String {
    let mut ok: Vec<Duration> = samples.iter().flatten().copied().collect();
    ok.sort();
    let failed = samples.len() - ok.len();
    if ok.is_empty() {
        return format!("n/a ({failed} failed)");
    }
    format!(
        "{} / {} / {} / {}{}",
        secs(ok[0]),
        secs(pct(&ok, 0.5)),
        secs(pct(&ok, 0.9)),
        secs(ok[ok.len() - 1]),
        if failed > 0 {
            format!(
                " ({failed} of {} rounds over {FAILOVER_LIMIT:?})",
                samples.len()
            )
        } else {
            String::new()
        }
    )
}

// ------------------------------------------------------------------------------------------
// A DLedger group

struct Member {
    id: String,
    proc: Proc,
    dir: PathBuf,
    conf: PathBuf,
    addr: String,
}

struct DlGroup {
    ns: Namesrv,
    members: Vec<Member>,
    admin: RemotingClient,
    broker_name: String,
}

impl DlGroup {
    /// Three members of `broker_name` under `root`, with `timing` extra `broker.conf` lines
    /// (empty: the broker's defaults).
    async fn start(root: &Path, broker_name: &str, timing: &[(&str, String)]) -> DlGroup {
        let ns = Namesrv::start(root, &format!("{broker_name}-namesrv"));
        wait_for_port(&ns.addr, WAIT).await.expect("nameserver up");
        let ids: Vec<String> = (0..3).map(|i| format!("n{i}")).collect();
        let peers: Vec<String> = ids
            .iter()
            .map(|id| format!("{id}-127.0.0.1:{}", free_port()))
            .collect();
        let mut members = Vec::new();
        for id in &ids {
            let dir = root.join(format!("{broker_name}-{id}"));
            std::fs::create_dir_all(&dir).expect("member dir");
            let port = free_broker_port();
            let mut text = format!(
                "brokerClusterName={CLUSTER}\nbrokerName={broker_name}\nnamesrvAddr={}\n\
                 listenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
                 storePathRootDir={}\nflushDiskType=ASYNC_FLUSH\n\
                 enableDLegerCommitLog=true\ndLegerGroup={broker_name}\ndLegerPeers={}\n\
                 dLegerSelfId={id}\n",
                ns.addr,
                dir.join("store").display(),
                peers.join(";"),
            );
            for (k, v) in timing {
                text.push_str(&format!("{k}={v}\n"));
            }
            let conf = dir.join("broker.conf");
            std::fs::write(&conf, text).expect("write broker.conf");
            let proc = spawn_broker(&dir, &conf, id);
            members.push(Member {
                id: id.clone(),
                proc,
                dir,
                conf,
                addr: format!("127.0.0.1:{port}"),
            });
        }
        DlGroup {
            ns,
            members,
            admin: RemotingClient::new(Default::default()),
            broker_name: broker_name.to_string(),
        }
    }

    /// The only member among `among` that reports itself writable leader.
    async fn leader_among(&self, among: &[usize]) -> Option<usize> {
        let mut found = None;
        for &i in among {
            let Some(info) = runtime_info(&self.admin, &self.members[i].addr).await else {
                continue;
            };
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

    async fn wait_leader(&self) -> usize {
        wait_until("a writable DLedger leader", WAIT, || {
            self.leader_among(&[0, 1, 2])
        })
        .await
        .expect("leader elected")
    }

    /// Creates the failover topic on the leader and waits until every member copied it.
    async fn create_topic(&self, leader: usize, topic: &str) {
        bp::create_topic(&self.admin, &self.members[leader].addr, topic, 4, 6).await;
        for m in &self.members {
            wait_until("a follower to copy the topic", WAIT, || async {
                bp::topic_queues(&self.admin, &m.addr, topic).await
            })
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", m.id));
        }
    }

    /// Waits until the nameserver lists `leader` as brokerId 0.
    async fn wait_registered(&self, leader: usize) {
        let want = &self.members[leader].addr;
        wait_until("the leader registered as brokerId 0", WAIT, || async {
            let ids = registered_ids(&self.admin, &self.ns.addr, &self.broker_name).await;
            (ids.get(&0) == Some(want)).then_some(())
        })
        .await
        .expect("leader registered at the nameserver");
    }

    /// Waits until `m` follows `leader` with the leader's CommitLog end and commit offset.
    async fn wait_rejoined(&self, m: usize, leader: usize) -> Duration {
        let t0 = Instant::now();
        let lid = self.members[leader].id.clone();
        wait_until(
            "the restarted member to rejoin as follower",
            WAIT,
            || async {
                let f = runtime_info(&self.admin, &self.members[m].addr).await?;
                let l = runtime_info(&self.admin, &self.members[leader].addr).await?;
                let same = |k: &str| f.contains_key(k) && f.get(k) == l.get(k);
                (f.get("dLegerRole").map(String::as_str) == Some("FOLLOWER")
                    && f.get("dLegerLeader") == Some(&lid)
                    && same("dLegerTerm")
                    && same("commitLogMaxOffset"))
                .then_some(())
            },
        )
        .await
        .expect("victim rejoins");
        t0.elapsed()
    }
}

/// A SEND_MESSAGE of the failover topic straight to `addr`; whether it was acknowledged.
async fn raw_send_ok(admin: &RemotingClient, addr: &str, body: &str) -> bool {
    let cmd = RemotingCommand::request(request_code::SEND_MESSAGE)
        .with_ext("producerGroup", "pg-failover-raw")
        .with_ext("topic", TOPIC)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("defaultTopicQueueNums", 4)
        .with_ext("queueId", 0)
        .with_ext("sysFlag", 0)
        .with_ext("bornTimestamp", 1)
        .with_ext("flag", 0)
        .with_body(body.as_bytes().to_vec());
    // The commit wait is 2.5 s by default; allow a little more.
    matches!(admin.invoke(addr, cmd, Duration::from_secs(3)).await, Ok(r) if r.code == 0)
}

/// One real-client send, acknowledged SEND_OK within `limit`.
async fn client_send_ok(p: &DefaultMQProducer, body: &str, limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, p.send(rmq::msg(TOPIC, "t", body))).await,
        Ok(Ok(Some(r))) if r.send_status == SendStatus::SendOk
    )
}

/// What one failover round measured (from the SIGKILL).
struct Round {
    elected: Option<Duration>,
    raw: Option<Duration>,
    registered: Option<Duration>,
    client: Option<Duration>,
    rejoin: Duration,
}

/// Runs `rounds` kill/measure/restart rounds on a fresh group; prints each round.
async fn failover_run(
    root: &Path,
    label: &str,
    broker_name: &str,
    timing: &[(&str, String)],
    rounds: usize,
    real_client: bool,
) -> Vec<Round> {
    println!("\n== failover: {label} ==");
    let mut g = DlGroup::start(root, broker_name, timing).await;
    let mut leader = g.wait_leader().await;
    g.create_topic(leader, TOPIC).await;
    g.wait_registered(leader).await;
    let client = real_client.then(|| Client::new(&format!("fo-{broker_name}")));
    let producer = match &client {
        Some(c) => Some(
            c.producer_with_timeout(&g.ns.addr, &format!("pg-{broker_name}"), 2000)
                .await,
        ),
        None => None,
    };
    let mut out = Vec::new();
    let mut seq = 0u64;
    for round in 0..rounds {
        // Before the kill: the real client's route points at the current leader.
        if let Some(p) = &producer {
            let warm = wait_until("a real-client send before the kill", WAIT, || {
                seq += 1;
                let body = format!("warm-{round}-{seq}");
                async move {
                    client_send_ok(p, &body, Duration::from_secs(3))
                        .await
                        .then_some(())
                }
            })
            .await;
            warm.expect("real client sends before the kill");
        }
        let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let addrs: Vec<String> = survivors
            .iter()
            .map(|&i| g.members[i].addr.clone())
            .collect();
        let victim_id = g.members[leader].id.clone();

        // The real client refreshes routes every pollNameServerInterval (30 s, fixed rate
        // from its start) and the previous round ended right after such a refresh: kill at
        // a uniformly random phase of that period, or every round would measure the worst
        // case.
        if producer.is_some() {
            let phase = rand::random_range(0..CLIENT_ROUTE_POLL.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(phase)).await;
        }
        let new_addr_at_ns =
            |ids: BTreeMap<i64, String>| ids.get(&0).is_some_and(|a| addrs.contains(a));
        let t0 = Instant::now();
        g.members[leader].proc.kill();

        let admin = &g.admin;
        let elected = async {
            while t0.elapsed() < FAILOVER_LIMIT {
                for a in &addrs {
                    if let Some(info) = runtime_info(admin, a).await
                        && info.get("dLegerRole").map(String::as_str) == Some("LEADER")
                        && info.get("dLegerWritable").map(String::as_str) == Some("true")
                    {
                        return Some(t0.elapsed());
                    }
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
            None
        };
        let raw = async {
            let mut n = 0u64;
            while t0.elapsed() < FAILOVER_LIMIT {
                for a in &addrs {
                    n += 1;
                    if raw_send_ok(admin, a, &format!("raw-{round}-{n}")).await {
                        return Some(t0.elapsed());
                    }
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
            None
        };
        let by_client = async {
            let p = producer.as_ref()?;
            let mut n = 0u64;
            while t0.elapsed() < FAILOVER_LIMIT {
                n += 1;
                if client_send_ok(p, &format!("cl-{round}-{n}"), Duration::from_secs(3)).await {
                    return Some(t0.elapsed());
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
            None
        };
        let registered = async {
            while t0.elapsed() < FAILOVER_LIMIT {
                if new_addr_at_ns(registered_ids(admin, &g.ns.addr, &g.broker_name).await) {
                    return Some(t0.elapsed());
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
            None
        };
        let (elected, raw, registered, by_client) =
            tokio::join!(elected, raw, registered, by_client);

        let new_leader = wait_until("a writable leader among the survivors", WAIT, || {
            g.leader_among(&survivors)
        })
        .await
        .expect("new leader");
        let victim = leader;
        {
            let m = &mut g.members[victim];
            m.proc = spawn_broker(&m.dir, &m.conf, &m.id);
        }
        let rejoin = g.wait_rejoined(victim, new_leader).await;
        g.wait_registered(new_leader).await;
        let term = info_i64(&g.admin, &g.members[new_leader].addr, "dLegerTerm")
            .await
            .unwrap_or(-1);
        let show = |d: Option<Duration>| d.map_or_else(|| "FAILED".to_string(), secs);
        println!(
            "round {:>2}: killed {victim_id} -> leader {} (term {term}) | elected {} s | \
             (a) raw send acked {} s | nameserver id 0 {} s | (b) real client acked {} s | victim rejoined {} s after restart",
            round + 1,
            g.members[new_leader].id,
            show(elected),
            show(raw),
            show(registered),
            if producer.is_some() {
                show(by_client)
            } else {
                "-".into()
            },
            secs(rejoin),
        );
        out.push(Round {
            elected,
            raw,
            registered,
            client: by_client,
            rejoin,
        });
        leader = new_leader;
    }
    drop(producer);
    if let Some(c) = client {
        c.shutdown().await;
    }
    out
}

fn print_failover_summary(label: &str, rounds: &[Round], real_client: bool) {
    let col = |f: &dyn Fn(&Round) -> Option<Duration>| -> Vec<Option<Duration>> {
        rounds.iter().map(f).collect()
    };
    println!(
        "\n-- failover summary: {label} ({} rounds), seconds from SIGKILL, min / median / p90 / max --",
        rounds.len()
    );
    println!(
        "leader elected (runtime info)       : {}",
        summary(&col(&|r| r.elected))
    );
    println!(
        "(a) send acked, our remoting client : {}",
        summary(&col(&|r| r.raw))
    );
    println!(
        "survivor is brokerId 0 at the NS    : {}",
        summary(&col(&|r| r.registered))
    );
    if real_client {
        println!(
            "(b) send acked, real client via NS  : {}",
            summary(&col(&|r| r.client))
        );
    }
    println!(
        "victim rejoined (after restart)     : {}",
        summary(&col(&|r| Some(r.rejoin)))
    );
}

// ------------------------------------------------------------------------------------------
// Throughput

/// A master (or slave) of a classic master/slave pair.
fn start_ms_node(
    root: &Path,
    name: &str,
    ns: &str,
    broker: &str,
    id: i64,
    role: &str,
) -> (Proc, String) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("node dir");
    let port = free_broker_port();
    let text = format!(
        "brokerClusterName={CLUSTER}\nbrokerName={broker}\nbrokerId={id}\nbrokerRole={role}\n\
         namesrvAddr={ns}\nlistenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
         storePathRootDir={}\nflushDiskType=ASYNC_FLUSH\n",
        dir.join("store").display()
    );
    let conf = dir.join("broker.conf");
    std::fs::write(&conf, text).expect("write broker.conf");
    (spawn_broker(&dir, &conf, name), format!("127.0.0.1:{port}"))
}

fn bench_opts(broker: &str, topic: &str, concurrency: usize, secs: u64) -> BenchOpts {
    BenchOpts {
        broker: broker.to_string(),
        topic: topic.to_string(),
        group: format!("{topic}Group"),
        workload: Workload::Produce,
        mode: ProduceMode::Single,
        concurrency,
        batch: 1,
        body_size: 1024,
        messages: 0,
        duration: Some(Duration::from_secs(secs)),
        queues: 8,
        connections: 2,
        progress: false,
    }
}

/// A short warm-up, then one measured run per concurrency level.
async fn bench_target(name: &str, addr: &str, o: &Opts) -> Vec<(usize, PhaseReport)> {
    let warm = bench::run(bench_opts(addr, "ReplBench", 4, 2))
        .await
        .unwrap_or_else(|e| panic!("{name}: warm-up: {e}"));
    eprintln!("{name}: warm-up {}", warm.phases[0].throughput().round());
    let mut out = Vec::new();
    for &c in &o.concurrency {
        let r = bench::run(bench_opts(addr, "ReplBench", c, o.bench_secs))
            .await
            .unwrap_or_else(|e| panic!("{name}: bench: {e}"));
        let p = r.phases[0].clone();
        println!(
            "{name:<24} c={c:<3} {:>9.0} msg/s  p50 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  errors {}",
            p.throughput(),
            p.p50_us,
            p.p99_us,
            p.p999_us,
            p.errors
        );
        out.push((c, p));
    }
    out
}

async fn throughput(root: &Path, o: &Opts) -> BTreeMap<&'static str, Vec<(usize, PhaseReport)>> {
    println!(
        "\n== throughput: 1 KiB bodies, one message per request (sync), {} s per level ==",
        o.bench_secs
    );
    let admin = RemotingClient::new(Default::default());
    let mut results = BTreeMap::new();
    for (key, role) in [
        ("1 ASYNC_MASTER+slave", "ASYNC_MASTER"),
        ("2 SYNC_MASTER+slave", "SYNC_MASTER"),
    ] {
        let tag = role.to_lowercase();
        let ns = Namesrv::start(root, &format!("{tag}-namesrv"));
        wait_for_port(&ns.addr, WAIT).await.expect("nameserver up");
        let broker = format!("bench-{tag}");
        let (_master, maddr) =
            start_ms_node(root, &format!("{tag}-master"), &ns.addr, &broker, 0, role);
        let (_slave, saddr) =
            start_ms_node(root, &format!("{tag}-slave"), &ns.addr, &broker, 1, "SLAVE");
        wait_for_port(&maddr, WAIT).await.expect("master up");
        wait_for_port(&saddr, WAIT).await.expect("slave up");
        wait_until("the slave connected and in sync", WAIT, || async {
            let info = runtime_info(&admin, &maddr).await?;
            let in_sync: i64 = info.get("flotillaHaInSyncSlaves")?.parse().ok()?;
            (in_sync == 1).then_some(())
        })
        .await
        .expect("slave in sync");
        results.insert(key, bench_target(role, &maddr, o).await);
        // _master, _slave and ns are killed here, before the next topology starts.
    }
    {
        let g = DlGroup::start(root, "bench-dledger", &[]).await;
        let leader = g.wait_leader().await;
        let r = bench_target("DLedger leader (3)", &g.members[leader].addr, o).await;
        results.insert("3 DLedger 3-member leader", r);
    }
    results
}

// ------------------------------------------------------------------------------------------

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = parse_opts();
    let mut dir = temp_dir("replication-bench");
    if o.keep {
        dir.disable_cleanup(true);
    }
    println!(
        "replication_bench: working directory {}",
        dir.path().display()
    );
    println!(
        "machine: nproc {} | {} | {}",
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        sh("free -h | awk '/Mem:/{print $2\" RAM\"}'")
    );
    println!("uptime before: {}", sh("uptime"));
    let started = Instant::now();

    if o.failover {
        let defaults = failover_run(
            dir.path(),
            "default election timings",
            "fo-default",
            &[],
            o.rounds,
            o.real_client,
        )
        .await;
        let mut tuned_out = None;
        if o.tuned_rounds > 0 {
            let (e, h, l) = o.tuned;
            let timing = [
                ("flotillaDLegerElectionTimeoutMills", e.to_string()),
                ("flotillaDLegerHeartbeatIntervalMills", h.to_string()),
                ("flotillaDLegerLeaseMills", l.to_string()),
            ];
            let label = format!(
                "tuned: election {e}-{} ms, heartbeat {h} ms, lease {l} ms",
                2 * e
            );
            let r = failover_run(
                dir.path(),
                &label,
                "fo-tuned",
                &timing,
                o.tuned_rounds,
                // The real client's time is its route poll, not the election (see (b) of the
                // default run): not measured again here.
                false,
            )
            .await;
            tuned_out = Some((label, r));
        }
        print_failover_summary(
            "default election timings (election timeout 1000-2000 ms, heartbeat 200 ms, lease 800 ms)",
            &defaults,
            o.real_client,
        );
        if let Some((label, r)) = &tuned_out {
            print_failover_summary(label, r, false);
        }
    }

    if o.throughput {
        let results = throughput(dir.path(), &o).await;
        println!("\n-- throughput summary (msg/s, request latency p50 / p99) --");
        for (key, rows) in &results {
            for (c, p) in rows {
                println!(
                    "{:<28} concurrency {c:>3}: {:>9.0} msg/s  p50 {:.2} ms  p99 {:.2} ms  ({} msgs, {} errors)",
                    &key[2..],
                    p.throughput(),
                    p.p50_us as f64 / 1000.0,
                    p.p99_us as f64 / 1000.0,
                    p.messages,
                    p.errors
                );
            }
        }
    }
    println!("\nuptime after: {}", sh("uptime"));
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
}

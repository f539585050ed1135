//! End-to-end tests of the README's main command, `flotilla up`: it starts a control plane
//! and three agents as processes, creates the default cluster (one nameserver and a
//! three-member DLedger group), waits until it is Ready by the readiness rule (a writable
//! brokerId 0 registered with every nameserver) and prints the nameserver address.
//!
//! - Right after "Flotilla is up" — fresh, resumed, and fresh again — a real RocketMQ
//!   client's first 100 sends all succeed, each on its first try, and the produce command
//!   the banner prints works as printed.
//! - SIGINT, SIGHUP (terminal closed) and SIGTERM each stop every process it started;
//!   SIGKILL of `flotilla up` itself leaves nothing behind either.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flotilla_tests::fleet::{alive, processes_under};
use flotilla_tests::rmq::{self, Client};
use flotilla_tests::{Proc, bin_path, temp_dir, wait_until};
use nix::sys::signal::Signal;

const WAIT: Duration = Duration::from_secs(150);

fn start_up(data: &Path, log: &Path) -> Proc {
    let mut cmd = Command::new(bin_path("flotilla"));
    cmd.args([
        "up",
        "--data-dir",
        &data.display().to_string(),
        "--ready-timeout",
        "140s",
    ]);
    Proc::spawn("flotilla up", &mut cmd, Some(log))
}

/// Starts `flotilla up` on `data` and waits for "Flotilla is up"; returns it and its output.
async fn start_until_up(data: &Path, log: &Path) -> (Proc, String) {
    let mut up = start_up(data, log);
    let out = wait_for_line(log, "Flotilla is up", &mut up).await;
    (up, out)
}

/// Waits until `log` has a line containing `marker`; returns the whole log.
async fn wait_for_line(log: &Path, marker: &str, up: &mut Proc) -> String {
    let r = wait_until(&format!("`{marker}` from flotilla up"), WAIT, || async {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.contains(marker).then_some(text)
    })
    .await;
    match r {
        Ok(t) => t,
        Err(e) => {
            let running = up.is_running();
            panic!(
                "{e} (still running: {running})\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        }
    }
}

fn nameserver_of(output: &str) -> String {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|rest| rest.trim().to_string())
        .next_back()
        .expect("flotilla up prints the nameserver address")
}

#[derive(serde::Deserialize)]
struct RunState {
    cp_pid: u32,
    agent_pids: Vec<(String, u32)>,
}

/// Every process this `flotilla up` started: control plane, agents, instances.
fn started_processes(data: &Path) -> BTreeSet<i64> {
    let run: RunState = serde_json::from_slice(
        &std::fs::read(data.join("run.json")).expect("flotilla up writes run.json"),
    )
    .expect("run.json parses");
    let mut pids: BTreeSet<i64> = processes_under(data).into_iter().map(i64::from).collect();
    pids.insert(i64::from(run.cp_pid));
    pids.extend(run.agent_pids.iter().map(|(_, p)| i64::from(*p)));
    pids
}

/// The first `n` sends after "is up", each tried once: every one is acknowledged.
async fn first_sends_all_succeed(ns: &str, scope: &str, n: usize) -> BTreeSet<String> {
    let acked = rmq::first_sends(ns, scope, "UpTopic", n).await;
    assert_eq!(
        acked.len(),
        n,
        "{} of the first {n} sends after \"is up\" failed (see stderr)",
        n - acked.len()
    );
    acked
}

/// Runs the produce command the banner prints, exactly as printed.
fn printed_bench_command_works(out: &str) {
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" bench --broker "))
        .unwrap_or_else(|| panic!("the banner prints a produce command:\n{out}"));
    let argv: Vec<&str> = line.split_whitespace().collect();
    let status = Command::new(argv[0])
        .args(&argv[1..])
        .arg("--quiet")
        .status()
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    assert!(status.success(), "`{line}` as printed: {status:?}");
}

async fn stop_with(sig: Signal, up: &mut Proc, log: &Path, pids: &BTreeSet<i64>) {
    up.signal(sig);
    let status = up
        .wait_exit(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("flotilla up did not stop on {sig}"));
    let out = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        status.success(),
        "flotilla up exits cleanly on {sig}: {status:?}\n{out}"
    );
    assert!(out.contains("Stopped."), "{out}");
    all_gone(pids).await;
}

async fn all_gone(pids: &BTreeSet<i64>) {
    let pids = pids.clone();
    wait_until(
        "every started process gone",
        Duration::from_secs(90),
        || {
            let pids = pids.clone();
            async move { pids.iter().all(|p| !alive(*p)).then_some(()) }
        },
    )
    .await
    .unwrap_or_else(|e| {
        let left: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
        panic!("{e}: still running {left:?}")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flotilla_up_is_writable_when_it_says_so_fresh_resumed_and_fresh_again() {
    let dir = temp_dir("flotilla-up-");
    let data = dir.path().join("data");
    let log = dir.path().join("up-1.log");
    let (mut up, out) = start_until_up(&data, &log).await;
    assert!(out.contains("Created cluster"), "{out}");
    assert!(
        out.contains("DLedger"),
        "spelled as RocketMQ spells it: {out}"
    );
    let ns = nameserver_of(&out);
    let sent = first_sends_all_succeed(&ns, "up-fresh", 100).await;
    printed_bench_command_works(&out);

    let client = Client::new("up-e2e");
    rmq::consume_all(
        &client,
        &ns,
        "cg-up",
        "UpTopic",
        &sent,
        Duration::from_secs(60),
    )
    .await;
    client.shutdown().await;

    let pids = started_processes(&data);
    assert!(
        pids.len() >= 8,
        "cp, 3 agents, a nameserver and a 3-member DLedger group: {pids:?}"
    );
    stop_with(Signal::SIGINT, &mut up, &log, &pids).await;

    // Running it again resumes the same cluster from the data dir, by the same rule.
    let log2 = dir.path().join("up-2.log");
    let (mut up, out) = start_until_up(&data, &log2).await;
    assert!(out.contains("Resuming cluster"), "{out}");
    assert_eq!(nameserver_of(&out), ns, "same nameserver address");
    first_sends_all_succeed(&ns, "up-resumed", 100).await;
    let pids = started_processes(&data);
    // The terminal closed.
    stop_with(Signal::SIGHUP, &mut up, &log2, &pids).await;

    // A fresh data dir is a new cluster, and the same rule holds.
    let data3 = dir.path().join("data-3");
    let log3 = dir.path().join("up-3.log");
    let (mut up, out) = start_until_up(&data3, &log3).await;
    assert!(out.contains("Created cluster"), "{out}");
    let ns3 = nameserver_of(&out);
    first_sends_all_succeed(&ns3, "up-fresh-again", 100).await;
    let pids = started_processes(&data3);
    stop_with(Signal::SIGTERM, &mut up, &log3, &pids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flotilla_up_killed_with_sigkill_leaves_no_process_behind() {
    let dir = temp_dir("flotilla-up-kill-");
    let data = dir.path().join("data");
    let log = dir.path().join("up.log");
    let (mut up, _) = start_until_up(&data, &log).await;
    let pids = started_processes(&data);
    assert!(pids.len() >= 8, "{pids:?}");
    up.signal(Signal::SIGKILL);
    up.wait_exit(Duration::from_secs(30))
        .expect("SIGKILL ends flotilla up");
    // The control plane and agents get SIGTERM from the kernel (parent-death signal); the
    // agents stop their brokers and nameserver.
    all_gone(&pids).await;
}

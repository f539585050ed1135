//! End-to-end test of the README's main command, `flotilla up`: it starts a control plane
//! and three agents as processes, creates the default cluster (one nameserver and a
//! three-member DLedger group), waits until it is ready and
//! prints the nameserver address; a real RocketMQ client round-trips messages through it;
//! Ctrl-C (SIGINT) stops every process it started; running it again resumes the cluster.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flotilla_tests::fleet::{alive, processes_under};
use flotilla_tests::rmq::{self, Client};
use flotilla_tests::{Proc, bin_path, temp_dir, wait_until};

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

async fn stop_with_ctrl_c(up: &mut Proc, log: &Path, pids: &BTreeSet<i64>) {
    up.signal(nix::sys::signal::Signal::SIGINT);
    let status = up
        .wait_exit(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("flotilla up did not stop on Ctrl-C"));
    let out = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        status.success(),
        "flotilla up exits cleanly: {status:?}\n{out}"
    );
    assert!(out.contains("Stopped."), "{out}");
    let pids = pids.clone();
    wait_until(
        "every started process gone",
        Duration::from_secs(30),
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
async fn flotilla_up_serves_a_real_client_stops_on_ctrl_c_and_resumes() {
    let dir = temp_dir("flotilla-up-");
    let data = dir.path().join("data");
    let log = dir.path().join("up-1.log");
    let mut up = start_up(&data, &log);
    let out = wait_for_line(&log, "Flotilla is up", &mut up).await;
    assert!(out.contains("Created cluster"), "{out}");
    let ns = nameserver_of(&out);

    let client = Client::new("up-e2e");
    let producer = client.producer(&ns, "pg-up").await;
    let sent = rmq::send_all(&producer, "UpTopic", (0..20).map(|i| format!("up-{i}")), 20).await;
    assert_eq!(sent.len(), 20, "every send is acknowledged");
    rmq::consume_all(
        &client,
        &ns,
        "cg-up",
        "UpTopic",
        &sent,
        Duration::from_secs(60),
    )
    .await;
    let mut producer = producer;
    producer.shutdown().await;
    client.shutdown().await;

    let pids = started_processes(&data);
    assert!(
        pids.len() >= 8,
        "cp, 3 agents, a nameserver and a 3-member DLedger group: {pids:?}"
    );
    stop_with_ctrl_c(&mut up, &log, &pids).await;

    // Running it again resumes the same cluster from the data dir.
    let log2 = dir.path().join("up-2.log");
    let mut up = start_up(&data, &log2);
    let out = wait_for_line(&log2, "Flotilla is up", &mut up).await;
    assert!(out.contains("Resuming cluster"), "{out}");
    assert_eq!(nameserver_of(&out), ns, "same nameserver address");
    let pids = started_processes(&data);
    stop_with_ctrl_c(&mut up, &log2, &pids).await;
}

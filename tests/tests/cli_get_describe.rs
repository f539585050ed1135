//! End-to-end tests of `flotilla get KIND NAME`, `flotilla describe`, `--watch` and
//! `flotilla completion`: a real control plane, a real agent running a real nameserver and
//! broker, and the real `flotilla` binary.
//!
//! - One cluster, node and operation by name in JSON: the fields agree with what the API
//!   holds; an unknown name exits non-zero with the control plane's NOT_FOUND reason.
//! - `describe cluster` shows the phase and every member; `describe -o json` is `get -o json`.
//! - `get nodes|members|operations --watch` print the resources, then only changes (a quiet
//!   node prints once), and are killed once they printed (every read has a timeout).
//! - `completion bash|zsh` prints a script naming the subcommands.

use std::process::Stdio;
use std::time::{Duration, Instant};

use flotilla_proto::v1::BrokerMode;
use flotilla_tests::bin_path;
use flotilla_tests::cli::{flotilla, json, ok, text, wait_leader};
use flotilla_tests::fleet::{self, Fleet, members};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(90);

/// Runs a command that must exit 1 naming `code` and `name` on stderr.
async fn not_found(fleet: &Fleet, args: &[&str], code: &str, name: &str) {
    let o = flotilla(fleet, args).await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "flotilla {args:?}: {}", text(&o));
    assert!(
        err.contains(&format!("[{code}]")) && err.contains(name),
        "flotilla {args:?} names {code} and {name}: {}",
        text(&o)
    );
    assert!(
        o.stdout.is_empty(),
        "nothing printed on stdout: {}",
        text(&o)
    );
}

/// Starts `flotilla ARGS` (a watch), reads its stdout lines until `done` holds for the lines
/// so far (at most `within`), then kills it. Returns the lines.
async fn watch(
    fleet: &Fleet,
    args: &[&str],
    within: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut child = tokio::process::Command::new(bin_path("flotilla"))
        .args(args)
        .env("FLOTILLA_SERVER", &fleet.cp_addr)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start flotilla");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let deadline = Instant::now() + within;
    let mut lines = Vec::new();
    while !done(&lines) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, out.next_line()).await {
            Ok(Ok(Some(l))) => lines.push(l),
            Ok(Ok(None)) => {
                let o = child.wait_with_output().await.expect("flotilla output");
                panic!(
                    "flotilla {args:?} ended early after {lines:?}: {}",
                    text(&o)
                );
            }
            Ok(Err(e)) => panic!("flotilla {args:?}: reading stdout: {e}"),
            Err(_) => panic!("flotilla {args:?}: not done within {within:?}; printed {lines:?}"),
        }
    }
    child.kill().await.expect("kill the watch");
    lines
}

/// Lines printed by a running watch during `quiet`, which it then survives (it is killed).
async fn more_lines(fleet: &Fleet, args: &[&str], first: usize, quiet: Duration) -> Vec<String> {
    let mut child = tokio::process::Command::new(bin_path("flotilla"))
        .args(args)
        .env("FLOTILLA_SERVER", &fleet.cp_addr)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start flotilla");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut lines = Vec::new();
    let deadline = Instant::now() + quiet;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, out.next_line()).await {
            Ok(Ok(Some(l))) => lines.push(l),
            Ok(Ok(None)) => panic!("flotilla {args:?} ended early after {lines:?}"),
            Ok(Err(e)) => panic!("flotilla {args:?}: reading stdout: {e}"),
            Err(_) => break,
        }
    }
    assert!(
        child.try_wait().expect("poll the watch").is_none(),
        "flotilla {args:?} still runs after {quiet:?}"
    );
    child.kill().await.expect("kill the watch");
    assert!(lines.len() >= first, "{args:?} printed {lines:?}");
    lines.split_off(first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_one_describe_watch_and_completion_end_to_end() {
    // Completion needs no control plane.
    let bash = ok_offline(&["completion", "bash"]).await;
    for word in ["_flotilla", "topic", "describe", "completion", "operations"] {
        assert!(bash.contains(word), "bash completion names {word}");
    }
    let zsh = ok_offline(&["completion", "zsh"]).await;
    assert!(zsh.contains("#compdef flotilla") && zsh.contains("describe"));

    let fleet = Fleet::start(1).await;
    // Until a leader is elected the answer is NOT_LEADER, not NOT_FOUND.
    wait_leader(&fleet, WAIT).await;
    fleet
        .create_cluster(fleet::cluster("gd", 1, 1, 1, BrokerMode::MasterSlave, &[]))
        .await;
    let c = fleet.wait_running("gd").await;
    let names: Vec<String> = members(&c).into_iter().map(|m| m.name).collect();
    assert_eq!(names.len(), 2, "a nameserver and a broker: {names:?}");

    // One cluster by name: an object, not a list, agreeing with the API.
    let one = json(&fleet, &["get", "clusters", "gd", "-o", "json"]).await;
    assert_eq!(one["name"], "gd", "{one}");
    assert_eq!(one["phase"], "Running", "{one}");
    assert_eq!(one["ready_members"], 2, "{one}");
    let got: Vec<&str> = one["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(got, names, "{one}");
    assert!(
        one["namesrv_addr"]
            .as_str()
            .is_some_and(|a| !a.is_empty() && a == fleet::namesrv_addr(&c)),
        "{one}"
    );
    let table = ok(&fleet, &["get", "cluster", "gd"]).await;
    assert!(
        table.lines().count() == 2 && table.contains("gd") && table.contains("Running"),
        "{table}"
    );

    // One node by name.
    let node = json(&fleet, &["get", "nodes", "node-1", "-o", "json"]).await;
    assert_eq!(node["name"], "node-1", "{node}");
    assert_eq!(node["phase"], "Ready", "{node}");
    assert_eq!(node["cordoned"], false, "{node}");
    let instances: Vec<&str> = node["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for n in &names {
        assert!(instances.contains(&n.as_str()), "{n} on node-1: {node}");
    }

    // Unknown names: the control plane's NOT_FOUND, exit 1, nothing on stdout.
    not_found(
        &fleet,
        &["get", "clusters", "nope", "-o", "json"],
        "CLUSTER_NOT_FOUND",
        "nope",
    )
    .await;
    not_found(
        &fleet,
        &["get", "nodes", "node-9"],
        "NODE_NOT_FOUND",
        "node-9",
    )
    .await;
    not_found(
        &fleet,
        &["get", "operations", "op-nope"],
        "OPERATION_NOT_FOUND",
        "op-nope",
    )
    .await;
    not_found(
        &fleet,
        &["describe", "cluster", "nope"],
        "CLUSTER_NOT_FOUND",
        "nope",
    )
    .await;
    not_found(
        &fleet,
        &["get", "nodes", "node-9", "--watch"],
        "NODE_NOT_FOUND",
        "node-9",
    )
    .await;
    not_found(
        &fleet,
        &["get", "members", "nope", "--watch"],
        "CLUSTER_NOT_FOUND",
        "nope",
    )
    .await;

    // describe: phase, members, groups; -o json is what get prints.
    let d = ok(&fleet, &["describe", "cluster", "gd"]).await;
    assert!(
        d.lines()
            .any(|l| l.starts_with("Phase:") && l.contains("Running")),
        "{d}"
    );
    assert!(d.contains("Members (2/2 ready):"), "{d}");
    for n in &names {
        assert!(d.contains(n.as_str()), "member {n} in:\n{d}");
    }
    assert!(d.contains("Conditions:") && d.contains("Groups:"), "{d}");
    let dj = json(&fleet, &["describe", "cluster", "gd", "-o", "json"]).await;
    let gj = json(&fleet, &["get", "clusters", "gd", "-o", "json"]).await;
    assert_eq!(dj, gj, "describe -o json is get -o json");
    let dn = ok(&fleet, &["describe", "node", "node-1"]).await;
    assert!(
        dn.contains("node-1") && dn.contains("Instances (2):"),
        "{dn}"
    );

    // Watches: nodes (streamed) print the node once, then nothing while it does not change.
    let lines = watch(&fleet, &["get", "nodes", "--watch"], WAIT, |l| {
        l.iter().any(|l| l.starts_with("node-1 "))
    })
    .await;
    assert!(lines[0].starts_with("NAME"), "a header first: {lines:?}");
    let later = more_lines(
        &fleet,
        &["get", "nodes", "--watch", "-o", "json"],
        1,
        Duration::from_secs(3),
    )
    .await;
    assert!(later.is_empty(), "a quiet node prints once: {later:?}");
    let lines = watch(&fleet, &["get", "nodes", "-w", "-o", "json"], WAIT, |l| {
        !l.is_empty()
    })
    .await;
    let first: Value = serde_json::from_str(&lines[0]).expect("one JSON object per line");
    assert_eq!(first["name"], "node-1", "{first}");
    let lines = watch(&fleet, &["get", "members", "gd", "--watch"], WAIT, |l| {
        names
            .iter()
            .all(|n| l.iter().any(|l| l.starts_with(n.as_str())))
    })
    .await;
    assert!(lines[0].starts_with("MEMBER"), "{lines:?}");

    // An operation: a rolling restart, by name in JSON, in the cluster's list, described,
    // and followed on the operations stream.
    let out = ok(&fleet, &["restart", "cluster", "gd", "--no-wait"]).await;
    let op = out
        .split_whitespace()
        .find(|w| w.starts_with("op-"))
        .unwrap_or_else(|| panic!("an operation name in {out:?}"))
        .to_string();
    let v = json(&fleet, &["get", "operations", &op, "-o", "json"]).await;
    assert_eq!(v["name"], op.as_str(), "{v}");
    assert_eq!(v["cluster"], "gd", "{v}");
    assert_eq!(v["kind"], "RollingRestart", "{v}");
    let list = json(
        &fleet,
        &["get", "operations", "--cluster", "gd", "-o", "json"],
    )
    .await;
    assert!(
        list.as_array()
            .is_some_and(|l| l.iter().any(|o| o["name"] == op.as_str())),
        "{list}"
    );
    let none = json(
        &fleet,
        &["get", "operations", "-c", "no-such-cluster", "-o", "json"],
    )
    .await;
    assert_eq!(
        none,
        Value::Array(vec![]),
        "another cluster's list is empty"
    );
    let dop = ok(&fleet, &["describe", "operation", &op]).await;
    for want in [
        "RollingRestart",
        "Cluster:",
        "gd",
        "History (oldest first):",
        "Step:",
    ] {
        assert!(dop.contains(want), "{want:?} in:\n{dop}");
    }
    let lines = watch(
        &fleet,
        &["get", "operations", "--watch", "-o", "json"],
        WAIT,
        |l| l.iter().any(|l| l.contains(op.as_str())),
    )
    .await;
    let ev: Value = serde_json::from_str(lines.last().expect("a line")).expect("JSON per line");
    assert_eq!(ev["kind"], "RollingRestart", "{ev}");
    // Let the restart finish so the fleet stops cleanly.
    tokio::time::timeout(WAIT * 2, ok(&fleet, &["operation", "watch", &op]))
        .await
        .unwrap_or_else(|_| panic!("{op} done within {:?}\n{}", WAIT * 2, fleet.logs()));
}

/// Runs `flotilla ARGS` with no control plane; must succeed.
async fn ok_offline(args: &[&str]) -> String {
    let o = tokio::process::Command::new(bin_path("flotilla"))
        .args(args)
        .env("FLOTILLA_SERVER", "127.0.0.1:1")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run flotilla");
    assert!(o.status.success(), "flotilla {args:?}: {}", text(&o));
    assert!(!o.stdout.is_empty(), "flotilla {args:?} printed a script");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

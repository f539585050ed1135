//! End-to-end tests of `flotilla delete nodes|members|operations`, the node watch stream
//! and Ctrl-C ending a watch: a real control plane, two real agents running a real
//! nameserver and broker, and the real `flotilla` binary.
//!
//! - Deleting a node is refused while its agent is connected and while instances are placed
//!   on it, each time saying what to do (exit 1, NODE_IN_USE, the field and the reason);
//!   once its cluster is gone and its agent stopped, it is deleted and a running
//!   `get nodes --watch` prints it as deleted.
//! - Deleting an unfinished operation (a restart whose agent is down) is refused
//!   (OPERATION_NOT_DONE: cancel first); once cancelled it is deleted and no longer found.
//! - `delete members` is refused before anything is sent (exit 2) naming what to do instead.
//! - `get nodes|operations --watch` interrupted with SIGINT exits promptly with status 0,
//!   nothing on stderr, and only whole records on stdout.

use std::process::Stdio;
use std::time::Duration;

use flotilla_proto::v1::BrokerMode;
use flotilla_tests::cli::{fails, flotilla, json, ok, text, wait_leader};
use flotilla_tests::fleet::{self, Fleet};
use flotilla_tests::{bin_path, wait_until};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const WAIT: Duration = Duration::from_secs(90);

/// A `flotilla … --watch` process and its stdout lines.
struct Watch {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
    lines: Vec<String>,
}

impl Watch {
    fn start(fleet: &Fleet, args: &[&str]) -> Watch {
        let mut child = tokio::process::Command::new(bin_path("flotilla"))
            .args(args)
            .env("FLOTILLA_SERVER", &fleet.cp_addr)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start flotilla");
        let out = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Watch {
            child,
            out,
            lines: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `want` (at most `WAIT`); returns it.
    async fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let read = async {
            loop {
                match self.out.next_line().await {
                    Ok(Some(l)) => {
                        self.lines.push(l.clone());
                        if want(&l) {
                            return l;
                        }
                    }
                    Ok(None) => panic!("the watch ended before {what}: {:?}", self.lines),
                    Err(e) => panic!("reading the watch: {e}"),
                }
            }
        };
        tokio::time::timeout(WAIT, read)
            .await
            .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
    }

    /// Sends SIGINT (what Ctrl-C sends) and waits for the exit; returns (status, the rest
    /// of stdout, stderr).
    async fn interrupt(mut self) -> (std::process::ExitStatus, Vec<String>, String) {
        let pid = self.child.id().expect("the watch runs");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid")),
            nix::sys::signal::Signal::SIGINT,
        )
        .expect("send SIGINT");
        let mut err = self.child.stderr.take().expect("piped stderr");
        let finish = async {
            let mut rest = Vec::new();
            while let Some(l) = self.out.next_line().await.expect("read stdout") {
                rest.push(l);
            }
            let mut e = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut err, &mut e)
                .await
                .expect("read stderr");
            let status = self.child.wait().await.expect("wait for the watch");
            (status, rest, e)
        };
        // Bounded: a watch that ignores SIGINT fails here instead of hanging the test.
        tokio::time::timeout(Duration::from_secs(10), finish)
            .await
            .expect("the watch exits after SIGINT")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_kinds_node_watch_and_ctrl_c_end_to_end() {
    let mut fleet = Fleet::start(2).await;
    wait_leader(&fleet, WAIT).await;

    // Members are not deleted: refused before anything is sent, with what to do instead.
    let err = fails(
        &fleet,
        &["delete", "members", "dw-0-0"],
        None,
        2,
        "CLI_INVALID_ARGUMENT",
    )
    .await;
    for hint in ["spec.broker.groups", "flotilla restart", "flotilla drain"] {
        assert!(err.contains(hint), "{hint} in: {err}");
    }

    // A node watch streams from the start, then the changes below.
    let mut nodes_watch = Watch::start(&fleet, &["get", "nodes", "--watch", "-o", "json"]);
    nodes_watch
        .until("node-2's first record", |l| l.contains("\"node-2\""))
        .await;

    // node-1 cordoned: everything of the cluster lands on node-2.
    ok(&fleet, &["cordon", "node-1"]).await;
    nodes_watch
        .until("node-1 cordoned on the watch", |l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["name"] == "node-1" && v["cordoned"] == true)
        })
        .await;
    fleet
        .create_cluster(fleet::cluster("dw", 1, 1, 1, BrokerMode::MasterSlave, &[]))
        .await;
    fleet.wait_running("dw").await;
    let placed = nodes_watch
        .until("the cluster's instances on node-2", |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| {
                v["name"] == "node-2" && v["instances"].as_array().is_some_and(|i| i.len() == 2)
            })
        })
        .await;
    assert!(placed.contains("dw-0-0"), "{placed}");

    // Connected with instances: the instances are named first.
    let err = fails(
        &fleet,
        &["delete", "nodes", "node-2"],
        None,
        1,
        "NODE_IN_USE",
    )
    .await;
    assert!(
        err.contains("dw-0-0")
            && err.contains("flotilla drain node-2")
            && err.contains("name: nodes/node-2 [INSTANCES_PLACED]"),
        "{err}"
    );

    // A restart whose agent is gone cannot progress: its operation cannot be deleted yet.
    fleet.kill_agent("node-2");
    let out = ok(&fleet, &["restart", "cluster", "dw", "--no-wait"]).await;
    let op = out
        .split_whitespace()
        .find(|w| w.starts_with("op-"))
        .unwrap_or_else(|| panic!("an operation in {out:?}"))
        .to_string();
    let err = fails(
        &fleet,
        &["delete", "operations", &op],
        None,
        1,
        "OPERATION_NOT_DONE",
    )
    .await;
    assert!(
        err.contains("cancel it first") && err.contains(&format!("name: operations/{op}")),
        "{err}"
    );
    // Cancelled, it is done once the engine undid it; then it goes.
    ok(&fleet, &["operation", "cancel", &op]).await;
    let out = wait_until("the cancelled restart deleted", WAIT, || async {
        let o = flotilla(&fleet, &["delete", "operation", &op]).await;
        if o.status.success() {
            return Some(String::from_utf8_lossy(&o.stdout).into_owned());
        }
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("[OPERATION_NOT_DONE]"), "{}", text(&o));
        None
    })
    .await
    .unwrap_or_else(|e| panic!("{e:?}\n{}", fleet.logs()));
    assert_eq!(out.trim(), format!("operation {op} deleted"));
    let o = flotilla(&fleet, &["get", "operations", &op]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("[OPERATION_NOT_FOUND]"),
        "{}",
        text(&o)
    );
    fleet.start_agent("node-2");
    fleet.wait_running("dw").await;

    // Cluster gone, node empty; with its agent connected it is still refused.
    ok(&fleet, &["delete", "cluster", "dw"]).await;
    nodes_watch
        .until("node-2 emptied", |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| {
                v["name"] == "node-2" && v["instances"].as_array().is_some_and(Vec::is_empty)
            })
        })
        .await;
    let err = fails(
        &fleet,
        &["delete", "node", "node-2"],
        None,
        1,
        "NODE_IN_USE",
    )
    .await;
    assert!(
        err.contains("stop the agent") && err.contains("[AGENT_CONNECTED]"),
        "{err}"
    );

    // Agent stopped: deleted, no longer found, and the watch says so.
    fleet.kill_agent("node-2");
    wait_until("node-2 deleted", WAIT, || async {
        let o = flotilla(&fleet, &["delete", "nodes", "node-2"]).await;
        if o.status.success() {
            return Some(());
        }
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("[AGENT_CONNECTED]"), "{}", text(&o));
        None
    })
    .await
    .unwrap_or_else(|e| panic!("{e:?}\n{}", fleet.logs()));
    let o = flotilla(&fleet, &["get", "nodes", "node-2"]).await;
    assert!(
        o.status.code() == Some(1)
            && String::from_utf8_lossy(&o.stderr).contains("[NODE_NOT_FOUND]"),
        "{}",
        text(&o)
    );
    let gone = nodes_watch
        .until("node-2 deleted on the watch", |l| l.contains("\"deleted\""))
        .await;
    let v: Value = serde_json::from_str(&gone).expect("JSON");
    assert_eq!(v, serde_json::json!({"name": "node-2", "deleted": true}));
    let left = json(&fleet, &["get", "nodes", "-o", "json"]).await;
    let names: Vec<&str> = left
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["node-1"]);

    // Ctrl-C ends the JSON node watch: status 0, quiet stderr, whole objects only.
    let before = nodes_watch.lines.clone();
    let (status, rest, err) = nodes_watch.interrupt().await;
    assert_eq!(status.code(), Some(0), "{status:?}; stderr: {err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
    for l in before.iter().chain(&rest) {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}"));
    }

    // And the table operation watch, interrupted while waiting for an event.
    let mut ops_watch = Watch::start(&fleet, &["get", "operations", "--watch"]);
    ops_watch
        .until("the header", |l| l.starts_with("NAME"))
        .await;
    let (status, rest, err) = ops_watch.interrupt().await;
    assert_eq!(status.code(), Some(0), "{status:?}; stderr: {err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
    assert!(
        rest.iter().all(|l| l.starts_with("op-")),
        "only whole rows: {rest:?}"
    );
}

//! Observability of real processes: the control plane's and the agents' `/metrics`
//! (`--metrics-listen`), scraped while they run a real cluster and read with a Prometheus
//! text parser (the gauges say what runs, the counters move by exactly what the test did);
//! and `--log-format json`, whose every line is a JSON object, audit records included.

use std::time::Duration;

use flotilla_proto::v1::BrokerMode;
use flotilla_tests::cli::{self, ok, wait_leader};
use flotilla_tests::fleet::{self, Fleet};
use flotilla_tests::metrics::{metrics_text, sample, scrape};
use flotilla_tests::{Proc, bin_path, free_port, wait_for_port, wait_until};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_and_agent_metrics_follow_the_fleet() {
    let fleet = Fleet::start_with_metrics(1).await;
    wait_leader(&fleet, WAIT).await;
    fleet
        .create_cluster(fleet::cluster("m", 1, 1, 1, BrokerMode::MasterSlave, &[]))
        .await;
    fleet.wait_running("m").await;
    let cp = fleet.metrics["cp-0"].clone();
    let agent = fleet.metrics["node-1"].clone();

    // Scrape-time gauges: leadership, the session, the cluster, the node.
    let gauges = wait_until("the control plane's gauges", WAIT, || async {
        let s = scrape(&cp).await;
        let running = sample(
            &s,
            "flotilla_cp_clusters",
            &[("phase", "CLUSTER_PHASE_RUNNING")],
        );
        let ready = sample(&s, "flotilla_cp_nodes", &[("phase", "NODE_PHASE_READY")]);
        (sample(&s, "flotilla_cp_leader", &[]) == Some(1.0)
            && sample(&s, "flotilla_cp_agents_connected", &[]) == Some(1.0)
            && running == Some(1.0)
            && ready == Some(1.0))
        .then_some(())
    })
    .await;
    if let Err(e) = gauges {
        panic!("{e}\n{}", metrics_text(&cp).await);
    }
    let s = scrape(&cp).await;
    assert!(
        sample(&s, "flotilla_cp_reconciles_total", &[("result", "wrote")]).unwrap_or(0.0) >= 1.0
    );
    let txns = sample(
        &s,
        "flotilla_cp_store_request_duration_seconds_count",
        &[("op", "txn"), ("result", "ok")],
    );
    assert!(txns.unwrap_or(0.0) >= 1.0, "store calls are timed");

    // Calls are counted by method and code, exactly.
    let list_ok = [("method", "NodeService/ListNodes"), ("code", "OK")];
    let before = sample(&s, "flotilla_cp_grpc_requests_total", &list_ok).unwrap_or(0.0);
    for _ in 0..3 {
        ok(&fleet, &["get", "nodes"]).await;
    }
    let bad = cli::run(&fleet, &["get", "nodes", "Not_A_Node!"], None).await;
    assert!(!bad.status.success());
    let s = scrape(&cp).await;
    assert_eq!(
        sample(&s, "flotilla_cp_grpc_requests_total", &list_ok),
        Some(before + 3.0)
    );
    assert_eq!(
        sample(
            &s,
            "flotilla_cp_grpc_requests_total",
            &[
                ("method", "NodeService/GetNode"),
                ("code", "INVALID_ARGUMENT")
            ]
        ),
        Some(1.0)
    );

    // The agent: its instances by state, its session, and the commands it ran.
    let a = scrape(&agent).await;
    let running = |kind: &str| {
        sample(
            &a,
            "flotilla_agent_instances",
            &[("kind", kind), ("state", "INSTANCE_STATE_RUNNING")],
        )
    };
    assert_eq!(running("INSTANCE_KIND_BROKER"), Some(1.0));
    assert_eq!(running("INSTANCE_KIND_NAMESRV"), Some(1.0));
    assert_eq!(
        sample(&a, "flotilla_agent_control_plane_connected", &[]),
        Some(1.0)
    );
    let created = [("action", "create_topic"), ("result", "ok")];
    let name = "flotilla_agent_command_duration_seconds_count";
    let before = sample(&a, name, &created).unwrap_or(0.0);
    ok(&fleet, &["topic", "create", "Metered", "-c", "m"]).await;
    assert_eq!(
        sample(&scrape(&agent).await, name, &created),
        Some(before + 1.0)
    );

    // The command carried its trace context: the agent ran it under the trace id the
    // control plane logged it with (both log JSON lines).
    let lines = |who: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(fleet.dir().join(format!("{who}.log")))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let agent_trace: Vec<String> = lines("node-1")
        .iter()
        .filter(|v| v["span"]["action"] == "create_topic")
        .filter_map(|v| v["span"]["trace_id"].as_str().map(str::to_string))
        .collect();
    let trace = agent_trace.last().expect("the agent logged the command");
    assert_eq!(trace.len(), 32, "{trace}");
    assert!(
        lines("cp")
            .iter()
            .any(|v| v["span"]["name"] == "command" && v["span"]["trace_id"] == trace.as_str()),
        "the control plane logged trace {trace}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_json_lines_and_carry_the_audit_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("cp.log");
    let mut cmd = std::process::Command::new(bin_path("flotilla-cp"));
    cmd.args(["--listen", &addr, "--insecure", "--log-format", "json"])
        .arg(format!(
            "--store=embedded:{}",
            dir.path().join("cp").display()
        ))
        .env("RUST_LOG", "info");
    let mut cp = Proc::spawn("cp", &mut cmd, Some(&log));
    wait_for_port(&addr, WAIT).await.expect("cp listens");
    // A mutation that fails (no such node): audited, as anonymous on an --insecure port.
    let out = std::process::Command::new(bin_path("flotilla"))
        .args(["cordon", "ghost", "--server", &addr])
        .output()
        .expect("run flotilla");
    assert!(!out.status.success());
    let audit = wait_until("the audit line", WAIT, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["target"] == "flotilla::audit")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(&log).unwrap_or_default()));
    cp.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = cp.wait_exit(Duration::from_secs(20));
    let rec: serde_json::Value = serde_json::from_str(
        audit["fields"]["message"]
            .as_str()
            .expect("the record is the message"),
    )
    .expect("the audit record is JSON");
    assert_eq!(rec["principal"], "anonymous");
    assert_eq!(rec["method"], "/flotilla.v1.NodeService/CordonNode");
    assert_eq!(rec["code"], "NOT_FOUND");
    assert!(
        rec["requestId"].as_str().unwrap_or("").starts_with("cli-"),
        "{rec}"
    );
    // Every line the process wrote is one JSON object with a level and a timestamp.
    let text = std::fs::read_to_string(&log).expect("log");
    let mut lines = 0;
    for l in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
        lines += 1;
    }
    assert!(lines >= 2, "{text}");
}

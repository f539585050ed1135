//! End-to-end tests of the business API and its `flotilla` commands: a real control plane,
//! real agents, real brokers and nameservers, the real RocketMQ client producing and
//! consuming, and the real `flotilla` binary.
//!
//! - Topics and consumer groups applied from YAML and JSON documents land on every broker
//!   group; `get` prints them in every output format; update, route and stats answer what the
//!   brokers hold; delete removes them (then NOT_FOUND).
//! - Lag is visible after producing, zero after consuming, comes back after an offset reset
//!   by time, and a consumer of the group then reads the messages again; the consumer's
//!   connection is listed while it runs.
//! - A broker group whose agent is gone is reported by name: reads answer with the others and
//!   list it, writes refuse naming it.
//! - Bad inputs (unknown kind, invalid YAML, a negative queue count, a bad name, an unknown
//!   cluster, topic or group) fail with a clear message, the stable code and a non-zero exit.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_proto::v1::group_service_client::GroupServiceClient;
use flotilla_proto::v1::{BrokerMode, GetGroupProgressRequest};
use flotilla_tests::cli::{fails, json, ok, run, text, wait_leader};
use flotilla_tests::fleet::{self, Fleet, brokers, namesrv_addr};
use flotilla_tests::rmq::{self, Client, Collector};
use flotilla_tests::{bin_path, wait_until};
use rocketmq_client_rust::MQPushConsumer;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

/// Total lag of `group` on `topic`, through the API (for polling; the CLI is asserted once).
async fn total_lag(fleet: &Fleet, group: &str, topic: &str) -> Option<i64> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", fleet.cp_addr))
        .ok()?
        .connect()
        .await
        .ok()?;
    let p = GroupServiceClient::new(channel)
        .get_group_progress(GetGroupProgressRequest {
            cluster: "biz".into(),
            group: group.into(),
            topic: topic.into(),
        })
        .await
        .ok()?
        .into_inner();
    p.failures.is_empty().then_some(p.total_lag)
}

async fn wait_lag(fleet: &Fleet, group: &str, topic: &str, want: i64) {
    let r = wait_until(
        &format!("lag of {group} on {topic} = {want}"),
        WAIT,
        || async { (total_lag(fleet, group, topic).await == Some(want)).then_some(()) },
    )
    .await;
    if let Err(e) = r {
        panic!("{e} (last: {:?})", total_lag(fleet, group, topic).await);
    }
}

/// A started push consumer of `group` on `topic` collecting what it receives.
async fn consumer(
    client: &Client,
    ns: &str,
    group: &str,
    topic: &str,
) -> (rocketmq_client_rust::DefaultMQPushConsumer, Collector) {
    let collector = Collector::default();
    let mut c = client.push_consumer(ns, group).build();
    c.subscribe(topic, "*").await.expect("subscribe");
    c.register_message_listener_concurrently(collector.clone());
    c.start().await.expect("consumer start");
    (c, collector)
}

const DOCS_YAML: &str = "\
apiVersion: flotilla.io/v1
kind: Topic
metadata: {name: Orders}
spec:
  cluster: biz
  queues: 4
  perm: rw
---
apiVersion: flotilla.io/v1
kind: ConsumerGroup
metadata: {name: cg-orders}
spec: {cluster: biz, maxRetries: 3}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_topics_groups_lag_and_offsets_end_to_end() {
    let mut fleet = Fleet::start(2).await;
    wait_leader(&fleet, WAIT).await;
    fleet
        .create_cluster(fleet::cluster(
            "biz",
            1,
            2,
            1,
            BrokerMode::MasterSlave,
            &[("flushDiskType", "SYNC_FLUSH")],
        ))
        .await;
    let c = fleet.wait_running("biz").await;
    let ns = namesrv_addr(&c);

    // Apply from YAML on stdin, then the same documents again from a JSON file: created,
    // then updated.
    let o = run(&fleet, &["apply", "-f", "-"], Some(DOCS_YAML)).await;
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("topic Orders in cluster biz created"), "{out}");
    assert!(
        out.contains("consumer group cg-orders in cluster biz created"),
        "{out}"
    );
    let json_docs = fleet.dir().join("docs.json");
    std::fs::write(
        &json_docs,
        r#"[{"apiVersion":"flotilla.io/v1","kind":"Topic","metadata":{"name":"Orders"},
             "spec":{"cluster":"biz","queues":8}},
            {"kind":"ConsumerGroup","metadata":{"name":"cg-orders"},
             "spec":{"cluster":"biz","maxRetries":5}}]"#,
    )
    .expect("write docs.json");
    let out = ok(&fleet, &["apply", "-f", &json_docs.display().to_string()]).await;
    assert!(out.contains("topic Orders in cluster biz updated"), "{out}");
    assert!(
        out.contains("consumer group cg-orders in cluster biz updated"),
        "{out}"
    );

    // get in every format.
    let t = json(
        &fleet,
        &["topic", "get", "Orders", "-c", "biz", "-o", "json"],
    )
    .await;
    assert_eq!(t["name"], "Orders");
    assert_eq!(t["read_queues"], 8, "{t}");
    assert_eq!(t["write_queues"], 8, "{t}");
    assert_eq!(t["perm_name"], "rw");
    assert_eq!(
        t["groups"],
        serde_json::json!(["biz-0", "biz-1"]),
        "on every broker group"
    );
    let yaml = ok(&fleet, &["topic", "list", "-c", "biz", "-o", "yaml"]).await;
    let listed: Value = serde_yaml::from_str(&yaml).expect("YAML output parses");
    let names: Vec<&str> = listed["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"Orders"), "{yaml}");
    assert!(
        !names.iter().any(|n| n.starts_with('%')),
        "no system topics: {yaml}"
    );
    let table = ok(&fleet, &["topic", "get", "Orders", "-c", "biz"]).await;
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(row, ["Orders", "8", "8", "rw", "biz-0,biz-1"], "{table}");
    let wide = ok(
        &fleet,
        &["topic", "get", "Orders", "-c", "biz", "-o", "wide"],
    )
    .await;
    assert!(
        wide.lines().next().unwrap_or("").contains("ORDER"),
        "{wide}"
    );
    let g = json(
        &fleet,
        &["group", "get", "cg-orders", "-c", "biz", "-o", "json"],
    )
    .await;
    assert_eq!(g["max_retries"], 5, "{g}");
    assert_eq!(g["groups"], serde_json::json!(["biz-0", "biz-1"]));
    let clusters = json(&fleet, &["get", "clusters", "-o", "json"]).await;
    assert_eq!(clusters[0]["name"], "biz", "{clusters}");
    assert_eq!(clusters[0]["phase"], "Running", "{clusters}");

    // Update perm; the route the nameserver gives clients follows.
    ok(
        &fleet,
        &[
            "topic", "update", "Orders", "-c", "biz", "--perm", "rw", "--queues", "4",
        ],
    )
    .await;
    let route = wait_until("route shows 4 queues per group", WAIT, || async {
        let r = json(
            &fleet,
            &["topic", "route", "Orders", "-c", "biz", "-o", "json"],
        )
        .await;
        let groups = r["groups"].as_array().cloned().unwrap_or_default();
        (groups.len() == 2 && groups.iter().all(|g| g["write_queues"] == 4)).then_some(r)
    })
    .await
    .expect("the nameserver's route follows the update");
    assert!(route["groups"][0]["addresses"]["0"].is_string(), "{route}");

    // Produce: stats and lag see it.
    let start_ms = now_ms() - 1;
    let client = Client::new("cli-biz");
    let mut producer = client.producer(&ns, "pg-orders").await;
    let sent = rmq::send_all(&producer, "Orders", (0..40).map(|i| format!("o-{i}")), 20).await;
    assert_eq!(sent.len(), 40, "every send acknowledged");
    let stats = json(
        &fleet,
        &["topic", "stats", "Orders", "-c", "biz", "-o", "json"],
    )
    .await;
    assert_eq!(stats["total_messages"], 40, "{stats}");
    assert_eq!(stats["queues"].as_array().map(Vec::len), Some(8), "{stats}");
    let lag = json(
        &fleet,
        &[
            "group",
            "lag",
            "cg-orders",
            "-c",
            "biz",
            "--topic",
            "Orders",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(lag["total_lag"], 40, "lag visible after producing: {lag}");

    // Consume: the consumer is listed while it runs, and the lag drops to zero.
    let (mut cons, collector) = consumer(&client, &ns, "cg-orders", "Orders").await;
    collector.wait_for(&sent, WAIT).await;
    let conns = wait_until("consumer connection listed", WAIT, || async {
        let v = json(
            &fleet,
            &[
                "group",
                "connections",
                "cg-orders",
                "-c",
                "biz",
                "-o",
                "json",
            ],
        )
        .await;
        (!v["connections"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .is_empty())
        .then_some(v)
    })
    .await
    .expect("the running consumer is listed");
    let subscribed: Vec<&str> = conns["subscriptions"]
        .as_array()
        .map(|s| s.iter().filter_map(|x| x["topic"].as_str()).collect())
        .unwrap_or_default();
    assert!(subscribed.contains(&"Orders"), "{conns}");
    assert_eq!(conns["connections"][0]["language"], "RUST", "{conns}");
    wait_lag(&fleet, "cg-orders", "Orders", 0).await;
    let lag = ok(
        &fleet,
        &[
            "group",
            "lag",
            "cg-orders",
            "-c",
            "biz",
            "--topic",
            "Orders",
        ],
    )
    .await;
    assert!(lag.contains("total lag: 0"), "{lag}");
    cons.shutdown().await;

    // Reset by time: the lag comes back, and the group reads everything again.
    let reset = json(
        &fleet,
        &[
            "offset",
            "reset",
            "cg-orders",
            "-c",
            "biz",
            "--topic",
            "Orders",
            "--to-time",
            &start_ms.to_string(),
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(reset["queues"].as_array().map(Vec::len), Some(8), "{reset}");
    assert!(
        reset["queues"]
            .as_array()
            .is_some_and(|q| q.iter().all(|q| q["offset"] == 0)),
        "{reset}"
    );
    let lag = json(
        &fleet,
        &[
            "group",
            "lag",
            "cg-orders",
            "-c",
            "biz",
            "--topic",
            "Orders",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(
        lag["total_lag"], 40,
        "the lag is back after the reset: {lag}"
    );
    let (mut again, collector) = consumer(&client, &ns, "cg-orders", "Orders").await;
    collector.wait_for(&sent, WAIT).await;
    again.shutdown().await;

    // Messages by offset id, by unique key and by key.
    let keyed = rocketmq_model::common::message::message_single::Message::builder()
        .topic("Orders")
        .tags("t")
        .key("order-42")
        .body_slice(b"the answer")
        .build_unchecked();
    let r = producer
        .send(keyed)
        .await
        .expect("send")
        .expect("a send result");
    let offset_id = r.offset_msg_id.clone().expect("an offset message id");
    let unique = r
        .msg_id
        .as_ref()
        .map(|m| m.to_string())
        .expect("a unique key");
    let m = json(
        &fleet,
        &["message", "get", &offset_id, "-c", "biz", "-o", "json"],
    )
    .await;
    assert_eq!(m["body"], "the answer", "{m}");
    assert_eq!(m["body_encoding"], "text");
    assert_eq!(m["keys"], serde_json::json!(["order-42"]), "{m}");
    assert_eq!(m["unique_key"], unique.as_str(), "{m}");
    let m = wait_until("the unique key is indexed", WAIT, || async {
        let o = run(
            &fleet,
            &[
                "message", "get", &unique, "-c", "biz", "--topic", "Orders", "-o", "json",
            ],
            None,
        )
        .await;
        o.status
            .success()
            .then(|| serde_json::from_slice::<Value>(&o.stdout).ok())
            .flatten()
    })
    .await
    .expect("found by unique key");
    assert_eq!(
        m["message_id"].as_str().map(str::to_ascii_uppercase),
        Some(offset_id.to_ascii_uppercase()),
        "{m}"
    );
    let found = wait_until("the key is indexed", WAIT, || async {
        let v = json(
            &fleet,
            &[
                "message", "query", "-c", "biz", "--topic", "Orders", "--key", "order-42", "-o",
                "json",
            ],
        )
        .await;
        (v.as_array().map(Vec::len) == Some(1)).then_some(v)
    })
    .await
    .expect("found by key");
    assert_eq!(found[0]["body"], "the answer", "{found}");
    let b64 = json(
        &fleet,
        &[
            "message", "get", &offset_id, "-c", "biz", "--body", "base64", "-o", "json",
        ],
    )
    .await;
    assert_eq!(b64["body"], "dGhlIGFuc3dlcg==", "{b64}");
    fails(
        &fleet,
        &[
            "message",
            "get",
            "7F00000100002A9F00000000DEADBEEF",
            "-c",
            "biz",
        ],
        None,
        1,
        "MESSAGE_NOT_FOUND",
    )
    .await;
    producer.shutdown().await;
    client.shutdown().await;

    // Unknown names, then delete and NOT_FOUND.
    fails(
        &fleet,
        &["topic", "get", "Nope", "-c", "biz"],
        None,
        1,
        "TOPIC_NOT_FOUND",
    )
    .await;
    fails(
        &fleet,
        &["group", "lag", "cg-nope", "-c", "biz"],
        None,
        1,
        "GROUP_NOT_FOUND",
    )
    .await;
    let err = fails(
        &fleet,
        &["topic", "create", "Orders", "-c", "biz"],
        None,
        1,
        "TOPIC_ALREADY_EXISTS",
    )
    .await;
    assert!(err.contains("biz-0"), "{err}");
    ok(&fleet, &["topic", "delete", "Orders", "-c", "biz"]).await;
    fails(
        &fleet,
        &["topic", "get", "Orders", "-c", "biz"],
        None,
        1,
        "TOPIC_NOT_FOUND",
    )
    .await;
    fails(
        &fleet,
        &["topic", "route", "Orders", "-c", "biz"],
        None,
        1,
        "TOPIC_NOT_FOUND",
    )
    .await;
    ok(&fleet, &["group", "delete", "cg-orders", "-c", "biz"]).await;
    fails(
        &fleet,
        &["group", "get", "cg-orders", "-c", "biz"],
        None,
        1,
        "GROUP_NOT_FOUND",
    )
    .await;

    // A broker group whose agent is gone is named: reads list it, writes refuse.
    let c = fleet.get_cluster("biz").await.expect("cluster");
    let node = brokers(&c)
        .into_iter()
        .find(|m| m.group == "biz-0")
        .map(|m| m.node)
        .expect("biz-0 has a broker");
    let silent: BTreeSet<String> = brokers(&c)
        .into_iter()
        .filter(|m| m.node == node)
        .map(|m| m.group)
        .collect();
    fleet.kill_agent(&node);
    let listed = wait_until(
        "the groups on the agentless node reported",
        WAIT,
        || async {
            let v = json(&fleet, &["topic", "list", "-c", "biz", "-o", "json"]).await;
            let named: BTreeSet<String> = v["failures"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|x| x["broker_name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (named == silent).then_some(v)
        },
    )
    .await
    .expect("each silent group is reported by name, and only those");
    for f in listed["failures"].as_array().expect("failures") {
        let reason = f["reason"].as_str().unwrap_or("");
        assert!(
            ["NODE_NOT_CONNECTED", "NO_WRITABLE_MASTER"].contains(&reason),
            "{listed}"
        );
    }
    let gone = "biz-0";
    let err = fails(
        &fleet,
        &["topic", "create", "Later", "-c", "biz"],
        None,
        1,
        "BROKERS_UNAVAILABLE",
    )
    .await;
    assert!(err.contains(gone), "the refusal names {gone}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_bad_inputs_fail_clearly() {
    let fleet = Fleet::start(1).await;
    wait_leader(&fleet, WAIT).await;
    let err = fails(
        &fleet,
        &["apply", "-f", "-"],
        Some("apiVersion: flotilla.io/v1\nkind: Queue\nmetadata: {name: q}\n"),
        1,
        "APPLY_UNKNOWN_KIND",
    )
    .await;
    assert!(err.contains("unknown kind \"Queue\""), "{err}");
    assert!(
        err.contains("Cluster, Topic, ConsumerGroup"),
        "says what is known: {err}"
    );
    let err = fails(
        &fleet,
        &["apply", "-f", "-"],
        Some("kind: [Topic\n"),
        1,
        "APPLY_PARSE",
    )
    .await;
    assert!(err.contains("not valid YAML"), "{err}");
    let err = fails(
        &fleet,
        &["apply", "-f", "-"],
        Some("kind: Topic\nmetadata: {name: T}\nspec: {cluster: biz, queus: 3}\n"),
        1,
        "APPLY_INVALID_DOCUMENT",
    )
    .await;
    assert!(err.contains("unknown field `queus`"), "{err}");
    let err = fails(
        &fleet,
        &["topic", "create", "T", "-c", "biz", "--queues", "-1"],
        None,
        2,
        "CLI_INVALID_ARGUMENT",
    )
    .await;
    assert!(err.contains("--queues: must be 1..=1024, got -1"), "{err}");
    let err = fails(
        &fleet,
        &["topic", "create", "bad.name", "-c", "biz"],
        None,
        1,
        "INVALID_REQUEST",
    )
    .await;
    assert!(
        err.contains("topic.name: must match ^[%|a-zA-Z0-9_-]+$"),
        "field path: {err}"
    );
    let long = "x".repeat(128);
    let err = fails(
        &fleet,
        &["group", "create", &long, "-c", "biz"],
        None,
        1,
        "INVALID_REQUEST",
    )
    .await;
    assert!(
        err.contains("group.name: must be at most 127 characters"),
        "{err}"
    );
    fails(
        &fleet,
        &["topic", "list", "-c", "nosuch"],
        None,
        1,
        "CLUSTER_NOT_FOUND",
    )
    .await;
    fails(
        &fleet,
        &[
            "offset",
            "reset",
            "g",
            "-c",
            "biz",
            "--topic",
            "T",
            "--to-time",
            "yesterday",
        ],
        None,
        2,
        "CLI_INVALID_ARGUMENT",
    )
    .await;
    let o = run(&fleet, &["topic", "frobnicate"], None).await;
    assert_eq!(o.status.code(), Some(2), "unknown subcommand: {}", text(&o));
    fails(
        &fleet,
        &["delete", "cluster", "nosuch"],
        None,
        1,
        "CLUSTER_NOT_FOUND",
    )
    .await;
    fails(&fleet, &["cordon", "node-9"], None, 1, "NODE_NOT_FOUND").await;

    // Node lifecycle: cordon shows in `get nodes -o json`, uncordon clears it.
    let cordoned = |want: bool| {
        let fleet = &fleet;
        async move {
            let v = json(fleet, &["get", "nodes", "-o", "json"]).await;
            v.as_array()
                .and_then(|n| n.iter().find(|n| n["name"] == "node-1"))
                .is_some_and(|n| n["cordoned"] == want)
        }
    };
    wait_until("node-1 registered", WAIT, || async {
        let v = json(&fleet, &["get", "nodes", "-o", "json"]).await;
        v.as_array()
            .is_some_and(|n| n.iter().any(|n| n["name"] == "node-1"))
            .then_some(())
    })
    .await
    .expect("the agent registers its node");
    assert!(
        ok(&fleet, &["cordon", "node-1"])
            .await
            .contains("node node-1 cordoned")
    );
    assert!(cordoned(true).await, "cordoned after cordon");
    ok(&fleet, &["uncordon", "node-1"]).await;
    assert!(cordoned(false).await, "not cordoned after uncordon");

    // `get clusters --watch -o json`: one JSON line per change, a delete included.
    use tokio::io::AsyncBufReadExt;
    let mut watch = tokio::process::Command::new(bin_path("flotilla"))
        .args(["get", "clusters", "--watch", "-o", "json"])
        .env("FLOTILLA_SERVER", &fleet.cp_addr)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the watch");
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().expect("piped")).lines();
    let mut next_line_with = async |what: &str| -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .expect("read")
                    .expect("the watch runs");
                let v: Value = serde_json::from_str(&line).expect("one JSON object per line");
                if v["name"] == "watched" && what.contains(v["phase"].as_str().unwrap_or("?")) {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no watch line for {what}"))
    };
    fleet
        .create_cluster(fleet::cluster(
            "watched",
            1,
            1,
            1,
            BrokerMode::MasterSlave,
            &[],
        ))
        .await;
    next_line_with("Pending Provisioning Running Degraded").await;
    ok(&fleet, &["delete", "cluster", "watched"]).await;
    next_line_with("Deleting Deleted").await;
    let _ = watch.kill().await;
}

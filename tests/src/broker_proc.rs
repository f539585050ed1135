//! Real `flotilla-namesrv` and `flotilla-broker` processes for end-to-end tests, and the
//! remoting admin calls tests make to them.
//!
//! The broker, replication and DLedger tests all start the same processes the same way (a
//! nameserver on a free loopback port, brokers from a `broker.conf` written into a per-broker
//! directory, logs beside it) and ask them the same questions (runtime info, registered ids,
//! routes, queue offsets, raw sends and pulls). This module is that harness, written once, so
//! a change to how our binaries start or answer is made in one place. Every call binds or
//! connects to 127.0.0.1 only, and every call has a bounded timeout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flotilla_remoting::protocol::{ClusterInfo, KVTable, TopicRouteData, decode_body};
use flotilla_remoting::{RemotingClient, RemotingCommand, request_code};

use crate::{Proc, bin_path, free_port};

/// Timeout of one admin call in [`call`].
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `flotilla-namesrv`.
pub struct Namesrv {
    /// The process (killed on drop).
    pub proc: Proc,
    /// `127.0.0.1:port`.
    pub addr: String,
}

impl Namesrv {
    /// Starts a nameserver on a free port, logging to `dir/<name>.log` and keeping its KV
    /// config in `dir/<name>-kv.json`.
    pub fn start(dir: &Path, name: &str) -> Namesrv {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(bin_path("flotilla-namesrv"));
        cmd.arg("--listen")
            .arg(&addr)
            .arg("--kv-config-path")
            .arg(dir.join(format!("{name}-kv.json")))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        Namesrv {
            proc: Proc::spawn(name, &mut cmd, Some(&dir.join(format!("{name}.log")))),
            addr,
        }
    }
}

/// Writes `dir/broker.conf`: `base` (complete `key=value` lines) followed by `extra`.
pub fn write_conf(dir: &Path, base: &str, extra: &[(&str, &str)]) -> PathBuf {
    let mut text = base.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for (k, v) in crate::TEST_DISK_KEYS {
        if !text.contains(&format!("{k}=")) && !extra.iter().any(|(e, _)| e == &k) {
            text.push_str(&format!("{k}={v}\n"));
        }
    }
    for (k, v) in extra {
        text.push_str(&format!("{k}={v}\n"));
    }
    let path = dir.join("broker.conf");
    std::fs::write(&path, text).expect("write broker.conf");
    path
}

/// Starts `flotilla-broker -c conf`, logging (without colours) to `dir/broker.log`.
pub fn spawn_broker(dir: &Path, conf: &Path, name: &str) -> Proc {
    let mut cmd = Command::new(bin_path("flotilla-broker"));
    cmd.arg("-c")
        .arg(conf)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    Proc::spawn(name, &mut cmd, Some(&dir.join("broker.log")))
}

/// The broker log in `dir` (empty when missing).
pub fn broker_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("broker.log")).unwrap_or_default()
}

/// One admin call; `None` when there was no answer within [`CALL_TIMEOUT`].
pub async fn call(
    admin: &RemotingClient,
    addr: &str,
    cmd: RemotingCommand,
) -> Option<RemotingCommand> {
    admin.invoke(addr, cmd, CALL_TIMEOUT).await.ok()
}

/// GET_BROKER_RUNTIME_INFO as a map (`None`: no answer or an error code). Answers within
/// 2 s or not at all, so polling a killed broker stays quick.
pub async fn runtime_info(admin: &RemotingClient, addr: &str) -> Option<BTreeMap<String, String>> {
    let r = admin
        .invoke(
            addr,
            RemotingCommand::request(request_code::GET_BROKER_RUNTIME_INFO),
            Duration::from_secs(2),
        )
        .await
        .ok()?;
    (r.code == 0).then_some(())?;
    decode_body::<KVTable>(&r.body).ok().map(|t| t.table)
}

/// A runtime-info value parsed as an integer.
pub async fn info_i64(admin: &RemotingClient, addr: &str, key: &str) -> Option<i64> {
    runtime_info(admin, addr).await?.get(key)?.parse().ok()
}

/// GET_BROKER_CLUSTER_INFO from a nameserver (`None`: no answer).
pub async fn cluster_info(admin: &RemotingClient, ns: &str) -> Option<ClusterInfo> {
    let r = admin
        .invoke(
            ns,
            RemotingCommand::request(request_code::GET_BROKER_CLUSTER_INFO),
            Duration::from_secs(2),
        )
        .await
        .ok()?;
    (r.code == 0).then_some(())?;
    decode_body::<ClusterInfo>(&r.body).ok()
}

/// Broker id → address registered at `ns` under `broker_name` (empty when unknown).
pub async fn registered_ids(
    admin: &RemotingClient,
    ns: &str,
    broker_name: &str,
) -> BTreeMap<i64, String> {
    cluster_info(admin, ns)
        .await
        .and_then(|c| {
            c.broker_addr_table
                .get(broker_name)
                .map(|b| b.broker_addrs.clone())
        })
        .unwrap_or_default()
}

/// Whether `broker_addr` is registered at `ns` under any name and id.
pub async fn registered_at(admin: &RemotingClient, ns: &str, broker_addr: &str) -> bool {
    cluster_info(admin, ns).await.is_some_and(|info| {
        info.broker_addr_table
            .values()
            .any(|b| b.broker_addrs.values().any(|a| a == broker_addr))
    })
}

/// GET_ROUTEINFO_BY_TOPIC from a nameserver (`None`: no answer or no route).
pub async fn route(admin: &RemotingClient, ns: &str, topic: &str) -> Option<TopicRouteData> {
    let r = admin
        .invoke(
            ns,
            RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic),
            Duration::from_secs(2),
        )
        .await
        .ok()?;
    (r.code == 0).then_some(())?;
    decode_body(&r.body).ok()
}

/// A broker's live config (GET_BROKER_CONFIG), as key → value (empty when it did not answer).
pub async fn broker_config(admin: &RemotingClient, addr: &str) -> BTreeMap<String, String> {
    let Some(r) = call(
        admin,
        addr,
        RemotingCommand::request(request_code::GET_BROKER_CONFIG),
    )
    .await
    else {
        return BTreeMap::new();
    };
    String::from_utf8_lossy(&r.body)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// UPDATE_AND_CREATE_TOPIC with `queues` read and write queues and `perm`; asserts SUCCESS.
pub async fn create_topic(admin: &RemotingClient, addr: &str, topic: &str, queues: i32, perm: i32) {
    let r = call(
        admin,
        addr,
        RemotingCommand::request(request_code::UPDATE_AND_CREATE_TOPIC)
            .with_ext("topic", topic)
            .with_ext("defaultTopic", "TBW102")
            .with_ext("readQueueNums", queues)
            .with_ext("writeQueueNums", queues)
            .with_ext("perm", perm)
            .with_ext("topicFilterType", "SINGLE_TAG")
            .with_ext("topicSysFlag", 0)
            .with_ext("order", false),
    )
    .await
    .expect("create topic call");
    assert_eq!(r.code, 0, "create topic {topic} on {addr}: {:?}", r.remark);
}

/// The write queue count of `topic` in the broker's GET_ALL_TOPIC_CONFIG (`None`: the broker
/// does not have the topic, or did not answer).
pub async fn topic_queues(admin: &RemotingClient, addr: &str, topic: &str) -> Option<i32> {
    let r = call(
        admin,
        addr,
        RemotingCommand::request(request_code::GET_ALL_TOPIC_CONFIG),
    )
    .await?;
    (r.code == 0).then_some(())?;
    let v: serde_json::Value = decode_body(&r.body).ok()?;
    let q = v
        .get("topicConfigTable")?
        .get(topic)?
        .get("writeQueueNums")?;
    i32::try_from(q.as_i64()?).ok()
}

/// GET_MAX_OFFSET of a queue (-1 when the answer has none); panics when the broker does not
/// answer.
pub async fn max_offset(admin: &RemotingClient, addr: &str, topic: &str, queue: i32) -> i64 {
    let r = call(
        admin,
        addr,
        RemotingCommand::request(request_code::GET_MAX_OFFSET)
            .with_ext("topic", topic)
            .with_ext("queueId", queue),
    )
    .await
    .expect("GET_MAX_OFFSET");
    r.ext("offset").and_then(|v| v.parse().ok()).unwrap_or(-1)
}

/// A hand-built SEND_MESSAGE of `body` to queue 0 of `topic`, straight to `addr` (`None`: no
/// answer).
pub async fn send_raw(
    admin: &RemotingClient,
    addr: &str,
    topic: &str,
    body: &str,
) -> Option<RemotingCommand> {
    call(
        admin,
        addr,
        RemotingCommand::request(request_code::SEND_MESSAGE)
            .with_ext("producerGroup", "pg-raw")
            .with_ext("topic", topic)
            .with_ext("defaultTopic", "TBW102")
            .with_ext("defaultTopicQueueNums", 4)
            .with_ext("queueId", 0)
            .with_ext("sysFlag", 0)
            .with_ext("bornTimestamp", 1)
            .with_ext("flag", 0)
            .with_body(body.as_bytes().to_vec()),
    )
    .await
}

/// A raw PULL_MESSAGE of at most `n` messages of one queue from `from`, without suspending,
/// as group `cg-raw`; panics when the broker does not answer.
pub async fn pull_raw(
    admin: &RemotingClient,
    addr: &str,
    topic: &str,
    queue: i32,
    from: i64,
    n: i32,
) -> RemotingCommand {
    call(admin, addr, pull_request("cg-raw", topic, queue, from, n))
        .await
        .expect("PULL_MESSAGE")
}

/// A PULL_MESSAGE of at most `n` messages of one queue from `from` as `group`: sysFlag 0 (no
/// commit, no suspend, no subscription of its own). Callers add or override fields with
/// `with_ext`.
pub fn pull_request(group: &str, topic: &str, queue: i32, from: i64, n: i32) -> RemotingCommand {
    RemotingCommand::request(request_code::PULL_MESSAGE)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue)
        .with_ext("queueOffset", from)
        .with_ext("maxMsgNums", n)
        .with_ext("sysFlag", 0)
        .with_ext("commitOffset", 0)
        .with_ext("suspendTimeoutMillis", 0)
        .with_ext("subVersion", 0)
}

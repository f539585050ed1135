//! Apache's C++ RocketMQ client (librocketmq, through PyPI's `rocketmq` 0.4.4) as a second
//! real client for the end-to-end tests.
//!
//! `rocketmq-client-rust` alone proved little about "existing clients work unchanged": the
//! C++ client (which the Python and cgo Go clients wrap) encodes booleans, enums and numbers
//! differently, and it was refused on its first send. The tests drive it through
//! `tests/cpp/rmq_cpp.py` in the venv `scripts/test` creates
//! (`<target>/cpp-client-venv`, or `FLOTILLA_CPP_PYTHON`): a producer run returns one
//! [`Sent`] per message, a [`CppConsumer`] runs in the background and appends one
//! [`Delivery`] per message to a file the test polls. The client logs under the test's
//! directory (its `HOME`), never the user's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{Proc, wait_until};

/// The venv's python: `FLOTILLA_CPP_PYTHON`, else `<target>/cpp-client-venv/bin/python`.
///
/// Panics with the command to run when the venv is missing (the tests must not pass
/// without the client).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("FLOTILLA_CPP_PYTHON") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test-binary>  ->  target/cpp-client-venv
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps");
    let py = target.join("cpp-client-venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/cpp-client-venv (scripts/test does) to install the C++ \
         RocketMQ client",
        py.display()
    );
    py
}

/// `tests/cpp/rmq_cpp.py`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cpp/rmq_cpp.py")
}

fn command(home: &Path) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(script())
        .env("HOME", home)
        .env("PYTHONUNBUFFERED", "1");
    cmd
}

/// One message a producer run reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The body (`<prefix>-<i>`).
    pub body: String,
    /// Whether the client reported success.
    pub ok: bool,
    /// The client's message id, when it had one.
    pub msg_id: String,
    /// The client's error text, when it failed.
    pub error: String,
}

/// How a producer run sends.
#[derive(Debug, Clone)]
pub struct Produce<'a> {
    /// Nameserver `host:port`.
    pub ns: &'a str,
    /// Producer group.
    pub group: &'a str,
    /// Topic.
    pub topic: &'a str,
    /// `sync`, `async`, `oneway`, `orderly` or `batch`.
    pub mode: &'a str,
    /// Messages to send.
    pub count: usize,
    /// Body prefix (bodies are `<prefix>-<i>`).
    pub prefix: &'a str,
    /// Tag, if any.
    pub tag: &'a str,
    /// Key prefix (keys are `<keys>-<i>`), if any.
    pub keys: &'a str,
    /// Delay level, 0 for none.
    pub delay_level: i32,
    /// `orderly`: the queue selector's argument (same argument, same queue).
    pub shard: i32,
    /// ACL 1.0 `(AccessKey, secret key)` to sign requests with, if any.
    pub credentials: Option<(&'a str, &'a str)>,
}

impl<'a> Produce<'a> {
    /// `count` sync sends of `<prefix>-<i>` to `topic`.
    pub fn new(ns: &'a str, topic: &'a str, prefix: &'a str, count: usize) -> Self {
        Produce {
            ns,
            group: "cpp-pg",
            topic,
            mode: "sync",
            count,
            prefix,
            tag: "",
            keys: "",
            delay_level: 0,
            shard: 0,
            credentials: None,
        }
    }

    /// Runs the producer to completion (bounded by the client's send timeouts) and returns
    /// what it reported for each message. Panics if the script fails outright.
    pub fn run(&self, home: &Path) -> Vec<Sent> {
        let mut cmd = command(home);
        cmd.args(["produce", "--ns", self.ns, "--group", self.group])
            .args(["--topic", self.topic, "--mode", self.mode])
            .args(["--count", &self.count.to_string(), "--prefix", self.prefix])
            .args(["--shard", &self.shard.to_string()])
            .args(["--delay-level", &self.delay_level.to_string()]);
        if !self.tag.is_empty() {
            cmd.args(["--tag", self.tag]);
        }
        if !self.keys.is_empty() {
            cmd.args(["--keys", self.keys]);
        }
        if let Some((ak, sk)) = self.credentials {
            cmd.args(["--access-key", ak, "--secret-key", sk]);
        }
        let out = cmd.output().expect("run the C++ client producer");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "C++ producer failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("body").is_some())
            .map(|v| Sent {
                body: text(&v, "body"),
                ok: v.get("ok").and_then(Value::as_bool).unwrap_or(false),
                msg_id: text(&v, "msg_id"),
                error: text(&v, "error"),
            })
            .collect()
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// One delivery a consumer reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The body.
    pub body: String,
    /// The topic the client reports (the original topic for retries).
    pub topic: String,
    /// `TAGS`.
    pub tags: String,
    /// `KEYS`.
    pub keys: String,
    /// Times re-consumed.
    pub reconsume_times: i64,
    /// Queue id.
    pub queue_id: i64,
    /// Queue offset.
    pub queue_offset: i64,
    /// Born timestamp, ms.
    pub born: i64,
    /// Store timestamp, ms.
    pub stored: i64,
    /// Whether the consumer failed it on purpose.
    pub failed: bool,
}

/// A push consumer of the C++ client, running until dropped (SIGKILL).
pub struct CppConsumer {
    proc: Proc,
    out: PathBuf,
}

/// How a consumer consumes.
#[derive(Debug, Clone)]
pub struct Consume<'a> {
    /// Nameserver `host:port`.
    pub ns: &'a str,
    /// Consumer group.
    pub group: &'a str,
    /// Topic.
    pub topic: &'a str,
    /// Subscription expression (`*`, `TagA || TagB`).
    pub expr: &'a str,
    /// Broadcasting instead of clustering.
    pub broadcasting: bool,
    /// Orderly listener.
    pub orderly: bool,
    /// Fail each message this many times (RECONSUME_LATER).
    pub fail_times: u32,
    /// Instance name (distinct for two consumers of one group in one process tree).
    pub instance: &'a str,
    /// ACL 1.0 `(AccessKey, secret key)` to sign requests with, if any.
    pub credentials: Option<(&'a str, &'a str)>,
}

impl<'a> Consume<'a> {
    /// A clustering consumer of `topic` for `group`, all tags.
    pub fn new(ns: &'a str, group: &'a str, topic: &'a str) -> Self {
        Consume {
            ns,
            group,
            topic,
            expr: "*",
            broadcasting: false,
            orderly: false,
            fail_times: 0,
            instance: "",
            credentials: None,
        }
    }

    /// Starts the consumer, its deliveries in `dir/<name>.jsonl` and its output in
    /// `dir/<name>.log`, and waits until the client says it started.
    pub async fn start(&self, dir: &Path, name: &str) -> CppConsumer {
        let out = dir.join(format!("{name}.jsonl"));
        let mut cmd = command(dir);
        cmd.args(["consume", "--ns", self.ns, "--group", self.group])
            .args(["--topic", self.topic, "--expr", self.expr])
            .args(["--fail-times", &self.fail_times.to_string()])
            .arg("--out")
            .arg(&out);
        if self.broadcasting {
            cmd.args(["--model", "broadcasting"]);
        }
        if self.orderly {
            cmd.arg("--orderly");
        }
        if !self.instance.is_empty() {
            cmd.args(["--instance", self.instance]);
        }
        if let Some((ak, sk)) = self.credentials {
            cmd.args(["--access-key", ak, "--secret-key", sk]);
        }
        let c = CppConsumer {
            proc: Proc::spawn(name, &mut cmd, Some(&dir.join(format!("{name}.log")))),
            out,
        };
        let started = wait_until("the C++ consumer to start", Duration::from_secs(30), || {
            let lines = c.lines();
            async move {
                lines
                    .iter()
                    .any(|v| v.get("started").is_some())
                    .then_some(())
            }
        })
        .await;
        if started.is_err() {
            panic!("C++ consumer {name} did not start");
        }
        c
    }
}

impl CppConsumer {
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Every delivery so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lines()
            .iter()
            .filter(|v| v.get("body").is_some())
            .map(|v| {
                let int = |k| v.get(k).and_then(Value::as_i64).unwrap_or(-1);
                Delivery {
                    body: text(v, "body"),
                    topic: text(v, "topic"),
                    tags: text(v, "tags"),
                    keys: text(v, "keys"),
                    reconsume_times: int("reconsume_times"),
                    queue_id: int("queue_id"),
                    queue_offset: int("queue_offset"),
                    born: int("born"),
                    stored: int("stored"),
                    failed: v.get("failed").and_then(Value::as_bool).unwrap_or(false),
                }
            })
            .collect()
    }

    /// Bodies consumed successfully so far.
    pub fn consumed(&self) -> BTreeSet<String> {
        self.deliveries()
            .into_iter()
            .filter(|d| !d.failed)
            .map(|d| d.body)
            .collect()
    }

    /// Waits until every body in `want` was consumed successfully; panics with what was
    /// missing after `timeout`.
    pub async fn wait_for(&self, what: &str, want: &BTreeSet<String>, timeout: Duration) {
        let r = wait_until(what, timeout, || {
            let got = self.consumed();
            async move { want.is_subset(&got).then_some(()) }
        })
        .await;
        if r.is_err() {
            let got = self.consumed();
            let missing: Vec<_> = want.difference(&got).take(10).collect();
            panic!(
                "{what}: {} of {} consumed after {timeout:?}; missing e.g. {missing:?}",
                want.intersection(&got).count(),
                want.len()
            );
        }
    }

    /// The consumer process.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// The bodies `<prefix>-0` … `<prefix>-<n-1>`.
pub fn bodies(prefix: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

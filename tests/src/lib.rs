//! Shared harness for Flotilla's end-to-end tests.
//!
//! End-to-end tests start *real* processes: our own binaries (`flotilla-namesrv`,
//! `flotilla-broker`, `flotilla-cp`, `flotilla-agent`, `flotilla`), a real `etcd` server, and
//! drive them with real clients. This module gives them the few primitives they share:
//!
//! - [`bin_path`] finds a workspace binary next to the running test executable (the test
//!   command builds every binary before running the tests);
//! - [`free_port`] picks an unused loopback port;
//! - [`Proc`] owns a child process and kills it (SIGKILL) when dropped, so a failing test
//!   never leaks servers;
//! - [`wait_until`] polls a condition with a deadline instead of sleeping a fixed time.
//!
//! - [`fleet`] runs a control plane and agents as processes, each node on its own loopback
//!   address;
//! - [`rmq`] wraps the real RocketMQ client (`rocketmq-client-rust`) for producing and
//!   consuming;
//! - [`cpp`] drives a second real client, Apache's C++ client (PyPI `rocketmq` 0.4.4), from
//!   the venv `scripts/test` creates.
//!
//! Servers started here always bind loopback addresses (127.0.0.0/8).

pub mod broker_proc;
pub mod cli;
pub mod cpp;

/// Disk thresholds for every broker a test starts: the tests check behaviour, not the
/// machine's disk, and a shared CI disk can be over RocketMQ's defaults (85 % forced cleaning,
/// 90 % writes refused) before a test writes a byte. Retention and disk-full behaviour have
/// their own tests with an injected disk probe (`broker/store/tests/store_retention.rs`).
pub const TEST_DISK_KEYS: [(&str, &str); 3] = [
    ("diskMaxUsedSpaceRatio", "95"),
    ("diskSpaceCleanForciblyRatio", "98"),
    ("diskSpaceWarningLevelRatio", "99"),
];
/// The loopback fault proxy, shared with `broker/dledger`'s own tests.
pub use flotilla_test_support::fault_proxy;
pub mod fleet;
pub mod metrics;
pub mod rmq;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a binary of this workspace, in the same target directory as the running test.
///
/// Panics with a clear message when it has not been built: run `cargo build --workspace --bins`
/// (the test command does this) before the end-to-end tests.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test-binary>  ->  target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests",
        path.display()
    );
    path
}

/// An unused TCP port on 127.0.0.1 (bound, then released; the OS will not hand it out again
/// right away).
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
        let port = listener
            .local_addr()
            .expect("bound socket has an address")
            .port();
        if port > 2 && port < u16::MAX - 2 {
            return port;
        }
    }
}

/// A free port `p` such that `p`, `p + 1` and `p - 2` are all free (a broker's listen, HA and
/// fast ports).
pub fn free_broker_port() -> u16 {
    for _ in 0..200 {
        let p = free_port();
        let ok = [p + 1, p - 2]
            .iter()
            .all(|q| TcpListener::bind(("127.0.0.1", *q)).is_ok());
        if ok {
            return p;
        }
    }
    panic!("no free broker port triple on loopback after 200 tries");
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    name: String,
    child: Option<Child>,
}

impl Proc {
    /// Spawns `cmd` with stdout/stderr appended to `log` (or inherited when `None`).
    pub fn spawn(name: &str, cmd: &mut Command, log: Option<&Path>) -> Self {
        if let Some(log) = log {
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("open process log");
            let err = out.try_clone().expect("clone log handle");
            cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self {
            name: name.to_string(),
            child: Some(child),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends a signal (e.g. `Signal::SIGTERM`, `Signal::SIGSTOP`).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(child) = &self.child {
            let pid = i32::try_from(child.id()).expect("pid fits in i32");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }

    /// SIGKILLs the process and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit code if it exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Some(status);
                }
            } else {
                return None;
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The condition did not hold before the deadline.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {0:?} waiting for {1}")]
pub struct Timeout(pub Duration, pub String);

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, Timeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Timeout(timeout, what.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_for_port(addr: &str, timeout: Duration) -> Result<(), Timeout> {
    wait_until(
        &format!("{addr} to accept connections"),
        timeout,
        || async { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
    )
    .await
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir")
}

//! Test support (feature `testing`): a real etcd — one member on free loopback ports, its
//! data in a temp dir, killed on drop — and the bounded poll tests wait with.
//!
//! The etcd backend's conformance tests and the control plane's HA tests both need a real
//! etcd (`etcd` from Debian's `etcd-server`, CONTRIBUTING: tests use real parts); this is the
//! one place that knows how to start one. It is not part of the product: `flotilla-cp` enables
//! the feature only for its tests, and this crate only for its own.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::{EtcdStore, IntentStore};

/// Where Debian's `etcd-server` installs the server.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// Upper bound for anything a test waits on, etcd's start included (a hang guard, not a
/// timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` every 20 ms until it returns `Some`; panics after [`PATIENCE`].
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An unused TCP port on 127.0.0.1.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    l.local_addr().expect("bound socket has an address").port()
}

/// A real single-member etcd on free loopback ports, data in a temp dir, killed on drop.
pub struct EtcdServer {
    child: Child,
    client_port: u16,
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd and waits (by polling) until it serves requests. Panics when
    /// [`ETCD_BIN`] is missing, etcd exits, or it does not serve within [`PATIENCE`].
    pub async fn start() -> Self {
        assert!(
            Path::new(ETCD_BIN).exists(),
            "{ETCD_BIN} is missing: install Debian's etcd-server (`apt-get install etcd-server`); \
             the tests against etcd need a real etcd"
        );
        let dir = tempfile::Builder::new()
            .prefix("flotilla-etcd-")
            .tempdir()
            .expect("create etcd temp dir");
        let client_port = free_port();
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("create etcd log");
        let log_err = log.try_clone().expect("clone log handle");
        let child = Command::new(ETCD_BIN)
            .args(["--name", "test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .args(["--initial-cluster-state", "new"])
            // Short raft timings: a one-member cluster elects itself quickly and accepts
            // 1-second lease TTLs (etcd's minimum TTL derives from the election timeout).
            .args(["--heartbeat-interval", "10", "--election-timeout", "100"])
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {ETCD_BIN}: {e}"));
        let mut server = EtcdServer {
            child,
            client_port,
            dir,
        };
        let endpoint = server.endpoint();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("etcd exited early ({status}); log:\n{}", server.log_tail());
            }
            if let Ok(store) = EtcdStore::connect(std::slice::from_ref(&endpoint)).await
                && store.get("/ready-probe").await.is_ok()
            {
                return server;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "etcd did not become ready; log:\n{}",
                server.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// A new client of this etcd, as an [`IntentStore`].
    pub async fn store(&self) -> Arc<dyn IntentStore> {
        Arc::new(
            EtcdStore::connect(&[self.endpoint()])
                .await
                .expect("connect to test etcd"),
        )
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The last 30 lines of etcd's log (for panic messages).
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

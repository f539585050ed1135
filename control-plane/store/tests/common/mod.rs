//! Test helpers: store fixtures for both backends, a real etcd server, bounded waits.

#![allow(dead_code)]

use std::any::Any;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use flotilla_intent_store::{
    EmbeddedOptions, EmbeddedStore, EtcdStore, IntentStore, StoreError, WatchEvent, WatchStream,
};
use futures::StreamExt;

/// Where Debian's `etcd-server` installs the server.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// Generous upper bound for anything a test waits on (a hang guard, not a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A store under test plus whatever must live as long as it (temp dir, etcd process).
pub struct Fixture {
    pub store: Arc<dyn IntentStore>,
    _guard: Box<dyn Any + Send>,
}

/// A fresh embedded store in a temp dir.
pub async fn embedded() -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("intent-store-")
        .tempdir()
        .expect("create temp dir");
    let store = EmbeddedStore::open(dir.path())
        .await
        .expect("open embedded store");
    Fixture {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

/// Opens an embedded store in an existing directory.
pub async fn embedded_at(dir: &Path, options: EmbeddedOptions) -> Arc<dyn IntentStore> {
    Arc::new(
        EmbeddedStore::open_with(dir, options)
            .await
            .expect("open embedded store"),
    )
}

/// A fresh etcd store backed by its own real etcd server.
pub async fn etcd() -> Fixture {
    let server = EtcdServer::start().await;
    let store = EtcdStore::connect(&[server.endpoint()])
        .await
        .expect("connect to test etcd");
    Fixture {
        store: Arc::new(store),
        _guard: Box::new(server),
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
    /// Starts etcd and waits (by polling) until it serves requests.
    pub async fn start() -> Self {
        assert!(
            Path::new(ETCD_BIN).exists(),
            "{ETCD_BIN} is missing: install Debian's etcd-server (`apt-get install etcd-server`); \
             the etcd conformance tests need a real etcd"
        );
        let dir = tempfile::Builder::new()
            .prefix("intent-etcd-")
            .tempdir()
            .expect("create etcd temp dir");
        let client_port = free_port();
        let peer_port = free_port();
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("create etcd log");
        let log_err = log.try_clone().expect("clone log handle");
        let child = Command::new(ETCD_BIN)
            .arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("test={peer}"))
            .arg("--initial-cluster-state")
            .arg("new")
            // Short raft timings: a one-member cluster elects itself quickly and accepts
            // 1-second lease TTLs (etcd's minimum TTL derives from the election timeout).
            .arg("--heartbeat-interval")
            .arg("10")
            .arg("--election-timeout")
            .arg("100")
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

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

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

/// Polls `check` every 20 ms until it returns `Some`, panicking after [`PATIENCE`].
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

/// The next item of a watch, panicking if none arrives within [`PATIENCE`].
pub async fn next_item(stream: &mut WatchStream) -> Result<WatchEvent, StoreError> {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("timed out waiting for a watch event")
        .expect("watch stream ended")
}

/// The next event of a watch, which must not be an error.
pub async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    next_item(stream).await.expect("watch error")
}

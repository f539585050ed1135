//! Test support: in-process DLedger groups on temp dirs and real loopback TCP, with a fault
//! proxy on every directed link so a test can cut members off and heal them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failure with a location

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flotilla_dledger::{DLedger, DLedgerConfig, Peer, Role, RoleState};
use flotilla_message_store::{MessageInner, MessageStore, PutStatus, StoreConfig};
use parking_lot::Mutex;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Polls `f` every 10 ms until it holds; panics after `timeout` naming `what`.
pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The loopback fault proxy (shared with the end-to-end tests).
pub use flotilla_test_support::FaultProxy as Proxy;

/// Test timings: heartbeat 50 ms, lease 400 ms, election timeout 800–1600 ms (generous, so a
/// loaded 2-core machine does not see spurious elections).
pub fn tune(cfg: &mut DLedgerConfig) {
    cfg.heartbeat_interval = Duration::from_millis(50);
    cfg.lease = Duration::from_millis(400);
    cfg.election_timeout_min = Duration::from_millis(800);
    cfg.election_timeout_max = Duration::from_millis(1600);
    cfg.rpc_timeout = Duration::from_millis(500);
    cfg.max_append_bytes = 16 * 1024;
}

pub struct Member {
    pub id: String,
    pub dir: TempDir,
    pub store: Option<MessageStore>,
    pub dl: Option<DLedger>,
}

/// A group of in-process members; every directed link `i -> j` goes through `proxies[i][j]`.
pub struct Cluster {
    pub members: Vec<Member>,
    pub proxies: Vec<Vec<Option<Proxy>>>,
    pub events: Arc<Mutex<Vec<(usize, RoleState)>>>,
    addrs: Vec<SocketAddr>,
    cfgs: Vec<DLedgerConfig>,
    recorders: Vec<JoinHandle<()>>,
}

pub fn open_store(root: &std::path::Path, file_size: u64) -> MessageStore {
    let mut sc = StoreConfig::new(root);
    sc.commitlog_file_size = file_size;
    sc.background_services = false;
    // The tests check replication, not the machine's disk: a crowded shared disk must not
    // refuse their writes (as the broker tests' TEST_DISK_KEYS).
    sc.disk_max_used_ratio = 0.95;
    sc.disk_force_clean_ratio = 0.98;
    sc.disk_full_ratio = 0.99;
    MessageStore::open(sc).unwrap()
}

impl Cluster {
    pub async fn start(n: usize, file_size: u64) -> Cluster {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..n {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(l.local_addr().unwrap());
            listeners.push(l);
        }
        let mut proxies: Vec<Vec<Option<Proxy>>> = Vec::new();
        for i in 0..n {
            let mut row = Vec::new();
            for (j, addr) in addrs.iter().enumerate() {
                row.push(if i == j {
                    None
                } else {
                    Some(Proxy::start(*addr).await.expect("fault proxy"))
                });
            }
            proxies.push(row);
        }
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut members = Vec::new();
        let mut recorders = Vec::new();
        let mut cfgs = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let store = open_store(&dir.path().join("store"), file_size);
            let peers = (0..n)
                .map(|j| Peer {
                    id: format!("n{j}"),
                    addr: match &proxies[i][j] {
                        None => addrs[j].to_string(),
                        Some(p) => p.addr().to_string(),
                    },
                })
                .collect();
            let mut cfg =
                DLedgerConfig::new("RaftNode00", format!("n{i}"), peers, dir.path().join("dl"));
            tune(&mut cfg);
            cfgs.push(cfg.clone());
            let dl = DLedger::start_with_listener(cfg, store.clone(), listener).unwrap();
            let mut rx = dl.role_events();
            let ev = events.clone();
            recorders.push(tokio::spawn(async move {
                while let Ok(rs) = rx.recv().await {
                    ev.lock().push((i, rs));
                }
            }));
            members.push(Member {
                id: format!("n{i}"),
                dir,
                store: Some(store),
                dl: Some(dl),
            });
        }
        Cluster {
            members,
            proxies,
            events,
            addrs,
            cfgs,
            recorders,
        }
    }

    pub fn store(&self, i: usize) -> &MessageStore {
        self.members[i].store.as_ref().expect("store is open")
    }

    pub fn dl(&self, i: usize) -> &DLedger {
        self.members[i].dl.as_ref().expect("member is alive")
    }

    pub fn role_of(&self, i: usize) -> Option<RoleState> {
        self.members[i]
            .dl
            .as_ref()
            .map(|d| d.role().borrow().clone())
    }

    /// Index of the member that leads with every other live, connected member following it
    /// in the same term, if there is one right now.
    pub fn settled_leader(&self, among: &[usize]) -> Option<usize> {
        let roles: Vec<(usize, RoleState)> = among
            .iter()
            .filter_map(|&i| self.role_of(i).map(|r| (i, r)))
            .collect();
        let leaders: Vec<&(usize, RoleState)> = roles
            .iter()
            .filter(|(_, r)| r.role == Role::Leader)
            .collect();
        let [(li, lr)] = leaders.as_slice() else {
            return None;
        };
        let lid = format!("n{li}");
        let all_follow = roles.iter().all(|(i, r)| {
            i == li
                || (r.role == Role::Follower
                    && r.term == lr.term
                    && r.leader_id.as_deref() == Some(lid.as_str()))
        });
        all_follow.then_some(*li)
    }

    pub async fn wait_leader(&self, among: &[usize], timeout: Duration) -> usize {
        let mut found = None;
        wait_until("a settled leader", timeout, || {
            found = self.settled_leader(among);
            found.is_some()
        })
        .await;
        found.expect("checked above")
    }

    /// Cuts member `k` off from every other member (both directions).
    pub fn isolate(&self, k: usize) {
        for (i, row) in self.proxies.iter().enumerate() {
            for (j, p) in row.iter().enumerate() {
                if (i == k || j == k)
                    && let Some(p) = p
                {
                    p.block();
                }
            }
        }
    }

    pub fn heal_all(&self) {
        for p in self.proxies.iter().flatten().flatten() {
            p.unblock();
        }
    }

    /// Stops member `k`'s DLedger (its store stays open for inspection).
    pub async fn kill(&mut self, k: usize) {
        if let Some(dl) = self.members[k].dl.take() {
            dl.shutdown().await;
        }
    }

    /// Restarts member `k` after [`Cluster::kill`]: reopens its store and DLedger from the
    /// same directories and listens on the same address.
    pub async fn restart(&mut self, k: usize, file_size: u64) {
        assert!(self.members[k].dl.is_none(), "kill the member first");
        let addr = self.addrs[k];
        if let Some(old) = self.members[k].store.take() {
            old.shutdown().unwrap();
        }
        let store = open_store(&self.members[k].dir.path().join("store"), file_size);
        self.members[k].store = Some(store.clone());
        let listener = TcpListener::bind(addr).await.unwrap();
        let dl = DLedger::start_with_listener(self.cfgs[k].clone(), store, listener).unwrap();
        let mut rx = dl.role_events();
        let ev = self.events.clone();
        self.recorders.push(tokio::spawn(async move {
            while let Ok(rs) = rx.recv().await {
                ev.lock().push((k, rs));
            }
        }));
        self.members[k].dl = Some(dl);
    }

    /// Appends `count` messages of `size` bytes on member `i`'s store; returns the end offset.
    pub async fn put(&self, i: usize, tag: &str, count: usize, size: usize) -> i64 {
        let store = self.store(i);
        for n in 0..count {
            let mut body = format!("{tag}-{n}-").into_bytes();
            body.resize(size.max(body.len()), b'x');
            let msg = MessageInner::new("TopicTest", (n % 4) as i32, body)
                .with_property("KEYS", &format!("{tag}-{n}"));
            let r = store.put_message(msg).await;
            assert_eq!(r.status, PutStatus::PutOk);
        }
        store.commitlog_max_offset()
    }

    /// Every role transition any member reported.
    pub fn leaders_by_term(&self) -> BTreeMap<u64, Vec<usize>> {
        let mut m: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, rs) in self.events.lock().iter() {
            if rs.role == Role::Leader {
                let v = m.entry(rs.term).or_default();
                if !v.contains(i) {
                    v.push(*i);
                }
            }
        }
        m
    }

    pub fn assert_one_leader_per_term(&self) {
        for (term, leaders) in self.leaders_by_term() {
            assert!(
                leaders.len() == 1,
                "term {term} had leaders {leaders:?}; events: {:?}",
                self.events.lock()
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for r in &self.recorders {
            r.abort();
        }
    }
}

/// The whole CommitLog of a store, from its first byte.
pub fn dump(store: &MessageStore) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = store.commitlog_min_offset();
    let end = store.commitlog_max_offset();
    let mut rounds = 0;
    while pos < end && rounds < 1_000_000 {
        rounds += 1;
        match store.read_raw(pos, 1 << 20) {
            Some(b) => {
                pos += b.len() as i64;
                out.extend_from_slice(&b);
            }
            None => break,
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

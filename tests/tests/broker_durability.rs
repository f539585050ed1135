//! Durability of acknowledged sends, measured at the system-call level.
//!
//! The SIGKILL tests (`broker/store/tests/store_crash.rs`, the broker restarts in
//! `broker_e2e.rs`, the replication tests) cannot prove SYNC_FLUSH: a killed process leaves its
//! writes in the page cache, so they would pass with every `msync` removed. These tests run a
//! real `flotilla-broker` under `strace -f -ttt -T -y -xx` and read, from the trace alone:
//!
//! - when each send's request bytes arrived (the `recvfrom`/`read` on the client's socket that
//!   returned the last byte of its unique body),
//! - when its acknowledgement left (the `sendto`/`write`/`writev` that carried the first byte
//!   of the response frame holding its `msgId`),
//! - which CommitLog bytes each `msync(MS_SYNC)`, `fsync` or `fdatasync` made durable, and when
//!   it returned (`mmap` of the CommitLog segments maps addresses back to log offsets).
//!
//! `sync_flush_acks_only_after_the_commitlog_is_synced`: with SYNC_FLUSH, every acknowledged
//! send has a sync covering its whole record that started after the request arrived and
//! returned before the acknowledgement went out. An acknowledgement sent ahead of the flush,
//! or a flush of the wrong range, fails it.
//!
//! `async_flush_acks_without_waiting_for_a_sync`: the converse, with ASYNC_FLUSH and the
//! flusher's thresholds out of reach: no acknowledgement waited for a sync (none covered its
//! record before it left), and the final flush on SIGTERM is seen covering every record — so
//! the same trace reading does see CommitLog syncs, and the SYNC test's check can fail.
//!
//! The tests skip, saying why, only when `strace` cannot run here (not installed, or ptrace
//! not permitted); `scripts/test` installs Debian's `strace`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a location

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flotilla_remoting::RemotingClient;
use flotilla_tests::broker_proc::{self as bp, Namesrv};
use flotilla_tests::{Proc, bin_path, free_broker_port, temp_dir, wait_for_port, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "DurableTopic";
/// CommitLog segment size of the test brokers (small, so the sends cross a file boundary).
const SEGMENT: u64 = 64 * 1024;
const WRITERS: usize = 4;
const PER_WRITER: usize = 40;

// ------------------------------------------------------------------------------------------
// Reading the trace

/// One finished system call: its text (`name(args) = ret`, joined when strace split it into
/// `<unfinished ...>` and `<... resumed>`), and when it started and returned.
#[derive(Debug)]
struct Call {
    text: String,
    start: f64,
    end: f64,
}

/// Joins split calls and attaches times (entry time from `-ttt`, duration from `-T`).
fn calls(trace: &str) -> Vec<Call> {
    let mut pending: BTreeMap<&str, (f64, String)> = BTreeMap::new();
    let mut out = Vec::new();
    for line in trace.lines() {
        // `pid ts call`; strace pads pids of different widths with extra spaces.
        let Some((pid, line)) = line.split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, (ts, head.to_string()));
            continue;
        }
        let (start, text) = if rest.starts_with("<... ") {
            let Some((_, tail)) = rest.split_once(" resumed>") else {
                continue;
            };
            let Some((start, head)) = pending.remove(pid) else {
                continue;
            };
            (start, format!("{head}{tail}"))
        } else if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        } else {
            (ts, rest.to_string())
        };
        // `-T`: the call's duration closes the line.
        let (text, end) = match text.rsplit_once(" <") {
            Some((t, d)) if d.ends_with('>') => match d.trim_end_matches('>').parse::<f64>() {
                Ok(d) => (t.to_string(), start + d),
                Err(_) => (text.clone(), ts),
            },
            _ => (text.clone(), ts),
        };
        out.push(Call { text, start, end });
    }
    out
}

/// Decodes a `-xx` string literal (`"\x00\x41"`) at the start of `s`: the bytes, and whether
/// strace truncated it (`"..."...`).
fn hex_literal(s: &str) -> Option<(Vec<u8>, bool)> {
    let body = s.strip_prefix('"')?;
    let close = body.find('"')?;
    let hex = &body[..close];
    let mut bytes = Vec::with_capacity(hex.len() / 4);
    for chunk in hex.as_bytes().chunks(4) {
        let digits = std::str::from_utf8(chunk.get(2..4)?).ok()?;
        bytes.push(u8::from_str_radix(digits, 16).ok()?);
    }
    Some((bytes, body[close + 1..].starts_with("...")))
}

/// The path strace `-y` printed for an fd argument (`15<\x2f...>`).
fn fd_path(arg: &str) -> Option<String> {
    let (_, p) = arg.split_once('<')?;
    let p = p.strip_suffix('>')?;
    let (bytes, _) = hex_literal(&format!("\"{p}\""))?;
    String::from_utf8(bytes).ok()
}

/// The CommitLog segment a path names: its base offset (the 20-digit file name).
fn segment_base(path: &str) -> Option<u64> {
    let p = Path::new(path);
    let name = p.file_name()?.to_str()?;
    let dir = p.parent()?.file_name()?.to_str()?;
    (dir == "commitlog" && name.len() == 20).then_some(())?;
    name.parse().ok()
}

/// Splits `name(a, b, c) = ret` into the name, the top-level arguments and the return value.
fn split_call(text: &str) -> Option<(&str, Vec<&str>, &str)> {
    let (name, rest) = text.split_once('(')?;
    let (args, ret) = rest.rsplit_once(") = ")?;
    let mut out = Vec::new();
    let (mut depth, mut from, mut quoted) = (0i32, 0usize, false);
    let b = args.as_bytes();
    for (i, c) in b.iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b'[' | b'{' | b'<' if !quoted => depth += 1,
            b']' | b'}' | b'>' if !quoted => depth -= 1,
            b',' if !quoted && depth == 0 => {
                out.push(args[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(args[from..].trim());
    Some((name, out, ret.split(' ').next()?))
}

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A range of CommitLog bytes made durable by one call, and when that call ran.
#[derive(Debug, Clone, Copy)]
struct Sync {
    from: u64,
    to: u64,
    start: f64,
    end: f64,
}

/// Bytes one socket carried in one direction, and the calls that moved them.
#[derive(Debug, Default)]
struct Stream {
    bytes: Vec<u8>,
    /// (stream offset, length, start, end) of each call.
    chunks: Vec<(usize, usize, f64, f64)>,
}

impl Stream {
    fn push(&mut self, data: &[u8], start: f64, end: f64) {
        self.chunks.push((self.bytes.len(), data.len(), start, end));
        self.bytes.extend_from_slice(data);
    }
    /// The call that carried byte `pos`.
    fn chunk_at(&self, pos: usize) -> (f64, f64) {
        let (_, _, s, e) = self
            .chunks
            .iter()
            .find(|(o, l, _, _)| *o <= pos && pos < o + l)
            .expect("every stream byte came from a call");
        (*s, *e)
    }
}

#[derive(Debug, Default)]
struct Trace {
    syncs: Vec<Sync>,
    /// Socket inode → bytes the broker received / sent.
    inbound: BTreeMap<String, Stream>,
    outbound: BTreeMap<String, Stream>,
    commitlog_maps: usize,
}

fn parse(trace: &str) -> Trace {
    let mut t = Trace::default();
    // (address, length, CommitLog offset of the address)
    let mut maps: Vec<(u64, u64, u64)> = Vec::new();
    for call in calls(trace) {
        let Some((name, args, ret)) = split_call(&call.text) else {
            continue;
        };
        let Some(ret) = number(ret) else { continue }; // -1 ERRNO, ?
        let (start, end) = (call.start, call.end);
        match name {
            "mmap" if args.len() == 6 => {
                let Some(base) = fd_path(args[4]).as_deref().and_then(segment_base) else {
                    continue;
                };
                let (Some(len), Some(off)) = (number(args[1]), number(args[5])) else {
                    continue;
                };
                maps.push((ret, len, base + off));
                t.commitlog_maps += 1;
            }
            "munmap" => {
                if let Some(addr) = args.first().and_then(|a| number(a)) {
                    maps.retain(|m| m.0 != addr);
                }
            }
            "msync" if args.len() == 3 && args[2].contains("MS_SYNC") => {
                let (Some(addr), Some(len)) = (number(args[0]), number(args[1])) else {
                    continue;
                };
                if let Some((a, _, base)) = maps.iter().find(|(a, l, _)| *a <= addr && addr < a + l)
                {
                    let from = base + (addr - a);
                    t.syncs.push(Sync {
                        from,
                        to: from + len,
                        start,
                        end,
                    });
                }
            }
            "fsync" | "fdatasync" => {
                if let Some(base) = args
                    .first()
                    .and_then(|a| fd_path(a))
                    .as_deref()
                    .and_then(segment_base)
                {
                    t.syncs.push(Sync {
                        from: base,
                        to: base + SEGMENT,
                        start,
                        end,
                    });
                }
            }
            "recvfrom" | "read" | "sendto" | "write" | "writev" if ret > 0 => {
                let Some(path) = args.first().and_then(|a| fd_path(a)) else {
                    continue;
                };
                if !path.starts_with("socket:") {
                    continue;
                }
                let data = if name == "writev" {
                    let mut all = Vec::new();
                    for piece in args[1].split("iov_base=").skip(1) {
                        let (bytes, cut) = hex_literal(piece).expect("writev iov_base literal");
                        assert!(!cut, "strace truncated a socket write: raise -s");
                        all.extend(bytes);
                    }
                    all
                } else {
                    let (bytes, cut) = hex_literal(args[1]).expect("socket data literal");
                    assert!(!cut, "strace truncated socket data: raise -s");
                    bytes
                };
                let n = usize::try_from(ret).expect("a byte count fits usize");
                let data = &data[..n.min(data.len())];
                let side = if name == "recvfrom" || name == "read" {
                    &mut t.inbound
                } else {
                    &mut t.outbound
                };
                side.entry(path).or_default().push(data, start, end);
            }
            _ => {}
        }
    }
    t
}

fn find(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// What the trace says about one acknowledged send.
#[derive(Debug)]
struct Ack {
    body: String,
    phys: u64,
    size: u64,
    /// The call that returned the request's last byte ended here.
    arrived: f64,
    /// The call that carried the response frame's first byte started here.
    acked: f64,
}

impl Ack {
    /// Syncs covering the whole record.
    fn covering<'a>(&self, t: &'a Trace) -> Vec<&'a Sync> {
        t.syncs
            .iter()
            .filter(|s| s.from <= self.phys && s.to >= self.phys + self.size)
            .collect()
    }
    /// Whether a covering sync started after the request arrived and returned before the ack.
    fn durable_before_ack(&self, t: &Trace) -> bool {
        self.covering(t)
            .into_iter()
            .any(|s| s.start >= self.arrived && s.end <= self.acked)
    }
}

/// Locates a send in the trace: its request by `body`, its response by `msg_id`.
fn locate(t: &Trace, store: &Path, body: &str, msg_id: &str) -> Ack {
    let mut arrived = Vec::new();
    for s in t.inbound.values() {
        for pos in find(&s.bytes, body.as_bytes()) {
            arrived.push(s.chunk_at(pos + body.len() - 1).1);
        }
    }
    assert_eq!(
        arrived.len(),
        1,
        "the request carrying {body} appears once in the trace"
    );
    let mut acked = Vec::new();
    for s in t.outbound.values() {
        for pos in find(&s.bytes, msg_id.as_bytes()) {
            // Walk the stream's frames (4-byte big-endian length, then that many bytes).
            let mut off = 0usize;
            while off + 4 <= s.bytes.len() {
                let len = u32::from_be_bytes(s.bytes[off..off + 4].try_into().unwrap()) as usize;
                if pos < off + 4 + len {
                    break;
                }
                off += 4 + len;
            }
            acked.push(s.chunk_at(off).0);
        }
    }
    assert_eq!(
        acked.len(),
        1,
        "the response with msgId {msg_id} appears once in the trace"
    );
    assert_eq!(
        msg_id.len(),
        32,
        "an IPv4 msgId: host, port, physical offset"
    );
    let phys = u64::from_str_radix(&msg_id[16..], 16).expect("msgId offset is hex");
    let base = phys / SEGMENT * SEGMENT;
    let file = std::fs::read(store.join("commitlog").join(format!("{base:020}"))).expect("segment");
    let at = usize::try_from(phys - base).unwrap();
    let size = u64::from(u32::from_be_bytes(file[at..at + 4].try_into().unwrap()));
    assert!(size > body.len() as u64, "a record of {body} at {phys}");
    Ack {
        body: body.to_string(),
        phys,
        size,
        arrived: arrived[0],
        acked: acked[0],
    }
}

// ------------------------------------------------------------------------------------------
// Running the broker under strace

/// `Err(reason)` when strace cannot trace a process here.
fn strace_usable() -> Result<(), String> {
    match Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .output()
    {
        Err(e) => Err(format!(
            "strace cannot be started ({e}); install Debian's strace (scripts/test does)"
        )),
        Ok(o) if !o.status.success() => Err(format!(
            "strace cannot trace here (ptrace refused?): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => Ok(()),
    }
}

/// The pid of a child of `parent` (the broker strace started).
fn child_of(parent: u32) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = after.split_whitespace().nth(1);
        if ppid == Some(&parent.to_string()) {
            return entry.file_name().to_str()?.parse().ok();
        }
    }
    None
}

struct Traced {
    _ns: Namesrv,
    strace: Proc,
    addr: String,
    store: std::path::PathBuf,
    trace: std::path::PathBuf,
}

async fn start_traced(root: &Path, flush: &[(&str, &str)]) -> Traced {
    let ns = Namesrv::start(root, "ns");
    let dir = root.join("broker");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_broker_port();
    let store = dir.join("store");
    let base = format!(
        "brokerClusterName=DurableCluster\nbrokerName=broker-durable\nbrokerId=0\n\
         namesrvAddr={}\nlistenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
         storePathRootDir={}\nmappedFileSizeCommitLog={SEGMENT}\n\
         flotillaCommitLogPageCacheWindow=0\n",
        ns.addr,
        store.display()
    );
    let conf = bp::write_conf(&dir, &base, flush);
    let trace = dir.join("strace.txt");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-ttt", "-T", "-y", "-xx", "-s", "1048576", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=msync,fsync,fdatasync,mmap,munmap,recvfrom,read,sendto,write,writev",
        ])
        .arg(bin_path("flotilla-broker"))
        .arg("-c")
        .arg(&conf)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let strace = Proc::spawn("strace broker", &mut cmd, Some(&dir.join("broker.log")));
    let addr = format!("127.0.0.1:{port}");
    wait_for_port(&addr, WAIT)
        .await
        .expect("traced broker listens");
    Traced {
        _ns: ns,
        strace,
        addr,
        store,
        trace,
    }
}

impl Traced {
    /// Sends `WRITERS × PER_WRITER` messages concurrently; returns (body, msgId) of each ack.
    async fn send_all(&self, tag: &str) -> Vec<(String, String)> {
        let admin = RemotingClient::default();
        bp::create_topic(&admin, &self.addr, TOPIC, 1, 6).await;
        let writers = (0..WRITERS).map(|w| {
            let admin = admin.clone();
            let addr = self.addr.clone();
            let tag = tag.to_string();
            async move {
                let mut acks = Vec::new();
                for i in 0..PER_WRITER {
                    // Unique, and long enough to be found only in its own request.
                    let body = format!("{tag}-w{w}-m{i}-{}", "x".repeat(40 + 97 * i % 700));
                    let r = bp::send_raw(&admin, &addr, TOPIC, &body)
                        .await
                        .expect("the broker answers the send");
                    assert_eq!(r.code, 0, "send {body}: {:?}", r.remark);
                    let id = r.ext("msgId").expect("an acknowledged send has a msgId");
                    acks.push((body, id.to_string()));
                }
                acks
            }
        });
        futures::future::join_all(writers)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Stops the broker with `sig`, waits for strace to finish, and reads the trace.
    async fn stop(mut self, sig: nix::sys::signal::Signal) -> (Trace, std::path::PathBuf, Self) {
        let broker = wait_until("strace's broker child", WAIT, || async {
            child_of(self.strace.pid())
        })
        .await
        .unwrap();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(broker), sig);
        let status = self.strace.wait_exit(WAIT);
        assert!(status.is_some(), "the traced broker exits after {sig:?}");
        let text = std::fs::read_to_string(&self.trace).expect("read the trace");
        let store = self.store.clone();
        (parse(&text), store, self)
    }
}

// ------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_flush_acks_only_after_the_commitlog_is_synced() {
    if let Err(why) = strace_usable() {
        eprintln!("SKIP sync_flush_acks_only_after_the_commitlog_is_synced: {why}");
        return;
    }
    let root = temp_dir("durable-sync");
    // A generous flush timeout: a loaded machine must not turn an ack into FLUSH_DISK_TIMEOUT.
    let b = start_traced(
        root.path(),
        &[
            ("flushDiskType", "SYNC_FLUSH"),
            ("syncFlushTimeout", "60000"),
        ],
    )
    .await;
    let sent = b.send_all("sync").await;
    let (trace, store, _b) = b.stop(nix::sys::signal::Signal::SIGKILL).await;
    assert!(
        trace.commitlog_maps >= 2,
        "the sends filled more than one CommitLog segment"
    );
    let acks: Vec<Ack> = sent
        .iter()
        .map(|(body, id)| locate(&trace, &store, body, id))
        .collect();
    let bad: Vec<String> = acks
        .iter()
        .filter(|a| !a.durable_before_ack(&trace))
        .map(|a| {
            format!(
                "{} at {}+{}: arrived {:.6}, acked {:.6}, covering syncs {:?}",
                a.body.split('-').take(3).collect::<Vec<_>>().join("-"),
                a.phys,
                a.size,
                a.arrived,
                a.acked,
                a.covering(&trace)
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} SYNC_FLUSH acks went out before a sync of their record:\n{}",
        bad.len(),
        acks.len(),
        bad.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_flush_acks_without_waiting_for_a_sync() {
    if let Err(why) = strace_usable() {
        eprintln!("SKIP async_flush_acks_without_waiting_for_a_sync: {why}");
        return;
    }
    let root = temp_dir("durable-async");
    // The flusher's thresholds out of reach: only the shutdown flush syncs the CommitLog.
    let b = start_traced(
        root.path(),
        &[
            ("flushDiskType", "ASYNC_FLUSH"),
            ("flushIntervalCommitLog", "3600000"),
            ("flushCommitLogLeastPages", "1000000"),
            ("flushCommitLogThoroughInterval", "3600000"),
        ],
    )
    .await;
    let sent = b.send_all("async").await;
    let (trace, store, _b) = b.stop(nix::sys::signal::Signal::SIGTERM).await;
    let acks: Vec<Ack> = sent
        .iter()
        .map(|(body, id)| locate(&trace, &store, body, id))
        .collect();
    let last_ack = acks.iter().map(|a| a.acked).fold(0.0, f64::max);
    for a in &acks {
        let before: Vec<&Sync> = a
            .covering(&trace)
            .into_iter()
            .filter(|s| s.start < a.acked)
            .collect();
        assert!(
            before.is_empty(),
            "ASYNC_FLUSH ack of the record at {} waited for a sync: {before:?}",
            a.phys
        );
        // The shutdown flush: the trace reading sees CommitLog syncs, after every ack.
        assert!(
            a.covering(&trace).iter().any(|s| s.start > last_ack),
            "the shutdown flush covers the record at {}+{} (syncs seen: {:?})",
            a.phys,
            a.size,
            trace.syncs
        );
    }
}

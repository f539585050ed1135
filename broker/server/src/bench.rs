//! The load generator behind `flotilla-broker bench` (and later `flotilla bench`).
//!
//! It drives a broker directly over the remoting protocol with `flotilla-remoting`'s client,
//! so it measures the broker rather than a client library: produce one by one (sync), with
//! N concurrent senders, or in batches of M; then (optionally) consume what it produced with
//! pulls. Each phase is bounded by a message count and/or a duration, prints a progress line
//! every second, and reports throughput and p50/p99/p99.9 request latency from an HDR
//! histogram. [`run`] is a library function so the `flotilla` CLI can expose it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use flotilla_remoting::{
    ClientConfig, RemotingClient, RemotingCommand, request_code, response_code,
};
use hdrhistogram::Histogram;

/// Bench failures.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options are inconsistent.
    #[error("invalid bench options: {0}")]
    Options(String),
    /// Setting up (creating the topic) failed.
    #[error("setup failed: {0}")]
    Setup(String),
    /// Every request failed.
    #[error("no request succeeded: {0}")]
    AllFailed(String),
}

impl BenchError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Options(_) => "BENCH_INVALID_OPTIONS",
            Self::Setup(_) => "BENCH_SETUP_FAILED",
            Self::AllFailed(_) => "BENCH_ALL_FAILED",
        }
    }
}

/// How the producer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProduceMode {
    /// One message per request, `concurrency` senders (1 = strictly one by one).
    Single,
    /// `batch` messages per SEND_BATCH_MESSAGE request, `concurrency` senders.
    Batch,
}

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Produce only.
    Produce,
    /// Consume only (what is in the topic).
    Consume,
    /// Produce, then consume what was produced.
    Both,
}

/// Command-line arguments of `bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:10911")]
    pub broker: String,
    /// Topic (created on the broker if missing).
    #[arg(long, default_value = "FlotillaBench")]
    pub topic: String,
    /// Consumer group for the consume phase.
    #[arg(long, default_value = "FlotillaBenchGroup")]
    pub group: String,
    /// Workload.
    #[arg(long, value_enum, default_value = "produce")]
    pub workload: Workload,
    /// Produce mode.
    #[arg(long, value_enum, default_value = "single")]
    pub mode: ProduceMode,
    /// Concurrent senders (or pullers per queue set).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Messages per batch (batch mode).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub body_size: usize,
    /// Messages to produce (or consume); 0 = unbounded (then --duration bounds).
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Seconds to run at most per phase; 0 = unbounded (then --messages bounds).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
    /// Queues of the topic.
    #[arg(long, default_value_t = 8)]
    pub queues: i32,
    /// Connections to the broker.
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct BenchOpts {
    /// Broker address.
    pub broker: String,
    /// Topic.
    pub topic: String,
    /// Consumer group.
    pub group: String,
    /// Workload.
    pub workload: Workload,
    /// Produce mode.
    pub mode: ProduceMode,
    /// Concurrent senders.
    pub concurrency: usize,
    /// Messages per batch.
    pub batch: usize,
    /// Body size.
    pub body_size: usize,
    /// Message bound (0 = none).
    pub messages: u64,
    /// Duration bound (None = none).
    pub duration: Option<Duration>,
    /// Queues.
    pub queues: i32,
    /// Connections.
    pub connections: usize,
    /// Print progress each second.
    pub progress: bool,
}

impl BenchArgs {
    /// Converts to options.
    pub fn into_opts(self) -> BenchOpts {
        BenchOpts {
            broker: self.broker,
            topic: self.topic,
            group: self.group,
            workload: self.workload,
            mode: self.mode,
            concurrency: self.concurrency,
            batch: self.batch,
            body_size: self.body_size,
            messages: self.messages,
            duration: (self.duration > 0).then(|| Duration::from_secs(self.duration)),
            queues: self.queues,
            connections: self.connections,
            progress: !self.quiet,
        }
    }
}

/// Results of one phase.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    /// `produce` or `consume`.
    pub name: String,
    /// Messages done.
    pub messages: u64,
    /// Failed requests.
    pub errors: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Request latency p50 (µs).
    pub p50_us: u64,
    /// p99 (µs).
    pub p99_us: u64,
    /// p99.9 (µs).
    pub p999_us: u64,
    /// Max (µs).
    pub max_us: u64,
    /// Requests measured.
    pub requests: u64,
}

impl PhaseReport {
    /// Messages per second.
    pub fn throughput(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Results of a run.
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    /// Phases in order.
    pub phases: Vec<PhaseReport>,
    /// A one-line description of the options.
    pub description: String,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.description)?;
        for p in &self.phases {
            writeln!(
                f,
                "{:<8} {:>10} msgs in {:>7.2}s = {:>10.0} msg/s | errors {} | request latency p50 {} us, p99 {} us, p99.9 {} us, max {} us ({} requests)",
                p.name,
                p.messages,
                p.elapsed.as_secs_f64(),
                p.throughput(),
                p.errors,
                p.p50_us,
                p.p99_us,
                p.p999_us,
                p.max_us,
                p.requests
            )?;
        }
        Ok(())
    }
}

struct Shared {
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
    last_error: parking_lot::Mutex<Option<String>>,
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits. The bounds are constants that are valid.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

fn batch_body(body: &[u8], n: usize) -> Bytes {
    let props = b"";
    let one = 20 + body.len() + 2 + props.len();
    let mut b = BytesMut::with_capacity(one * n);
    for _ in 0..n {
        b.put_i32(i32::try_from(one).unwrap_or(i32::MAX));
        b.put_i32(0);
        b.put_i32(0);
        b.put_i32(0);
        b.put_i32(i32::try_from(body.len()).unwrap_or(i32::MAX));
        b.put_slice(body);
        b.put_i16(0);
    }
    b.freeze()
}

fn send_cmd(o: &BenchOpts, queue: i32, body: Bytes, batch: bool) -> RemotingCommand {
    let code = if batch {
        request_code::SEND_BATCH_MESSAGE
    } else {
        request_code::SEND_MESSAGE_V2
    };
    RemotingCommand::request(code)
        .with_ext("a", "FlotillaBenchProducer")
        .with_ext("b", &o.topic)
        .with_ext("c", "TBW102")
        .with_ext("d", o.queues)
        .with_ext("e", queue)
        .with_ext("f", 0)
        .with_ext("g", crate::topic_config::now_ms())
        .with_ext("h", 0)
        .with_ext("i", "")
        .with_ext("j", 0)
        .with_ext("k", false)
        .with_ext("m", batch)
        .with_body(body)
}

async fn progress(name: &'static str, shared: Arc<Shared>, start: Instant) {
    let mut last = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let d = shared.done.load(Ordering::Relaxed);
        eprintln!(
            "[{:>5.1}s] {name}: {d} msgs, {} msg/s, errors {}",
            start.elapsed().as_secs_f64(),
            d - last,
            shared.errors.load(Ordering::Relaxed)
        );
        last = d;
    }
}

fn finish(
    name: &str,
    hists: Vec<Histogram<u64>>,
    shared: &Shared,
    elapsed: Duration,
) -> PhaseReport {
    let mut h = new_hist();
    for x in hists {
        let _ = h.add(&x);
    }
    PhaseReport {
        name: name.to_string(),
        messages: shared.done.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        elapsed,
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        requests: h.len(),
    }
}

async fn ensure_topic(client: &RemotingClient, o: &BenchOpts) -> Result<(), BenchError> {
    let cmd = RemotingCommand::request(request_code::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", &o.topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", o.queues)
        .with_ext("writeQueueNums", o.queues)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
        .with_ext("topicSysFlag", 0)
        .with_ext("order", false);
    match client.invoke(&o.broker, cmd, Duration::from_secs(5)).await {
        Ok(r) if r.code == response_code::SUCCESS => Ok(()),
        Ok(r) => Err(BenchError::Setup(format!(
            "UPDATE_AND_CREATE_TOPIC answered {}: {}",
            r.code,
            r.remark.unwrap_or_default()
        ))),
        Err(e) => Err(BenchError::Setup(e.to_string())),
    }
}

async fn max_offsets(client: &RemotingClient, o: &BenchOpts) -> Vec<i64> {
    let mut out = Vec::new();
    for q in 0..o.queues {
        let cmd = RemotingCommand::request(request_code::GET_MAX_OFFSET)
            .with_ext("topic", &o.topic)
            .with_ext("queueId", q);
        let off = match client.invoke(&o.broker, cmd, Duration::from_secs(5)).await {
            Ok(r) => r.ext("offset").and_then(|v| v.parse().ok()).unwrap_or(0),
            Err(_) => 0,
        };
        out.push(off);
    }
    out
}

async fn produce(client: &RemotingClient, o: &BenchOpts) -> PhaseReport {
    let shared = Arc::new(Shared {
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        last_error: parking_lot::Mutex::new(None),
    });
    let per_req = if o.mode == ProduceMode::Batch {
        o.batch.max(1) as u64
    } else {
        1
    };
    let body: Bytes = Bytes::from(vec![b'x'; o.body_size]);
    let payload = if o.mode == ProduceMode::Batch {
        batch_body(&body, o.batch.max(1))
    } else {
        body
    };
    let tickets = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let prog = o
        .progress
        .then(|| tokio::spawn(progress("produce", shared.clone(), start)));
    let mut set = tokio::task::JoinSet::new();
    for w in 0..o.concurrency.max(1) {
        let (client, o, shared, tickets, payload) = (
            client.clone(),
            o.clone(),
            shared.clone(),
            tickets.clone(),
            payload.clone(),
        );
        set.spawn(async move {
            let mut h = new_hist();
            let mut i = w as i64;
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(d) = o.duration
                    && start.elapsed() >= d
                {
                    break;
                }
                let t = tickets.fetch_add(per_req, Ordering::Relaxed);
                if o.messages > 0 && t >= o.messages {
                    break;
                }
                let q = i32::try_from(i.rem_euclid(i64::from(o.queues.max(1)))).unwrap_or(0);
                i += 1;
                let cmd = send_cmd(&o, q, payload.clone(), o.mode == ProduceMode::Batch);
                let t0 = Instant::now();
                match client.invoke(&o.broker, cmd, Duration::from_secs(10)).await {
                    Ok(r) if r.code == response_code::SUCCESS => {
                        let _ = h.record(
                            u64::try_from(t0.elapsed().as_micros())
                                .unwrap_or(u64::MAX)
                                .max(1),
                        );
                        shared.done.fetch_add(per_req, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        *shared.last_error.lock() =
                            Some(format!("code {}: {}", r.code, r.remark.unwrap_or_default()));
                    }
                    Err(e) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        *shared.last_error.lock() = Some(e.to_string());
                    }
                }
            }
            h
        });
    }
    let mut hists = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(h) = r {
            hists.push(h);
        }
    }
    let elapsed = start.elapsed();
    if let Some(p) = prog {
        p.abort();
    }
    finish("produce", hists, &shared, elapsed)
}

async fn consume(
    client: &RemotingClient,
    o: &BenchOpts,
    from: Vec<i64>,
    to: Vec<i64>,
) -> PhaseReport {
    let shared = Arc::new(Shared {
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        last_error: parking_lot::Mutex::new(None),
    });
    let total: i64 = to.iter().zip(&from).map(|(t, f)| (t - f).max(0)).sum();
    let target = if o.messages > 0 {
        o.messages.min(u64::try_from(total).unwrap_or(0))
    } else {
        u64::try_from(total).unwrap_or(0)
    };
    let start = Instant::now();
    let prog = o
        .progress
        .then(|| tokio::spawn(progress("consume", shared.clone(), start)));
    let mut set = tokio::task::JoinSet::new();
    for q in 0..o.queues.max(1) {
        let idx = usize::try_from(q).unwrap_or(0);
        let (mut off, end) = (
            from.get(idx).copied().unwrap_or(0),
            to.get(idx).copied().unwrap_or(0),
        );
        let (client, o, shared) = (client.clone(), o.clone(), shared.clone());
        set.spawn(async move {
            let mut h = new_hist();
            while off < end && shared.done.load(Ordering::Relaxed) < target {
                if let Some(d) = o.duration
                    && start.elapsed() >= d
                {
                    break;
                }
                let cmd = RemotingCommand::request(request_code::PULL_MESSAGE)
                    .with_ext("consumerGroup", &o.group)
                    .with_ext("topic", &o.topic)
                    .with_ext("queueId", q)
                    .with_ext("queueOffset", off)
                    .with_ext("maxMsgNums", 32)
                    .with_ext("sysFlag", 0)
                    .with_ext("commitOffset", 0)
                    .with_ext("suspendTimeoutMillis", 0)
                    .with_ext("subscription", "*")
                    .with_ext("subVersion", 0)
                    .with_ext("expressionType", "TAG");
                let t0 = Instant::now();
                match client.invoke(&o.broker, cmd, Duration::from_secs(10)).await {
                    Ok(r) if r.code == response_code::SUCCESS => {
                        let _ = h.record(
                            u64::try_from(t0.elapsed().as_micros())
                                .unwrap_or(u64::MAX)
                                .max(1),
                        );
                        let mut n = 0u64;
                        let mut p = 0usize;
                        while let Some(sz) = r
                            .body
                            .get(p..p + 4)
                            .and_then(|s| s.try_into().ok())
                            .map(i32::from_be_bytes)
                        {
                            let Ok(sz) = usize::try_from(sz) else { break };
                            if sz == 0 {
                                break;
                            }
                            p += sz;
                            n += 1;
                        }
                        shared.done.fetch_add(n, Ordering::Relaxed);
                        off = r
                            .ext("nextBeginOffset")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(off + i64::try_from(n).unwrap_or(0));
                    }
                    Ok(r)
                        if r.code == response_code::PULL_NOT_FOUND
                            || r.code == response_code::PULL_RETRY_IMMEDIATELY =>
                    {
                        off = r
                            .ext("nextBeginOffset")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(off);
                        tokio::task::yield_now().await;
                    }
                    Ok(r) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        *shared.last_error.lock() = Some(format!(
                            "code {}: {}",
                            r.code,
                            r.remark.clone().unwrap_or_default()
                        ));
                        off = r
                            .ext("nextBeginOffset")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(end);
                    }
                    Err(e) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        *shared.last_error.lock() = Some(e.to_string());
                        break;
                    }
                }
            }
            h
        });
    }
    let mut hists = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(h) = r {
            hists.push(h);
        }
    }
    let elapsed = start.elapsed();
    if let Some(p) = prog {
        p.abort();
    }
    finish("consume", hists, &shared, elapsed)
}

/// Runs the benchmark described by `o`.
pub async fn run(o: BenchOpts) -> Result<BenchReport, BenchError> {
    if o.messages == 0 && o.duration.is_none() {
        return Err(BenchError::Options(
            "bound the run with --messages and/or --duration".into(),
        ));
    }
    if o.queues <= 0 {
        return Err(BenchError::Options("--queues must be positive".into()));
    }
    let client = RemotingClient::new(ClientConfig {
        connections_per_addr: o.connections.max(1),
        ..ClientConfig::default()
    });
    ensure_topic(&client, &o).await?;
    let mut report = BenchReport {
        description: format!(
            "bench {:?} mode={:?} concurrency={} batch={} body={}B queues={} broker={} topic={}",
            o.workload, o.mode, o.concurrency, o.batch, o.body_size, o.queues, o.broker, o.topic
        ),
        phases: Vec::new(),
    };
    let before = max_offsets(&client, &o).await;
    if matches!(o.workload, Workload::Produce | Workload::Both) {
        let p = produce(&client, &o).await;
        if p.messages == 0 && p.errors > 0 {
            return Err(BenchError::AllFailed(format!(
                "{} produce errors",
                p.errors
            )));
        }
        report.phases.push(p);
    }
    if matches!(o.workload, Workload::Consume | Workload::Both) {
        let after = max_offsets(&client, &o).await;
        let from = if o.workload == Workload::Both {
            before
        } else {
            vec![0; after.len()]
        };
        report.phases.push(consume(&client, &o, from, after).await);
    }
    client.shutdown();
    Ok(report)
}

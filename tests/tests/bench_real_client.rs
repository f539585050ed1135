//! The real RocketMQ client (`rocketmq-client-rust`) as a load generator: what an application
//! sees from a broker. Ignored by default (it is a benchmark, not a test); numbers go to
//! `broker/BENCHMARKS.md`.
//!
//! Run it against any nameserver, ours or `../shared/tools/fake-broker.py` (which measures the
//! client's own ceiling), with:
//!
//! ```text
//! FLOTILLA_BENCH_NAMESRV=127.0.0.1:29876 FLOTILLA_BENCH_LABEL=flotilla \
//!   cargo nextest run --release -p flotilla-tests --test bench_real_client \
//!   --run-ignored only --no-capture
//! ```
//!
//! Optional: `FLOTILLA_BENCH_SECS` (seconds per phase, default 5), `FLOTILLA_BENCH_CONSUME=0`
//! (skip the push-consume phase, e.g. against the fake broker, which stores nothing),
//! `FLOTILLA_BENCH_TOPIC` (default `RealClientBench<pid>`, fresh per run so the consume phase
//! reads exactly what this run produced), `FLOTILLA_BENCH_PULL_BATCH` (the push consumer's
//! `pullBatchSize`, messages per pull request; default 32 as in RocketMQ),
//! `FLOTILLA_BENCH_PROFILE=throughput` (the client's own `ConsumerTuningProfile::Throughput`
//! instead of the explicit settings), and the push consumer's `consumeMessageBatchMaxSize`
//! (`FLOTILLA_BENCH_CONSUME_BATCH`, default 32), `consumeThreadMin` (`FLOTILLA_BENCH_CONSUME_THREADS`,
//! default 20, RocketMQ's), `consumeThreadMax` (`FLOTILLA_BENCH_CONSUME_THREADS_MAX`, default
//! 64), `pullThresholdForQueue` (`FLOTILLA_BENCH_PULL_THRESHOLD`, default 1000) and
//! `consumeConcurrentlyMaxSpan` (`FLOTILLA_BENCH_MAX_SPAN`, default 2000).
//! `FLOTILLA_BENCH_CLIENT_LOG` (a tracing filter such as
//! `warn,rocketmq_client_rust::consumer=info`) prints the client's own log to stderr.
//!
//! Phases, all with 1 KiB bodies: sync send one by one (throughput and p50/p99 latency),
//! 16 concurrent sync senders, sync batches of 32 (1 and 4 senders), then a push consumer
//! reading everything produced from the first offset. Each phase is bounded in time and
//! count; concurrency is bounded (the client's unbounded async send overflows its own queue).
// Test helpers may unwrap: a panic is a test failure with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flotilla_tests::rmq::Client;
use futures::StreamExt;
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer,
    MQPushConsumer, MessageListenerConcurrently, SendStatus,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;

/// Most messages one phase sends (a bound in case the time check is slow to trigger).
const MAX_PER_PHASE: u64 = 2_000_000;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn message(topic: &str, body: &[u8]) -> Message {
    Message::builder()
        .topic(topic)
        .tags("b")
        .body_slice(body)
        .build_unchecked()
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Phase {
    name: String,
    messages: u64,
    errors: u64,
    elapsed: Duration,
    /// Per-request latencies in µs.
    latencies: Vec<u64>,
}

impl Phase {
    fn print(&mut self, label: &str) {
        self.latencies.sort_unstable();
        println!(
            "REALCLIENT {label:<10} {:<22} {:>9} msgs in {:>6.2}s = {:>9.0} msg/s | errors {} | p50 {} us p99 {} us",
            self.name,
            self.messages,
            self.elapsed.as_secs_f64(),
            self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.errors,
            quantile(&self.latencies, 0.5),
            quantile(&self.latencies, 0.99),
        );
    }
}

/// Sends for `secs` with `senders` concurrent senders, each request carrying `batch`
/// messages (1 = `send`, more = `send_batch`).
async fn send_phase(
    producer: &DefaultMQProducer,
    topic: &str,
    name: &str,
    senders: usize,
    batch: usize,
    secs: Duration,
) -> Phase {
    let body = vec![b'x'; 1024];
    let done = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + secs;
    let latencies = std::sync::Mutex::new(Vec::new());
    futures::stream::iter(0..senders)
        .for_each_concurrent(senders, |_| async {
            let mut mine = Vec::new();
            while Instant::now() < deadline && done.load(Ordering::Relaxed) < MAX_PER_PHASE {
                let t0 = Instant::now();
                let ok = if batch <= 1 {
                    matches!(
                        producer.send(message(topic, &body)).await,
                        Ok(Some(r)) if r.send_status == SendStatus::SendOk
                    )
                } else {
                    let msgs: Vec<Message> = (0..batch).map(|_| message(topic, &body)).collect();
                    matches!(
                        producer.send_batch(msgs).await,
                        Ok(r) if r.send_status == SendStatus::SendOk
                    )
                };
                if ok {
                    mine.push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
                    done.fetch_add(batch as u64, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies.lock().unwrap().extend(mine);
        })
        .await;
    Phase {
        name: name.to_string(),
        messages: done.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latencies: std::mem::take(&mut *latencies.lock().unwrap()),
    }
}

/// Counts delivered messages and remembers when the first and the latest arrived.
#[derive(Clone)]
struct Counter {
    n: Arc<AtomicU64>,
    first: Arc<std::sync::Mutex<Option<Instant>>>,
    last: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl MessageListenerConcurrently for Counter {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _ctx: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let now = Instant::now();
        self.first.lock().unwrap().get_or_insert(now);
        *self.last.lock().unwrap() = Some(now);
        self.n.fetch_add(msgs.len() as u64, Ordering::Relaxed);
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly with FLOTILLA_BENCH_NAMESRV set (see the module docs)"]
async fn real_client_throughput() {
    let Ok(ns) = std::env::var("FLOTILLA_BENCH_NAMESRV") else {
        eprintln!("FLOTILLA_BENCH_NAMESRV is not set: nothing to measure");
        return;
    };
    if let Ok(filter) = std::env::var("FLOTILLA_BENCH_CLIENT_LOG") {
        // The client's own log, e.g. `warn,rocketmq_client_rust::consumer=info`.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let label = env_or("FLOTILLA_BENCH_LABEL", "broker");
    let secs = Duration::from_secs(env_or("FLOTILLA_BENCH_SECS", "5").parse().unwrap_or(5));
    let consume = env_or("FLOTILLA_BENCH_CONSUME", "1") != "0";
    let topic = env_or(
        "FLOTILLA_BENCH_TOPIC",
        &format!("RealClientBench{}", std::process::id()),
    );

    let client = Client::new("bench");
    let mut producer = client.producer(&ns, "RealClientBenchPG").await;
    // Warm-up: route lookup (auto-create through TBW102), connections.
    let mut warm = send_phase(&producer, &topic, "warm-up", 1, 1, Duration::from_secs(1)).await;
    warm.print(&label);
    let mut produced = warm.messages;
    for (name, senders, batch) in [
        ("sync x1", 1, 1),
        ("sync x16 concurrent", 16, 1),
        ("batch32 x1", 1, 32),
        ("batch32 x4 concurrent", 4, 32),
    ] {
        let mut p = send_phase(&producer, &topic, name, senders, batch, secs).await;
        p.print(&label);
        produced += p.messages;
    }

    if consume {
        let counter = Counter {
            n: Arc::default(),
            first: Arc::default(),
            last: Arc::default(),
        };
        let builder = client.push_consumer(&ns, "RealClientBenchCG");
        let builder = if env_or("FLOTILLA_BENCH_PROFILE", "") == "throughput" {
            builder.tuning_profile(rocketmq_client_rust::ConsumerTuningProfile::Throughput)
        } else {
            let num = |key: &str, default: u32| env_or(key, "").parse().unwrap_or(default);
            let pull_batch = num("FLOTILLA_BENCH_PULL_BATCH", 32);
            let threads = num("FLOTILLA_BENCH_CONSUME_THREADS", 20);
            builder
                .consume_message_batch_max_size(num("FLOTILLA_BENCH_CONSUME_BATCH", 32))
                .pull_batch_size(pull_batch)
                .pull_batch_size_in_bytes((pull_batch * 1200).max(256 << 10))
                .consume_thread_min(threads)
                .consume_thread_max(threads.max(num("FLOTILLA_BENCH_CONSUME_THREADS_MAX", 64)))
                .pull_threshold_for_queue(num("FLOTILLA_BENCH_PULL_THRESHOLD", 1000))
                .consume_concurrently_max_span(num("FLOTILLA_BENCH_MAX_SPAN", 2000))
        };
        let mut consumer = builder.build();
        consumer.subscribe(&topic, "*").await.expect("subscribe");
        consumer.register_message_listener_concurrently(counter.clone());
        let start = Instant::now();
        consumer.start().await.expect("start");
        // Bounded wait: everything produced, or 120 s.
        let limit = Duration::from_secs(120);
        while counter.n.load(Ordering::Relaxed) < produced && start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = counter.n.load(Ordering::Relaxed);
        let first = counter.first.lock().unwrap().unwrap_or(start);
        let last = counter.last.lock().unwrap().unwrap_or(start);
        let mut whole = Phase {
            name: "push consume (total)".into(),
            messages: n,
            errors: produced.saturating_sub(n),
            elapsed: start.elapsed(),
            latencies: Vec::new(),
        };
        whole.print(&label);
        let mut steady = Phase {
            name: "push consume (1st-last)".into(),
            messages: n,
            errors: produced.saturating_sub(n),
            elapsed: last.duration_since(first),
            latencies: Vec::new(),
        };
        steady.print(&label);
        consumer.shutdown().await;
    }
    producer.shutdown().await;
    client.shutdown().await;
}

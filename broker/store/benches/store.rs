//! Message-store benchmarks: append throughput (ASYNC_FLUSH, SYNC_FLUSH with 1 and 16
//! writers) and sequential reads through a ConsumeQueue. Numbers go to `broker/BENCHMARKS.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flotilla_message_store::{FlushDiskType, MessageInner, MessageStore, PutStatus, StoreConfig};

const BODY: usize = 1024;

fn store(flush: FlushDiskType) -> (tempfile::TempDir, MessageStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.flush = flush;
    let s = MessageStore::open(cfg).unwrap();
    (dir, s)
}

/// Every message shares one 1 KiB body (`Bytes` is reference-counted), so the measured loop
/// spends its time in the store rather than in allocating and filling bodies; the store still
/// encodes and writes every byte of every record.
static BODY_BYTES: [u8; BODY] = [b'x'; BODY];

fn message(queue: i32) -> MessageInner {
    MessageInner::new("BenchTopic", queue, bytes::Bytes::from_static(&BODY_BYTES))
        .with_property("TAGS", "TagA")
}

/// Page cache kept behind the flushed offset in the `bounded_page_cache` groups: 256 MiB,
/// about what a broker in a container with a 1 GiB memory limit would keep.
const WINDOW: u64 = 256 << 20;

fn append_async(c: &mut Criterion) {
    append_async_group(c, "append_async_flush", None);
}

/// The same appends with `page_cache_window` set: the store's steady state on a machine
/// whose free memory is cold (see `broker/BENCHMARKS.md` § Machine).
fn append_async_bounded(c: &mut Criterion) {
    append_async_group(c, "append_async_flush_bounded_page_cache", Some(WINDOW));
}

fn append_async_group(c: &mut Criterion, name: &str, window: Option<u64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.flush = FlushDiskType::Async;
    cfg.page_cache_window = window;
    let s = MessageStore::open(cfg).unwrap();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(BODY as u64));
    g.bench_function("1KiB_single", |b| {
        // No unmeasured setup between appends: a pause there would let the store's
        // background warm-up thread catch up for free and overstate steady-state throughput.
        b.to_async(&rt).iter(|| async {
            let r = s.put_message(message(0)).await;
            assert_eq!(r.status, PutStatus::PutOk);
        })
    });
    g.throughput(Throughput::Bytes(32 * BODY as u64));
    g.bench_function("1KiB_batch32", |b| {
        b.to_async(&rt).iter(|| async {
            let batch = (0..32).map(|_| message(1)).collect();
            let r = s.put_messages(batch).await;
            assert_eq!(r.status, PutStatus::PutOk);
        })
    });
    g.finish();
    s.shutdown().unwrap();
}

fn append_sync(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_dir, s) = store(FlushDiskType::Sync);
    let mut g = c.benchmark_group("append_sync_flush");
    for writers in [1usize, 16] {
        g.throughput(Throughput::Elements(writers as u64));
        g.bench_with_input(BenchmarkId::new("writers", writers), &writers, |b, &w| {
            b.to_async(&rt).iter(|| async {
                let mut handles = Vec::with_capacity(w);
                for i in 0..w {
                    let s = s.clone();
                    handles.push(tokio::spawn(async move {
                        s.put_message(message((i % 4) as i32)).await.status
                    }));
                }
                for h in handles {
                    assert_eq!(h.await.unwrap(), PutStatus::PutOk);
                }
            })
        });
    }
    g.finish();
    s.shutdown().unwrap();
}

fn read_cq(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_dir, s) = store(FlushDiskType::Async);
    const N: i64 = 100_000;
    rt.block_on(async {
        for _ in 0..N / 100 {
            let batch = (0..100).map(|_| message(0)).collect();
            assert_eq!(s.put_messages(batch).await.status, PutStatus::PutOk);
        }
    });
    let mut g = c.benchmark_group("consume_queue_read");
    g.throughput(Throughput::Bytes(32 * BODY as u64));
    let mut offset = 0i64;
    g.bench_function("sequential_32x1KiB", |b| {
        b.iter(|| {
            let r = s.get_message("BenchTopic", 0, offset, 32, 1 << 20, &|_| true);
            assert_eq!(r.messages.len(), 32);
            offset = r.next_begin_offset;
            if offset + 32 > N {
                offset = 0;
            }
        })
    });
    g.finish();
    s.shutdown().unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = append_async, append_async_bounded, append_sync, read_cq
}
criterion_main!(benches);

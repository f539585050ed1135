//! A live `RemotingServer` on loopback under hostile connections: proptest-generated garbage,
//! corrupted, truncated and oversized frames written in arbitrary chunks over a few
//! concurrent TCP connections. After every case a well-formed request on a fresh
//! connection still gets its correct answer, no task of the server panicked, and every
//! hostile connection is eventually closed (nothing is leaked). Cases are bounded (128) so
//! the test runs in seconds.
// Test helpers may unwrap: a panic is a test failure with a location.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{echo_server, render, segment};
use flotilla_remoting::codec::DEFAULT_MAX_FRAME;
use flotilla_remoting::{ClientConfig, RemotingClient, RemotingCommand, SerializeType};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(5);

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic in the process (the server's tasks run here, and tokio would
/// otherwise swallow a panicking handler or connection task).
fn count_panics() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        prev(info);
    }));
}

/// Polls `cond` every 10 ms for up to `within`.
async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// Writes `data` in chunks on a fresh connection while draining whatever the server sends,
/// then half-closes and reads until the server closes its side.
async fn hostile_connection(addr: String, data: Vec<u8>, sizes: Vec<usize>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let writer = async move {
        let mut pos = 0;
        let mut i = 0;
        while pos < data.len() {
            let n = sizes[i % sizes.len()].max(1);
            i += 1;
            let end = (pos + n).min(data.len());
            // The server may close first (bad frame): later writes then fail, which is fine.
            if w.write_all(&data[pos..end]).await.is_err() {
                return;
            }
            pos = end;
        }
        let _ = w.shutdown().await;
    };
    let reader = async move {
        let mut sink = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let done = tokio::time::timeout(T, async { tokio::join!(writer, reader) }).await;
    assert!(
        done.is_ok(),
        "server neither answered nor closed within {T:?}"
    );
}

/// A well-formed request in each encoding still gets the right answer.
async fn still_serves(client: &RemotingClient, addr: &str, round: u64) {
    for ser in [SerializeType::Json, SerializeType::RocketMq] {
        let resp = client
            .invoke(
                addr,
                RemotingCommand::request(1)
                    .with_ext("round", round)
                    .with_body(round.to_be_bytes().to_vec())
                    .with_serialize_type(ser),
                T,
            )
            .await
            .unwrap();
        assert_eq!(resp.code, 0);
        assert_eq!(resp.serialize_type, ser);
        assert_eq!(resp.ext("round"), Some(round.to_string().as_str()));
        assert_eq!(&resp.body[..], &round.to_be_bytes()[..]);
    }
    let resp = client
        .invoke(addr, RemotingCommand::request(2).with_ext("n", 21), T)
        .await
        .unwrap();
    assert_eq!(resp.ext_i32("n2").unwrap(), 42);
}

#[test]
fn server_survives_hostile_connections() {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(echo_server());
    let addr = server.local_addr().to_string();
    // The checking client gets a fresh connection each round (it is closed after use), so
    // a hostile stream can never share its connection.
    let client = RemotingClient::new(ClientConfig::default());

    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let round = AtomicUsize::new(0);
    // 1–3 concurrent connections per case, each with its own stream and chunking.
    let strategy = proptest::collection::vec(
        (
            proptest::collection::vec(segment(), 1..6),
            proptest::collection::vec(1usize..1500, 1..8),
        ),
        1..4,
    );
    runner
        .run(&strategy, |conns| {
            let n = round.fetch_add(1, Ordering::Relaxed) as u64;
            rt.block_on(async {
                let tasks: Vec<_> = conns
                    .into_iter()
                    .map(|(segments, sizes)| {
                        let addr = addr.clone();
                        tokio::spawn(hostile_connection(addr, render(&segments), sizes))
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                still_serves(&client, &addr, n).await;
                client.close_addr(&addr);
            });
            prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a server task panicked");
            Ok(())
        })
        .unwrap();

    rt.block_on(async {
        // Every hostile connection (and the checker's) is closed and forgotten.
        let drained = wait_until(T, || server.channels().is_empty()).await;
        assert!(
            drained,
            "{} connections still open",
            server.channels().len()
        );
        server.shutdown().await;
    });
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}

/// Oversized declarations are refused as soon as the length word arrives: the server
/// closes the connection without waiting for (or reserving) the declared bytes, while
/// connections parked on a partial at-cap frame hold only what they sent and do not block
/// others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_close_at_once_and_parked_frames_do_not_block() {
    let server = echo_server().await;
    let addr = server.local_addr().to_string();

    for declared in [
        i32::MAX,
        i32::try_from(DEFAULT_MAX_FRAME).unwrap() + 1,
        -1,
        0,
        3,
    ] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(&declared.to_be_bytes()).await.unwrap();
        // No more bytes are sent: only the length word decides.
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(T, s.read(&mut buf)).await;
        assert!(
            matches!(n, Ok(Ok(0)) | Ok(Err(_))),
            "declared {declared}: server did not close: {n:?}"
        );
    }

    // 64 connections each park a frame declaring exactly the cap and send 1 KiB of it.
    let mut parked = Vec::new();
    for _ in 0..64 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(&u32::try_from(DEFAULT_MAX_FRAME).unwrap().to_be_bytes())
            .await
            .unwrap();
        s.write_all(&[0u8; 1024]).await.unwrap();
        parked.push(s);
    }
    let client = RemotingClient::new(ClientConfig::default());
    still_serves(&client, &addr, 7).await;
    drop(parked);
    client.shutdown();
    let drained = wait_until(T, || server.channels().is_empty()).await;
    assert!(
        drained,
        "{} connections still open",
        server.channels().len()
    );
    server.shutdown().await;
}

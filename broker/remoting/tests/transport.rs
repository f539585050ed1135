//! Client/server behaviour over loopback: request/response, oneway, unknown codes,
//! timeouts, overload, server→client requests, serialize types, reconnects, shutdown.
// Test helpers may unwrap: a panic is a test failure with a location.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_remoting::command::FLAG_RESPONSE;
use flotilla_remoting::{
    ChannelConfig, ClientConfig, ProcessError, RemotingClient, RemotingCommand, RemotingError,
    RemotingServer, SerializeType, ServerConfig, processor_fn, request_code, response_code,
};
use tokio::sync::Notify;

mod common;

use common::echo_server;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn request_response_and_errors() {
    let server = echo_server().await;
    let addr = server.local_addr().to_string();
    let client = RemotingClient::default();

    let resp = client
        .invoke(
            &addr,
            RemotingCommand::request(1)
                .with_ext("k", "v")
                .with_body(&b"payload"[..]),
            T,
        )
        .await
        .unwrap();
    assert_eq!(resp.code, 0);
    assert!(resp.flag & FLAG_RESPONSE != 0);
    assert_eq!(&resp.body[..], b"payload");
    assert_eq!(resp.ext("k"), Some("v"));

    let resp = client
        .invoke(&addr, RemotingCommand::request(2).with_ext("n", 21), T)
        .await
        .unwrap();
    assert_eq!(resp.ext_i32("n2").unwrap(), 42);

    // A missing header field is a SYSTEM_ERROR naming the field.
    let resp = client
        .invoke(&addr, RemotingCommand::request(2), T)
        .await
        .unwrap();
    assert_eq!(resp.code, response_code::SYSTEM_ERROR);
    assert!(resp.remark.unwrap().contains("missing header field n"));

    let resp = client
        .invoke(&addr, RemotingCommand::request(3), T)
        .await
        .unwrap();
    assert_eq!(resp.code, response_code::TOPIC_NOT_EXIST);
    assert_eq!(resp.remark.as_deref(), Some("no topic"));

    let resp = client
        .invoke(&addr, RemotingCommand::request(777), T)
        .await
        .unwrap();
    assert_eq!(resp.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        resp.remark.as_deref(),
        Some(" request type 777 not supported")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn response_uses_request_serialize_type() {
    let server = echo_server().await;
    let addr = server.local_addr();
    // Speak raw frames so the serialize type of the answer is visible.
    use futures::{SinkExt, StreamExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut framed =
        tokio_util::codec::Framed::new(stream, flotilla_remoting::RemotingCodec::new());
    for st in [SerializeType::RocketMq, SerializeType::Json] {
        let req = RemotingCommand::request(1)
            .with_ext("x", "y")
            .with_serialize_type(st);
        framed.send(req.clone()).await.unwrap();
        let resp = framed.next().await.unwrap().unwrap();
        assert_eq!(resp.serialize_type, st);
        assert_eq!(resp.opaque, req.opaque);
        assert!(resp.is_response());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn oneway_gets_no_reply_and_is_processed() {
    let seen = Arc::new(AtomicUsize::new(0));
    let notify = Arc::new(Notify::new());
    let (s2, n2) = (seen.clone(), notify.clone());
    let server = RemotingServer::builder()
        .register(
            request_code::UPDATE_CONSUMER_OFFSET,
            Arc::new(processor_fn(move |_ch, _req| {
                let (s2, n2) = (s2.clone(), n2.clone());
                async move {
                    s2.fetch_add(1, Ordering::SeqCst);
                    n2.notify_one();
                    Ok(Some(RemotingCommand::success()))
                }
            })),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    use futures::{SinkExt, StreamExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut framed =
        tokio_util::codec::Framed::new(stream, flotilla_remoting::RemotingCodec::new());
    framed
        .send(RemotingCommand::request(request_code::UPDATE_CONSUMER_OFFSET).oneway())
        .await
        .unwrap();
    tokio::time::timeout(T, notify.notified()).await.unwrap();
    // Unknown oneway codes get no reply either; then a normal request does.
    framed
        .send(RemotingCommand::request(999).oneway())
        .await
        .unwrap();
    let req = RemotingCommand::request(request_code::UPDATE_CONSUMER_OFFSET);
    framed.send(req.clone()).await.unwrap();
    let resp = tokio::time::timeout(T, framed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        resp.opaque, req.opaque,
        "the first reply answers the two-way request"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 2);

    // Through the client API as well.
    let client = RemotingClient::default();
    client
        .invoke_oneway(
            &addr.to_string(),
            RemotingCommand::request(request_code::UPDATE_CONSUMER_OFFSET),
        )
        .await
        .unwrap();
    tokio::time::timeout(T, notify.notified()).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn timeout_cleans_response_table() {
    let release = Arc::new(Notify::new());
    let r2 = release.clone();
    let server = RemotingServer::builder()
        .register(
            5,
            Arc::new(processor_fn(move |_ch, _req| {
                let r2 = r2.clone();
                async move {
                    r2.notified().await;
                    Ok(Some(RemotingCommand::success()))
                }
            })),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let client = RemotingClient::default();
    let err = client
        .invoke(
            &addr,
            RemotingCommand::request(5),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RemotingError::Timeout { .. }), "{err}");
    assert_eq!(err.code(), "REMOTING_TIMEOUT");
    let ch = client.channel(&addr).await.unwrap();
    assert_eq!(ch.pending_requests(), 0);
    // The late response is dropped; the connection keeps working.
    release.notify_waiters();
    release.notify_one();
    let resp = client
        .invoke(&addr, RemotingCommand::request(777), T)
        .await
        .unwrap();
    assert_eq!(resp.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
    release.notify_one();
    server.shutdown().await;
}

#[tokio::test]
async fn connect_error_and_reconnect() {
    let client = RemotingClient::new(ClientConfig {
        connect_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    });
    // A port that was just free: nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let err = client
        .invoke(&addr, RemotingCommand::request(1), T)
        .await
        .unwrap_err();
    assert!(matches!(err, RemotingError::Connect { .. }), "{err}");
    assert!(matches!(
        client
            .invoke("no-port", RemotingCommand::request(1), T)
            .await
            .unwrap_err(),
        RemotingError::InvalidAddress(_)
    ));

    // Broken connection: server closes it; the next invoke reconnects.
    let server = echo_server().await;
    let addr = server.local_addr().to_string();
    let ch = client.channel(&addr).await.unwrap();
    // The server registers the connection right after accepting it.
    let mut closed_any = false;
    for _ in 0..200 {
        for c in server.channels() {
            c.close();
            closed_any = true;
        }
        if closed_any {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed_any);
    tokio::time::timeout(T, ch.closed()).await.unwrap();
    let resp = client
        .invoke(&addr, RemotingCommand::request(1), T)
        .await
        .unwrap();
    assert_eq!(resp.code, 0);
    assert_ne!(client.channel(&addr).await.unwrap().id(), ch.id());
    server.shutdown().await;
}

#[tokio::test]
async fn server_to_client_request_on_same_connection() {
    // The server, on request 10, asks the client (code 40 oneway, then 307 two-way) back.
    let server = RemotingServer::builder()
        .register(
            10,
            Arc::new(processor_fn(
                |ch: flotilla_remoting::Channel, _req| async move {
                    ch.invoke_oneway(
                        RemotingCommand::request(request_code::NOTIFY_CONSUMER_IDS_CHANGED)
                            .with_ext("consumerGroup", "g"),
                    )
                    .await
                    .map_err(|e| ProcessError::system(e.to_string()))?;
                    let info = ch
                        .invoke(
                            RemotingCommand::request(request_code::GET_CONSUMER_RUNNING_INFO),
                            T,
                        )
                        .await
                        .map_err(|e| ProcessError::system(e.to_string()))?;
                    Ok(Some(RemotingCommand::success().with_body(info.body)))
                },
            )),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let notified = Arc::new(AtomicUsize::new(0));
    let n2 = notified.clone();
    let client = RemotingClient::with_handler(
        ClientConfig::default(),
        Arc::new(processor_fn(move |_ch, req: RemotingCommand| {
            let n2 = n2.clone();
            async move {
                match req.code {
                    request_code::NOTIFY_CONSUMER_IDS_CHANGED => {
                        assert_eq!(req.ext("consumerGroup"), Some("g"));
                        n2.fetch_add(1, Ordering::SeqCst);
                        Ok(None)
                    }
                    _ => Ok(Some(RemotingCommand::success().with_body(&b"running"[..]))),
                }
            }
        })),
    );
    let resp = client
        .invoke(
            &server.local_addr().to_string(),
            RemotingCommand::request(10),
            T,
        )
        .await
        .unwrap();
    assert_eq!(resp.code, 0);
    assert_eq!(&resp.body[..], b"running");
    assert_eq!(notified.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn overload_answers_system_busy() {
    let release = Arc::new(Notify::new());
    let r2 = release.clone();
    let server = RemotingServer::builder()
        .config(ServerConfig {
            channel: ChannelConfig {
                max_inflight_per_connection: 2,
                ..ChannelConfig::default()
            },
            ..ServerConfig::default()
        })
        .register(
            5,
            Arc::new(processor_fn(move |_ch, _req| {
                let r2 = r2.clone();
                async move {
                    r2.notified().await;
                    Ok(Some(RemotingCommand::success()))
                }
            })),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let client = RemotingClient::default();
    let c1 = client.clone();
    let a1 = addr.clone();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let c1 = c1.clone();
            let a1 = a1.clone();
            tokio::spawn(async move { c1.invoke(&a1, RemotingCommand::request(5), T).await })
        })
        .collect();
    // Wait until both are in flight on the server side, then a third is refused.
    let mut busy = None;
    for _ in 0..100 {
        let r = client
            .invoke(
                &addr,
                RemotingCommand::request(5),
                Duration::from_millis(200),
            )
            .await;
        if let Ok(resp) = r
            && resp.code == response_code::SYSTEM_BUSY
        {
            busy = Some(resp);
            break;
        }
    }
    let busy = busy.expect("a SYSTEM_BUSY answer");
    assert!(busy.remark.unwrap().contains("OVERLOAD"));
    for _ in 0..10 {
        release.notify_waiters();
    }
    for h in held {
        let _ = h.await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_complete_concurrently() {
    // Request A blocks until request B (sent later on the same connection) has run.
    let gate = Arc::new(Notify::new());
    let (g1, g2) = (gate.clone(), gate.clone());
    let server = RemotingServer::builder()
        .register(
            6,
            Arc::new(processor_fn(move |_ch, _req| {
                let g1 = g1.clone();
                async move {
                    g1.notified().await;
                    Ok(Some(RemotingCommand::success().with_ext("who", "a")))
                }
            })),
        )
        .register(
            7,
            Arc::new(processor_fn(move |_ch, _req| {
                let g2 = g2.clone();
                async move {
                    g2.notify_one();
                    Ok(Some(RemotingCommand::success().with_ext("who", "b")))
                }
            })),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let client = RemotingClient::default();
    let (c, a) = (client.clone(), addr.clone());
    let first = tokio::spawn(async move { c.invoke(&a, RemotingCommand::request(6), T).await });
    let second = client
        .invoke(&addr, RemotingCommand::request(7), T)
        .await
        .unwrap();
    assert_eq!(second.ext("who"), Some("b"));
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.ext("who"), Some("a"));
    server.shutdown().await;
}

#[tokio::test]
async fn many_concurrent_invokes_match_opaques() {
    let server = echo_server().await;
    let addr = server.local_addr().to_string();
    let client = RemotingClient::default();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (c, a) = (client.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let resp = c
                .invoke(&a, RemotingCommand::request(1).with_ext("i", i), T)
                .await
                .unwrap();
            assert_eq!(resp.ext_i32("i").unwrap(), i);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections() {
    let server = echo_server().await;
    let addr = server.local_addr().to_string();
    let client = RemotingClient::default();
    let ch = client.channel(&addr).await.unwrap();
    server.shutdown().await;
    tokio::time::timeout(T, ch.closed()).await.unwrap();
    let err = client
        .invoke(&addr, RemotingCommand::request(1), T)
        .await
        .unwrap_err();
    assert!(matches!(err, RemotingError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn a_response_over_the_frame_cap_is_answered_with_an_error() {
    let server = RemotingServer::builder()
        .config(ServerConfig {
            channel: ChannelConfig {
                max_frame: 64 * 1024,
                ..ChannelConfig::default()
            },
            ..ServerConfig::default()
        })
        .register(
            6,
            Arc::new(processor_fn(|_ch, req: RemotingCommand| async move {
                let n = req.ext_i32("n").unwrap_or(0);
                let body = vec![7u8; usize::try_from(n).unwrap_or(0)];
                Ok(Some(RemotingCommand::success().with_body(body)))
            })),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let client = RemotingClient::default();
    // Too large for the server's frame cap: an answer, not a timeout.
    let resp = client
        .invoke(&addr, RemotingCommand::request(6).with_ext("n", 200_000), T)
        .await
        .unwrap();
    assert_eq!(resp.code, response_code::SYSTEM_ERROR);
    let remark = resp.remark.unwrap_or_default();
    assert!(remark.contains("65536-byte frame limit"), "{remark}");
    // The connection stays usable.
    let resp = client
        .invoke(&addr, RemotingCommand::request(6).with_ext("n", 1000), T)
        .await
        .unwrap();
    assert_eq!((resp.code, resp.body.len()), (0, 1000));
    server.shutdown().await;
}

#[tokio::test]
async fn in_flight_bytes_per_connection_are_bounded() {
    let entered = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (e2, g2) = (entered.clone(), gate.clone());
    let server = RemotingServer::builder()
        .config(ServerConfig {
            channel: ChannelConfig {
                max_inflight_bytes_per_connection: 10_000,
                ..ChannelConfig::default()
            },
            ..ServerConfig::default()
        })
        .register(
            7,
            Arc::new(processor_fn(move |_ch, _req| {
                let (e2, g2) = (e2.clone(), g2.clone());
                async move {
                    e2.add_permits(1);
                    g2.acquire().await.unwrap().forget();
                    Ok(Some(RemotingCommand::success()))
                }
            })),
        )
        .register(
            8,
            Arc::new(processor_fn(|_ch, _req| async {
                Ok(Some(RemotingCommand::success()))
            })),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let client = RemotingClient::default();
    let big = || RemotingCommand::request(7).with_body(vec![1u8; 8000]);
    let (c1, a1, r1) = (client.clone(), addr.clone(), big());
    let held = tokio::spawn(async move { c1.invoke(&a1, r1, T).await });
    entered.acquire().await.unwrap().forget();
    // 8 kB are in flight: another 8 kB would exceed the 10 kB budget…
    let resp = client.invoke(&addr, big(), T).await.unwrap();
    assert_eq!(resp.code, response_code::SYSTEM_BUSY);
    assert!(resp.remark.unwrap().contains("OVERLOAD"));
    // …a small request still fits.
    let resp = client
        .invoke(
            &addr,
            RemotingCommand::request(8).with_body(vec![1u8; 100]),
            T,
        )
        .await
        .unwrap();
    assert_eq!(resp.code, 0);
    // Once the first is answered, its bytes are free again.
    gate.add_permits(1);
    assert_eq!(held.await.unwrap().unwrap().code, 0);
    gate.add_permits(1);
    assert_eq!(client.invoke(&addr, big(), T).await.unwrap().code, 0);
    // A request larger than the whole budget is admitted alone.
    gate.add_permits(1);
    let huge = RemotingCommand::request(7).with_body(vec![1u8; 50_000]);
    assert_eq!(client.invoke(&addr, huge, T).await.unwrap().code, 0);
    server.shutdown().await;
}

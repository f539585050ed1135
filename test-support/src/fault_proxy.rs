//! A loopback TCP fault proxy a test controls: it forwards one directed link (e.g. DLedger
//! member `i` → member `j`) and can cut it and heal it.
//!
//! Partition tests need a network fault that a test can switch on and off without root or
//! network namespaces. Putting a proxy address in a peer string routes that link through the
//! test: while the proxy is blocked, existing connections are cut and new ones are accepted
//! and closed at once, so the peer sees a dead link (as after a partition with RST), never a
//! hang. Binds `127.0.0.1` only.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Copies `from` to `to` until either side closes or the link is cut. The cut is checked
/// after every read and before its write: bytes a peer sends after [`FaultProxy::block`]
/// returned are never delivered, even when the task has not yet seen the cut
/// (`copy_bidirectional` could forward one more buffer, which let a write made "after the
/// partition" reach a follower).
async fn pump<R, W>(mut from: R, mut to: W, cut: &watch::Receiver<bool>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if *cut.borrow() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// One directed link through the test.
pub struct FaultProxy {
    addr: SocketAddr,
    blocked: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (blocked, _) = watch::channel(false);
        let rx = blocked.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (ir, iw) = inbound.split();
                    let (or, ow) = outbound.split();
                    let cut = rx.clone();
                    tokio::select! {
                        _ = pump(ir, ow, &cut) => {}
                        _ = pump(or, iw, &cut) => {}
                        _ = rx.wait_for(|b| *b) => {}
                    }
                });
            }
        });
        Ok(FaultProxy {
            addr,
            blocked,
            task,
        })
    }

    /// The proxy's own address (put it in the peer string).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the link: drops every open connection and refuses new ones.
    pub fn block(&self) {
        self.blocked.send_replace(true);
    }

    /// Heals the link.
    pub fn unblock(&self) {
        self.blocked.send_replace(false);
    }

    /// Whether the link is cut.
    pub fn is_blocked(&self) -> bool {
        *self.blocked.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

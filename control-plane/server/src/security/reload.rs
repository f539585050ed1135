//! The one poll loop behind every reloadable file (certificates, CA, tokens).
//!
//! A file is taken as changed when the digest of its bytes differs from the one last
//! applied: modification times are too coarse to see an edit made right after a read. A
//! reload that fails leaves the last digest in place, so the next tick tries again (a
//! rotation may be half written) while the previous contents stay in force.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// The digest of `path`'s bytes, `None` while it cannot be read.
pub fn digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

/// Every `every` until `stop`: when `fingerprint()` differs from the one last applied
/// (`loaded` at first), calls `reload()`; a reload that returns `false` is tried again on the
/// next tick.
pub fn spawn<T, F, R>(
    every: Duration,
    stop: CancellationToken,
    loaded: T,
    fingerprint: F,
    reload: R,
) where
    T: PartialEq + Send + 'static,
    F: Fn() -> T + Send + 'static,
    R: Fn() -> bool + Send + 'static,
{
    tokio::spawn(async move {
        let mut seen = loaded;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = fingerprint();
            if now != seen && reload() {
                seen = now;
            }
        }
    });
}

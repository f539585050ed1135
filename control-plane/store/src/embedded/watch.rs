//! Watches on the embedded store: replay from the revision log, then live fan-out.
//!
//! A watch is registered synchronously ([`Engine::subscribe`] takes the writer lock, so the
//! broadcast receiver sees every batch after the revision it returns). A task then replays
//! the log from the start revision up to that revision and forwards live batches. A watcher
//! that falls more than the fan-out capacity behind does not silently lose events: the task
//! re-subscribes and catches up from the log, and only if that history was compacted
//! meanwhile does the stream end with `Compacted`. The task holds the engine weakly, so open
//! watches never keep a dropped store's file open; when the store goes away the stream ends
//! with `Unavailable`.

use std::sync::{Arc, Weak};

use tokio::sync::{broadcast, mpsc};
use tracing::{Instrument, debug, info_span};

use super::engine::{Batch, Engine};
use crate::error::{Result, StoreError};
use crate::types::WatchEvent;

/// Events buffered between the watch task and the consumer.
const CHANNEL_CAPACITY: usize = 256;

/// Starts a watch; the receiver yields events (or one final error).
pub(crate) async fn start(
    engine: &Arc<Engine>,
    prefix: String,
    from_revision: i64,
) -> Result<mpsc::Receiver<Result<WatchEvent>>> {
    // Subscribing takes the writer lock, which a committing writer holds across an fsync.
    let e = engine.clone();
    let (rx_batches, current) = tokio::task::spawn_blocking(move || e.subscribe())
        .await
        .map_err(|e| StoreError::Unavailable(format!("watch registration failed: {e}")))?;
    let start = if from_revision <= 0 {
        current + 1
    } else {
        from_revision
    };
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let weak = Arc::downgrade(engine);
    let span = info_span!("watch", prefix = %prefix, from = start);
    tokio::spawn(
        async move {
            if let Err(e) = run(weak, &prefix, start, rx_batches, current, &tx).await {
                debug!(error = %e, "watch ended with error");
                let _ = tx.send(Err(e)).await;
            }
        }
        .instrument(span),
    );
    Ok(rx)
}

/// Consumer went away: stop quietly.
struct Gone;

fn closed() -> StoreError {
    StoreError::Unavailable("embedded store closed".into())
}

async fn send(tx: &mpsc::Sender<Result<WatchEvent>>, ev: WatchEvent) -> Result<(), Gone> {
    tx.send(Ok(ev)).await.map_err(|_| Gone)
}

async fn run(
    weak: Weak<Engine>,
    prefix: &str,
    start: i64,
    mut batches: broadcast::Receiver<Arc<Batch>>,
    mut upto: i64,
    tx: &mpsc::Sender<Result<WatchEvent>>,
) -> Result<()> {
    let mut next = start;
    loop {
        // Replay history `next..=upto` (also checks the compaction point).
        {
            let Some(engine) = weak.upgrade() else {
                return Err(closed());
            };
            let p = prefix.to_string();
            let events = tokio::task::spawn_blocking(move || engine.read_log(&p, next, upto))
                .await
                .map_err(|e| StoreError::Unavailable(format!("watch replay failed: {e}")))??;
            for ev in events {
                if send(tx, ev).await.is_err() {
                    return Ok(());
                }
            }
            next = next.max(upto + 1);
        }
        // Live.
        loop {
            let batch = tokio::select! {
                _ = tx.closed() => return Ok(()),
                b = batches.recv() => b,
            };
            match batch {
                Ok(batch) => {
                    if batch.revision < next {
                        continue;
                    }
                    for ev in batch.events.iter().filter(|e| e.kv.key.starts_with(prefix)) {
                        if send(tx, ev.clone()).await.is_err() {
                            return Ok(());
                        }
                    }
                    next = batch.revision + 1;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    debug!(
                        skipped = n,
                        next, "watcher lagged; catching up from the log"
                    );
                    let Some(engine) = weak.upgrade() else {
                        return Err(closed());
                    };
                    let (b, current) = tokio::task::spawn_blocking(move || engine.subscribe())
                        .await
                        .map_err(|e| {
                            StoreError::Unavailable(format!("watch re-registration failed: {e}"))
                        })?;
                    batches = b;
                    upto = current;
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return Err(closed()),
            }
        }
    }
}

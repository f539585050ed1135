//! The master's HA service: accepts slave connections and streams the CommitLog to each.
//!
//! Each connection runs two halves: a reader that takes the slave's offset reports (and
//! feeds them to the [`super::HaState`] the SYNC_MASTER gate watches), and a writer that
//! starts where the slave's first report says and then ships every new CommitLog byte as
//! soon as the store's new-message notifier moves, in frames of `haTransferBatchSize`, with
//! a heartbeat when idle. Reads come from the mapped files (`read_raw`), never re-encoded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::HaError;
use super::wire::{Frame, FrameCodec, ReportCodec};
use crate::broker::Broker;

/// Accepts slaves until the broker stops.
pub async fn run(b: Arc<Broker>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = b.stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let b = b.clone();
                let span = tracing::info_span!("ha_connection", slave = %peer);
                tokio::spawn(
                    async move {
                        tracing::info!("slave connected");
                        match serve(&b, stream, peer).await {
                            Ok(()) => tracing::info!("slave connection closed"),
                            Err(e) => {
                                tracing::warn!(error = %e, code = e.code(), "slave connection dropped")
                            }
                        }
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "HA accept failed");
                tokio::select! {
                    () = b.stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// Removes the slave from the shared state however the connection ends.
struct Registered<'a> {
    b: &'a Broker,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.b.ha.remove_slave(self.id);
    }
}

/// Where streaming starts for a first report of `report`.
pub fn start_offset(report: i64, master_max: i64, file_size: i64) -> i64 {
    if report > 0 {
        report
    } else if file_size > 0 {
        master_max - master_max.rem_euclid(file_size)
    } else {
        0
    }
}

async fn serve(b: &Arc<Broker>, stream: TcpStream, peer: SocketAddr) -> Result<(), HaError> {
    let _ = stream.set_nodelay(true);
    let ha_cfg = b.ha.config().clone();
    let (r, w) = stream.into_split();
    let mut reports = FramedRead::new(r, ReportCodec);
    let mut out = FramedWrite::new(w, FrameCodec::new(ha_cfg.transfer_batch_size));
    let reg = Registered {
        b,
        id: b.ha.add_slave(peer),
    };
    // Nothing is sent before the first report.
    let first = tokio::select! {
        () = b.stop.cancelled() => return Ok(()),
        r = tokio::time::timeout(ha_cfg.housekeeping_interval, reports.next()) => match r {
            Err(_) => return Err(HaError::Silent(ha_cfg.housekeeping_interval)),
            Ok(None) => return Err(HaError::Closed),
            Ok(Some(r)) => r?,
        },
    };
    b.ha.slave_ack(reg.id, first);
    let file_size = i64::try_from(b.store.config().commitlog_file_size).unwrap_or(i64::MAX);
    let (min, max) = (
        b.store.commitlog_min_offset(),
        b.store.commitlog_max_offset(),
    );
    let mut next = start_offset(first, max, file_size);
    if next < min || (first == 0 && next > max) {
        return Err(HaError::OffsetUnavailable {
            asked: next,
            min,
            max,
        });
    }
    if next > max {
        tracing::warn!(
            slave_offset = next,
            master_max = max,
            "slave is ahead of the master"
        );
    }
    tracing::info!(from = next, "streaming the CommitLog to the slave");

    // Reader half: reports → shared state; ends the writer when the slave goes away.
    let done = CancellationToken::new();
    let reader = {
        let (b, done, id) = (b.clone(), done.clone(), reg.id);
        let silent = ha_cfg.housekeeping_interval;
        tokio::spawn(async move {
            let r = loop {
                match tokio::time::timeout(silent, reports.next()).await {
                    Err(_) => break Err(HaError::Silent(silent)),
                    Ok(None) => break Err(HaError::Closed),
                    Ok(Some(Err(e))) => break Err(e.into()),
                    Ok(Some(Ok(off))) => b.ha.slave_ack(id, off),
                }
            };
            done.cancel();
            r
        })
    };
    let _stop_reader = AbortOnDrop(reader.abort_handle());

    let mut notifier = b.store.new_message_notifier();
    let mut heartbeat = tokio::time::interval(ha_cfg.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        notifier.borrow_and_update();
        // Ship everything available, then flush once.
        let mut sent = false;
        while next < b.store.commitlog_max_offset() {
            if done.is_cancelled() || b.stop.is_cancelled() {
                break;
            }
            let Some(data) = b.store.read_raw(next, ha_cfg.transfer_batch_size) else {
                return Err(HaError::OffsetUnavailable {
                    asked: next,
                    min: b.store.commitlog_min_offset(),
                    max: b.store.commitlog_max_offset(),
                });
            };
            let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
            out.feed(Frame { offset: next, data }).await?;
            next += len;
            sent = true;
        }
        if sent {
            out.flush().await?;
            heartbeat.reset();
        }
        tokio::select! {
            () = b.stop.cancelled() => return Ok(()),
            () = done.cancelled() => break,
            r = notifier.changed() => {
                if r.is_err() {
                    return Ok(());
                }
            }
            _ = heartbeat.tick() => {
                out.send(Frame::heartbeat(next)).await?;
            }
        }
    }
    match reader.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(HaError::Closed)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(HaError::Task(e.to_string())),
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_offsets() {
        assert_eq!(start_offset(500, 10_000, 4096), 500);
        assert_eq!(start_offset(0, 10_000, 4096), 8192);
        assert_eq!(start_offset(0, 100, 4096), 0);
        assert_eq!(start_offset(0, 8192, 4096), 8192);
        assert_eq!(start_offset(0, 0, 4096), 0);
    }
}

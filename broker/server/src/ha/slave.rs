//! The slave's HA client: follows the master's CommitLog byte for byte.
//!
//! One session at a time: connect to the master's HA address, report the local CommitLog
//! end, then apply every frame whose offset is exactly that end (`append_raw` writes the
//! bytes verbatim and dispatches complete records to the slave's ConsumeQueues and index),
//! reporting after each applied frame and every `haSendHeartbeatInterval`. Any problem —
//! refused connection, silence, an offset that does not match — ends the session; the loop
//! reconnects after a short pause, and the fresh report re-positions the master. A slave
//! whose log is still empty takes the master's first frame offset as its own start (the
//! master ships only its last file to a slave reporting 0).

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::Instrument;

use super::HaError;
use super::wire::{Frame, FrameCodec, ReportCodec};
use crate::broker::Broker;

const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Follows the master until the broker stops.
pub async fn run(b: Arc<Broker>) {
    let mut last_error: Option<&'static str> = None;
    loop {
        if b.stop.is_cancelled() {
            return;
        }
        let Some(addr) = b.ha.master_ha_addr() else {
            // Wait for the nameserver to tell us where the master is.
            tokio::select! {
                () = b.stop.cancelled() => return,
                () = b.ha.master_changed.notified() => {}
                () = tokio::time::sleep(RECONNECT_PAUSE) => {}
            }
            continue;
        };
        let span = tracing::info_span!("ha_client", master = %addr);
        let r = session(&b, &addr).instrument(span).await;
        b.ha.set_connected(None);
        match r {
            Ok(()) => last_error = None,
            Err(e) => {
                // Log a repeated failure (master down) once, then quietly keep retrying.
                if last_error == Some(e.code()) {
                    tracing::debug!(master = %addr, error = %e, code = e.code(), "HA session failed");
                } else {
                    tracing::warn!(master = %addr, error = %e, code = e.code(), "HA session failed; reconnecting");
                }
                last_error = Some(e.code());
            }
        }
        tokio::select! {
            () = b.stop.cancelled() => return,
            () = tokio::time::sleep(RECONNECT_PAUSE) => {}
        }
    }
}

async fn session(b: &Arc<Broker>, addr: &str) -> Result<(), HaError> {
    let cfg = b.ha.config().clone();
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(HaError::Connect {
                addr: addr.to_string(),
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(HaError::Connect {
                addr: addr.to_string(),
                reason: format!("timed out after {CONNECT_TIMEOUT:?}"),
            });
        }
    };
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut frames = FramedRead::new(r, FrameCodec::default());
    let mut reports = FramedWrite::new(w, ReportCodec);
    let start = b.store.commitlog_max_offset();
    reports.send(start).await?;
    b.ha.set_connected(Some(addr.to_string()));
    tracing::info!(
        offset = start,
        "connected to the master; reported our offset"
    );
    let mut last_report = tokio::time::Instant::now();
    let mut last_heard = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = b.stop.cancelled() => return Ok(()),
            f = frames.next() => {
                let f = match f {
                    None => return Err(HaError::Closed),
                    Some(f) => f?,
                };
                last_heard = tokio::time::Instant::now();
                let end = f.offset + i64::try_from(f.data.len()).unwrap_or(i64::MAX);
                b.ha.saw_master_offset(end);
                if !f.is_heartbeat() {
                    apply(b, f).await?;
                    b.long_polling.wake_all();
                    reports.send(b.store.commitlog_max_offset()).await?;
                    last_report = tokio::time::Instant::now();
                }
            }
            _ = tick.tick() => {
                if last_heard.elapsed() > cfg.housekeeping_interval {
                    return Err(HaError::Silent(cfg.housekeeping_interval));
                }
                if last_report.elapsed() >= cfg.heartbeat_interval {
                    reports.send(b.store.commitlog_max_offset()).await?;
                    last_report = tokio::time::Instant::now();
                }
            }
        }
    }
}

/// Appends one frame at the local CommitLog end (blocking I/O off the runtime).
async fn apply(b: &Arc<Broker>, f: Frame) -> Result<(), HaError> {
    let store = b.store.clone();
    tokio::task::spawn_blocking(move || {
        let ours = store.commitlog_max_offset();
        if f.offset != ours {
            let file_size = i64::try_from(store.config().commitlog_file_size).unwrap_or(i64::MAX);
            if ours == 0 && f.offset % file_size == 0 {
                tracing::info!(
                    offset = f.offset,
                    "empty slave log starts at the master's offset"
                );
                store.start_empty_log_at(f.offset)?;
            } else {
                return Err(HaError::OffsetMismatch {
                    master: f.offset,
                    ours,
                });
            }
        }
        store.append_raw(f.offset, &f.data)?;
        Ok(())
    })
    .await
    .map_err(|e| HaError::Task(e.to_string()))?
}

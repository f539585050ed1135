//! Start-up recovery: find the valid end of the CommitLog and bring ConsumeQueues and the
//! index in line with it.
//!
//! - **Clean start** (no `abort` file, checkpoint present): the checkpoint's flushed offset is
//!   the end of the log; only the header at that position is checked (so records written
//!   after it, if any, are validated and kept). Start-up cost is independent of log size.
//! - **After a crash** (`abort` present or no checkpoint): records are validated from the
//!   start of the file holding the oldest safe point (`min(commitlog_flushed, cq_safe,
//!   index_safe)`, or the first file without a checkpoint) — magic, size consistency,
//!   PHYSICALOFFSET == position, body CRC. The log is cut at the first record that fails
//!   (torn write, corruption): its file's tail is zeroed and later files are deleted. A record
//!   acknowledged under SYNC_FLUSH was `msync`ed before the acknowledgement, so it is always
//!   before the cut unless the disk itself lost acknowledged data.
//! - ConsumeQueue entries pointing at or past the cut are removed; index entries at or past
//!   the index's safe point are dropped; then every record from
//!   `min(cq_safe, index_safe)` to the end is re-dispatched (dispatch is idempotent).

use std::path::Path;

use crate::checkpoint::{self, Checkpoint};
use crate::commitlog::{CommitLog, ScanEnd};
use crate::config::StoreConfig;
use crate::consume_queue::ConsumeQueue;
use crate::error::StoreError;
use crate::index::Index;
use crate::store::{Inner, valid_topic};

/// What recovery hands to the store.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) commitlog: CommitLog,
    pub(crate) cqs: Vec<ConsumeQueue>,
    pub(crate) index: Index,
    pub(crate) redispatch_from: i64,
    pub(crate) confirm_offset: i64,
}

pub(crate) fn recover(cfg: &StoreConfig) -> Result<Recovered, StoreError> {
    let root = &cfg.root;
    let cp = Checkpoint::load(root);
    let crashed = checkpoint::abort_exists(root) || cp.is_none();
    let _span = tracing::info_span!("recover", crashed).entered();
    let cl = CommitLog::open(&root.join("commitlog"), cfg.commitlog_file_size as usize)?;
    let file_size = cfg.commitlog_file_size as i64;
    let (first, last) = (cl.files().first(), cl.files().last());
    let (end, flushed) = match (first, last) {
        (Some(first), Some(last)) => {
            let clamp = |o: i64| o.clamp(first.start(), last.end());
            let start = match cp {
                Some(c) if !crashed => clamp(c.commitlog_flushed),
                Some(c) => {
                    let safe = c.commitlog_flushed.min(c.cq_safe).min(c.index_safe);
                    clamp(safe - safe.rem_euclid(file_size)).min(last.start())
                }
                None => first.start(),
            };
            let (end, why) = cl.scan(start, i64::MAX, cfg.check_crc_on_recover, |_, _| Ok(()))?;
            let beyond = cl.files().align(end) + file_size < last.end();
            if why != ScanEnd::Clean || beyond {
                tracing::warn!(
                    end,
                    reason = ?why,
                    "CommitLog ends with a torn or corrupt record; truncating"
                );
                cl.truncate(end)?;
            }
            (end, start.min(end))
        }
        _ => {
            let end = cp.map_or(0, |c| c.commitlog_flushed.max(0));
            (end, end)
        }
    };
    cl.set_positions(end, flushed);
    let cl_min = cl.min_offset();
    tracing::info!(min = cl_min, end, "CommitLog recovered");

    let mut cqs = Vec::new();
    load_cqs(&root.join("consumequeue"), cfg, &mut cqs)?;
    for cq in &cqs {
        cq.truncate_phys(end)?;
    }
    let index_safe = cp.map_or(cl_min, |c| c.index_safe).min(end);
    let index = Index::load(&root.join("index"), cfg.index_entries_per_file, index_safe)?;
    let redispatch_from = cp
        .map_or(cl_min, |c| c.cq_safe.min(c.index_safe))
        .min(index_safe)
        .clamp(cl_min, end);
    Ok(Recovered {
        commitlog: cl,
        cqs,
        index,
        redispatch_from,
        confirm_offset: cp.map_or(0, |c| c.confirm_offset),
    })
}

fn load_cqs(dir: &Path, cfg: &StoreConfig, out: &mut Vec<ConsumeQueue>) -> Result<(), StoreError> {
    let topics = match std::fs::read_dir(dir) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("list consumequeue")(e)),
    };
    for t in topics {
        let t = t.map_err(StoreError::io("list consumequeue"))?;
        let Some(topic) = t.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !valid_topic(&topic) || !t.path().is_dir() {
            continue;
        }
        for q in std::fs::read_dir(t.path()).map_err(StoreError::io("list consumequeue topic"))? {
            let q = q.map_err(StoreError::io("list consumequeue topic"))?;
            let Some(queue_id) = q.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if queue_id < 0 || !q.path().is_dir() {
                continue;
            }
            out.push(ConsumeQueue::load(
                &q.path(),
                &topic,
                queue_id,
                cfg.cq_entries_per_file,
            )?);
        }
    }
    Ok(())
}

/// Re-dispatches records in `[from, end)` to ConsumeQueues and the index.
pub(crate) fn redispatch(inner: &Inner, from: i64) -> Result<(), StoreError> {
    let end = inner.commitlog.max_offset();
    if from >= end {
        return Ok(());
    }
    let _span = tracing::info_span!("redispatch", from, end).entered();
    let mut n = 0u64;
    let (stop, why) = inner.commitlog.scan(from, end, false, |p, rec| {
        n += 1;
        inner.dispatch(p, rec)
    })?;
    if stop != end {
        tracing::warn!(stop, end, reason = ?why, "re-dispatch stopped before the CommitLog end");
    }
    tracing::info!(records = n, "re-dispatched records");
    Ok(())
}

//! Retention: delete old CommitLog files and trim ConsumeQueues and the index to match;
//! refuse writes when the disk is nearly full.
//!
//! RocketMQ's rules (`CleanCommitLogService`), with every threshold configurable and the clock
//! and disk probe injected:
//!
//! - A file is *expired* when its newest record is older than `file_reserved_hours`. The
//!   newest record's time is bounded by the store time of the next file's first record, so no
//!   file needs scanning; the last (active) file is never deleted.
//! - Expired files are deleted, oldest first, when the hour is listed in `delete_when`, when
//!   disk use is above `disk_max_used_ratio`, or on a manual trigger.
//! - Above `disk_force_clean_ratio`, the oldest files are deleted even if not expired, until
//!   use drops below that ratio (at most `delete_files_batch_max` files per pass).
//! - At or above `disk_full_ratio` the store refuses appends with `DiskFull` until a pass
//!   sees use below it again.

use std::sync::atomic::Ordering;

use crate::store::Inner;

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetentionReport {
    /// Disk use seen at the start of the pass.
    pub disk_used_ratio: f64,
    /// Whether writes are refused after the pass.
    pub disk_full: bool,
    /// Whether the pass was allowed to delete (hour, pressure or manual trigger).
    pub deletion_allowed: bool,
    /// CommitLog files deleted.
    pub commitlog_files_deleted: usize,
    /// ConsumeQueue files deleted.
    pub cq_files_deleted: usize,
    /// Index files deleted.
    pub index_files_deleted: usize,
    /// CommitLog minimum offset after the pass.
    pub min_offset: i64,
}

/// Probes the disk and updates the disk-full flag; returns the used ratio.
pub(crate) fn update_disk_state(inner: &Inner) -> f64 {
    let ratio = match inner.cfg.disk_probe.used_ratio(&inner.cfg.root) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "disk usage probe failed");
            0.0
        }
    };
    let full = ratio >= inner.cfg.disk_full_ratio;
    let was = inner.disk_full.swap(full, Ordering::AcqRel);
    if full && !was {
        tracing::error!(ratio, "disk full: refusing writes");
    } else if !full && was {
        tracing::info!(
            ratio,
            "disk usage back below the full ratio: accepting writes"
        );
    }
    inner
        .disk_ratio_bits
        .store(ratio.to_bits(), Ordering::Release);
    ratio
}

pub(crate) fn run_once(inner: &Inner, manual: bool) -> RetentionReport {
    let _span = tracing::info_span!("retention", manual).entered();
    let cfg = &inner.cfg;
    let mut ratio = update_disk_state(inner);
    let mut report = RetentionReport {
        disk_used_ratio: ratio,
        ..Default::default()
    };
    let time_up = cfg.delete_hours().contains(&cfg.clock.hour_of_day());
    let pressure = ratio > cfg.disk_max_used_ratio;
    let mut force = ratio > cfg.disk_force_clean_ratio;
    report.deletion_allowed = time_up || pressure || force || manual;
    if report.deletion_allowed {
        let now = cfg.clock.now_ms();
        let reserved_ms = i64::from(cfg.file_reserved_hours) * 3_600_000;
        let cl = &inner.commitlog;
        while report.commitlog_files_deleted < cfg.delete_files_batch_max {
            let segs = cl.files().segments();
            let (Some(first), Some(next)) = (segs.first(), segs.get(1)) else {
                break;
            };
            let newest = cl.store_timestamp(next.start());
            let expired = newest.is_some_and(|t| t.saturating_add(reserved_ms) <= now);
            if !(expired || force) {
                break;
            }
            let start = first.start();
            match cl.files().delete_first_if(|s| s.start() == start) {
                Ok(true) => {
                    report.commitlog_files_deleted += 1;
                    tracing::info!(start, expired, forced = force, "deleted CommitLog file");
                }
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(error = %e, code = e.code(), "deleting CommitLog file failed");
                    break;
                }
            }
            if force && !expired {
                ratio = cfg.disk_probe.used_ratio(&cfg.root).unwrap_or(0.0);
                force = ratio > cfg.disk_force_clean_ratio;
            }
        }
        let cl_min = cl.min_offset();
        for cq in inner.all_cqs() {
            match cq.trim_to(cl_min) {
                Ok(n) => report.cq_files_deleted += n,
                Err(e) => tracing::error!(error = %e, "trimming consume queue failed"),
            }
        }
        match inner.index.trim_to(cl_min) {
            Ok(n) => report.index_files_deleted += n,
            Err(e) => tracing::error!(error = %e, "trimming index failed"),
        }
        if report.commitlog_files_deleted > 0 {
            update_disk_state(inner);
        }
    }
    report.min_offset = inner.commitlog.min_offset();
    report.disk_full = inner.disk_full.load(Ordering::Acquire);
    report
}

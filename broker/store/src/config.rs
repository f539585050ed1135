//! Store configuration and the two injected environment probes (clock, disk usage).
//!
//! Names follow RocketMQ's `MessageStoreConfig` where one exists (`mappedFileSizeCommitLog`,
//! `flushDiskType`, `syncFlushTimeout`, `fileReservedTime`, `deleteWhen`,
//! `diskMaxUsedSpaceRatio`, …). The clock and the disk-usage probe are traits so that tests can
//! drive retention deterministically (a fake hour, a fake disk that is 86 % full) while the
//! store itself still works on real files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushDiskType {
    /// Acknowledge once the bytes are in the page cache; a background thread flushes
    /// periodically (RocketMQ `ASYNC_FLUSH`, the default).
    #[default]
    Async,
    /// Acknowledge only after the bytes are durable (`msync`); concurrent appends share one
    /// flush (group commit). RocketMQ `SYNC_FLUSH`.
    Sync,
}

/// Source of time for store timestamps and retention.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Hour of day (0–23) used to match `delete_when`.
    fn hour_of_day(&self) -> u32;
}

/// The real clock. Hours are UTC shifted by `utc_offset_minutes` (brokers usually run in UTC
/// containers; set the offset to match RocketMQ's local-time `deleteWhen` elsewhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock {
    /// Minutes added to UTC before taking the hour.
    pub utc_offset_minutes: i32,
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
    fn hour_of_day(&self) -> u32 {
        let minutes = self.now_ms() / 60_000 + i64::from(self.utc_offset_minutes);
        (minutes.rem_euclid(24 * 60) / 60) as u32
    }
}

/// Reports how full the filesystem holding the store is.
pub trait DiskUsageProbe: Send + Sync + std::fmt::Debug {
    /// Used fraction (0.0–1.0) of the filesystem containing `path`.
    fn used_ratio(&self, path: &Path) -> std::io::Result<f64>;
}

/// The real probe: `statvfs` through `fs2`, `(total - free) / total`, the figure `df` prints
/// as used over size. This is Java's `UtilAll.getDiskPartitionSpaceUsedPercent`
/// (`File.getFreeSpace` is `f_bfree`). Blocks reserved for root count as free, as they do in
/// Java: a filesystem whose reservation is large (seen: 160 GiB of 250 GiB) would otherwise
/// look 90 % full while three quarters of it is empty, and the broker refuse every write.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsDiskUsage;

impl DiskUsageProbe for FsDiskUsage {
    fn used_ratio(&self, path: &Path) -> std::io::Result<f64> {
        let total = fs2::total_space(path)?;
        let free = fs2::free_space(path)?;
        if total == 0 {
            return Ok(0.0);
        }
        Ok((total.saturating_sub(free)) as f64 / total as f64)
    }
}

/// Smallest accepted [`StoreConfig::page_cache_window`]: below this, consumers only a moment
/// behind the producers would already read from disk.
pub const MIN_PAGE_CACHE_WINDOW: u64 = 16 << 20;

/// Configuration of a [`crate::MessageStore`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Store root (`storePathRootDir`).
    pub root: PathBuf,
    /// Size of each CommitLog file (`mappedFileSizeCommitLog`, 1 GiB).
    pub commitlog_file_size: u64,
    /// Entries per ConsumeQueue file (300,000).
    pub cq_entries_per_file: u32,
    /// Index entries per index file before rolling (1,000,000).
    pub index_entries_per_file: u32,
    /// Flush mode.
    pub flush: FlushDiskType,
    /// How long a SYNC_FLUSH append waits before answering FLUSH_DISK_TIMEOUT (5 s).
    pub sync_flush_timeout: Duration,
    /// ASYNC_FLUSH period (500 ms).
    pub flush_interval: Duration,
    /// ASYNC_FLUSH flushes only when at least this many bytes are dirty (4 pages) …
    pub flush_least_bytes: u64,
    /// … unless this long has passed since the last full flush (10 s).
    pub flush_thorough_interval: Duration,
    /// Dirty bytes beyond which an append wakes the flusher at once (bounds dirty data).
    pub max_dirty_bytes: u64,
    /// Page cache the CommitLog may keep behind its flushed offset (`None`: no bound, the
    /// kernel decides, as in RocketMQ). With a bound, the flusher hands older pages back and
    /// new appends reuse that memory; see [`crate::commitlog::CommitLog::release_behind`].
    pub page_cache_window: Option<u64>,
    /// How often ConsumeQueues and the index are flushed and the checkpoint written (1 s).
    pub checkpoint_interval: Duration,
    /// How often retention runs in the background (10 s).
    pub retention_interval: Duration,
    /// Largest encoded record accepted (4 MiB).
    pub max_message_size: usize,
    /// Hours a CommitLog file is kept (`fileReservedTime`, 72).
    pub file_reserved_hours: u32,
    /// Hours of day when expired files are deleted (`deleteWhen`, "04", `;`-separated).
    pub delete_when: String,
    /// Above this disk usage, expired files are deleted at any hour (0.75).
    pub disk_max_used_ratio: f64,
    /// Above this disk usage, the oldest files are deleted even if not expired (0.85).
    pub disk_force_clean_ratio: f64,
    /// At or above this disk usage, writes are refused with DISK_FULL (0.90).
    pub disk_full_ratio: f64,
    /// Most CommitLog files deleted in one retention pass (`deleteFileBatchMax`, 10).
    pub delete_files_batch_max: usize,
    /// This broker's address, written into STOREHOST and message ids.
    pub store_host: SocketAddr,
    /// Check body CRCs when recovering after a crash (`checkCRCOnRecover`, true).
    pub check_crc_on_recover: bool,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Disk-usage source.
    pub disk_probe: Arc<dyn DiskUsageProbe>,
    /// Start the background flush/checkpoint/retention threads (tests may drive them by hand).
    pub background_services: bool,
}

impl StoreConfig {
    /// RocketMQ's defaults, rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            root: root.into(),
            commitlog_file_size: 1 << 30,
            cq_entries_per_file: 300_000,
            index_entries_per_file: 1_000_000,
            flush: FlushDiskType::Async,
            sync_flush_timeout: Duration::from_secs(5),
            flush_interval: Duration::from_millis(500),
            flush_least_bytes: 4 * 4096,
            flush_thorough_interval: Duration::from_secs(10),
            max_dirty_bytes: 64 << 20,
            page_cache_window: None,
            checkpoint_interval: Duration::from_secs(1),
            retention_interval: Duration::from_secs(10),
            max_message_size: 4 << 20,
            file_reserved_hours: 72,
            delete_when: "04".to_string(),
            disk_max_used_ratio: 0.75,
            disk_force_clean_ratio: 0.85,
            disk_full_ratio: 0.90,
            delete_files_batch_max: 10,
            store_host: SocketAddr::from(([127, 0, 0, 1], 10911)),
            check_crc_on_recover: true,
            clock: Arc::new(SystemClock::default()),
            disk_probe: Arc::new(FsDiskUsage),
            background_services: true,
        }
    }

    /// Checks the values that would otherwise make the store misbehave.
    pub fn validate(&self) -> Result<(), crate::StoreError> {
        let bad = |m: &str| Err(crate::StoreError::InvalidConfig(m.to_string()));
        if self.commitlog_file_size < 4096 || self.commitlog_file_size > i32::MAX as u64 {
            return bad("commitlog_file_size must be between 4 KiB and 2 GiB");
        }
        if self.cq_entries_per_file == 0 {
            return bad("cq_entries_per_file must be positive");
        }
        if self.index_entries_per_file == 0 {
            return bad("index_entries_per_file must be positive");
        }
        if self.max_message_size == 0 {
            return bad("max_message_size must be positive");
        }
        if self
            .page_cache_window
            .is_some_and(|w| w < MIN_PAGE_CACHE_WINDOW)
        {
            return bad("page_cache_window must be at least 16 MiB");
        }
        if !(self.disk_max_used_ratio <= self.disk_force_clean_ratio
            && self.disk_force_clean_ratio <= self.disk_full_ratio)
        {
            return bad("disk ratios must satisfy max_used <= force_clean <= full");
        }
        Ok(())
    }

    /// Hours listed in `delete_when`.
    pub fn delete_hours(&self) -> Vec<u32> {
        self.delete_when
            .split(';')
            .filter_map(|h| h.trim().parse::<u32>().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe reports what `df` calls used over size (blocks reserved for root are free,
    /// as in Java); a probe built on the space available to unprivileged users reads higher
    /// on any filesystem with a reservation and fails this.
    #[test]
    fn fs_probe_matches_df_used_over_size() {
        let dir = std::env::temp_dir();
        let out = match std::process::Command::new("df")
            .args(["-B1", "--output=size,used"])
            .arg(&dir)
            .output()
        {
            Ok(o) if o.status.success() => o,
            _ => return, // no GNU df here: nothing to compare with
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let nums: Vec<f64> = text
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let [size, used] = nums[..] else {
            panic!("unexpected df output: {text}")
        };
        let ratio = FsDiskUsage.used_ratio(&dir).expect("statvfs");
        // Tests running beside this one write a little between the two readings.
        assert!(
            (ratio - used / size).abs() < 0.01,
            "probe {ratio:.4}, df {:.4}",
            used / size
        );
    }
}

//! How much page cache the CommitLog may keep: `flotillaCommitLogPageCacheWindow`.
//!
//! RocketMQ leaves the CommitLog's page cache to the kernel. That has two costs that an
//! operator sees:
//!
//! - In a container with a memory limit, page cache counts against the limit. Once it is
//!   reached, the kernel reclaims in the context of whoever allocates the next page. That is
//!   often the broker's writer, under its put lock, so send latency spikes.
//! - On a fresh VM whose free memory the host has not backed yet, every new CommitLog page
//!   costs a host fault. That halves append throughput until the page cache has cycled
//!   through RAM (measured in `broker/BENCHMARKS.md`).
//!
//! With a window, the store's flusher hands back the pages of flushed bytes more than the
//! window behind, off the put path, and new appends reuse that memory. Readers that far behind
//! read from disk, which is where RocketMQ already sends them: beyond
//! `accessMessageInMemoryMaxRatio` it treats messages as not in memory.
//!
//! The key takes bytes. `0` means no bound, which is RocketMQ's behaviour. Unset means
//! automatic: `accessMessageInMemoryMaxRatio` (40 %) of the broker's memory, which is the
//! smaller of physical memory and its cgroup's limit (a Kubernetes pod's
//! `resources.limits.memory`). The page cache kept is then what RocketMQ itself calls "in
//! memory" when it decides whether a pull should go to a slave.

use std::path::Path;

use flotilla_message_store::config::MIN_PAGE_CACHE_WINDOW;

/// What the key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCacheWindow {
    /// Unset: a share of the broker's memory (see [`broker_memory`]).
    Auto,
    /// `0`: no bound.
    Unbounded,
    /// A bound in bytes (at least the store's minimum).
    Bytes(u64),
}

impl PageCacheWindow {
    /// Parses the key's value: empty = auto, `0` = unbounded, else bytes (at least 16 MiB).
    pub fn parse(v: &str) -> Option<PageCacheWindow> {
        let v = v.trim();
        if v.is_empty() {
            return Some(PageCacheWindow::Auto);
        }
        match v.parse::<u64>().ok()? {
            0 => Some(PageCacheWindow::Unbounded),
            b if b >= MIN_PAGE_CACHE_WINDOW => Some(PageCacheWindow::Bytes(b)),
            _ => None,
        }
    }

    /// The store's `page_cache_window`, given the broker's memory in bytes and
    /// `accessMessageInMemoryMaxRatio` (percent) for the automatic case.
    pub fn resolve(self, memory: u64, in_memory_ratio: u32) -> Option<u64> {
        match self {
            PageCacheWindow::Bytes(b) => Some(b),
            PageCacheWindow::Unbounded => None,
            PageCacheWindow::Auto => Some(
                (memory / 100)
                    .saturating_mul(u64::from(in_memory_ratio.min(100)))
                    .max(MIN_PAGE_CACHE_WINDOW),
            ),
        }
    }
}

/// The CommitLog bytes behind its end that RocketMQ counts as "in memory":
/// `accessMessageInMemoryMaxRatio` percent of the broker's memory (Java's
/// `checkInMemByConsumeOffset`).
pub fn in_memory_bytes(cfg: &crate::config::BrokerConfig) -> u64 {
    broker_memory() / 100 * u64::from(cfg.ha.access_message_in_memory_max_ratio.min(100))
}

/// The memory the broker may use: physical memory, or its cgroup's limit when smaller.
pub fn broker_memory() -> u64 {
    static MEM: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MEM.get_or_init(|| {
        let physical = physical_memory();
        cgroup_memory_limit().map_or(physical, |l| l.min(physical))
    })
}

/// Physical memory in bytes (from `/proc/meminfo`; 8 GiB when unknown).
fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb.saturating_mul(1024))
}

/// Limits at or above this are "no limit" (cgroup v1 reports about `i64::MAX` rounded down
/// to a page).
const UNLIMITED: u64 = 1 << 62;

/// The memory limit of this process's cgroup (v2 `memory.max`, or v1
/// `memory.limit_in_bytes`), `None` when there is none or it cannot be read.
pub fn cgroup_memory_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    memory_limit_from(&own, Path::new("/sys/fs/cgroup"), |p| {
        std::fs::read_to_string(p).ok()
    })
}

/// [`cgroup_memory_limit`] over `/proc/self/cgroup` text and a cgroup mount, with the file
/// reader passed in so tests need no real cgroup.
fn memory_limit_from(
    proc_cgroup: &str,
    root: &Path,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<u64> {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        let file = if controllers.is_empty() {
            // cgroup v2: "0::/path".
            root.join(rel).join("memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            root.join("memory").join(rel).join("memory.limit_in_bytes")
        } else {
            continue;
        };
        if let Some(limit) = read(&file).and_then(|t| parse_limit(&t)) {
            return Some(limit);
        }
    }
    None
}

/// A limit file's text: a byte count, or `max` / a huge number for none.
fn parse_limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    (n < UNLIMITED).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    #[test]
    fn parse_takes_auto_zero_and_bytes_and_refuses_tiny_or_junk() {
        assert_eq!(PageCacheWindow::parse(""), Some(PageCacheWindow::Auto));
        assert_eq!(
            PageCacheWindow::parse("0"),
            Some(PageCacheWindow::Unbounded)
        );
        assert_eq!(
            PageCacheWindow::parse("268435456"),
            Some(PageCacheWindow::Bytes(256 << 20))
        );
        assert_eq!(PageCacheWindow::parse("4096"), None);
        assert_eq!(PageCacheWindow::parse("1g"), None);
        assert_eq!(PageCacheWindow::parse("-1"), None);
    }

    #[test]
    fn auto_is_the_in_memory_share_and_explicit_values_win() {
        assert_eq!(
            PageCacheWindow::Auto.resolve(10 << 30, 40),
            Some((10 << 30) / 100 * 40)
        );
        assert_eq!(
            PageCacheWindow::Auto.resolve(1 << 20, 40),
            Some(MIN_PAGE_CACHE_WINDOW)
        );
        assert_eq!(
            PageCacheWindow::Auto.resolve(1 << 30, 250),
            Some((1 << 30) / 100 * 100)
        );
        assert_eq!(PageCacheWindow::Unbounded.resolve(2 << 30, 40), None);
        assert_eq!(
            PageCacheWindow::Bytes(64 << 20).resolve(2 << 30, 40),
            Some(64 << 20)
        );
        let mem = broker_memory();
        assert!(mem >= 16 << 20, "some memory is known: {mem}");
    }

    fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let map: HashMap<PathBuf, String> = entries
            .iter()
            .map(|(p, t)| (PathBuf::from(p), (*t).to_string()))
            .collect();
        move |p| map.get(p).cloned()
    }

    #[test]
    fn reads_v2_and_v1_limits_and_treats_max_as_none() {
        let root = Path::new("/cg");
        let v2 = files(&[("/cg/kubepods/pod1/memory.max", "1073741824\n")]);
        assert_eq!(
            memory_limit_from("0::/kubepods/pod1\n", root, v2),
            Some(1 << 30)
        );
        let v2_max = files(&[("/cg/memory.max", "max\n")]);
        assert_eq!(memory_limit_from("0::/\n", root, v2_max), None);
        let v1 = files(&[("/cg/memory/docker/abc/memory.limit_in_bytes", "536870912\n")]);
        let proc = "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n";
        assert_eq!(memory_limit_from(proc, root, v1), Some(512 << 20));
        let v1_none = files(&[("/cg/memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(memory_limit_from("4:memory:/\n0::/\n", root, v1_none), None);
        assert_eq!(memory_limit_from("garbage", root, files(&[])), None);
    }
}

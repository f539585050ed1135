//! Memory and CPU limits for supervised processes.
//!
//! The preferred mechanism is cgroup v2 (`memory.max`, `cpu.max`), used when the unified
//! hierarchy is mounted at `/sys/fs/cgroup` with the memory and cpu controllers and the agent
//! may create a sub-tree there. Elsewhere (containers, cgroup v1 hosts) the agent falls back to
//! rlimits: `RLIMIT_AS` set through util-linux `prlimit`, which execs the real program so the
//! process's own command line is unchanged (no `unsafe` `pre_exec` needed). rlimits cannot cap
//! CPU; the report says which mechanism is in force (`Report.limits_mechanism`).

use std::fs;
use std::path::{Path, PathBuf};

use flotilla_proto::v1::Resources;

/// Applying limits failed.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// A cgroup file could not be written.
    #[error("cgroup {path}: {source}")]
    Cgroup {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl LimitsError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Cgroup { .. } => "LIMITS_CGROUP",
        }
    }
}

/// How limits are enforced on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// cgroup v2: one cgroup per instance under `base`.
    Cgroup2 {
        /// The agent's cgroup sub-tree.
        base: PathBuf,
    },
    /// rlimits through `prlimit` (memory only), or nothing when `prlimit` is missing.
    Rlimit {
        /// Path of the `prlimit` program, if present.
        prlimit: Option<PathBuf>,
    },
}

impl Mechanism {
    /// The name reported to the control plane.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cgroup2 { .. } => "cgroup2",
            Self::Rlimit { .. } => "rlimit",
        }
    }
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn write(path: &Path, value: &str) -> Result<(), LimitsError> {
    fs::write(path, value).map_err(|source| LimitsError::Cgroup {
        path: path.to_path_buf(),
        source,
    })
}

fn try_cgroup2(node_id: &str) -> Option<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).ok()?;
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    if !has("memory") || !has("cpu") {
        return None;
    }
    let base = root.join(format!("flotilla-{node_id}"));
    fs::create_dir_all(&base).ok()?;
    write(&root.join("cgroup.subtree_control"), "+memory +cpu").ok()?;
    write(&base.join("cgroup.subtree_control"), "+memory +cpu").ok()?;
    Some(base)
}

fn find_prlimit() -> Option<PathBuf> {
    ["/usr/bin/prlimit", "/bin/prlimit"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Picks the mechanism for this node: cgroup v2 when available and writable, else rlimits.
pub fn detect(node_id: &str) -> Mechanism {
    match try_cgroup2(node_id) {
        Some(base) => Mechanism::Cgroup2 { base },
        None => Mechanism::Rlimit {
            prlimit: find_prlimit(),
        },
    }
}

/// Bytes of a MiB count.
fn mib(m: u64) -> u64 {
    m.saturating_mul(1024 * 1024)
}

/// Rewrites `program args` so the process starts with the limits (rlimit mode: a `prlimit`
/// prefix). Returns the program and arguments to spawn.
pub fn wrap_command(
    mech: &Mechanism,
    res: Option<&Resources>,
    program: &Path,
    args: &[String],
) -> (PathBuf, Vec<String>) {
    if let (Mechanism::Rlimit { prlimit: Some(pl) }, Some(r)) = (mech, res)
        && r.memory_mib > 0
    {
        let mut a = vec![
            format!("--as={}", mib(r.memory_mib)),
            "--".to_string(),
            program.display().to_string(),
        ];
        a.extend(args.iter().cloned());
        return (pl.clone(), a);
    }
    (program.to_path_buf(), args.to_vec())
}

/// After spawning (cgroup mode): creates the instance's cgroup, writes its limits and moves
/// `pid` into it. A no-op in rlimit mode or without limits.
pub fn apply_after_spawn(
    mech: &Mechanism,
    instance: &str,
    res: Option<&Resources>,
    pid: i32,
) -> Result<(), LimitsError> {
    let (Mechanism::Cgroup2 { base }, Some(r)) = (mech, res) else {
        return Ok(());
    };
    if r.memory_mib == 0 && r.cpu_millis == 0 {
        return Ok(());
    }
    let dir = base.join(instance);
    fs::create_dir_all(&dir).map_err(|source| LimitsError::Cgroup {
        path: dir.clone(),
        source,
    })?;
    if r.memory_mib > 0 {
        write(&dir.join("memory.max"), &mib(r.memory_mib).to_string())?;
    }
    if r.cpu_millis > 0 {
        // quota per 100 ms period: millicores * 100 µs.
        let quota = u64::from(r.cpu_millis) * 100;
        write(&dir.join("cpu.max"), &format!("{quota} 100000"))?;
    }
    write(&dir.join("cgroup.procs"), &pid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimit_wraps_with_prlimit_only_when_memory_is_limited() {
        let mech = Mechanism::Rlimit {
            prlimit: Some(PathBuf::from("/usr/bin/prlimit")),
        };
        let prog = Path::new("/bin/flotilla-broker");
        let args = vec!["-c".to_string(), "broker.conf".to_string()];
        let (p, a) = wrap_command(&mech, None, prog, &args);
        assert_eq!((p.as_path(), a.as_slice()), (prog, args.as_slice()));
        let r = Resources {
            memory_mib: 512,
            cpu_millis: 500,
        };
        let (p, a) = wrap_command(&mech, Some(&r), prog, &args);
        assert_eq!(p, PathBuf::from("/usr/bin/prlimit"));
        assert_eq!(a[0], "--as=536870912");
        assert_eq!(&a[2..], &["/bin/flotilla-broker", "-c", "broker.conf"]);
        assert_eq!(mech.name(), "rlimit");
        // Detection never panics, whatever the host offers.
        let m = detect("unit-test");
        assert!(["cgroup2", "rlimit"].contains(&m.name()));
    }
}

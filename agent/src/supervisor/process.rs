//! Spawning and signalling supervised processes.
//!
//! Processes are started detached from the agent: in their own process group (so a Ctrl-C or
//! a signal aimed at the agent's group never reaches them), with stdin closed and
//! stdout/stderr appended to a log file rather than piped to the agent. Nothing ties their
//! life to the agent's; a restarted agent re-adopts them through `/proc` (see
//! [`super::proc_identity`]). Every signal is preceded by an identity check so a reused pid
//! is never hit.

use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::proc_identity;

/// Starting or signalling a process failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The started process vanished before its identity could be read.
    #[error("process {0} exited before its identity could be recorded")]
    Vanished(i32),
    /// A signal could not be delivered.
    #[error("cannot signal pid {pid}: {source}")]
    Signal {
        /// The pid.
        pid: i32,
        /// The cause.
        #[source]
        source: nix::Error,
    },
}

impl ProcessError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Spawn { .. } => "PROCESS_SPAWN_FAILED",
            Self::Vanished(_) => "PROCESS_VANISHED",
            Self::Signal { .. } => "PROCESS_SIGNAL_FAILED",
        }
    }
}

/// A freshly started process.
#[derive(Debug)]
pub struct Spawned {
    /// The child handle (the agent that spawned it reaps it).
    pub child: tokio::process::Child,
    /// Process id.
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_time_ticks: u64,
}

/// Spawns `program args` detached (own process group), in `cwd`, with output to `stdout` and
/// `stderr`.
pub fn spawn_detached(
    program: &Path,
    args: &[String],
    cwd: &Path,
    stdout: std::fs::File,
    stderr: std::fs::File,
) -> Result<Spawned, ProcessError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or(ProcessError::Vanished(0))?;
    let stat = proc_identity::read_stat(pid)
        .ok()
        .flatten()
        .ok_or(ProcessError::Vanished(pid))?;
    Ok(Spawned {
        child,
        pid,
        start_time_ticks: stat.start_time_ticks,
    })
}

/// Sends `sig` to `pid` if (and only if) it is still the process that started at
/// `start_time_ticks`. Returns whether a signal was sent.
pub fn signal_verified(pid: i32, start_time_ticks: u64, sig: Signal) -> Result<bool, ProcessError> {
    if !proc_identity::alive(pid, start_time_ticks) {
        return Ok(false);
    }
    // The process leads its own group (spawned with process_group(0)): signal the group so
    // helpers it started go too; fall back to the pid alone.
    if killpg(Pid::from_raw(pid), sig).is_ok() {
        return Ok(true);
    }
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) => Ok(true),
        Err(nix::Error::ESRCH) => Ok(false),
        Err(source) => Err(ProcessError::Signal { pid, source }),
    }
}

//! Process identity from `/proc`: is pid `P` still *our* process?
//!
//! A pid alone proves nothing: after a process exits, the kernel may hand its pid to an
//! unrelated process. Like Patroni's postmaster check, identity is (pid, start time in clock
//! ticks since boot — `/proc/<pid>/stat` field 22 — and command line). The start time of a pid
//! changes when the pid is reused, and the command line catches a process that exec'd
//! something else. The agent re-adopts a process only when all three match, and never signals
//! a pid it has not verified just before.

use std::fs;

/// Reading `/proc` failed in an unexpected way.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// `/proc/<pid>/stat` exists but cannot be parsed.
    #[error("/proc/{pid}/stat is malformed: {reason}")]
    Malformed {
        /// The pid.
        pid: i32,
        /// What was wrong.
        reason: String,
    },
}

impl ProcError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "PROC_STAT_MALFORMED",
        }
    }
}

/// What `/proc/<pid>/stat` says about a live pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: R, S, D, Z, T, …
    pub state: char,
    /// Field 22: start time in clock ticks since boot.
    pub start_time_ticks: u64,
}

impl ProcStat {
    /// A zombie has exited; only its parent's wait() is missing.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the content of `/proc/<pid>/stat`. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the *last* `)`.
pub fn parse_stat(pid: i32, content: &str) -> Result<ProcStat, ProcError> {
    let malformed = |reason: &str| ProcError::Malformed {
        pid,
        reason: reason.to_string(),
    };
    let close = content.rfind(')').ok_or_else(|| malformed("no ')'"))?;
    let rest = content
        .get(close + 1..)
        .ok_or_else(|| malformed("truncated"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is index 22 - 3 = 19.
    let state = fields
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(|| malformed("no state field"))?;
    let start_time_ticks = fields
        .get(19)
        .ok_or_else(|| malformed("fewer than 22 fields"))?
        .parse::<u64>()
        .map_err(|_| malformed("field 22 is not a number"))?;
    Ok(ProcStat {
        state,
        start_time_ticks,
    })
}

/// `/proc/<pid>/stat` of a live pid, or `None` when there is no such process.
pub fn read_stat(pid: i32) -> Result<Option<ProcStat>, ProcError> {
    if pid <= 0 {
        return Ok(None);
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => parse_stat(pid, &s).map(Some),
        Err(_) => Ok(None),
    }
}

/// The command line of a live pid (NUL-separated arguments), or `None`.
pub fn read_cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// The result of checking a recorded process against `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Same pid, start time and command line: it is our process, alive.
    Verified,
    /// No such pid, or it is a zombie: our process has exited.
    Gone,
    /// The pid is alive but is not our process (reused pid or changed command line).
    Mismatch(String),
}

/// Checks that `pid` is alive and is the process that started at `start_time_ticks` with
/// `cmdline`. An empty `cmdline` skips the command-line check.
pub fn verify(pid: i32, start_time_ticks: u64, cmdline: &[String]) -> Identity {
    let stat = match read_stat(pid) {
        Ok(Some(s)) => s,
        Ok(None) => return Identity::Gone,
        Err(e) => return Identity::Mismatch(e.to_string()),
    };
    if stat.start_time_ticks != start_time_ticks {
        // Our process started at another time: the pid was reused, so ours is gone.
        return Identity::Mismatch(format!(
            "pid {pid} started at tick {} but the record says {start_time_ticks}",
            stat.start_time_ticks
        ));
    }
    if stat.is_zombie() {
        return Identity::Gone;
    }
    if !cmdline.is_empty() {
        match read_cmdline(pid) {
            Some(actual) if actual == cmdline => {}
            Some(actual) => {
                return Identity::Mismatch(format!(
                    "pid {pid} runs {actual:?}, the record says {cmdline:?}"
                ));
            }
            None => return Identity::Gone,
        }
    }
    Identity::Verified
}

/// Whether the pid is still the same process (same start time) and not a zombie; cheaper than
/// [`verify`] for the supervisor's liveness poll.
pub fn alive(pid: i32, start_time_ticks: u64) -> bool {
    matches!(read_stat(pid), Ok(Some(s)) if s.start_time_ticks == start_time_ticks && !s.is_zombie())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let s =
            "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let st = parse_stat(1234, s).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.start_time_ticks, 987_654);
        assert!(parse_stat(1, "garbage").is_err());
        assert_eq!(
            parse_stat(1, "1 (x) S 1 2").unwrap_err().code(),
            "PROC_STAT_MALFORMED"
        );
    }

    #[test]
    fn verifies_a_real_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let stat = read_stat(pid).unwrap().unwrap();
        // Right after spawn the child may still be inside execve (empty cmdline): poll.
        let mut cmdline = Vec::new();
        for _ in 0..100_000 {
            cmdline = read_cmdline(pid).unwrap();
            if !cmdline.is_empty() {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(cmdline, vec!["sleep".to_string(), "30".to_string()]);
        assert_eq!(
            verify(pid, stat.start_time_ticks, &cmdline),
            Identity::Verified
        );
        assert!(alive(pid, stat.start_time_ticks));
        // A wrong start time means: not our process.
        assert!(matches!(
            verify(pid, stat.start_time_ticks + 1, &cmdline),
            Identity::Mismatch(_)
        ));
        // A different command line too.
        assert!(matches!(
            verify(
                pid,
                stat.start_time_ticks,
                &["sleep".to_string(), "31".to_string()]
            ),
            Identity::Mismatch(_)
        ));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(verify(pid, stat.start_time_ticks, &cmdline), Identity::Gone);
        assert!(!alive(pid, stat.start_time_ticks));
    }
}

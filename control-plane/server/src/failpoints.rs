//! Fail points for crash tests.
//!
//! A durable workflow is only as good as its behaviour when the control plane dies between
//! two steps, and a test cannot time a SIGKILL to land exactly there. The `fail` crate
//! (TiKV's fail points) names such places in the code; `FLOTILLA_FAILPOINTS` configures
//! them when the control plane starts, as `name=actions` pairs separated by `;`, for
//! example `workflow-after-step=return(WaitDrained)`. Unset (always, in production), no
//! fail point is configured and each one is a map lookup that finds nothing.
//!
//! Fail points in the control plane:
//! - `workflow-after-step=return(STEP)`: exit with [`EXIT_CODE`] right after the store
//!   recorded that step `STEP` of an operation finished.

use thiserror::Error;

/// The environment variable read at start-up.
pub const ENV: &str = "FLOTILLA_FAILPOINTS";

/// The exit code of a process stopped by a fail point.
pub const EXIT_CODE: i32 = 86;

/// A fail-point specification that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FailpointError {
    /// An entry without `=`.
    #[error("{ENV}: `{0}` is not name=actions")]
    Malformed(String),
    /// Actions the fail crate refuses.
    #[error("{ENV}: {name}: {why}")]
    Actions { name: String, why: String },
}

impl FailpointError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            FailpointError::Malformed(_) => "FAILPOINT_MALFORMED",
            FailpointError::Actions { .. } => "FAILPOINT_ACTIONS",
        }
    }
}

/// Parses `name=actions;…` into pairs.
pub fn parse(spec: &str) -> Result<Vec<(String, String)>, FailpointError> {
    spec.split(';')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.split_once('=')
                .map(|(n, a)| (n.trim().to_string(), a.trim().to_string()))
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| FailpointError::Malformed(e.to_string()))
        })
        .collect()
}

/// Configures the fail points named in [`ENV`], if set; returns how many.
pub fn setup_from_env() -> Result<usize, FailpointError> {
    let Ok(spec) = std::env::var(ENV) else {
        return Ok(0);
    };
    let pairs = parse(&spec)?;
    for (name, actions) in &pairs {
        fail::cfg(name.clone(), actions).map_err(|why| FailpointError::Actions {
            name: name.clone(),
            why,
        })?;
        tracing::warn!(%name, %actions, "fail point configured");
    }
    Ok(pairs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_refuses_malformed_entries() {
        assert_eq!(
            parse("workflow-after-step=return(WaitDrained); other=off;").unwrap(),
            vec![
                (
                    "workflow-after-step".to_string(),
                    "return(WaitDrained)".to_string()
                ),
                ("other".to_string(), "off".to_string()),
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(
            parse("no-equals").unwrap_err().code(),
            "FAILPOINT_MALFORMED"
        );
        assert_eq!(parse("=off").unwrap_err().code(), "FAILPOINT_MALFORMED");
    }
}

//! W3C trace context (`traceparent`, `00-<trace id>-<span id>-<flags>`) on commands from the
//! control plane to agents.
//!
//! Commands travel as messages on one long-lived agent stream, so per-call gRPC metadata
//! cannot carry them; each `Command` carries its own `traceparent` instead. The control
//! plane makes one per command and records its trace id in the command's span; the agent
//! executes the command inside a span with the same trace id, so the two processes' logs
//! (`--log-format json`) join on it, and an OpenTelemetry exporter would link them.

use std::fmt::Write;

/// A new `traceparent`: random trace and span ids, sampled.
pub fn new_traceparent() -> String {
    let trace: u128 = rand::random::<u128>().max(1);
    let span: u64 = rand::random::<u64>().max(1);
    let mut s = String::with_capacity(55);
    let _ = write!(s, "00-{trace:032x}-{span:016x}-01");
    s
}

/// The trace id of a valid version-00 `traceparent` (32 lower-case hex digits, not all
/// zero); `None` for anything else, which a receiver ignores as the spec says.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (v, t, s, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |x: &str, n: usize| {
        x.len() == n
            && x.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |x: &str| x.bytes().any(|b| b != b'0');
    (parts.next().is_none()
        && v == "00"
        && hex(t, 32)
        && nonzero(t)
        && hex(s, 16)
        && nonzero(s)
        && hex(f, 2))
    .then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_traceparents_parse_and_malformed_ones_do_not() {
        let tp = new_traceparent();
        let id = trace_id(&tp).expect("valid");
        assert_eq!(id.len(), 32);
        assert_ne!(new_traceparent(), tp);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }
}

//! How every Flotilla binary writes its log: `--log-format text` (the default, for people)
//! or `--log-format json` (one JSON object per line — `timestamp`, `level`, `target`,
//! `fields`, the current `span` and its parents — for log shippers). The level filter comes
//! from `RUST_LOG` (default `info`). Here beside the metrics because both are how an
//! operator sees into a process, and every binary links this crate.

use std::str::FromStr;

/// The log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A `--log-format` value that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log format {0:?} is not one of text, json")]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownLogFormat(other.to_string())),
        }
    }
}

/// The `--log-format` flag every binary flattens into its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format: `text` (for people) or `json` (one object per line, for log shippers).
    #[arg(
        long,
        env = "FLOTILLA_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global subscriber in the chosen format ([`init`]).
    pub fn init(&self) {
        init(self.log_format);
    }
}

/// Installs the global subscriber writing to standard error in `format`.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_others_are_refused() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!(
            "xml".parse::<LogFormat>(),
            Err(UnknownLogFormat("xml".into()))
        );
    }
}

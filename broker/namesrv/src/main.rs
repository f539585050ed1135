//! The `flotilla-namesrv` binary: parses the command line and an optional RocketMQ
//! properties file, starts the nameserver and stops it gracefully on SIGTERM or SIGINT.
//!
//! Precedence: command-line flags, then the `-c` file, then defaults. The default listen
//! address is loopback (`127.0.0.1:9876`); binding other interfaces must be asked for.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flotilla_namesrv::config::{NamesrvConfig, parse_properties};
use flotilla_namesrv::{Namesrv, config::ConfigError};
use tracing::{error, info, warn};

/// RocketMQ-compatible nameserver.
#[derive(Debug, Parser)]
#[command(name = "flotilla-namesrv", version, about)]
struct Cli {
    /// Address to listen on, `host:port` [default: 127.0.0.1:9876, or the file's
    /// bindAddress/listenPort].
    #[arg(long)]
    listen: Option<String>,
    /// KV config file [default: $HOME/namesrv/kvConfig.json, or the file's kvConfigPath].
    #[arg(long)]
    kv_config_path: Option<PathBuf>,
    /// How often expired brokers are removed, e.g. `5s`, `500ms` [default: 5s, or the
    /// file's scanNotActiveBrokerInterval].
    #[arg(long, value_parser = humantime::parse_duration)]
    scan_interval: Option<Duration>,
    /// RocketMQ namesrv properties file (`listenPort`, `kvConfigPath`, …).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    #[command(flatten)]
    log: flotilla_metrics::logging::LogArgs,
}

fn build_config(cli: &Cli) -> Result<NamesrvConfig, ConfigError> {
    let mut config = NamesrvConfig::default();
    if let Some(path) = &cli.config {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let unknown = config.apply_properties(&parse_properties(&text))?;
        for key in unknown {
            warn!(key, file = %path.display(), "unknown config key ignored");
        }
    }
    if let Some(listen) = &cli.listen {
        config.listen.clone_from(listen);
    }
    if let Some(p) = &cli.kv_config_path {
        config.kv_config_path.clone_from(p);
    }
    if let Some(d) = cli.scan_interval {
        if d.is_zero() {
            return Err(ConfigError::InvalidValue {
                key: "--scan-interval".into(),
                value: "0".into(),
                expected: "a duration > 0",
            });
        }
        config.runtime.scan_interval = d;
    }
    Ok(config)
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
        () = term => info!("SIGTERM received"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let config = match build_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, code = e.code(), "bad configuration");
            return ExitCode::from(2);
        }
    };
    let namesrv = match Namesrv::start(config).await {
        Ok(n) => n,
        Err(e) => {
            error!(error = %e, code = e.code(), "cannot start");
            return ExitCode::FAILURE;
        }
    };
    println!("flotilla-namesrv listening on {}", namesrv.local_addr());
    wait_for_signal().await;
    namesrv.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("namesrv.conf");
        std::fs::write(
            &file,
            "listenPort=19876\nkvConfigPath=/from/file.json\nscanNotActiveBrokerInterval=1000\nfoo=bar\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["flotilla-namesrv", "-c", file.to_str().unwrap()]);
        let c = build_config(&cli).unwrap();
        assert_eq!(c.listen, "127.0.0.1:19876");
        assert_eq!(c.kv_config_path, PathBuf::from("/from/file.json"));
        assert_eq!(c.runtime.scan_interval, Duration::from_secs(1));

        let cli = Cli::parse_from([
            "flotilla-namesrv",
            "-c",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:1234",
            "--kv-config-path",
            "/x.json",
            "--scan-interval",
            "250ms",
        ]);
        let c = build_config(&cli).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1234");
        assert_eq!(c.kv_config_path, PathBuf::from("/x.json"));
        assert_eq!(c.runtime.scan_interval, Duration::from_millis(250));

        let c = build_config(&Cli::parse_from(["flotilla-namesrv"])).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9876");
        assert!(c.kv_config_path.ends_with("namesrv/kvConfig.json"));

        let cli = Cli::parse_from(["flotilla-namesrv", "-c", "/does/not/exist"]);
        assert_eq!(build_config(&cli).unwrap_err().code(), "CONFIG_READ_FAILED");
    }
}

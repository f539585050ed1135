//! `flotilla-broker`: the broker process, and `flotilla-broker bench`.
//!
//! `flotilla-broker -c broker.conf [-n namesrv]` starts a broker from a RocketMQ properties
//! file (the agent renders it); SIGTERM/SIGINT shut it down cleanly (unregister, flush,
//! close the store). An invalid config exits with status 2 and a message naming the key.
//! `flotilla-broker bench …` runs the load generator of [`flotilla_broker::bench`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flotilla_broker::{BrokerConfig, bench};

#[derive(Parser, Debug)]
#[command(
    name = "flotilla-broker",
    about = "RocketMQ-compatible broker",
    version
)]
struct Cli {
    /// The broker config file (RocketMQ properties format).
    #[arg(short = 'c', long = "configFile")]
    config: Option<PathBuf>,
    /// Nameserver addresses (`;`-separated); overrides namesrvAddr from the file.
    #[arg(short = 'n', long = "namesrvAddr")]
    namesrv: Option<String>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    log: flotilla_metrics::logging::LogArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Load-test a broker (produce and/or consume) and print throughput and latency.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(Cmd::Bench(args)) = cli.cmd {
        return match rt.block_on(bench::run(args.into_opts())) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench failed: {e}");
                ExitCode::from(1)
            }
        };
    }
    let mut given = match &cli.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => flotilla_broker::properties::parse(&t),
            Err(e) => {
                eprintln!("cannot read config file {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Default::default(),
    };
    if let Some(n) = cli.namesrv {
        given.insert("namesrvAddr".to_string(), n);
    }
    let cfg = match BrokerConfig::from_properties(&given) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid broker config [{}]: {e}", e.code());
            return ExitCode::from(2);
        }
    };
    rt.block_on(async move {
        let handle = match flotilla_broker::start(cfg, cli.config).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("broker failed to start [{}]: {e}", e.code());
                return ExitCode::from(1);
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down");
        handle.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

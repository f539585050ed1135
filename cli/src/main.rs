//! `flotilla`: the command line for Flotilla.
//!
//! - `flotilla up` — a one-machine Flotilla (control plane, three agents, a default cluster);
//! - `flotilla apply -f cluster.json` — create or update a cluster from a file;
//! - `flotilla get clusters|nodes` — list resources;
//! - `flotilla bench …` — drive load at a broker (`flotilla_broker::bench`).

mod apply;
mod client;
mod get;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "flotilla",
    version,
    about = "Run fleets of RocketMQ-compatible brokers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a whole Flotilla on this machine and run until Ctrl-C.
    Up(up::UpArgs),
    /// Create or update a cluster from a JSON file.
    Apply {
        /// The cluster file (see `flotilla apply --help` schema in the docs).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Control-plane addresses (comma-separated replicas, or a DNS name with several records).
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
    },
    /// List resources (`clusters`, `nodes`, or `members CLUSTER`).
    Get {
        /// What to list.
        #[arg(value_enum)]
        what: What,
        /// The cluster, for `members`.
        cluster: Option<String>,
        /// Control-plane addresses (comma-separated replicas, or a DNS name with several records).
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
    },
    /// Benchmark a broker.
    Bench(flotilla_broker::bench::BenchArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum What {
    Clusters,
    Nodes,
    /// Every member of one cluster: role, id, term, node, address, pid, readiness, offsets.
    Members,
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Up(a) => up::run(a).await,
        Cmd::Apply { file, server } => {
            let f = apply::ClusterFile::load(&file)?;
            let (what, c) = apply::apply(&server, f.to_cluster()?).await?;
            let name = c.metadata.map(|m| m.name).unwrap_or_default();
            match what {
                apply::Applied::Created => println!("cluster {name} created"),
                apply::Applied::Updated => println!("cluster {name} updated"),
            }
            Ok(())
        }
        Cmd::Get {
            what,
            cluster,
            server,
        } => {
            match what {
                What::Clusters => get::clusters(&server).await?,
                What::Nodes => get::nodes(&server).await?,
                What::Members => {
                    let cluster = cluster
                        .ok_or_else(|| anyhow::anyhow!("usage: flotilla get members CLUSTER"))?;
                    get::members(&server, &cluster).await?
                }
            }
            Ok(())
        }
        Cmd::Bench(args) => {
            let report = flotilla_broker::bench::run(args.into_opts()).await?;
            println!("{report}");
            Ok(())
        }
    }
}

/// The stable code of the first Flotilla error in the chain, for scripts that match on it.
fn error_code(e: &anyhow::Error) -> Option<&'static str> {
    e.chain().find_map(|cause| {
        if let Some(x) = cause.downcast_ref::<up::UpError>() {
            Some(x.code())
        } else if let Some(x) = cause.downcast_ref::<apply::ApplyError>() {
            Some(x.code())
        } else if let Some(x) = cause.downcast_ref::<client::ClientError>() {
            Some(x.code())
        } else {
            cause
                .downcast_ref::<get::GetError>()
                .map(get::GetError::code)
        }
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match error_code(&e) {
                Some(code) => eprintln!("flotilla: {e:#} [{code}]"),
                None => eprintln!("flotilla: {e:#}"),
            }
            ExitCode::from(1)
        }
    }
}

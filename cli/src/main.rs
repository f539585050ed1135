//! `flotilla`: the command line for Flotilla.
//!
//! - `flotilla up` — a one-machine Flotilla (control plane, three agents, a default cluster);
//! - `flotilla apply -f FILE|-` — create or update clusters, topics and consumer groups from
//!   YAML or JSON documents;
//! - `flotilla get clusters|nodes|members` — list resources (`-o table|wide|json|yaml`);
//! - `flotilla cordon|uncordon|drain NODE`, `flotilla delete cluster NAME`;
//! - `flotilla topic …`, `flotilla group …`, `flotilla offset reset`, `flotilla message …`
//!   (get, query, list, trace), `flotilla dlq list|resend`, `flotilla producer connections` —
//!   the business API;
//! - `flotilla bench …` — drive load at a broker (`flotilla_broker::bench`).
//!
//! Exit status: 0 on success, 2 for a bad command line (clap's usage errors and flag values
//! checked before anything is sent), 1 for every other failure. Errors go to stderr as
//! `flotilla: <what went wrong> [CODE]`, CODE being the stable reason a script can match.

mod api;
mod apply;
mod client;
mod dlq;
mod docs;
mod get;
mod group;
mod message;
mod node;
mod operation;
mod operator;
mod output;
mod topic;
mod up;
mod view;

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
    /// Create or update clusters, topics and consumer groups from YAML or JSON documents.
    Apply {
        /// The file (`-` = standard input); several documents allowed (`---` in YAML).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Change nothing: print what each cluster document would do to each member
        /// (start, stop, move, rolling restart and the keys forcing it, online change).
        #[arg(long)]
        dry_run: bool,
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
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: output::Format,
        /// Keep printing changes (clusters).
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Topics of a cluster: create, update, delete, get, list, route, stats.
    Topic {
        #[command(subcommand)]
        cmd: topic::TopicCmd,
    },
    /// Consumer groups of a cluster: create, update, delete, get, list, lag, connections.
    Group {
        #[command(subcommand)]
        cmd: group::GroupCmd,
    },
    /// Consumer offsets: reset to a time or an offset.
    Offset {
        #[command(subcommand)]
        cmd: group::OffsetCmd,
    },
    /// Messages: get by id, query by key or time, list by queue and offset, trace.
    Message {
        #[command(subcommand)]
        cmd: message::MessageCmd,
    },
    /// Dead-letter queues of consumer groups: list, resend.
    Dlq {
        #[command(subcommand)]
        cmd: dlq::DlqCmd,
    },
    /// Producer groups: connections.
    Producer {
        #[command(subcommand)]
        cmd: dlq::ProducerCmd,
    },
    /// Stop placing new instances on a node.
    Cordon(NodeArgs),
    /// Let placement use a node again.
    Uncordon(NodeArgs),
    /// Cordon a node and move its instances elsewhere.
    Drain(NodeArgs),
    /// Delete a resource (`cluster NAME`).
    Delete {
        /// What to delete.
        #[arg(value_enum)]
        what: Deletable,
        /// Its name.
        name: String,
        /// Control-plane address.
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
    },
    /// Operations (scale-in, scale-out, migration, drain): get, list, cancel, watch.
    Operation {
        #[command(subcommand)]
        cmd: operation::OperationCmd,
    },
    /// Rolling restart of a cluster (or some of its members), as an operation.
    Restart {
        #[command(subcommand)]
        cmd: operation::RestartCmd,
    },
    /// Move a topic to another cluster, following the operation to the end.
    Migrate {
        #[command(subcommand)]
        cmd: operation::MigrateCmd,
    },
    /// Benchmark a broker.
    Bench(flotilla_broker::bench::BenchArgs),
}

/// A node and the control plane.
#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// The node.
    node: String,
    /// Control-plane address.
    #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
    server: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Deletable {
    Cluster,
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
        Cmd::Apply {
            file,
            server,
            dry_run,
        } => Ok(apply::run(&server, &file, dry_run).await?),
        Cmd::Get {
            what,
            cluster,
            server,
            output,
            watch,
        } => {
            match what {
                What::Clusters if watch => get::watch_clusters(&server, output).await?,
                _ if watch => {
                    return Err(api::CmdError::invalid(
                        "--watch",
                        "only `flotilla get clusters` can be watched",
                    )
                    .into());
                }
                What::Clusters => get::clusters(&server, output).await?,
                What::Nodes => get::nodes(&server, output).await?,
                What::Members => {
                    let cluster = cluster.ok_or_else(|| {
                        api::CmdError::invalid("flotilla get members", "give the CLUSTER")
                    })?;
                    get::members(&server, &cluster, output).await?
                }
            }
            Ok(())
        }
        Cmd::Topic { cmd } => Ok(topic::run(cmd).await?),
        Cmd::Group { cmd } => Ok(group::run(cmd).await?),
        Cmd::Offset { cmd } => Ok(group::run_offset(cmd).await?),
        Cmd::Message { cmd } => Ok(message::run(cmd).await?),
        Cmd::Dlq { cmd } => Ok(dlq::run(cmd).await?),
        Cmd::Producer { cmd } => Ok(dlq::run_producer(cmd).await?),
        Cmd::Cordon(a) => Ok(node::run(&a.server, node::NodeAction::Cordon, &a.node).await?),
        Cmd::Uncordon(a) => Ok(node::run(&a.server, node::NodeAction::Uncordon, &a.node).await?),
        Cmd::Drain(a) => Ok(node::run(&a.server, node::NodeAction::Drain, &a.node).await?),
        Cmd::Delete {
            what: Deletable::Cluster,
            name,
            server,
        } => Ok(node::delete_cluster(&server, &name).await?),
        Cmd::Operation { cmd } => Ok(operation::run(cmd).await?),
        Cmd::Migrate { cmd } => Ok(operation::migrate(cmd).await?),
        Cmd::Restart { cmd } => Ok(operation::restart(cmd).await?),
        Cmd::Bench(args) => {
            let report = flotilla_broker::bench::run(args.into_opts()).await?;
            println!("{report}");
            Ok(())
        }
    }
}

/// The stable code of the first Flotilla error in the chain, for scripts that match on it.
fn error_code(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|cause| {
        if let Some(x) = cause.downcast_ref::<up::UpError>() {
            Some(x.code().to_string())
        } else if let Some(x) = cause.downcast_ref::<apply::ApplyError>() {
            Some(x.code().to_string())
        } else if let Some(x) = cause.downcast_ref::<client::ClientError>() {
            Some(x.code().to_string())
        } else if let Some(x) = cause.downcast_ref::<api::CmdError>() {
            Some(x.code())
        } else {
            cause
                .downcast_ref::<get::GetError>()
                .map(|x| x.code().to_string())
        }
    })
}

/// 2 for a bad command line, else 1.
fn exit_code(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| {
            c.downcast_ref::<api::CmdError>()
                .map(api::CmdError::exit_code)
        })
        .unwrap_or(1)
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
    let cli = Cli::parse();
    // Parse only (the packaging tests run the chart's `helm test` arguments through it).
    if std::env::var_os("FLOTILLA_CHECK_ARGS").is_some() {
        println!("{cli:#?}");
        return ExitCode::SUCCESS;
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match error_code(&e) {
                Some(code) => eprintln!("flotilla: {e:#} [{code}]"),
                None => eprintln!("flotilla: {e:#}"),
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

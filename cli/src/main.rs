//! `flotilla`: the command line for Flotilla.
//!
//! - `flotilla up` — a one-machine Flotilla (control plane, three agents, a default cluster);
//! - `flotilla apply -f FILE|-` — create or update clusters, topics and consumer groups from
//!   YAML or JSON documents;
//! - `flotilla get clusters|nodes|members|operations [NAME]` — list resources or get one
//!   (`-o table|wide|json|yaml`, `--watch` to follow changes);
//! - `flotilla describe cluster|node|operation NAME` — one resource in detail, for people;
//! - `flotilla completion bash|zsh|fish|powershell` — a shell completion script;
//! - `flotilla cordon|uncordon|drain NODE`, `flotilla delete clusters|nodes|operations NAME`
//!   (`delete members` is refused with what to do instead);
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
mod audit;
mod certs;
mod client;
mod describe;
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
mod watch;

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
    /// List resources, or get one by name: `clusters [NAME]`, `nodes [NAME]`,
    /// `members CLUSTER`, `operations [--cluster C] [NAME]`.
    Get {
        /// What to list.
        #[arg(value_enum)]
        what: What,
        /// One resource by name (for `members`: the cluster, required).
        name: Option<String>,
        /// Only this cluster's (for `operations`).
        #[arg(short = 'c', long)]
        cluster: Option<String>,
        /// Control-plane addresses (comma-separated replicas, or a DNS name with several records).
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: output::Format,
        /// Keep printing changes until the stream ends or Ctrl-C.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Show one resource in detail: `cluster|node|operation NAME`.
    Describe {
        /// What to describe.
        #[arg(value_enum)]
        what: describe::Describable,
        /// Its name.
        name: String,
        /// Control-plane addresses (comma-separated replicas, or a DNS name with several records).
        #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
        server: String,
        /// Output format: the text for people (`table`), or what `get KIND NAME` prints.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: output::Format,
    },
    /// Certificates for the control plane, agents and users (`init` a CA, `issue` more).
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
    /// Print a shell completion script (e.g. `source <(flotilla completion bash)`).
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
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
    /// Delete a resource: `clusters NAME` (its members stop), `nodes NAME` (a machine gone
    /// for good: refused while instances are placed on it or its agent is connected),
    /// `operations NAME` (a finished one). Members are not deleted: scale, restart or drain.
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
    /// Who changed what: the control plane's audit log, newest first (admin only).
    Audit(audit::AuditArgs),
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
    #[value(alias = "clusters")]
    Cluster,
    #[value(alias = "nodes")]
    Node,
    /// Refused: a member is part of its cluster's spec (the message says what to do).
    #[value(alias = "members")]
    Member,
    #[value(alias = "operations", alias = "ops")]
    Operation,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum What {
    #[value(alias = "cluster")]
    Clusters,
    #[value(alias = "node")]
    Nodes,
    /// Every member of one cluster: role, id, term, node, address, pid, readiness, offsets.
    #[value(alias = "member")]
    Members,
    /// Operations (finished ones too): kind, phase, step, progress.
    #[value(alias = "operation", alias = "ops")]
    Operations,
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
            name,
            cluster,
            server,
            output,
            watch,
        } => get_cmd(what, name, cluster, &server, output, watch).await,
        Cmd::Describe {
            what,
            name,
            server,
            output,
        } => Ok(describe::run(&server, what, &name, output).await?),
        Cmd::Completion { shell } => completion(shell),
        Cmd::Certs { cmd } => certs_cmd(cmd),
        Cmd::Topic { cmd } => Ok(topic::run(cmd).await?),
        Cmd::Group { cmd } => Ok(group::run(cmd).await?),
        Cmd::Offset { cmd } => Ok(group::run_offset(cmd).await?),
        Cmd::Message { cmd } => Ok(message::run(cmd).await?),
        Cmd::Dlq { cmd } => Ok(dlq::run(cmd).await?),
        Cmd::Producer { cmd } => Ok(dlq::run_producer(cmd).await?),
        Cmd::Cordon(a) => Ok(node::run(&a.server, node::NodeAction::Cordon, &a.node).await?),
        Cmd::Uncordon(a) => Ok(node::run(&a.server, node::NodeAction::Uncordon, &a.node).await?),
        Cmd::Drain(a) => Ok(node::run(&a.server, node::NodeAction::Drain, &a.node).await?),
        Cmd::Delete { what, name, server } => {
            match what {
                Deletable::Cluster => node::delete_cluster(&server, &name).await?,
                Deletable::Node => node::delete_node(&server, &name).await?,
                Deletable::Member => node::refuse_member_delete(&name)?,
                Deletable::Operation => operation::delete(&server, &name).await?,
            }
            Ok(())
        }
        Cmd::Audit(a) => Ok(audit::run(a).await?),
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

/// Prints the completion script for `shell`. Rendered into memory first: clap_complete
/// panics when its writer fails, and a closed pipe (`flotilla completion bash | head`) is no
/// error.
fn completion(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use clap::CommandFactory;
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "flotilla", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::anyhow!(
            "cannot write the completion script to standard output: {e}"
        )),
        _ => Ok(()),
    }
}

/// Runs `flotilla get …`.
async fn get_cmd(
    what: What,
    name: Option<String>,
    cluster: Option<String>,
    server: &str,
    output: output::Format,
    watch: bool,
) -> anyhow::Result<()> {
    if cluster.is_some() && !matches!(what, What::Operations) {
        return Err(api::CmdError::invalid(
            "--cluster",
            "only `flotilla get operations` takes --cluster (for members: `get members CLUSTER`)",
        )
        .into());
    }
    let name = name.as_deref();
    let cluster = cluster.as_deref();
    match (what, name) {
        (What::Members, None) => Err(api::CmdError::invalid(
            "flotilla get members",
            "give the CLUSTER: `flotilla get members CLUSTER`",
        )
        .into()),
        (What::Members, Some(c)) if watch => {
            Ok(watch::until_interrupted(watch::members(server, c, output)).await?)
        }
        (What::Members, Some(c)) => Ok(get::members(server, c, output).await?),
        (What::Clusters, n) if watch => {
            Ok(watch::until_interrupted(get::watch_clusters(server, n, output)).await?)
        }
        (What::Clusters, Some(n)) => Ok(get::cluster(server, n, output).await?),
        (What::Clusters, None) => Ok(get::clusters(server, output).await?),
        (What::Nodes, n) if watch => {
            Ok(watch::until_interrupted(watch::nodes(server, n, output)).await?)
        }
        (What::Nodes, Some(n)) => Ok(get::node(server, n, output).await?),
        (What::Nodes, None) => Ok(get::nodes(server, output).await?),
        (What::Operations, n) if watch => {
            Ok(watch::until_interrupted(watch::operations(server, cluster, n, output)).await?)
        }
        (What::Operations, n) => Ok(operation::get(server, cluster, n, output).await?),
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
        } else if let Some(x) = cause.downcast_ref::<certs::CertsError>() {
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

/// `flotilla certs`.
#[derive(Debug, clap::Subcommand)]
enum CertsCmd {
    /// A new CA in DIR and, signed by it: the control plane's certificate (server and
    /// replica identity), one per `--node`, one per `--user` (`admin` when none is named).
    Init(CertsArgs),
    /// More certificates signed by the CA already in DIR.
    Issue(CertsArgs),
}

#[derive(Debug, clap::Args)]
struct CertsArgs {
    /// Directory of the CA and the certificates.
    #[arg(long, default_value = "flotilla-certs")]
    dir: std::path::PathBuf,
    /// A node to issue an agent certificate for (`agent-NODE.crt`); repeatable.
    #[arg(long = "node")]
    nodes: Vec<String>,
    /// A user `NAME[:ROLE]` (role admin, operator or viewer; default admin) to issue a
    /// client certificate for (`user-NAME.crt`); repeatable.
    #[arg(long = "user")]
    users: Vec<String>,
    /// Another DNS name or IP of the control plane (localhost and loopback are always in);
    /// repeatable.
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// With `issue`: a new control-plane certificate too.
    #[arg(long)]
    control_plane: bool,
    /// Validity of the leaf certificates in days (the CA gets twice as long).
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

fn certs_cmd(cmd: CertsCmd) -> anyhow::Result<()> {
    let (init, a) = match cmd {
        CertsCmd::Init(a) => (true, a),
        CertsCmd::Issue(a) => (false, a),
    };
    let req = certs::Request {
        dir: a.dir,
        nodes: a.nodes,
        hosts: a.hosts,
        users: a.users,
        days: a.days,
        force: a.force,
        control_plane: a.control_plane,
    };
    let files = if init {
        certs::init(req)?
    } else {
        certs::issue(req)?
    };
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}

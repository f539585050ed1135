//! `flotilla-agent`: parses flags, starts the agent, and exits on SIGINT/SIGTERM (leaving the
//! supervised processes running unless `--stop-instances-on-exit` is given).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use flotilla_agent::{Agent, AgentConfig};
use flotilla_client::ClientTls;

/// With this variable set the binary parses its flags and environment, prints what it
/// understood and exits 0 without starting anything: the packaging tests run the Helm
/// chart's and the systemd units' arguments through it.
const CHECK_ARGS: &str = "FLOTILLA_CHECK_ARGS";

/// The Flotilla per-node agent.
#[derive(Debug, Parser)]
#[command(name = "flotilla-agent", version)]
struct Args {
    /// Control-plane addresses: comma-separated host:port or http://host:port entries (any
    /// replica; a DNS name with several records counts as each of them).
    #[arg(long, env = "FLOTILLA_CONTROL_PLANE")]
    control_plane: String,
    /// This node's name (DNS-1123 subdomain, e.g. the Kubernetes Node's name).
    #[arg(long)]
    node_id: String,
    /// Where the agent keeps its state and ephemeral instance data.
    #[arg(long)]
    data_dir: PathBuf,
    /// Host other machines and clients reach this node's instances on.
    #[arg(long, default_value = "127.0.0.1")]
    advertise_address: String,
    /// Node labels: k=v,k2=v2.
    #[arg(long, default_value = "")]
    labels: String,
    /// Directory holding flotilla-broker and flotilla-namesrv (default: the agent's own).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Seconds between periodic reports (2-5).
    #[arg(long, default_value_t = 3)]
    report_interval_secs: u64,
    /// Stop every instance when the agent exits (used by `flotilla up`).
    #[arg(long)]
    stop_instances_on_exit: bool,
    /// On Kubernetes: the Node this agent runs on. Its topology labels are reported to the
    /// control plane and cordoning it acts per --kube-on-cordon (needs get and watch on
    /// nodes). Unset: the agent does not talk to Kubernetes.
    #[arg(long, env = "FLOTILLA_KUBE_NODE")]
    kube_node: Option<String>,
    /// Serve gRPC health on this address (`host:port`): `""` while the agent runs, `session`
    /// while a session with the control plane is open (for Kubernetes probes).
    #[arg(long)]
    health_listen: Option<String>,
    /// Serve Prometheus metrics (`GET /metrics`, plaintext HTTP) on this `host:port`.
    #[arg(long, env = "FLOTILLA_AGENT_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// What cordoning the Kubernetes Node does to the Flotilla node.
    #[arg(long, value_enum, default_value = "cordon")]
    kube_on_cordon: flotilla_agent::kube::OnCordon,
    /// PEM CA bundle the control plane's certificate must chain to.
    #[arg(long, env = "FLOTILLA_AGENT_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// PEM certificate of this node (identity `flotilla://agent/<node-id>`); re-read on
    /// every reconnect, so a rotated file is used from the next session on.
    #[arg(long, env = "FLOTILLA_AGENT_TLS_CERT", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "FLOTILLA_AGENT_TLS_KEY", requires = "tls_ca")]
    tls_key: Option<PathBuf>,
    /// Server name to check the control plane's certificate against (default: the host of
    /// each address).
    #[arg(long, env = "FLOTILLA_AGENT_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    /// Talk plaintext to a control plane started with --insecure.
    #[arg(long, env = "FLOTILLA_AGENT_INSECURE", conflicts_with = "tls_ca")]
    insecure: bool,
    /// On Kubernetes: this agent's own Pod, labelled `instance.flotilla.io/<instance>` for
    /// each instance it runs, so Services can select the pod running one nameserver (needs
    /// get and patch on pods in --kube-namespace). Unset: the Pod is not labelled.
    #[arg(long, env = "FLOTILLA_KUBE_POD", requires = "kube_namespace")]
    kube_pod: Option<String>,
    /// The namespace of --kube-pod.
    #[arg(long, env = "FLOTILLA_KUBE_NAMESPACE")]
    kube_namespace: Option<String>,
    #[command(flatten)]
    log: flotilla_metrics::logging::LogArgs,
}

fn parse_labels(s: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("label {part:?} is not k=v"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init();
    let tls = ClientTls::from_parts(
        args.tls_ca.clone(),
        args.tls_cert.clone(),
        args.tls_key.clone(),
        args.tls_server_name.clone(),
    )?;
    if tls.is_none() && !args.insecure {
        anyhow::bail!(
            "no TLS configured: give --tls-ca, --tls-cert and --tls-key (`flotilla certs init` \
             writes a set), or --insecure for a control plane started with --insecure"
        );
    }
    if tls.is_none() {
        tracing::warn!("INSECURE: talking plaintext to the control plane (--insecure)");
    }
    if std::env::var_os(CHECK_ARGS).is_some() {
        let labels = parse_labels(&args.labels)?;
        println!("{args:#?}\n{labels:?}");
        return Ok(());
    }
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("cannot tell the agent's own directory"))?,
    };
    let data_dir = if args.data_dir.is_absolute() {
        args.data_dir
    } else {
        std::env::current_dir()?.join(args.data_dir)
    };
    let control_plane = args.control_plane.clone();
    let cfg = AgentConfig {
        control_plane: args.control_plane,
        node_id: args.node_id,
        data_dir,
        advertise_address: args.advertise_address,
        labels: parse_labels(&args.labels)?,
        bin_dir,
        report_interval: Duration::from_secs(args.report_interval_secs.clamp(1, 5)),
        tick_interval: Duration::from_millis(500),
        stop_instances_on_exit: args.stop_instances_on_exit,
        tls,
    };
    let agent = Agent::new(cfg)?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let _metrics = match &args.metrics_listen {
        Some(addr) => {
            let m = agent.metrics();
            Some(
                flotilla_metrics::MetricsServer::start(
                    addr,
                    std::sync::Arc::new(move || m.render()),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            )
        }
        None => None,
    };
    if let Some(addr) = &args.health_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding the health address {addr}: {e}"))?;
        tokio::spawn(flotilla_agent::health::serve(
            listener,
            agent.session_state(),
            rx.clone(),
        ));
    }
    if let (Some(pod), Some(namespace)) = (&args.kube_pod, &args.kube_namespace) {
        let client = flotilla_agent::kube::client().await?;
        tokio::spawn(flotilla_agent::kube::pod_labels::run(
            client,
            namespace.clone(),
            pod.clone(),
            agent.supervisor(),
            rx.clone(),
        ));
    }
    if let Some(node) = &args.kube_node {
        let client = flotilla_agent::kube::client().await?;
        flotilla_agent::kube::spawn(
            agent.clone(),
            client,
            node,
            &control_plane,
            args.kube_on_cordon,
            rx.clone(),
        );
    }
    let run = tokio::spawn(agent.run(rx));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    let _ = tx.send(true);
    run.await?;
    Ok(())
}

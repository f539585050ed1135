//! `flotilla-cp`: the Flotilla control-plane binary.
//!
//! ```text
//! flotilla-cp [--listen 127.0.0.1:7443] [--store embedded:<dir> | --etcd-endpoints a,b,c]
//!             [--advertise NAME] [--node-heartbeat-timeout 15s] [--resync-interval 60s]
//!             (--tls-cert F --tls-key F --tls-client-ca F [--tokens F] | --insecure)
//! ```
//!
//! The port is mutual TLS: agents, replicas and users present certificates from the client
//! CA (`flotilla certs init` makes a set), users may instead send a bearer token from the
//! `--tokens` file. Plaintext with no authentication only with an explicit `--insecure`.
//!
//! Replicas sharing one etcd elect a leader; the others forward API calls and agent streams
//! to it (`--advertise` must then be a `host:port` the replicas can dial; the default is the
//! listen address). With `--no-forward` they answer writes UNAVAILABLE naming the leader.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use flotilla_cp::security::{Security, TlsFiles, TlsSettings};
use flotilla_cp::{Config, ControlPlane};
use flotilla_intent_store::{EmbeddedOptions, LeasesOnReopen, StoreSpec};
use tracing::info;

/// With this variable set the binary parses its flags and environment, checks the store
/// spec, prints what it understood and exits 0 without starting anything: the packaging
/// tests run the Helm chart's and the systemd units' arguments through it.
const CHECK_ARGS: &str = "FLOTILLA_CHECK_ARGS";

#[derive(Debug, Parser)]
#[command(name = "flotilla-cp", version, about = "Flotilla control plane")]
struct Args {
    /// gRPC address for the API and the agent service.
    #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_CP_LISTEN")]
    listen: String,
    /// Intent store: `embedded:<dir>` (default `embedded:./flotilla-data`) or `etcd:<a,b,c>`.
    #[arg(long, env = "FLOTILLA_CP_STORE")]
    store: Option<String>,
    /// etcd endpoints (`host:port,host:port`); the HA backend.
    #[arg(long, env = "FLOTILLA_CP_ETCD_ENDPOINTS")]
    etcd_endpoints: Option<String>,
    /// Name this replica is known by (default: the listen address).
    #[arg(long, env = "FLOTILLA_CP_ADVERTISE")]
    advertise: Option<String>,
    /// A node without reports for this long turns NotReady.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    node_heartbeat_timeout: Duration,
    /// Every cluster is reconciled at least this often.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    resync_interval: Duration,
    /// TTL of the leader lease.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    leader_lease_ttl: Duration,
    /// Clusters reconciled in parallel.
    #[arg(long, default_value_t = 2)]
    reconcile_workers: usize,
    /// Answer NOT_LEADER on a follower instead of forwarding calls and agent streams to the
    /// leader (forwarding needs `--advertise` to be an address the replicas can dial).
    #[arg(long)]
    no_forward: bool,
    /// PEM certificate chain this replica presents.
    #[arg(long, env = "FLOTILLA_CP_TLS_CERT", requires_all = ["tls_key", "tls_client_ca"])]
    tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "FLOTILLA_CP_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle that agent, replica and user certificates must chain to.
    #[arg(long, env = "FLOTILLA_CP_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Bearer tokens: one `token,role,name` line each (role admin, operator or viewer).
    #[arg(long, env = "FLOTILLA_CP_TOKENS", requires = "tls_cert")]
    tokens: Option<PathBuf>,
    /// How often changed certificate, CA and token files are reloaded.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    tls_reload_interval: Duration,
    /// Also serve gRPC health alone, plaintext, on this `host:port` (for Kubernetes' gRPC
    /// probes, which cannot speak TLS).
    #[arg(long, env = "FLOTILLA_CP_HEALTH_LISTEN")]
    health_listen: Option<String>,
    /// Serve Prometheus metrics (`GET /metrics`, plaintext HTTP) on this `host:port`.
    #[arg(long, env = "FLOTILLA_CP_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Audit records kept in the store (newest first); older ones are removed.
    #[arg(long, env = "FLOTILLA_CP_AUDIT_RETENTION", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    audit_retention: u64,
    /// Serve plaintext gRPC with no authentication: anyone who reaches the port controls the
    /// fleet. For a laptop or a test only.
    #[arg(long, env = "FLOTILLA_CP_INSECURE", conflicts_with = "tls_cert")]
    insecure: bool,
    #[command(flatten)]
    log: flotilla_metrics::logging::LogArgs,
}

impl Args {
    fn security(&self) -> anyhow::Result<Security> {
        if self.insecure {
            return Ok(Security::Insecure);
        }
        match (&self.tls_cert, &self.tls_key, &self.tls_client_ca) {
            (Some(cert), Some(key), Some(ca)) => Ok(Security::Tls(TlsSettings {
                files: TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: ca.clone(),
                },
                tokens: self.tokens.clone(),
                reload_interval: self.tls_reload_interval,
            })),
            _ => anyhow::bail!(
                "no TLS configured: give --tls-cert, --tls-key and --tls-client-ca (`flotilla \
                 certs init` writes a set), or --insecure to serve plaintext to anyone"
            ),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init();
    flotilla_cp::failpoints::setup_from_env()?;
    let security = args.security()?;
    let spec = StoreSpec::from_flags(
        args.store.as_deref(),
        args.etcd_endpoints.as_deref(),
        Path::new("./flotilla-data"),
    )?;
    if std::env::var_os(CHECK_ARGS).is_some() {
        println!("{args:#?}\n{spec:?}\n{security:?}");
        return Ok(());
    }
    // A restarted single control plane must not wait for its old candidate key.
    let store = spec
        .open_with(EmbeddedOptions {
            leases_on_reopen: LeasesOnReopen::Expire,
            ..EmbeddedOptions::default()
        })
        .await
        .with_context(|| format!("opening store {spec:?}"))?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let advertise = args.advertise.unwrap_or_else(|| args.listen.clone());
    if advertise
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_unspecified())
    {
        tracing::warn!(
            %advertise,
            "the advertise name is an unspecified address: other replicas cannot forward to \
             this one; set --advertise to a host:port they can dial"
        );
    }
    let config = Config {
        advertise,
        node_heartbeat_timeout: args.node_heartbeat_timeout,
        resync_interval: args.resync_interval,
        leader_lease_ttl: args.leader_lease_ttl,
        reconcile_workers: args.reconcile_workers,
        forward_to_leader: !args.no_forward,
        security,
        health_listen: args.health_listen.clone(),
        metrics_listen: args.metrics_listen.clone(),
        audit_retention: usize::try_from(args.audit_retention)
            .unwrap_or(flotilla_cp::audit::DEFAULT_RETENTION),
        ..Config::default()
    };
    if config.security.is_insecure() {
        tracing::warn!(
            listen = %args.listen,
            "INSECURE: plaintext gRPC with no authentication (--insecure); anyone who can \
             reach this port can change every cluster"
        );
    }
    let cp = ControlPlane::start(config, store, listener).await?;
    info!(addr = %cp.addr, backend = cp.ctx.store.backend(), "started");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = cp.wait() => { r?; }
    }
    info!("shutting down");
    cp.shutdown().await;
    Ok(())
}

//! Rendering an `Instance` into what its process runs with: the RocketMQ properties file,
//! the DLedger peer string, the command line and the address it serves on.
//!
//! The control plane sends each instance's config as a key/value map; the process reads a
//! properties file (`broker.conf`, `namesrv.conf`) in the instance directory. Rendering is
//! canonical (keys sorted, one `key=value` per line) so the same map always gives the same
//! bytes. `dLegerPeers` is derived from `Instance.dledger_peers`, so a peer that moves only
//! needs a new desired state. Peer strings follow RocketMQ (`n0-host:port;n1-host:port`) and
//! are split on the first `-` only, so host names with hyphens work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flotilla_proto::agent::v1::{DLedgerPeer, Instance};
use flotilla_proto::v1::{InstanceKind, storage::Mode};
use sha2::{Digest, Sha256};

/// An instance spec cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The instance kind is unspecified or unknown.
    #[error("instance {0} has no known kind")]
    UnknownKind(String),
    /// A config key or value contains a line break.
    #[error("instance {name}: config key {key:?} has a line break")]
    LineBreak {
        /// Instance.
        name: String,
        /// The key.
        key: String,
    },
    /// A DLedger peer string entry is not `id-host:port`.
    #[error("bad DLedger peer {0:?}: expected id-host:port")]
    BadPeer(String),
    /// HOST_PATH storage without an absolute path.
    #[error("instance {0}: HOST_PATH storage needs an absolute host_path")]
    BadHostPath(String),
}

impl RenderError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownKind(_) => "RENDER_UNKNOWN_KIND",
            Self::LineBreak { .. } => "RENDER_LINE_BREAK",
            Self::BadPeer(_) => "RENDER_BAD_PEER",
            Self::BadHostPath(_) => "RENDER_BAD_HOST_PATH",
        }
    }
}

/// `n0-host:port;n1-host:port` from the peer list (in the given order).
pub fn render_dledger_peers(peers: &[DLedgerPeer]) -> String {
    peers
        .iter()
        .map(|p| format!("{}-{}", p.self_id, p.address))
        .collect::<Vec<_>>()
        .join(";")
}

/// Parses a `dLegerPeers` string, splitting each entry on its first `-` only.
pub fn parse_dledger_peers(s: &str) -> Result<Vec<DLedgerPeer>, RenderError> {
    s.split(';')
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let e = e.trim();
            match e.split_once('-') {
                Some((id, addr)) if !id.is_empty() && addr.contains(':') => Ok(DLedgerPeer {
                    self_id: id.to_string(),
                    address: addr.to_string(),
                }),
                _ => Err(RenderError::BadPeer(e.to_string())),
            }
        })
        .collect()
}

/// Canonical properties text: sorted `key=value` lines. Backslashes are escaped as Java's
/// `Properties` expects; line breaks are refused.
pub fn render_properties(
    name: &str,
    config: &BTreeMap<String, String>,
) -> Result<String, RenderError> {
    let mut out = String::new();
    for (k, v) in config {
        if k.contains(['\n', '\r']) || v.contains(['\n', '\r']) {
            return Err(RenderError::LineBreak {
                name: name.to_string(),
                key: k.clone(),
            });
        }
        out.push_str(&k.replace('\\', "\\\\"));
        out.push('=');
        out.push_str(&v.replace('\\', "\\\\"));
        out.push('\n');
    }
    Ok(out)
}

/// sha256 (hex) of a canonical config map: what the agent records when the control plane
/// sent no hash.
pub fn config_hash(config: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in config {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The kind of an instance.
pub fn kind(inst: &Instance) -> Result<InstanceKind, RenderError> {
    match InstanceKind::try_from(inst.kind) {
        Ok(k @ (InstanceKind::Broker | InstanceKind::Namesrv)) => Ok(k),
        _ => Err(RenderError::UnknownKind(inst.name.clone())),
    }
}

/// The instance's directory: `<host_path>/<cluster>/<name>` for HOST_PATH storage, else
/// `Instance.data_dir`, else `<agent data dir>/data/<name>`.
pub fn instance_dir(inst: &Instance, agent_data_dir: &Path) -> Result<PathBuf, RenderError> {
    if let Some(st) = &inst.storage
        && st.mode == Mode::HostPath as i32
    {
        let hp = Path::new(&st.host_path);
        if !hp.is_absolute() {
            return Err(RenderError::BadHostPath(inst.name.clone()));
        }
        return Ok(hp.join(&inst.cluster).join(&inst.name));
    }
    if !inst.data_dir.is_empty() && Path::new(&inst.data_dir).is_absolute() {
        return Ok(PathBuf::from(&inst.data_dir));
    }
    Ok(agent_data_dir.join("data").join(&inst.name))
}

/// Whether the instance's data is removed with it (everything but HOST_PATH).
pub fn is_ephemeral(inst: &Instance) -> bool {
    inst.storage
        .as_ref()
        .is_none_or(|s| s.mode != Mode::HostPath as i32)
}

/// The config the process runs with: the control plane's map, plus `dLegerPeers` from the
/// peer list and defaults the agent owns (store dir, listen port) when absent.
pub fn effective_config(inst: &Instance, dir: &Path) -> BTreeMap<String, String> {
    let mut cfg: BTreeMap<String, String> = inst
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if inst.kind == InstanceKind::Broker as i32 {
        if !inst.dledger_peers.is_empty() {
            cfg.insert(
                "dLegerPeers".to_string(),
                render_dledger_peers(&inst.dledger_peers),
            );
        }
        // Bind where the broker is advertised (not the wildcard), so brokers of several
        // nodes sharing one machine (127.0.0.x) never collide and tests stay on loopback.
        if let Some(ip) = cfg.get("brokerIP1").cloned() {
            cfg.entry("bindAddress".to_string()).or_insert(ip);
        }
        cfg.entry("storePathRootDir".to_string())
            .or_insert_with(|| dir.join("store").display().to_string());
        if let Some(p) = inst.ports.as_ref().filter(|p| p.listen > 0) {
            cfg.entry("listenPort".to_string())
                .or_insert_with(|| p.listen.to_string());
        }
    } else if inst.kind == InstanceKind::Namesrv as i32 {
        if let Some(p) = inst.ports.as_ref().filter(|p| p.listen > 0) {
            cfg.entry("listen".to_string())
                .or_insert_with(|| format!("127.0.0.1:{}", p.listen));
        }
        // Each nameserver keeps its KV config in its own directory, never in a shared
        // `$HOME/namesrv`, so several nameservers on one machine stay apart.
        cfg.entry("kvConfigPath".to_string())
            .or_insert_with(|| dir.join("kvConfig.json").display().to_string());
    }
    cfg
}

/// The config file name of a kind.
pub fn config_file_name(kind: InstanceKind) -> &'static str {
    match kind {
        InstanceKind::Namesrv => "namesrv.conf",
        _ => "broker.conf",
    }
}

/// Program name and arguments (relative to the bin dir) for an instance.
pub fn command_line(
    kind: InstanceKind,
    cfg: &BTreeMap<String, String>,
    config_file: &Path,
) -> (&'static str, Vec<String>) {
    match kind {
        InstanceKind::Namesrv => {
            let listen = cfg
                .get("listen")
                .cloned()
                .unwrap_or_else(|| "127.0.0.1:9876".to_string());
            (
                "flotilla-namesrv",
                vec![
                    "-c".to_string(),
                    config_file.display().to_string(),
                    "--listen".to_string(),
                    listen,
                ],
            )
        }
        _ => (
            "flotilla-broker",
            vec!["-c".to_string(), config_file.display().to_string()],
        ),
    }
}

/// The program to run: `Instance.version` when it is an absolute path (a specific binary),
/// else `prog` in the agent's bin dir.
pub fn program_path(bin_dir: &Path, inst: &Instance, prog: &str) -> PathBuf {
    if inst.version.starts_with('/') {
        PathBuf::from(&inst.version)
    } else {
        bin_dir.join(prog)
    }
}

/// The `host:port` the process serves clients on, as the agent probes it (wildcard hosts
/// are probed on loopback).
pub fn listen_address(kind: InstanceKind, cfg: &BTreeMap<String, String>) -> String {
    let (host, port) = match kind {
        InstanceKind::Namesrv => match cfg.get("listen").and_then(|l| l.rsplit_once(':')) {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => ("127.0.0.1".to_string(), "9876".to_string()),
        },
        _ => (
            cfg.get("brokerIP1")
                .cloned()
                .unwrap_or_else(|| "127.0.0.1".to_string()),
            cfg.get("listenPort")
                .cloned()
                .unwrap_or_else(|| "10911".to_string()),
        ),
    };
    let host = if host.is_empty() || host == "0.0.0.0" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_proto::agent::v1::Ports;
    use flotilla_proto::v1::Storage;

    fn peers() -> Vec<DLedgerPeer> {
        vec![
            DLedgerPeer {
                self_id: "n0".into(),
                address: "node-a.example:40911".into(),
            },
            DLedgerPeer {
                self_id: "n1".into(),
                address: "my-host-b:40912".into(),
            },
            DLedgerPeer {
                self_id: "n2".into(),
                address: "127.0.0.1:40913".into(),
            },
        ]
    }

    #[test]
    fn dledger_peers_with_hyphenated_hosts() {
        let s = render_dledger_peers(&peers());
        assert_eq!(
            s,
            "n0-node-a.example:40911;n1-my-host-b:40912;n2-127.0.0.1:40913"
        );
        assert_eq!(parse_dledger_peers(&s).unwrap(), peers());
        assert_eq!(
            parse_dledger_peers("n0:x").unwrap_err().code(),
            "RENDER_BAD_PEER"
        );
    }

    #[test]
    fn renders_sorted_properties_and_broker_defaults() {
        let mut inst = Instance {
            name: "c-0-0".into(),
            kind: InstanceKind::Broker as i32,
            cluster: "c".into(),
            dledger_peers: peers(),
            ports: Some(Ports {
                listen: 10911,
                ha: 10912,
                dledger: 40911,
            }),
            ..Instance::default()
        };
        inst.config
            .insert("namesrvAddr".into(), "127.0.0.1:9876".into());
        inst.config.insert("brokerName".into(), "c-0".into());
        inst.config.insert("brokerIP1".into(), "127.0.0.1".into());
        let dir = Path::new("/data/c-0-0");
        let cfg = effective_config(&inst, dir);
        let text = render_properties("c-0-0", &cfg).unwrap();
        assert_eq!(
            text,
            "bindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\nbrokerName=c-0\n\
             dLegerPeers=n0-node-a.example:40911;n1-my-host-b:40912;n2-127.0.0.1:40913\n\
             listenPort=10911\nnamesrvAddr=127.0.0.1:9876\nstorePathRootDir=/data/c-0-0/store\n"
        );
        assert_eq!(
            listen_address(InstanceKind::Broker, &cfg),
            "127.0.0.1:10911"
        );
        let (prog, args) = command_line(InstanceKind::Broker, &cfg, &dir.join("broker.conf"));
        assert_eq!(prog, "flotilla-broker");
        assert_eq!(args, vec!["-c", "/data/c-0-0/broker.conf"]);
        assert_eq!(config_hash(&cfg), config_hash(&cfg.clone()));
        inst.config.insert("bad".into(), "a\nb".into());
        let cfg = effective_config(&inst, dir);
        assert_eq!(
            render_properties("c-0-0", &cfg).unwrap_err().code(),
            "RENDER_LINE_BREAK"
        );
    }

    #[test]
    fn namesrv_command_and_dirs() {
        let mut inst = Instance {
            name: "c-namesrv-0".into(),
            kind: InstanceKind::Namesrv as i32,
            cluster: "c".into(),
            ..Instance::default()
        };
        inst.config.insert("listen".into(), "127.0.0.1:9999".into());
        let cfg = effective_config(&inst, Path::new("/x"));
        let (prog, args) = command_line(InstanceKind::Namesrv, &cfg, Path::new("/x/n.conf"));
        assert_eq!(prog, "flotilla-namesrv");
        assert_eq!(args, vec!["-c", "/x/n.conf", "--listen", "127.0.0.1:9999"]);
        assert_eq!(
            cfg.get("kvConfigPath").map(String::as_str),
            Some("/x/kvConfig.json"),
            "each nameserver keeps its own KV config"
        );
        assert_eq!(
            listen_address(InstanceKind::Namesrv, &cfg),
            "127.0.0.1:9999"
        );
        assert_eq!(
            instance_dir(&inst, Path::new("/agent")).unwrap(),
            PathBuf::from("/agent/data/c-namesrv-0")
        );
        assert!(is_ephemeral(&inst));
        inst.storage = Some(Storage {
            mode: Mode::HostPath as i32,
            host_path: "/srv/mq".into(),
        });
        assert_eq!(
            instance_dir(&inst, Path::new("/agent")).unwrap(),
            PathBuf::from("/srv/mq/c/c-namesrv-0")
        );
        assert!(!is_ephemeral(&inst));
        inst.storage = Some(Storage {
            mode: Mode::HostPath as i32,
            host_path: "rel".into(),
        });
        assert!(instance_dir(&inst, Path::new("/agent")).is_err());
        inst.kind = 0;
        assert_eq!(kind(&inst).unwrap_err().code(), "RENDER_UNKNOWN_KIND");
    }
}

//! TLS towards the control plane, and the identities Flotilla certificates carry.
//!
//! Every Flotilla certificate names who holds it in one URI subject-alternative name,
//! `flotilla://<kind>/<name>`: `control-plane/<replica>`, `agent/<node-id>`, or a person or
//! program with a role, `admin/<name>`, `operator/<name>`, `viewer/<name>`. The control plane
//! reads that name off the verified client certificate, so an agent's certificate is bound to
//! one node id and a CLI certificate to one role; `flotilla certs init` writes such
//! certificates for a test or small install, and any CA that puts the same URI in its
//! certificates works as well.
//!
//! The files are read on every [`ClientTls::load`] — each (re)connect — so a rotated
//! certificate is picked up by the next connection without restarting the agent or CLI.

use std::fmt;
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The URI scheme of Flotilla identities.
pub const SCHEME: &str = "flotilla";

/// What a caller may do on the public API. Each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads and watches.
    Viewer,
    /// Also runs business operations: topics, groups, offsets, messages.
    Operator,
    /// Also changes clusters, nodes and operations.
    Admin,
}

impl Role {
    /// The role's name as in certificates and token files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses `admin`, `operator` or `viewer`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who a certificate (or token) says its holder is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A control-plane replica (it forwards callers' requests to the leader).
    ControlPlane(String),
    /// The agent of one node.
    Agent(String),
    /// A user or program with a role.
    User {
        /// Its name (for audit records).
        name: String,
        /// What it may do.
        role: Role,
    },
}

impl Principal {
    /// `flotilla://<kind>/<name>`.
    pub fn uri(&self) -> String {
        match self {
            Principal::ControlPlane(n) => format!("{SCHEME}://control-plane/{n}"),
            Principal::Agent(n) => format!("{SCHEME}://agent/{n}"),
            Principal::User { name, role } => format!("{SCHEME}://{}/{name}", role.as_str()),
        }
    }

    /// Parses `flotilla://<kind>/<name>`; anything else is not a Flotilla identity.
    pub fn parse_uri(uri: &str) -> Option<Principal> {
        let rest = uri.strip_prefix(SCHEME)?.strip_prefix("://")?;
        let (kind, name) = rest.split_once('/')?;
        if name.is_empty() || name.contains('/') || !name.chars().all(is_name_char) {
            return None;
        }
        let name = name.to_string();
        match kind {
            "control-plane" => Some(Principal::ControlPlane(name)),
            "agent" => Some(Principal::Agent(name)),
            k => Role::parse(k).map(|role| Principal::User { name, role }),
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '@')
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// Reading TLS files failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A client certificate was given without its key, or the other way round.
    #[error("a client certificate needs both a certificate file and a key file")]
    HalfIdentity,
}

impl TlsError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::Read { .. } => "TLS_FILE_UNREADABLE",
            TlsError::HalfIdentity => "TLS_HALF_IDENTITY",
        }
    }
}

/// Where a client finds its CA and (optionally) its own certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA bundle the control plane's certificate must chain to.
    pub ca: PathBuf,
    /// PEM certificate and key presented to the control plane.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Server name to verify instead of the host dialled.
    pub domain: Option<String>,
}

impl ClientTls {
    /// A client that verifies the control plane against `ca` and presents no certificate.
    pub fn new(ca: impl Into<PathBuf>) -> Self {
        Self {
            ca: ca.into(),
            identity: None,
            domain: None,
        }
    }

    /// Builds from optional paths (as flags or environment give them): `None` without a CA.
    pub fn from_parts(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        domain: Option<String>,
    ) -> Result<Option<Self>, TlsError> {
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(TlsError::HalfIdentity),
        };
        Ok(ca.map(|ca| Self {
            ca,
            identity,
            domain,
        }))
    }

    /// Presents `cert` and `key`.
    pub fn with_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Reads the files now and builds tonic's client configuration for `host`.
    pub fn load(&self, host: &str) -> Result<ClientTlsConfig, TlsError> {
        let mut cfg = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .domain_name(self.domain.clone().unwrap_or_else(|| host.to_string()));
        if let Some((cert, key)) = &self.identity {
            cfg = cfg.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(cfg)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_junk_is_not_one() {
        for p in [
            Principal::ControlPlane("cp-0".into()),
            Principal::Agent("ip-10-0-0-1.ec2.internal".into()),
            Principal::User {
                name: "ops@example".into(),
                role: Role::Operator,
            },
        ] {
            assert_eq!(Principal::parse_uri(&p.uri()), Some(p));
        }
        for junk in [
            "flotilla://agent/",
            "flotilla://agent/a/b",
            "flotilla://root/x",
            "spiffe://agent/n1",
            "flotilla:/agent/n1",
            "flotilla://agent/n 1",
        ] {
            assert_eq!(Principal::parse_uri(junk), None, "{junk}");
        }
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let e = ClientTls::from_parts(Some("ca".into()), Some("c".into()), None, None);
        assert_eq!(e, Err(TlsError::HalfIdentity));
        assert_eq!(ClientTls::from_parts(None, None, None, None), Ok(None));
    }
}

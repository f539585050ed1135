//! `flotilla certs init|issue`: a CA and certificates for a test or small install.
//!
//! The control plane speaks mutual TLS and reads who a caller is from one URI name in its
//! certificate (`flotilla://agent/<node>`, `flotilla://admin/<name>`, …; see
//! `flotilla_client::tls`). Larger installs bring their own CA (cert-manager, Vault) and put
//! the same URIs in; this command is for everyone else: `init` writes a CA, the control
//! plane's certificate, one per agent and an admin client certificate; `issue` adds one more
//! signed by the same CA (a new node, a viewer for a dashboard). Keys are written 0600.
//! Certificates are ECDSA P-256.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use flotilla_client::{Principal, Role};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// The request is malformed.
    #[error("{field}: {reason}")]
    Invalid {
        /// The flag.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A file exists and `--force` was not given.
    #[error("{0} exists (use --force to overwrite)")]
    Exists(String),
    /// Reading or writing a file failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rcgen refused.
    #[error("certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl CertsError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            CertsError::Invalid { .. } => "INVALID_ARGUMENT",
            CertsError::Exists(_) => "CERT_EXISTS",
            CertsError::Io { .. } => "CERT_IO",
            CertsError::Generate(_) => "CERT_GENERATE",
        }
    }
}

/// What to write.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Output directory.
    pub dir: PathBuf,
    /// Nodes to issue agent certificates for.
    pub nodes: Vec<String>,
    /// Extra names or IPs of the control plane (besides localhost, 127.0.0.1, ::1).
    pub hosts: Vec<String>,
    /// `name:role` users.
    pub users: Vec<String>,
    /// Validity in days.
    pub days: u32,
    /// Overwrite existing files.
    pub force: bool,
    /// Also issue the control plane's certificate (`issue --control-plane`).
    pub control_plane: bool,
}

fn io_err(path: &Path, e: impl ToString) -> CertsError {
    CertsError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn write(path: &Path, text: &str, secret: bool, force: bool) -> Result<(), CertsError> {
    if path.exists() && !force {
        return Err(CertsError::Exists(path.display().to_string()));
    }
    std::fs::write(path, text).map_err(|e| io_err(path, e))?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err(path, e))?;
    }
    Ok(())
}

fn validity(p: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back covers clocks a little behind the issuer's.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(i64::from(days));
}

fn san_uri(p: &Principal) -> Result<SanType, CertsError> {
    Ok(SanType::URI(p.uri().try_into()?))
}

/// The CA's files in `dir`.
fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.crt"), dir.join("ca.key"))
}

fn parse_user(s: &str) -> Result<Principal, CertsError> {
    let (name, role) = s.split_once(':').unwrap_or((s, "admin"));
    let role = Role::parse(role).ok_or_else(|| CertsError::Invalid {
        field: "--user",
        reason: format!("{s:?}: the role must be admin, operator or viewer"),
    })?;
    let p = Principal::User {
        name: name.to_string(),
        role,
    };
    if name.is_empty() || Principal::parse_uri(&p.uri()).is_none() {
        return Err(CertsError::Invalid {
            field: "--user",
            reason: format!("{s:?}: the name must be letters, digits, '-', '.', '_' or '@'"),
        });
    }
    Ok(p)
}

fn parse_node(n: &str) -> Result<Principal, CertsError> {
    let p = Principal::Agent(n.to_string());
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !ok || Principal::parse_uri(&p.uri()).is_none() {
        return Err(CertsError::Invalid {
            field: "--node",
            reason: format!("{n:?} is not a node name (lowercase letters, digits, '-', '.')"),
        });
    }
    Ok(p)
}

/// One leaf certificate: `who`'s identity, extra DNS/IP names, client and/or server use.
fn leaf(
    who: &Principal,
    names: &[String],
    server: bool,
    days: u32,
) -> Result<CertificateParams, CertsError> {
    let mut p = CertificateParams::default();
    validity(&mut p, days);
    p.distinguished_name.push(
        DnType::CommonName,
        who.uri().trim_start_matches("flotilla://"),
    );
    p.subject_alt_names.push(san_uri(who)?);
    for n in names {
        p.subject_alt_names.push(match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into()?),
        });
    }
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if server {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    Ok(p)
}

fn issue_one(
    dir: &Path,
    file: &str,
    params: CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
    force: bool,
) -> Result<Vec<PathBuf>, CertsError> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    let (c, k) = (
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    );
    write(&c, &cert.pem(), false, force)?;
    write(&k, &key.serialize_pem(), true, force)?;
    Ok(vec![c, k])
}

fn control_plane_names(hosts: &[String]) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for h in hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    names
}

fn leaves(req: &Request, issuer: &Issuer<'_, KeyPair>) -> Result<Vec<PathBuf>, CertsError> {
    let mut written = Vec::new();
    if req.control_plane {
        let who = Principal::ControlPlane("control-plane".into());
        let p = leaf(&who, &control_plane_names(&req.hosts), true, req.days)?;
        written.extend(issue_one(&req.dir, "control-plane", p, issuer, req.force)?);
    }
    for n in &req.nodes {
        let who = parse_node(n)?;
        let p = leaf(&who, &[], false, req.days)?;
        written.extend(issue_one(
            &req.dir,
            &format!("agent-{n}"),
            p,
            issuer,
            req.force,
        )?);
    }
    for u in &req.users {
        let who = parse_user(u)?;
        let Principal::User { name, .. } = &who else {
            continue;
        };
        let p = leaf(&who, &[], false, req.days)?;
        written.extend(issue_one(
            &req.dir,
            &format!("user-{name}"),
            p,
            issuer,
            req.force,
        )?);
    }
    Ok(written)
}

/// `certs init`: a new CA in `dir`, the control plane's certificate, agents' and users'
/// (an `admin` user when none is named).
pub fn init(mut req: Request) -> Result<Vec<PathBuf>, CertsError> {
    std::fs::create_dir_all(&req.dir).map_err(|e| io_err(&req.dir, e))?;
    let (ca_crt, ca_key) = ca_paths(&req.dir);
    let mut p = CertificateParams::default();
    validity(&mut p, req.days.max(1).saturating_mul(2));
    p.distinguished_name.push(DnType::CommonName, "Flotilla CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    write(&ca_crt, &cert.pem(), false, req.force)?;
    write(&ca_key, &key.serialize_pem(), true, req.force)?;
    let issuer = Issuer::new(p, key);
    if req.users.is_empty() {
        req.users.push("admin:admin".into());
    }
    req.control_plane = true;
    let mut written = vec![ca_crt, ca_key];
    written.extend(leaves(&req, &issuer)?);
    Ok(written)
}

/// `certs issue`: more certificates signed by the CA already in `dir`.
pub fn issue(req: Request) -> Result<Vec<PathBuf>, CertsError> {
    let (ca_crt, ca_key) = ca_paths(&req.dir);
    let crt = std::fs::read_to_string(&ca_crt).map_err(|e| io_err(&ca_crt, e))?;
    let key = std::fs::read_to_string(&ca_key).map_err(|e| io_err(&ca_key, e))?;
    let key = KeyPair::from_pem(&key)?;
    let issuer = Issuer::from_ca_cert_pem(&crt, key)?;
    if req.nodes.is_empty() && req.users.is_empty() && !req.control_plane {
        return Err(CertsError::Invalid {
            field: "--node",
            reason: "name at least one --node, --user or --control-plane".into(),
        });
    }
    leaves(&req, &issuer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_chain_whose_leaves_name_their_holders() {
        let dir = tempfile::tempdir().unwrap();
        let files = init(Request {
            dir: dir.path().into(),
            nodes: vec!["n1".into(), "ip-10-0-0-1.ec2.internal".into()],
            days: 30,
            ..Request::default()
        })
        .unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for f in [
            "ca.crt",
            "control-plane.crt",
            "agent-n1.key",
            "agent-ip-10-0-0-1.ec2.internal.crt",
            "user-admin.crt",
        ] {
            assert!(names.contains(&f.to_string()), "{f} in {names:?}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "keys are private");
        // A second init refuses to overwrite the CA.
        let again = init(Request {
            dir: dir.path().into(),
            days: 30,
            ..Request::default()
        });
        assert!(matches!(again, Err(CertsError::Exists(_))), "{again:?}");
        // issue signs with the same CA.
        issue(Request {
            dir: dir.path().into(),
            users: vec!["grafana:viewer".into()],
            days: 30,
            ..Request::default()
        })
        .unwrap();
        assert!(dir.path().join("user-grafana.crt").exists());
    }

    #[test]
    fn bad_names_and_roles_are_refused() {
        assert!(parse_user("bob:root").is_err());
        assert!(parse_user("b b:admin").is_err());
        assert!(parse_node("N1").is_err());
        assert!(parse_node("").is_err());
        assert_eq!(
            parse_user("bob").unwrap(),
            Principal::User {
                name: "bob".into(),
                role: Role::Admin
            }
        );
    }
}

//! The control plane's port is mutual TLS with identities in the certificates (issue #19):
//! real `flotilla-cp`, `flotilla-agent` and `flotilla` processes with certificates from
//! `flotilla certs init`.
//!
//! - an agent with its node's certificate connects and its node turns up;
//! - a session without a client certificate, with one from another CA, or claiming another
//!   node id is refused (and that node never registers);
//! - a viewer token reads but cannot mutate; no credentials at all is UNAUTHENTICATED;
//! - a rotated server certificate is served to new connections without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use flotilla_client::{ClientTls, Connector};
use flotilla_proto::agent::v1::agent_service_client::AgentServiceClient;
use flotilla_proto::agent::v1::{AgentMessage, Hello, agent_message};
use flotilla_tests::{Proc, bin_path, free_port, wait_for_port, wait_until};
use tokio_stream::StreamExt;

const WAIT: Duration = Duration::from_secs(60);
const VIEWER: &str = "viewer-token-0123456789";
const OPERATOR: &str = "operator-token-0123456789";

fn certs(dir: &Path, args: &[&str]) {
    let out = Command::new(bin_path("flotilla"))
        .args(["certs"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run flotilla certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Secure {
    dir: tempfile::TempDir,
    addr: String,
    addrs: Vec<String>,
    _cps: Vec<Proc>,
    agents: Vec<Proc>,
}

impl Secure {
    fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    async fn start() -> Secure {
        Self::start_on(None, 1).await
    }

    /// `replicas` control planes on `etcd` (or one on the embedded store), all with the
    /// same certificates; `addr` is the first, `addrs` all of them.
    async fn start_on(etcd: Option<&str>, replicas: usize) -> Secure {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("certs");
        certs(&c, &["init", "--node", "n1", "--node", "n2", "--days", "2"]);
        // Another CA, whose certificates the control plane must not accept.
        certs(&dir.path().join("other"), &["init", "--node", "n1"]);
        let tokens = dir.path().join("tokens");
        std::fs::write(
            &tokens,
            format!("{VIEWER},viewer,grafana\n{OPERATOR},operator,ops\n"),
        )
        .unwrap();
        let mut cps = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..replicas {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut cmd = Command::new(bin_path("flotilla-cp"));
            cmd.args(["--listen", &addr, "--advertise", &addr]);
            cmd.args(["--tls-reload-interval", "200ms"]);
            match etcd {
                Some(e) => cmd.args(["--etcd-endpoints", e, "--leader-lease-ttl", "3s"]),
                None => cmd.arg(format!(
                    "--store=embedded:{}",
                    dir.path().join("cp").display()
                )),
            };
            cmd.arg("--tls-cert")
                .arg(c.join("control-plane.crt"))
                .arg("--tls-key")
                .arg(c.join("control-plane.key"))
                .arg("--tls-client-ca")
                .arg(c.join("ca.crt"))
                .arg("--tokens")
                .arg(&tokens)
                .env("RUST_LOG", "info");
            let log = dir.path().join(format!("cp-{i}.log"));
            cps.push(Proc::spawn("cp", &mut cmd, Some(&log)));
            wait_for_port(&addr, WAIT).await.unwrap();
            addrs.push(addr);
        }
        Secure {
            dir,
            addr: addrs[0].clone(),
            addrs,
            _cps: cps,
            agents: vec![],
        }
    }

    fn agent(&mut self, node: &str, cert_dir: &Path, cert_of: &str) {
        let cp = self.addr.clone();
        self.agent_to(&cp, node, cert_dir, cert_of);
    }

    fn agent_to(&mut self, cp: &str, node: &str, cert_dir: &Path, cert_of: &str) {
        let data = self.dir.path().join(format!("agent-{node}"));
        let mut cmd = Command::new(bin_path("flotilla-agent"));
        cmd.args(["--control-plane", cp, "--node-id", node])
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--advertise-address",
                "127.0.0.1",
                "--report-interval-secs",
                "1",
            ])
            .arg("--tls-ca")
            .arg(self.certs().join("ca.crt"))
            .arg("--tls-cert")
            .arg(cert_dir.join(format!("agent-{cert_of}.crt")))
            .arg("--tls-key")
            .arg(cert_dir.join(format!("agent-{cert_of}.key")))
            .env("RUST_LOG", "info");
        let log = self.dir.path().join(format!("agent-{node}.log"));
        self.agents.push(Proc::spawn(node, &mut cmd, Some(&log)));
    }

    /// Runs the CLI with `env` (credentials) and returns (success, stdout, stderr).
    fn cli(&self, env: &[(&str, String)], args: &[&str]) -> (bool, String, String) {
        self.cli_via(&self.addr, env, args)
    }

    fn cli_via(
        &self,
        server: &str,
        env: &[(&str, String)],
        args: &[&str],
    ) -> (bool, String, String) {
        let out = Command::new(bin_path("flotilla"))
            .args(args)
            .env("FLOTILLA_SERVER", server)
            .env_remove("FLOTILLA_CA")
            .env_remove("FLOTILLA_TOKEN")
            .envs(env.iter().map(|(k, v)| (*k, v.clone())))
            .output()
            .expect("run flotilla");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn admin(&self) -> Vec<(&'static str, String)> {
        let c = self.certs();
        vec![
            ("FLOTILLA_CA", c.join("ca.crt").display().to_string()),
            (
                "FLOTILLA_CERT",
                c.join("user-admin.crt").display().to_string(),
            ),
            (
                "FLOTILLA_KEY",
                c.join("user-admin.key").display().to_string(),
            ),
        ]
    }

    fn token(&self, token: &str) -> Vec<(&'static str, String)> {
        vec![
            (
                "FLOTILLA_CA",
                self.certs().join("ca.crt").display().to_string(),
            ),
            ("FLOTILLA_TOKEN", token.to_string()),
        ]
    }

    /// The audit log through `server`, as the admin reads it (`-o json`: one record a line).
    fn audit(&self, server: &str) -> Vec<serde_json::Value> {
        let (ok, out, err) = self.cli_via(server, &self.admin(), &["audit", "-o", "json"]);
        assert!(ok, "{err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    fn nodes(&self) -> Vec<String> {
        self.nodes_via(&self.addr)
    }

    fn nodes_via(&self, server: &str) -> Vec<String> {
        let (ok, out, err) = self.cli_via(server, &self.admin(), &["get", "nodes", "-o", "json"]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let items = v
            .get("items")
            .and_then(|i| i.as_array())
            .cloned()
            .unwrap_or_else(|| v.as_array().cloned().unwrap_or_default());
        items
            .iter()
            .filter_map(|n| {
                n.pointer("/metadata/name")
                    .or_else(|| n.get("name"))
                    .and_then(|s| s.as_str())
                    .map(String::from)
            })
            .collect()
    }

    /// Opens an agent session as `node` with `tls` and returns the first answer's status.
    async fn session(&self, tls: ClientTls, node: &str) -> Result<(), tonic::Status> {
        let mut c = Connector::parse(&self.addr).unwrap().tls(Some(tls));
        let ch = match c.connect().await {
            Ok(c) => c.channel,
            Err(e) => return Err(tonic::Status::unavailable(e.to_string())),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(AgentMessage {
            message: Some(agent_message::Message::Hello(Hello {
                node_id: node.into(),
                boot_id: "b".into(),
                agent_version: "test".into(),
                advertise_address: "127.0.0.1".into(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let resp = AgentServiceClient::new(ch)
            .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?;
        let mut inbound = resp.into_inner();
        match tokio::time::timeout(Duration::from_secs(10), inbound.next()).await {
            Ok(Some(Err(s))) => Err(s),
            _ => Ok(()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_bound_to_their_certificates_and_roles_limit_callers() {
    let mut s = Secure::start().await;
    let good = s.certs();
    s.agent("n1", &good, "n1");
    wait_until("n1 to register over mTLS", WAIT, || async {
        s.nodes().contains(&"n1".to_string()).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", s.nodes()));

    let ca = good.join("ca.crt");
    // No client certificate.
    let e = s.session(ClientTls::new(&ca), "n2").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    // n1's certificate claiming n2.
    let n1 =
        ClientTls::new(&ca).with_identity(good.join("agent-n1.crt"), good.join("agent-n1.key"));
    let e = s.session(n1, "n2").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("flotilla://agent/n1"), "{e:?}");
    // A certificate for n2 from another CA: refused at the handshake.
    let other = s.dir.path().join("other");
    certs(&other, &["issue", "--node", "n2"]);
    let forged =
        ClientTls::new(&ca).with_identity(other.join("agent-n2.crt"), other.join("agent-n2.key"));
    let e = s.session(forged, "n2").await.unwrap_err();
    assert_ne!(e.code(), tonic::Code::Ok, "{e:?}");
    // A user certificate cannot open an agent session either.
    let admin =
        ClientTls::new(&ca).with_identity(good.join("user-admin.crt"), good.join("user-admin.key"));
    let e = s.session(admin, "n2").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // The real agent binary with another CA's certificate never registers; n1's still does.
    s.agent("n2", &other, "n2");
    wait_until("the forged agent to be refused", WAIT, || async {
        let log = std::fs::read_to_string(s.dir.path().join("agent-n2.log")).unwrap_or_default();
        (log.contains("reconnecting") || log.contains("error")).then_some(())
    })
    .await
    .unwrap();
    assert!(!s.nodes().contains(&"n2".to_string()), "{:?}", s.nodes());

    // Roles: the viewer reads, cannot mutate; the operator cannot change nodes; no
    // credentials is UNAUTHENTICATED.
    let (ok, out, err) = s.cli(&s.token(VIEWER), &["get", "nodes"]);
    assert!(ok && out.contains("n1"), "{out}{err}");
    let (ok, _, err) = s.cli(&s.token(VIEWER), &["cordon", "n1"]);
    assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");
    let (ok, _, err) = s.cli(&s.token(OPERATOR), &["cordon", "n1"]);
    assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");
    let (ok, _, err) = s.cli(&s.token("not-a-known-token-at-all"), &["get", "nodes"]);
    assert!(!ok && err.contains("bearer token is not known"), "{err}");
    let ca_only = vec![("FLOTILLA_CA", ca.display().to_string())];
    let (ok, _, err) = s.cli(&ca_only, &["get", "nodes"]);
    assert!(
        !ok && err.contains("needs a client certificate or a bearer token"),
        "{err}"
    );
    // Plaintext to the TLS port gets nowhere.
    let (ok, _, _) = s.cli(&[], &["get", "nodes"]);
    assert!(!ok);
    // The admin certificate mutates.
    let (ok, _, err) = s.cli(&s.admin(), &["cordon", "n1"]);
    assert!(ok, "{err}");

    // Every mutating call is in the audit log, allowed or refused; reads are not. Only
    // admins read it.
    let (ok, _, err) = s.cli(&s.token(VIEWER), &["audit"]);
    assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");
    let records = s.audit(&s.addr);
    let cordons: Vec<_> = records
        .iter()
        .filter(|r| r["method"] == "/flotilla.v1.NodeService/CordonNode")
        .map(|r| {
            (
                r["principal"].as_str().unwrap_or(""),
                r["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    // Newest first.
    assert_eq!(
        cordons,
        [
            ("flotilla://admin/admin", "OK"),
            ("flotilla://operator/ops", "PERMISSION_DENIED"),
            ("flotilla://viewer/grafana", "PERMISSION_DENIED"),
        ],
        "{records:#?}"
    );
    assert!(
        records
            .iter()
            .all(|r| !r["method"].as_str().unwrap_or("").contains("ListNodes")),
        "{records:#?}"
    );
    assert!(
        records
            .iter()
            .all(|r| r["request_id"].as_str().unwrap_or("").starts_with("cli-")),
        "the CLI's request ids: {records:#?}"
    );
}

/// The leaf certificate a TLS server at `addr` presents, trusting `ca`.
async fn served_cert(addr: &str, ca: &Path) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_file(path)
        .unwrap()
        .as_ref()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_server_certificate_is_served_without_a_restart() {
    let s = Secure::start().await;
    let c = s.certs();
    let before = pem_der(&c.join("control-plane.crt"));
    assert_eq!(served_cert(&s.addr, &c.join("ca.crt")).await, before);
    certs(&c, &["issue", "--control-plane", "--force"]);
    let after = pem_der(&c.join("control-plane.crt"));
    assert_ne!(before, after);
    wait_until("the new certificate to be served", WAIT, || async {
        (served_cert(&s.addr, &c.join("ca.crt")).await == after).then_some(())
    })
    .await
    .unwrap();
    // A broken file keeps the new one in force.
    std::fs::write(c.join("control-plane.crt"), "garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(served_cert(&s.addr, &c.join("ca.crt")).await, after);
    let (ok, _, err) = s.cli(&s.admin(), &["get", "nodes"]);
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_over_tls_speaking_for_its_caller() {
    let etcd = flotilla_intent_store::testing::EtcdServer::start().await;
    let mut s = Secure::start_on(Some(&etcd.endpoint()), 2).await;
    let good = s.certs();
    let addrs = s.addrs.clone();
    // One agent per replica: whichever follows forwards its agent's stream.
    s.agent_to(&addrs[0], "n1", &good, "n1");
    s.agent_to(&addrs[1], "n2", &good, "n2");
    for a in &addrs {
        wait_until("both nodes through each replica", WAIT, || async {
            let n = s.nodes_via(a);
            (n.contains(&"n1".to_string()) && n.contains(&"n2".to_string())).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e} via {a}: {:?}", s.nodes_via(a)));
    }
    // Through both replicas, the caller's role decides, not the forwarding replica's.
    for a in &addrs {
        let (ok, out, err) = s.cli_via(a, &s.token(VIEWER), &["get", "nodes"]);
        assert!(ok && out.contains("n1"), "via {a}: {out}{err}");
        let (ok, _, err) = s.cli_via(a, &s.token(VIEWER), &["cordon", "n2"]);
        assert!(!ok && err.contains("PERMISSION_DENIED"), "via {a}: {err}");
        let (ok, _, err) = s.cli_via(a, &s.admin(), &["cordon", "n2"]);
        assert!(ok, "via {a}: {err}");
        let (ok, _, err) = s.cli_via(a, &s.admin(), &["uncordon", "n2"]);
        assert!(ok, "via {a}: {err}");
    }
    // Each call is recorded once, by the replica that answered it: forwarded mutations by
    // the leader, under the caller the follower authenticated. Both replicas read one log.
    let records = s.audit(&addrs[1]);
    assert_eq!(records, s.audit(&addrs[0]));
    let of = |method: &str, code: &str| {
        records
            .iter()
            .filter(|r| {
                r["method"] == format!("/flotilla.v1.NodeService/{method}") && r["code"] == code
            })
            .collect::<Vec<_>>()
    };
    let (cordoned, uncordoned) = (of("CordonNode", "OK"), of("UncordonNode", "OK"));
    assert_eq!((cordoned.len(), uncordoned.len()), (2, 2), "{records:#?}");
    let leader = &cordoned[0]["replica"];
    assert!(
        cordoned
            .iter()
            .chain(&uncordoned)
            .all(|r| &r["replica"] == leader && r["principal"] == "flotilla://admin/admin"),
        "{records:#?}"
    );
    assert_eq!(
        of("CordonNode", "PERMISSION_DENIED").len(),
        2,
        "{records:#?}"
    );
}

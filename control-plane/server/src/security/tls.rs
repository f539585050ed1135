//! The control plane's TLS listener: mutual TLS with certificates that reload on change.
//!
//! tonic's built-in server TLS takes its certificate once, at start; a long-running control
//! plane must pick up a rotated certificate (cert-manager renews them every few weeks) and a
//! new client CA without dropping agents. So the listener holds the current rustls
//! configuration behind a lock, every new connection's handshake uses whatever is current,
//! and a background task re-reads the files when they change. A file that does not parse
//! leaves the previous configuration in force — a bad rotation must never take the API down
//! or open it up — and is logged until fixed.
//!
//! Client certificates are verified against the client CA when presented but not demanded at
//! the handshake: callers with a bearer token have none. What each caller may do is decided
//! per request by [`super::authz`] from the verified certificate's Flotilla identity, which
//! [`Conn`] hands to tonic as the connection's [`PeerInfo`].

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use flotilla_client::Principal;
use parking_lot::RwLock;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files the listener serves with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain of this replica.
    pub cert: PathBuf,
    /// PEM private key of that certificate.
    pub key: PathBuf,
    /// PEM CA bundle client certificates (agents, replicas, users) must chain to.
    pub client_ca: PathBuf,
}

/// Loading the TLS files failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the combination (key does not match, no usable CA, …).
    #[error("TLS configuration: {0}")]
    Config(String),
}

impl TlsError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::File { .. } => "TLS_FILE_INVALID",
            TlsError::Config(_) => "TLS_CONFIG_INVALID",
        }
    }
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let v = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if v.is_empty() {
        return Err(file_err(path, "no PEM certificate in the file"));
    }
    Ok(v)
}

impl TlsFiles {
    /// Reads the files and builds a rustls server configuration from them.
    pub fn load(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_err(&self.key, e))?;
        let mut roots = RootCertStore::empty();
        for ca in certs(&self.client_ca)? {
            roots.add(ca).map_err(|e| file_err(&self.client_ca, e))?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// What identifies the files' current contents: a digest of each file's bytes
    /// (modification times are too coarse to see an edit made right after the last read).
    fn fingerprint(&self) -> Vec<Option<[u8; 32]>> {
        [&self.cert, &self.key, &self.client_ca]
            .iter()
            .map(|p| super::reload::digest(p))
            .collect()
    }
}

/// The current server configuration, swapped when the files change.
#[derive(Clone)]
pub struct ReloadingTls {
    files: TlsFiles,
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    /// The fingerprint taken before the first load (an edit right after it is a change).
    loaded: Vec<Option<[u8; 32]>>,
}

impl std::fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingTls {
    /// Loads the files once (an error here stops the start: there is nothing to fall back to).
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let loaded = files.fingerprint();
        let cfg = files.load()?;
        Ok(Self {
            files,
            current: Arc::new(RwLock::new(cfg)),
            loaded,
        })
    }

    /// The configuration new handshakes use.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current.read().clone()
    }

    /// Re-reads the files every `every` while they change, until `stop`.
    pub fn spawn_reloader(&self, every: Duration, stop: CancellationToken) {
        let (files, this) = (self.files.clone(), self.clone());
        super::reload::spawn(
            every,
            stop,
            self.loaded.clone(),
            move || files.fingerprint(),
            move || match this.files.load() {
                Ok(cfg) => {
                    *this.current.write() = cfg;
                    info!(cert = %this.files.cert.display(), "TLS certificate and CA reloaded");
                    true
                }
                Err(e) => {
                    error!(
                        error = %e,
                        code = e.code(),
                        "TLS files changed but cannot be used; still serving the previous ones"
                    );
                    false
                }
            },
        );
    }
}

/// What tonic learns about a connection: its address and, over TLS, the Flotilla identity of
/// the verified client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The identity in the client certificate (none without one, or when it names none).
    pub principal: Option<Principal>,
}

/// The Flotilla identity a DER certificate carries: its one `flotilla://` URI name.
/// None when it has none or several (an ambiguous certificate identifies nobody).
pub fn principal_of(der: &[u8]) -> Option<Principal> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = san.value.general_names.iter().filter_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => Principal::parse_uri(u),
        _ => None,
    });
    let first = found.next()?;
    match found.next() {
        None => Some(first),
        Some(_) => None,
    }
}

/// A served connection: plaintext (only with `--insecure`) or TLS.
#[derive(Debug)]
pub enum Conn {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS, with what the handshake established.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, PeerInfo),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Conn::Plain(s) => PeerInfo {
                remote: s.peer_addr().ok(),
                tls: false,
                principal: None,
            },
            Conn::Tls(_, info) => info.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }
}

/// The stream of connections tonic serves.
pub type Incoming = ReceiverStream<io::Result<Conn>>;

/// Accepts connections on `listener` until `stop`: plaintext when `tls` is `None`, else a TLS
/// handshake per connection, each in its own task so a slow client delays nobody.
pub fn incoming(
    listener: TcpListener,
    tls: Option<ReloadingTls>,
    stop: CancellationToken,
) -> Incoming {
    let (tx, rx) = mpsc::channel(128);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let (stream, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Some(tls) = &tls else {
                if tx.send(Ok(Conn::Plain(stream))).await.is_err() {
                    return;
                }
                continue;
            };
            let acceptor = TlsAcceptor::from(tls.current());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let principal = s
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|leaf| principal_of(leaf.as_ref()));
                        let info = PeerInfo {
                            remote: Some(remote),
                            tls: true,
                            principal,
                        };
                        let _ = tx.send(Ok(Conn::Tls(Box::new(s), info))).await;
                    }
                    Ok(Err(e)) => debug!(%remote, error = %e, "TLS handshake refused"),
                    Err(_) => debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

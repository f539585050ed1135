//! How agents and the `flotilla` CLI reach the control plane.
//!
//! A highly available control plane is several `flotilla-cp` replicas; any of them answers
//! (followers forward to the leader), but any of them can also be down. So every client takes
//! a **list** of addresses (`cp-0:7443,cp-1:7443,cp-2:7443`), and a DNS name in the list that
//! resolves to several addresses (a headless Service, round-robin records) counts as all of
//! them. [`Connector::connect`] tries the addresses in turn and returns the first that accepts
//! a connection; after a connection it handed out fails, [`Connector::failed`] moves the next
//! attempt on to the following address, so a client whose replica died reaches another one at
//! once instead of waiting for the dead one to come back.
//!
//! Names are resolved again on every [`Connector::connect`], so a Service whose pods change
//! is followed without restarting the client.

use std::net::IpAddr;
use std::time::Duration;

pub mod tls;
pub mod trace;

pub use tls::{ClientTls, Principal, Role, TlsError};

use tonic::transport::{Channel, Endpoint, Uri};
use tracing::debug;

/// The port a control-plane address without one is given.
pub const DEFAULT_PORT: u16 = 7443;

/// Reaching the control plane failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The address list is empty.
    #[error("no control-plane address given")]
    Empty,
    /// One entry of the list is not `host[:port]` or a URL.
    #[error("invalid control-plane address {0:?} (expected host:port or http://host:port)")]
    BadAddress(String),
    /// No address of the list accepted a connection.
    #[error("cannot reach the control plane at any of: {}", summarize(.0))]
    Unreachable(Vec<(String, String)>),
    /// The TLS files could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

impl ClientError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Empty => "CONTROL_PLANE_ADDRESS_EMPTY",
            ClientError::BadAddress(_) => "CONTROL_PLANE_ADDRESS_INVALID",
            ClientError::Unreachable(_) => "CONTROL_PLANE_UNREACHABLE",
            ClientError::Tls(e) => e.code(),
        }
    }
}

fn summarize(tried: &[(String, String)]) -> String {
    tried
        .iter()
        .map(|(addr, why)| format!("{addr} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A parsed address list: each entry as a URL (`http://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    urls: Vec<String>,
}

fn normalize(entry: &str) -> Result<String, ClientError> {
    let bad = || ClientError::BadAddress(entry.to_string());
    let url = if entry.contains("://") {
        entry.to_string()
    } else {
        format!("http://{entry}")
    };
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    let scheme = uri.scheme_str().unwrap_or("http");
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(bad());
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    // The http crate accepts ports it cannot represent (`cp:99999`); refuse them here.
    let port = match authority
        .strip_prefix(host)
        .and_then(|r| r.strip_prefix(':'))
    {
        Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        None => DEFAULT_PORT,
    };
    Ok(format!("{scheme}://{host}:{port}"))
}

impl Endpoints {
    /// Parses a comma-separated list of `host[:port]` or `http(s)://host:port` entries.
    pub fn parse(list: &str) -> Result<Self, ClientError> {
        let mut urls = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let url = normalize(entry)?;
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        if urls.is_empty() {
            return Err(ClientError::Empty);
        }
        Ok(Self { urls })
    }

    /// The entries as given (normalized).
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Every address to try: IP entries as they are, a DNS name that resolves to several
    /// addresses as one URL per address, any other name as it is (it is resolved again when
    /// dialled, and its failure is reported then).
    pub async fn resolve(&self) -> Vec<String> {
        self.resolve_named()
            .await
            .into_iter()
            .map(|(u, _)| u)
            .collect()
    }

    /// [`Endpoints::resolve`], each address with the host name it was resolved from (the
    /// name a TLS certificate is checked against).
    pub async fn resolve_named(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for url in &self.urls {
            let host = host_of(url);
            for u in expand(url).await {
                if !out.iter().any(|(seen, _)| *seen == u) {
                    out.push((u, host.clone()));
                }
            }
        }
        out
    }
}

fn host_of(url: &str) -> String {
    url.parse::<Uri>()
        .ok()
        .and_then(|u| {
            u.host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        })
        .unwrap_or_default()
}

/// `http://` turned into `https://` (a TLS connector dials every entry with TLS; so does a
/// follower forwarding to the leader over TLS).
pub fn secure(url: &str) -> String {
    match url.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => url.to_string(),
    }
}

async fn expand(url: &str) -> Vec<String> {
    let Ok(uri) = url.parse::<Uri>() else {
        return vec![url.to_string()];
    };
    let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
        return vec![url.to_string()];
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return vec![url.to_string()];
    }
    let scheme = uri.scheme_str().unwrap_or("http");
    match tokio::net::lookup_host((bare, port)).await {
        Ok(addrs) => {
            let mut v: Vec<String> = Vec::new();
            for a in addrs {
                let u = format!("{scheme}://{a}");
                if !v.contains(&u) {
                    v.push(u);
                }
            }
            if v.len() > 1 {
                v
            } else {
                vec![url.to_string()]
            }
        }
        Err(e) => {
            debug!(%url, error = %e, "cannot resolve");
            vec![url.to_string()]
        }
    }
}

/// A connection handed out by [`Connector::connect`].
#[derive(Debug, Clone)]
pub struct Connected {
    /// The address it goes to.
    pub url: String,
    /// The channel.
    pub channel: Channel,
}

/// Connects to the first reachable address of a list, remembering where to go on from.
#[derive(Debug, Clone)]
pub struct Connector {
    endpoints: Endpoints,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
    tls: Option<ClientTls>,
    /// The address the next connect tries first (an index into the resolved list).
    next: usize,
    /// The address last handed out.
    current: Option<usize>,
}

impl Connector {
    /// A connector over `endpoints` (3 s connect timeout, no request timeout).
    pub fn new(endpoints: Endpoints) -> Self {
        Self {
            endpoints,
            connect_timeout: Duration::from_secs(3),
            request_timeout: None,
            tls: None,
            next: 0,
            current: None,
        }
    }

    /// Parses `list` (see [`Endpoints::parse`]) into a connector.
    pub fn parse(list: &str) -> Result<Self, ClientError> {
        Ok(Self::new(Endpoints::parse(list)?))
    }

    /// Sets the timeout of each unary call on the channels handed out.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = Some(t);
        self
    }

    /// Dials every address with TLS, verifying the control plane against `tls`'s CA and
    /// presenting its certificate, if any (`http://` entries are dialled as `https://`).
    pub fn tls(mut self, tls: Option<ClientTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the connect timeout per address.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// The address list.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Tries every address once, starting with the one after the last failure, and returns
    /// the first that accepts a connection.
    pub async fn connect(&mut self) -> Result<Connected, ClientError> {
        let urls = self.endpoints.resolve_named().await;
        let n = urls.len();
        let mut tried = Vec::new();
        for i in 0..n {
            let idx = (self.next + i) % n;
            let (url, host) = &urls[idx];
            let url = match &self.tls {
                Some(_) => secure(url),
                None => url.clone(),
            };
            let mut ep = Endpoint::from_shared(url.clone())
                .map_err(|_| ClientError::BadAddress(url.clone()))?
                .connect_timeout(self.connect_timeout)
                .tcp_nodelay(true);
            if let Some(tls) = &self.tls {
                ep = ep.tls_config(tls.load(host)?).map_err(|e| {
                    ClientError::Tls(TlsError::Read {
                        path: tls.ca.display().to_string(),
                        reason: error_chain(&e),
                    })
                })?;
            }
            if let Some(t) = self.request_timeout {
                ep = ep.timeout(t);
            }
            match ep.connect().await {
                Ok(channel) => {
                    self.current = Some(idx);
                    self.next = idx;
                    return Ok(Connected { url, channel });
                }
                Err(e) => {
                    debug!(%url, error = %e, "control plane not reachable");
                    tried.push((url, error_chain(&e)));
                }
            }
        }
        Err(ClientError::Unreachable(tried))
    }

    /// The connection last handed out failed (its replica died, or answered that it cannot
    /// serve): the next [`Connector::connect`] starts with the following address.
    pub fn failed(&mut self) {
        if let Some(c) = self.current.take() {
            self.next = c + 1;
        }
    }

    /// How many addresses the list has before resolution.
    pub fn len(&self) -> usize {
        self.endpoints.urls.len()
    }

    /// Whether the list is empty (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.endpoints.urls.is_empty()
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_parsed_normalized_and_deduplicated() {
        let e =
            Endpoints::parse(" 127.0.0.1:7443, cp-1:8000 ,http://cp-2:9000,cp-3,,127.0.0.1:7443")
                .unwrap();
        assert_eq!(
            e.urls(),
            [
                "http://127.0.0.1:7443",
                "http://cp-1:8000",
                "http://cp-2:9000",
                "http://cp-3:7443"
            ]
        );
        assert_eq!(
            Endpoints::parse("[::1]:7443").unwrap().urls(),
            ["http://[::1]:7443"]
        );
    }

    #[test]
    fn bad_lists_are_refused_with_the_entry() {
        assert_eq!(Endpoints::parse(" , ").unwrap_err(), ClientError::Empty);
        for bad in ["ftp://cp:1", "cp:notaport", "http://cp:1/path", "cp:99999"] {
            let e = Endpoints::parse(&format!("ok:1,{bad}")).unwrap_err();
            assert_eq!(e, ClientError::BadAddress(bad.to_string()), "{bad}");
            assert_eq!(e.code(), "CONTROL_PLANE_ADDRESS_INVALID");
        }
    }

    #[tokio::test]
    async fn ip_entries_are_kept_and_names_expand_to_every_address() {
        let e = Endpoints::parse("127.0.0.1:1,127.0.0.2:2").unwrap();
        assert_eq!(
            e.resolve().await,
            ["http://127.0.0.1:1", "http://127.0.0.2:2"]
        );
        // `localhost` resolves to one or more loopback addresses: each becomes an entry, or
        // the name stays when it has only one.
        let r = Endpoints::parse("localhost:7443").unwrap().resolve().await;
        let resolved: Vec<String> = tokio::net::lookup_host(("localhost", 7443))
            .await
            .unwrap()
            .map(|a| format!("http://{a}"))
            .fold(Vec::new(), |mut v, u| {
                if !v.contains(&u) {
                    v.push(u);
                }
                v
            });
        if resolved.len() > 1 {
            assert_eq!(r, resolved);
        } else {
            assert_eq!(r, ["http://localhost:7443"]);
        }
    }

    async fn listener() -> (tokio::net::TcpListener, String) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap().to_string();
        (l, a)
    }

    fn closed_port() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    #[tokio::test]
    async fn connect_skips_dead_addresses_and_failed_moves_on() {
        let dead = closed_port();
        let (_l1, a1) = listener().await;
        let (_l2, a2) = listener().await;
        let mut c = Connector::parse(&format!("{dead},{a1},{a2}")).unwrap();
        assert_eq!(c.connect().await.unwrap().url, format!("http://{a1}"));
        // Still healthy: the same address again.
        assert_eq!(c.connect().await.unwrap().url, format!("http://{a1}"));
        c.failed();
        assert_eq!(c.connect().await.unwrap().url, format!("http://{a2}"));
        c.failed();
        // Wraps around past the dead one.
        assert_eq!(c.connect().await.unwrap().url, format!("http://{a1}"));
    }

    #[tokio::test]
    async fn nothing_reachable_names_every_address_tried() {
        let (d1, d2) = (closed_port(), closed_port());
        let mut c = Connector::parse(&format!("{d1},{d2}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(1));
        let e = c.connect().await.unwrap_err();
        assert_eq!(e.code(), "CONTROL_PLANE_UNREACHABLE");
        let msg = e.to_string();
        assert!(msg.contains(&d1) && msg.contains(&d2), "{msg}");
    }
}

//! Configuration of one DLedger member and the parsing of RocketMQ's `dLegerPeers` string.
//!
//! RocketMQ configures a group with `dLegerGroup`, `dLegerSelfId` and
//! `dLegerPeers=n0-host:port;n1-host:port;n2-host:port`. Host names in Kubernetes contain
//! hyphens (`broker-a-0.broker-a.ns.svc`), so each entry is split on its **first** `-` only:
//! the id never contains a hyphen, the address may. Addresses are kept as strings and are
//! resolved again on every (re)connect, because a restarted pod keeps its name but not its IP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Errors in a DLedger configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The peer string has no entries at all.
    #[error("dLegerPeers is empty")]
    NoPeers,
    /// An entry has no `-` separating the id from the address.
    #[error("peer entry {0:?} is not of the form <id>-<host>:<port>")]
    MalformedPeer(String),
    /// An entry's id is empty (the entry starts with `-`).
    #[error("peer entry {0:?} has an empty id")]
    EmptyPeerId(String),
    /// An entry's address is not `host:port` with a non-empty host and a valid port.
    #[error("peer {id} has an invalid address {addr:?} (expected host:port)")]
    BadAddress {
        /// The peer id.
        id: String,
        /// The address as written.
        addr: String,
    },
    /// Two entries share an id.
    #[error("peer id {0} appears more than once in dLegerPeers")]
    DuplicatePeer(String),
    /// `dLegerSelfId` is not one of the peers.
    #[error("dLegerSelfId {0} is not listed in dLegerPeers")]
    SelfNotInPeers(String),
    /// The group name is empty.
    #[error("dLegerGroup is empty")]
    EmptyGroup,
    /// The timing values are inconsistent.
    #[error("invalid timing: {0}")]
    BadTiming(String),
}

impl ConfigError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::NoPeers => "DLEDGER_NO_PEERS",
            ConfigError::MalformedPeer(_) => "DLEDGER_MALFORMED_PEER",
            ConfigError::EmptyPeerId(_) => "DLEDGER_EMPTY_PEER_ID",
            ConfigError::BadAddress { .. } => "DLEDGER_BAD_PEER_ADDRESS",
            ConfigError::DuplicatePeer(_) => "DLEDGER_DUPLICATE_PEER",
            ConfigError::SelfNotInPeers(_) => "DLEDGER_SELF_NOT_IN_PEERS",
            ConfigError::EmptyGroup => "DLEDGER_EMPTY_GROUP",
            ConfigError::BadTiming(_) => "DLEDGER_BAD_TIMING",
        }
    }
}

/// One member of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Member id (`n0`).
    pub id: String,
    /// `host:port`, resolved on every connect.
    pub addr: String,
}

/// Parses `dLegerPeers`: `;`-separated `<id>-<host>:<port>` entries, split on the first `-`.
/// Blank entries (a trailing `;`) and surrounding whitespace are ignored.
pub fn parse_peers(s: &str) -> Result<Vec<Peer>, ConfigError> {
    let mut out: Vec<Peer> = Vec::new();
    for raw in s.split(';') {
        let entry = raw.trim();
        if entry.is_empty() {
            continue;
        }
        let Some((id, addr)) = entry.split_once('-') else {
            return Err(ConfigError::MalformedPeer(entry.to_string()));
        };
        let (id, addr) = (id.trim(), addr.trim());
        if id.is_empty() {
            return Err(ConfigError::EmptyPeerId(entry.to_string()));
        }
        let bad = || ConfigError::BadAddress {
            id: id.to_string(),
            addr: addr.to_string(),
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(bad()),
        }
        if out.iter().any(|p| p.id == id) {
            return Err(ConfigError::DuplicatePeer(id.to_string()));
        }
        out.push(Peer {
            id: id.to_string(),
            addr: addr.to_string(),
        });
    }
    if out.is_empty() {
        return Err(ConfigError::NoPeers);
    }
    Ok(out)
}

/// Configuration of one member.
#[derive(Debug, Clone)]
pub struct DLedgerConfig {
    /// `dLegerGroup` (usually the broker name); peers of another group are refused.
    pub group: String,
    /// `dLegerSelfId`.
    pub self_id: String,
    /// Every member, this one included (see [`parse_peers`]).
    pub peers: Vec<Peer>,
    /// Address to listen on. `None`: all interfaces on the port of this member's peer entry.
    pub listen: Option<SocketAddr>,
    /// Directory for the `term` and `epochs` files (e.g. `<storeRoot>/dledger`).
    pub data_dir: PathBuf,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min: Duration,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max: Duration,
    /// How often the leader contacts an idle follower.
    pub heartbeat_interval: Duration,
    /// A leader that has not heard from a majority for this long stops acknowledging writes
    /// (it steps down after `election_timeout_min` without a majority). Must be shorter than
    /// `election_timeout_min`.
    pub lease: Duration,
    /// Timeout of one RPC (vote, append, timeout-now).
    pub rpc_timeout: Duration,
    /// Largest CommitLog chunk sent in one append (a single larger record is sent whole).
    pub max_append_bytes: usize,
}

impl DLedgerConfig {
    /// A configuration with production timings: heartbeat 200 ms, lease 800 ms, election
    /// timeout 1–2 s, 1 MiB appends.
    pub fn new(
        group: impl Into<String>,
        self_id: impl Into<String>,
        peers: Vec<Peer>,
        data_dir: impl Into<PathBuf>,
    ) -> DLedgerConfig {
        DLedgerConfig {
            group: group.into(),
            self_id: self_id.into(),
            peers,
            listen: None,
            data_dir: data_dir.into(),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            heartbeat_interval: Duration::from_millis(200),
            lease: Duration::from_millis(800),
            rpc_timeout: Duration::from_millis(1000),
            max_append_bytes: 1 << 20,
        }
    }

    /// Checks ids, membership and timings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.group.trim().is_empty() {
            return Err(ConfigError::EmptyGroup);
        }
        if self.peers.is_empty() {
            return Err(ConfigError::NoPeers);
        }
        for (i, p) in self.peers.iter().enumerate() {
            if self.peers[..i].iter().any(|q| q.id == p.id) {
                return Err(ConfigError::DuplicatePeer(p.id.clone()));
            }
        }
        if !self.peers.iter().any(|p| p.id == self.self_id) {
            return Err(ConfigError::SelfNotInPeers(self.self_id.clone()));
        }
        let bad = |m: &str| Err(ConfigError::BadTiming(m.to_string()));
        if self.heartbeat_interval.is_zero() {
            return bad("heartbeat_interval must be positive");
        }
        if self.election_timeout_min > self.election_timeout_max {
            return bad("election_timeout_min must not exceed election_timeout_max");
        }
        if self.lease <= self.heartbeat_interval {
            return bad("lease must be longer than heartbeat_interval");
        }
        if self.lease >= self.election_timeout_min {
            return bad("lease must be shorter than election_timeout_min");
        }
        if self.rpc_timeout.is_zero() {
            return bad("rpc_timeout must be positive");
        }
        if self.max_append_bytes == 0 {
            return bad("max_append_bytes must be positive");
        }
        Ok(())
    }

    /// Number of votes (or acknowledgements) that make a majority.
    pub fn quorum(&self) -> usize {
        self.peers.len() / 2 + 1
    }

    /// The other members.
    pub fn others(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter().filter(move |p| p.id != self.self_id)
    }

    /// This member's peer entry.
    pub fn self_peer(&self) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == self.self_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_first_hyphen_only() {
        let p = parse_peers("n0-my-host.ns.svc:40911;n1-127.0.0.1:40912;n2-b-1.b:1").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].id, "n0");
        assert_eq!(p[0].addr, "my-host.ns.svc:40911");
        assert_eq!(p[1].addr, "127.0.0.1:40912");
        assert_eq!(p[2].id, "n2");
        assert_eq!(p[2].addr, "b-1.b:1");
    }

    #[test]
    fn tolerates_whitespace_and_trailing_separator() {
        let p = parse_peers(" n0-a:1 ; n1-b:2 ;").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].addr, "b:2");
    }

    #[test]
    fn ipv6_brackets() {
        let p = parse_peers("n0-[::1]:40911").unwrap();
        assert_eq!(p[0].addr, "[::1]:40911");
    }

    #[test]
    fn bad_strings_give_clear_errors() {
        assert_eq!(parse_peers(""), Err(ConfigError::NoPeers));
        assert_eq!(parse_peers(" ; "), Err(ConfigError::NoPeers));
        assert_eq!(
            parse_peers("n0:127.0.0.1:1"),
            Err(ConfigError::MalformedPeer("n0:127.0.0.1:1".into()))
        );
        assert_eq!(
            parse_peers("-host:1"),
            Err(ConfigError::EmptyPeerId("-host:1".into()))
        );
        assert!(matches!(
            parse_peers("n0-host"),
            Err(ConfigError::BadAddress { .. })
        ));
        assert!(matches!(
            parse_peers("n0-host:notaport"),
            Err(ConfigError::BadAddress { .. })
        ));
        assert!(matches!(
            parse_peers("n0-:80"),
            Err(ConfigError::BadAddress { .. })
        ));
        assert!(matches!(
            parse_peers("n0-host:0"),
            Err(ConfigError::BadAddress { .. })
        ));
        assert_eq!(
            parse_peers("n0-a:1;n0-b:2"),
            Err(ConfigError::DuplicatePeer("n0".into()))
        );
        assert_eq!(
            parse_peers("n0-a:1;x").unwrap_err().code(),
            "DLEDGER_MALFORMED_PEER"
        );
    }

    #[test]
    fn validate_checks_self_and_timings() {
        let peers = parse_peers("n0-a:1;n1-b:2;n2-c:3").unwrap();
        let mut c = DLedgerConfig::new("g", "n3", peers.clone(), "/tmp/x");
        assert_eq!(c.validate(), Err(ConfigError::SelfNotInPeers("n3".into())));
        c.self_id = "n1".into();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.quorum(), 2);
        assert_eq!(c.others().count(), 2);
        c.lease = c.election_timeout_min;
        assert!(matches!(c.validate(), Err(ConfigError::BadTiming(_))));
        let mut c = DLedgerConfig::new("", "n0", peers, "/tmp/x");
        assert_eq!(c.validate(), Err(ConfigError::EmptyGroup));
        c.group = "g".into();
        c.election_timeout_max = c.election_timeout_min / 2;
        assert!(matches!(c.validate(), Err(ConfigError::BadTiming(_))));
    }
}

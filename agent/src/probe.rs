//! Readiness probes over the RocketMQ remoting protocol.
//!
//! A listening socket proves nothing (Vitess waits for a real connection, not a socket file):
//! an instance is Ready only when it answers a real request. A nameserver must answer
//! GET_BROKER_CLUSTER_INFO; a broker must answer GET_BROKER_RUNTIME_INFO, whose KVTable also
//! carries what the agent reports upward (role, commit-log offsets, registered nameservers).

use std::time::Duration;

use flotilla_proto::v1::{CommitLogOffsets, InstanceKind, MemberRole};
use flotilla_remoting::protocol::{KVTable, decode_body};
use flotilla_remoting::{RemotingClient, RemotingCommand, request_code, response_code};

/// A probe did not get a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The request failed (connect, timeout, closed).
    #[error("probe of {addr} failed: {source}")]
    Transport {
        /// The address probed.
        addr: String,
        /// The cause.
        #[source]
        source: flotilla_remoting::RemotingError,
    },
    /// The process answered with an error code.
    #[error("probe of {addr}: response code {code} ({remark})")]
    Refused {
        /// The address probed.
        addr: String,
        /// The response code.
        code: i32,
        /// The remark.
        remark: String,
    },
}

impl ProbeError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Transport { .. } => "PROBE_UNREACHABLE",
            Self::Refused { .. } => "PROBE_REFUSED",
        }
    }
}

/// What a successful probe learned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeResult {
    /// Role of the instance.
    pub role: MemberRole,
    /// RocketMQ broker id, when reported.
    pub broker_id: i64,
    /// DLedger term, when reported.
    pub term: i64,
    /// Commit-log offsets (brokers).
    pub commit_log: Option<CommitLogOffsets>,
    /// Nameservers the broker is registered with.
    pub registered_nameservers: Vec<String>,
}

/// Probe timeout.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn role_of(s: &str) -> MemberRole {
    match s.to_ascii_uppercase().as_str() {
        "ASYNC_MASTER" | "SYNC_MASTER" | "MASTER" => MemberRole::Master,
        "SLAVE" => MemberRole::Slave,
        "LEADER" => MemberRole::Leader,
        "FOLLOWER" => MemberRole::Follower,
        "CANDIDATE" => MemberRole::Candidate,
        _ => MemberRole::Unspecified,
    }
}

/// Reads the probe facts out of a broker's runtime-info table.
pub fn parse_runtime_info(t: &KVTable) -> ProbeResult {
    let num = |k: &str| t.table.get(k).and_then(|v| v.trim().parse::<i64>().ok());
    let mut role = t
        .table
        .get("dLegerRole")
        .or_else(|| t.table.get("brokerRole"))
        .map(|s| role_of(s))
        .unwrap_or_default();
    if role == MemberRole::Unspecified {
        role = t
            .table
            .get("brokerRole")
            .map(|s| role_of(s))
            .unwrap_or_default();
    }
    let commit_log = match (num("commitLogMinOffset"), num("commitLogMaxOffset")) {
        (None, None) => None,
        (min, max) => Some(CommitLogOffsets {
            min_offset: min.unwrap_or(0),
            max_offset: max.unwrap_or(0),
            confirmed_offset: num("flotillaConfirmOffset").unwrap_or(0),
        }),
    };
    let registered_nameservers = t
        .table
        .get("flotillaRegisteredNameservers")
        .map(|s| {
            s.split(';')
                .filter(|x| !x.trim().is_empty())
                .map(|x| x.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    ProbeResult {
        role,
        broker_id: num("brokerId").unwrap_or(0),
        term: num("dLegerTerm").or_else(|| num("term")).unwrap_or(0),
        commit_log,
        registered_nameservers,
    }
}

async fn call(
    client: &RemotingClient,
    addr: &str,
    code: i32,
) -> Result<RemotingCommand, ProbeError> {
    let resp = client
        .invoke(addr, RemotingCommand::request(code), PROBE_TIMEOUT)
        .await
        .map_err(|source| ProbeError::Transport {
            addr: addr.to_string(),
            source,
        })?;
    if resp.code != response_code::SUCCESS {
        return Err(ProbeError::Refused {
            addr: addr.to_string(),
            code: resp.code,
            remark: resp.remark.unwrap_or_default(),
        });
    }
    Ok(resp)
}

/// Probes the instance at `addr`; `Ok` means Ready.
pub async fn probe(
    client: &RemotingClient,
    kind: InstanceKind,
    addr: &str,
) -> Result<ProbeResult, ProbeError> {
    match kind {
        InstanceKind::Namesrv => {
            call(client, addr, request_code::GET_BROKER_CLUSTER_INFO).await?;
            Ok(ProbeResult {
                role: MemberRole::Namesrv,
                ..ProbeResult::default()
            })
        }
        _ => {
            let resp = call(client, addr, request_code::GET_BROKER_RUNTIME_INFO).await?;
            let table: KVTable = decode_body(&resp.body).unwrap_or_default();
            Ok(parse_runtime_info(&table))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_info_is_parsed() {
        let mut t = KVTable::default();
        for (k, v) in [
            ("brokerRole", "ASYNC_MASTER"),
            ("commitLogMinOffset", "0"),
            ("commitLogMaxOffset", "1024"),
            ("flotillaConfirmOffset", "512"),
            (
                "flotillaRegisteredNameservers",
                "127.0.0.1:9876;127.0.0.1:9877",
            ),
        ] {
            t.table.insert(k.into(), v.into());
        }
        let p = parse_runtime_info(&t);
        assert_eq!(p.role, MemberRole::Master);
        assert_eq!(
            p.commit_log,
            Some(CommitLogOffsets {
                min_offset: 0,
                max_offset: 1024,
                confirmed_offset: 512
            })
        );
        assert_eq!(
            p.registered_nameservers,
            vec!["127.0.0.1:9876", "127.0.0.1:9877"]
        );
        assert_eq!(
            parse_runtime_info(&KVTable::default()),
            ProbeResult::default()
        );
    }
}

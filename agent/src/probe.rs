//! Readiness probes over the RocketMQ remoting protocol.
//!
//! A listening socket proves nothing (Vitess waits for a real connection, not a socket file):
//! an instance is Ready only when it answers a real request. A nameserver must answer
//! GET_BROKER_CLUSTER_INFO; a broker must answer GET_BROKER_RUNTIME_INFO, whose KVTable also
//! carries what the agent reports upward (role, brokerId, permission, commit-log offsets).
//!
//! Whether clients can *find* a broker is measured from the outside, the way a client sees
//! it: the agent asks every nameserver in the broker's `namesrvAddr` for its cluster info and
//! counts a nameserver only when its route data lists the broker under its brokerName, with
//! the brokerId the broker reports, at the broker's address. A DLedger member that has just
//! been elected answers runtime info as leader before its re-registration as brokerId 0
//! reaches the nameservers; clients get "route not exist" in that window, so the control
//! plane's readiness rule (`reconcile::readiness`) needs this outside view, not the broker's
//! own claim.

use std::collections::HashMap;
use std::time::Duration;

use flotilla_proto::v1::{CommitLogOffsets, InstanceKind, MemberRole};
use flotilla_remoting::protocol::{ClusterInfo, KVTable, decode_body};
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
    /// Nameservers whose route data lists the broker (filled by [`registered_at`]).
    pub registered_nameservers: Vec<String>,
    /// brokerName (brokers).
    pub broker_name: String,
    /// brokerClusterName (brokers).
    pub cluster_name: String,
    /// The address the broker registers (brokers).
    pub broker_addr: String,
    /// Accepts writes: brokerId 0 as master or leader, brokerPermission has W, and a DLedger
    /// member is the leader ready to append.
    pub writable: bool,
}

/// RocketMQ's permission bit for write (`PermName.PERM_WRITE`).
const PERM_WRITE: i64 = 0x1 << 1;

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
    let text = |k: &str| {
        t.table
            .get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let broker_id = num("brokerId").unwrap_or(0);
    // A table without a permission entry is not taken as writable.
    let perm_writable = num("flotillaBrokerPermission").is_some_and(|p| p & PERM_WRITE != 0);
    let dledger_ok = match t.table.get("dLegerWritable") {
        Some(v) => v.trim().eq_ignore_ascii_case("true"),
        None => !t.table.contains_key("dLegerRole"),
    };
    let writable = broker_id == 0
        && matches!(role, MemberRole::Master | MemberRole::Leader)
        && perm_writable
        && dledger_ok;
    ProbeResult {
        role,
        broker_id,
        term: num("dLegerTerm").or_else(|| num("term")).unwrap_or(0),
        commit_log,
        registered_nameservers: Vec::new(),
        broker_name: text("flotillaBrokerName"),
        cluster_name: text("flotillaClusterName"),
        broker_addr: text("flotillaBrokerAddr"),
        writable,
    }
}

/// The nameservers of a `namesrvAddr` value (`;`-separated, as RocketMQ writes it).
pub fn nameservers_of(namesrv_addr: &str) -> Vec<String> {
    namesrv_addr
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// What each nameserver answered to GET_BROKER_CLUSTER_INFO in one probe round (`None`: it
/// did not answer). Asked once per round and shared by every broker of the node.
pub type ClusterInfos = HashMap<String, Option<ClusterInfo>>;

/// Asks every nameserver in `nameservers` not yet in `infos` for its cluster info.
pub async fn fetch_cluster_infos(
    client: &RemotingClient,
    nameservers: &[String],
    infos: &mut ClusterInfos,
) {
    for ns in nameservers {
        if infos.contains_key(ns) {
            continue;
        }
        let info = match call(client, ns, request_code::GET_BROKER_CLUSTER_INFO).await {
            Ok(resp) => decode_body::<ClusterInfo>(&resp.body).ok(),
            Err(_) => None,
        };
        infos.insert(ns.clone(), info);
    }
}

/// The nameservers among `nameservers` whose route data lists the probed broker: under its
/// cluster and brokerName, with the brokerId it reports, at its address.
pub fn registered_at(p: &ProbeResult, nameservers: &[String], infos: &ClusterInfos) -> Vec<String> {
    if p.broker_name.is_empty() || p.broker_addr.is_empty() {
        return Vec::new();
    }
    nameservers
        .iter()
        .filter(|ns| {
            let Some(Some(info)) = infos.get(*ns) else {
                return false;
            };
            let listed = info
                .broker_addr_table
                .get(&p.broker_name)
                .and_then(|b| b.broker_addrs.get(&p.broker_id))
                .is_some_and(|a| *a == p.broker_addr);
            let in_cluster = p.cluster_name.is_empty()
                || info
                    .cluster_addr_table
                    .get(&p.cluster_name)
                    .is_some_and(|names| names.contains(&p.broker_name));
            listed && in_cluster
        })
        .cloned()
        .collect()
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
            ("flotillaBrokerPermission", "6"),
            ("brokerId", "0"),
            ("flotillaBrokerName", "b"),
            ("flotillaBrokerAddr", "h:10911"),
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
        assert!(p.writable, "a master with perm RW is writable");
        assert_eq!(
            (p.broker_name.as_str(), p.broker_addr.as_str()),
            ("b", "h:10911")
        );
        assert_eq!(
            parse_runtime_info(&KVTable::default()),
            ProbeResult::default()
        );
    }

    fn table(kv: &[(&str, &str)]) -> KVTable {
        let mut t = KVTable::default();
        for (k, v) in kv {
            t.table.insert((*k).into(), (*v).into());
        }
        t
    }

    #[test]
    fn writable_needs_id_zero_write_permission_and_a_ready_leader() {
        let base = [("brokerRole", "SYNC_MASTER"), ("brokerId", "0")];
        let with = |extra: &[(&str, &str)]| {
            let mut kv = base.to_vec();
            kv.extend_from_slice(extra);
            parse_runtime_info(&table(&kv)).writable
        };
        assert!(with(&[("flotillaBrokerPermission", "6")]));
        assert!(!with(&[("flotillaBrokerPermission", "4")]), "read-only");
        assert!(!with(&[]), "no permission entry");
        let follower = parse_runtime_info(&table(&[
            ("brokerRole", "SLAVE"),
            ("brokerId", "2"),
            ("dLegerRole", "FOLLOWER"),
            ("dLegerWritable", "false"),
            ("flotillaBrokerPermission", "6"),
        ]));
        assert!(!follower.writable);
        assert_eq!(follower.role, MemberRole::Follower);
        let leader = |w: &str| {
            parse_runtime_info(&table(&[
                ("brokerRole", "SYNC_MASTER"),
                ("brokerId", "0"),
                ("dLegerRole", "LEADER"),
                ("dLegerWritable", w),
                ("flotillaBrokerPermission", "6"),
            ]))
            .writable
        };
        assert!(leader("true"));
        assert!(!leader("false"), "a leader not yet ready to append");
    }

    fn info(entries: &[(&str, &str, i64, &str)]) -> ClusterInfo {
        let mut ci = ClusterInfo::default();
        for (cluster, name, id, addr) in entries {
            let bd = ci
                .broker_addr_table
                .entry((*name).to_string())
                .or_insert_with(|| flotilla_remoting::protocol::BrokerData {
                    cluster: (*cluster).to_string(),
                    broker_name: (*name).to_string(),
                    ..Default::default()
                });
            bd.broker_addrs.insert(*id, (*addr).to_string());
            ci.cluster_addr_table
                .entry((*cluster).to_string())
                .or_default()
                .insert((*name).to_string());
        }
        ci
    }

    #[test]
    fn registration_is_read_from_the_nameservers_route_data() {
        let p = ProbeResult {
            broker_id: 0,
            broker_name: "g".into(),
            cluster_name: "c".into(),
            broker_addr: "h:1".into(),
            ..Default::default()
        };
        let ns = nameservers_of("n1:9876; n2:9876;;n3:9876");
        assert_eq!(ns, ["n1:9876", "n2:9876", "n3:9876"]);
        let infos: ClusterInfos = [
            ("n1:9876".to_string(), Some(info(&[("c", "g", 0, "h:1")]))),
            // Still lists the member under its follower id: the new leader is not there yet.
            ("n2:9876".to_string(), Some(info(&[("c", "g", 2, "h:1")]))),
            ("n3:9876".to_string(), None),
        ]
        .into();
        assert_eq!(registered_at(&p, &ns, &infos), ["n1:9876"]);
        let elsewhere: ClusterInfos = [(
            "n1:9876".to_string(),
            Some(info(&[("c", "g", 0, "other:1")])),
        )]
        .into();
        assert!(
            registered_at(&p, &ns, &elsewhere).is_empty(),
            "another address as id 0"
        );
        let other_cluster: ClusterInfos =
            [("n1:9876".to_string(), Some(info(&[("d", "g", 0, "h:1")])))].into();
        assert!(registered_at(&p, &ns, &other_cluster).is_empty());
    }
}

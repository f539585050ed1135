//! Rendering: from a cluster spec and a placement to the `agent.v1.Instance` an agent runs.
//! Pure functions.
//!
//! Nameservers get `listen=<host>:<port>` (the agent runs `flotilla-namesrv --listen …`).
//! Brokers get a RocketMQ broker.conf as a map: the user's keys plus the keys the control plane
//! owns (cluster/broker names, id and role or DLedger settings, nameserver list, ports, store
//! path, advertised IP). `config_hash` is sha256 over the sorted `key=value` lines plus the
//! version; `restart_hash` is the same without the keys a broker can change online
//! (`namesrvAddr`, `brokerPermission`), so an agent can tell a change it can apply through the
//! admin protocol from one that needs a restart.

use std::collections::{BTreeMap, HashMap};

use flotilla_proto::agent::v1::{DLedgerPeer, Instance, Ports, RestartPolicy};
use flotilla_proto::v1::{
    BrokerMode, ClusterSpec, InstanceKind, MasterRole, Resources, Storage, storage::Mode,
};
use sha2::{Digest, Sha256};

use crate::names;

/// Keys a running broker applies live through UPDATE_BROKER_CONFIG, so a change to them never
/// restarts anything. Every key here is in the broker's own `LIVE_KEYS` (checked by the
/// `online_keys` test); its conditionally live keys (`maxMessageSize` above the start value,
/// more `messageDelayLevel` levels than at start) are left out, so they roll instead of being
/// refused.
pub const ONLINE_KEYS: &[&str] = &[
    "namesrvAddr",
    "brokerPermission",
    "autoCreateTopicEnable",
    "autoCreateSubscriptionGroup",
    "defaultTopicQueueNums",
    "registerNameServerPeriod",
    "registerBrokerTimeoutMills",
    "longPollingEnable",
    "shortPollingTimeMills",
    "channelExpiredTimeout",
    "regionId",
    "traceOn",
    "maxReconsumeTimes",
    "flushConsumerOffsetInterval",
    "transactionTimeOut",
    "transactionCheckMax",
    "transactionCheckInterval",
];

/// Data directory root used when an agent did not say where its data lives.
pub const DEFAULT_AGENT_DATA_DIR: &str = "/var/lib/flotilla-agent";

/// Where one instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Instance name.
    pub name: String,
    /// Node name.
    pub node: String,
    /// Host other machines reach the node on.
    pub host: String,
    /// Assigned ports.
    pub ports: Ports,
    /// The node agent's data directory ("" = unknown).
    pub agent_data_dir: String,
}

impl Placed {
    /// `host:listen`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.ports.listen)
    }

    /// `host:dledger`.
    pub fn dledger_address(&self) -> String {
        format!("{}:{}", self.host, self.ports.dledger)
    }
}

/// sha256 over sorted `key=value` lines plus `version`, hex.
pub fn hash_config(config: &HashMap<String, String>, version: &str, skip: &[&str]) -> String {
    let sorted: BTreeMap<_, _> = config
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .collect();
    let mut h = Sha256::new();
    for (k, v) in sorted {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    h.update(b"version=");
    h.update(version.as_bytes());
    hex::encode(h.finalize())
}

fn data_dir(cluster: &str, storage: Option<&Storage>, p: &Placed) -> String {
    match storage {
        Some(s) if s.mode == Mode::HostPath as i32 => {
            format!("{}/{cluster}/{}", s.host_path.trim_end_matches('/'), p.name)
        }
        _ => {
            let root = if p.agent_data_dir.is_empty() {
                DEFAULT_AGENT_DATA_DIR
            } else {
                p.agent_data_dir.trim_end_matches('/')
            };
            format!("{root}/instances/{}", p.name)
        }
    }
}

fn finish(mut i: Instance, version: &str) -> Instance {
    i.config_hash = hash_config(&i.config, version, &[]);
    i.restart_hash = hash_config(&i.config, version, ONLINE_KEYS);
    i.version = version.to_string();
    i.restart_policy = RestartPolicy::Always as i32;
    i
}

/// Stamps a rolling restart's token on a rendered instance: the token goes into both hashes,
/// so a new token makes the running process out of date (it restarts once granted
/// `may_restart`), and keeping the same token keeps it current.
pub fn stamp_restart(i: &mut Instance, token: &str) {
    if token.is_empty() {
        return;
    }
    let version = format!("{}\nrestart_token={token}", i.version);
    i.config_hash = hash_config(&i.config, &version, &[]);
    i.restart_hash = hash_config(&i.config, &version, ONLINE_KEYS);
    i.restart_token = token.to_string();
}

/// A nameserver instance.
pub fn namesrv(cluster: &str, spec: &ClusterSpec, p: &Placed) -> Instance {
    let mut config = HashMap::new();
    config.insert("listen".to_string(), p.address());
    let i = Instance {
        name: p.name.clone(),
        kind: InstanceKind::Namesrv as i32,
        cluster: cluster.to_string(),
        group: String::new(),
        config,
        ports: Some(Ports {
            listen: p.ports.listen,
            ha: 0,
            dledger: 0,
        }),
        data_dir: data_dir(cluster, None, p),
        storage: Some(Storage {
            mode: Mode::Ephemeral as i32,
            host_path: String::new(),
        }),
        resources: Some(
            spec.nameserver
                .as_ref()
                .and_then(|n| n.resources)
                .unwrap_or_default(),
        ),
        ..Default::default()
    };
    finish(i, &spec.version)
}

/// The members of one broker group, in member order, as placed.
#[derive(Debug, Clone)]
pub struct GroupPlan<'a> {
    /// Group name (`brokerName`).
    pub group: &'a str,
    /// Members (member index = position); `None` = not placed.
    pub members: &'a [Option<Placed>],
}

/// A broker instance: member `m` of `group`, with the cluster's `namesrv_addr`.
pub fn broker(
    cluster: &str,
    spec: &ClusterSpec,
    group: &GroupPlan<'_>,
    m: u32,
    p: &Placed,
    namesrv_addr: &str,
) -> Instance {
    let b = spec.broker.clone().unwrap_or_default();
    let dledger = b.mode == BrokerMode::Dledger as i32;
    let mut config: HashMap<String, String> = b.config.clone();
    let mut set = |k: &str, v: String| {
        config.insert(k.to_string(), v);
    };
    set("brokerClusterName", cluster.to_string());
    set("brokerName", group.group.to_string());
    set("namesrvAddr", namesrv_addr.to_string());
    set("listenPort", p.ports.listen.to_string());
    let dir = data_dir(cluster, b.storage.as_ref(), p);
    set("storePathRootDir", dir.clone());
    set("brokerIP1", p.host.clone());
    let mut peers = Vec::new();
    if dledger {
        peers = group
            .members
            .iter()
            .enumerate()
            .filter_map(|(i, mp)| {
                let mp = mp.as_ref()?;
                Some(DLedgerPeer {
                    self_id: names::dledger_self_id(u32::try_from(i).ok()?),
                    address: mp.dledger_address(),
                })
            })
            .collect();
        set("enableDLegerCommitLog", "true".into());
        set("dLegerGroup", group.group.to_string());
        set(
            "dLegerPeers",
            peers
                .iter()
                .map(|p| format!("{}-{}", p.self_id, p.address))
                .collect::<Vec<_>>()
                .join(";"),
        );
        set("dLegerSelfId", names::dledger_self_id(m));
    } else {
        set("brokerId", m.to_string());
        let role = if m > 0 {
            "SLAVE"
        } else if b.master_role == MasterRole::SyncMaster as i32 {
            "SYNC_MASTER"
        } else {
            "ASYNC_MASTER"
        };
        set("brokerRole", role.to_string());
        if m == 0 && b.master_role == MasterRole::SyncMaster as i32 {
            let isr = if b.in_sync_replicas == 0 {
                b.replicas_per_group
            } else {
                b.in_sync_replicas
            };
            set("inSyncReplicas", isr.to_string());
        }
    }
    let i = Instance {
        name: p.name.clone(),
        kind: InstanceKind::Broker as i32,
        cluster: cluster.to_string(),
        group: group.group.to_string(),
        config,
        ports: Some(Ports {
            listen: p.ports.listen,
            ha: if dledger { 0 } else { p.ports.ha },
            dledger: if dledger { p.ports.dledger } else { 0 },
        }),
        data_dir: dir,
        storage: Some(b.storage.clone().unwrap_or(Storage {
            mode: Mode::Ephemeral as i32,
            host_path: String::new(),
        })),
        resources: Some(b.resources.unwrap_or(Resources {
            memory_mib: 0,
            cpu_millis: 0,
        })),
        dledger_peers: peers,
        ..Default::default()
    };
    finish(i, &spec.version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_proto::v1::{BrokerSpec, NameServerSpec};

    fn placed(name: &str, host: &str, listen: u32, dledger: u32) -> Placed {
        Placed {
            name: name.into(),
            node: format!("node-{host}"),
            host: host.into(),
            ports: Ports {
                listen,
                ha: listen + 1,
                dledger,
            },
            agent_data_dir: "/data".into(),
        }
    }

    fn spec(mode: BrokerMode, role: MasterRole) -> ClusterSpec {
        ClusterSpec {
            nameserver: Some(NameServerSpec {
                replicas: 1,
                ..Default::default()
            }),
            broker: Some(BrokerSpec {
                groups: 1,
                replicas_per_group: 3,
                mode: mode as i32,
                master_role: role as i32,
                config: [("deleteWhen".to_string(), "04".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn master_slave_config() {
        let s = spec(BrokerMode::MasterSlave, MasterRole::SyncMaster);
        let members = vec![
            Some(placed("c-0-0", "h0", 10911, 0)),
            Some(placed("c-0-1", "h1", 10911, 0)),
            None,
        ];
        let g = GroupPlan {
            group: "c-0",
            members: &members,
        };
        let m0 = broker("c", &s, &g, 0, members[0].as_ref().unwrap(), "h0:9876");
        assert_eq!(m0.config["brokerRole"], "SYNC_MASTER");
        assert_eq!(m0.config["brokerId"], "0");
        assert_eq!(m0.config["inSyncReplicas"], "3");
        assert_eq!(m0.config["brokerName"], "c-0");
        assert_eq!(m0.config["brokerClusterName"], "c");
        assert_eq!(m0.config["listenPort"], "10911");
        assert_eq!(m0.config["brokerIP1"], "h0");
        assert_eq!(m0.config["deleteWhen"], "04");
        assert_eq!(m0.config["storePathRootDir"], "/data/instances/c-0-0");
        assert_eq!(m0.data_dir, "/data/instances/c-0-0");
        assert_eq!(m0.restart_policy, RestartPolicy::Always as i32);
        let m1 = broker("c", &s, &g, 1, members[1].as_ref().unwrap(), "h0:9876");
        assert_eq!(m1.config["brokerRole"], "SLAVE");
        assert_eq!(m1.config["brokerId"], "1");
        assert!(!m1.config.contains_key("inSyncReplicas"));
    }

    #[test]
    fn dledger_config() {
        let s = spec(BrokerMode::Dledger, MasterRole::Unspecified);
        let members = vec![
            Some(placed("c-0-0", "host-a", 10911, 40911)),
            Some(placed("c-0-1", "host-b", 10911, 40911)),
            Some(placed("c-0-2", "host-c", 10915, 40912)),
        ];
        let g = GroupPlan {
            group: "c-0",
            members: &members,
        };
        let m2 = broker("c", &s, &g, 2, members[2].as_ref().unwrap(), "a:1;b:2");
        assert_eq!(m2.config["enableDLegerCommitLog"], "true");
        assert_eq!(m2.config["dLegerGroup"], "c-0");
        assert_eq!(
            m2.config["dLegerPeers"],
            "n0-host-a:40911;n1-host-b:40911;n2-host-c:40912"
        );
        assert_eq!(m2.config["dLegerSelfId"], "n2");
        assert!(!m2.config.contains_key("brokerRole"));
        assert_eq!(m2.dledger_peers.len(), 3);
        assert_eq!(m2.ports.unwrap().dledger, 40912);
    }

    #[test]
    fn hashes_separate_online_keys() {
        let s = spec(BrokerMode::MasterSlave, MasterRole::AsyncMaster);
        let members = vec![Some(placed("c-0-0", "h0", 10911, 0))];
        let g = GroupPlan {
            group: "c-0",
            members: &members,
        };
        let p = members[0].as_ref().unwrap();
        let a = broker("c", &s, &g, 0, p, "h0:9876");
        let b = broker("c", &s, &g, 0, p, "h0:9876;h1:9876");
        assert_ne!(a.config_hash, b.config_hash);
        assert_eq!(a.restart_hash, b.restart_hash);
        let mut s2 = s.clone();
        s2.version = "5.1.0".into();
        let c = broker("c", &s2, &g, 0, p, "h0:9876");
        assert_ne!(a.restart_hash, c.restart_hash);
        // Deterministic regardless of map order.
        assert_eq!(
            a.config_hash,
            broker("c", &s, &g, 0, p, "h0:9876").config_hash
        );
    }

    #[test]
    fn restart_token_changes_both_hashes_and_is_stable() {
        let s = spec(BrokerMode::MasterSlave, MasterRole::AsyncMaster);
        let members = vec![Some(placed("c-0-0", "h0", 10911, 0))];
        let g = GroupPlan {
            group: "c-0",
            members: &members,
        };
        let p = members[0].as_ref().unwrap();
        let plain = broker("c", &s, &g, 0, p, "h0:9876");
        let mut a = plain.clone();
        stamp_restart(&mut a, "op-1");
        assert_ne!(a.config_hash, plain.config_hash);
        assert_ne!(a.restart_hash, plain.restart_hash);
        assert_eq!(a.restart_token, "op-1");
        let mut again = plain.clone();
        stamp_restart(&mut again, "op-1");
        assert_eq!(again.config_hash, a.config_hash);
        let mut other = plain.clone();
        stamp_restart(&mut other, "op-2");
        assert_ne!(other.restart_hash, a.restart_hash);
        // An online key still changes online under a token.
        let mut online = broker("c", &s, &g, 0, p, "h0:9876;h1:9876");
        stamp_restart(&mut online, "op-1");
        assert_eq!(online.restart_hash, a.restart_hash);
        let mut none = plain.clone();
        stamp_restart(&mut none, "");
        assert_eq!(none, plain);
    }

    #[test]
    fn namesrv_listen_and_host_path() {
        let s = spec(BrokerMode::MasterSlave, MasterRole::AsyncMaster);
        let n = namesrv("c", &s, &placed("c-namesrv-0", "h0", 9876, 0));
        assert_eq!(n.config["listen"], "h0:9876");
        assert_eq!(n.kind, InstanceKind::Namesrv as i32);
        let st = Storage {
            mode: Mode::HostPath as i32,
            host_path: "/mnt/mq/".into(),
        };
        assert_eq!(
            data_dir("c", Some(&st), &placed("c-0-0", "h", 1, 0)),
            "/mnt/mq/c/c-0-0"
        );
    }
}

//! Validation of API input, field by field, as the proto comments state it.
//!
//! Every check appends a [`Violation`] with the field's path in the request message
//! (`cluster.spec.broker.replicas_per_group`), so one bad request gets every problem back at
//! once as `google.rpc.BadRequest`. Nothing reaches the store unvalidated. The functions are
//! pure, so each rule is unit-tested here.

use std::collections::HashMap;

use flotilla_proto::v1::{
    BrokerMode, BrokerSpec, ClusterSpec, MasterRole, NameServerSpec, Placement, Resources, Storage,
    placement::Spread, storage::Mode,
};

use crate::errors::{ApiError, Violation};
use crate::names;

/// Broker config keys the control plane sets itself; users may not.
pub const OWNED_BROKER_KEYS: &[&str] = &[
    "brokerClusterName",
    "brokerName",
    "brokerId",
    "brokerRole",
    "namesrvAddr",
    "listenPort",
    "storePathRootDir",
    "brokerIP1",
    "enableDLegerCommitLog",
    "dLegerGroup",
    "dLegerPeers",
    "dLegerSelfId",
    "inSyncReplicas",
];

/// Collects violations.
#[derive(Debug, Default)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    /// Records one violation.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(Violation::new(field, description));
    }

    /// `Ok` when empty, else INVALID_ARGUMENT with `reason`.
    pub fn into_result(self, reason: &'static str) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument {
                reason,
                violations: self.0,
            })
        }
    }
}

/// A resource name (DNS-1123 label).
pub fn name(v: &mut Violations, field: &str, value: &str) {
    if value.is_empty() {
        v.add(field, "required");
    } else if !names::is_dns_label(value) {
        v.add(
            field,
            "must be a DNS-1123 label: 1-63 characters of [a-z0-9-], starting with a letter, \
             ending with a letter or digit",
        );
    }
}

/// A node name: the agent's `--node-id`, which on Kubernetes is the Node's name, a DNS-1123
/// subdomain (`ip-10-0-0-1.ec2.internal`), so dots are allowed where resource names are
/// labels.
pub fn node_name(v: &mut Violations, field: &str, value: &str) {
    if value.is_empty() {
        v.add(field, "required");
    } else if !names::is_dns_subdomain(value) {
        v.add(
            field,
            "must be a DNS-1123 subdomain: at most 253 characters of [a-z0-9-.], dot-separated \
             labels each starting and ending with a letter or digit",
        );
    }
}

fn label_chars(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A label map (keys: optional DNS subdomain prefix and `/`, then 1-63 of `[A-Za-z0-9._-]`;
/// values: at most 63 of the same set).
pub fn labels(v: &mut Violations, field: &str, labels: &HashMap<String, String>) {
    let mut keys: Vec<_> = labels.keys().collect();
    keys.sort();
    for k in keys {
        let (prefix, nm) = match k.split_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        if prefix.is_some_and(|p| !names::is_dns_subdomain(p)) {
            v.add(
                format!("{field}.{k}"),
                "label key prefix must be a DNS-1123 subdomain",
            );
        } else if nm.is_empty() || nm.len() > 63 || !label_chars(nm) {
            v.add(
                format!("{field}.{k}"),
                "label key name must be 1-63 characters of [A-Za-z0-9._-]",
            );
        }
        let val = &labels[k];
        if val.len() > 63 || !label_chars(val) {
            v.add(
                format!("{field}.{k}"),
                "label value must be at most 63 characters of [A-Za-z0-9._-]",
            );
        }
    }
}

/// An optional request id: 1-128 of `[A-Za-z0-9._-]`.
pub fn request_id(v: &mut Violations, field: &str, id: &str) {
    if !id.is_empty() && (id.len() > 128 || !label_chars(id)) {
        v.add(
            field,
            "request_id must be 1-128 characters of [A-Za-z0-9._-]",
        );
    }
}

/// An etag: empty or a decimal revision.
pub fn etag(v: &mut Violations, field: &str, etag: &str) -> Option<i64> {
    if etag.is_empty() {
        return None;
    }
    match etag.parse::<i64>() {
        Ok(r) if r > 0 => Some(r),
        _ => {
            v.add(
                field,
                "etag must be a revision as returned in metadata.etag",
            );
            None
        }
    }
}

/// Longest topic or consumer-group name RocketMQ accepts.
pub const MAX_ROCKETMQ_NAME: usize = 127;

/// A RocketMQ topic or consumer-group name (RocketMQ's own rule): 1-127 characters of
/// `[%|a-zA-Z0-9_-]`.
pub fn rocketmq_name(v: &mut Violations, field: &str, value: &str) {
    if value.is_empty() {
        v.add(field, "required");
    } else if value.len() > MAX_ROCKETMQ_NAME {
        v.add(
            field,
            format!(
                "must be at most {MAX_ROCKETMQ_NAME} characters (is {})",
                value.len()
            ),
        );
    } else if !value
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'%' | b'|' | b'_' | b'-'))
    {
        v.add(
            field,
            "must match ^[%|a-zA-Z0-9_-]+$ (letters, digits, %, |, _ and -)",
        );
    }
}

/// A topic name a user may create: [`rocketmq_name`], and not one RocketMQ reserves
/// (`TBW102`, `rmq_sys_…`, `%RETRY%…`, `%DLQ%…`).
pub fn user_topic(v: &mut Violations, field: &str, value: &str) {
    let before = v.0.len();
    rocketmq_name(v, field, value);
    if v.0.len() == before
        && (value == "TBW102"
            || value.starts_with("rmq_sys_")
            || value.starts_with("%RETRY%")
            || value.starts_with("%DLQ%"))
    {
        v.add(field, "is reserved by RocketMQ");
    }
}

/// `page_size`: 0 = 100, at most 1000.
pub fn page_size(v: &mut Violations, field: &str, size: i32) -> usize {
    match size {
        0 => 100,
        1..=1000 => usize::try_from(size).unwrap_or(100),
        _ => {
            v.add(field, "page_size must be 0..=1000");
            100
        }
    }
}

/// Parses an equality label selector `k=v,k2=v2`.
pub fn label_selector(v: &mut Violations, field: &str, sel: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in sel.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => {
                let val = val.strip_prefix('=').unwrap_or(val);
                out.push((k.trim().to_string(), val.trim().to_string()));
            }
            _ => v.add(field, format!("{part:?} is not key=value")),
        }
    }
    out
}

/// Whether `labels` satisfy an equality selector.
pub fn matches_selector(labels: &HashMap<String, String>, sel: &[(String, String)]) -> bool {
    sel.iter().all(|(k, val)| labels.get(k) == Some(val))
}

fn resources(v: &mut Violations, field: &str, r: Option<&Resources>, broker: bool) {
    if let Some(r) = r
        && broker
        && r.memory_mib != 0
        && r.memory_mib < 256
    {
        v.add(
            format!("{field}.memory_mib"),
            "broker memory limit must be 0 (none) or >= 256 MiB",
        );
    }
}

fn storage(v: &mut Violations, field: &str, s: Option<&Storage>) {
    let Some(s) = s else { return };
    match Mode::try_from(s.mode) {
        Ok(Mode::HostPath) => {
            if s.host_path.is_empty() {
                v.add(
                    format!("{field}.host_path"),
                    "required when mode is HOST_PATH",
                );
            } else if !s.host_path.starts_with('/') {
                v.add(format!("{field}.host_path"), "must be an absolute path");
            }
        }
        Ok(Mode::Unspecified | Mode::Ephemeral) => {
            if !s.host_path.is_empty() {
                v.add(
                    format!("{field}.host_path"),
                    "must be empty unless mode is HOST_PATH",
                );
            }
        }
        Err(_) => v.add(format!("{field}.mode"), "unknown storage mode"),
    }
}

fn port(v: &mut Violations, field: &str, port: u32, min: u32, max: u32) {
    if port != 0 && !(min..=max).contains(&port) {
        v.add(field, format!("must be 0 (assigned) or {min}..={max}"));
    }
}

fn is_semver(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<_> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
        && s[core.len()..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+'))
}

fn is_uint(s: &str) -> bool {
    !s.is_empty() && s.len() <= 19 && s.bytes().all(|c| c.is_ascii_digit())
}

/// Checks one user broker config entry; `None` when fine.
pub fn broker_config_entry(key: &str, value: &str) -> Option<String> {
    if key.is_empty()
        || key.len() > 128
        || !key.as_bytes()[0].is_ascii_alphabetic()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_'))
    {
        return Some("config keys are RocketMQ property names ([A-Za-z][A-Za-z0-9._]*)".into());
    }
    if OWNED_BROKER_KEYS.contains(&key) {
        return Some(format!(
            "{key} is set by the control plane and may not be given"
        ));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Some("values must be one line".into());
    }
    let bool_keys = [
        "autoCreateTopicEnable",
        "autoCreateSubscriptionGroup",
        "traceTopicEnable",
        "slaveReadEnable",
        "enablePropertyFilter",
        "transientStorePoolEnable",
    ];
    let positive_int_keys = [
        "fileReservedTime",
        "maxMessageSize",
        "sendMessageThreadPoolNums",
        "pullMessageThreadPoolNums",
        "defaultTopicQueueNums",
        "mappedFileSizeCommitLog",
        "mappedFileSizeConsumeQueue",
        "flushIntervalCommitLog",
    ];
    if bool_keys.contains(&key) && value != "true" && value != "false" {
        return Some("must be true or false".into());
    }
    if positive_int_keys.contains(&key) {
        return match value.parse::<i64>() {
            Ok(n) if n > 0 && n <= i64::from(i32::MAX) => None,
            _ => Some("must be a positive integer".into()),
        };
    }
    match key {
        "flushDiskType" if value != "ASYNC_FLUSH" && value != "SYNC_FLUSH" => {
            Some("must be ASYNC_FLUSH or SYNC_FLUSH".into())
        }
        "deleteWhen"
            if !value
                .split(';')
                .all(|h| h.len() == 2 && is_uint(h) && h.parse::<u32>().is_ok_and(|h| h < 24)) =>
        {
            Some("must be hours 00..23 separated by ';' (e.g. \"04\" or \"04;16\")".into())
        }
        "diskMaxUsedSpaceRatio" | "diskSpaceCleanForciblyRatio" | "diskSpaceWarningLevelRatio"
            if !value.parse::<u32>().is_ok_and(|p| (10..=99).contains(&p)) =>
        {
            Some("must be a percentage 10..99".into())
        }
        "brokerPermission" if !matches!(value, "0" | "2" | "4" | "6") => {
            Some("must be 2 (write), 4 (read), 6 (read-write) or 0".into())
        }
        _ => None,
    }
}

fn nameserver(v: &mut Violations, field: &str, ns: Option<&NameServerSpec>) {
    let Some(ns) = ns else {
        v.add(field, "required");
        return;
    };
    if !(1..=9).contains(&ns.replicas) {
        v.add(format!("{field}.replicas"), "must be 1..=9");
    }
    port(v, &format!("{field}.port"), ns.port, 1, 65535);
    resources(
        v,
        &format!("{field}.resources"),
        ns.resources.as_ref(),
        false,
    );
}

fn broker(v: &mut Violations, field: &str, b: Option<&BrokerSpec>) {
    let Some(b) = b else {
        v.add(field, "required");
        return;
    };
    if !(1..=64).contains(&b.groups) {
        v.add(format!("{field}.groups"), "must be 1..=64");
    }
    let rpg_ok = (1..=5).contains(&b.replicas_per_group);
    if !rpg_ok {
        v.add(format!("{field}.replicas_per_group"), "must be 1..=5");
    }
    match BrokerMode::try_from(b.mode) {
        Ok(BrokerMode::Unspecified) => v.add(format!("{field}.mode"), "required"),
        Err(_) => v.add(format!("{field}.mode"), "unknown broker mode"),
        Ok(BrokerMode::Dledger) => {
            if rpg_ok && b.replicas_per_group != 1 && b.replicas_per_group % 2 == 0 {
                v.add(
                    format!("{field}.replicas_per_group"),
                    "a DLedger group needs an odd number of members, 3 or more (1 for tests)",
                );
            }
            if b.master_role != 0 {
                v.add(format!("{field}.master_role"), "only for MASTER_SLAVE");
            }
            if b.in_sync_replicas != 0 {
                v.add(format!("{field}.in_sync_replicas"), "only for SYNC_MASTER");
            }
        }
        Ok(BrokerMode::MasterSlave) => match MasterRole::try_from(b.master_role) {
            Err(_) => v.add(format!("{field}.master_role"), "unknown master role"),
            Ok(MasterRole::SyncMaster) => {
                if b.in_sync_replicas > b.replicas_per_group {
                    v.add(
                        format!("{field}.in_sync_replicas"),
                        "must be <= replicas_per_group",
                    );
                }
            }
            Ok(_) => {
                if b.in_sync_replicas != 0 {
                    v.add(format!("{field}.in_sync_replicas"), "only for SYNC_MASTER");
                }
            }
        },
    }
    let mut keys: Vec<_> = b.config.keys().collect();
    keys.sort();
    for k in keys {
        if let Some(problem) = broker_config_entry(k, &b.config[k]) {
            v.add(format!("{field}.config.{k}"), problem);
        }
    }
    resources(v, &format!("{field}.resources"), b.resources.as_ref(), true);
    storage(v, &format!("{field}.storage"), b.storage.as_ref());
    // The broker also needs listen-2 (fast port) and listen+1 (HA port).
    port(v, &format!("{field}.port"), b.port, 3, 65534);
}

fn placement(v: &mut Violations, field: &str, p: Option<&Placement>) {
    let Some(p) = p else { return };
    labels(v, &format!("{field}.node_selector"), &p.node_selector);
    if Spread::try_from(p.spread).is_err() {
        v.add(format!("{field}.spread"), "unknown spread");
    }
}

/// Validates a whole spec of cluster `cluster` under `field` (`cluster.spec`).
pub fn cluster_spec(v: &mut Violations, field: &str, cluster: &str, spec: Option<&ClusterSpec>) {
    let Some(spec) = spec else {
        v.add(field, "required");
        return;
    };
    nameserver(v, &format!("{field}.nameserver"), spec.nameserver.as_ref());
    broker(v, &format!("{field}.broker"), spec.broker.as_ref());
    if let Some(src) = &spec.scale_source
        && !src.group.is_empty()
    {
        let groups = spec.broker.as_ref().map_or(0, |b| b.groups);
        match names::group_index(cluster, &src.group) {
            Some(i) if i < groups => {}
            _ => v.add(
                format!("{field}.scale_source.group"),
                format!("must name a group of this cluster ({cluster}-<index>)"),
            ),
        }
    }
    if !spec.version.is_empty() && !spec.version.starts_with('/') && !is_semver(&spec.version) {
        v.add(
            format!("{field}.version"),
            "must be empty, a semantic version (1.2.3) or an absolute path",
        );
    }
    placement(v, &format!("{field}.placement"), spec.placement.as_ref());
}

/// Checks an update against the stored spec: fields that cannot change.
pub fn immutable(v: &mut Violations, field: &str, old: &ClusterSpec, new: &ClusterSpec) {
    let (Some(ob), Some(nb)) = (&old.broker, &new.broker) else {
        return;
    };
    if ob.mode != nb.mode && nb.mode != 0 {
        v.add(format!("{field}.broker.mode"), "immutable");
    }
    // Restarting DLedger members with another peer list is not a safe membership change
    // (two majorities can form); until joint consensus exists the count stays as created.
    if ob.mode == BrokerMode::Dledger as i32 && ob.replicas_per_group != nb.replicas_per_group {
        v.add(
            format!("{field}.broker.replicas_per_group"),
            format!(
                "cannot change from {} to {} in DLEDGER mode: Raft membership change is not supported yet (create a new cluster and migrate topics to it)",
                ob.replicas_per_group, nb.replicas_per_group
            ),
        );
    }
    let old_storage = ob.storage.clone().unwrap_or_default();
    let new_storage = nb.storage.clone().unwrap_or_default();
    if old_storage != new_storage {
        v.add(format!("{field}.broker.storage"), "immutable");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_dns_subdomains_so_kubernetes_node_names_pass() {
        let check = |n: &str| {
            let mut v = Violations::default();
            node_name(&mut v, "name", n);
            v.0.is_empty()
        };
        assert!(check("ip-10-0-0-1.ec2.internal"));
        assert!(check("node-1"));
        assert!(
            check("10.0.0.7"),
            "labels may start with a digit in a subdomain"
        );
        assert!(!check(""));
        assert!(!check("Node-1"), "uppercase");
        assert!(!check("a..b"), "empty label");
        assert!(!check("a.-b"), "label starting with '-'");
        assert!(!check("a/desired"), "would alias the desired-state key");
        assert!(!check(&"a".repeat(254)));
    }

    #[test]
    fn dledger_member_count_is_fixed_and_master_slave_is_not() {
        let spec = |mode: BrokerMode, n: u32| ClusterSpec {
            broker: Some(BrokerSpec {
                mode: mode as i32,
                replicas_per_group: n,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut v = Violations::default();
        immutable(
            &mut v,
            "cluster.spec",
            &spec(BrokerMode::Dledger, 3),
            &spec(BrokerMode::Dledger, 5),
        );
        assert_eq!(v.0.len(), 1, "{:?}", v.0);
        assert_eq!(v.0[0].field, "cluster.spec.broker.replicas_per_group");
        assert!(v.0[0].description.contains("membership"), "{:?}", v.0);
        let mut v = Violations::default();
        immutable(
            &mut v,
            "cluster.spec",
            &spec(BrokerMode::MasterSlave, 2),
            &spec(BrokerMode::MasterSlave, 3),
        );
        assert!(v.0.is_empty(), "{:?}", v.0);
    }

    #[test]
    fn rocketmq_names() {
        let check = |s: &str| {
            let mut v = Violations::default();
            user_topic(&mut v, "topic.name", s);
            v.0
        };
        assert!(check("Orders_v2-%|x").is_empty());
        assert!(check(&"a".repeat(127)).is_empty());
        let long = check(&"a".repeat(128));
        assert!(long[0].description.contains("127"), "{long:?}");
        let bad = check("orders.v1");
        assert_eq!(bad[0].field, "topic.name");
        assert!(bad[0].description.contains("^[%|a-zA-Z0-9_-]+$"));
        assert_eq!(check("")[0].description, "required");
        assert!(check("TBW102")[0].description.contains("reserved"));
        assert!(check("%RETRY%g")[0].description.contains("reserved"));
        let mut v = Violations::default();
        rocketmq_name(&mut v, "group", "%RETRY%g");
        assert!(
            v.0.is_empty(),
            "groups and system names pass the plain rule"
        );
    }
    use flotilla_proto::v1::{ConsoleSpec, ScaleSource};

    fn good() -> ClusterSpec {
        ClusterSpec {
            nameserver: Some(NameServerSpec {
                replicas: 1,
                port: 0,
                resources: None,
            }),
            broker: Some(BrokerSpec {
                groups: 2,
                replicas_per_group: 2,
                mode: BrokerMode::MasterSlave as i32,
                ..Default::default()
            }),
            console: Some(ConsoleSpec { enabled: true }),
            ..Default::default()
        }
    }

    fn fields(spec: &ClusterSpec) -> Vec<String> {
        let mut v = Violations::default();
        cluster_spec(&mut v, "cluster.spec", "c", Some(spec));
        v.0.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn good_spec_passes() {
        assert!(fields(&good()).is_empty());
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutate = Box<dyn Fn(&mut ClusterSpec)>;
        let cases: Vec<(Mutate, &str)> = vec![
            (Box::new(|s| s.nameserver = None), "cluster.spec.nameserver"),
            (
                Box::new(|s| s.nameserver.as_mut().unwrap().replicas = 10),
                "cluster.spec.nameserver.replicas",
            ),
            (
                Box::new(|s| s.broker.as_mut().unwrap().groups = 0),
                "cluster.spec.broker.groups",
            ),
            (
                Box::new(|s| s.broker.as_mut().unwrap().replicas_per_group = 6),
                "cluster.spec.broker.replicas_per_group",
            ),
            (
                Box::new(|s| {
                    let b = s.broker.as_mut().unwrap();
                    b.mode = BrokerMode::Dledger as i32;
                    b.replicas_per_group = 2;
                }),
                "cluster.spec.broker.replicas_per_group",
            ),
            (
                Box::new(|s| s.broker.as_mut().unwrap().mode = 0),
                "cluster.spec.broker.mode",
            ),
            (
                Box::new(|s| s.broker.as_mut().unwrap().in_sync_replicas = 1),
                "cluster.spec.broker.in_sync_replicas",
            ),
            (
                Box::new(|s| {
                    s.broker
                        .as_mut()
                        .unwrap()
                        .config
                        .insert("brokerName".into(), "x".into());
                }),
                "cluster.spec.broker.config.brokerName",
            ),
            (
                Box::new(|s| {
                    s.broker
                        .as_mut()
                        .unwrap()
                        .config
                        .insert("flushDiskType".into(), "SOMETIMES".into());
                }),
                "cluster.spec.broker.config.flushDiskType",
            ),
            (
                Box::new(|s| {
                    s.broker.as_mut().unwrap().storage = Some(Storage {
                        mode: Mode::HostPath as i32,
                        host_path: "rel".into(),
                    });
                }),
                "cluster.spec.broker.storage.host_path",
            ),
            (
                Box::new(|s| {
                    s.broker.as_mut().unwrap().resources = Some(Resources {
                        memory_mib: 100,
                        cpu_millis: 0,
                    });
                }),
                "cluster.spec.broker.resources.memory_mib",
            ),
            (
                Box::new(|s| s.broker.as_mut().unwrap().port = 65535),
                "cluster.spec.broker.port",
            ),
            (
                Box::new(|s| s.version = "latest".into()),
                "cluster.spec.version",
            ),
            (
                Box::new(|s| {
                    s.scale_source = Some(ScaleSource {
                        group: "c-7".into(),
                    });
                }),
                "cluster.spec.scale_source.group",
            ),
            (
                Box::new(|s| {
                    s.placement = Some(Placement {
                        node_selector: [("bad key!".to_string(), "v".to_string())].into(),
                        spread: 0,
                    });
                }),
                "cluster.spec.placement.node_selector.bad key!",
            ),
        ];
        for (mutate, field) in cases {
            let mut s = good();
            mutate(&mut s);
            assert_eq!(fields(&s), vec![field.to_string()], "case {field}");
        }
    }

    #[test]
    fn config_values() {
        assert!(broker_config_entry("deleteWhen", "04;16").is_none());
        assert!(broker_config_entry("deleteWhen", "25").is_some());
        assert!(broker_config_entry("fileReservedTime", "48").is_none());
        assert!(broker_config_entry("fileReservedTime", "-1").is_some());
        assert!(broker_config_entry("diskSpaceWarningLevelRatio", "98").is_none());
        assert!(broker_config_entry("diskSpaceWarningLevelRatio", "100").is_some());
        assert!(broker_config_entry("autoCreateTopicEnable", "yes").is_some());
        assert!(broker_config_entry("someUnknownKey", "anything").is_none());
        assert!(broker_config_entry("bad key", "x").is_some());
    }

    #[test]
    fn semver_and_names() {
        assert!(is_semver("5.1.0"));
        assert!(is_semver("5.1.0-rc.1"));
        assert!(!is_semver("5.1"));
        let mut v = Violations::default();
        name(&mut v, "cluster.metadata.name", "Bad_Name");
        request_id(&mut v, "request_id", "ok-1.2_3");
        request_id(&mut v, "request_id", "no spaces");
        assert_eq!(v.0.len(), 2);
    }

    #[test]
    fn selectors() {
        let mut v = Violations::default();
        let sel = label_selector(&mut v, "label_selector", "team=payments, env=prod");
        assert!(v.0.is_empty());
        let labels: HashMap<_, _> = [
            ("team".to_string(), "payments".to_string()),
            ("env".to_string(), "prod".to_string()),
        ]
        .into();
        assert!(matches_selector(&labels, &sel));
        label_selector(&mut v, "label_selector", "novalue");
        assert_eq!(v.0.len(), 1);
    }
}

//! The RocketMQ Kubernetes operator's documents (`apiVersion: rocketmq.apache.org/v1alpha1`)
//! read as they are, so a team moving off Kubernetes can `flotilla apply -f` the files it has.
//!
//! | operator document | becomes |
//! |---|---|
//! | `Broker` | a Cluster named after it: `size` broker groups of `1 + replicaPerGroup` master/slave members, `allowRestart`, storage (`EmptyDir`/`StorageClass` → ephemeral, `HostPath` → host path), `scalePodName` → scale source, `resources.limits`, `nodeSelector` |
//! | the `ConfigMap` its `volumes[0]` names | the broker config: `broker-common.conf`'s keys, minus those Flotilla owns (`brokerClusterName`, `brokerName`, `brokerId`, `namesrvAddr`, …); `brokerRole` picks ASYNC/SYNC master |
//! | `NameService` | the nameserver count (`size`) of every cluster of the file |
//! | `Console` | the console switch (`spec.console.enabled`: the business API acts on the clusters) of every cluster of the file, and a warning that no web console is deployed |
//! | `TopicTransfer` | a topic migration (`TopicService.MigrateTopic`) |
//!
//! Fields that mean nothing off Kubernetes (images, pull policies, pod security, affinity,
//! tolerations, service accounts, volume claims, host networking, …) are ignored with one
//! warning each, naming the document and the field; unknown fields are warned about too.
//! The operator's field lists are in `shared/research/operator.md`.
//!
//! A `Console` deployed the RocketMQ dashboard. Flotilla's own web console does not exist
//! yet (the web console issue, #20), so a Console document is answered, never silently
//! taken: it turns on what Flotilla already has in its place (the business API, `flotilla
//! topic|group|message|dlq …`, on the file's clusters) and warns once that no web console
//! is deployed, then once per field: `consoleDeployment` (the dashboard's Deployment) has
//! nothing to deploy, and `nameServers` is not needed because Flotilla's business calls
//! find each cluster's nameservers themselves.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::apply::{ClusterFile, ResourcesFile, StorageFile};
use crate::docs::{DocError, Document};

/// The operator's API group prefix.
pub const GROUP: &str = "rocketmq.apache.org/";

/// Operator fields with no meaning off Kubernetes, for every kind.
const KUBERNETES_ONLY: [&str; 19] = [
    "brokerImage",
    "nameServiceImage",
    "imagePullPolicy",
    "imagePullSecrets",
    "hostNetwork",
    "dnsPolicy",
    "securityContext",
    "containerSecurityContext",
    "podAnnotations",
    "affinity",
    "tolerations",
    "priorityClassName",
    "serviceAccountName",
    "volumeClaimTemplates",
    "env",
    "consoleDeployment",
    "nameServers",
    "controllerImage",
    "clusterMode",
];

/// Broker config keys Flotilla sets itself (as the operator's `brokerGenConfig.sh` did).
const OWNED_KEYS: [&str; 12] = [
    "brokerClusterName",
    "brokerName",
    "brokerId",
    "brokerRole",
    "namesrvAddr",
    "listenPort",
    "storePathRootDir",
    "storePathCommitLog",
    "brokerIP1",
    "enableDLegerCommitLog",
    "dLegerPeers",
    "dLegerSelfId",
];

/// Whether a raw document is one this module reads (operator kinds, or a plain ConfigMap).
pub fn is_operator(v: &Value) -> bool {
    let api = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    api.starts_with(GROUP) || (api == "v1" && kind == "ConfigMap")
}

/// Translated documents and the warnings about fields that were ignored.
#[derive(Debug, Default)]
pub struct Translation {
    /// Flotilla documents, clusters first.
    pub documents: Vec<Document>,
    /// One line per ignored field.
    pub warnings: Vec<String>,
}

fn invalid(index: usize, kind: &str, message: impl Into<String>) -> DocError {
    DocError::Invalid {
        index,
        kind: kind.to_string(),
        message: message.into(),
    }
}

/// A Kubernetes memory quantity in MiB (`512Mi`, `1Gi`, `1G`, `500M`, bytes).
pub fn memory_mib(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let bytes = n * match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    };
    (bytes >= 0.0).then(|| (bytes / (1024.0 * 1024.0)).ceil() as u64)
}

/// A Kubernetes CPU quantity in millicores (`500m`, `2`, `0.5`).
pub fn cpu_millis(q: &str) -> Option<u32> {
    let q = q.trim();
    let m = match q.strip_suffix('m') {
        Some(n) => n.parse::<f64>().ok()?,
        None => q.parse::<f64>().ok()? * 1000.0,
    };
    (m >= 0.0 && m <= f64::from(u32::MAX)).then(|| m.ceil() as u32)
}

fn quantity(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `resources.limits` (else `requests`) as Flotilla resources.
fn resources(v: Option<&Value>) -> ResourcesFile {
    let Some(r) = v else {
        return ResourcesFile::default();
    };
    let pick = |what: &str| {
        r.get("limits")
            .and_then(|l| l.get(what))
            .or_else(|| r.get("requests").and_then(|l| l.get(what)))
            .and_then(quantity)
    };
    ResourcesFile {
        memory_mib: pick("memory").and_then(|m| memory_mib(&m)).unwrap_or(0),
        cpu_millis: pick("cpu").and_then(|c| cpu_millis(&c)).unwrap_or(0),
    }
}

/// Java properties text (`k=v` / `k: v` lines, `#` and `!` comments).
pub fn properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let i = l.find(['=', ':'])?;
            Some((l[..i].trim().to_string(), l[i + 1..].trim().to_string()))
        })
        .collect()
}

struct Raw {
    index: usize,
    kind: String,
    name: String,
    spec: serde_json::Map<String, Value>,
    data: serde_json::Map<String, Value>,
}

fn raw(index: usize, v: Value) -> Result<Raw, DocError> {
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(invalid(index, &kind, "metadata.name is required"));
    }
    let obj = |key: &str| match v.get(key) {
        Some(Value::Object(m)) => Ok(m.clone()),
        None | Some(Value::Null) => Ok(serde_json::Map::new()),
        Some(_) => Err(invalid(index, &kind, format!("{key} must be a mapping"))),
    };
    Ok(Raw {
        index,
        spec: obj("spec")?,
        data: obj("data")?,
        kind,
        name,
    })
}

fn u32_field(r: &Raw, key: &str, default: u32) -> Result<u32, DocError> {
    match r.spec.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                invalid(
                    r.index,
                    &r.kind,
                    format!("spec.{key} must be a whole number >= 0, got {v}"),
                )
            }),
    }
}

fn warn_rest(r: &Raw, used: &[&str], warnings: &mut Vec<String>) {
    for key in r.spec.keys() {
        if used.contains(&key.as_str()) {
            continue;
        }
        let why = if KUBERNETES_ONLY.contains(&key.as_str()) {
            "has no meaning off Kubernetes"
        } else {
            "is not an operator field Flotilla knows"
        };
        warnings.push(format!(
            "document {} ({} {}): spec.{key} {why}; ignored",
            r.index, r.kind, r.name
        ));
    }
}

/// The answer to a `Console` document: no web console yet, and why each field is ignored.
fn console_warnings(r: &Raw, warnings: &mut Vec<String>) {
    let at = format!("document {} ({} {})", r.index, r.kind, r.name);
    warnings.push(format!(
        "{at}: Flotilla has no web console yet (tracked by the web console issue, #20), so \
         nothing is deployed; the console switch (spec.console.enabled) is turned on for the \
         clusters of this input, so the business API (`flotilla topic|group|message|dlq …`) \
         acts on them"
    ));
    for (key, why) in [
        (
            "consoleDeployment",
            "is the dashboard's Deployment; there is no web console to deploy yet (#20)",
        ),
        (
            "nameServers",
            "is not needed: Flotilla's business calls find each cluster's nameservers",
        ),
    ] {
        if r.spec.contains_key(key) {
            warnings.push(format!("{at}: spec.{key} {why}; ignored"));
        }
    }
    warn_rest(r, &["consoleDeployment", "nameServers"], warnings);
}

/// Translates the operator documents of one input (`(index, raw)` pairs, 1-based).
pub fn translate(docs: Vec<(usize, Value)>) -> Result<Translation, DocError> {
    let mut out = Translation::default();
    let raws: Vec<Raw> = docs
        .into_iter()
        .map(|(i, v)| raw(i, v))
        .collect::<Result<_, _>>()?;
    let config_maps: BTreeMap<&str, &Raw> = raws
        .iter()
        .filter(|r| r.kind == "ConfigMap")
        .map(|r| (r.name.as_str(), r))
        .collect();
    let nameservers = raws
        .iter()
        .filter(|r| r.kind == "NameService")
        .map(|r| {
            warn_rest(r, &["size"], &mut out.warnings);
            u32_field(r, "size", 1)
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max();
    let console = raws.iter().any(|r| r.kind == "Console");
    for r in raws.iter().filter(|r| r.kind == "Console") {
        console_warnings(r, &mut out.warnings);
    }
    let mut clusters = Vec::new();
    for r in raws.iter().filter(|r| r.kind == "Broker") {
        clusters.push(broker(r, &config_maps, nameservers, &mut out.warnings)?);
    }
    if console && clusters.is_empty() {
        return Err(invalid(
            raws.iter()
                .find(|r| r.kind == "Console")
                .map_or(0, |r| r.index),
            "Console",
            "a Console applies to the Broker documents of the same input; there are none",
        ));
    }
    if nameservers.is_some() && clusters.is_empty() {
        return Err(invalid(
            raws.iter()
                .find(|r| r.kind == "NameService")
                .map_or(0, |r| r.index),
            "NameService",
            "a NameService sizes the clusters of the Broker documents of the same input; there are none",
        ));
    }
    for mut c in clusters {
        c.console = console.then_some(true);
        out.documents.push(Document::Cluster(Box::new(c)));
    }
    for r in &raws {
        match r.kind.as_str() {
            "Broker" | "NameService" | "Console" | "ConfigMap" => {}
            "TopicTransfer" => {
                let field = |k: &str| {
                    r.spec
                        .get(k)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| invalid(r.index, &r.kind, format!("spec.{k} is required")))
                };
                warn_rest(
                    r,
                    &["topic", "sourceCluster", "targetCluster"],
                    &mut out.warnings,
                );
                out.documents.push(Document::Migrate {
                    name: r.name.clone(),
                    topic: field("topic")?,
                    source: field("sourceCluster")?,
                    target: field("targetCluster")?,
                });
            }
            other => {
                return Err(DocError::UnknownKind {
                    index: r.index,
                    kind: other.to_string(),
                });
            }
        }
    }
    Ok(out)
}

fn broker(
    r: &Raw,
    config_maps: &BTreeMap<&str, &Raw>,
    nameservers: Option<u32>,
    warnings: &mut Vec<String>,
) -> Result<ClusterFile, DocError> {
    let groups = u32_field(r, "size", 1)?;
    let slaves = u32_field(r, "replicaPerGroup", 0)?;
    let mut used = vec![
        "size",
        "replicaPerGroup",
        "allowRestart",
        "storageMode",
        "hostPath",
        "scalePodName",
        "resources",
        "nodeSelector",
        "volumes",
    ];
    let storage = match r.spec.get("storageMode").and_then(Value::as_str) {
        Some("HostPath") => StorageFile {
            mode: "host-path".into(),
            host_path: r
                .spec
                .get("hostPath")
                .and_then(Value::as_str)
                .map(|p| format!("{}/{}", p.trim_end_matches('/'), r.name))
                .ok_or_else(|| {
                    invalid(r.index, &r.kind, "storageMode HostPath needs spec.hostPath")
                })?,
        },
        Some("StorageClass") => {
            warnings.push(format!(
                "document {} (Broker {}): storageMode StorageClass has no meaning off Kubernetes; the brokers keep their data on their node's disk (ephemeral storage)",
                r.index, r.name
            ));
            StorageFile::default()
        }
        _ => StorageFile::default(),
    };
    let mut config = BTreeMap::new();
    let mut master_role = String::new();
    let cm_name = r
        .spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|v| v.first())
        .and_then(|v| v.pointer("/configMap/name"))
        .and_then(Value::as_str);
    if let Some(cm_name) = cm_name {
        let cm = config_maps.get(cm_name).ok_or_else(|| {
            invalid(
                r.index,
                &r.kind,
                format!("spec.volumes[0] names ConfigMap {cm_name}, which is not in the input"),
            )
        })?;
        let text = cm
            .data
            .get("broker-common.conf")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                invalid(
                    cm.index,
                    "ConfigMap",
                    format!("{cm_name} has no data.broker-common.conf"),
                )
            })?;
        for (k, v) in properties(text) {
            if k == "brokerRole" {
                master_role = match v.as_str() {
                    "SYNC_MASTER" => "sync".into(),
                    _ => "async".into(),
                };
            } else if OWNED_KEYS.contains(&k.as_str()) {
                warnings.push(format!(
                    "document {} (ConfigMap {cm_name}): broker-common.conf key {k} is set by Flotilla; ignored",
                    cm.index
                ));
            } else {
                config.insert(k, v);
            }
        }
    }
    let scale_source = r
        .spec
        .get("scalePodName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !scale_source.is_empty() {
        warnings.push(format!(
            "document {} (Broker {}): spec.scalePodName is not needed: new broker groups copy topics and groups from a ready group by themselves; ignored",
            r.index, r.name
        ));
    }
    let placement = r.spec.get("nodeSelector").and_then(Value::as_object);
    if placement.is_some_and(|m| !m.is_empty()) {
        warnings.push(format!(
            "document {} (Broker {}): spec.nodeSelector matches Kubernetes node labels; Flotilla nodes have their own labels, so it is not applied",
            r.index, r.name
        ));
    }
    used.retain(|k| r.spec.contains_key(*k));
    warn_rest(r, &used, warnings);
    Ok(ClusterFile {
        name: r.name.clone(),
        nameservers: nameservers.unwrap_or(1),
        nameserver_port: 0,
        groups,
        replicas_per_group: 1 + slaves,
        mode: "master-slave".into(),
        master_role,
        in_sync_replicas: 0,
        broker_port: 0,
        config,
        allow_restart: r
            .spec
            .get("allowRestart")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        spread: String::new(),
        storage,
        resources: resources(r.spec.get("resources")),
        labels: BTreeMap::new(),
        version: String::new(),
        console: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written from the operator's field lists (`shared/research/operator.md`), in the shape of
    /// its example `rocketmq_v1alpha1_rocketmq_cluster.yaml`.
    pub const OPERATOR_YAML: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: broker-config
data:
  broker-common.conf: |
    # generated by the operator's users
    brokerClusterName=DefaultCluster
    brokerRole=SYNC_MASTER
    deleteWhen=04
    fileReservedTime=48
    flushDiskType=ASYNC_FLUSH
---
apiVersion: rocketmq.apache.org/v1alpha1
kind: NameService
metadata:
  name: name-service
spec:
  size: 3
  nameServiceImage: apacherocketmq/rocketmq-nameserver:4.5.0-alpine-operator-0.3.0
  imagePullPolicy: Always
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  storageMode: EmptyDir
---
apiVersion: rocketmq.apache.org/v1alpha1
kind: Broker
metadata:
  name: broker
spec:
  size: 2
  nameServers: \"\"
  replicaPerGroup: 1
  brokerImage: apacherocketmq/rocketmq-broker:4.5.0-alpine-operator-0.3.0
  imagePullPolicy: Always
  resources:
    requests: {memory: 2048Mi, cpu: 250m}
    limits: {memory: 12Gi, cpu: 500m}
  allowRestart: true
  storageMode: HostPath
  hostPath: /data/rocketmq/broker
  scalePodName: broker-0-master-0
  env:
    - {name: BROKER_MEM, valueFrom: {configMapKeyRef: {name: broker-config, key: BROKER_MEM}}}
  volumes:
    - name: broker-config
      configMap:
        name: broker-config
        items: [{key: broker-common.conf, path: broker-common.conf}]
  volumeClaimTemplates:
    - metadata: {name: broker-storage}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 8Gi}}}
---
apiVersion: rocketmq.apache.org/v1alpha1
kind: Console
metadata:
  name: console
spec:
  nameServers: \"\"
  consoleDeployment:
    apiVersion: apps/v1
    kind: Deployment
    spec: {replicas: 1}
---
apiVersion: rocketmq.apache.org/v1alpha1
kind: TopicTransfer
metadata:
  name: topictransfer
spec:
  topic: TopicTest
  sourceCluster: broker
  targetCluster: other
";

    #[test]
    fn the_operator_example_translates_with_warnings() {
        let raws = crate::docs::split(OPERATOR_YAML).unwrap();
        assert!(raws.iter().all(is_operator));
        let t = translate(
            raws.into_iter()
                .enumerate()
                .map(|(i, v)| (i + 1, v))
                .collect(),
        )
        .unwrap();
        let Document::Cluster(c) = &t.documents[0] else {
            panic!("{:?}", t.documents)
        };
        assert_eq!(c.name, "broker");
        assert_eq!((c.nameservers, c.groups, c.replicas_per_group), (3, 2, 2));
        assert_eq!(c.mode, "master-slave");
        assert_eq!(c.master_role, "sync", "brokerRole=SYNC_MASTER");
        assert!(c.allow_restart);
        assert_eq!(c.storage.mode, "host-path");
        assert_eq!(c.storage.host_path, "/data/rocketmq/broker/broker");
        assert_eq!(c.resources.memory_mib, 12 * 1024);
        assert_eq!(c.resources.cpu_millis, 500);
        assert_eq!(c.config.get("deleteWhen").map(String::as_str), Some("04"));
        assert!(!c.config.contains_key("brokerClusterName"));
        assert_eq!(c.console, Some(true));
        assert!(matches!(
            &t.documents[1],
            Document::Migrate { topic, source, target, .. }
                if topic == "TopicTest" && source == "broker" && target == "other"
        ));
        let w = t.warnings.join("\n");
        for field in [
            "spec.nameServiceImage has no meaning off Kubernetes",
            "spec.hostNetwork has no meaning off Kubernetes",
            "spec.brokerImage has no meaning off Kubernetes",
            "spec.volumeClaimTemplates has no meaning off Kubernetes",
            "(Console console): Flotilla has no web console yet (tracked by the web console issue, #20)",
            "(Console console): spec.consoleDeployment is the dashboard's Deployment; there is no web console to deploy yet (#20); ignored",
            "(Console console): spec.nameServers is not needed",
            "spec.env has no meaning off Kubernetes",
            "brokerClusterName is set by Flotilla",
            "spec.scalePodName is not needed",
        ] {
            assert!(w.contains(field), "warns {field:?}:\n{w}");
        }
        assert!(
            w.lines().all(|l| l.starts_with("document ")),
            "every warning names its document:\n{w}"
        );
    }

    #[test]
    fn quantities_and_properties() {
        assert_eq!(memory_mib("512Mi"), Some(512));
        assert_eq!(memory_mib("1Gi"), Some(1024));
        assert_eq!(memory_mib("1G"), Some(954));
        assert_eq!(memory_mib("lots"), None);
        assert_eq!(cpu_millis("250m"), Some(250));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.5"), Some(500));
        let p = properties("# c\n! c\na=1\nb: 2\n  c = x=y \n");
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "2");
        assert_eq!(p["c"], "x=y");
    }

    #[test]
    fn missing_pieces_are_errors() {
        let docs = |y: &str| {
            crate::docs::split(y)
                .unwrap()
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i + 1, v))
                .collect::<Vec<_>>()
        };
        let e = translate(docs(
            "apiVersion: rocketmq.apache.org/v1alpha1\nkind: Broker\nmetadata: {name: b}\nspec:\n  volumes: [{configMap: {name: nope}}]\n",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("ConfigMap nope"), "{e}");
        let e = translate(docs(
            "apiVersion: rocketmq.apache.org/v1alpha1\nkind: Console\nmetadata: {name: c}\n",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("Broker documents"), "{e}");
        let e = translate(docs(
            "apiVersion: rocketmq.apache.org/v1alpha1\nkind: Controller\nmetadata: {name: c}\n",
        ))
        .unwrap_err();
        assert_eq!(e.code(), "APPLY_UNKNOWN_KIND");
        let e = translate(docs(
            "apiVersion: rocketmq.apache.org/v1alpha1\nkind: Broker\nmetadata: {name: b}\nspec: {size: -1}\n",
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("spec.size must be a whole number"),
            "{e}"
        );
    }
}

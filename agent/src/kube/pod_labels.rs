//! The agent's own Pod, labelled with the instances it runs, so that a Kubernetes Service
//! can reach one nameserver without host networking.
//!
//! Placement, not Kubernetes, decides which node runs `orders-namesrv-0`, and every agent
//! pod of the DaemonSet looks alike, so a Service has nothing to select that one pod by.
//! With `--kube-pod` the agent keeps one label per instance it supervises on its Pod,
//! `instance.flotilla.io/<instance>: "true"`, and removes the labels of instances it no
//! longer runs; the Helm chart's per-nameserver Services select on them. When a nameserver
//! moves to another node, its label moves with it and the Service follows.
//!
//! The labels are written with a JSON merge patch of `metadata.labels` (only the keys that
//! change; `null` removes one), after reading the Pod's current labels, so labels set by
//! anyone else are left alone. RBAC needs `get` and `patch` on pods in the agent's
//! namespace. A failed write is retried after a backoff; the supervisor's change
//! notification and a periodic check drive the loop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, Patch, PatchParams};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, watch};
use tracing::{Instrument, debug, info_span, warn};

use super::KubeError;
use crate::supervisor::Supervisor;
use crate::supervisor::backoff::Backoff;

/// The prefix of the label naming an instance this pod runs.
pub const INSTANCE_LABEL_PREFIX: &str = "instance.flotilla.io/";

/// How often the labels are checked when nothing was notified.
const RECHECK: Duration = Duration::from_secs(10);

/// The label key of instance `name`.
pub fn instance_label(name: &str) -> String {
    format!("{INSTANCE_LABEL_PREFIX}{name}")
}

/// The merge patch of `metadata.labels` that makes the pod's instance labels (in `current`,
/// its labels now) name exactly `instances`; `None` when they already do. Labels without the
/// prefix are never touched.
pub fn label_patch(
    current: &BTreeMap<String, String>,
    instances: &BTreeSet<String>,
) -> Option<Value> {
    let mut labels = Map::new();
    for key in current.keys() {
        if let Some(name) = key.strip_prefix(INSTANCE_LABEL_PREFIX)
            && !instances.contains(name)
        {
            labels.insert(key.clone(), Value::Null);
        }
    }
    for name in instances {
        let key = instance_label(name);
        if current.get(&key).map(String::as_str) != Some("true") {
            labels.insert(key, Value::String("true".into()));
        }
    }
    (!labels.is_empty()).then(|| serde_json::json!({ "metadata": { "labels": labels } }))
}

/// Keeps Pod `pod` (in `namespace`) labelled with the instances `sup` supervises, until
/// `shutdown` turns true.
pub async fn run(
    client: ::kube::Client,
    namespace: String,
    pod: String,
    sup: Arc<Mutex<Supervisor>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let span = info_span!("kube_pod_labels", pod = %pod, namespace = %namespace);
    async {
        let api: Api<Pod> = Api::namespaced(client, &namespace);
        let changed = sup.lock().await.changed();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut applied: Option<BTreeSet<String>> = None;
        while !*shutdown.borrow() {
            let names: BTreeSet<String> = sup.lock().await.instance_names().into_iter().collect();
            let mut wait = RECHECK;
            if applied.as_ref() != Some(&names) {
                match apply(&api, &pod, &names).await {
                    Ok(()) => {
                        applied = Some(names);
                        backoff.reset();
                    }
                    Err(e) => {
                        warn!(error = %e, code = e.code(), "labelling the agent's Pod");
                        wait = backoff.next_delay();
                    }
                }
            }
            tokio::select! {
                () = changed.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    .instrument(span)
    .await;
}

/// Reads the Pod's labels and patches the instance labels that differ.
async fn apply(api: &Api<Pod>, pod: &str, names: &BTreeSet<String>) -> Result<(), KubeError> {
    let current = api.get(pod).await?.metadata.labels.unwrap_or_default();
    if let Some(patch) = label_patch(&current, names) {
        debug!(instances = ?names, "instance labels changed");
        api.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_patch_adds_new_instances_and_removes_gone_ones_only() {
        let current: BTreeMap<String, String> = [
            ("app.kubernetes.io/name", "flotilla"),
            ("instance.flotilla.io/orders-namesrv-0", "true"),
            ("instance.flotilla.io/orders-0-1", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let p = label_patch(&current, &set(&["orders-namesrv-0", "orders-1-0"])).unwrap();
        assert_eq!(
            p,
            serde_json::json!({"metadata": {"labels": {
                "instance.flotilla.io/orders-0-1": null,
                "instance.flotilla.io/orders-1-0": "true",
            }}})
        );
        assert_eq!(
            label_patch(&current, &set(&["orders-namesrv-0", "orders-0-1"])),
            None,
            "nothing to change, nothing sent"
        );
        let all_gone = label_patch(&current, &set(&[])).unwrap();
        let labels = all_gone["metadata"]["labels"].as_object().unwrap();
        assert_eq!(labels.len(), 2);
        assert!(
            !labels.contains_key("app.kubernetes.io/name"),
            "other labels stay"
        );
    }
}

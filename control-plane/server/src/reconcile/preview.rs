//! Plan preview: what a spec change would do to each instance, before anything is done.
//!
//! Neither the RocketMQ operator nor Strimzi tells an operator, before a change, which
//! brokers it will restart. `UpdateCluster` answers it every time (and with `validate_only`
//! does nothing else): the reconciler's own [`super::plan`] runs over a copy of the cache in
//! which the cluster already has the new spec, and its desired states are compared with the
//! current ones, instance by instance — started, stopped, moved, restarted (a restart-only
//! key or the version changed) or changed online (only keys the broker applies live).

use std::collections::BTreeMap;

use flotilla_intent_store::keys;
use flotilla_proto::agent::v1::{DesiredState, Instance};
use flotilla_proto::v1::{Cluster, MemberChange, member_change::Action};
use prost::Message;
use prost_types::Timestamp;

use crate::cache::{State, Versioned};
use crate::context::Ctx;
use crate::names;

fn instances(st: &State, cluster: &str) -> BTreeMap<String, (String, Instance)> {
    let mut out = BTreeMap::new();
    for (node, ds) in &st.desired {
        for i in ds.value.instances.iter().filter(|i| i.cluster == cluster) {
            out.insert(i.name.clone(), (node.clone(), i.clone()));
        }
    }
    out
}

fn changed_keys(a: &Instance, b: &Instance) -> Vec<String> {
    let mut keys: Vec<String> = a
        .config
        .iter()
        .filter(|(k, v)| b.config.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(
            b.config
                .keys()
                .filter(|k| !a.config.contains_key(*k))
                .cloned(),
        )
        .collect();
    if a.version != b.version {
        keys.push("version".into());
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Compares two desired pictures of one cluster (pure; unit-tested).
pub fn diff(
    before: &BTreeMap<String, (String, Instance)>,
    after: &BTreeMap<String, (String, Instance)>,
) -> Vec<MemberChange> {
    let mut out = Vec::new();
    for (name, (node, new)) in after {
        let change = match before.get(name) {
            None => Some((Action::Start, Vec::new())),
            Some((old_node, _)) if old_node != node => Some((Action::Move, Vec::new())),
            Some((_, old)) if old.restart_hash != new.restart_hash => {
                Some((Action::Restart, changed_keys(old, new)))
            }
            Some((_, old)) if old.config_hash != new.config_hash => {
                Some((Action::Online, changed_keys(old, new)))
            }
            Some(_) => None,
        };
        if let Some((action, keys)) = change {
            out.push(MemberChange {
                member: name.clone(),
                node: node.clone(),
                action: action as i32,
                keys,
            });
        }
    }
    for (name, (node, _)) in before {
        if !after.contains_key(name) {
            out.push(MemberChange {
                member: name.clone(),
                node: node.clone(),
                action: Action::Stop as i32,
                keys: Vec::new(),
            });
        }
    }
    out
}

/// What `next` (the cluster with its new spec) would change, planned over the current cache.
/// A scale-in's leaving groups are shown as stopping although their instances stay until
/// the workflow's StopMembers step, and so are leaving nameservers, which stay until every
/// broker has dropped them from its list.
pub fn preview(ctx: &Ctx, next: &Cluster, leaving_groups: &[String]) -> Vec<MemberChange> {
    let name = next
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let epoch = ctx.leader.epoch().unwrap_or(0);
    let now = Timestamp::from(std::time::SystemTime::now());
    ctx.cache.read(|st| {
        let before = instances(st, &name);
        let mut copy = st.clone();
        let rev = copy.clusters.get(&name).map_or(0, |v| v.mod_revision);
        copy.clusters.insert(
            name.clone(),
            Versioned {
                value: next.clone(),
                mod_revision: rev,
            },
        );
        let Ok(plan) = super::plan_as(ctx, &copy, &name, epoch, now, true) else {
            return Vec::new();
        };
        for (key, value) in &plan.writes {
            let Some(keys::NodeKey::Desired(node)) = keys::parse_node_key(key) else {
                continue;
            };
            match value {
                Some(bytes) => {
                    if let Ok(ds) = DesiredState::decode(bytes.as_slice()) {
                        copy.desired.insert(
                            node.to_string(),
                            Versioned {
                                value: ds,
                                mod_revision: 0,
                            },
                        );
                    }
                }
                None => {
                    copy.desired.remove(node);
                }
            }
        }
        let mut after = instances(&copy, &name);
        // Leaving nameservers stay until the brokers dropped them from their lists: shown as
        // stopping.
        let ns_replicas = next
            .spec
            .as_ref()
            .and_then(|s| s.nameserver.as_ref())
            .map_or(0, |n| n.replicas);
        after.retain(|n, (_, i)| {
            !leaving_groups.contains(&i.group)
                && names::namesrv_index(&name, n).is_none_or(|i| i < ns_replicas)
        });
        diff(&before, &after)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(name: &str, cfg: &[(&str, &str)], config_hash: &str, restart_hash: &str) -> Instance {
        Instance {
            name: name.into(),
            config: cfg
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            config_hash: config_hash.into(),
            restart_hash: restart_hash.into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_kind_of_change_is_named() {
        let before: BTreeMap<String, (String, Instance)> = [
            ("a", "n1", inst("a", &[("k", "1")], "c1", "r1")),
            ("b", "n1", inst("b", &[("namesrvAddr", "x")], "c1", "r1")),
            ("c", "n2", inst("c", &[], "c1", "r1")),
            ("d", "n2", inst("d", &[], "c1", "r1")),
            ("e", "n3", inst("e", &[], "c1", "r1")),
        ]
        .into_iter()
        .map(|(n, node, i)| (n.to_string(), (node.to_string(), i)))
        .collect();
        let after: BTreeMap<String, (String, Instance)> = [
            ("a", "n1", inst("a", &[("k", "2")], "c2", "r2")),
            ("b", "n1", inst("b", &[("namesrvAddr", "y")], "c2", "r1")),
            ("c", "n3", inst("c", &[], "c1", "r1")),
            ("d", "n2", inst("d", &[], "c1", "r1")),
            ("f", "n1", inst("f", &[], "c1", "r1")),
        ]
        .into_iter()
        .map(|(n, node, i)| (n.to_string(), (node.to_string(), i)))
        .collect();
        let got: Vec<(String, i32, Vec<String>)> = diff(&before, &after)
            .into_iter()
            .map(|c| (c.member, c.action, c.keys))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "a".to_string(),
                    Action::Restart as i32,
                    vec!["k".to_string()]
                ),
                (
                    "b".to_string(),
                    Action::Online as i32,
                    vec!["namesrvAddr".to_string()]
                ),
                ("c".to_string(), Action::Move as i32, vec![]),
                ("f".to_string(), Action::Start as i32, vec![]),
                ("e".to_string(), Action::Stop as i32, vec![]),
            ]
        );
    }
}

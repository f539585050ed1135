//! Placement: which node runs each instance, and on which ports. Pure functions.
//!
//! Rules (from `Placement` in `cluster.proto` and the node API):
//! - an existing placement never moves unless its node is gone (deleted) or draining;
//! - new instances go only to nodes that are Ready, not cordoned, not draining, and match the
//!   node selector;
//! - the members of one broker group, and the nameservers, go to distinct nodes: required by
//!   `SPREAD_REQUIRED` (else the instance stays unplaced, i.e. Pending), preferred by
//!   `SPREAD_PREFERRED`;
//! - among equals, the least loaded node (fewest instances of any cluster) wins, then the
//!   name, so placement is deterministic.
//!
//! Ports are per node and never collide: a nameserver needs its listen port; a broker needs
//! listen, listen+1 (HA) and listen−2 (fast port) free, plus a DLedger port in DLEDGER mode.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use flotilla_proto::agent::v1::{Instance, Ports};

/// Default nameserver port.
pub const NAMESRV_PORT: u32 = 9876;
/// Default broker listen port.
pub const BROKER_PORT: u32 = 10911;
/// Default DLedger port.
pub const DLEDGER_PORT: u32 = 40911;
/// Distance between broker port blocks on one node (listen−2 … listen+1).
pub const BROKER_PORT_STEP: u32 = 4;

/// What placement needs to know about a node.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Cordoned: nothing new goes there.
    pub cordoned: bool,
    /// Draining: nothing new goes there and existing instances move off.
    pub draining: bool,
    /// Connected and heartbeating.
    pub ready: bool,
    /// Instances of *other* clusters on it.
    pub load: usize,
}

/// One instance to place, and the spread group it belongs to (the nameservers form one
/// group, each broker group another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Instance name.
    pub name: String,
    /// Spread group.
    pub spread_group: String,
}

/// Places `slots` on `nodes`, keeping `existing` placements (instance → node) where allowed.
/// Returns instance → node, `None` for instances that cannot be placed now.
pub fn place(
    slots: &[Slot],
    nodes: &[NodeInfo],
    existing: &BTreeMap<String, String>,
    selector: &HashMap<String, String>,
    spread_required: bool,
) -> BTreeMap<String, Option<String>> {
    let by_name: HashMap<&str, &NodeInfo> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut load: HashMap<&str, usize> = nodes.iter().map(|n| (n.name.as_str(), n.load)).collect();
    // spread group -> node -> count
    let mut groups: HashMap<&str, HashMap<String, usize>> = HashMap::new();
    let mut out = BTreeMap::new();
    let mut todo = Vec::new();
    for slot in slots {
        let kept = existing
            .get(&slot.name)
            .filter(|n| by_name.get(n.as_str()).is_some_and(|info| !info.draining));
        match kept {
            Some(node) => {
                let in_group = groups.entry(&slot.spread_group).or_default();
                assign(slot, node, in_group, &mut load, &mut out);
            }
            None => todo.push(slot),
        }
    }
    let eligible: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| n.ready && !n.cordoned && !n.draining)
        .filter(|n| selector.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
        .collect();
    for slot in todo {
        let in_group = groups.entry(&slot.spread_group).or_default();
        let best = eligible
            .iter()
            .map(|n| {
                (
                    in_group.get(&n.name).copied().unwrap_or(0),
                    load.get(n.name.as_str()).copied().unwrap_or(0),
                    n.name.as_str(),
                )
            })
            .filter(|(same, _, _)| !spread_required || *same == 0)
            .min();
        match best {
            Some((_, _, node)) => assign(slot, node, in_group, &mut load, &mut out),
            None => {
                out.insert(slot.name.clone(), None);
            }
        }
    }
    out
}

/// Places `slot` on `node`: one more of its spread group there (`in_group`: node → count),
/// one more instance in the node's `load`.
fn assign(
    slot: &Slot,
    node: &str,
    in_group: &mut HashMap<String, usize>,
    load: &mut HashMap<&str, usize>,
    out: &mut BTreeMap<String, Option<String>>,
) {
    *in_group.entry(node.to_string()).or_default() += 1;
    if let Some(l) = load.get_mut(node) {
        *l += 1;
    }
    out.insert(slot.name.clone(), Some(node.to_string()));
}

/// Every port an instance occupies on its node.
pub fn occupied(ports: &Ports, broker: bool) -> Vec<u32> {
    let mut v = Vec::new();
    if ports.listen != 0 {
        v.push(ports.listen);
        if broker {
            v.push(ports.listen + 1);
            v.push(ports.listen.saturating_sub(2));
        }
    }
    if ports.ha != 0 {
        v.push(ports.ha);
    }
    if ports.dledger != 0 {
        v.push(ports.dledger);
    }
    v
}

/// Ports used by `instances` (one node's).
pub fn used_ports<'a>(instances: impl IntoIterator<Item = &'a Instance>) -> BTreeSet<u32> {
    let mut used = BTreeSet::new();
    for i in instances {
        if let Some(p) = &i.ports {
            let broker = i.kind == flotilla_proto::v1::InstanceKind::Broker as i32;
            used.extend(occupied(p, broker));
        }
    }
    used
}

/// A free nameserver port at or above `base`.
pub fn namesrv_port(used: &BTreeSet<u32>, base: u32) -> Option<u32> {
    let base = if base == 0 { NAMESRV_PORT } else { base };
    (base..=65535).find(|p| !used.contains(p))
}

/// Free broker ports: listen (with listen−2 and listen+1 free) at or above `base` in steps of
/// [`BROKER_PORT_STEP`], and a DLedger port when `dledger`.
pub fn broker_ports(used: &BTreeSet<u32>, base: u32, dledger: bool) -> Option<Ports> {
    let base = if base == 0 { BROKER_PORT } else { base };
    let listen = (0..)
        .map(|i: u32| base.checked_add(i.checked_mul(BROKER_PORT_STEP)?))
        .take_while(|p| p.is_some_and(|p| p < 65535))
        .flatten()
        .find(|p| ![*p - 2, *p, *p + 1].iter().any(|q| used.contains(q)))?;
    let mut taken = used.clone();
    taken.extend([listen - 2, listen, listen + 1]);
    let dledger_port = if dledger {
        (DLEDGER_PORT..=65535).find(|p| !taken.contains(p))?
    } else {
        0
    };
    Some(Ports {
        listen,
        ha: listen + 1,
        dledger: dledger_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            ready: true,
            ..Default::default()
        }
    }

    /// `place` with no existing placements and no node selector.
    fn place_new(
        slots: &[Slot],
        nodes: &[NodeInfo],
        spread_required: bool,
    ) -> BTreeMap<String, Option<String>> {
        place(
            slots,
            nodes,
            &BTreeMap::new(),
            &HashMap::new(),
            spread_required,
        )
    }

    fn slots(group: &str, n: usize) -> Vec<Slot> {
        (0..n)
            .map(|i| Slot {
                name: format!("{group}-{i}"),
                spread_group: group.into(),
            })
            .collect()
    }

    #[test]
    fn spreads_a_group_over_distinct_nodes() {
        let nodes = vec![node("a"), node("b"), node("c")];
        let out = place_new(&slots("g", 3), &nodes, true);
        let placed: BTreeSet<_> = out.values().flatten().collect();
        assert_eq!(placed.len(), 3);
    }

    #[test]
    fn required_spread_leaves_extra_members_pending() {
        let nodes = vec![node("a"), node("b")];
        let out = place_new(&slots("g", 3), &nodes, true);
        assert_eq!(out.values().filter(|n| n.is_none()).count(), 1);
        let out = place_new(&slots("g", 3), &nodes, false);
        assert_eq!(out.values().filter(|n| n.is_none()).count(), 0);
    }

    #[test]
    fn cordoned_draining_notready_and_unselected_nodes_get_nothing_new() {
        let mut nodes = vec![node("a"), node("b"), node("c"), node("d"), node("e")];
        nodes[0].cordoned = true;
        nodes[1].draining = true;
        nodes[2].ready = false;
        nodes[3].labels.insert("disk".into(), "ssd".into());
        let sel: HashMap<_, _> = [("disk".to_string(), "ssd".to_string())].into();
        let out = place(&slots("g", 2), &nodes, &BTreeMap::new(), &sel, true);
        assert_eq!(out["g-0"].as_deref(), Some("d"));
        assert_eq!(out["g-1"], None);
    }

    #[test]
    fn existing_placements_stay_unless_node_gone_or_draining() {
        let mut nodes = vec![node("a"), node("b"), node("c")];
        nodes[0].cordoned = true; // cordon keeps running instances
        let existing: BTreeMap<_, _> = [
            ("g-0".to_string(), "a".to_string()),
            ("g-1".to_string(), "gone".to_string()),
        ]
        .into();
        let out = place(&slots("g", 2), &nodes, &existing, &HashMap::new(), true);
        assert_eq!(out["g-0"].as_deref(), Some("a"));
        assert!(matches!(out["g-1"].as_deref(), Some("b" | "c")));
        nodes[0].draining = true;
        let out = place(&slots("g", 2), &nodes, &existing, &HashMap::new(), true);
        assert_ne!(out["g-0"].as_deref(), Some("a"));
        assert_ne!(out["g-0"], out["g-1"]);
    }

    #[test]
    fn least_loaded_first() {
        let mut nodes = vec![node("a"), node("b")];
        nodes[0].load = 5;
        let out = place_new(&slots("g", 1), &nodes, true);
        assert_eq!(out["g-0"].as_deref(), Some("b"));
    }

    #[test]
    fn ports_never_collide() {
        let mut used = BTreeSet::new();
        let ns = namesrv_port(&used, 0).unwrap();
        assert_eq!(ns, 9876);
        used.insert(ns);
        assert_eq!(namesrv_port(&used, 0), Some(9877));
        let b1 = broker_ports(&used, 0, true).unwrap();
        assert_eq!((b1.listen, b1.ha, b1.dledger), (10911, 10912, 40911));
        used.extend(occupied(&b1, true));
        let b2 = broker_ports(&used, 0, true).unwrap();
        assert_eq!(b2.listen, 10915);
        assert_eq!(b2.dledger, 40912);
        for p in occupied(&b2, true) {
            assert!(!used.contains(&p));
        }
        // A fast port (listen-2) in use pushes the block up.
        let used: BTreeSet<u32> = [10909].into();
        assert_eq!(broker_ports(&used, 0, false).unwrap().listen, 10915);
    }
}

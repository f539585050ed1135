//! Placement: which node runs each instance, and on which ports. Pure functions.
//!
//! Rules (from `Placement` in `cluster.proto` and the node API):
//! - an existing placement never moves unless its node is gone (deleted) or draining;
//! - new instances go only to nodes that are Ready, not cordoned, not draining, and match the
//!   node selector;
//! - the members of one broker group, and the nameservers, go to distinct nodes: required by
//!   `SPREAD_REQUIRED` (else the instance stays unplaced, i.e. Pending), preferred by
//!   `SPREAD_PREFERRED`;
//! - the members of one spread group also prefer distinct zones (the node's
//!   `topology.kubernetes.io/zone`, reported by its agent): among nodes that hold as few of
//!   the group as possible, one in the zone holding fewest of the group wins, so losing a
//!   zone loses as few members of a group as the nodes allow. It is a preference, never a
//!   requirement: with fewer zones than members some share a zone, and nodes with no known
//!   zone count as one zone of their own (so a fleet without zones places as before);
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
    /// Its zone (empty when unknown).
    pub zone: String,
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
    let mut groups: HashMap<&str, Spread> = HashMap::new();
    let mut out = BTreeMap::new();
    let mut todo = Vec::new();
    for slot in slots {
        let kept = existing
            .get(&slot.name)
            .and_then(|n| by_name.get(n.as_str()))
            .filter(|info| !info.draining);
        match kept {
            Some(info) => {
                let in_group = groups.entry(&slot.spread_group).or_default();
                assign(slot, info, in_group, &mut load, &mut out);
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
                    in_group.nodes.get(&n.name).copied().unwrap_or(0),
                    in_group.zones.get(&n.zone).copied().unwrap_or(0),
                    load.get(n.name.as_str()).copied().unwrap_or(0),
                    n.name.as_str(),
                    *n,
                )
            })
            .filter(|(same, ..)| !spread_required || *same == 0)
            .min_by(|a, b| (a.0, a.1, a.2, a.3).cmp(&(b.0, b.1, b.2, b.3)));
        match best {
            Some((.., info)) => assign(slot, info, in_group, &mut load, &mut out),
            None => {
                out.insert(slot.name.clone(), None);
            }
        }
    }
    out
}

/// How many of one spread group each node and each zone holds so far.
#[derive(Debug, Default)]
struct Spread {
    nodes: HashMap<String, usize>,
    zones: HashMap<String, usize>,
}

/// Places `slot` on `node`: one more of its spread group there and in its zone
/// (`in_group`), one more instance in the node's `load`.
fn assign(
    slot: &Slot,
    node: &NodeInfo,
    in_group: &mut Spread,
    load: &mut HashMap<&str, usize>,
    out: &mut BTreeMap<String, Option<String>>,
) {
    *in_group.nodes.entry(node.name.clone()).or_default() += 1;
    *in_group.zones.entry(node.zone.clone()).or_default() += 1;
    if let Some(l) = load.get_mut(node.name.as_str()) {
        *l += 1;
    }
    out.insert(slot.name.clone(), Some(node.name.clone()));
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

    fn zoned(name: &str, zone: &str) -> NodeInfo {
        NodeInfo {
            zone: zone.into(),
            ..node(name)
        }
    }

    /// The zone of each placed member.
    fn zones_of(out: &BTreeMap<String, Option<String>>, nodes: &[NodeInfo]) -> Vec<String> {
        out.values()
            .flatten()
            .map(|n| nodes.iter().find(|i| &i.name == n).unwrap().zone.clone())
            .collect()
    }

    #[test]
    fn a_group_spreads_over_zones_before_nodes_of_one_zone() {
        // Names and load would pick a1 and a2 (both zone a) without zones.
        let nodes = vec![
            zoned("a1", "a"),
            zoned("a2", "a"),
            zoned("b1", "b"),
            zoned("c1", "c"),
        ];
        let out = place_new(&slots("g", 3), &nodes, true);
        let mut zones = zones_of(&out, &nodes);
        zones.sort();
        assert_eq!(zones, ["a", "b", "c"], "{out:?}");
        // Two groups: each spreads on its own.
        let mut both = slots("g", 2);
        both.extend(slots("h", 2));
        let out = place_new(&both, &nodes, true);
        for g in ["g-", "h-"] {
            let of_g: BTreeMap<_, _> = out
                .iter()
                .filter(|(k, _)| k.starts_with(g))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let zones: BTreeSet<_> = zones_of(&of_g, &nodes).into_iter().collect();
            assert_eq!(zones.len(), 2, "{g}: {out:?}");
        }
    }

    #[test]
    fn zones_are_a_preference_not_a_requirement() {
        let nodes = vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")];
        let out = place_new(&slots("g", 3), &nodes, true);
        assert_eq!(
            out.values().flatten().count(),
            3,
            "more members than zones: {out:?}"
        );
        // Existing members count: a new member goes to the zone the group lacks.
        let existing: BTreeMap<_, _> = [("g-0".to_string(), "a1".to_string())].into();
        let out = place(&slots("g", 2), &nodes, &existing, &HashMap::new(), true);
        assert_eq!(out["g-0"].as_deref(), Some("a1"));
        assert_eq!(out["g-1"].as_deref(), Some("b1"));
    }

    #[test]
    fn zone_beats_load_but_not_node_spread() {
        let mut nodes = vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")];
        nodes[2].load = 10;
        let existing: BTreeMap<_, _> = [("g-0".to_string(), "a1".to_string())].into();
        let out = place(&slots("g", 2), &nodes, &existing, &HashMap::new(), true);
        assert_eq!(
            out["g-1"].as_deref(),
            Some("b1"),
            "other zone despite its load"
        );
        // Preferred spread: a node already holding the group loses even in a fresh zone.
        let nodes = vec![zoned("a1", "a"), zoned("b1", "b")];
        let out = place(
            &slots("g", 3),
            &nodes,
            &BTreeMap::new(),
            &HashMap::new(),
            false,
        );
        assert_eq!(out.values().flatten().collect::<BTreeSet<_>>().len(), 2);
    }

    #[test]
    fn without_zones_placement_is_unchanged() {
        let nodes = vec![node("a"), node("b"), zoned("c", "")];
        let out = place_new(&slots("g", 2), &nodes, true);
        assert_eq!(out["g-0"].as_deref(), Some("a"));
        assert_eq!(out["g-1"].as_deref(), Some("b"));
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

//! The cluster reconciler (principle 2): level-triggered, one reconcile per cluster at a
//! time, jittered exponential backoff on errors, a periodic resync as a safety net.
//!
//! It wakes from the reflector's changes (clusters, nodes, observed state, operations) and
//! from the resync timer, never caring *why*: each reconcile reads the whole picture from the
//! cache — the cluster, every node, every node's desired state and last report — and
//! computes in one pass (pure code in [`placement`], [`render`], [`status`]):
//!
//! 1. the instances the spec asks for and where they run (existing placements stay unless
//!    their node is deleted or draining), their ports and data dirs;
//! 2. each instance's rendered config, hashes and restart permission (one member per group
//!    at a time, followers first, master last, only when `allow_restart` and the group stays
//!    Ready by the rule of [`readiness`] without it);
//! 3. each affected node's new `DesiredState` (a per-node generation that moves only when the
//!    content changes);
//! 4. the folded `Cluster.status` (which never bumps the generation).
//!
//! Whatever differs from the store is written in **one** fenced transaction with
//! compare-and-swap on every key it replaces; a reconcile that finds nothing to change
//! writes nothing. The agent sessions push written desired states to their agents.
//!
//! Deletion: a cluster with `delete_time` gets no instances; once no agent reports any of
//! its instances (or their nodes are gone, taking their observed state with their lease)
//! the cluster record is deleted.

pub mod placement;
pub mod preview;
pub mod queue;
pub mod readiness;
pub mod render;
pub mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flotilla_intent_store::{Compare, StoreError, keys};
use flotilla_proto::agent::v1::{DesiredState, Instance, InstanceObservation};
use flotilla_proto::v1::{
    BrokerMode, Cluster, InstanceKind, MemberRole, NodePhase, OperationPhase, operation_spec,
    placement::Spread,
};
use prost::Message;
use prost_types::Timestamp;
use tracing::{Instrument, debug, field, info_span, warn};

use self::placement::{NodeInfo, Slot};
use self::queue::Queue;
use self::render::{GroupPlan, Placed};
use self::status::{FoldInput, MemberPlan};
use crate::cache::{Change, State};
use crate::context::{Ctx, Stats};
use crate::fenced::WriteError;
use crate::names;
use crate::workflow::rolling_restart::{self, Roll};

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The write failed (conflict with a concurrent writer, lost leadership, store down).
    #[error("write: {0}")]
    Write(#[from] WriteError),
    /// A key could not be built (invalid name in the store).
    #[error("key: {0}")]
    Key(#[from] StoreError),
}

impl ReconcileError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ReconcileError::Write(e) => e.code(),
            ReconcileError::Key(e) => e.code(),
        }
    }
}

/// The outcome of planning one cluster.
#[derive(Debug, Default)]
pub struct Plan {
    /// Compare-and-swap guards.
    pub compares: Vec<Compare>,
    /// Writes (`None` = delete).
    pub writes: Vec<(String, Option<Vec<u8>>)>,
    /// The cluster's generation (for the span).
    pub generation: i64,
    /// Desired-state keys among the writes.
    pub desired_writes: u64,
    /// Whether the cluster status is written.
    pub status_write: bool,
}

#[derive(Debug, Clone)]
enum SlotKind {
    Namesrv,
    Broker { group: String, member: u32 },
}

fn observation<'a>(st: &'a State, node: &str, inst: &str) -> Option<&'a InstanceObservation> {
    st.observed
        .get(node)?
        .value
        .instances
        .iter()
        .find(|o| o.name == inst)
}

fn is_master(o: Option<&InstanceObservation>, kind: &SlotKind) -> bool {
    match o.map(|o| MemberRole::try_from(o.role)) {
        Some(Ok(MemberRole::Master | MemberRole::Leader)) => true,
        Some(Ok(MemberRole::Slave | MemberRole::Follower | MemberRole::Candidate)) => false,
        _ => matches!(kind, SlotKind::Broker { member: 0, .. }),
    }
}

/// Computes the new desired states for `affected` nodes given this cluster's instances
/// `ours` per node.
fn desired_writes(
    st: &State,
    cluster: &str,
    ours: &BTreeMap<String, Vec<Instance>>,
    affected: &BTreeSet<String>,
    epoch: i64,
    plan: &mut Plan,
) -> Result<(), StoreError> {
    for node in affected.iter().chain(ours.keys()).collect::<BTreeSet<_>>() {
        let old = st.desired.get(node);
        let mut next: Vec<Instance> = old
            .map(|o| {
                o.value
                    .instances
                    .iter()
                    .filter(|i| i.cluster != cluster)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        next.extend(ours.get(node).cloned().unwrap_or_default());
        next.sort_by(|a, b| a.name.cmp(&b.name));
        let mut before: Vec<Instance> = old.map(|o| o.value.instances.clone()).unwrap_or_default();
        before.sort_by(|a, b| a.name.cmp(&b.name));
        if next == before && (old.is_some() || next.is_empty()) {
            continue;
        }
        let key = keys::node_desired(node)?;
        let ds = DesiredState {
            epoch,
            generation: old.map_or(0, |o| o.value.generation) + 1,
            instances: next,
        };
        plan.compares.push(Compare::ModRevision(
            key.clone(),
            old.map_or(0, |o| o.mod_revision),
        ));
        plan.writes.push((key, Some(ds.encode_to_vec())));
        plan.desired_writes += 1;
    }
    Ok(())
}

/// Plans one reconcile of cluster `name` over a cache snapshot. Pure apart from reading the
/// restart-hash memo.
pub fn plan(
    ctx: &Ctx,
    st: &State,
    name: &str,
    epoch: i64,
    now: Timestamp,
) -> Result<Plan, StoreError> {
    plan_as(ctx, st, name, epoch, now, false)
}

/// [`plan`], optionally as if every new nameserver already answered (the plan preview shows
/// where a change ends up, not its first step).
pub fn plan_as(
    ctx: &Ctx,
    st: &State,
    name: &str,
    epoch: i64,
    now: Timestamp,
    assume_nameservers_answer: bool,
) -> Result<Plan, StoreError> {
    let mut plan = Plan::default();
    let mut existing: BTreeMap<String, (String, Instance)> = BTreeMap::new();
    for (node, ds) in &st.desired {
        for i in ds.value.instances.iter().filter(|i| i.cluster == name) {
            existing.insert(i.name.clone(), (node.clone(), i.clone()));
        }
    }
    let existing_nodes: BTreeSet<String> = existing.values().map(|(n, _)| n.clone()).collect();
    let Some(cv) = st.clusters.get(name) else {
        // The cluster is gone: remove whatever is left of it.
        desired_writes(
            st,
            name,
            &BTreeMap::new(),
            &existing_nodes,
            epoch,
            &mut plan,
        )?;
        return Ok(plan);
    };
    let cluster: &Cluster = &cv.value;
    let meta = cluster.metadata.clone().unwrap_or_default();
    plan.generation = meta.generation;
    let spec = cluster.spec.clone().unwrap_or_default();
    let deleting = meta.delete_time.is_some();
    let paused = spec.paused && !deleting;
    let ns = spec.nameserver.unwrap_or_default();
    let b = spec.broker.clone().unwrap_or_default();
    let dledger = b.mode == BrokerMode::Dledger as i32;
    let placement_spec = spec.placement.clone().unwrap_or_default();
    let spread_required = placement_spec.spread != Spread::Preferred as i32;

    // Nodes.
    let mut infos = Vec::new();
    let mut hosts: HashMap<String, (String, String)> = HashMap::new();
    let mut node_ready: HashMap<String, bool> = HashMap::new();
    for (n, nv) in &st.nodes {
        let node = &nv.value;
        let nspec = node.spec.unwrap_or_default();
        let nst = node.status.clone().unwrap_or_default();
        let ready = nst.phase == NodePhase::Ready as i32;
        let load = st.desired.get(n).map_or(0, |d| {
            d.value
                .instances
                .iter()
                .filter(|i| i.cluster != name)
                .count()
        });
        infos.push(NodeInfo {
            name: n.clone(),
            labels: node
                .metadata
                .as_ref()
                .map(|m| m.labels.clone())
                .unwrap_or_default(),
            cordoned: nspec.cordoned,
            draining: nspec.draining,
            ready,
            load,
            zone: nst
                .topology
                .as_ref()
                .map(|t| t.zone.clone())
                .unwrap_or_default(),
        });
        let host = if nst.advertise_address.is_empty() {
            n.clone()
        } else {
            names::advertise_host(&nst.advertise_address).to_string()
        };
        hosts.insert(n.clone(), (host, nst.data_dir.clone()));
        node_ready.insert(n.clone(), ready);
    }

    // Slots: what the spec asks for.
    let mut slots: Vec<(Slot, SlotKind)> = Vec::new();
    // Nameservers above spec.nameserver.replicas keep running, out of every broker's list,
    // until every broker runs the list without them (then they stop): a broker never
    // registers with, and a client never gets routed through, a nameserver already gone.
    let mut leaving_ns: BTreeSet<String> = BTreeSet::new();
    if !deleting {
        let mut ns_ids: BTreeSet<u32> = (0..ns.replicas).collect();
        for inst in existing.keys() {
            if let Some(i) = names::namesrv_index(name, inst)
                && i >= ns.replicas
            {
                ns_ids.insert(i);
                leaving_ns.insert(inst.clone());
            }
        }
        for i in ns_ids {
            slots.push((
                Slot {
                    name: names::namesrv(name, i),
                    spread_group: "namesrv".into(),
                },
                SlotKind::Namesrv,
            ));
        }
        // Groups above spec.groups stay while a scale-in operation for them has not reached
        // its StopMembers step (the workflow sets `stopping`), or was cancelled (the
        // workflow then restores spec.groups).
        let mut group_ids: BTreeSet<u32> = (0..b.groups).collect();
        for op in st.operations.values() {
            let op = &op.value;
            let spec_op = op.spec.clone().unwrap_or_default();
            let done = op.status.as_ref().is_some_and(|s| {
                s.done || s.handles.contains_key(crate::workflow::scale_in::STOPPING)
            });
            if spec_op.cluster != name || done {
                continue;
            }
            if let Some(operation_spec::Kind::ScaleIn(si)) = &spec_op.kind {
                for g in &si.groups {
                    if let Some(i) = names::group_index(name, g)
                        && existing.keys().any(|k| k.starts_with(&format!("{g}-")))
                    {
                        group_ids.insert(i);
                    }
                }
            }
        }
        for g in group_ids {
            let group = names::group(name, g);
            for m in 0..b.replicas_per_group {
                slots.push((
                    Slot {
                        name: names::member(&group, m),
                        spread_group: group.clone(),
                    },
                    SlotKind::Broker {
                        group: group.clone(),
                        member: m,
                    },
                ));
            }
        }
    }

    // Placement.
    let existing_node_of: BTreeMap<String, String> = existing
        .iter()
        .map(|(k, (n, _))| (k.clone(), n.clone()))
        .collect();
    let slot_list: Vec<Slot> = slots.iter().map(|(s, _)| s.clone()).collect();
    let assignment: BTreeMap<String, Option<String>> = if paused {
        slot_list
            .iter()
            .map(|s| (s.name.clone(), existing_node_of.get(&s.name).cloned()))
            .collect()
    } else {
        placement::place(
            &slot_list,
            &infos,
            &existing_node_of,
            &placement_spec.node_selector,
            spread_required,
        )
    };

    // Ports: other clusters' instances and kept instances first, then new ones.
    let mut used: HashMap<String, BTreeSet<u32>> = HashMap::new();
    for (n, d) in &st.desired {
        used.insert(
            n.clone(),
            placement::used_ports(d.value.instances.iter().filter(|i| i.cluster != name)),
        );
    }
    let mut placed: BTreeMap<String, Placed> = BTreeMap::new();
    let mk = |inst: &str, node: &str, ports| {
        let (host, dir) = hosts.get(node).cloned().unwrap_or_default();
        Placed {
            name: inst.to_string(),
            node: node.to_string(),
            host,
            ports,
            agent_data_dir: dir,
        }
    };
    for (slot, kind) in &slots {
        let Some(Some(node)) = assignment.get(&slot.name) else {
            continue;
        };
        if let Some((old_node, old)) = existing.get(&slot.name)
            && old_node == node
        {
            let ports = old.ports.unwrap_or_default();
            used.entry(node.clone())
                .or_default()
                .extend(placement::occupied(
                    &ports,
                    matches!(kind, SlotKind::Broker { .. }),
                ));
            placed.insert(slot.name.clone(), mk(&slot.name, node, ports));
        }
    }
    for (slot, kind) in &slots {
        let Some(Some(node)) = assignment.get(&slot.name) else {
            continue;
        };
        if placed.contains_key(&slot.name) {
            continue;
        }
        let u = used.entry(node.clone()).or_default();
        let ports = match kind {
            SlotKind::Namesrv => {
                placement::namesrv_port(u, ns.port).map(|p| flotilla_proto::agent::v1::Ports {
                    listen: p,
                    ha: 0,
                    dledger: 0,
                })
            }
            SlotKind::Broker { .. } => placement::broker_ports(u, b.port, dledger),
        };
        if let Some(ports) = ports {
            u.extend(placement::occupied(
                &ports,
                matches!(kind, SlotKind::Broker { .. }),
            ));
            placed.insert(slot.name.clone(), mk(&slot.name, node, ports));
        }
    }

    // Nameserver addresses, in index order. A new nameserver joins the brokers' lists once
    // it answers (a broker registers at once when its list changes; a nameserver not up yet
    // would miss that registration and serve no routes until the next one, 30 s later). One
    // already listed stays listed while it restarts. At creation nothing answers yet: then
    // every placed one is listed.
    let listed_before: BTreeSet<String> = existing
        .values()
        .filter_map(|(_, i)| i.config.get("namesrvAddr"))
        .flat_map(|l| l.split(';').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let placed_ns: Vec<(String, bool)> = slots
        .iter()
        .filter(|(s, k)| matches!(k, SlotKind::Namesrv) && !leaving_ns.contains(&s.name))
        .filter_map(|(s, _)| {
            let p = placed.get(&s.name)?;
            let addr = p.address();
            let answers = assume_nameservers_answer
                || observation(st, &p.node, &s.name).is_some_and(|o| o.ready);
            Some((addr.clone(), answers || listed_before.contains(&addr)))
        })
        .collect();
    let ns_addrs: Vec<String> = if placed_ns.iter().any(|(_, ok)| *ok) {
        placed_ns
            .into_iter()
            .filter(|(_, ok)| *ok)
            .map(|(a, _)| a)
            .collect()
    } else {
        placed_ns.into_iter().map(|(a, _)| a).collect()
    };
    let namesrv_addr = ns_addrs.join(";");

    // Render (a rolling restart's tokens stamped on).
    let tokens = rolling_restart::tokens(st, name);
    let roll = rolling_restart::control(st, name, meta.generation);
    let mut rendered: BTreeMap<String, Instance> = BTreeMap::new();
    let mut group_members: BTreeMap<String, Vec<Option<Placed>>> = BTreeMap::new();
    for (slot, kind) in &slots {
        if let SlotKind::Broker { group, .. } = kind {
            group_members
                .entry(group.clone())
                .or_default()
                .push(placed.get(&slot.name).cloned());
        }
    }
    for (slot, kind) in &slots {
        let Some(p) = placed.get(&slot.name) else {
            continue;
        };
        let inst = match kind {
            SlotKind::Namesrv => render::namesrv(name, &spec, p),
            SlotKind::Broker { group, member } => {
                let members = group_members.get(group).cloned().unwrap_or_default();
                let gp = GroupPlan {
                    group,
                    members: &members,
                };
                render::broker(name, &spec, &gp, *member, p, &namesrv_addr)
            }
        };
        let mut inst = inst;
        let token = tokens
            .get(&slot.name)
            .cloned()
            .or_else(|| {
                existing
                    .get(&slot.name)
                    .map(|(_, i)| i.restart_token.clone())
            })
            .unwrap_or_default();
        render::stamp_restart(&mut inst, &token);
        ctx.remember_hashes(&inst.config_hash, &inst.restart_hash);
        rendered.insert(slot.name.clone(), inst);
    }

    // Leaving nameservers stop once no running broker still has them in its list (each runs
    // its rendered config, whose list no longer names them).
    if !leaving_ns.is_empty() {
        let brokers_current = slots
            .iter()
            .filter(|(_, k)| matches!(k, SlotKind::Broker { .. }))
            .all(|(s, _)| {
                let obs = placed
                    .get(&s.name)
                    .and_then(|p| observation(st, &p.node, &s.name));
                match (obs, rendered.get(&s.name)) {
                    (Some(o), Some(i)) => o.pid == 0 || o.config_hash == i.config_hash,
                    _ => true,
                }
            });
        if brokers_current {
            slots.retain(|(s, _)| !leaving_ns.contains(&s.name));
            rendered.retain(|n, _| !leaving_ns.contains(n));
        }
    }

    // Restart permission. While a rolling-restart operation is unfinished, it alone decides:
    // only the member it designates may restart. After a failed roll nothing restarts until
    // it is resumed, rolled back or superseded. Otherwise: per spread group, at most one
    // member, followers first.
    let mut restart_blocked = false;
    let mut roll_failed = None;
    match &roll {
        Roll::Active { designated } => {
            if let Some(inst) = designated.as_ref().and_then(|d| rendered.get_mut(d)) {
                inst.may_restart = true;
            }
        }
        Roll::Failed { operation, message } => {
            roll_failed = Some(format!("rolling restart {operation} failed: {message}"));
        }
        Roll::None => {}
    }
    let mut by_group: BTreeMap<&str, Vec<(&Slot, &SlotKind)>> = BTreeMap::new();
    for (slot, kind) in &slots {
        by_group
            .entry(slot.spread_group.as_str())
            .or_default()
            .push((slot, kind));
    }
    for members in by_group.values() {
        let obs_of = |s: &Slot| {
            placed
                .get(&s.name)
                .and_then(|p| observation(st, &p.node, &s.name))
        };
        let needs = |s: &Slot| -> bool {
            let (Some(o), Some(inst)) = (obs_of(s), rendered.get(&s.name)) else {
                return false;
            };
            o.pid != 0
                && !o.config_hash.is_empty()
                && o.config_hash != inst.config_hash
                && ctx.restart_hash_of(&o.config_hash).as_deref()
                    != Some(inst.restart_hash.as_str())
        };
        let needing: Vec<&(&Slot, &SlotKind)> = members.iter().filter(|(s, _)| needs(s)).collect();
        if needing.is_empty() || matches!(roll, Roll::Active { .. }) {
            continue;
        }
        if !spec.allow_restart || paused || matches!(roll, Roll::Failed { .. }) {
            restart_blocked = true;
            continue;
        }
        let holder = needing
            .iter()
            .find(|(s, _)| existing.get(&s.name).is_some_and(|(_, i)| i.may_restart));
        let chosen = holder.map(|(s, _)| s.name.clone()).or_else(|| {
            let mut cands: Vec<&&(&Slot, &SlotKind)> = needing.iter().collect();
            cands.sort_by_key(|(s, k)| (is_master(obs_of(s), k), s.name.clone()));
            // Brokers: the group rule of `readiness` (the group keeps a writable, registered
            // master and a caught-up copy). Nameservers: every other one answers.
            let group_view: Vec<readiness::GroupMember> = members
                .iter()
                .map(|(o, _)| {
                    let node_ok = placed
                        .get(&o.name)
                        .and_then(|p| node_ready.get(&p.node))
                        .copied()
                        .unwrap_or(false);
                    readiness::GroupMember::observed(&o.name, obs_of(o), node_ok, &ns_addrs)
                })
                .collect();
            cands
                .into_iter()
                .find(|(s, k)| match k {
                    SlotKind::Broker { .. } => readiness::may_restart(
                        &s.name,
                        &group_view,
                        readiness::DEFAULT_MAX_LAG_BYTES,
                    ),
                    SlotKind::Namesrv => members
                        .iter()
                        .filter(|(o, _)| o.name != s.name)
                        .all(|(o, _)| obs_of(o).is_some_and(|ob| ob.ready)),
                })
                .map(|(s, _)| s.name.clone())
        });
        if let Some(c) = chosen
            && let Some(inst) = rendered.get_mut(&c)
        {
            inst.may_restart = true;
        }
    }

    // Desired states.
    if !paused {
        let mut ours: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for (inst_name, inst) in &rendered {
            if let Some(p) = placed.get(inst_name) {
                ours.entry(p.node.clone()).or_default().push(inst.clone());
            }
        }
        desired_writes(st, name, &ours, &existing_nodes, epoch, &mut plan)?;
    }

    let key = keys::cluster(name)?;
    if deleting {
        let still_running = st
            .observed
            .values()
            .any(|o| o.value.instances.iter().any(|i| i.cluster == name));
        if existing.is_empty() && !still_running {
            plan.compares
                .push(Compare::ModRevision(key.clone(), cv.mod_revision));
            plan.writes.push((key, None));
            return Ok(plan);
        }
    }

    // Status.
    let member_plans: Vec<MemberPlan> = slots
        .iter()
        .map(|(slot, kind)| {
            let p = placed.get(&slot.name);
            let (group, broker_id, dledger_id, kind_enum) = match kind {
                SlotKind::Namesrv => (String::new(), 0, String::new(), InstanceKind::Namesrv),
                SlotKind::Broker { group, member } => (
                    group.clone(),
                    i64::from(*member),
                    if dledger {
                        names::dledger_self_id(*member)
                    } else {
                        String::new()
                    },
                    InstanceKind::Broker,
                ),
            };
            let desired_hash = if paused {
                existing
                    .get(&slot.name)
                    .map(|(_, i)| i.config_hash.clone())
                    .unwrap_or_default()
            } else {
                rendered
                    .get(&slot.name)
                    .map(|i| i.config_hash.clone())
                    .unwrap_or_default()
            };
            MemberPlan {
                name: slot.name.clone(),
                kind: kind_enum,
                group,
                broker_id,
                dledger_self_id: dledger_id,
                node: p.map(|p| p.node.clone()),
                address: p.map(Placed::address).unwrap_or_default(),
                desired_hash,
            }
        })
        .collect();
    let mut observed: HashMap<String, InstanceObservation> = HashMap::new();
    for m in &member_plans {
        if let Some(n) = &m.node
            && let Some(o) = observation(st, n, &m.name)
        {
            observed.insert(m.name.clone(), o.clone());
        }
    }
    let active_operations: Vec<String> = st
        .operations
        .iter()
        .filter(|(_, o)| {
            o.value.spec.as_ref().is_some_and(|s| s.cluster == name)
                && !o.value.status.as_ref().is_some_and(|s| s.done)
        })
        .map(|(k, _)| k.clone())
        .collect();
    let new_status = status::fold(&FoldInput {
        generation: meta.generation,
        deleting,
        paused,
        members: &member_plans,
        observed: &observed,
        node_ready: &node_ready,
        restart_blocked,
        roll_failed,
        nameserver_addresses: ns_addrs,
        active_operations,
        max_lag_bytes: readiness::DEFAULT_MAX_LAG_BYTES,
        previous: cluster.status.as_ref(),
        now,
    });
    if Some(&new_status) != cluster.status.as_ref() {
        let mut next = cluster.clone();
        next.status = Some(new_status);
        if let Some(m) = next.metadata.as_mut() {
            m.etag.clear();
        }
        plan.compares
            .push(Compare::ModRevision(key.clone(), cv.mod_revision));
        plan.writes.push((key, Some(next.encode_to_vec())));
        plan.status_write = true;
    }
    Ok(plan)
}

/// Reconciles one cluster: plan over the cache, then one fenced transaction if anything
/// changed. Returns whether it wrote.
pub async fn reconcile_one(ctx: &Ctx, name: &str, epoch: i64) -> Result<bool, ReconcileError> {
    let now = Timestamp::from(SystemTime::now());
    let plan = ctx.cache.read(|st| plan(ctx, st, name, epoch, now))?;
    tracing::Span::current().record("generation", plan.generation);
    Stats::add(&ctx.stats.reconciles, 1);
    if plan.writes.is_empty() {
        return Ok(false);
    }
    ctx.commit(plan.compares, plan.writes, vec![]).await?;
    Stats::add(&ctx.stats.reconcile_writes, 1);
    Stats::add(&ctx.stats.desired_writes, plan.desired_writes);
    if plan.status_write {
        Stats::add(&ctx.stats.status_writes, 1);
    }
    debug!(
        desired_writes = plan.desired_writes,
        status = plan.status_write,
        "reconciled"
    );
    Ok(true)
}

fn all_clusters(st: &State) -> Vec<String> {
    let mut names: BTreeSet<String> = st.clusters.keys().cloned().collect();
    for d in st.desired.values() {
        for i in &d.value.instances {
            names.insert(i.cluster.clone());
        }
    }
    names.into_iter().collect()
}

/// Marks drain operations whose node holds no instance any more as succeeded.
async fn complete_drains(ctx: &Ctx) {
    let done: Vec<(String, i64, flotilla_proto::v1::Operation)> = ctx.cache.read(|st| {
        st.operations
            .iter()
            .filter_map(|(id, o)| {
                let op = &o.value;
                let status = op.status.as_ref()?;
                if status.done {
                    return None;
                }
                let Some(operation_spec::Kind::DrainNode(d)) =
                    op.spec.as_ref().and_then(|s| s.kind.as_ref())
                else {
                    return None;
                };
                let empty = st
                    .desired
                    .get(&d.node)
                    .is_none_or(|ds| ds.value.instances.is_empty());
                let running = status.phase == OperationPhase::Running as i32
                    || status.phase == OperationPhase::Pending as i32;
                (empty && running).then(|| (id.clone(), o.mod_revision, op.clone()))
            })
            .collect()
    });
    for (id, rev, mut op) in done {
        let Ok(key) = keys::operation(&id) else {
            continue;
        };
        let st = op.status.get_or_insert_with(Default::default);
        st.phase = OperationPhase::Succeeded as i32;
        st.done = true;
        st.progress_percent = 100;
        st.step = "Done".into();
        st.end_time = Some(SystemTime::now().into());
        st.history.push("all instances moved off the node".into());
        if let Some(m) = op.metadata.as_mut() {
            m.etag.clear();
        }
        if let Err(e) = ctx
            .commit(
                vec![Compare::ModRevision(key.clone(), rev)],
                vec![(key, Some(op.encode_to_vec()))],
                vec![],
            )
            .await
        {
            debug!(operation = %id, error = %e, "completing drain deferred");
        }
    }
}

/// Starts the dispatcher (changes → queue), the resync timer and the workers. Returns the
/// queue (tests and the benchmark watch it go idle).
pub fn spawn(ctx: &Arc<Ctx>) -> Arc<Queue> {
    let queue = Queue::new();
    // Dispatcher.
    {
        let ctx = ctx.clone();
        let queue = queue.clone();
        let mut changes = ctx.cache.subscribe();
        let mut leader = ctx.leader.subscribe();
        tokio::spawn(async move {
            let mut resync = tokio::time::interval(ctx.config.resync_interval);
            loop {
                let change = tokio::select! {
                    c = changes.recv() => match c { Some(c) => c, None => return },
                    r = leader.changed() => {
                        if r.is_err() { return; }
                        Change::All
                    }
                    _ = resync.tick() => Change::All,
                    _ = ctx.shutdown.cancelled() => return,
                };
                let names: Vec<String> = ctx.cache.read(|st| match &change {
                    Change::Cluster(n) => vec![n.clone()],
                    Change::Node(_) | Change::All => all_clusters(st),
                    Change::Observed(n) => {
                        let mut v: BTreeSet<String> = st
                            .desired
                            .get(n)
                            .map(|d| {
                                d.value
                                    .instances
                                    .iter()
                                    .map(|i| i.cluster.clone())
                                    .collect()
                            })
                            .unwrap_or_default();
                        for (c, cv) in &st.clusters {
                            if cv
                                .value
                                .metadata
                                .as_ref()
                                .is_some_and(|m| m.delete_time.is_some())
                            {
                                v.insert(c.clone());
                            }
                        }
                        v.into_iter().collect()
                    }
                    Change::Operation(id) => st
                        .operations
                        .get(id)
                        .and_then(|o| o.value.spec.as_ref())
                        .map(|s| s.cluster.clone())
                        .filter(|c| !c.is_empty())
                        .into_iter()
                        .collect(),
                    Change::Desired(_) => vec![],
                });
                for n in names {
                    queue.add(&n);
                }
                if matches!(change, Change::Desired(_) | Change::All)
                    && ctx.leader.epoch().is_some()
                {
                    complete_drains(&ctx).await;
                }
            }
        });
    }
    // Workers.
    for _ in 0..ctx.config.reconcile_workers.max(1) {
        let ctx = ctx.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            ctx.cache.wait_ready().await;
            loop {
                let name = tokio::select! {
                    n = queue.next() => n,
                    _ = ctx.shutdown.cancelled() => return,
                };
                let Some(epoch) = ctx.leader.epoch() else {
                    // Not leading: drop it; winning the election enqueues everything.
                    queue.done(&name, true, Duration::ZERO, Duration::ZERO);
                    continue;
                };
                let span =
                    info_span!("reconcile", cluster = %name, generation = field::Empty, epoch);
                let started = std::time::Instant::now();
                let result = reconcile_one(&ctx, &name, epoch).instrument(span).await;
                let outcome = match &result {
                    Ok(true) => "wrote",
                    Ok(false) => "unchanged",
                    Err(_) => "error",
                };
                ctx.metrics.observe_reconcile(outcome, started);
                if let Err(e) = &result {
                    warn!(cluster = %name, error = %e, code = e.code(), "reconcile failed; requeued");
                }
                queue.done(
                    &name,
                    result.is_ok(),
                    Duration::from_millis(100),
                    Duration::from_secs(30),
                );
            }
        });
    }
    queue
}

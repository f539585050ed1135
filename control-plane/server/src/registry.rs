//! The node registry: `/flotilla/v1/nodes/{node}` records.
//!
//! A node registers itself when its agent says Hello (labels, advertise address, capacity,
//! data dir, phase Ready); users only change its spec (cordon, drain). The heartbeat sweeper
//! in [`crate::sessions`] flips the phase to NotReady and back. Every write is a
//! compare-and-swap on the record's revision, fenced by the leader's epoch, and a write that
//! would change nothing is skipped — so a reconnecting agent with nothing new costs one read.

use std::sync::Arc;
use std::time::SystemTime;

use flotilla_intent_store::{Compare, keys};
use flotilla_proto::agent::v1::Hello;
use flotilla_proto::v1::{
    Condition, ConditionStatus, Node, NodePhase, NodeSpec, NodeStatus, NodeTopology, ObjectMeta,
};
use prost::Message;
use prost_types::Timestamp;

use crate::api::{clear_etag, decode_stored, set_etag};
use crate::context::Ctx;
use crate::errors::ApiError;
use crate::fenced::WriteError;

/// Reads a node record and its revision.
pub async fn get(ctx: &Ctx, name: &str) -> Result<Option<(Node, i64)>, ApiError> {
    let key = keys::node(name).map_err(|e| ApiError::bad_request("name", e.to_string()))?;
    match ctx.store.get(&key).await? {
        None => Ok(None),
        Some(kv) => Ok(Some((decode_stored(&kv)?, kv.mod_revision))),
    }
}

fn ready_condition(phase: NodePhase, reason: &str, now: Timestamp, generation: i64) -> Condition {
    Condition {
        r#type: "Ready".into(),
        status: if phase == NodePhase::Ready {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        } as i32,
        reason: reason.into(),
        message: String::new(),
        last_transition_time: Some(now),
        observed_generation: generation,
    }
}

/// Applies `f` to the stored node (or `None` when absent) and writes the result when it
/// changed; retries on concurrent writes. Returns the node as stored afterwards.
pub async fn update(
    ctx: &Arc<Ctx>,
    name: &str,
    mut f: impl FnMut(Option<Node>) -> Option<Node>,
) -> Result<Option<Node>, ApiError> {
    let key = keys::node(name).map_err(|e| ApiError::bad_request("name", e.to_string()))?;
    for _ in 0..8 {
        let current = get(ctx, name).await?;
        let rev = current.as_ref().map_or(0, |(_, r)| *r);
        let before = current.as_ref().map(|(n, _)| n.clone());
        let Some(mut next) = f(before.clone()) else {
            return Ok(before);
        };
        clear_etag(&mut next);
        let unchanged = before.as_ref().is_some_and(|b| {
            let mut b = b.clone();
            clear_etag(&mut b);
            b == next
        });
        if unchanged {
            return Ok(before);
        }
        let value = next.encode_to_vec();
        match ctx
            .commit(
                vec![Compare::ModRevision(key.clone(), rev)],
                vec![(key.clone(), Some(value))],
                vec![],
            )
            .await
        {
            Ok(resp) => {
                set_etag(&mut next, resp.revision);
                return Ok(Some(next));
            }
            Err(WriteError::Conflict { .. }) => continue,
            Err(e) => return Err(ctx.writer.api_error(e, name).await),
        }
    }
    Err(ApiError::ConcurrentModification(name.to_string()))
}

/// Registers (or refreshes) the node of an agent that said Hello; phase Ready.
pub async fn register(ctx: &Arc<Ctx>, hello: &Hello) -> Result<(), ApiError> {
    let now = Timestamp::from(SystemTime::now());
    update(ctx, &hello.node_id, |existing| {
        let mut n = existing.unwrap_or_else(|| Node {
            metadata: Some(ObjectMeta {
                name: hello.node_id.clone(),
                uid: uuid::Uuid::new_v4().to_string(),
                generation: 1,
                create_time: Some(now),
                ..Default::default()
            }),
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus::default()),
        });
        let generation = n.metadata.as_ref().map_or(1, |m| m.generation);
        if let Some(m) = n.metadata.as_mut() {
            m.labels = hello.labels.clone();
        }
        let st = n.status.get_or_insert_with(Default::default);
        let was_ready = st.phase == NodePhase::Ready as i32;
        st.advertise_address = hello.advertise_address.clone();
        st.agent_version = hello.agent_version.clone();
        st.boot_id = hello.boot_id.clone();
        st.capacity = hello.capacity;
        st.data_dir = hello.data_dir.clone();
        // An agent that does not know its topology leaves the recorded one alone.
        if hello.topology.is_some() {
            st.topology = hello.topology.clone();
        }
        if !was_ready {
            st.phase = NodePhase::Ready as i32;
            st.last_heartbeat = Some(now);
            st.conditions = vec![ready_condition(
                NodePhase::Ready,
                "AgentConnected",
                now,
                generation,
            )];
        }
        Some(n)
    })
    .await?;
    Ok(())
}

/// Records where a node is (its agent reported a new topology); no write when unchanged.
pub async fn set_topology(
    ctx: &Arc<Ctx>,
    name: &str,
    topology: NodeTopology,
) -> Result<(), ApiError> {
    update(ctx, name, |existing| {
        let mut n = existing?;
        let st = n.status.get_or_insert_with(Default::default);
        if st.topology.as_ref() == Some(&topology) {
            return None;
        }
        st.topology = Some(topology.clone());
        Some(n)
    })
    .await?;
    Ok(())
}

/// Sets a node's phase (Ready/NotReady) with a reason; no write when it already has it.
pub async fn set_phase(
    ctx: &Arc<Ctx>,
    name: &str,
    phase: NodePhase,
    reason: &str,
    limits_mechanism: Option<&str>,
) -> Result<(), ApiError> {
    let now = Timestamp::from(SystemTime::now());
    update(ctx, name, |existing| {
        let mut n = existing?;
        let generation = n.metadata.as_ref().map_or(1, |m| m.generation);
        let st = n.status.get_or_insert_with(Default::default);
        let mut changed = false;
        if let Some(lm) = limits_mechanism
            && st.limits_mechanism != lm
        {
            st.limits_mechanism = lm.to_string();
            changed = true;
        }
        if st.phase != phase as i32 {
            st.phase = phase as i32;
            st.last_heartbeat = Some(now);
            st.conditions = vec![ready_condition(phase, reason, now, generation)];
            changed = true;
        }
        changed.then_some(n)
    })
    .await?;
    Ok(())
}

/// Changes a node's spec; bumps its generation when the spec changed. NOT_FOUND when the
/// node never registered.
pub async fn update_spec(
    ctx: &Arc<Ctx>,
    name: &str,
    f: impl Fn(&mut NodeSpec),
) -> Result<Node, ApiError> {
    let out = update(ctx, name, |existing| {
        let mut n = existing?;
        let mut spec = n.spec.unwrap_or_default();
        f(&mut spec);
        if Some(&spec) == n.spec.as_ref() {
            return None;
        }
        n.spec = Some(spec);
        if let Some(m) = n.metadata.as_mut() {
            m.generation += 1;
        }
        Some(n)
    })
    .await?;
    out.ok_or_else(|| ApiError::NodeNotFound(name.to_string()))
}

/// Removes a node record (the node is gone for good: its instances are re-placed).
pub async fn delete(ctx: &Arc<Ctx>, name: &str) -> Result<(), ApiError> {
    let key = keys::node(name).map_err(|e| ApiError::bad_request("name", e.to_string()))?;
    if let Err(e) = ctx.commit(vec![], vec![(key, None)], vec![]).await {
        return Err(ctx.writer.api_error(e, name).await);
    }
    ctx.sessions.disconnect(name);
    Ok(())
}

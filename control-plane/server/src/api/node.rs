//! `flotilla.v1.NodeService`: nodes register themselves through their agents; users list,
//! watch, cordon, uncordon, drain and delete them.
//!
//! Reads overlay what lives only in memory or in other keys: the instances placed on the node
//! (from its desired state) and its last heartbeat (from the live session). DrainNode cordons
//! the node, marks it draining — the reconciler then moves its instances elsewhere — and
//! returns a drain Operation that completes when the node holds no instance.
//!
//! DeleteNode forgets a machine that is gone for good, and only then: while instances are
//! placed on it, an unfinished drain of it runs, or its agent is connected, it is refused
//! (FAILED_PRECONDITION, NODE_IN_USE, naming what to do first), because deleting the record
//! of a live node would only have its agent register it again, and deleting one that still
//! holds instances would re-place them without the drain's care. The record and its desired
//! state go in one transaction guarded by the record's revision, so an agent that says Hello
//! meanwhile makes the delete retry and see it connected.
//!
//! WatchNodes follows both keys of a node: the record (cordon, drain, phase, topology) and
//! its desired state (the instances placed on it), so `flotilla get nodes --watch` sees a
//! placement as it happens without polling.

use std::sync::Arc;
use std::time::SystemTime;

use flotilla_intent_store::{Compare, keys};
use flotilla_proto::agent::v1::DesiredState;
use flotilla_proto::v1::{
    CordonNodeRequest, DeleteNodeRequest, DrainNodeRequest, DrainNodeSpec, GetNodeRequest,
    ListNodesRequest, ListNodesResponse, Node, ObjectMeta, Operation, OperationPhase,
    OperationSpec, OperationStatus, UncordonNodeRequest, WatchEventType, WatchNodesRequest,
    WatchNodesResponse, node_service_server::NodeService, operation_spec,
};
use prost::Message;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use super::set_etag;
use crate::context::Ctx;
use crate::errors::ApiError;
use crate::registry;
use crate::requests;
use crate::validate::{self, Violations};

const CORDON: &str = "/flotilla.v1.NodeService/CordonNode";
const UNCORDON: &str = "/flotilla.v1.NodeService/UncordonNode";
const DRAIN: &str = "/flotilla.v1.NodeService/DrainNode";
const DELETE: &str = "/flotilla.v1.NodeService/DeleteNode";

/// The NodeService implementation.
pub struct NodeApi {
    ctx: Arc<Ctx>,
}

impl NodeApi {
    /// Serves nodes from `ctx`.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }
}

/// Adds the live parts (instances, last heartbeat) to a stored node.
pub fn overlay(ctx: &Ctx, mut n: Node) -> Node {
    let name = super::name_of(&n);
    let instances: Vec<String> = ctx.cache.read(|st| {
        st.desired
            .get(&name)
            .map(|d| d.value.instances.iter().map(|i| i.name.clone()).collect())
            .unwrap_or_default()
    });
    let st = n.status.get_or_insert_with(Default::default);
    st.instances = instances;
    if let Some(t) = ctx.sessions.last_heartbeat(&name) {
        st.last_heartbeat = Some(t.into());
    }
    n
}

/// The unfinished drain operation of node `name`, if any (etag set).
fn running_drain(ctx: &Ctx, name: &str) -> Option<Operation> {
    ctx.cache.read(|st| {
        st.operations.values().find_map(|o| {
            let op = &o.value;
            let is_it = matches!(
                op.spec.as_ref().and_then(|s| s.kind.as_ref()),
                Some(operation_spec::Kind::DrainNode(d)) if d.node == name
            );
            let done = op.status.as_ref().is_some_and(|s| s.done);
            (is_it && !done).then(|| {
                let mut op = op.clone();
                set_etag(&mut op, o.mod_revision);
                op
            })
        })
    })
}

/// Why node `node` (with `instances` placed on it) cannot be deleted now, as
/// (PreconditionFailure type, what to do); `None` when it can.
fn in_use(ctx: &Ctx, node: &str, instances: &[String]) -> Option<(&'static str, String)> {
    if !instances.is_empty() {
        return Some((
            "INSTANCES_PLACED",
            format!(
                "instances are placed on it ({}); drain it first (`flotilla drain {node}`)",
                instances.join(", ")
            ),
        ));
    }
    if let Some(op) = running_drain(ctx, node) {
        return Some((
            "DRAIN_RUNNING",
            format!(
                "its drain {} has not finished; wait for it",
                super::name_of(&op)
            ),
        ));
    }
    if ctx.sessions.is_connected(node) {
        return Some((
            "AGENT_CONNECTED",
            "its agent is connected; stop the agent on that machine first".to_string(),
        ));
    }
    None
}

/// The WatchNodes event for a change of either key of a node: the record's own events carry
/// it; a desired-state change carries the cached record with the new instance list.
fn node_event(
    ctx: &Ctx,
    t: WatchEventType,
    key: &str,
    name: &str,
    bytes: Option<&[u8]>,
    rev: i64,
) -> Option<WatchNodesResponse> {
    let node = match keys::parse_node_key(key)? {
        keys::NodeKey::Node(_) => {
            let mut n = bytes
                .and_then(|b| Node::decode(b).ok())
                .unwrap_or_else(|| Node {
                    metadata: Some(ObjectMeta {
                        name: name.to_string(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            if t != WatchEventType::Delete {
                n = overlay(ctx, n);
            }
            set_etag(&mut n, rev);
            (t, n)
        }
        // A desired state is deleted only with its node record, whose event says it.
        keys::NodeKey::Desired(_) if t == WatchEventType::Delete => return None,
        keys::NodeKey::Desired(_) => {
            let (mut n, node_rev) = ctx.cache.read(|st| {
                st.nodes
                    .get(name)
                    .map(|v| (v.value.clone(), v.mod_revision))
            })?;
            let instances: Vec<String> = bytes
                .and_then(|b| DesiredState::decode(b).ok())
                .map(|d| d.instances.into_iter().map(|i| i.name).collect())
                .unwrap_or_default();
            n = overlay(ctx, n);
            if let Some(st) = n.status.as_mut() {
                st.instances = instances;
            }
            set_etag(&mut n, node_rev);
            (WatchEventType::Put, n)
        }
    };
    Some(WatchNodesResponse {
        r#type: node.0 as i32,
        node: Some(node.1),
        revision: rev,
    })
}

/// Both keys of a node map to its name.
fn node_of<'a>(_prefix: &str, key: &'a str) -> Option<&'a str> {
    match keys::parse_node_key(key)? {
        keys::NodeKey::Node(n) | keys::NodeKey::Desired(n) => Some(n),
    }
}

impl NodeApi {
    async fn delete(&self, r: DeleteNodeRequest) -> Result<Node, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        validate::node_name(&mut v, "name", &r.name);
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        ctx.writer.require_leader().await?;
        if let Some(prev) = requests::replayed(ctx, DELETE, &r.request_id, set_etag).await? {
            return Ok(prev);
        }
        let (node, rev) = registry::get(ctx, &r.name)
            .await?
            .ok_or_else(|| ApiError::NodeNotFound(r.name.clone()))?;
        let mut node = overlay(ctx, node);
        let instances = node
            .status
            .as_ref()
            .map(|s| s.instances.clone())
            .unwrap_or_default();
        if let Some((kind, why)) = in_use(ctx, &r.name, &instances) {
            return Err(ApiError::NodeInUse {
                name: r.name,
                why,
                kind,
            });
        }
        super::clear_etag(&mut node);
        let key = keys::node(&r.name)?;
        let mut writes = vec![(key.clone(), None), (keys::node_desired(&r.name)?, None)];
        writes.extend(requests::record(DELETE, &r.request_id, &node)?);
        let compares = vec![Compare::ModRevision(key, rev)];
        tracing::info!(node = %r.name, "node record deleted");
        super::commit_stamped(ctx, compares, writes, node, set_etag, &r.name, None).await
    }

    async fn get(&self, r: GetNodeRequest) -> Result<Node, ApiError> {
        let mut v = Violations::default();
        validate::node_name(&mut v, "name", &r.name);
        v.into_result("INVALID_REQUEST")?;
        let (n, _) = registry::get(&self.ctx, &r.name)
            .await?
            .ok_or_else(|| ApiError::NodeNotFound(r.name.clone()))?;
        Ok(overlay(&self.ctx, n))
    }

    async fn list(&self, r: ListNodesRequest) -> Result<ListNodesResponse, ApiError> {
        let mut v = Violations::default();
        let size = validate::page_size(&mut v, "page_size", r.page_size);
        let sel = validate::label_selector(&mut v, "label_selector", &r.label_selector);
        let start = super::decode_page_token(&mut v, &r.page_token, keys::NODES);
        v.into_result("INVALID_REQUEST")?;
        // Each node has two keys (record and desired state): read twice the page.
        let (kvs, next, revision) =
            super::list_page(&self.ctx, keys::NODES, size.saturating_mul(2), start).await?;
        let mut nodes = Vec::new();
        for kv in kvs {
            if !matches!(keys::parse_node_key(&kv.key), Some(keys::NodeKey::Node(_))) {
                continue;
            }
            let n: Node = super::decode_stored(&kv)?;
            if super::selected(&n, &sel) {
                nodes.push(overlay(&self.ctx, n));
            }
        }
        Ok(ListNodesResponse {
            nodes,
            next_page_token: next,
            revision,
        })
    }

    async fn set_cordon(
        &self,
        method: &str,
        name: &str,
        request_id: &str,
        cordoned: bool,
    ) -> Result<Node, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        validate::node_name(&mut v, "name", name);
        validate::request_id(&mut v, "request_id", request_id);
        v.into_result("INVALID_REQUEST")?;
        ctx.writer.require_leader().await?;
        if let Some((prev, _)) = requests::replay::<Node>(ctx, method, request_id).await? {
            return Ok(prev);
        }
        let node = registry::update_spec(ctx, name, |s| {
            s.cordoned = cordoned;
            if !cordoned {
                s.draining = false;
            }
        })
        .await?;
        let node = overlay(ctx, node);
        if let Some(w) = requests::record(method, request_id, &node)?
            && let Err(e) = ctx.commit(vec![], vec![w], vec![]).await
        {
            return Err(ctx.writer.api_error(e, name).await);
        }
        Ok(node)
    }

    async fn drain(&self, r: DrainNodeRequest) -> Result<Operation, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        validate::node_name(&mut v, "name", &r.name);
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        ctx.writer.require_leader().await?;
        if let Some(prev) = requests::replayed(ctx, DRAIN, &r.request_id, set_etag).await? {
            return Ok(prev);
        }
        if registry::get(ctx, &r.name).await?.is_none() {
            return Err(ApiError::NodeNotFound(r.name));
        }
        // An unfinished drain of this node is returned as is.
        let running = running_drain(ctx, &r.name);
        registry::update_spec(ctx, &r.name, |s| {
            s.cordoned = true;
            s.draining = true;
        })
        .await?;
        if let Some(op) = running {
            return Ok(op);
        }
        let now = prost_types::Timestamp::from(SystemTime::now());
        let id = format!("op-{}", uuid::Uuid::new_v4());
        let op = Operation {
            metadata: Some(ObjectMeta {
                name: id.clone(),
                uid: uuid::Uuid::new_v4().to_string(),
                generation: 1,
                create_time: Some(now),
                ..Default::default()
            }),
            spec: Some(OperationSpec {
                cluster: String::new(),
                kind: Some(operation_spec::Kind::DrainNode(DrainNodeSpec {
                    node: r.name.clone(),
                })),
            }),
            status: Some(OperationStatus {
                phase: OperationPhase::Running as i32,
                step: "MoveInstances".into(),
                step_index: 0,
                total_steps: 1,
                start_time: Some(now),
                history: vec![format!("node {} cordoned and draining", r.name)],
                ..Default::default()
            }),
        };
        let key = keys::operation(&id)?;
        let mut writes = vec![(key.clone(), Some(op.encode_to_vec()))];
        writes.extend(requests::record(DRAIN, &r.request_id, &op)?);
        let compares = vec![Compare::Absent(key)];
        super::commit_stamped(ctx, compares, writes, op, set_etag, &id, None).await
    }
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("ListNodes", selector = %r.label_selector);
        Ok(Response::new(self.list(r).instrument(span).await?))
    }

    async fn get_node(&self, request: Request<GetNodeRequest>) -> Result<Response<Node>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetNode", node = %r.name);
        Ok(Response::new(self.get(r).instrument(span).await?))
    }

    async fn cordon_node(
        &self,
        request: Request<CordonNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        let r = request.into_inner();
        let span = info_span!("CordonNode", node = %r.name, request_id = %r.request_id);
        Ok(Response::new(
            self.set_cordon(CORDON, &r.name, &r.request_id, true)
                .instrument(span)
                .await?,
        ))
    }

    async fn uncordon_node(
        &self,
        request: Request<UncordonNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        let r = request.into_inner();
        let span = info_span!("UncordonNode", node = %r.name, request_id = %r.request_id);
        Ok(Response::new(
            self.set_cordon(UNCORDON, &r.name, &r.request_id, false)
                .instrument(span)
                .await?,
        ))
    }

    async fn drain_node(
        &self,
        request: Request<DrainNodeRequest>,
    ) -> Result<Response<Operation>, Status> {
        let r = request.into_inner();
        let span = info_span!("DrainNode", node = %r.name, request_id = %r.request_id);
        Ok(Response::new(self.drain(r).instrument(span).await?))
    }

    async fn delete_node(
        &self,
        request: Request<DeleteNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        let r = request.into_inner();
        let span = info_span!("DeleteNode", node = %r.name, request_id = %r.request_id);
        let id = r.request_id.clone();
        super::idempotent(&self.ctx, DELETE, &id, span, set_etag, || {
            self.delete(r.clone())
        })
        .await
    }

    type WatchNodesStream = WatchStream;

    async fn watch_nodes(
        &self,
        request: Request<WatchNodesRequest>,
    ) -> Result<Response<Self::WatchNodesStream>, Status> {
        let r = request.into_inner();
        let _span = info_span!("WatchNodes", node = %r.name, revision = r.revision).entered();
        super::validate_watch(r.revision, &r.name, validate::node_name)?;
        let ctx = self.ctx.clone();
        let make: super::MakeEvent<WatchNodesResponse> =
            Arc::new(move |t, key, name, bytes, rev| node_event(&ctx, t, key, name, bytes, rev));
        let bookmark = Arc::new(|rev: i64| WatchNodesResponse {
            r#type: WatchEventType::Bookmark as i32,
            node: None,
            revision: rev,
        });
        let s = super::watch_stream(
            self.ctx.clone(),
            keys::NODES,
            r.revision,
            r.name,
            node_of,
            make,
            bookmark,
        );
        Ok(Response::new(Box::pin(s)))
    }
}

type WatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<WatchNodesResponse, Status>> + Send>>;

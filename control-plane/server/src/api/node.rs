//! `flotilla.v1.NodeService`: nodes register themselves through their agents; users list,
//! cordon, uncordon and drain them.
//!
//! Reads overlay what lives only in memory or in other keys: the instances placed on the node
//! (from its desired state) and its last heartbeat (from the live session). DrainNode cordons
//! the node, marks it draining — the reconciler then moves its instances elsewhere — and
//! returns a drain Operation that completes when the node holds no instance.

use std::sync::Arc;
use std::time::SystemTime;

use flotilla_intent_store::{Compare, keys};
use flotilla_proto::v1::{
    CordonNodeRequest, DrainNodeRequest, DrainNodeSpec, GetNodeRequest, ListNodesRequest,
    ListNodesResponse, Node, ObjectMeta, Operation, OperationPhase, OperationSpec, OperationStatus,
    UncordonNodeRequest, node_service_server::NodeService, operation_spec,
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

impl NodeApi {
    async fn get(&self, r: GetNodeRequest) -> Result<Node, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "name", &r.name);
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
        validate::name(&mut v, "name", name);
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
        validate::name(&mut v, "name", &r.name);
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
        let running = ctx.cache.read(|st| {
            st.operations.values().find_map(|o| {
                let op = &o.value;
                let is_it = matches!(
                    op.spec.as_ref().and_then(|s| s.kind.as_ref()),
                    Some(operation_spec::Kind::DrainNode(d)) if d.node == r.name
                );
                let done = op.status.as_ref().is_some_and(|s| s.done);
                (is_it && !done).then(|| {
                    let mut op = op.clone();
                    set_etag(&mut op, o.mod_revision);
                    op
                })
            })
        });
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
}

//! `flotilla.v1.ClusterService`: create, read, list, update, delete and watch clusters.
//!
//! Writes are compare-and-swap on the cluster's revision (the etag) and fenced by the leader's
//! epoch; `generation` moves only when the spec changes. A spec change that needs a workflow
//! (fewer groups: scale-in) also creates a pending Operation, returned with the update, that
//! keeps the groups in place until the workflow finishes.

use std::sync::Arc;
use std::time::SystemTime;

use flotilla_intent_store::{Compare, keys};
use flotilla_proto::v1::{
    Cluster, ClusterPhase, ClusterStatus, CreateClusterRequest, DeleteClusterRequest,
    GetClusterRequest, ListClustersRequest, ListClustersResponse, ObjectMeta, Operation,
    OperationPhase, OperationSpec, OperationStatus, ScaleInSpec, UpdateClusterRequest,
    UpdateClusterResponse, WatchClustersRequest, WatchClustersResponse, WatchEventType,
    cluster_service_server::ClusterService, operation_spec,
};
use prost::Message;
use prost_types::Timestamp;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::context::Ctx;
use crate::errors::{ApiError, decode};
use crate::fenced::WriteError;
use crate::names;
use crate::requests;
use crate::validate::{self, Violations};

const CREATE: &str = "/flotilla.v1.ClusterService/CreateCluster";
const UPDATE: &str = "/flotilla.v1.ClusterService/UpdateCluster";
const DELETE: &str = "/flotilla.v1.ClusterService/DeleteCluster";

/// The ClusterService implementation.
pub struct ClusterApi {
    ctx: Arc<Ctx>,
}

impl ClusterApi {
    /// Serves clusters from `ctx`.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }
}

fn set_etag(c: &mut Cluster, rev: i64) {
    if let Some(m) = c.metadata.as_mut() {
        m.etag = rev.to_string();
    }
}

fn set_response_etag(r: &mut UpdateClusterResponse, rev: i64) {
    if let Some(c) = r.cluster.as_mut() {
        set_etag(c, rev);
    }
    if let Some(m) = r.operation.as_mut().and_then(|o| o.metadata.as_mut()) {
        m.etag = rev.to_string();
    }
}

fn clear_etag(c: &mut Cluster) {
    if let Some(m) = c.metadata.as_mut() {
        m.etag.clear();
    }
}

/// Reads a cluster with its revision.
pub async fn load(ctx: &Ctx, name: &str) -> Result<(Cluster, i64), ApiError> {
    let key = keys::cluster(name).map_err(|e| ApiError::bad_request("name", e.to_string()))?;
    let kv = ctx
        .store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::ClusterNotFound(name.to_string()))?;
    let mut c: Cluster = decode(&key, &kv.value)?;
    set_etag(&mut c, kv.mod_revision);
    Ok((c, kv.mod_revision))
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

impl ClusterApi {
    async fn create(&self, r: CreateClusterRequest) -> Result<Cluster, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        let c = r.cluster.unwrap_or_default();
        let meta = c.metadata.clone().unwrap_or_default();
        validate::name(&mut v, "cluster.metadata.name", &meta.name);
        validate::labels(&mut v, "cluster.metadata.labels", &meta.labels);
        validate::cluster_spec(&mut v, "cluster.spec", &meta.name, c.spec.as_ref());
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_SPEC")?;
        let mut cluster = Cluster {
            metadata: Some(ObjectMeta {
                name: meta.name.clone(),
                uid: uuid::Uuid::new_v4().to_string(),
                generation: 1,
                etag: String::new(),
                create_time: Some(now()),
                labels: meta.labels,
                delete_time: None,
            }),
            spec: c.spec,
            status: Some(ClusterStatus {
                phase: ClusterPhase::Pending as i32,
                ..Default::default()
            }),
        };
        if r.validate_only {
            return Ok(cluster);
        }
        ctx.writer.require_leader().await?;
        if let Some((mut prev, rev)) =
            requests::replay::<Cluster>(ctx, CREATE, &r.request_id).await?
        {
            set_etag(&mut prev, rev);
            return Ok(prev);
        }
        let key = keys::cluster(&meta.name)?;
        let mut writes = vec![(key.clone(), Some(cluster.encode_to_vec()))];
        writes
            .extend(requests::record(CREATE, &r.request_id, &cluster)?.map(|(k, v)| (k, Some(v))));
        match ctx.commit(vec![Compare::Absent(key)], writes, vec![]).await {
            Ok(resp) => {
                set_etag(&mut cluster, resp.revision);
                Ok(cluster)
            }
            Err(WriteError::Conflict { .. }) => Err(ApiError::ClusterAlreadyExists(meta.name)),
            Err(e) => Err(ctx.writer.api_error(e, &meta.name).await),
        }
    }

    async fn get(&self, r: GetClusterRequest) -> Result<Cluster, ApiError> {
        let mut v = Violations::default();
        validate::name(&mut v, "name", &r.name);
        v.into_result("INVALID_REQUEST")?;
        Ok(load(&self.ctx, &r.name).await?.0)
    }

    async fn list(&self, r: ListClustersRequest) -> Result<ListClustersResponse, ApiError> {
        let mut v = Violations::default();
        let size = validate::page_size(&mut v, "page_size", r.page_size);
        let sel = validate::label_selector(&mut v, "label_selector", &r.label_selector);
        let start = super::decode_page_token(&mut v, &r.page_token, keys::CLUSTERS);
        v.into_result("INVALID_REQUEST")?;
        let (kvs, next, revision) =
            super::list_page(&self.ctx, keys::CLUSTERS, size, start).await?;
        let mut clusters = Vec::new();
        for kv in kvs {
            if keys::name_under(keys::CLUSTERS, &kv.key).is_none() {
                continue;
            }
            let mut c: Cluster = decode(&kv.key, &kv.value)?;
            set_etag(&mut c, kv.mod_revision);
            let labels = c
                .metadata
                .as_ref()
                .map(|m| m.labels.clone())
                .unwrap_or_default();
            if validate::matches_selector(&labels, &sel) {
                clusters.push(c);
            }
        }
        Ok(ListClustersResponse {
            clusters,
            next_page_token: next,
            revision,
        })
    }

    async fn update(&self, r: UpdateClusterRequest) -> Result<UpdateClusterResponse, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        let c = r.cluster.unwrap_or_default();
        let meta = c.metadata.clone().unwrap_or_default();
        validate::name(&mut v, "cluster.metadata.name", &meta.name);
        validate::labels(&mut v, "cluster.metadata.labels", &meta.labels);
        validate::cluster_spec(&mut v, "cluster.spec", &meta.name, c.spec.as_ref());
        validate::request_id(&mut v, "request_id", &r.request_id);
        let etag = validate::etag(&mut v, "cluster.metadata.etag", &meta.etag);
        v.into_result("INVALID_SPEC")?;
        if !r.validate_only {
            ctx.writer.require_leader().await?;
            if let Some((mut prev, rev)) =
                requests::replay::<UpdateClusterResponse>(ctx, UPDATE, &r.request_id).await?
            {
                set_response_etag(&mut prev, rev);
                return Ok(prev);
            }
        }
        let (existing, rev) = load(ctx, &meta.name).await?;
        let old_meta = existing.metadata.clone().unwrap_or_default();
        if old_meta.delete_time.is_some() {
            return Err(ApiError::ClusterDeleting(meta.name));
        }
        if let Some(e) = etag
            && e != rev
        {
            return Err(ApiError::EtagMismatch {
                name: meta.name,
                given: e.to_string(),
                current: rev.to_string(),
            });
        }
        let old_spec = existing.spec.clone().unwrap_or_default();
        let new_spec = c.spec.clone().unwrap_or_default();
        let mut v = Violations::default();
        validate::immutable(&mut v, "cluster.spec", &old_spec, &new_spec);
        v.into_result("INVALID_SPEC")?;
        let mut next = existing.clone();
        clear_etag(&mut next);
        if let Some(m) = next.metadata.as_mut() {
            m.labels = meta.labels.clone();
            if old_spec != new_spec {
                m.generation += 1;
            }
        }
        next.spec = Some(new_spec.clone());
        let old_groups = old_spec.broker.as_ref().map_or(0, |b| b.groups);
        let new_groups = new_spec.broker.as_ref().map_or(0, |b| b.groups);
        let operation = (new_groups < old_groups).then(|| {
            let groups = (new_groups..old_groups)
                .map(|i| names::group(&meta.name, i))
                .collect();
            Operation {
                metadata: Some(ObjectMeta {
                    name: format!("op-{}", uuid::Uuid::new_v4()),
                    uid: uuid::Uuid::new_v4().to_string(),
                    generation: 1,
                    create_time: Some(now()),
                    ..Default::default()
                }),
                spec: Some(OperationSpec {
                    cluster: meta.name.clone(),
                    kind: Some(operation_spec::Kind::ScaleIn(ScaleInSpec {
                        groups,
                        force: false,
                    })),
                }),
                status: Some(OperationStatus {
                    phase: OperationPhase::Pending as i32,
                    step: "WaitingForWorkflow".into(),
                    start_time: Some(now()),
                    ..Default::default()
                }),
            }
        });
        let mut response = UpdateClusterResponse {
            cluster: Some(next.clone()),
            operation: operation.clone(),
        };
        if r.validate_only {
            return Ok(response);
        }
        let key = keys::cluster(&meta.name)?;
        let mut writes = vec![(key.clone(), Some(next.encode_to_vec()))];
        if let Some(op) = &operation {
            let name = op
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            writes.push((keys::operation(&name)?, Some(op.encode_to_vec())));
        }
        writes
            .extend(requests::record(UPDATE, &r.request_id, &response)?.map(|(k, v)| (k, Some(v))));
        match ctx
            .commit(vec![Compare::ModRevision(key, rev)], writes, vec![])
            .await
        {
            Ok(resp) => {
                if let Some(c) = response.cluster.as_mut() {
                    set_etag(c, resp.revision);
                }
                if let Some(m) = response
                    .operation
                    .as_mut()
                    .and_then(|o| o.metadata.as_mut())
                {
                    m.etag = resp.revision.to_string();
                }
                Ok(response)
            }
            Err(WriteError::Conflict { .. }) if etag.is_some() => Err(ApiError::EtagMismatch {
                name: meta.name,
                given: meta.etag,
                current: "changed".into(),
            }),
            Err(e) => Err(ctx.writer.api_error(e, &meta.name).await),
        }
    }

    async fn delete(&self, r: DeleteClusterRequest) -> Result<Cluster, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        validate::name(&mut v, "name", &r.name);
        validate::request_id(&mut v, "request_id", &r.request_id);
        let etag = validate::etag(&mut v, "etag", &r.etag);
        v.into_result("INVALID_REQUEST")?;
        ctx.writer.require_leader().await?;
        if let Some((mut prev, rev)) =
            requests::replay::<Cluster>(ctx, DELETE, &r.request_id).await?
        {
            set_etag(&mut prev, rev);
            return Ok(prev);
        }
        let (existing, rev) = load(ctx, &r.name).await?;
        if let Some(e) = etag
            && e != rev
        {
            return Err(ApiError::EtagMismatch {
                name: r.name,
                given: e.to_string(),
                current: rev.to_string(),
            });
        }
        if existing
            .metadata
            .as_ref()
            .is_some_and(|m| m.delete_time.is_some())
        {
            return Ok(existing);
        }
        let mut next = existing;
        clear_etag(&mut next);
        if let Some(m) = next.metadata.as_mut() {
            m.delete_time = Some(now());
        }
        next.status.get_or_insert_with(Default::default).phase = ClusterPhase::Deleting as i32;
        let key = keys::cluster(&r.name)?;
        let mut writes = vec![(key.clone(), Some(next.encode_to_vec()))];
        writes.extend(requests::record(DELETE, &r.request_id, &next)?.map(|(k, v)| (k, Some(v))));
        match ctx
            .commit(vec![Compare::ModRevision(key, rev)], writes, vec![])
            .await
        {
            Ok(resp) => {
                set_etag(&mut next, resp.revision);
                Ok(next)
            }
            Err(WriteError::Conflict { .. }) if etag.is_some() => Err(ApiError::EtagMismatch {
                name: r.name,
                given: r.etag,
                current: "changed".into(),
            }),
            Err(e) => Err(ctx.writer.api_error(e, &r.name).await),
        }
    }
}

type WatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<WatchClustersResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn create_cluster(
        &self,
        request: Request<CreateClusterRequest>,
    ) -> Result<Response<Cluster>, Status> {
        let r = request.into_inner();
        let name = r
            .cluster
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let span = info_span!("CreateCluster", cluster = %name, request_id = %r.request_id);
        let id = r.request_id.clone();
        let result = self.create(r).instrument(span).await;
        let c = requests::or_replay(&self.ctx, CREATE, &id, result, set_etag).await?;
        Ok(Response::new(c))
    }

    async fn get_cluster(
        &self,
        request: Request<GetClusterRequest>,
    ) -> Result<Response<Cluster>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetCluster", cluster = %r.name);
        Ok(Response::new(self.get(r).instrument(span).await?))
    }

    async fn list_clusters(
        &self,
        request: Request<ListClustersRequest>,
    ) -> Result<Response<ListClustersResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("ListClusters", selector = %r.label_selector);
        Ok(Response::new(self.list(r).instrument(span).await?))
    }

    async fn update_cluster(
        &self,
        request: Request<UpdateClusterRequest>,
    ) -> Result<Response<UpdateClusterResponse>, Status> {
        let r = request.into_inner();
        let name = r
            .cluster
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let span = info_span!("UpdateCluster", cluster = %name, request_id = %r.request_id);
        let id = r.request_id.clone();
        let validate_only = r.validate_only;
        let result = super::retry_conflicts(|| self.update(r.clone()))
            .instrument(span)
            .await;
        let resp = if validate_only {
            result?
        } else {
            requests::or_replay(&self.ctx, UPDATE, &id, result, set_response_etag).await?
        };
        Ok(Response::new(resp))
    }

    async fn delete_cluster(
        &self,
        request: Request<DeleteClusterRequest>,
    ) -> Result<Response<Cluster>, Status> {
        let r = request.into_inner();
        let span = info_span!("DeleteCluster", cluster = %r.name, request_id = %r.request_id);
        let id = r.request_id.clone();
        let result = super::retry_conflicts(|| self.delete(r.clone()))
            .instrument(span)
            .await;
        let c = requests::or_replay(&self.ctx, DELETE, &id, result, set_etag).await?;
        Ok(Response::new(c))
    }

    type WatchClustersStream = WatchStream;

    async fn watch_clusters(
        &self,
        request: Request<WatchClustersRequest>,
    ) -> Result<Response<Self::WatchClustersStream>, Status> {
        let r = request.into_inner();
        let _span = info_span!("WatchClusters", cluster = %r.name, revision = r.revision).entered();
        let mut v = Violations::default();
        if r.revision < 0 {
            v.add("revision", "must be >= 0");
        }
        if !r.name.is_empty() {
            validate::name(&mut v, "name", &r.name);
        }
        v.into_result("INVALID_REQUEST")?;
        let make: super::MakeEvent<WatchClustersResponse> = std::sync::Arc::new(
            |t: WatchEventType, name: &str, bytes: Option<&[u8]>, rev: i64| {
                let mut c = bytes
                    .and_then(|b| Cluster::decode(b).ok())
                    .unwrap_or_else(|| Cluster {
                        metadata: Some(ObjectMeta {
                            name: name.to_string(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                set_etag(&mut c, rev);
                Some(WatchClustersResponse {
                    r#type: t as i32,
                    cluster: Some(c),
                    revision: rev,
                })
            },
        );
        let bookmark = std::sync::Arc::new(|rev: i64| WatchClustersResponse {
            r#type: WatchEventType::Bookmark as i32,
            cluster: None,
            revision: rev,
        });
        let s = super::watch_stream(
            self.ctx.clone(),
            keys::CLUSTERS,
            r.revision,
            r.name,
            make,
            bookmark,
        );
        Ok(Response::new(Box::pin(s)))
    }
}

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
    OperationPhase, OperationSpec, OperationStatus, RestartClusterRequest, RollingRestartSpec,
    ScaleInSpec, ScaleOutSpec, UpdateClusterRequest, UpdateClusterResponse, WatchClustersRequest,
    WatchClustersResponse, cluster_service_server::ClusterService, member_change, operation_spec,
};
use prost::Message;
use prost_types::Timestamp;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use super::{clear_etag, set_etag};
use crate::context::Ctx;
use crate::errors::ApiError;
use crate::names;
use crate::requests;
use crate::validate::{self, Violations};

const CREATE: &str = "/flotilla.v1.ClusterService/CreateCluster";
const UPDATE: &str = "/flotilla.v1.ClusterService/UpdateCluster";
const DELETE: &str = "/flotilla.v1.ClusterService/DeleteCluster";
const RESTART: &str = "/flotilla.v1.ClusterService/RestartCluster";
/// Longest per-member limit of a rolling restart.
const MAX_MEMBER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

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

/// The etag of an update's response: the cluster's and the operation's, both the commit's
/// revision.
fn set_response_etag(r: &mut UpdateClusterResponse, rev: i64) {
    if let Some(c) = r.cluster.as_mut() {
        set_etag(c, rev);
    }
    if let Some(op) = r.operation.as_mut() {
        set_etag(op, rev);
    }
}

/// A new pending operation on `cluster`.
pub fn new_operation(cluster: &str, kind: operation_spec::Kind) -> Operation {
    Operation {
        metadata: Some(ObjectMeta {
            name: format!("op-{}", uuid::Uuid::new_v4()),
            uid: uuid::Uuid::new_v4().to_string(),
            generation: 1,
            create_time: Some(now()),
            ..Default::default()
        }),
        spec: Some(OperationSpec {
            cluster: cluster.to_string(),
            kind: Some(kind),
        }),
        status: Some(OperationStatus {
            phase: OperationPhase::Pending as i32,
            step: "WaitingForWorkflow".into(),
            start_time: Some(now()),
            ..Default::default()
        }),
    }
}

/// Reads a cluster with its revision.
pub async fn load(ctx: &Ctx, name: &str) -> Result<(Cluster, i64), ApiError> {
    let key = keys::cluster(name).map_err(|e| ApiError::bad_request("name", e.to_string()))?;
    super::load(ctx, &key, || ApiError::ClusterNotFound(name.to_string())).await
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
        let cluster = Cluster {
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
        if let Some(prev) = requests::replayed(ctx, CREATE, &r.request_id, set_etag).await? {
            return Ok(prev);
        }
        let key = keys::cluster(&meta.name)?;
        let mut writes = vec![(key.clone(), Some(cluster.encode_to_vec()))];
        writes.extend(requests::record(CREATE, &r.request_id, &cluster)?);
        let exists = ApiError::ClusterAlreadyExists(meta.name.clone());
        let compares = vec![Compare::Absent(key)];
        super::commit_stamped(
            ctx,
            compares,
            writes,
            cluster,
            set_etag,
            &meta.name,
            Some(exists),
        )
        .await
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
            let c: Cluster = super::decode_stored(&kv)?;
            if super::selected(&c, &sel) {
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
            if let Some(prev) =
                requests::replayed(ctx, UPDATE, &r.request_id, set_response_etag).await?
            {
                return Ok(prev);
            }
        }
        let (existing, rev) = load(ctx, &meta.name).await?;
        let old_meta = existing.metadata.clone().unwrap_or_default();
        if old_meta.delete_time.is_some() {
            return Err(ApiError::ClusterDeleting(meta.name));
        }
        super::check_etag(&meta.name, etag, rev)?;
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
        if new_groups < old_groups && !r.force {
            let leaving: std::collections::BTreeSet<String> = (new_groups..old_groups)
                .map(|i| names::group(&meta.name, i))
                .collect();
            crate::workflow::scale_in::precondition(ctx, &meta.name, &leaving)
                .await
                .map_err(|why| ApiError::ScaleInRefused {
                    cluster: meta.name.clone(),
                    why,
                })?;
        }
        let scale_out = (new_groups > old_groups).then(|| {
            operation_spec::Kind::ScaleOut(ScaleOutSpec {
                groups: (old_groups..new_groups)
                    .map(|i| names::group(&meta.name, i))
                    .collect(),
                source_group: new_spec
                    .scale_source
                    .as_ref()
                    .map(|s| s.group.clone())
                    .unwrap_or_default(),
            })
        });
        let scale_in = (new_groups < old_groups).then(|| {
            operation_spec::Kind::ScaleIn(ScaleInSpec {
                groups: (new_groups..old_groups)
                    .map(|i| names::group(&meta.name, i))
                    .collect(),
                force: r.force,
            })
        });
        let operation = scale_in
            .or(scale_out)
            .map(|kind| new_operation(&meta.name, kind));
        let leaving: Vec<String> = (new_groups..old_groups)
            .map(|i| names::group(&meta.name, i))
            .collect();
        let changes = crate::reconcile::preview::preview(ctx, &next, &leaving);
        // Restart-only changes roll as an Operation: one member at a time, in order, each
        // back Ready before the next, stopped (Degraded) at the first that does not come back.
        let restarting: Vec<String> = changes
            .iter()
            .filter(|c| c.action == member_change::Action::Restart as i32)
            .map(|c| c.member.clone())
            .collect();
        let roll =
            (!restarting.is_empty() && new_spec.allow_restart && !new_spec.paused).then(|| {
                new_operation(
                    &meta.name,
                    operation_spec::Kind::RollingRestart(RollingRestartSpec {
                        members: restarting,
                        reason: format!(
                            "spec change (generation {})",
                            next.metadata.as_ref().map_or(0, |m| m.generation)
                        ),
                        generation: next.metadata.as_ref().map_or(0, |m| m.generation),
                        member_timeout: None,
                        previous_spec: old_spec.encode_to_vec(),
                    }),
                )
            });
        let response = UpdateClusterResponse {
            cluster: Some(next.clone()),
            operation: operation.clone().or_else(|| roll.clone()),
            changes,
        };
        if r.validate_only {
            return Ok(response);
        }
        let key = keys::cluster(&meta.name)?;
        let mut writes = vec![(key.clone(), Some(next.encode_to_vec()))];
        for op in operation.iter().chain(roll.iter()) {
            let key = keys::operation(&super::name_of(op))?;
            writes.push((key, Some(op.encode_to_vec())));
        }
        writes.extend(requests::record(UPDATE, &r.request_id, &response)?);
        let raced = super::etag_race(&meta.name, &meta.etag, etag);
        let compares = vec![Compare::ModRevision(key, rev)];
        super::commit_stamped(
            ctx,
            compares,
            writes,
            response,
            set_response_etag,
            &meta.name,
            raced,
        )
        .await
    }

    async fn restart(&self, r: RestartClusterRequest) -> Result<Operation, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        validate::name(&mut v, "name", &r.name);
        validate::request_id(&mut v, "request_id", &r.request_id);
        for (i, m) in r.members.iter().enumerate() {
            if !names::is_dns_label(m) {
                v.add(format!("members[{i}]"), "not a member name");
            }
        }
        let member_timeout = match r.member_timeout {
            None => None,
            Some(d) => match std::time::Duration::try_from(d) {
                Ok(t) if !t.is_zero() && t <= MAX_MEMBER_TIMEOUT => Some(d),
                _ => {
                    v.add("member_timeout", "must be more than 0 and at most 1 hour");
                    None
                }
            },
        };
        v.into_result("INVALID_REQUEST")?;
        if !r.validate_only {
            ctx.writer.require_leader().await?;
            if let Some(prev) = requests::replayed(ctx, RESTART, &r.request_id, set_etag).await? {
                return Ok(prev);
            }
        }
        let (existing, _) = load(ctx, &r.name).await?;
        if existing
            .metadata
            .as_ref()
            .is_some_and(|m| m.delete_time.is_some())
        {
            return Err(ApiError::ClusterDeleting(r.name));
        }
        let known: Vec<String> = existing
            .status
            .as_ref()
            .map(|s| s.members.iter().map(|m| m.name.clone()).collect())
            .unwrap_or_default();
        let mut v = Violations::default();
        for (i, m) in r.members.iter().enumerate() {
            if !known.contains(m) {
                v.add(
                    format!("members[{i}]"),
                    format!("cluster {} has no member {m}", r.name),
                );
            }
        }
        v.into_result("MEMBER_NOT_FOUND")?;
        let op = new_operation(
            &r.name,
            operation_spec::Kind::RollingRestart(RollingRestartSpec {
                members: r.members.clone(),
                reason: if r.reason.is_empty() {
                    "restart requested".into()
                } else {
                    r.reason.clone()
                },
                generation: 0,
                member_timeout,
                previous_spec: Vec::new(),
            }),
        );
        if r.validate_only {
            return Ok(op);
        }
        let key = keys::operation(&super::name_of(&op))?;
        let mut writes = vec![(key.clone(), Some(op.encode_to_vec()))];
        writes.extend(requests::record(RESTART, &r.request_id, &op)?);
        let compares = vec![Compare::ModRevision(key, 0)];
        super::commit_stamped(ctx, compares, writes, op, set_etag, &r.name, None).await
    }

    async fn delete(&self, r: DeleteClusterRequest) -> Result<Cluster, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        validate::name(&mut v, "name", &r.name);
        validate::request_id(&mut v, "request_id", &r.request_id);
        let etag = validate::etag(&mut v, "etag", &r.etag);
        v.into_result("INVALID_REQUEST")?;
        ctx.writer.require_leader().await?;
        if let Some(prev) = requests::replayed(ctx, DELETE, &r.request_id, set_etag).await? {
            return Ok(prev);
        }
        let (existing, rev) = load(ctx, &r.name).await?;
        super::check_etag(&r.name, etag, rev)?;
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
        writes.extend(requests::record(DELETE, &r.request_id, &next)?);
        let raced = super::etag_race(&r.name, &r.etag, etag);
        let compares = vec![Compare::ModRevision(key, rev)];
        super::commit_stamped(ctx, compares, writes, next, set_etag, &r.name, raced).await
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
        let name = r.cluster.as_ref().map(super::name_of).unwrap_or_default();
        let span = info_span!("CreateCluster", cluster = %name, request_id = %r.request_id);
        let id = r.request_id.clone();
        // CreateCluster never fails with CONCURRENT_MODIFICATION (a lost race is
        // CLUSTER_ALREADY_EXISTS), so the retry in `idempotent` never runs it twice.
        super::idempotent(&self.ctx, CREATE, &id, span, set_etag, || {
            self.create(r.clone())
        })
        .await
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
        let name = r.cluster.as_ref().map(super::name_of).unwrap_or_default();
        let span = info_span!("UpdateCluster", cluster = %name, request_id = %r.request_id);
        // A validate-only update writes nothing, so it has nothing to replay.
        let id = if r.validate_only {
            String::new()
        } else {
            r.request_id.clone()
        };
        let update = || self.update(r.clone());
        super::idempotent(&self.ctx, UPDATE, &id, span, set_response_etag, update).await
    }

    async fn delete_cluster(
        &self,
        request: Request<DeleteClusterRequest>,
    ) -> Result<Response<Cluster>, Status> {
        let r = request.into_inner();
        let span = info_span!("DeleteCluster", cluster = %r.name, request_id = %r.request_id);
        let id = r.request_id.clone();
        super::idempotent(&self.ctx, DELETE, &id, span, set_etag, || {
            self.delete(r.clone())
        })
        .await
    }

    async fn restart_cluster(
        &self,
        request: Request<RestartClusterRequest>,
    ) -> Result<Response<Operation>, Status> {
        let r = request.into_inner();
        let span = info_span!("RestartCluster", cluster = %r.name, request_id = %r.request_id);
        let id = if r.validate_only {
            String::new()
        } else {
            r.request_id.clone()
        };
        super::idempotent(&self.ctx, RESTART, &id, span, set_etag, || {
            self.restart(r.clone())
        })
        .await
    }

    type WatchClustersStream = WatchStream;

    async fn watch_clusters(
        &self,
        request: Request<WatchClustersRequest>,
    ) -> Result<Response<Self::WatchClustersStream>, Status> {
        let r = request.into_inner();
        let _span = info_span!("WatchClusters", cluster = %r.name, revision = r.revision).entered();
        super::validate_watch(r.revision, &r.name, validate::name)?;
        let s = super::watch_objects(
            self.ctx.clone(),
            keys::CLUSTERS,
            r.revision,
            r.name,
            |t, cluster, revision| WatchClustersResponse {
                r#type: t as i32,
                cluster,
                revision,
            },
        );
        Ok(Response::new(Box::pin(s)))
    }
}

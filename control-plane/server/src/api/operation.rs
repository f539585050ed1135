//! `flotilla.v1.OperationService`: read, list, cancel, wait for, watch and delete
//! Operations.
//!
//! The workflows that drive operations live in [`crate::workflow`].
//! Cancel follows the proto: refused (FAILED_PRECONDITION) once done or past the point of no
//! return; a pending operation is cancelled at once; a node drain is undone (the node stays
//! cordoned, stops draining); any other running operation moves to CANCELLING for its
//! workflow to finish.
//!
//! Delete removes only a finished operation's record (the history an operator cleans up):
//! a workflow resumes from its record, so deleting an unfinished one would strand what it
//! started half-done; those are refused (FAILED_PRECONDITION, OPERATION_NOT_DONE) with
//! "cancel it first". The delete is guarded by the record's revision, so it never removes a
//! state it did not check.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flotilla_intent_store::{Compare, keys};
use flotilla_proto::v1::{
    CancelOperationRequest, ClusterSpec, DeleteOperationRequest, GetOperationRequest,
    ListOperationsRequest, ListOperationsResponse, Operation, OperationPhase,
    ResumeOperationRequest, RollbackOperationRequest, RollbackOperationResponse,
    RollingRestartSpec, WaitOperationRequest, WatchOperationsRequest, WatchOperationsResponse,
    operation_service_server::OperationService, operation_spec,
};
use futures::StreamExt;
use prost::Message;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use super::{clear_etag, set_etag};
use crate::context::Ctx;
use crate::errors::ApiError;
use crate::registry;
use crate::requests;
use crate::validate::{self, Violations};
use crate::workflow::rolling_restart;

const CANCEL: &str = "/flotilla.v1.OperationService/CancelOperation";
const RESUME: &str = "/flotilla.v1.OperationService/ResumeOperation";
const ROLLBACK: &str = "/flotilla.v1.OperationService/RollbackOperation";
const DELETE: &str = "/flotilla.v1.OperationService/DeleteOperation";

/// A phase as people read it (`Running`).
fn phase_name(phase: i32) -> String {
    match OperationPhase::try_from(phase) {
        Ok(OperationPhase::Pending) => "Pending",
        Ok(OperationPhase::Running) => "Running",
        Ok(OperationPhase::Succeeded) => "Succeeded",
        Ok(OperationPhase::Failed) => "Failed",
        Ok(OperationPhase::Cancelling) => "Cancelling",
        Ok(OperationPhase::Cancelled) => "Cancelled",
        _ => "in an unknown phase",
    }
    .to_string()
}

fn set_rollback_etag(r: &mut RollbackOperationResponse, rev: i64) {
    if let Some(op) = r.operation.as_mut() {
        set_etag(op, rev);
    }
    if let Some(op) = r.rollback.as_mut() {
        set_etag(op, rev);
    }
}
/// Default WaitOperation timeout.
pub const WAIT_DEFAULT: Duration = Duration::from_secs(60);
/// Longest WaitOperation timeout.
pub const WAIT_MAX: Duration = Duration::from_secs(600);

/// The OperationService implementation.
pub struct OperationApi {
    ctx: Arc<Ctx>,
}

impl OperationApi {
    /// Serves operations from `ctx`.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }
}

fn op_name(v: &mut Violations, field: &str, name: &str) {
    if name.is_empty() {
        v.add(field, "required");
    } else if keys::validate_segment("operation", name).is_err() || name.len() > 128 {
        v.add(field, "not an operation name");
    }
}

/// Reads an operation with its revision.
pub async fn load(ctx: &Ctx, name: &str) -> Result<(Operation, i64), ApiError> {
    let key = keys::operation(name).map_err(|e| ApiError::bad_request("name", e.to_string()))?;
    super::load(ctx, &key, || ApiError::OperationNotFound(name.to_string())).await
}

impl OperationApi {
    async fn get(&self, r: GetOperationRequest) -> Result<Operation, ApiError> {
        let mut v = Violations::default();
        op_name(&mut v, "name", &r.name);
        v.into_result("INVALID_REQUEST")?;
        Ok(load(&self.ctx, &r.name).await?.0)
    }

    async fn list(&self, r: ListOperationsRequest) -> Result<ListOperationsResponse, ApiError> {
        let mut v = Violations::default();
        let size = validate::page_size(&mut v, "page_size", r.page_size);
        let start = super::decode_page_token(&mut v, &r.page_token, keys::OPERATIONS);
        if !r.cluster.is_empty() {
            validate::name(&mut v, "cluster", &r.cluster);
        }
        v.into_result("INVALID_REQUEST")?;
        let (kvs, next, revision) =
            super::list_page(&self.ctx, keys::OPERATIONS, size, start).await?;
        let mut operations = Vec::new();
        for kv in kvs {
            let op: Operation = super::decode_stored(&kv)?;
            let cluster_ok =
                r.cluster.is_empty() || op.spec.as_ref().is_some_and(|s| s.cluster == r.cluster);
            let done = op.status.as_ref().is_some_and(|s| s.done);
            if cluster_ok && (r.include_done || !done) {
                operations.push(op);
            }
        }
        Ok(ListOperationsResponse {
            operations,
            next_page_token: next,
            revision,
        })
    }

    async fn cancel(&self, r: CancelOperationRequest) -> Result<Operation, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        op_name(&mut v, "name", &r.name);
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        ctx.writer.require_leader().await?;
        if let Some(prev) = requests::replayed(ctx, CANCEL, &r.request_id, set_etag).await? {
            return Ok(prev);
        }
        let (mut op, rev) = load(ctx, &r.name).await?;
        let status = op.status.clone().unwrap_or_default();
        if status.done {
            return Err(ApiError::OperationNotCancellable {
                name: r.name,
                why: "it is done".into(),
            });
        }
        if status.point_of_no_return_passed {
            return Err(ApiError::OperationNotCancellable {
                name: r.name,
                why: "it is past its point of no return".into(),
            });
        }
        let drain_node = match op.spec.as_ref().and_then(|s| s.kind.as_ref()) {
            Some(operation_spec::Kind::DrainNode(d)) => Some(d.node.clone()),
            _ => None,
        };
        let now = prost_types::Timestamp::from(SystemTime::now());
        let st = op.status.get_or_insert_with(Default::default);
        // A pending scale-in goes through its workflow's undo too (it restores the groups).
        let scale_in = matches!(
            op.spec.as_ref().and_then(|s| s.kind.as_ref()),
            Some(operation_spec::Kind::ScaleIn(_))
        );
        if (status.phase == OperationPhase::Pending as i32 && !scale_in) || drain_node.is_some() {
            st.phase = OperationPhase::Cancelled as i32;
            st.done = true;
            st.end_time = Some(now);
        } else {
            st.phase = OperationPhase::Cancelling as i32;
        }
        st.history.push("cancel requested".into());
        if st.history.len() > 100 {
            let extra = st.history.len() - 100;
            st.history.drain(..extra);
        }
        if let Some(node) = &drain_node {
            match registry::update_spec(ctx, node, |s| s.draining = false).await {
                Ok(_) | Err(ApiError::NodeNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        clear_etag(&mut op);
        let key = keys::operation(&r.name)?;
        let mut writes = vec![(key.clone(), Some(op.encode_to_vec()))];
        writes.extend(requests::record(CANCEL, &r.request_id, &op)?);
        let compares = vec![Compare::ModRevision(key, rev)];
        super::commit_stamped(ctx, compares, writes, op, set_etag, &r.name, None).await
    }

    async fn delete(&self, r: DeleteOperationRequest) -> Result<Operation, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        op_name(&mut v, "name", &r.name);
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        ctx.writer.require_leader().await?;
        if let Some(prev) = requests::replayed(ctx, DELETE, &r.request_id, set_etag).await? {
            return Ok(prev);
        }
        let (mut op, rev) = load(ctx, &r.name).await?;
        let status = op.status.clone().unwrap_or_default();
        if !status.done {
            return Err(ApiError::OperationNotDone {
                name: r.name,
                phase: phase_name(status.phase),
            });
        }
        clear_etag(&mut op);
        let key = keys::operation(&r.name)?;
        let mut writes = vec![(key.clone(), None)];
        writes.extend(requests::record(DELETE, &r.request_id, &op)?);
        let compares = vec![Compare::ModRevision(key, rev)];
        tracing::info!(operation = %r.name, "finished operation deleted");
        super::commit_stamped(ctx, compares, writes, op, set_etag, &r.name, None).await
    }

    async fn resume(&self, r: ResumeOperationRequest) -> Result<Operation, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        op_name(&mut v, "name", &r.name);
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        ctx.writer.require_leader().await?;
        if let Some(prev) = requests::replayed(ctx, RESUME, &r.request_id, set_etag).await? {
            return Ok(prev);
        }
        let (mut op, rev) = load(ctx, &r.name).await?;
        let refused = ctx
            .cache
            .read(|st| rolling_restart::why_not_resumable(st, &op));
        if let Some(why) = refused {
            return Err(ApiError::OperationNotResumable {
                name: r.name,
                action: "resumed",
                why,
            });
        }
        ctx.cache.read(|st| rolling_restart::resume(st, &mut op));
        clear_etag(&mut op);
        let key = keys::operation(&r.name)?;
        let mut writes = vec![(key.clone(), Some(op.encode_to_vec()))];
        writes.extend(requests::record(RESUME, &r.request_id, &op)?);
        let compares = vec![Compare::ModRevision(key, rev)];
        super::commit_stamped(ctx, compares, writes, op, set_etag, &r.name, None).await
    }

    async fn rollback(
        &self,
        r: RollbackOperationRequest,
    ) -> Result<RollbackOperationResponse, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        op_name(&mut v, "name", &r.name);
        validate::request_id(&mut v, "request_id", &r.request_id);
        v.into_result("INVALID_REQUEST")?;
        ctx.writer.require_leader().await?;
        if let Some(prev) =
            requests::replayed(ctx, ROLLBACK, &r.request_id, set_rollback_etag).await?
        {
            return Ok(prev);
        }
        let (mut op, rev) = load(ctx, &r.name).await?;
        let refuse = |why: String| ApiError::OperationNotResumable {
            name: r.name.clone(),
            action: "rolled back",
            why,
        };
        let spec = op.spec.clone().unwrap_or_default();
        let Some(operation_spec::Kind::RollingRestart(roll)) = spec.kind.clone() else {
            return Err(refuse("only a rolling restart can be rolled back".into()));
        };
        if roll.previous_spec.is_empty() {
            return Err(refuse(
                "an explicit restart has no previous spec to go back to".into(),
            ));
        }
        let status = op.status.clone().unwrap_or_default();
        let phase = OperationPhase::try_from(status.phase).unwrap_or(OperationPhase::Pending);
        if status.done && phase != OperationPhase::Failed {
            return Err(refuse("it is done".into()));
        }
        if phase == OperationPhase::Cancelling {
            return Err(refuse("it is being cancelled".into()));
        }
        let previous = ClusterSpec::decode(roll.previous_spec.as_slice())
            .map_err(|e| refuse(format!("its previous spec does not decode: {e}")))?;
        let (mut cluster, cluster_rev) = super::cluster::load(ctx, &spec.cluster).await?;
        let generation = cluster.metadata.as_ref().map_or(0, |m| m.generation);
        if generation != roll.generation {
            return Err(refuse(format!(
                "the cluster's spec changed since (generation {} -> {generation})",
                roll.generation
            )));
        }
        let current = cluster.spec.clone().unwrap_or_default();
        clear_etag(&mut cluster);
        if let Some(m) = cluster.metadata.as_mut() {
            m.generation += 1;
        }
        cluster.spec = Some(previous);
        let back = super::cluster::new_operation(
            &spec.cluster,
            operation_spec::Kind::RollingRestart(RollingRestartSpec {
                members: Vec::new(),
                reason: format!("rollback of {}", r.name),
                generation: generation + 1,
                member_timeout: roll.member_timeout,
                previous_spec: current.encode_to_vec(),
            }),
        );
        let now = prost_types::Timestamp::from(SystemTime::now());
        let st = op.status.get_or_insert_with(Default::default);
        st.phase = OperationPhase::Cancelled as i32;
        st.done = true;
        st.end_time = Some(now);
        st.history.push(format!(
            "rolled back: {} restores the previous spec",
            super::name_of(&back)
        ));
        clear_etag(&mut op);
        let key = keys::operation(&r.name)?;
        let cluster_key = keys::cluster(&spec.cluster)?;
        let back_key = keys::operation(&super::name_of(&back))?;
        let response = RollbackOperationResponse {
            operation: Some(op.clone()),
            rollback: Some(back.clone()),
        };
        let mut writes = vec![
            (key.clone(), Some(op.encode_to_vec())),
            (cluster_key.clone(), Some(cluster.encode_to_vec())),
            (back_key.clone(), Some(back.encode_to_vec())),
        ];
        writes.extend(requests::record(ROLLBACK, &r.request_id, &response)?);
        let compares = vec![
            Compare::ModRevision(key, rev),
            Compare::ModRevision(cluster_key, cluster_rev),
            Compare::ModRevision(back_key, 0),
        ];
        super::commit_stamped(
            ctx,
            compares,
            writes,
            response,
            set_rollback_etag,
            &r.name,
            None,
        )
        .await
    }

    async fn wait(&self, r: WaitOperationRequest) -> Result<Operation, ApiError> {
        let ctx = &self.ctx;
        let mut v = Violations::default();
        op_name(&mut v, "name", &r.name);
        let timeout = match r.timeout {
            None => WAIT_DEFAULT,
            Some(d) => match Duration::try_from(d) {
                Ok(d) if d <= WAIT_MAX => d,
                _ => {
                    v.add("timeout", "must be between 0 and 10 minutes");
                    WAIT_DEFAULT
                }
            },
        };
        v.into_result("INVALID_REQUEST")?;
        let (op, rev) = load(ctx, &r.name).await?;
        if op.status.as_ref().is_some_and(|s| s.done) {
            return Ok(op);
        }
        let key = keys::operation(&r.name)?;
        let mut events = ctx.store.watch(&key, rev + 1).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ev = tokio::select! {
                ev = events.next() => ev,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            match ev {
                Some(Ok(ev)) if ev.kv.key == key => {
                    if let Ok(mut op) = Operation::decode(ev.kv.value.as_slice())
                        && op.status.as_ref().is_some_and(|s| s.done)
                    {
                        set_etag(&mut op, ev.kv.mod_revision);
                        return Ok(op);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        Ok(load(ctx, &r.name).await?.0)
    }
}

type WatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<WatchOperationsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl OperationService for OperationApi {
    async fn get_operation(
        &self,
        request: Request<GetOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let r = request.into_inner();
        let span = info_span!("GetOperation", operation = %r.name);
        Ok(Response::new(self.get(r).instrument(span).await?))
    }

    async fn list_operations(
        &self,
        request: Request<ListOperationsRequest>,
    ) -> Result<Response<ListOperationsResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("ListOperations", cluster = %r.cluster);
        Ok(Response::new(self.list(r).instrument(span).await?))
    }

    async fn cancel_operation(
        &self,
        request: Request<CancelOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let r = request.into_inner();
        let span = info_span!("CancelOperation", operation = %r.name, request_id = %r.request_id);
        let id = r.request_id.clone();
        super::idempotent(&self.ctx, CANCEL, &id, span, set_etag, || {
            self.cancel(r.clone())
        })
        .await
    }

    async fn wait_operation(
        &self,
        request: Request<WaitOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let r = request.into_inner();
        let span = info_span!("WaitOperation", operation = %r.name);
        Ok(Response::new(self.wait(r).instrument(span).await?))
    }

    async fn resume_operation(
        &self,
        request: Request<ResumeOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let r = request.into_inner();
        let span = info_span!("ResumeOperation", operation = %r.name, request_id = %r.request_id);
        let id = r.request_id.clone();
        super::idempotent(&self.ctx, RESUME, &id, span, set_etag, || {
            self.resume(r.clone())
        })
        .await
    }

    async fn rollback_operation(
        &self,
        request: Request<RollbackOperationRequest>,
    ) -> Result<Response<RollbackOperationResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("RollbackOperation", operation = %r.name, request_id = %r.request_id);
        let id = r.request_id.clone();
        super::idempotent(&self.ctx, ROLLBACK, &id, span, set_rollback_etag, || {
            self.rollback(r.clone())
        })
        .await
    }

    async fn delete_operation(
        &self,
        request: Request<DeleteOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let r = request.into_inner();
        let span = info_span!("DeleteOperation", operation = %r.name, request_id = %r.request_id);
        let id = r.request_id.clone();
        super::idempotent(&self.ctx, DELETE, &id, span, set_etag, || {
            self.delete(r.clone())
        })
        .await
    }

    type WatchOperationsStream = WatchStream;

    async fn watch_operations(
        &self,
        request: Request<WatchOperationsRequest>,
    ) -> Result<Response<Self::WatchOperationsStream>, Status> {
        let r = request.into_inner();
        let _span =
            info_span!("WatchOperations", operation = %r.name, revision = r.revision).entered();
        super::validate_watch(r.revision, &r.name, op_name)?;
        let s = super::watch_objects(
            self.ctx.clone(),
            keys::OPERATIONS,
            r.revision,
            r.name,
            |t, operation, revision| WatchOperationsResponse {
                r#type: t as i32,
                operation,
                revision,
            },
        );
        Ok(Response::new(Box::pin(s)))
    }
}

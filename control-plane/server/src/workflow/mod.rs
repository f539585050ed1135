//! The workflow engine: what drives an `Operation` from Pending to done.
//!
//! An operation is a fixed sequence of steps ([`Workflow::steps`]). Each step is idempotent
//! and runs against observed state: it either finishes (the engine records the next step in
//! the store before running it), asks to be run again later (waiting for lag to drain, for a
//! member to stop), or fails the operation. Every record is a compare-and-swap on the
//! operation's revision through the fenced writer, so a deposed leader cannot advance an
//! operation, and a new leader — or this one after a restart — resumes at the recorded step,
//! which re-derives what is left to do from what it observes (commands carry deterministic
//! ids, so a command already applied is answered from the agent's journal, not re-applied).
//!
//! Cancel: the API moves a running operation to CANCELLING; the engine then runs the
//! workflow's undo and ends it CANCELLED. A step marked as the point of no return sets
//! `point_of_no_return_passed` when it starts; after that, Cancel is refused by the API.
//!
//! Concurrency: one operation per cluster at a time, oldest first; the others wait in
//! Pending with step `Queued` (never interleaved). Node drains are driven by the reconciler's
//! placement (the node's `draining` flag) and are not run here.

pub mod migrate_topic;
pub mod rolling_restart;
pub mod scale_in;
pub mod scale_out;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flotilla_intent_store::{Compare, keys};
use flotilla_proto::v1::{Operation, OperationError, OperationPhase, operation_spec};
use prost::Message;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use crate::cache::Versioned;
use crate::context::Ctx;
use crate::fenced::WriteError;

/// How often the engine looks for work, and how soon a waiting step is run again.
pub const TICK: Duration = Duration::from_secs(1);

/// Longest history kept on an operation.
const HISTORY_MAX: usize = 100;

/// Why a step could not be completed now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    /// Something the step needs is missing or refused; the operation fails with this code.
    #[error("{message}")]
    Failed {
        /// gRPC code.
        code: tonic::Code,
        /// Stable reason.
        reason: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A transient problem (agent disconnected, command timed out): retried.
    #[error("{0}")]
    Retry(String),
}

impl StepError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            StepError::Failed { reason, .. } => reason,
            StepError::Retry(_) => "STEP_RETRY",
        }
    }
}

/// What a step asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: go on to the next step.
    Next,
    /// Not yet: run again after a tick, recording this progress note when it changed.
    Wait(String),
}

/// One step of a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Its name (`OperationStatus.step`).
    pub name: &'static str,
    /// Cancel is refused once this step has started.
    pub point_of_no_return: bool,
}

/// A workflow: its steps, how to run one, and how to undo.
#[tonic::async_trait]
pub trait Workflow: Send + Sync {
    /// The steps, in order.
    fn steps(&self) -> &'static [Step];
    /// Runs step `index` of `op` once; may update `op.status.handles` (persisted with the
    /// outcome).
    async fn run(&self, ctx: &Ctx, op: &mut Operation, index: usize) -> Result<Outcome, StepError>;
    /// Undoes what the steps before the point of no return did (Cancel).
    async fn undo(&self, ctx: &Ctx, op: &mut Operation) -> Result<Outcome, StepError>;
}

fn workflow_of(op: &Operation) -> Option<Box<dyn Workflow>> {
    match op.spec.as_ref()?.kind.as_ref()? {
        operation_spec::Kind::ScaleIn(_) => Some(Box::new(scale_in::ScaleIn)),
        operation_spec::Kind::ScaleOut(_) => Some(Box::new(scale_out::ScaleOut)),
        operation_spec::Kind::MigrateTopic(_) => Some(Box::new(migrate_topic::MigrateTopic)),
        operation_spec::Kind::RollingRestart(_) => Some(Box::new(rolling_restart::RollingRestart)),
        _ => None,
    }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

/// The operation's name (its id), the stem of every command id its steps send.
pub fn op_name(op: &Operation) -> String {
    op.metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

/// Appends a line to the operation's bounded history.
pub fn note(op: &mut Operation, line: impl Into<String>) {
    let st = op.status.get_or_insert_with(Default::default);
    st.history.push(line.into());
    if st.history.len() > HISTORY_MAX {
        let extra = st.history.len() - HISTORY_MAX;
        st.history.drain(..extra);
    }
}

/// Which operations should run now: for each cluster, its oldest unfinished operation that
/// a workflow drives. Pure (unit-tested).
pub fn runnable(ops: &BTreeMap<String, Versioned<Operation>>) -> BTreeSet<String> {
    let mut first: BTreeMap<String, (i64, i32, String)> = BTreeMap::new();
    for (name, v) in ops {
        let op = &v.value;
        let done = op.status.as_ref().is_some_and(|s| s.done);
        if done || workflow_of(op).is_none() {
            continue;
        }
        let cluster = op
            .spec
            .as_ref()
            .map(|s| s.cluster.clone())
            .unwrap_or_default();
        let created = op
            .metadata
            .as_ref()
            .and_then(|m| m.create_time)
            .map(|t| (t.seconds, t.nanos))
            .unwrap_or((0, 0));
        let key = (created.0, created.1, name.clone());
        match first.get(&cluster) {
            Some(k) if *k <= key => {}
            _ => {
                first.insert(cluster, key);
            }
        }
    }
    first.into_values().map(|(_, _, n)| n).collect()
}

/// Starts the engine: while this replica leads, one task per runnable operation.
pub fn spawn(ctx: &Arc<Ctx>) -> JoinHandle<()> {
    let ctx = ctx.clone();
    tokio::spawn(
        async move {
            let mut running: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(TICK) => {}
                }
                running.retain(|_, h| !h.is_finished());
                if ctx.leader.epoch().is_none() {
                    for (_, h) in std::mem::take(&mut running) {
                        h.abort();
                    }
                    continue;
                }
                let want = ctx.cache.read(|st| runnable(&st.operations));
                for name in want {
                    if running.contains_key(&name) {
                        continue;
                    }
                    let c = ctx.clone();
                    let n = name.clone();
                    running.insert(
                        name.clone(),
                        tokio::spawn(
                            async move { drive(&c, &n).await }
                                .instrument(info_span!("operation", operation = %name)),
                        ),
                    );
                }
            }
            for (_, h) in running {
                h.abort();
            }
        }
        .instrument(info_span!("workflow_engine")),
    )
}

/// Writes `op` if its revision is still `rev`; returns the new revision.
async fn record(ctx: &Ctx, name: &str, op: &Operation, rev: i64) -> Result<i64, WriteError> {
    let key = keys::operation(name)?;
    let mut clean = op.clone();
    if let Some(m) = clean.metadata.as_mut() {
        m.etag.clear();
    }
    let resp = ctx
        .commit(
            vec![Compare::ModRevision(key.clone(), rev)],
            vec![(key, Some(clean.encode_to_vec()))],
            vec![],
        )
        .await?;
    Ok(resp.revision)
}

fn load(ctx: &Ctx, name: &str) -> Option<(Operation, i64)> {
    ctx.cache.read(|st| {
        st.operations
            .get(name)
            .map(|v| (v.value.clone(), v.mod_revision))
    })
}

/// Drives one operation until it is done, the leader changes, or a write conflicts (the
/// engine starts it again from the store on its next tick).
async fn drive(ctx: &Ctx, name: &str) {
    let Some((mut op, mut rev)) = load(ctx, name) else {
        return;
    };
    let Some(wf) = workflow_of(&op) else {
        return;
    };
    let steps = wf.steps();
    let epoch = ctx.leader.epoch();
    loop {
        if ctx.leader.epoch() != epoch || epoch.is_none() {
            return;
        }
        // Pick up a Cancel (or any other writer) before each step.
        if let Some((fresh, r)) = load(ctx, name)
            && r != rev
        {
            op = fresh;
            rev = r;
        }
        let st = op.status.clone().unwrap_or_default();
        if st.done {
            return;
        }
        let phase = OperationPhase::try_from(st.phase).unwrap_or(OperationPhase::Pending);
        let before = op.clone();
        let outcome = if phase == OperationPhase::Cancelling {
            match wf.undo(ctx, &mut op).await {
                Ok(Outcome::Next) => {
                    finish(&mut op, OperationPhase::Cancelled, None);
                    note(&mut op, "cancelled: undone");
                    Ok(())
                }
                Ok(Outcome::Wait(why)) => {
                    wait_note(&mut op, why);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            if phase == OperationPhase::Pending {
                begin(&mut op, steps, 0);
            }
            let index = usize::try_from(op.status.as_ref().map_or(0, |s| s.step_index))
                .unwrap_or(0)
                .min(steps.len() - 1);
            match wf.run(ctx, &mut op, index).await {
                Ok(Outcome::Next) => {
                    note(&mut op, format!("{} done", steps[index].name));
                    if index + 1 == steps.len() {
                        finish(&mut op, OperationPhase::Succeeded, None);
                    } else {
                        begin(&mut op, steps, index + 1);
                    }
                    Ok(())
                }
                Ok(Outcome::Wait(why)) => {
                    wait_note(&mut op, why);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        match outcome {
            Ok(()) => {}
            Err(StepError::Retry(why)) => {
                warn!(%why, "step will be retried");
                wait_note(&mut op, format!("retrying: {why}"));
            }
            Err(StepError::Failed {
                code,
                reason,
                message,
            }) => {
                warn!(reason, %message, "operation failed");
                note(&mut op, format!("failed: {message}"));
                finish(
                    &mut op,
                    OperationPhase::Failed,
                    Some(OperationError {
                        code: code as i32,
                        reason: reason.to_string(),
                        message,
                    }),
                );
            }
        }
        if op != before {
            match record(ctx, name, &op, rev).await {
                Ok(r) => rev = r,
                Err(e) => {
                    warn!(error = %e, code = e.code(), "cannot record the operation");
                    return;
                }
            }
            crash_point(&before, &op, steps);
        }
        if op.status.as_ref().is_some_and(|s| s.done) {
            info!("operation done");
            return;
        }
        let changed_step = before.status.as_ref().map(|s| s.step_index)
            != op.status.as_ref().map(|s| s.step_index);
        if !changed_step {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }
}

/// The `workflow-after-step` fail point, for crash tests: configured as
/// `workflow-after-step=return(STEP)` (see [`crate::failpoints`]), the process exits at once
/// after the store recorded that `STEP` finished, as a crash between two steps would.
fn crash_point(before: &Operation, after: &Operation, steps: &[Step]) {
    let (b, a) = (
        before.status.clone().unwrap_or_default(),
        after.status.clone().unwrap_or_default(),
    );
    let running = OperationPhase::Running as i32;
    if a.phase != running && a.phase != OperationPhase::Succeeded as i32 {
        return;
    }
    // A pending operation begins at step 0 within the same pass.
    let from = if b.phase == running { b.step_index } else { 0 };
    let to = if a.done {
        a.step_index.saturating_add(1)
    } else {
        a.step_index
    };
    let Some(Some(want)) = fail::eval("workflow-after-step", |arg| arg) else {
        return;
    };
    for finished in (from..to).filter_map(|i| steps.get(usize::try_from(i).ok()?)) {
        if want == finished.name {
            warn!(
                step = finished.name,
                "fail point workflow-after-step: exiting"
            );
            std::process::exit(crate::failpoints::EXIT_CODE);
        }
    }
}

fn begin(op: &mut Operation, steps: &[Step], index: usize) {
    let st = op.status.get_or_insert_with(Default::default);
    if st.start_time.is_none() {
        st.start_time = Some(now());
    }
    st.phase = OperationPhase::Running as i32;
    st.step = steps[index].name.to_string();
    st.step_index = u32::try_from(index).unwrap_or(u32::MAX);
    st.total_steps = u32::try_from(steps.len()).unwrap_or(u32::MAX);
    st.progress_percent = u32::try_from(index * 100 / steps.len().max(1)).unwrap_or(0);
    if steps[index].point_of_no_return {
        st.point_of_no_return_passed = true;
    }
    let line = format!("step {}/{}: {}", index + 1, steps.len(), steps[index].name);
    note(op, line);
}

/// Records what the current step waits for (the `progress` handle).
fn wait_note(op: &mut Operation, why: String) {
    op.status
        .get_or_insert_with(Default::default)
        .handles
        .insert("progress".to_string(), why);
}

fn finish(op: &mut Operation, phase: OperationPhase, error: Option<OperationError>) {
    let st = op.status.get_or_insert_with(Default::default);
    st.phase = phase as i32;
    st.done = true;
    st.end_time = Some(now());
    if phase == OperationPhase::Succeeded {
        st.progress_percent = 100;
    }
    st.error = error;
    st.handles.remove("progress");
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_proto::v1::{ObjectMeta, OperationSpec, OperationStatus, ScaleInSpec};

    fn op(name: &str, cluster: &str, created: i64, done: bool) -> Versioned<Operation> {
        Versioned {
            value: Operation {
                metadata: Some(ObjectMeta {
                    name: name.into(),
                    create_time: Some(prost_types::Timestamp {
                        seconds: created,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                spec: Some(OperationSpec {
                    cluster: cluster.into(),
                    kind: Some(operation_spec::Kind::ScaleIn(ScaleInSpec::default())),
                }),
                status: Some(OperationStatus {
                    done,
                    ..Default::default()
                }),
            },
            mod_revision: 1,
        }
    }

    #[test]
    fn one_operation_per_cluster_oldest_first() {
        let ops: BTreeMap<String, Versioned<Operation>> = [
            ("op-b", op("op-b", "orders", 20, false)),
            ("op-a", op("op-a", "orders", 10, false)),
            ("op-c", op("op-c", "payments", 30, false)),
            ("op-d", op("op-d", "payments", 5, true)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let r = runnable(&ops);
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            ["op-a".to_string(), "op-c".to_string()]
        );
    }

    #[test]
    fn begin_marks_the_point_of_no_return_and_history() {
        const STEPS: &[Step] = &[
            Step {
                name: "A",
                point_of_no_return: false,
            },
            Step {
                name: "B",
                point_of_no_return: true,
            },
        ];
        let mut o = op("op-a", "orders", 1, false).value;
        begin(&mut o, STEPS, 0);
        let st = o.status.clone().unwrap();
        assert_eq!((st.step.as_str(), st.step_index), ("A", 0));
        assert!(!st.point_of_no_return_passed);
        begin(&mut o, STEPS, 1);
        let st = o.status.clone().unwrap();
        assert!(st.point_of_no_return_passed);
        assert_eq!(st.progress_percent, 50);
        assert_eq!(st.history, ["step 1/2: A", "step 2/2: B"]);
        finish(&mut o, OperationPhase::Succeeded, None);
        assert!(o.status.unwrap().done);
    }
}

//! Scale-out: new broker groups start with the cluster's topics and subscription groups.
//!
//! A new group that lacks the cluster's topics takes no traffic for them (routes list only
//! brokers that have the topic), so capacity added by scaling would sit idle. The RocketMQ
//! operator copies metadata with a hook that runs on *every* broker start; here the copy is
//! one step of an Operation, run once per scale-out:
//!
//! 1. **WaitGroupsReady** — each new group is Ready by the readiness rule (a writable
//!    brokerId 0 registered with every nameserver, replicas caught up).
//! 2. **CopyMetadata** — the source group's master exports its topic and subscription-group
//!    configs (one command, journaled: a retry gets the same snapshot), and every member of
//!    each new group imports them (user topics and groups only). Command ids are derived from
//!    the operation, so a retried or resumed step is answered from the agents' journals and
//!    never applied twice; a later restart of the group copies nothing, because the
//!    operation is done.
//!
//! The reconciler starts the new groups as usual (no existing member is touched); this
//! workflow only adds the copy.

use std::collections::BTreeSet;

use flotilla_proto::agent::v1::{ExportMetadata, command, command_result};
use flotilla_proto::v1::{Operation, operation_spec};
use tracing::info;

use super::scale_in::{ask, is_system_topic, masters, members};
use super::{Outcome, Step, StepError, Workflow, op_name};
use crate::context::Ctx;
use crate::names;

const STEPS: &[Step] = &[
    Step {
        name: "WaitGroupsReady",
        point_of_no_return: false,
    },
    Step {
        name: "CopyMetadata",
        point_of_no_return: false,
    },
];

/// The scale-out workflow.
pub struct ScaleOut;

fn spec_of(op: &Operation) -> (String, Vec<String>, String) {
    let spec = op.spec.clone().unwrap_or_default();
    match spec.kind {
        Some(operation_spec::Kind::ScaleOut(s)) => (spec.cluster, s.groups, s.source_group),
        _ => (spec.cluster, Vec::new(), String::new()),
    }
}

/// The group to copy from: the one named, else the lowest-numbered Ready group that is not
/// new.
pub fn source_group(
    cluster: &str,
    named: &str,
    new: &[String],
    ready: &[(String, bool)],
) -> Option<String> {
    if !named.is_empty() {
        return Some(named.to_string());
    }
    ready
        .iter()
        .filter(|(g, r)| *r && !new.contains(g))
        .filter_map(|(g, _)| names::group_index(cluster, g).map(|i| (i, g)))
        .min()
        .map(|(_, g)| g.clone())
}

/// The exported topic table without the broker's own topics (the cluster's and each
/// group's name, `%RETRY%`, `RMQ_SYS_`, …): a broker refuses to create those.
pub fn user_topics(
    topics_json: &str,
    cluster: &str,
    groups: &BTreeSet<String>,
) -> Result<String, StepError> {
    if topics_json.trim().is_empty() {
        return Ok(String::new());
    }
    let mut v: serde_json::Value =
        serde_json::from_str(topics_json).map_err(|e| StepError::Failed {
            code: tonic::Code::Internal,
            reason: "METADATA_EXPORT_INVALID",
            message: format!("the exported topic table is not JSON: {e}"),
        })?;
    if let Some(table) = v
        .get_mut("topicConfigTable")
        .and_then(serde_json::Value::as_object_mut)
    {
        table.retain(|name, _| !is_system_topic(name, cluster, groups));
    }
    Ok(v.to_string())
}

#[tonic::async_trait]
impl Workflow for ScaleOut {
    fn steps(&self) -> &'static [Step] {
        STEPS
    }

    async fn run(&self, ctx: &Ctx, op: &mut Operation, index: usize) -> Result<Outcome, StepError> {
        let (cluster, groups, named) = spec_of(op);
        let name = op_name(op);
        let ready: Vec<(String, bool)> = ctx.cache.read(|st| {
            st.clusters
                .get(&cluster)
                .and_then(|c| c.value.status.as_ref())
                .map(|s| s.groups.iter().map(|g| (g.name.clone(), g.ready)).collect())
                .unwrap_or_default()
        });
        if index == 0 {
            let waiting: Vec<&String> = groups
                .iter()
                .filter(|g| !ready.iter().any(|(n, r)| n == *g && *r))
                .collect();
            return Ok(if waiting.is_empty() {
                Outcome::Next
            } else {
                Outcome::Wait(format!(
                    "waiting for {} to be Ready",
                    waiting
                        .iter()
                        .map(|g| g.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            });
        }
        let Some(source) = source_group(&cluster, &named, &groups, &ready) else {
            return Ok(Outcome::Wait("no Ready source group to copy from".into()));
        };
        let source_set: BTreeSet<String> = [source.clone()].into();
        let new_set: BTreeSet<String> = groups.iter().cloned().collect();
        let (source_members, targets) = ctx.cache.read(|st| {
            (
                members(st, &cluster, &source_set),
                members(st, &cluster, &new_set),
            )
        });
        let Some(master) = masters(&source_members).into_iter().next() else {
            return Err(StepError::Failed {
                code: tonic::Code::FailedPrecondition,
                reason: "SCALE_SOURCE_NOT_FOUND",
                message: format!("source group {source} has no members"),
            });
        };
        let export = ask(
            ctx,
            &master,
            format!("{name}-export-{}", master.instance),
            command::Action::ExportMetadata(ExportMetadata::default()),
        )
        .await?;
        let Some(command_result::Result::Metadata(mut meta)) = export else {
            return Err(StepError::Retry(format!(
                "{}: no metadata in the export",
                master.instance
            )));
        };
        let all_groups: BTreeSet<String> = ready.iter().map(|(g, _)| g.clone()).collect();
        meta.topics_json = user_topics(&meta.topics_json, &cluster, &all_groups)?;
        for t in &targets {
            ask(
                ctx,
                t,
                format!("{name}-import-{}", t.instance),
                command::Action::ImportMetadata(meta.clone()),
            )
            .await?;
            op.status
                .get_or_insert_with(Default::default)
                .handles
                .insert(format!("copied/{}", t.instance), source.clone());
        }
        info!(%source, targets = targets.len(), "metadata copied to the new groups");
        Ok(Outcome::Next)
    }

    async fn undo(&self, _ctx: &Ctx, _op: &mut Operation) -> Result<Outcome, StepError> {
        // Nothing to give back: the copy only adds topics and groups to the new groups,
        // which stay (shrinking them is a scale-in).
        Ok(Outcome::Next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_user_topics_are_copied() {
        let groups: BTreeSet<String> = ["grow-0".to_string(), "grow-1".to_string()].into();
        let json = r#"{"topicConfigTable":{"orders":{"topicName":"orders"},"grow":{},"grow-0":{},"%RETRY%cg":{},"TBW102":{}},"dataVersion":{"counter":3}}"#;
        let out: serde_json::Value =
            serde_json::from_str(&user_topics(json, "grow", &groups).unwrap()).unwrap();
        let names: Vec<&String> = out["topicConfigTable"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(names, ["orders"]);
        assert_eq!(out["dataVersion"]["counter"], 3);
        assert!(user_topics("not json", "grow", &groups).is_err());
    }

    #[test]
    fn the_source_is_named_or_the_lowest_ready_old_group() {
        let ready = vec![
            ("c-0".to_string(), false),
            ("c-1".to_string(), true),
            ("c-10".to_string(), true),
            ("c-2".to_string(), true),
        ];
        let new = vec!["c-2".to_string()];
        assert_eq!(source_group("c", "", &new, &ready).as_deref(), Some("c-1"));
        assert_eq!(
            source_group("c", "c-0", &new, &ready).as_deref(),
            Some("c-0")
        );
        assert_eq!(
            source_group(
                "c",
                "",
                &["c-1".into(), "c-10".into(), "c-2".into()],
                &ready
            ),
            None
        );
    }
}

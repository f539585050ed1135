//! `flotilla cordon|uncordon|drain NODE` and `flotilla delete clusters|nodes|members NAME`:
//! the node and cluster lifecycle commands kubectl users reach for, on the control plane's
//! NodeService and ClusterService. Drain prints the operation that moves the node's
//! instances away.
//!
//! Deleting a node forgets a machine that is gone for good; the control plane refuses it
//! while instances are placed there or its agent is connected, and says what to do first.
//! Members cannot be deleted: a member exists because its cluster's spec asks for it, so
//! deleting one would only see it started again. The command says which command does what
//! the operator most likely meant (scale in, restart, move it off its node).

use flotilla_proto::v1::{
    CordonNodeRequest, DeleteClusterRequest, DeleteNodeRequest, DrainNodeRequest,
    UncordonNodeRequest,
};

use crate::api::CmdError;
use crate::client;

/// What to do with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    /// No new instances are placed on it.
    Cordon,
    /// Placement may use it again.
    Uncordon,
    /// Cordon, then move its instances elsewhere.
    Drain,
}

/// Runs a node action and prints what happened.
pub async fn run(server: &str, action: NodeAction, name: &str) -> Result<(), CmdError> {
    let mut c = client::nodes(server).await?;
    match action {
        NodeAction::Cordon => {
            c.cordon_node(CordonNodeRequest {
                name: name.to_string(),
                request_id: String::new(),
            })
            .await?;
            println!("node {name} cordoned");
        }
        NodeAction::Uncordon => {
            c.uncordon_node(UncordonNodeRequest {
                name: name.to_string(),
                request_id: String::new(),
            })
            .await?;
            println!("node {name} uncordoned");
        }
        NodeAction::Drain => {
            let op = c
                .drain_node(DrainNodeRequest {
                    name: name.to_string(),
                    request_id: String::new(),
                })
                .await?
                .into_inner();
            let op_name = op.metadata.map(|m| m.name).unwrap_or_default();
            println!("node {name} draining (operation {op_name})");
        }
    }
    Ok(())
}

/// Deletes a cluster (its members are stopped by the reconciler).
pub async fn delete_cluster(server: &str, name: &str) -> Result<(), CmdError> {
    let mut c = client::clusters(server).await?;
    c.delete_cluster(DeleteClusterRequest {
        name: name.to_string(),
        etag: String::new(),
        request_id: String::new(),
    })
    .await?;
    println!("cluster {name} deleted");
    Ok(())
}

/// Deletes a node record (a machine gone for good).
pub async fn delete_node(server: &str, name: &str) -> Result<(), CmdError> {
    let mut c = client::nodes(server).await?;
    c.delete_node(DeleteNodeRequest {
        name: name.to_string(),
        request_id: String::new(),
    })
    .await?;
    println!("node {name} deleted");
    Ok(())
}

/// `flotilla delete members NAME`: refused before anything is sent, naming what to do.
pub fn refuse_member_delete(name: &str) -> Result<(), CmdError> {
    Err(CmdError::invalid(
        "delete members",
        member_delete_advice(name),
    ))
}

/// What to do instead of deleting member `name`.
fn member_delete_advice(name: &str) -> String {
    format!(
        "members are not deleted one by one: {name} runs because its cluster's spec asks for \
         it, and would be started again. To remove its broker group, lower \
         spec.broker.groups and `flotilla apply` (a scale-in operation drains it first); to \
         restart it, `flotilla restart cluster CLUSTER --member {name}`; to move it off its \
         machine, `flotilla drain NODE`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleting_a_member_is_refused_with_what_to_do_instead() {
        let e = refuse_member_delete("orders-0-1").unwrap_err();
        assert_eq!(
            (e.code().as_str(), e.exit_code()),
            ("CLI_INVALID_ARGUMENT", 2)
        );
        let text = e.to_string();
        for hint in [
            "orders-0-1",
            "spec.broker.groups",
            "flotilla restart",
            "flotilla drain",
        ] {
            assert!(text.contains(hint), "{hint} missing from: {text}");
        }
    }
}

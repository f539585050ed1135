//! `flotilla cordon|uncordon|drain NODE` and `flotilla delete cluster NAME`: the node and
//! cluster lifecycle commands kubectl users reach for, on the control plane's NodeService
//! and ClusterService. Drain prints the operation that moves the node's instances away.

use flotilla_proto::v1::{
    CordonNodeRequest, DeleteClusterRequest, DrainNodeRequest, UncordonNodeRequest,
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

//! `flotilla get clusters|nodes`: one line per resource, the columns an operator looks at
//! first (phase, ready members, nameserver address; node phase, address, instances).

use flotilla_proto::v1::{
    Cluster, ClusterPhase, ListClustersRequest, ListNodesRequest, Node, NodePhase,
};

use crate::client::{self, ClientError};

/// Listing failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The control plane refused.
    #[error("control plane: {0}")]
    Api(#[from] tonic::Status),
    /// The control plane could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl GetError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Api(_) => "GET_API_ERROR",
            Self::Client(e) => e.code(),
        }
    }
}

fn phase_name(p: i32) -> &'static str {
    match ClusterPhase::try_from(p) {
        Ok(ClusterPhase::Pending) => "Pending",
        Ok(ClusterPhase::Provisioning) => "Provisioning",
        Ok(ClusterPhase::Running) => "Running",
        Ok(ClusterPhase::Degraded) => "Degraded",
        Ok(ClusterPhase::Deleting) => "Deleting",
        _ => "Unknown",
    }
}

/// One line describing a cluster.
pub fn cluster_line(c: &Cluster) -> String {
    let name = c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
    let st = c.status.clone().unwrap_or_default();
    let ready = st.members.iter().filter(|m| m.ready).count();
    format!(
        "{name:<20} {:<13} {:>3}/{:<3} {}",
        phase_name(st.phase),
        ready,
        st.members.len(),
        st.namesrv_addr
    )
}

/// Prints every cluster.
pub async fn clusters(server: &str) -> Result<(), GetError> {
    let mut c = client::clusters(server).await?;
    let mut token = String::new();
    println!("{:<20} {:<13} {:>7} NAMESRV", "NAME", "PHASE", "READY");
    loop {
        let resp = c
            .list_clusters(ListClustersRequest {
                page_size: 100,
                page_token: token.clone(),
                label_selector: String::new(),
            })
            .await?
            .into_inner();
        for cl in &resp.clusters {
            println!("{}", cluster_line(cl));
        }
        if resp.next_page_token.is_empty() {
            break;
        }
        token = resp.next_page_token;
    }
    Ok(())
}

fn node_line(n: &Node) -> String {
    let name = n.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
    let st = n.status.clone().unwrap_or_default();
    let phase = match NodePhase::try_from(st.phase) {
        Ok(NodePhase::Ready) => "Ready",
        Ok(NodePhase::NotReady) => "NotReady",
        _ => "Unknown",
    };
    let cordoned = n.spec.as_ref().is_some_and(|s| s.cordoned);
    format!(
        "{name:<12} {:<9} {:<16} {:<8} {}{}",
        phase,
        st.advertise_address,
        st.limits_mechanism,
        st.instances.join(","),
        if cordoned { " (cordoned)" } else { "" }
    )
}

/// Prints every node.
pub async fn nodes(server: &str) -> Result<(), GetError> {
    let mut c = client::nodes(server).await?;
    let mut token = String::new();
    println!(
        "{:<12} {:<9} {:<16} {:<8} INSTANCES",
        "NAME", "PHASE", "ADDRESS", "LIMITS"
    );
    loop {
        let resp = c
            .list_nodes(ListNodesRequest {
                page_size: 100,
                page_token: token.clone(),
                label_selector: String::new(),
            })
            .await?
            .into_inner();
        for n in &resp.nodes {
            println!("{}", node_line(n));
        }
        if resp.next_page_token.is_empty() {
            break;
        }
        token = resp.next_page_token;
    }
    Ok(())
}

//! DeleteNode, DeleteOperation and WatchNodes over real gRPC with fake agents: what is
//! refused (and how it reads: FAILED_PRECONDITION, a stable reason, the field and what to
//! do), what is removed, and what a node watch sees. Node ids that are Kubernetes Node
//! names (DNS-1123 subdomains with dots) register and are served.

// Helpers here may unwrap like the tests themselves (clippy.toml only exempts #[test] fns).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flotilla_proto::v1::{
    BrokerMode, CancelOperationRequest, CordonNodeRequest, DeleteNodeRequest,
    DeleteOperationRequest, GetNodeRequest, GetOperationRequest, Node, RestartClusterRequest,
    WatchEventType, WatchNodesRequest, WatchNodesResponse,
};
use tonic::Code;
use tonic_types::StatusExt;

fn delete_node(name: &str, request_id: &str) -> DeleteNodeRequest {
    DeleteNodeRequest {
        name: name.into(),
        request_id: request_id.into(),
    }
}

fn delete_op(name: &str) -> DeleteOperationRequest {
    DeleteOperationRequest {
        name: name.into(),
        request_id: String::new(),
    }
}

/// The PreconditionFailure (type, subject) pairs of a refusal.
fn preconditions(s: &tonic::Status) -> Vec<(String, String)> {
    s.get_details_precondition_failure()
        .map(|p| {
            p.violations
                .into_iter()
                .map(|v| (v.r#type, v.subject))
                .collect()
        })
        .unwrap_or_default()
}

fn instances(n: &Node) -> Vec<String> {
    n.status
        .as_ref()
        .map(|s| s.instances.clone())
        .unwrap_or_default()
}

async fn wait_disconnected(h: &Harness, node: &str) {
    wait_until("the agent's session ended", || async {
        (!h.cp.ctx.sessions.is_connected(node)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_node_is_deleted_only_once_empty_and_disconnected() {
    let h = start_embedded().await;
    let node = "ip-10-0-0-1.ec2.internal";
    let agent = h.agent(node).await;
    let mut nodes = h.nodes();

    // Connected, nothing placed: stop the agent first.
    let e = nodes.delete_node(delete_node(node, "")).await.unwrap_err();
    let md = assert_error(&e, Code::FailedPrecondition, "NODE_IN_USE");
    assert_eq!(md.get("node").map(String::as_str), Some(node));
    assert_eq!(md.get("field").map(String::as_str), Some("name"));
    assert_eq!(
        preconditions(&e),
        vec![("AGENT_CONNECTED".to_string(), format!("name: nodes/{node}"))]
    );
    assert!(e.message().contains("stop the agent"), "{}", e.message());

    // Instances placed: drain it first, named in the refusal.
    create_cluster(&h, cluster("orders", 1, 1, 1, BrokerMode::MasterSlave)).await;
    settle(&h).await;
    let placed = wait_until("instances placed on the node", || async {
        let n = h
            .nodes()
            .get_node(GetNodeRequest { name: node.into() })
            .await
            .unwrap()
            .into_inner();
        let i = instances(&n);
        (!i.is_empty()).then_some(i)
    })
    .await;
    let e = nodes.delete_node(delete_node(node, "")).await.unwrap_err();
    assert_error(&e, Code::FailedPrecondition, "NODE_IN_USE");
    assert_eq!(preconditions(&e)[0].0, "INSTANCES_PLACED");
    assert!(
        e.message().contains(&placed[0]) && e.message().contains("flotilla drain"),
        "{}",
        e.message()
    );

    // Deleting the cluster empties the node; with the agent gone the record goes.
    h.clusters()
        .delete_cluster(delete_req("orders", "", ""))
        .await
        .unwrap();
    wait_until("the node emptied", || async {
        let n = h
            .nodes()
            .get_node(GetNodeRequest { name: node.into() })
            .await
            .ok()?
            .into_inner();
        instances(&n).is_empty().then_some(())
    })
    .await;
    agent.close();
    wait_disconnected(&h, node).await;
    let gone = nodes
        .delete_node(delete_node(node, "del-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.metadata.as_ref().unwrap().name, node);
    // A repeat of the request gets the same answer; a new one finds nothing.
    let again = nodes
        .delete_node(delete_node(node, "del-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, gone);
    let e = nodes.delete_node(delete_node(node, "")).await.unwrap_err();
    assert_error(&e, Code::NotFound, "NODE_NOT_FOUND");
    let e = nodes
        .get_node(GetNodeRequest { name: node.into() })
        .await
        .unwrap_err();
    assert_error(&e, Code::NotFound, "NODE_NOT_FOUND");
    assert!(
        h.cp.ctx
            .cache
            .read(|st| !st.nodes.contains_key(node) && !st.desired.contains_key(node)),
        "record and desired state both removed"
    );
    // An agent that comes back registers again.
    let _back = h.agent(node).await;
    nodes
        .get_node(GetNodeRequest { name: node.into() })
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_node_names_are_invalid_with_the_field() {
    let h = start_embedded().await;
    for bad in ["Node-1", "a..b", "-a", "a/b"] {
        let e = h
            .nodes()
            .delete_node(delete_node(bad, ""))
            .await
            .unwrap_err();
        assert_error(&e, Code::InvalidArgument, "INVALID_REQUEST");
        assert_eq!(violated_fields(&e), ["name"], "{bad}");
    }
}

#[tokio::test]
async fn an_operation_is_deleted_only_once_done() {
    let h = start_embedded().await;
    let agent = h.agent("node-a").await;
    create_cluster(&h, cluster("orders", 1, 1, 1, BrokerMode::MasterSlave)).await;
    settle(&h).await;
    // An agent that stops reporting never shows a restarted member: the roll keeps running.
    agent.pause_reports(true);
    let op = h
        .clusters()
        .restart_cluster(RestartClusterRequest {
            name: "orders".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let name = op.metadata.unwrap().name;
    let mut ops = h.operations();
    let e = ops.delete_operation(delete_op(&name)).await.unwrap_err();
    let md = assert_error(&e, Code::FailedPrecondition, "OPERATION_NOT_DONE");
    assert_eq!(md.get("operation"), Some(&name));
    assert!(e.message().contains("cancel it first"), "{}", e.message());
    assert_eq!(
        preconditions(&e),
        vec![("NOT_DONE".to_string(), format!("name: operations/{name}"))]
    );
    // Cancelled (the engine undoes it), it is done and can go.
    ops.cancel_operation(CancelOperationRequest {
        name: name.clone(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    let deleted = wait_until("the cancelled operation deleted", || {
        let mut ops = h.operations();
        let name = name.clone();
        async move {
            match ops.delete_operation(delete_op(&name)).await {
                Ok(r) => Some(r.into_inner()),
                Err(e) => {
                    assert_error(&e, Code::FailedPrecondition, "OPERATION_NOT_DONE");
                    None
                }
            }
        }
    })
    .await;
    assert!(deleted.status.unwrap().done);
    let e = ops
        .get_operation(GetOperationRequest { name: name.clone() })
        .await
        .unwrap_err();
    assert_error(&e, Code::NotFound, "OPERATION_NOT_FOUND");
    let e = ops.delete_operation(delete_op(&name)).await.unwrap_err();
    assert_error(&e, Code::NotFound, "OPERATION_NOT_FOUND");
    agent.pause_reports(false);
}

/// The next node event of `stream` that is not a bookmark.
async fn next_event(stream: &mut tonic::Streaming<WatchNodesResponse>) -> (WatchEventType, Node) {
    loop {
        let ev = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("a node event in time")
            .unwrap()
            .expect("the stream stays open");
        let t = WatchEventType::try_from(ev.r#type).unwrap();
        if t != WatchEventType::Bookmark {
            return (t, ev.node.unwrap());
        }
    }
}

/// Reads events until `want` holds for one; returns it. Every event must be node-w's (the
/// watch is of that node only, and node-x changes too).
async fn until_event(
    stream: &mut tonic::Streaming<WatchNodesResponse>,
    want: impl Fn(WatchEventType, &Node) -> bool,
) -> Node {
    loop {
        let (t, n) = next_event(stream).await;
        assert_eq!(n.metadata.as_ref().unwrap().name, "node-w", "{n:?}");
        if want(t, &n) {
            return n;
        }
    }
}

#[tokio::test]
async fn a_node_watch_sees_cordon_placement_and_deletion() {
    let h = start_embedded().await;
    let agent = h.agent("node-w").await;
    let _other = h.agent("node-x").await;
    let mut stream = h
        .nodes()
        .watch_nodes(WatchNodesRequest {
            revision: 0,
            name: "node-w".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (t, first) = next_event(&mut stream).await;
    assert_eq!(t, WatchEventType::Put);
    assert_eq!(first.metadata.as_ref().unwrap().name, "node-w");

    h.nodes()
        .cordon_node(CordonNodeRequest {
            name: "node-w".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    until_event(&mut stream, |t, n| {
        t == WatchEventType::Put && n.spec.as_ref().is_some_and(|s| s.cordoned)
    })
    .await;
    h.nodes()
        .uncordon_node(flotilla_proto::v1::UncordonNodeRequest {
            name: "node-w".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    // A placement is a change of the node's desired state, not of its record; two members
    // of one group on two nodes put one on node-w.
    create_cluster(&h, cluster("orders", 1, 1, 2, BrokerMode::MasterSlave)).await;
    let placed = until_event(&mut stream, |_, n| !instances(n).is_empty()).await;
    assert!(
        instances(&placed).iter().all(|i| i.starts_with("orders-")),
        "{placed:?}"
    );
    h.clusters()
        .delete_cluster(delete_req("orders", "", ""))
        .await
        .unwrap();
    until_event(&mut stream, |_, n| instances(n).is_empty()).await;
    agent.close();
    wait_disconnected(&h, "node-w").await;
    h.nodes()
        .delete_node(delete_node("node-w", ""))
        .await
        .unwrap();
    let gone = until_event(&mut stream, |t, _| t == WatchEventType::Delete).await;
    assert_eq!(gone.metadata.unwrap().name, "node-w");
}

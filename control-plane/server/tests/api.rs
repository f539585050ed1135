//! The public API over real gRPC: validation (field paths in BadRequest), etags (ABORTED),
//! request-id idempotency, NOT_FOUND, and stable ErrorInfo reasons.

// Helpers here may unwrap like the tests themselves (clippy.toml only exempts #[test] fns).
#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Debug;
use std::future::Future;

use common::*;
use flotilla_proto::v1::{
    BrokerMode, CancelOperationRequest, Cluster, CordonNodeRequest, CreateClusterRequest,
    DeleteClusterRequest, DrainNodeRequest, GetClusterRequest, GetNodeRequest, GetOperationRequest,
    ListClustersRequest, ListNodesRequest, MasterRole, Operation, Placement, Resources,
    ScaleSource, Storage, UpdateClusterRequest, UpdateClusterResponse, WaitOperationRequest,
    WatchClustersRequest, operation_spec, storage::Mode,
};
use tonic::{Code, Response, Status};

fn good(name: &str) -> Cluster {
    cluster(name, 1, 2, 2, BrokerMode::MasterSlave)
}

/// Sends `req` twice through `call`, the second after the first has finished: both must
/// succeed with the same answer, which is returned.
async fn twice<Req, T, Fut>(req: Req, call: impl Fn(Req) -> Fut) -> T
where
    Req: Clone,
    T: PartialEq + Debug,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let first = call(req.clone()).await.expect("first call").into_inner();
    let again = call(req).await.expect("a repeat succeeds").into_inner();
    assert_eq!(again, first, "a repeat got another answer");
    first
}

/// Sends `copies` of `req` through `call` at once (a client retrying while its first call is
/// in flight): every copy must succeed with the same answer, which is returned.
async fn at_once<Req, T, Fut>(copies: usize, req: Req, call: impl Fn(Req) -> Fut) -> T
where
    Req: Clone,
    T: PartialEq + Debug,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let results = futures::future::join_all((0..copies).map(|_| call(req.clone()))).await;
    let mut answers = results
        .into_iter()
        .map(|r| r.expect("every repeat succeeds").into_inner());
    let first = answers.next().expect("at least one call");
    for a in answers {
        assert_eq!(a, first, "a concurrent repeat got another answer");
    }
    first
}

async fn create(h: &Harness, r: CreateClusterRequest) -> Result<Response<Cluster>, Status> {
    h.clusters().create_cluster(r).await
}

async fn update(
    h: &Harness,
    r: UpdateClusterRequest,
) -> Result<Response<UpdateClusterResponse>, Status> {
    h.clusters().update_cluster(r).await
}

async fn delete(h: &Harness, r: DeleteClusterRequest) -> Result<Response<Cluster>, Status> {
    h.clusters().delete_cluster(r).await
}

async fn cancel(h: &Harness, r: CancelOperationRequest) -> Result<Response<Operation>, Status> {
    h.operations().cancel_operation(r).await
}

type Mutate = Box<dyn Fn(&mut Cluster)>;

/// One bad field per case, and the field path the error must name.
fn invalid_cases() -> Vec<(Mutate, &'static str)> {
    vec![
        (
            Box::new(|c| c.metadata.as_mut().unwrap().name = "Bad_Name".into()),
            "cluster.metadata.name",
        ),
        (
            Box::new(|c| c.metadata.as_mut().unwrap().name.clear()),
            "cluster.metadata.name",
        ),
        (
            Box::new(|c| {
                c.metadata
                    .as_mut()
                    .unwrap()
                    .labels
                    .insert("team".into(), "no spaces allowed".into());
            }),
            "cluster.metadata.labels.team",
        ),
        (Box::new(|c| c.spec = None), "cluster.spec"),
        (
            Box::new(|c| c.spec.as_mut().unwrap().nameserver = None),
            "cluster.spec.nameserver",
        ),
        (
            Box::new(|c| {
                c.spec
                    .as_mut()
                    .unwrap()
                    .nameserver
                    .as_mut()
                    .unwrap()
                    .replicas = 0
            }),
            "cluster.spec.nameserver.replicas",
        ),
        (
            Box::new(|c| c.spec.as_mut().unwrap().nameserver.as_mut().unwrap().port = 70_000),
            "cluster.spec.nameserver.port",
        ),
        (
            Box::new(|c| c.spec.as_mut().unwrap().broker = None),
            "cluster.spec.broker",
        ),
        (
            Box::new(|c| broker_mut(c).groups = 65),
            "cluster.spec.broker.groups",
        ),
        (
            Box::new(|c| broker_mut(c).replicas_per_group = 0),
            "cluster.spec.broker.replicas_per_group",
        ),
        (
            Box::new(|c| broker_mut(c).mode = 0),
            "cluster.spec.broker.mode",
        ),
        (
            Box::new(|c| broker_mut(c).mode = 42),
            "cluster.spec.broker.mode",
        ),
        (
            Box::new(|c| {
                let b = broker_mut(c);
                b.mode = BrokerMode::Dledger as i32;
                b.replicas_per_group = 4;
            }),
            "cluster.spec.broker.replicas_per_group",
        ),
        (
            Box::new(|c| broker_mut(c).master_role = 9),
            "cluster.spec.broker.master_role",
        ),
        (
            Box::new(|c| {
                let b = broker_mut(c);
                b.master_role = MasterRole::SyncMaster as i32;
                b.in_sync_replicas = 3;
            }),
            "cluster.spec.broker.in_sync_replicas",
        ),
        (
            Box::new(|c| {
                broker_mut(c)
                    .config
                    .insert("namesrvAddr".into(), "x:1".into());
            }),
            "cluster.spec.broker.config.namesrvAddr",
        ),
        (
            Box::new(|c| {
                broker_mut(c)
                    .config
                    .insert("deleteWhen".into(), "25".into());
            }),
            "cluster.spec.broker.config.deleteWhen",
        ),
        (
            Box::new(|c| {
                broker_mut(c).resources = Some(Resources {
                    memory_mib: 64,
                    cpu_millis: 0,
                });
            }),
            "cluster.spec.broker.resources.memory_mib",
        ),
        (
            Box::new(|c| {
                broker_mut(c).storage = Some(Storage {
                    mode: Mode::HostPath as i32,
                    host_path: String::new(),
                });
            }),
            "cluster.spec.broker.storage.host_path",
        ),
        (
            Box::new(|c| {
                broker_mut(c).storage = Some(Storage {
                    mode: 17,
                    host_path: String::new(),
                });
            }),
            "cluster.spec.broker.storage.mode",
        ),
        (
            Box::new(|c| broker_mut(c).port = 2),
            "cluster.spec.broker.port",
        ),
        (
            Box::new(|c| c.spec.as_mut().unwrap().version = "latest".into()),
            "cluster.spec.version",
        ),
        (
            Box::new(|c| {
                c.spec.as_mut().unwrap().scale_source = Some(ScaleSource {
                    group: "other-0".into(),
                });
            }),
            "cluster.spec.scale_source.group",
        ),
        (
            Box::new(|c| {
                c.spec.as_mut().unwrap().placement = Some(Placement {
                    node_selector: Default::default(),
                    spread: 99,
                });
            }),
            "cluster.spec.placement.spread",
        ),
    ]
}

#[tokio::test]
async fn each_invalid_field_is_named_in_bad_request() {
    let h = start_embedded().await;
    let mut client = h.clusters();
    for (mutate, field) in invalid_cases() {
        let mut c = good("orders");
        mutate(&mut c);
        // Create and validate-only create.
        for validate_only in [false, true] {
            let mut req = create_req(c.clone(), "");
            req.validate_only = validate_only;
            let err = client.create_cluster(req).await.unwrap_err();
            assert_error(&err, Code::InvalidArgument, "INVALID_SPEC");
            assert_eq!(
                violated_fields(&err),
                vec![field.to_string()],
                "case {field}"
            );
        }
    }
    // Several bad fields: every one is reported at once.
    let mut c = good("orders");
    broker_mut(&mut c).groups = 0;
    c.spec.as_mut().unwrap().version = "x".into();
    let err = client
        .create_cluster(create_req(c, "has space"))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        [
            "cluster.spec.broker.groups",
            "cluster.spec.version",
            "request_id"
        ]
    );
    // Nothing was stored.
    let listed = client
        .list_clusters(ListClustersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.clusters.is_empty());

    // Updates are validated the same way, plus etag syntax and immutable fields.
    let created = client
        .create_cluster(create_req(good("orders"), ""))
        .await
        .unwrap()
        .into_inner();
    for (mutate, field) in invalid_cases()
        .into_iter()
        .filter(|(_, f)| *f != "cluster.metadata.name")
    {
        let mut c = created.clone();
        mutate(&mut c);
        let err = client.update_cluster(update_req(c, "")).await.unwrap_err();
        assert_error(&err, Code::InvalidArgument, "INVALID_SPEC");
        assert_eq!(
            violated_fields(&err),
            vec![field.to_string()],
            "update {field}"
        );
    }
    let mut c = created.clone();
    c.metadata.as_mut().unwrap().etag = "not-a-revision".into();
    let err = client.update_cluster(update_req(c, "")).await.unwrap_err();
    assert_eq!(violated_fields(&err), ["cluster.metadata.etag"]);
    let mut c = created.clone();
    c.metadata.as_mut().unwrap().etag.clear();
    broker_mut(&mut c).mode = BrokerMode::Dledger as i32;
    broker_mut(&mut c).replicas_per_group = 3;
    let err = client.update_cluster(update_req(c, "")).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_SPEC");
    assert_eq!(violated_fields(&err), ["cluster.spec.broker.mode"]);

    // Request fields of the other RPCs: INVALID_REQUEST naming each bad field.
    let cases: Vec<(&str, Status, &[&str])> = vec![
        (
            "GetCluster",
            client
                .get_cluster(GetClusterRequest {
                    name: "UPPER".into(),
                })
                .await
                .unwrap_err(),
            &["name"],
        ),
        (
            "ListClusters",
            client
                .list_clusters(ListClustersRequest {
                    page_size: 5000,
                    page_token: "zz".into(),
                    label_selector: "novalue".into(),
                })
                .await
                .unwrap_err(),
            &["label_selector", "page_size", "page_token"],
        ),
        (
            "DeleteCluster",
            client
                .delete_cluster(delete_req("orders", "-3", ""))
                .await
                .unwrap_err(),
            &["etag"],
        ),
        (
            "WatchClusters",
            client
                .watch_clusters(WatchClustersRequest {
                    revision: -1,
                    name: String::new(),
                })
                .await
                .unwrap_err(),
            &["revision"],
        ),
        (
            "ListNodes",
            h.nodes()
                .list_nodes(ListNodesRequest {
                    page_size: -1,
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            &["page_size"],
        ),
        (
            "WaitOperation",
            h.operations()
                .wait_operation(WaitOperationRequest {
                    name: "op-1".into(),
                    timeout: Some(prost_types::Duration {
                        seconds: 3600,
                        nanos: 0,
                    }),
                })
                .await
                .unwrap_err(),
            &["timeout"],
        ),
    ];
    for (rpc, err, want) in cases {
        assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST");
        let mut fields = violated_fields(&err);
        fields.sort();
        assert_eq!(fields, want, "{rpc}");
    }
}

#[tokio::test]
async fn stale_etags_are_aborted() {
    let h = start_embedded().await;
    let mut client = h.clusters();
    client
        .create_cluster(create_req(good("orders"), ""))
        .await
        .unwrap();
    settle(&h).await;
    let current = h.get_cluster("orders").await;
    let etag = current.metadata.as_ref().unwrap().etag.clone();

    // An update with the current etag succeeds and moves the etag.
    let mut c = current.clone();
    broker_mut(&mut c)
        .config
        .insert("fileReservedTime".into(), "48".into());
    let updated = client
        .update_cluster(update_req(c.clone(), ""))
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    let new_etag = updated.metadata.as_ref().unwrap().etag.clone();
    assert_ne!(new_etag, etag);
    assert_eq!(updated.metadata.as_ref().unwrap().generation, 2);

    // The old etag is stale now: update and delete are ABORTED and change nothing.
    let err = client.update_cluster(update_req(c, "")).await.unwrap_err();
    let md = assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    assert!(md.contains_key("current_etag"), "{md:?}");
    let err = client
        .delete_cluster(delete_req("orders", &etag, ""))
        .await
        .unwrap_err();
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    settle(&h).await;
    let m = h.get_cluster("orders").await.metadata.unwrap();
    assert_eq!(m.generation, 2);
    assert!(m.delete_time.is_none());

    // Delete with the current etag works.
    let deleted = client
        .delete_cluster(delete_req("orders", &m.etag, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.metadata.unwrap().delete_time.is_some());
}

#[tokio::test]
async fn repeated_request_ids_return_the_first_result() {
    let h = start_embedded().await;
    let mut client = h.clusters();
    // Create: the repeat is not ALREADY_EXISTS.
    twice(create_req(good("orders"), "create-1"), |r| create(&h, r)).await;
    // Without the request id the same create is a conflict.
    let err = client
        .create_cluster(create_req(good("orders"), ""))
        .await
        .unwrap_err();
    let md = assert_error(&err, Code::AlreadyExists, "CLUSTER_ALREADY_EXISTS");
    assert_eq!(md["cluster"], "orders");

    // Update: the repeat returns the first response and bumps nothing.
    settle(&h).await;
    let mut c = h.get_cluster("orders").await;
    broker_mut(&mut c).groups = 3;
    let u1 = twice(update_req(c, "update-1"), |r| update(&h, r)).await;
    assert_eq!(
        u1.cluster
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .generation,
        2
    );
    settle(&h).await;
    let stored = h.get_cluster("orders").await;
    assert_eq!(
        stored.metadata.as_ref().unwrap().generation,
        2,
        "the repeat acted again"
    );

    // Scale-in: the operation created by the first call is returned, not a second one.
    let mut c = stored.clone();
    broker_mut(&mut c).groups = 1;
    let s1 = twice(update_req(c, "scale-in-1"), |r| update(&h, r)).await;
    let op_name = s1.operation.unwrap().metadata.unwrap().name;
    // (The earlier growth to 3 groups started a scale-out; the repeat added no scale-in.)
    let scale_ins: Vec<String> = h
        .all_operations()
        .await
        .into_iter()
        .filter(|o| {
            matches!(
                o.spec.as_ref().and_then(|s| s.kind.as_ref()),
                Some(operation_spec::Kind::ScaleIn(_))
            )
        })
        .filter_map(|o| o.metadata.map(|m| m.name))
        .collect();
    assert_eq!(scale_ins, std::slice::from_ref(&op_name));

    // Cancel (a repeated cancel of a done operation is not refused) and delete, repeated.
    let cancel_req = CancelOperationRequest {
        name: op_name.clone(),
        request_id: "cancel-1".into(),
    };
    twice(cancel_req, |r| cancel(&h, r)).await;
    twice(delete_req("orders", "", "delete-1"), |r| delete(&h, r)).await;

    // A request id belongs to one method.
    let err = client
        .create_cluster(create_req(good("other"), "delete-1"))
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "REQUEST_ID_REUSED");
}

#[tokio::test]
async fn unknown_resources_are_not_found() {
    let h = start_embedded().await;
    let mut clusters = h.clusters();
    let mut nodes = h.nodes();
    let mut ops = h.operations();
    let cases: Vec<(&str, Status, &str, &str)> = vec![
        (
            "GetCluster",
            clusters
                .get_cluster(GetClusterRequest {
                    name: "nope".into(),
                })
                .await
                .unwrap_err(),
            "CLUSTER_NOT_FOUND",
            "cluster",
        ),
        (
            "UpdateCluster",
            clusters
                .update_cluster(update_req(good("nope"), ""))
                .await
                .unwrap_err(),
            "CLUSTER_NOT_FOUND",
            "cluster",
        ),
        (
            "DeleteCluster",
            clusters
                .delete_cluster(delete_req("nope", "", ""))
                .await
                .unwrap_err(),
            "CLUSTER_NOT_FOUND",
            "cluster",
        ),
        (
            "GetNode",
            nodes
                .get_node(GetNodeRequest {
                    name: "nope".into(),
                })
                .await
                .unwrap_err(),
            "NODE_NOT_FOUND",
            "node",
        ),
        (
            "CordonNode",
            nodes
                .cordon_node(CordonNodeRequest {
                    name: "nope".into(),
                    request_id: String::new(),
                })
                .await
                .unwrap_err(),
            "NODE_NOT_FOUND",
            "node",
        ),
        (
            "DrainNode",
            nodes
                .drain_node(DrainNodeRequest {
                    name: "nope".into(),
                    request_id: String::new(),
                })
                .await
                .unwrap_err(),
            "NODE_NOT_FOUND",
            "node",
        ),
        (
            "GetOperation",
            ops.get_operation(GetOperationRequest {
                name: "nope".into(),
            })
            .await
            .unwrap_err(),
            "OPERATION_NOT_FOUND",
            "operation",
        ),
        (
            "CancelOperation",
            ops.cancel_operation(CancelOperationRequest {
                name: "nope".into(),
                request_id: String::new(),
            })
            .await
            .unwrap_err(),
            "OPERATION_NOT_FOUND",
            "operation",
        ),
        (
            "WaitOperation",
            ops.wait_operation(WaitOperationRequest {
                name: "nope".into(),
                timeout: None,
            })
            .await
            .unwrap_err(),
            "OPERATION_NOT_FOUND",
            "operation",
        ),
    ];
    for (rpc, status, reason, key) in cases {
        let md = assert_error(&status, Code::NotFound, reason);
        assert_eq!(
            md.get(key).map(String::as_str),
            Some("nope"),
            "{rpc}: {md:?}"
        );
    }
    // Nothing was created by those calls.
    assert!(
        h.cp.ctx
            .cache
            .read(|st| st.nodes.is_empty() && st.clusters.is_empty())
    );
}

#[tokio::test]
async fn concurrent_repeats_of_one_request_id_all_get_the_first_result() {
    let h = start_embedded().await;
    // A client retrying while its first call is still in flight: every copy must get the
    // one result, none ALREADY_EXISTS / ABORTED.
    at_once(8, create_req(good("orders"), "create-x"), |r| create(&h, r)).await;
    settle(&h).await;
    let mut c = h.get_cluster("orders").await;
    broker_mut(&mut c).groups = 3;
    let first = at_once(8, update_req(c, "update-x"), |r| update(&h, r)).await;
    assert_eq!(first.cluster.unwrap().metadata.unwrap().generation, 2);
}

#[tokio::test]
async fn a_node_shows_the_topology_its_agent_reports() {
    let h = start_embedded().await;
    let mut opts = flotilla_cp::testing::FakeAgentOptions::new("node-z");
    let topology = flotilla_proto::v1::NodeTopology {
        zone: "eu-west-1a".into(),
        region: "eu-west-1".into(),
        hostname: "ip-10-0-0-7".into(),
    };
    opts.topology = Some(topology.clone());
    let _agent = h.agent_with(opts).await;
    let node = h
        .nodes()
        .get_node(flotilla_proto::v1::GetNodeRequest {
            name: "node-z".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node.status.unwrap().topology, Some(topology));
}

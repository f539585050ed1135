//! The public API over real gRPC: validation (field paths in BadRequest), etags (ABORTED),
//! request-id idempotency, NOT_FOUND, and stable ErrorInfo reasons.

// Helpers here may unwrap like the tests themselves (clippy.toml only exempts #[test] fns).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flotilla_proto::v1::{
    BrokerMode, CancelOperationRequest, Cluster, CordonNodeRequest, CreateClusterRequest,
    DeleteClusterRequest, DrainNodeRequest, GetClusterRequest, GetNodeRequest, GetOperationRequest,
    ListClustersRequest, ListNodesRequest, MasterRole, Placement, Resources, ScaleSource, Storage,
    UpdateClusterRequest, WaitOperationRequest, WatchClustersRequest, storage::Mode,
};
use tonic::Code;

fn create_req(c: Cluster, request_id: &str) -> CreateClusterRequest {
    CreateClusterRequest {
        cluster: Some(c),
        request_id: request_id.into(),
        validate_only: false,
    }
}

fn good(name: &str) -> Cluster {
    cluster(name, 1, 2, 2, BrokerMode::MasterSlave)
}

type Mutate = Box<dyn Fn(&mut Cluster)>;

/// One bad field per case, and the field path the error must name.
fn invalid_cases() -> Vec<(Mutate, &'static str)> {
    fn broker(c: &mut Cluster) -> &mut flotilla_proto::v1::BrokerSpec {
        c.spec.as_mut().unwrap().broker.as_mut().unwrap()
    }
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
            Box::new(|c| broker(c).groups = 65),
            "cluster.spec.broker.groups",
        ),
        (
            Box::new(|c| broker(c).replicas_per_group = 0),
            "cluster.spec.broker.replicas_per_group",
        ),
        (Box::new(|c| broker(c).mode = 0), "cluster.spec.broker.mode"),
        (
            Box::new(|c| broker(c).mode = 42),
            "cluster.spec.broker.mode",
        ),
        (
            Box::new(|c| {
                let b = broker(c);
                b.mode = BrokerMode::Dledger as i32;
                b.replicas_per_group = 4;
            }),
            "cluster.spec.broker.replicas_per_group",
        ),
        (
            Box::new(|c| broker(c).master_role = 9),
            "cluster.spec.broker.master_role",
        ),
        (
            Box::new(|c| {
                let b = broker(c);
                b.master_role = MasterRole::SyncMaster as i32;
                b.in_sync_replicas = 3;
            }),
            "cluster.spec.broker.in_sync_replicas",
        ),
        (
            Box::new(|c| {
                broker(c).config.insert("namesrvAddr".into(), "x:1".into());
            }),
            "cluster.spec.broker.config.namesrvAddr",
        ),
        (
            Box::new(|c| {
                broker(c).config.insert("deleteWhen".into(), "25".into());
            }),
            "cluster.spec.broker.config.deleteWhen",
        ),
        (
            Box::new(|c| {
                broker(c).resources = Some(Resources {
                    memory_mib: 64,
                    cpu_millis: 0,
                });
            }),
            "cluster.spec.broker.resources.memory_mib",
        ),
        (
            Box::new(|c| {
                broker(c).storage = Some(Storage {
                    mode: Mode::HostPath as i32,
                    host_path: String::new(),
                });
            }),
            "cluster.spec.broker.storage.host_path",
        ),
        (
            Box::new(|c| {
                broker(c).storage = Some(Storage {
                    mode: 17,
                    host_path: String::new(),
                });
            }),
            "cluster.spec.broker.storage.mode",
        ),
        (Box::new(|c| broker(c).port = 2), "cluster.spec.broker.port"),
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
    c.spec.as_mut().unwrap().broker.as_mut().unwrap().groups = 0;
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
        let err = client
            .update_cluster(UpdateClusterRequest {
                cluster: Some(c),
                request_id: String::new(),
                validate_only: false,
            })
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "INVALID_SPEC");
        assert_eq!(
            violated_fields(&err),
            vec![field.to_string()],
            "update {field}"
        );
    }
    let mut c = created.clone();
    c.metadata.as_mut().unwrap().etag = "not-a-revision".into();
    let err = client
        .update_cluster(UpdateClusterRequest {
            cluster: Some(c),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["cluster.metadata.etag"]);
    let mut c = created.clone();
    c.metadata.as_mut().unwrap().etag.clear();
    c.spec.as_mut().unwrap().broker.as_mut().unwrap().mode = BrokerMode::Dledger as i32;
    c.spec
        .as_mut()
        .unwrap()
        .broker
        .as_mut()
        .unwrap()
        .replicas_per_group = 3;
    let err = client
        .update_cluster(UpdateClusterRequest {
            cluster: Some(c),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_SPEC");
    assert_eq!(violated_fields(&err), ["cluster.spec.broker.mode"]);

    // Request fields of the other RPCs.
    let err = client
        .get_cluster(GetClusterRequest {
            name: "UPPER".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(violated_fields(&err), ["name"]);
    let err = client
        .list_clusters(ListClustersRequest {
            page_size: 5000,
            page_token: "zz".into(),
            label_selector: "novalue".into(),
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(fields, ["label_selector", "page_size", "page_token"]);
    let err = client
        .delete_cluster(DeleteClusterRequest {
            name: "orders".into(),
            etag: "-3".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["etag"]);
    let err = client
        .watch_clusters(WatchClustersRequest {
            revision: -1,
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(violated_fields(&err), ["revision"]);
    let err = h
        .nodes()
        .list_nodes(ListNodesRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["page_size"]);
    let err = h
        .operations()
        .wait_operation(WaitOperationRequest {
            name: "op-1".into(),
            timeout: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["timeout"]);
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
    let current = client
        .get_cluster(GetClusterRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let etag = current.metadata.as_ref().unwrap().etag.clone();

    // An update with the current etag succeeds and moves the etag.
    let mut c = current.clone();
    c.spec
        .as_mut()
        .unwrap()
        .broker
        .as_mut()
        .unwrap()
        .config
        .insert("fileReservedTime".into(), "48".into());
    let updated = client
        .update_cluster(UpdateClusterRequest {
            cluster: Some(c.clone()),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    let new_etag = updated.metadata.as_ref().unwrap().etag.clone();
    assert_ne!(new_etag, etag);
    assert_eq!(updated.metadata.as_ref().unwrap().generation, 2);

    // The old etag is stale now: update and delete are ABORTED and change nothing.
    let err = client
        .update_cluster(UpdateClusterRequest {
            cluster: Some(c),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    let md = assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    assert!(md.contains_key("current_etag"), "{md:?}");
    let err = client
        .delete_cluster(DeleteClusterRequest {
            name: "orders".into(),
            etag: etag.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    settle(&h).await;
    let now = client
        .get_cluster(GetClusterRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let m = now.metadata.unwrap();
    assert_eq!(m.generation, 2);
    assert!(m.delete_time.is_none());

    // Delete with the current etag works.
    let deleted = client
        .delete_cluster(DeleteClusterRequest {
            name: "orders".into(),
            etag: m.etag,
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.metadata.unwrap().delete_time.is_some());
}

#[tokio::test]
async fn repeated_request_ids_return_the_first_result() {
    let h = start_embedded().await;
    let mut client = h.clusters();
    let first = client
        .create_cluster(create_req(good("orders"), "create-1"))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .create_cluster(create_req(good("orders"), "create-1"))
        .await
        .expect("a repeat is not ALREADY_EXISTS")
        .into_inner();
    assert_eq!(again, first);
    // Without the request id the same create is a conflict.
    let err = client
        .create_cluster(create_req(good("orders"), ""))
        .await
        .unwrap_err();
    let md = assert_error(&err, Code::AlreadyExists, "CLUSTER_ALREADY_EXISTS");
    assert_eq!(md["cluster"], "orders");

    // Update: the repeat returns the first response and bumps nothing.
    settle(&h).await;
    let mut c = client
        .get_cluster(GetClusterRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    c.spec.as_mut().unwrap().broker.as_mut().unwrap().groups = 3;
    let req = UpdateClusterRequest {
        cluster: Some(c),
        request_id: "update-1".into(),
        validate_only: false,
    };
    let u1 = client
        .update_cluster(req.clone())
        .await
        .unwrap()
        .into_inner();
    let u2 = client
        .update_cluster(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u1, u2);
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
    let stored = client
        .get_cluster(GetClusterRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored.metadata.as_ref().unwrap().generation,
        2,
        "the repeat acted again"
    );

    // Scale-in: the operation created by the first call is returned, not a second one.
    let mut c = stored.clone();
    c.spec.as_mut().unwrap().broker.as_mut().unwrap().groups = 1;
    let req = UpdateClusterRequest {
        cluster: Some(c),
        request_id: "scale-in-1".into(),
        validate_only: false,
    };
    let s1 = client
        .update_cluster(req.clone())
        .await
        .unwrap()
        .into_inner();
    let s2 = client.update_cluster(req).await.unwrap().into_inner();
    assert_eq!(s1, s2);
    let op_name = s1.operation.unwrap().metadata.unwrap().name;
    let ops = h
        .operations()
        .list_operations(flotilla_proto::v1::ListOperationsRequest {
            include_done: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .operations;
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].metadata.as_ref().unwrap().name, op_name);

    // Cancel and delete, repeated.
    let cancel = CancelOperationRequest {
        name: op_name.clone(),
        request_id: "cancel-1".into(),
    };
    let c1 = h
        .operations()
        .cancel_operation(cancel.clone())
        .await
        .unwrap()
        .into_inner();
    let c2 = h
        .operations()
        .cancel_operation(cancel)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        c1, c2,
        "a repeated cancel of a done operation is not refused"
    );
    let del = DeleteClusterRequest {
        name: "orders".into(),
        etag: String::new(),
        request_id: "delete-1".into(),
    };
    let d1 = client
        .delete_cluster(del.clone())
        .await
        .unwrap()
        .into_inner();
    let d2 = client.delete_cluster(del).await.unwrap().into_inner();
    assert_eq!(d1, d2);

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
    let cases: Vec<(&str, tonic::Status, &str, &str)> = vec![
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
                .update_cluster(UpdateClusterRequest {
                    cluster: Some(good("nope")),
                    request_id: String::new(),
                    validate_only: false,
                })
                .await
                .unwrap_err(),
            "CLUSTER_NOT_FOUND",
            "cluster",
        ),
        (
            "DeleteCluster",
            clusters
                .delete_cluster(DeleteClusterRequest {
                    name: "nope".into(),
                    etag: String::new(),
                    request_id: String::new(),
                })
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
    let calls = (0..8).map(|_| {
        let mut c = h.clusters();
        async move {
            c.create_cluster(create_req(good("orders"), "create-x"))
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let first = results[0].as_ref().expect("create").get_ref().clone();
    for r in &results {
        assert_eq!(r.as_ref().expect("every repeat succeeds").get_ref(), &first);
    }
    settle(&h).await;
    let mut c = h
        .clusters()
        .get_cluster(GetClusterRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    c.spec.as_mut().unwrap().broker.as_mut().unwrap().groups = 3;
    let calls = (0..8).map(|_| {
        let mut client = h.clusters();
        let c = c.clone();
        async move {
            client
                .update_cluster(UpdateClusterRequest {
                    cluster: Some(c),
                    request_id: "update-x".into(),
                    validate_only: false,
                })
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let first = results[0].as_ref().expect("update").get_ref().clone();
    for r in &results {
        assert_eq!(r.as_ref().expect("every repeat succeeds").get_ref(), &first);
    }
    assert_eq!(first.cluster.unwrap().metadata.unwrap().generation, 2);
}

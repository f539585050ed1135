//! The API is the contract the other components implement against: this test pins every
//! service, method and message the foundation promises, through the compiled descriptor set.

use prost::Message;
use prost_types::FileDescriptorSet;
use std::collections::BTreeSet;

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(flotilla_proto::FILE_DESCRIPTOR_SET).expect("valid descriptor set")
}

/// Fully-qualified names of every message (nested included) and service method.
fn names(set: &FileDescriptorSet) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut messages = BTreeSet::new();
    let mut methods = BTreeSet::new();
    fn walk(prefix: &str, msg: &prost_types::DescriptorProto, out: &mut BTreeSet<String>) {
        let name = format!("{prefix}.{}", msg.name());
        for nested in &msg.nested_type {
            walk(&name, nested, out);
        }
        out.insert(name);
    }
    for file in &set.file {
        let pkg = file.package();
        for msg in &file.message_type {
            walk(pkg, msg, &mut messages);
        }
        for svc in &file.service {
            for m in &svc.method {
                methods.insert(format!("{pkg}.{}/{}", svc.name(), m.name()));
            }
        }
    }
    (messages, methods)
}

#[test]
fn every_promised_service_method_exists() {
    let (_, methods) = names(&descriptor_set());
    let expected = [
        "flotilla.v1.AuditService/ListAuditRecords",
        "flotilla.v1.ClusterService/CreateCluster",
        "flotilla.v1.ClusterService/GetCluster",
        "flotilla.v1.ClusterService/ListClusters",
        "flotilla.v1.ClusterService/UpdateCluster",
        "flotilla.v1.ClusterService/DeleteCluster",
        "flotilla.v1.ClusterService/WatchClusters",
        "flotilla.v1.NodeService/ListNodes",
        "flotilla.v1.NodeService/GetNode",
        "flotilla.v1.NodeService/CordonNode",
        "flotilla.v1.NodeService/UncordonNode",
        "flotilla.v1.NodeService/DrainNode",
        "flotilla.v1.OperationService/GetOperation",
        "flotilla.v1.OperationService/ListOperations",
        "flotilla.v1.OperationService/CancelOperation",
        "flotilla.v1.OperationService/WaitOperation",
        "flotilla.v1.OperationService/WatchOperations",
        "flotilla.v1.TopicService/CreateTopic",
        "flotilla.v1.TopicService/UpdateTopic",
        "flotilla.v1.TopicService/DeleteTopic",
        "flotilla.v1.TopicService/ListTopics",
        "flotilla.v1.TopicService/GetTopicStats",
        "flotilla.v1.TopicService/GetTopicRoute",
        "flotilla.v1.TopicService/MigrateTopic",
        "flotilla.v1.GroupService/CreateGroup",
        "flotilla.v1.GroupService/DeleteGroup",
        "flotilla.v1.GroupService/ListGroups",
        "flotilla.v1.GroupService/GetGroupProgress",
        "flotilla.v1.GroupService/ResetOffset",
        "flotilla.v1.GroupService/GetGroup",
        "flotilla.v1.GroupService/UpdateGroup",
        "flotilla.v1.GroupService/GetConsumerConnections",
        "flotilla.v1.MessageService/GetMessage",
        "flotilla.v1.MessageService/QueryMessagesByKey",
        "flotilla.v1.MessageService/QueryMessagesByTime",
        "flotilla.v1.MessageService/ListMessages",
        "flotilla.v1.MessageService/GetMessageTrace",
        "flotilla.v1.MessageService/ListDlqMessages",
        "flotilla.v1.MessageService/ResendDlqMessage",
        "flotilla.v1.GroupService/GetProducerConnections",
        "flotilla.agent.v1.AgentService/Connect",
    ];
    let missing: Vec<_> = expected.iter().filter(|m| !methods.contains(**m)).collect();
    assert!(missing.is_empty(), "missing methods: {missing:?}");
}

#[test]
fn every_promised_message_exists() {
    let (messages, _) = names(&descriptor_set());
    let expected = [
        // resources and their parts
        "flotilla.v1.ObjectMeta",
        "flotilla.v1.Condition",
        "flotilla.v1.Cluster",
        "flotilla.v1.ClusterSpec",
        "flotilla.v1.ClusterStatus",
        "flotilla.v1.NameServerSpec",
        "flotilla.v1.BrokerSpec",
        "flotilla.v1.ConsoleSpec",
        "flotilla.v1.Placement",
        "flotilla.v1.ScaleSource",
        "flotilla.v1.Resources",
        "flotilla.v1.Storage",
        "flotilla.v1.Member",
        "flotilla.v1.GroupStatus",
        "flotilla.v1.CommitLogOffsets",
        "flotilla.v1.Node",
        "flotilla.v1.NodeStatus",
        "flotilla.v1.Operation",
        "flotilla.v1.OperationSpec",
        "flotilla.v1.OperationStatus",
        "flotilla.v1.MigrateTopicSpec",
        "flotilla.v1.ScaleInSpec",
        "flotilla.v1.Topic",
        "flotilla.v1.TopicStats",
        "flotilla.v1.ConsumerGroup",
        "flotilla.v1.GroupProgress",
        "flotilla.v1.Message",
        // agent protocol
        "flotilla.agent.v1.AgentMessage",
        "flotilla.agent.v1.ControlMessage",
        "flotilla.agent.v1.Hello",
        "flotilla.agent.v1.Report",
        "flotilla.agent.v1.InstanceObservation",
        "flotilla.agent.v1.CommandResult",
        "flotilla.agent.v1.DesiredState",
        "flotilla.agent.v1.Instance",
        "flotilla.agent.v1.Command",
        "flotilla.agent.v1.UpdateNameservers",
        "flotilla.agent.v1.UpdateTopicPerm",
        "flotilla.agent.v1.MetadataExport",
    ];
    let missing: Vec<_> = expected
        .iter()
        .filter(|m| !messages.contains(**m))
        .collect();
    assert!(missing.is_empty(), "missing messages: {missing:?}");
}

/// Resource messages carry metadata, spec and status, and mutations carry a request id, as
/// the API conventions promise.
#[test]
fn resources_and_mutations_follow_the_api_conventions() {
    let set = descriptor_set();
    let field_names = |full: &str| -> BTreeSet<String> {
        let (pkg, name) = full.rsplit_once('.').expect("qualified");
        set.file
            .iter()
            .filter(|f| f.package() == pkg)
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("{full} exists"))
            .field
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    };
    for resource in [
        "flotilla.v1.Cluster",
        "flotilla.v1.Node",
        "flotilla.v1.Operation",
    ] {
        let f = field_names(resource);
        for part in ["metadata", "spec", "status"] {
            assert!(f.contains(part), "{resource} lacks {part}");
        }
    }
    let meta = field_names("flotilla.v1.ObjectMeta");
    for part in ["name", "uid", "generation", "etag", "create_time", "labels"] {
        assert!(meta.contains(part), "ObjectMeta lacks {part}");
    }
    for mutation in [
        "flotilla.v1.CreateClusterRequest",
        "flotilla.v1.UpdateClusterRequest",
        "flotilla.v1.DeleteClusterRequest",
        "flotilla.v1.CreateTopicRequest",
        "flotilla.v1.CreateGroupRequest",
        "flotilla.v1.ResetOffsetRequest",
        "flotilla.v1.MigrateTopicRequest",
    ] {
        assert!(
            field_names(mutation).contains("request_id"),
            "{mutation} lacks request_id"
        );
    }
    assert!(field_names("flotilla.v1.DeleteClusterRequest").contains("etag"));
    for list in [
        "flotilla.v1.ListClustersRequest",
        "flotilla.v1.ListNodesRequest",
    ] {
        let f = field_names(list);
        assert!(
            f.contains("page_size") && f.contains("page_token"),
            "{list} lacks paging"
        );
    }
    let cmd = field_names("flotilla.agent.v1.Command");
    for part in ["command_id", "epoch", "expected_generation"] {
        assert!(cmd.contains(part), "Command lacks {part}");
    }
    let desired = field_names("flotilla.agent.v1.DesiredState");
    assert!(desired.contains("epoch") && desired.contains("generation"));
}

/// Generated code round-trips: a message encodes and decodes to itself.
#[test]
fn generated_types_round_trip() {
    use flotilla_proto::v1::{BrokerMode, BrokerSpec, Cluster, ClusterSpec, ObjectMeta};
    let c = Cluster {
        metadata: Some(ObjectMeta {
            name: "orders".into(),
            ..Default::default()
        }),
        spec: Some(ClusterSpec {
            broker: Some(BrokerSpec {
                groups: 2,
                replicas_per_group: 3,
                mode: BrokerMode::Dledger as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    let bytes = c.encode_to_vec();
    assert_eq!(Cluster::decode(bytes.as_slice()).expect("decodes"), c);
}

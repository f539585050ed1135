//! Reconciler tests against fake agents speaking the real gRPC protocol, over an embedded
//! store in a temp dir.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use flotilla_cp::testing::FakeAgentOptions;
use flotilla_proto::agent::v1::DesiredState;
use flotilla_proto::v1::{
    BrokerMode, ClusterPhase, ConditionStatus, CordonNodeRequest, DrainNodeRequest,
    GetClusterRequest, GetNodeRequest, InstanceKind, NodePhase, OperationPhase,
    WaitOperationRequest,
};

fn groups_of(ds: &DesiredState) -> Vec<(String, String)> {
    ds.instances
        .iter()
        .map(|i| (i.name.clone(), i.group.clone()))
        .collect()
}

fn running(c: &flotilla_proto::v1::Cluster) -> bool {
    c.status.as_ref().is_some_and(|s| {
        s.phase == ClusterPhase::Running as i32
            && s.conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == ConditionStatus::True as i32)
    })
}

/// Waits until the agents hold `n` instances between them.
async fn wait_placed(agents: &[&flotilla_cp::testing::FakeAgent], n: usize) {
    wait_until(&format!("{n} instances placed"), || async {
        (placement(agents).len() == n).then_some(())
    })
    .await;
}

/// instance name -> node, from what the agents hold.
fn placement(agents: &[&flotilla_cp::testing::FakeAgent]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in agents {
        for i in a.desired().unwrap_or_default().instances {
            out.insert(i.name, a.node.clone());
        }
    }
    out
}

#[tokio::test]
async fn places_spread_renders_pushes_and_folds_status() {
    let h = start_embedded().await;
    let a = h.agent("node-a").await;
    let b = h.agent("node-b").await;
    let c = h.agent("node-c").await;
    create_cluster(&h, cluster("orders", 3, 2, 3, BrokerMode::MasterSlave)).await;
    let agents = [&a, &b, &c];
    wait_placed(&agents, 9).await;
    // No two members of one group (or two nameservers) on one node.
    for ag in agents {
        let ds = ag.desired().unwrap();
        let mut seen = HashSet::new();
        for (name, group) in groups_of(&ds) {
            let g = if group.is_empty() {
                "namesrv".to_string()
            } else {
                group
            };
            assert!(seen.insert(g.clone()), "{name}: two of {g} on {}", ag.node);
        }
        // Every desired state carries the leader's epoch.
        assert_eq!(ds.epoch, h.epoch().unwrap());
        assert!(ds.generation >= 1);
        assert_eq!(ds.instances.len(), 3);
    }
    // Rendering: one namesrv, master/slave config and a shared namesrvAddr.
    let all: Vec<_> = agents
        .iter()
        .flat_map(|a| a.desired().unwrap().instances)
        .collect();
    let master = all.iter().find(|i| i.name == "orders-0-0").unwrap();
    assert_eq!(master.config["brokerRole"], "ASYNC_MASTER");
    assert_eq!(master.config["brokerId"], "0");
    assert_eq!(master.config["brokerName"], "orders-0");
    assert_eq!(master.config["brokerClusterName"], "orders");
    let slave = all.iter().find(|i| i.name == "orders-1-2").unwrap();
    assert_eq!(slave.config["brokerRole"], "SLAVE");
    assert_eq!(slave.config["brokerId"], "2");
    let ns_addr = &master.config["namesrvAddr"];
    assert_eq!(ns_addr.split(';').count(), 3);
    let ns = all
        .iter()
        .find(|i| i.kind == InstanceKind::Namesrv as i32)
        .unwrap();
    assert!(ns.config["listen"].ends_with(":9876"));
    assert!(ns.data_dir.starts_with("/data/node-"));

    // Status folding: the fake agents report everything ready.
    let cl = h.wait_cluster("orders", "cluster Running", running).await;
    let st = cl.status.unwrap();
    assert_eq!(st.observed_generation, 1);
    assert_eq!(st.members.len(), 9);
    assert!(st.members.iter().all(|m| m.ready && m.pid > 0));
    assert_eq!(st.namesrv_addr, *ns_addr);
    assert_eq!(
        cl.metadata.unwrap().generation,
        1,
        "status writes keep the generation"
    );

    // Idempotence: another reconcile writes nothing; generations stay.
    let gens: Vec<i64> = agents
        .iter()
        .map(|a| a.desired().unwrap().generation)
        .collect();
    let epoch = h.epoch().unwrap();
    let span = tracing::info_span!("test");
    let _e = span.enter();
    let wrote = flotilla_cp::reconcile::reconcile_one(&h.cp.ctx, "orders", epoch)
        .await
        .unwrap();
    assert!(!wrote, "a reconcile with no change writes nothing");
    let gens2: Vec<i64> = h.cp.ctx.cache.read(|st| {
        ["node-a", "node-b", "node-c"]
            .iter()
            .map(|n| st.desired[*n].value.generation)
            .collect()
    });
    assert_eq!(gens, gens2);
}

#[tokio::test]
async fn cordoned_nodes_get_nothing_new_and_drain_moves_members_off() {
    let h = start_embedded().await;
    let a = h.agent("node-a").await;
    let b = h.agent("node-b").await;
    let c = h.agent("node-c").await;
    let d = h.agent("node-d").await;
    h.nodes()
        .cordon_node(CordonNodeRequest {
            name: "node-d".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    create_cluster(&h, cluster("pay", 1, 1, 3, BrokerMode::Dledger)).await;
    let agents = [&a, &b, &c, &d];
    wait_placed(&agents, 4).await;
    assert!(
        d.desired().unwrap().instances.is_empty(),
        "cordoned node got an instance"
    );
    h.wait_cluster("pay", "Running", running).await;
    // DLedger rendering.
    let m = placement(&agents);
    let holder = m["pay-0-1"].clone();
    let inst = agents
        .iter()
        .find(|a| a.node == holder)
        .unwrap()
        .desired()
        .unwrap()
        .instances
        .into_iter()
        .find(|i| i.name == "pay-0-1")
        .unwrap();
    assert_eq!(inst.config["dLegerSelfId"], "n1");
    assert_eq!(inst.config["enableDLegerCommitLog"], "true");
    assert_eq!(inst.dledger_peers.len(), 3);

    // Uncordon d, then drain the node holding pay-0-1: the member moves to d.
    h.nodes()
        .uncordon_node(flotilla_proto::v1::UncordonNodeRequest {
            name: "node-d".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let op = h
        .nodes()
        .drain_node(DrainNodeRequest {
            name: holder.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let op_name = op.metadata.unwrap().name;
    wait_until("member moved off the drained node", || async {
        let m = placement(&agents);
        (m.get("pay-0-1").map(String::as_str) == Some("node-d")
            && !m.values().any(|n| *n == holder))
        .then_some(())
    })
    .await;
    let done = h
        .operations()
        .wait_operation(WaitOperationRequest {
            name: op_name,
            timeout: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let st = done.status.unwrap();
    assert!(st.done);
    assert_eq!(st.phase, OperationPhase::Succeeded as i32);
    h.wait_cluster("pay", "Running again", running).await;
}

#[tokio::test]
async fn lost_nodes_instances_are_replaced() {
    let h = start_embedded().await;
    let a = h.agent("node-a").await;
    let b = h.agent("node-b").await;
    let c = h.agent("node-c").await;
    create_cluster(&h, cluster("lost", 1, 1, 2, BrokerMode::MasterSlave)).await;
    let agents = [&a, &b, &c];
    wait_placed(&agents, 3).await;
    // A NotReady node keeps its instances; a deleted one loses them.
    let m = placement(&agents);
    let victim = m["lost-0-1"].clone();
    let spare = ["node-a", "node-b", "node-c"]
        .into_iter()
        .find(|n| !m.values().any(|v| v == n));
    let d = h.agent("node-d").await;
    let victim_agent = agents.iter().find(|a| a.node == victim).unwrap();
    victim_agent.pause_reports(true);
    flotilla_cp::registry::delete(&h.cp.ctx, &victim)
        .await
        .unwrap();
    let all = [&a, &b, &c, &d];
    wait_until("member re-placed", || async {
        let m: BTreeMap<_, _> = all
            .iter()
            .filter(|a| a.node != victim)
            .flat_map(|a| {
                a.desired()
                    .unwrap_or_default()
                    .instances
                    .into_iter()
                    .map(|i| (i.name, a.node.clone()))
            })
            .collect();
        (m.len() == 3).then_some(())
    })
    .await;
    let _ = spare;
}

#[tokio::test]
async fn missed_heartbeats_make_a_node_not_ready_and_reconnect_makes_it_ready() {
    let h = start_embedded().await;
    let a = h.agent("node-a").await;
    let phase = |h: &Harness| {
        let mut nodes = h.nodes();
        async move {
            nodes
                .get_node(GetNodeRequest {
                    name: "node-a".into(),
                })
                .await
                .ok()
                .and_then(|n| n.into_inner().status)
                .map(|s| s.phase)
        }
    };
    assert_eq!(phase(&h).await, Some(NodePhase::Ready as i32));
    a.pause_reports(true);
    wait_until("node NotReady", || async {
        (phase(&h).await == Some(NodePhase::NotReady as i32)).then_some(())
    })
    .await;
    a.close();
    let _a2 = h.agent("node-a").await;
    wait_until("node Ready again", || async {
        (phase(&h).await == Some(NodePhase::Ready as i32)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_agent_with_a_higher_epoch_makes_the_leader_step_down() {
    let h = start_embedded().await;
    let epoch = h.epoch().unwrap();
    let mut opts = FakeAgentOptions::new("node-x");
    opts.highest_epoch_seen = epoch + 1000;
    let err = flotilla_cp::testing::FakeAgent::connect(h.channel.clone(), opts)
        .await
        .err()
        .expect("session refused");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(h.cp.ctx.leader.step_downs() >= 1);
}

#[tokio::test]
async fn deleting_a_cluster_stops_its_instances_then_removes_it() {
    let h = start_embedded().await;
    let a = h.agent("node-a").await;
    let mut c = cluster("gone", 1, 1, 1, BrokerMode::MasterSlave);
    c.spec.as_mut().unwrap().placement = Some(flotilla_proto::v1::Placement {
        node_selector: Default::default(),
        spread: flotilla_proto::v1::placement::Spread::Preferred as i32,
    });
    create_cluster(&h, c).await;
    h.wait_cluster("gone", "Running", running).await;
    assert_eq!(a.desired().unwrap().instances.len(), 2);
    h.clusters()
        .delete_cluster(delete_req("gone", "", ""))
        .await
        .unwrap();
    let mut client = h.clusters();
    wait_until("cluster removed", || {
        let mut client = client.clone();
        async move {
            let r = client
                .get_cluster(GetClusterRequest {
                    name: "gone".into(),
                })
                .await;
            matches!(r, Err(s) if s.code() == tonic::Code::NotFound).then_some(())
        }
    })
    .await;
    assert!(a.desired().unwrap().instances.is_empty());
    let _ = client
        .get_cluster(GetClusterRequest { name: "x".into() })
        .await;
}

#[tokio::test]
async fn commands_reach_the_agent_and_results_come_back() {
    let h = start_embedded().await;
    let a = h.agent("node-a").await;
    let cmd = flotilla_proto::agent::v1::Command {
        command_id: "cmd-1".into(),
        instance: "x".into(),
        ..Default::default()
    };
    let r =
        h.cp.ctx
            .sessions
            .send_command(&h.cp.ctx, "node-a", cmd, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    assert!(r.success);
    assert_eq!(a.commands()[0].epoch, h.epoch().unwrap());
    let err =
        h.cp.ctx
            .sessions
            .send_command(
                &h.cp.ctx,
                "node-zz",
                flotilla_proto::agent::v1::Command {
                    command_id: "c2".into(),
                    ..Default::default()
                },
                std::time::Duration::from_secs(1),
            )
            .await
            .unwrap_err();
    assert_eq!(err.code(), "NODE_NOT_CONNECTED");
}

#[tokio::test]
async fn a_second_reconcile_with_no_change_writes_and_pushes_nothing() {
    use flotilla_cp::context::Stats;
    let h = start_embedded().await;
    let a = h.agent("node-a").await;
    let b = h.agent("node-b").await;
    let c = h.agent("node-c").await;
    create_cluster(&h, cluster("orders", 2, 2, 2, BrokerMode::MasterSlave)).await;
    create_cluster(&h, cluster("pay", 1, 1, 3, BrokerMode::Dledger)).await;
    h.wait_cluster("orders", "orders Running", running).await;
    h.wait_cluster("pay", "pay Running", running).await;
    settle(&h).await;
    let agents = [&a, &b, &c];
    // Every agent holds what the store says it should.
    wait_until("agents hold their desired state", || async {
        let held = h.cp.ctx.cache.read(|st| {
            agents.iter().all(|ag| {
                ag.desired().map(|d| d.generation)
                    == st.desired.get(&ag.node).map(|d| d.value.generation)
            })
        });
        held.then_some(())
    })
    .await;

    let stats = &h.cp.ctx.stats;
    let revision = store_revision(&h.cp.ctx.store).await;
    let pushes = Stats::get(&stats.desired_pushes);
    let writes = Stats::get(&stats.reconcile_writes);
    let received: Vec<u64> = agents.iter().map(|a| a.desired_count()).collect();
    let reconciles = Stats::get(&stats.reconciles);

    // Directly, and through the queue (what a resync does) for every cluster.
    let epoch = h.epoch().unwrap();
    for name in ["orders", "pay"] {
        let wrote = flotilla_cp::reconcile::reconcile_one(&h.cp.ctx, name, epoch)
            .await
            .unwrap();
        assert!(!wrote, "{name}: a reconcile with no change wrote");
        h.cp.queue.add(name);
    }
    wait_until("queued reconciles ran", || async {
        (Stats::get(&stats.reconciles) >= reconciles + 4 && h.cp.queue.is_idle()).then_some(())
    })
    .await;
    assert_eq!(
        store_revision(&h.cp.ctx.store).await,
        revision,
        "the store changed"
    );
    assert_eq!(Stats::get(&stats.reconcile_writes), writes);
    assert_eq!(
        Stats::get(&stats.desired_pushes),
        pushes,
        "desired states re-pushed"
    );
    let received2: Vec<u64> = agents.iter().map(|a| a.desired_count()).collect();
    assert_eq!(received2, received);
}

/// `UpdateCluster` with `validate_only` answers, member by member, what the change would do
/// (restart-only keys restart, a nameserver change is online for brokers, new instances
/// start), and does nothing.
#[tokio::test]
async fn a_plan_preview_names_each_member_change_and_changes_nothing() {
    use flotilla_proto::v1::member_change::Action;
    let h = start_embedded().await;
    let _a = h.agent("node-a").await;
    let _b = h.agent("node-b").await;
    let _c = h.agent("node-c").await;
    create_cluster(&h, cluster("orders", 1, 1, 2, BrokerMode::MasterSlave)).await;
    settle(&h).await;
    let before = h.get_cluster("orders").await;
    let generation = before.metadata.as_ref().unwrap().generation;

    let preview = |edit: fn(&mut flotilla_proto::v1::BrokerSpec, &mut u32)| {
        let mut c = before.clone();
        let mut ns = c
            .spec
            .as_ref()
            .unwrap()
            .nameserver
            .as_ref()
            .unwrap()
            .replicas;
        edit(broker_mut(&mut c), &mut ns);
        c.spec
            .as_mut()
            .unwrap()
            .nameserver
            .as_mut()
            .unwrap()
            .replicas = ns;
        c.metadata.as_mut().unwrap().etag.clear();
        let mut req = update_req(c, "");
        req.validate_only = true;
        let client = h.clusters();
        async move {
            let mut client = client;
            let r = client.update_cluster(req).await.unwrap().into_inner();
            let mut v: Vec<(String, i32, Vec<String>)> = r
                .changes
                .into_iter()
                .map(|c| (c.member, c.action, c.keys))
                .collect();
            v.sort();
            v
        }
    };
    let restart = preview(|b, _| {
        b.config.insert("fileReservedTime".into(), "24".into());
    })
    .await;
    assert_eq!(
        restart,
        [
            (
                "orders-0-0".to_string(),
                Action::Restart as i32,
                vec!["fileReservedTime".to_string()]
            ),
            (
                "orders-0-1".to_string(),
                Action::Restart as i32,
                vec!["fileReservedTime".to_string()]
            ),
        ]
    );
    let grow = preview(|_, ns| *ns = 2).await;
    assert_eq!(
        grow,
        [
            (
                "orders-0-0".to_string(),
                Action::Online as i32,
                vec!["namesrvAddr".to_string()]
            ),
            (
                "orders-0-1".to_string(),
                Action::Online as i32,
                vec!["namesrvAddr".to_string()]
            ),
            ("orders-namesrv-1".to_string(), Action::Start as i32, vec![]),
        ]
    );
    // Nothing was done.
    settle(&h).await;
    let after = h.get_cluster("orders").await;
    assert_eq!(after.metadata.as_ref().unwrap().generation, generation);
    assert_eq!(after.spec, before.spec);
}

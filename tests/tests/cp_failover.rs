//! Control-plane failover with real processes: two and three `flotilla-cp` replicas on one
//! real etcd, real agents given a follower's address, a list, or only the leader's address,
//! and real brokers. The leader is SIGKILLed; the new leader must see every agent, fold the
//! cluster back to `Running`, push a spec change made right after to the brokers (which keep
//! running throughout), and the CLI must work through every live address.
//!
//! Test names contain `etcd` (the nextest group for tests that start an etcd).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime};

use flotilla_intent_store::testing::EtcdServer;
use flotilla_intent_store::{IntentStore, keys};
use flotilla_proto::v1::node_service_client::NodeServiceClient;
use flotilla_proto::v1::{BrokerMode, GetNodeRequest, NodePhase};
use flotilla_remoting::RemotingClient;
use flotilla_tests::broker_proc::registered_at;
use flotilla_tests::fleet::{self, Fleet, alive, brokers, namesrv_addr, pids};
use flotilla_tests::{bin_path, wait_until};

const WAIT: Duration = Duration::from_secs(90);

/// The address the election key names (the leader's advertise name = its listen address).
async fn leader_of(store: &dyn IntentStore) -> Option<String> {
    let l = store.leader(keys::LEADER_ELECTION).await.ok()??;
    String::from_utf8(l.value).ok()
}

/// Waits until a replica of `fleet` other than `not` leads; returns its index.
async fn wait_leader(fleet: &Fleet, store: &dyn IntentStore, not: Option<usize>) -> usize {
    let r = wait_until("a replica leads", WAIT, || async {
        let name = leader_of(store).await?;
        let i = fleet.cps.iter().position(|c| c.addr == name)?;
        (Some(i) != not).then_some(i)
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()))
}

/// Whether the leader (reached through any live replica) has a heartbeat of `node` after `t`
/// and holds it Ready.
async fn heartbeat_after(fleet: &Fleet, node: &str, t: SystemTime) -> bool {
    let since = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let Some(ch) = fleet.channel().await else {
        return false;
    };
    let Ok(n) = NodeServiceClient::new(ch)
        .get_node(GetNodeRequest {
            name: node.to_string(),
        })
        .await
    else {
        return false;
    };
    let Some(st) = n.into_inner().status else {
        return false;
    };
    let hb = st
        .last_heartbeat
        .map(|h| h.seconds as f64 + f64::from(h.nanos) / 1e9)
        .unwrap_or(0.0);
    st.phase == NodePhase::Ready as i32 && hb > since
}

async fn wait_heartbeats(fleet: &Fleet, nodes: &[&str], t: SystemTime, what: &str) {
    for node in nodes {
        let r = wait_until(what, WAIT, || async {
            heartbeat_after(fleet, node, t).await.then_some(())
        })
        .await;
        if let Err(e) = r {
            panic!("{e}: {node}\n{}", fleet.logs());
        }
    }
}

/// `flotilla get clusters --server <server>`: its output, or its stderr as the error.
fn cli_get_clusters(server: &str) -> Result<String, String> {
    let out = Command::new(bin_path("flotilla"))
        .args(["get", "clusters", "--server", server])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Grows the nameservers 1 → 2 through the API and checks the change reached every broker
/// (each registered with both nameservers) without restarting any.
async fn nameservers_reach_brokers(fleet: &Fleet, name: &str, before: &BTreeMap<String, i64>) {
    fleet
        .update_cluster(name, |s| {
            if let Some(ns) = s.nameserver.as_mut() {
                ns.replicas = 2;
            }
        })
        .await;
    let c = fleet
        .wait_cluster(name, "two nameservers, running", |c| {
            fleet::is_running(c) && namesrv_addr(c).split(';').count() == 2
        })
        .await;
    let admin = RemotingClient::default();
    for b in brokers(&c) {
        for ns in namesrv_addr(&c).split(';') {
            let r = wait_until("broker registered with every nameserver", WAIT, || async {
                registered_at(&admin, ns, &b.address).await.then_some(())
            })
            .await;
            if let Err(e) = r {
                panic!("{e}: {} at {ns}\n{}", b.name, fleet.logs());
            }
        }
        assert_eq!(
            before.get(&b.name),
            Some(&b.pid),
            "broker {} kept running through the failover and the change",
            b.name
        );
        assert!(alive(b.pid));
    }
}

/// Every live replica's address (and the whole list) serves the CLI; the cluster shows
/// Running through each.
fn cli_works_through(fleet: &Fleet, live: &[usize], name: &str) {
    let mut servers: Vec<String> = live.iter().map(|i| fleet.cps[*i].addr.clone()).collect();
    servers.push(fleet.cp_addr.clone());
    for server in servers {
        let out = cli_get_clusters(&server)
            .unwrap_or_else(|e| panic!("flotilla get clusters --server {server}: {e}"));
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name} through {server}:\n{out}"));
        assert!(line.contains("Running"), "through {server}: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_two_replicas_agents_given_a_follower_a_list_or_the_leader_survive_its_death() {
    let etcd = EtcdServer::start().await;
    let store = etcd.store().await;
    let mut fleet = Fleet::start_ha(&etcd.endpoint(), 2).await;
    let leader = wait_leader(&fleet, store.as_ref(), None).await;
    let follower = 1 - leader;
    let (leader_addr, follower_addr) = (
        fleet.cps[leader].addr.clone(),
        fleet.cps[follower].addr.clone(),
    );
    let list = fleet.cp_addr.clone();
    fleet.add_agent("node-1", Some(&follower_addr));
    fleet.add_agent("node-2", Some(&list));
    fleet.add_agent("node-3", Some(&leader_addr));

    // Created through whichever replica the fleet's client reaches first.
    fleet
        .create_cluster(fleet::cluster(
            "orders",
            1,
            1,
            2,
            BrokerMode::MasterSlave,
            &[],
        ))
        .await;
    let c = fleet.wait_running("orders").await;
    let before = pids(&c);

    let killed_at = SystemTime::now();
    fleet.kill_cp_replica(leader);
    let new_leader = wait_leader(&fleet, store.as_ref(), Some(leader)).await;
    assert_eq!(new_leader, follower);
    // The agent given the follower's address and the one given the list reach the new
    // leader without anything restarted.
    wait_heartbeats(
        &fleet,
        &["node-1", "node-2"],
        killed_at,
        "agents given a follower or a list report to the new leader",
    )
    .await;
    // The agent that knew only the dead leader's address reconnects when that replica comes
    // back (as a process supervisor would restart it): as a follower, it forwards.
    let restarted_at = SystemTime::now();
    fleet.start_cp_replica(leader).await;
    wait_heartbeats(
        &fleet,
        &["node-3"],
        restarted_at,
        "the agent given only the old leader's address reports through it",
    )
    .await;
    assert_eq!(
        leader_of(store.as_ref()).await.as_deref(),
        Some(follower_addr.as_str()),
        "the restarted replica follows"
    );

    let c = fleet.wait_running("orders").await;
    assert_eq!(
        pids(&c),
        before,
        "no instance was restarted by the failover"
    );
    nameservers_reach_brokers(&fleet, "orders", &before).await;
    cli_works_through(&fleet, &[0, 1], "orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_three_replicas_agents_given_the_list_follow_a_new_leader() {
    let etcd = EtcdServer::start().await;
    let store = etcd.store().await;
    let mut fleet = Fleet::start_ha(&etcd.endpoint(), 3).await;
    let leader = wait_leader(&fleet, store.as_ref(), None).await;
    for node in ["node-1", "node-2", "node-3"] {
        fleet.add_agent(node, None);
    }
    fleet
        .create_cluster(fleet::cluster(
            "payments",
            1,
            1,
            2,
            BrokerMode::MasterSlave,
            &[],
        ))
        .await;
    let c = fleet.wait_running("payments").await;
    let before = pids(&c);

    let killed_at = SystemTime::now();
    fleet.kill_cp_replica(leader);
    let new_leader = wait_leader(&fleet, store.as_ref(), Some(leader)).await;
    wait_heartbeats(
        &fleet,
        &["node-1", "node-2", "node-3"],
        killed_at,
        "every agent reports to the new leader",
    )
    .await;
    let c = fleet.wait_running("payments").await;
    assert_eq!(
        pids(&c),
        before,
        "no instance was restarted by the failover"
    );
    nameservers_reach_brokers(&fleet, "payments", &before).await;

    let live: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    assert!(live.contains(&new_leader));
    cli_works_through(&fleet, &live, "payments");
    // The dead replica's address alone fails with an error that names it.
    let dead = fleet.cps[leader].addr.clone();
    let err = cli_get_clusters(&dead).expect_err("nothing listens there");
    assert!(err.contains(&dead), "{err}");
}

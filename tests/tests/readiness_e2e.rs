//! The readiness rule end to end, with real processes: a DLedger group is Ready only when a
//! writable member is listed as brokerId 0 by the nameserver; when its leader is SIGKILLed the
//! cluster's `Ready` condition goes False, and comes back True only once a new leader is
//! registered as brokerId 0 — checked against the nameserver itself, and by a real client
//! whose first sends then all succeed.

use flotilla_proto::v1::{BrokerMode, Cluster, ConditionStatus};
use flotilla_remoting::RemotingClient;
use flotilla_tests::broker_proc::registered_ids;
use flotilla_tests::fleet::{self, Fleet, brokers, namesrv_addr};
use flotilla_tests::rmq;

fn ready_condition(c: &Cluster) -> Option<bool> {
    let generation = c.metadata.as_ref().map(|m| m.generation).unwrap_or(-1);
    let st = c.status.as_ref()?;
    if st.observed_generation != generation {
        return None;
    }
    st.conditions
        .iter()
        .find(|k| k.r#type == "Ready")
        .map(|k| k.status == ConditionStatus::True as i32)
}

/// The member the status names as the group's writable master, with its address and pid.
fn master_of(c: &Cluster) -> Option<(String, String, i64)> {
    let st = c.status.as_ref()?;
    let g = st.groups.first().filter(|g| g.ready)?;
    brokers(c)
        .into_iter()
        .find(|m| m.name == g.master)
        .map(|m| (m.name, m.address, m.pid))
}

async fn first_sends_succeed(ns: &str, scope: &str, n: usize) {
    let acked = rmq::first_sends(ns, scope, "ReadyTopic", n).await;
    assert_eq!(acked.len(), n, "sends after Ready failed (see stderr)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dledger_group_is_ready_only_with_a_registered_leader_and_again_after_failover() {
    let fleet = Fleet::start(3).await;
    fleet
        .create_cluster(fleet::cluster(
            "ready",
            1,
            1,
            3,
            BrokerMode::Dledger,
            &[("autoCreateTopicEnable", "true")],
        ))
        .await;
    let c = fleet
        .wait_cluster("ready", "Ready", |c| ready_condition(c) == Some(true))
        .await;
    let ns = namesrv_addr(&c);
    let (name, addr, pid) = master_of(&c).expect("a Ready group names its master");
    let group = c.status.as_ref().expect("status").groups[0].name.clone();
    // The outside view agrees: the nameserver lists the master as brokerId 0.
    let admin = RemotingClient::default();
    let ids = registered_ids(&admin, &ns, &group).await;
    assert_eq!(
        ids.get(&0),
        Some(&addr),
        "{name} is brokerId 0 at {ns}: {ids:?}"
    );
    first_sends_succeed(&ns, "ready-1", 50).await;

    // SIGKILL the leader: the group loses its writable master, so the cluster is not Ready.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the leader");
    let c = fleet
        .wait_cluster("ready", "not Ready after the leader died", |c| {
            ready_condition(c) == Some(false)
        })
        .await;
    let g = &c.status.as_ref().expect("status").groups[0];
    assert!(!g.ready && !g.reason.is_empty(), "{g:?}");

    // Ready again: a new leader (a live process) registered as brokerId 0.
    let c = fleet
        .wait_cluster("ready", "Ready again", |c| {
            ready_condition(c) == Some(true)
                && master_of(c).is_some_and(|(_, _, p)| p > 0 && p != pid)
        })
        .await;
    let (_, new_addr, _) = master_of(&c).expect("master");
    let ids = registered_ids(&admin, &ns, &group).await;
    assert_eq!(ids.get(&0), Some(&new_addr), "{ids:?}");
    first_sends_succeed(&ns, "ready-2", 50).await;
}

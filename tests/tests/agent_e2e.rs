//! End-to-end tests of `flotilla-agent` under a real `flotilla-cp`: clusters applied through
//! the API run as real nameserver and broker processes that the real RocketMQ client uses;
//! killed brokers are restarted; brokers outlive agents and the control plane; nameserver-list
//! changes are applied online; commands are applied once and fenced by epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flotilla_proto::agent::v1::agent_service_server::{AgentService, AgentServiceServer};
use flotilla_proto::agent::v1::{
    AgentMessage, Command as AgentCommand, ControlMessage, DesiredState, Instance, Ports,
    RestartPolicy, TransferLeadership, agent_message, command, control_message,
};
use flotilla_proto::v1::{BrokerMode, Cluster, InstanceKind, Topic};
use flotilla_remoting::{RemotingClient, RemotingCommand, request_code};
use flotilla_tests::broker_proc::{registered_at, topic_queues};
use flotilla_tests::fleet::{self, Fleet, alive, brokers, namesrv_addr, pids};
use flotilla_tests::rmq::{self, Client};
use flotilla_tests::{Proc, bin_path, free_port, temp_dir, wait_until};
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

const WAIT: Duration = Duration::from_secs(60);

/// Instance processes running in the fleet's directory (agents run in the test's cwd).
fn instance_pids(fleet: &Fleet) -> BTreeSet<i64> {
    fleet::processes_under(fleet.dir())
        .into_iter()
        .map(i64::from)
        .collect()
}

/// Nothing was restarted: same pids in status, all alive, no other instance process, and
/// no member counts a restart.
fn assert_untouched(c: &Cluster, before: &BTreeMap<String, i64>, fleet: &Fleet, what: &str) {
    assert_eq!(&pids(c), before, "{what}: same processes in status");
    assert!(
        before.values().all(|p| alive(*p)),
        "{what}: every process alive"
    );
    let expected: BTreeSet<i64> = before.values().copied().collect();
    assert_eq!(
        instance_pids(fleet),
        expected,
        "{what}: no other instance process started"
    );
    assert!(
        fleet::members(c).iter().all(|m| m.restarts == 0),
        "{what}: no restart counted: {:?}",
        fleet::members(c)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_an_applied_cluster_and_restarts_a_killed_broker() {
    let fleet = Fleet::start(2).await;
    fleet
        .create_cluster(fleet::cluster(
            "orders",
            1,
            1,
            1,
            BrokerMode::MasterSlave,
            &[
                ("flushDiskType", "SYNC_FLUSH"),
                ("autoCreateTopicEnable", "true"),
            ],
        ))
        .await;
    let c = fleet.wait_running("orders").await;
    let ns = namesrv_addr(&c);
    assert!(!ns.is_empty(), "status names the nameserver list: {c:#?}");
    let broker = brokers(&c).pop().expect("one broker member");
    assert!(
        alive(broker.pid),
        "the reported broker pid is a live process"
    );

    let client = Client::new("agent-e2e-a");
    let producer = client.producer(&ns, "pg-orders").await;
    let first = rmq::send_all(&producer, "Orders", (0..30).map(|i| format!("m-{i}")), 20).await;
    assert_eq!(first.len(), 30, "every send is acknowledged");
    rmq::consume_all(&client, &ns, "cg-orders-1", "Orders", &first, WAIT).await;

    // SIGKILL the broker: the agent restarts it and it rejoins; nothing acknowledged is lost.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(broker.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the broker");
    let c = fleet
        .wait_cluster("orders", "broker restarted by the agent", |c| {
            brokers(c)
                .iter()
                .any(|m| m.pid > 0 && m.pid != broker.pid && m.ready && m.restarts >= 1)
        })
        .await;
    let restarted = brokers(&c).pop().expect("broker member");
    assert!(alive(restarted.pid));
    assert!(!alive(broker.pid), "the killed process is gone");
    let c2 = c.clone();
    wait_until("restarted broker registered", WAIT, || {
        let (ns, addr) = (namesrv_addr(&c2), restarted.address.clone());
        async move {
            registered_at(&RemotingClient::default(), &ns, &addr)
                .await
                .then_some(())
        }
    })
    .await
    .expect("the restarted broker registers with the nameserver");

    let second = rmq::send_all(&producer, "Orders", (30..60).map(|i| format!("m-{i}")), 50).await;
    assert_eq!(second.len(), 30, "sends succeed after the restart");
    let all: BTreeSet<String> = first.union(&second).cloned().collect();
    rmq::consume_all(&client, &ns, "cg-orders-2", "Orders", &all, WAIT).await;
    let mut producer = producer;
    producer.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_outlive_agents_and_the_control_plane_and_are_readopted() {
    let mut fleet = Fleet::start(2).await;
    fleet
        .create_cluster(fleet::cluster(
            "outlive",
            1,
            1,
            1,
            BrokerMode::MasterSlave,
            &[("autoCreateTopicEnable", "true")],
        ))
        .await;
    let c = fleet.wait_running("outlive").await;
    let before = pids(&c);
    let ns = namesrv_addr(&c);
    let client = Client::new("agent-e2e-b");
    let producer = client.producer(&ns, "pg-outlive").await;

    // SIGKILL every agent: the brokers keep serving.
    let nodes: Vec<String> = fleet.agents.keys().cloned().collect();
    for n in &nodes {
        fleet.kill_agent(n);
    }
    assert!(
        before.values().all(|p| alive(*p)),
        "instances outlive their agents"
    );
    let sent = rmq::send_all(&producer, "Outlive", (0..10).map(|i| format!("a-{i}")), 20).await;
    assert_eq!(
        sent.len(),
        10,
        "brokers serve while their agents are down\n{}",
        fleet.logs()
    );

    // Restarted agents re-adopt the running processes: same pids, nothing restarted.
    let t = SystemTime::now();
    for n in &nodes {
        fleet.start_agent(n);
    }
    fleet.wait_nodes_ready_since(t).await;
    let c = fleet.wait_running("outlive").await;
    assert_untouched(&c, &before, &fleet, "after the agents restarted");

    // Stop the control plane: the data plane keeps serving. Restart it: nothing restarts.
    fleet.stop_cp();
    let sent2 = rmq::send_all(&producer, "Outlive", (0..10).map(|i| format!("b-{i}")), 20).await;
    assert_eq!(
        sent2.len(),
        10,
        "brokers serve while the control plane is down"
    );
    let t = SystemTime::now();
    fleet.start_cp().await;
    fleet.wait_nodes_ready_since(t).await;
    let c = fleet.wait_running("outlive").await;
    assert_untouched(&c, &before, &fleet, "after the control plane restarted");

    let all: BTreeSet<String> = sent.union(&sent2).cloned().collect();
    rmq::consume_all(&client, &ns, "cg-outlive", "Outlive", &all, WAIT).await;
    let mut producer = producer;
    producer.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nameserver_list_change_reaches_brokers_without_a_restart() {
    let fleet = Fleet::start(2).await;
    fleet
        .create_cluster(fleet::cluster(
            "nslist",
            1,
            1,
            1,
            BrokerMode::MasterSlave,
            &[],
        ))
        .await;
    let c = fleet.wait_running("nslist").await;
    let broker = brokers(&c).pop().expect("broker member");
    let before = pids(&c);

    fleet
        .update_cluster("nslist", |s| {
            if let Some(ns) = s.nameserver.as_mut() {
                ns.replicas = 2;
            }
        })
        .await;
    let c = fleet
        .wait_cluster("nslist", "two nameservers running", |c| {
            fleet::is_running(c) && namesrv_addr(c).split(';').count() == 2
        })
        .await;
    let list = namesrv_addr(&c);
    for ns in list.split(';') {
        let (ns, addr) = (ns.to_string(), broker.address.clone());
        wait_until("broker registered with every nameserver", WAIT, || {
            let (ns, addr) = (ns.clone(), addr.clone());
            async move {
                registered_at(&RemotingClient::default(), &ns, &addr)
                    .await
                    .then_some(())
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {ns}\n{}", fleet.logs()));
    }
    let after = pids(&c);
    assert_eq!(
        after.get(&broker.name),
        before.get(&broker.name),
        "the broker was not restarted"
    );
    assert!(alive(broker.pid));
}

/// A broker's live config (GET_BROKER_CONFIG), as key → value.
async fn broker_config(addr: &str) -> BTreeMap<String, String> {
    let Some(r) = flotilla_tests::broker_proc::call(
        &RemotingClient::default(),
        addr,
        RemotingCommand::request(request_code::GET_BROKER_CONFIG),
    )
    .await
    else {
        return BTreeMap::new();
    };
    String::from_utf8_lossy(&r.body)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_broker_key_change_is_applied_without_a_restart() {
    let fleet = Fleet::start(2).await;
    fleet
        .create_cluster(fleet::cluster(
            "livekeys",
            1,
            1,
            1,
            BrokerMode::MasterSlave,
            &[("autoCreateTopicEnable", "false")],
        ))
        .await;
    let c = fleet.wait_running("livekeys").await;
    let broker = brokers(&c).pop().expect("broker member");
    let before = pids(&c);
    assert_eq!(
        broker_config(&broker.address)
            .await
            .get("autoCreateTopicEnable")
            .map(String::as_str),
        Some("false")
    );

    fleet
        .update_cluster("livekeys", |s| {
            if let Some(b) = s.broker.as_mut() {
                b.config
                    .insert("autoCreateTopicEnable".into(), "true".into());
                b.config.insert("defaultTopicQueueNums".into(), "16".into());
            }
        })
        .await;
    let addr = broker.address.clone();
    wait_until("the broker runs with the new values", WAIT, || {
        let addr = addr.clone();
        async move {
            let cfg = broker_config(&addr).await;
            (cfg.get("autoCreateTopicEnable").map(String::as_str) == Some("true")
                && cfg.get("defaultTopicQueueNums").map(String::as_str) == Some("16"))
            .then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fleet.logs()));
    let c = fleet.wait_running("livekeys").await;
    assert_eq!(pids(&c), before, "no instance was restarted");
    assert!(alive(broker.pid));
}

// ------------------------------------------------------------------------------------------
// Commands: a minimal control-plane side of the agent protocol, driven by the test, so the
// test chooses epochs and command ids.

/// What the test sends to the agent over its stream.
type Outbound = mpsc::Receiver<Result<ControlMessage, Status>>;

struct Driver {
    inbound: mpsc::Sender<AgentMessage>,
    outbound: Arc<Mutex<Option<Outbound>>>,
}

#[tonic::async_trait]
impl AgentService for Driver {
    type ConnectStream = ReceiverStream<Result<ControlMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let rx = self
            .outbound
            .lock()
            .await
            .take()
            .ok_or_else(|| Status::resource_exhausted("one agent session per test"))?;
        let mut stream = request.into_inner();
        let inbound = self.inbound.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = stream.message().await {
                if inbound.send(m).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn next_result(
    rx: &mut mpsc::Receiver<AgentMessage>,
    id: &str,
) -> flotilla_proto::agent::v1::CommandResult {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no result for command {id}"))
            .expect("agent stream open");
        if let Some(agent_message::Message::CommandResult(r)) = m.message
            && r.command_id == id
        {
            return r;
        }
    }
}

fn create_topic(id: &str, epoch: i64, topic: &str) -> ControlMessage {
    ControlMessage {
        message: Some(control_message::Message::Command(AgentCommand {
            command_id: id.to_string(),
            epoch,
            expected_generation: 0,
            instance: "cmd-broker-0".to_string(),
            traceparent: String::new(),
            action: Some(command::Action::CreateTopic(Topic {
                name: topic.to_string(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: 6,
                ..Default::default()
            })),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_applied_once_and_stale_epochs_are_refused() {
    let dir = temp_dir("flotilla-agent-cmd-");
    let (in_tx, mut in_rx) = mpsc::channel(256);
    let (out_tx, out_rx) = mpsc::channel(16);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind driver");
    let driver_addr = listener.local_addr().expect("addr");
    let svc = AgentServiceServer::new(Driver {
        inbound: in_tx,
        outbound: Arc::new(Mutex::new(Some(out_rx))),
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let mut cmd = Command::new(bin_path("flotilla-agent"));
    cmd.args([
        "--control-plane",
        &driver_addr.to_string(),
        "--node-id",
        "cmd-node",
        "--data-dir",
        &dir.path().join("agent").display().to_string(),
        "--advertise-address",
        "127.0.0.1",
        "--report-interval-secs",
        "1",
        "--insecure",
    ]);
    let _agent = Proc::spawn("agent", &mut cmd, Some(&dir.path().join("agent.log")));
    let hello = tokio::time::timeout(WAIT, in_rx.recv())
        .await
        .expect("hello in time")
        .expect("agent connected");
    assert!(matches!(
        hello.message,
        Some(agent_message::Message::Hello(_))
    ));

    let port = flotilla_tests::free_broker_port();
    let broker_addr = format!("127.0.0.1:{port}");
    let broker = Instance {
        name: "cmd-broker-0".into(),
        kind: InstanceKind::Broker as i32,
        cluster: "cmd".into(),
        group: "cmd-0".into(),
        config: [
            ("brokerClusterName", "cmd"),
            ("brokerName", "cmd-0"),
            ("brokerId", "0"),
            ("brokerIP1", "127.0.0.1"),
            ("namesrvAddr", &format!("127.0.0.1:{}", free_port())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ports: Some(Ports {
            listen: u32::from(port),
            ha: u32::from(port) + 1,
            dledger: 0,
        }),
        restart_policy: RestartPolicy::Always as i32,
        may_restart: true,
        ..Default::default()
    };
    out_tx
        .send(Ok(ControlMessage {
            message: Some(control_message::Message::DesiredState(DesiredState {
                epoch: 7,
                generation: 1,
                instances: vec![broker],
            })),
        }))
        .await
        .expect("send desired state");
    let b = broker_addr.clone();
    wait_until("broker answers", WAIT, || {
        let b = b.clone();
        async move {
            RemotingClient::default()
                .invoke(
                    &b,
                    RemotingCommand::request(request_code::GET_BROKER_RUNTIME_INFO),
                    Duration::from_secs(2),
                )
                .await
                .ok()
                .filter(|r| r.code == 0)
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        )
    });

    // First delivery applies the command.
    out_tx
        .send(Ok(create_topic("c-1", 7, "CmdTopic")))
        .await
        .expect("send");
    let r = next_result(&mut in_rx, "c-1").await;
    assert!(r.success && !r.duplicate, "{r:?}");
    assert!(
        topic_queues(&RemotingClient::default(), &broker_addr, "CmdTopic")
            .await
            .is_some()
    );

    // Remove the topic behind the agent's back; a repeat of c-1 must not re-apply it.
    let del = RemotingClient::default()
        .invoke(
            &broker_addr,
            RemotingCommand::request(request_code::DELETE_TOPIC_IN_BROKER)
                .with_ext("topic", "CmdTopic"),
            Duration::from_secs(3),
        )
        .await
        .expect("delete topic");
    assert_eq!(del.code, 0, "{:?}", del.remark);
    out_tx
        .send(Ok(create_topic("c-1", 7, "CmdTopic")))
        .await
        .expect("send");
    let r = next_result(&mut in_rx, "c-1").await;
    assert!(
        r.success && r.duplicate,
        "the repeat returns the recorded result: {r:?}"
    );
    assert!(
        topic_queues(&RemotingClient::default(), &broker_addr, "CmdTopic")
            .await
            .is_none(),
        "applied once only"
    );

    // A lower epoch than the highest seen is refused and changes nothing.
    out_tx
        .send(Ok(create_topic("c-2", 6, "Stale")))
        .await
        .expect("send");
    let r = next_result(&mut in_rx, "c-2").await;
    assert!(!r.success, "{r:?}");
    assert_eq!(
        r.error.as_ref().map(|e| e.reason.as_str()),
        Some("STALE_EPOCH"),
        "{r:?}"
    );
    assert!(
        topic_queues(&RemotingClient::default(), &broker_addr, "Stale")
            .await
            .is_none()
    );

    // The current epoch still works.
    out_tx
        .send(Ok(create_topic("c-3", 7, "Fresh")))
        .await
        .expect("send");
    let r = next_result(&mut in_rx, "c-3").await;
    assert!(r.success && !r.duplicate, "{r:?}");
    assert!(
        topic_queues(&RemotingClient::default(), &broker_addr, "Fresh")
            .await
            .is_some()
    );

    // Leadership transfer needs a DLedger leader: this classic broker answers NOT_DLEDGER.
    out_tx
        .send(Ok(ControlMessage {
            message: Some(control_message::Message::Command(AgentCommand {
                command_id: "c-4".to_string(),
                epoch: 7,
                expected_generation: 0,
                instance: "cmd-broker-0".to_string(),
                traceparent: String::new(),
                action: Some(command::Action::TransferLeadership(TransferLeadership {
                    target_self_id: "n1".to_string(),
                })),
            })),
        }))
        .await
        .expect("send");
    let r = next_result(&mut in_rx, "c-4").await;
    assert!(!r.success, "{r:?}");
    assert_eq!(
        r.error.as_ref().map(|e| e.reason.as_str()),
        Some("NOT_DLEDGER"),
        "{r:?}"
    );

    // Leave nothing running: the broker is detached from the agent.
    for pid in fleet::processes_under(dir.path()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_needs_a_restart_rolls_through_the_group_slave_first() {
    let fleet = Fleet::start(2).await;
    fleet
        .create_cluster(fleet::cluster(
            "rolling",
            1,
            1,
            2,
            BrokerMode::MasterSlave,
            &[("autoCreateTopicEnable", "true")],
        ))
        .await;
    let c = fleet.wait_running("rolling").await;
    let before = pids(&c);
    let bs = brokers(&c);
    let master = bs
        .iter()
        .find(|m| m.broker_id == 0)
        .expect("a master")
        .clone();
    let slave = bs
        .iter()
        .find(|m| m.broker_id > 0)
        .expect("a slave")
        .clone();

    // maxMessageSize cannot change at runtime: every broker must restart, one at a time.
    let updated = fleet
        .update_cluster("rolling", |s| {
            if let Some(b) = s.broker.as_mut() {
                b.config.insert("maxMessageSize".into(), "2097152".into());
            }
        })
        .await;
    let generation = updated.metadata.as_ref().map(|m| m.generation).unwrap_or(0);

    // Sample the processes while the change rolls: when did each broker's pid change, and
    // were both ever down at once?
    let mut slave_changed_at = None;
    let mut master_changed_at = None;
    let mut both_down = false;
    let start = tokio::time::Instant::now();
    for i in 0..3000u32 {
        let (m_alive, s_alive) = (alive(master.pid), alive(slave.pid));
        if !m_alive && master_changed_at.is_none() {
            master_changed_at = Some(i);
        }
        if !s_alive && slave_changed_at.is_none() {
            slave_changed_at = Some(i);
        }
        if let Some(c) = fleet.get_cluster("rolling").await {
            let live = brokers(&c)
                .iter()
                .filter(|m| m.pid > 0 && alive(m.pid))
                .count();
            if live == 0 {
                both_down = true;
            }
            let done = fleet::is_running(&c)
                && c.metadata.as_ref().map(|m| m.generation) == Some(generation)
                && master_changed_at.is_some()
                && slave_changed_at.is_some();
            if done {
                break;
            }
        }
        assert!(
            start.elapsed() < fleet::FLEET_WAIT,
            "the change did not roll through in time\n{}",
            fleet.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (Some(s_at), Some(m_at)) = (slave_changed_at, master_changed_at) else {
        panic!("both brokers restart\n{}", fleet.logs());
    };
    assert!(
        s_at < m_at,
        "the slave restarts before the master ({s_at} vs {m_at})"
    );
    assert!(!both_down, "never both brokers down at once");
    let c = fleet.wait_running("rolling").await;
    let after = pids(&c);
    assert_ne!(after.get(&master.name), before.get(&master.name));
    assert_ne!(after.get(&slave.name), before.get(&slave.name));
    assert_eq!(
        after
            .iter()
            .find(|(n, _)| n.contains("namesrv"))
            .map(|(_, p)| *p),
        before
            .iter()
            .find(|(n, _)| n.contains("namesrv"))
            .map(|(_, p)| *p),
        "the nameserver is untouched"
    );
}

//! A fake agent that speaks the real `flotilla.agent.v1` protocol over real gRPC, for the
//! control plane's tests and benchmark (the real agent lives in `agent/`).
//!
//! It says Hello, then answers every `DesiredState` with a `Report` that echoes the desired
//! instances as running and ready, with the desired config hash (what a healthy agent
//! converges to), sends periodic reports as heartbeats, and answers every `Command` with a
//! successful `CommandResult`. Tests can pause its reports (missed heartbeats), close it
//! (disconnect), and wait for desired states. [`cluster`] builds the cluster specs they
//! create.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use flotilla_proto::agent::v1::{
    AgentMessage, Command, CommandResult, ControlMessage, DesiredState, Hello, InstanceObservation,
    InstanceState, Report, agent_message, agent_service_client::AgentServiceClient,
    control_message,
};
use flotilla_proto::v1::{
    BrokerMode, BrokerSpec, Capacity, Cluster, ClusterSpec, InstanceKind, MemberRole,
    NameServerSpec, NodeTopology, ObjectMeta,
};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

/// How a fake agent introduces itself.
#[derive(Debug, Clone)]
pub struct FakeAgentOptions {
    /// Node name.
    pub node_id: String,
    /// Node labels.
    pub labels: HashMap<String, String>,
    /// Advertise address (host).
    pub advertise: String,
    /// Highest epoch it claims to have seen.
    pub highest_epoch_seen: i64,
    /// Heartbeat period.
    pub report_interval: Duration,
    /// Its data dir.
    pub data_dir: String,
    /// Where it says it is (Hello and every report).
    pub topology: Option<NodeTopology>,
}

impl FakeAgentOptions {
    /// Defaults for node `node_id`: advertise `<node_id>.test`, reports every 200 ms.
    pub fn new(node_id: &str) -> Self {
        Self {
            node_id: node_id.to_string(),
            labels: HashMap::new(),
            advertise: format!("{node_id}.test"),
            highest_epoch_seen: 0,
            report_interval: Duration::from_millis(200),
            data_dir: format!("/data/{node_id}"),
            topology: None,
        }
    }
}

struct Shared {
    desired: watch::Sender<Option<DesiredState>>,
    highest_epoch: AtomicI64,
    ended: watch::Sender<Option<Status>>,
    paused: AtomicBool,
    seq: AtomicU64,
    commands: Mutex<Vec<Command>>,
    received: AtomicU64,
}

/// A connected fake agent; dropping it closes the stream.
pub struct FakeAgent {
    /// Node name.
    pub node: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    _outbound: mpsc::Sender<AgentMessage>,
}

fn role_of(i: &flotilla_proto::agent::v1::Instance) -> (i32, i64) {
    if i.kind == InstanceKind::Namesrv as i32 {
        return (MemberRole::Namesrv as i32, 0);
    }
    if i.config.get("enableDLegerCommitLog").map(String::as_str) == Some("true") {
        let leader = i.config.get("dLegerSelfId").map(String::as_str) == Some("n0");
        return if leader {
            (MemberRole::Leader as i32, 0)
        } else {
            (MemberRole::Follower as i32, 1)
        };
    }
    let id: i64 = i
        .config
        .get("brokerId")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if id == 0 {
        (MemberRole::Master as i32, 0)
    } else {
        (MemberRole::Slave as i32, id)
    }
}

/// The report a healthy agent sends for `ds`.
pub fn echo_report(ds: &DesiredState, seq: u64, highest_epoch: i64) -> Report {
    let instances = ds
        .instances
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let (role, broker_id) = role_of(i);
            let listen = if i.kind == InstanceKind::Namesrv as i32 {
                i.config.get("listen").cloned().unwrap_or_default()
            } else {
                format!(
                    "{}:{}",
                    i.config.get("brokerIP1").cloned().unwrap_or_default(),
                    i.ports.map(|p| p.listen).unwrap_or_default()
                )
            };
            InstanceObservation {
                name: i.name.clone(),
                kind: i.kind,
                cluster: i.cluster.clone(),
                pid: 10_000 + i64::try_from(n).unwrap_or(0),
                start_time_ticks: 1,
                state: InstanceState::Running as i32,
                role,
                broker_id,
                config_hash: i.config_hash.clone(),
                ready: true,
                writable: i.kind == InstanceKind::Broker as i32 && broker_id == 0,
                // Caught up: every member of a group reports the same CommitLog.
                commit_log: (i.kind == InstanceKind::Broker as i32)
                    .then(flotilla_proto::v1::CommitLogOffsets::default),
                listen_address: listen,
                // A real broker registers with every nameserver of its config.
                registered_nameservers: i
                    .config
                    .get("namesrvAddr")
                    .map(|l| {
                        l.split(';')
                            .filter(|a| !a.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                ..Default::default()
            }
        })
        .collect();
    Report {
        seq,
        time: Some(SystemTime::now().into()),
        instances,
        applied_generation: ds.generation,
        highest_epoch_seen: highest_epoch,
        limits_mechanism: "rlimit".into(),
        capacity: Some(Capacity {
            memory_mib: 4096,
            cpu_millis: 4000,
            disk_free_bytes: 1 << 34,
        }),
        topology: None,
    }
}

impl FakeAgent {
    /// Connects over `channel` and says Hello. Fails with the control plane's status when it
    /// refuses the session.
    pub async fn connect(channel: Channel, opts: FakeAgentOptions) -> Result<Self, Status> {
        let (tx, rx) = mpsc::channel(64);
        let hello = Hello {
            node_id: opts.node_id.clone(),
            boot_id: "boot-1".into(),
            agent_version: "fake".into(),
            advertise_address: opts.advertise.clone(),
            capacity: Some(Capacity {
                memory_mib: 4096,
                cpu_millis: 4000,
                disk_free_bytes: 1 << 34,
            }),
            labels: opts.labels.clone(),
            inventory: vec![],
            highest_epoch_seen: opts.highest_epoch_seen,
            applied_generation: 0,
            data_dir: opts.data_dir.clone(),
            topology: opts.topology.clone(),
        };
        tx.send(AgentMessage {
            message: Some(agent_message::Message::Hello(hello)),
        })
        .await
        .map_err(|_| Status::internal("fake agent channel closed"))?;
        let mut client = AgentServiceClient::new(channel);
        let mut inbound = client.connect(ReceiverStream::new(rx)).await?.into_inner();
        let shared = Arc::new(Shared {
            desired: watch::channel(None).0,
            highest_epoch: AtomicI64::new(opts.highest_epoch_seen),
            ended: watch::channel(None).0,
            paused: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            commands: Mutex::new(Vec::new()),
            received: AtomicU64::new(0),
        });
        let s = shared.clone();
        let out = tx.clone();
        let interval = opts.report_interval;
        let task = tokio::spawn(async move {
            let send_report = |s: &Shared| {
                if s.paused.load(Ordering::SeqCst) {
                    return None;
                }
                let ds = s.desired.borrow().clone().unwrap_or_default();
                let seq = s.seq.fetch_add(1, Ordering::SeqCst) + 1;
                Some(AgentMessage {
                    message: Some(agent_message::Message::Report(echo_report(
                        &ds,
                        seq,
                        s.highest_epoch.load(Ordering::SeqCst),
                    ))),
                })
            };
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    msg = inbound.message() => match msg {
                        Ok(Some(ControlMessage { message: Some(m) })) => match m {
                            control_message::Message::DesiredState(ds) => {
                                s.highest_epoch.fetch_max(ds.epoch, Ordering::SeqCst);
                                s.received.fetch_add(1, Ordering::SeqCst);
                                s.desired.send_replace(Some(ds));
                                if let Some(r) = send_report(&s)
                                    && out.send(r).await.is_err() { break; }
                            }
                            control_message::Message::Command(c) => {
                                s.highest_epoch.fetch_max(c.epoch, Ordering::SeqCst);
                                let id = c.command_id.clone();
                                s.commands.lock().push(c);
                                let r = AgentMessage {
                                    message: Some(agent_message::Message::CommandResult(CommandResult {
                                        command_id: id,
                                        success: true,
                                        ..Default::default()
                                    })),
                                };
                                if out.send(r).await.is_err() { break; }
                            }
                        },
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            s.ended.send_replace(Some(Status::ok("stream ended")));
                            break;
                        }
                        Err(st) => {
                            s.ended.send_replace(Some(st));
                            break;
                        }
                    },
                    _ = tick.tick() => {
                        if let Some(r) = send_report(&s)
                            && out.send(r).await.is_err() { break; }
                    }
                }
            }
        });
        Ok(Self {
            node: opts.node_id,
            shared,
            task,
            _outbound: tx,
        })
    }

    /// The last desired state received.
    pub fn desired(&self) -> Option<DesiredState> {
        self.shared.desired.borrow().clone()
    }

    /// How many desired states it received.
    pub fn desired_count(&self) -> u64 {
        self.shared.received.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for a desired state satisfying `f`.
    pub async fn wait_desired(
        &self,
        timeout: Duration,
        f: impl Fn(&DesiredState) -> bool,
    ) -> Option<DesiredState> {
        let mut rx = self.shared.desired.subscribe();
        let r = tokio::time::timeout(timeout, rx.wait_for(|d| d.as_ref().is_some_and(&f))).await;
        match r {
            Ok(Ok(d)) => d.clone(),
            _ => None,
        }
    }

    /// Commands received so far.
    pub fn commands(&self) -> Vec<Command> {
        self.shared.commands.lock().clone()
    }

    /// The highest epoch seen.
    pub fn highest_epoch(&self) -> i64 {
        self.shared.highest_epoch.load(Ordering::SeqCst)
    }

    /// Stops (or resumes) sending reports: missed heartbeats.
    pub fn pause_reports(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::SeqCst);
    }

    /// The status the stream ended with, once it ended.
    pub fn ended(&self) -> Option<Status> {
        self.shared.ended.borrow().clone()
    }

    /// Waits up to `timeout` for the stream to end.
    pub async fn wait_ended(&self, timeout: Duration) -> Option<Status> {
        let mut rx = self.shared.ended.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await {
            Ok(Ok(s)) => s.clone(),
            _ => None,
        }
    }

    /// Closes the stream (the agent goes away).
    pub fn close(self) {
        self.task.abort();
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A channel to `addr` (lazy; HTTP/2 multiplexes many agents on one channel).
pub fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .map(|e| e.tcp_nodelay(true).connect_lazy())
        .unwrap_or_else(|_| unreachable_channel())
}

fn unreachable_channel() -> Channel {
    // `http://<SocketAddr>` always parses; this is only for the type checker.
    Channel::from_static("http://127.0.0.1:1").connect_lazy()
}

/// A cluster to create in tests and the benchmark: `namesrvs` nameservers and `groups` broker
/// groups of `per_group` replicas in `mode`, every other field at its default.
pub fn cluster(
    name: &str,
    namesrvs: u32,
    groups: u32,
    per_group: u32,
    mode: BrokerMode,
) -> Cluster {
    Cluster {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            ..Default::default()
        }),
        spec: Some(ClusterSpec {
            nameserver: Some(NameServerSpec {
                replicas: namesrvs,
                port: 0,
                resources: None,
            }),
            broker: Some(BrokerSpec {
                groups,
                replicas_per_group: per_group,
                mode: mode as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

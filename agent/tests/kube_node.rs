//! The agent on Kubernetes, end to end: a real agent session with a real control plane (on
//! the embedded store), the real `kube` client, and a stand-in Kubernetes API server (none
//! can run here) that answers `GET /api/v1/nodes/node-a` and the watch on it from a Node
//! the test edits. The Node's zone, region and hostname reach `GetNode`; cordoning the
//! Kubernetes Node cordons the Flotilla node, uncordoning it uncordons it, and a relabelled
//! zone is reported again.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use flotilla_agent::kube::{NodeWatcher, OnCordon};
use flotilla_agent::{Agent, AgentConfig};
use flotilla_cp::testing::channel;
use flotilla_cp::{Config, ControlPlane};
use flotilla_intent_store::testing::wait_until;
use flotilla_intent_store::{EmbeddedStore, IntentStore};
use flotilla_proto::v1::node_service_client::NodeServiceClient;
use flotilla_proto::v1::{GetNodeRequest, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The Node the stand-in API server serves.
#[derive(Clone)]
struct K8sNode {
    version: u64,
    zone: String,
    unschedulable: bool,
}

impl K8sNode {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "node-a",
                "resourceVersion": self.version.to_string(),
                "labels": {
                    "topology.kubernetes.io/zone": self.zone,
                    "topology.kubernetes.io/region": "eu-west-1",
                    "kubernetes.io/hostname": "ip-10-0-0-7",
                },
            },
            "spec": { "unschedulable": self.unschedulable },
        })
    }
}

async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

async fn chunk(s: &mut TcpStream, data: &str) -> std::io::Result<()> {
    s.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())
        .await
}

/// One connection: GETs of the Node (keep-alive), or a watch streaming every change.
async fn serve(mut s: TcpStream, node: watch::Receiver<K8sNode>) {
    while let Some(head) = read_head(&mut s).await {
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        if path.starts_with("/api/v1/nodes/node-a") {
            let body = node.borrow().json().to_string();
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
        } else if path.starts_with("/api/v1/nodes?") && path.contains("watch=true") {
            assert!(
                path.contains("fieldSelector=metadata.name%3Dnode-a"),
                "the watch is on one Node: {path}"
            );
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut node = node.clone();
            node.mark_unchanged();
            while node.changed().await.is_ok() {
                let obj = node.borrow_and_update().json();
                let line =
                    serde_json::json!({"type": "MODIFIED", "object": obj}).to_string() + "\n";
                if chunk(&mut s, &line).await.is_err() {
                    return;
                }
            }
            return;
        } else {
            let resp = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
            let _ = s.write_all(resp.as_bytes()).await;
            return;
        }
    }
}

async fn api_server(node: watch::Receiver<K8sNode>) -> (String, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s, node.clone()));
        }
    });
    (url, task)
}

fn kube_client(url: &str) -> kube::Client {
    flotilla_agent::kube::install_crypto_provider();
    let uri: tonic::codegen::http::Uri = url.parse().unwrap();
    kube::Client::try_from(kube::Config::new(uri)).unwrap()
}

async fn get_node(cp: &mut NodeServiceClient<tonic::transport::Channel>) -> Option<Node> {
    cp.get_node(GetNodeRequest {
        name: "node-a".into(),
    })
    .await
    .ok()
    .map(|r| r.into_inner())
}

#[tokio::test]
async fn the_node_reads_its_kubernetes_node_and_follows_cordons() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn IntentStore> =
        Arc::new(EmbeddedStore::open(dir.path().join("cp")).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        advertise: "cp-test".into(),
        forward_to_leader: false,
        ..Config::default()
    };
    let cp = ControlPlane::start(config, store, listener).await.unwrap();
    let cp_addr = cp.addr.to_string();

    let (node_tx, node_rx) = watch::channel(K8sNode {
        version: 1,
        zone: "eu-west-1a".into(),
        unschedulable: false,
    });
    let (api_url, api_task) = api_server(node_rx).await;

    // The watcher alone reads the Node as the API server has it.
    let view = NodeWatcher::new(kube_client(&api_url), "node-a")
        .get()
        .await
        .unwrap();
    assert_eq!(view.topology.zone, "eu-west-1a");
    assert_eq!(view.topology.hostname, "ip-10-0-0-7");
    assert!(!view.unschedulable);

    let agent = Agent::new(AgentConfig {
        control_plane: cp_addr.clone(),
        node_id: "node-a".into(),
        data_dir: dir.path().join("agent"),
        advertise_address: "127.0.0.1".into(),
        labels: Default::default(),
        bin_dir: dir.path().to_path_buf(),
        report_interval: Duration::from_millis(200),
        tick_interval: Duration::from_millis(200),
        stop_instances_on_exit: false,
        tls: None,
    })
    .unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let health = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_addr = health.local_addr().unwrap();
    tokio::spawn(flotilla_agent::health::serve(
        health,
        agent.session_state(),
        stop_rx.clone(),
    ));
    let run = tokio::spawn(agent.clone().run(stop_rx.clone()));
    let follow = flotilla_agent::kube::spawn(
        agent.clone(),
        kube_client(&api_url),
        "node-a",
        &cp_addr,
        OnCordon::Cordon,
        stop_rx,
    );

    let mut nodes = NodeServiceClient::new(channel(cp.addr));
    let zone_is = |zone: &'static str| {
        let nodes = nodes.clone();
        move || {
            let mut nodes = nodes.clone();
            async move {
                let n = get_node(&mut nodes).await?;
                let t = n.status.as_ref()?.topology.clone()?;
                (t.zone == zone).then_some(n)
            }
        }
    };
    // Readiness: the health service says `session` is SERVING once the session is open.
    let hc = tonic_health::pb::health_client::HealthClient::new(channel(health_addr));
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let check = |service: &'static str| {
        let mut hc = hc.clone();
        async move {
            let r = hc
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .ok()?;
            Some(r.into_inner().status)
        }
    };
    wait_until("the agent's health reports an open session", || async {
        (check(flotilla_agent::health::SESSION_SERVICE).await? == serving).then_some(())
    })
    .await;
    assert_eq!(check("").await, Some(serving), "alive");
    let n = wait_until(
        "the node's zone reaches the control plane",
        zone_is("eu-west-1a"),
    )
    .await;
    let t = n.status.unwrap().topology.unwrap();
    assert_eq!(
        (t.region.as_str(), t.hostname.as_str()),
        ("eu-west-1", "ip-10-0-0-7")
    );
    assert!(
        !n.spec.unwrap().cordoned,
        "a schedulable Node leaves the node alone"
    );

    // kubectl cordon node-a
    node_tx.send_modify(|n| {
        n.version = 2;
        n.unschedulable = true;
    });
    wait_until("cordoning the Kubernetes Node cordons the node", || {
        let mut nodes = nodes.clone();
        async move { get_node(&mut nodes).await?.spec.filter(|s| s.cordoned) }
    })
    .await;

    // kubectl uncordon node-a, and the Node moved to another zone.
    node_tx.send_modify(|n| {
        n.version = 3;
        n.unschedulable = false;
        n.zone = "eu-west-1b".into();
    });
    wait_until("uncordoning the Kubernetes Node uncordons the node", || {
        let mut nodes = nodes.clone();
        async move { get_node(&mut nodes).await?.spec.filter(|s| !s.cordoned) }
    })
    .await;
    wait_until("a relabelled zone is reported again", zone_is("eu-west-1b")).await;
    let final_node = get_node(&mut nodes).await.unwrap();
    assert!(!final_node.spec.unwrap().draining);

    stop_tx.send(true).unwrap();
    follow.await.unwrap();
    run.await.unwrap();
    api_task.abort();
    cp.shutdown().await;
}

//! The nameserver over real loopback connections, driven by `flotilla_remoting`'s client:
//! registration and routes, heartbeats and data versions, removal on connection close and
//! on expiry, write permissions, KV config, topic lists, config, and malformed requests.
// Test helpers may unwrap: a panic is a test failure with a location.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flotilla_namesrv::config::NamesrvConfig;
use flotilla_namesrv::{ManualClock, Namesrv};
use flotilla_remoting::protocol::{
    ClusterInfo, DataVersion, KVTable, QueueData, RegisterBrokerBody, TopicConfig,
    TopicConfigSerializeWrapper, TopicList, TopicRouteData, decode_body, encode_body,
};
use flotilla_remoting::{RemotingClient, RemotingCommand, perm, request_code, response_code};
use tempfile::TempDir;

const T: Duration = Duration::from_secs(5);

struct Fixture {
    ns: Namesrv,
    addr: String,
    clock: Arc<ManualClock>,
    dir: TempDir,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir).await
}

async fn start_in(dir: TempDir) -> Fixture {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut config = NamesrvConfig {
        listen: "127.0.0.1:0".into(),
        kv_config_path: dir.path().join("namesrv/kvConfig.json"),
        ..NamesrvConfig::default()
    };
    config.runtime.scan_interval = Duration::from_millis(10);
    let ns = Namesrv::start_with_clock(config, clock.clone())
        .await
        .unwrap();
    let addr = ns.local_addr().to_string();
    Fixture {
        ns,
        addr,
        clock,
        dir,
    }
}

/// Polls `cond` every 10 ms for up to 10 s.
async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..1000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn body(counter: i64, topics: &[(&str, i32)]) -> Vec<u8> {
    let mut w = TopicConfigSerializeWrapper {
        data_version: DataVersion {
            state_version: 0,
            timestamp: 1_000,
            counter,
        },
        ..TopicConfigSerializeWrapper::default()
    };
    for (name, q) in topics {
        w.topic_config_table
            .insert(name.to_string(), TopicConfig::new(*name, *q));
    }
    encode_body(&RegisterBrokerBody {
        topic_config_serialize_wrapper: w,
        filter_server_list: vec![],
    })
    .unwrap()
}

fn register(
    name: &str,
    id: i64,
    addr: &str,
    counter: i64,
    topics: &[(&str, i32)],
) -> RemotingCommand {
    RemotingCommand::request(request_code::REGISTER_BROKER)
        .with_ext("brokerName", name)
        .with_ext("brokerAddr", addr)
        .with_ext("clusterName", "DefaultCluster")
        .with_ext("haServerAddr", format!("{addr}-ha"))
        .with_ext("brokerId", id)
        .with_ext("heartbeatTimeoutMillis", 10_000)
        .with_ext("enableActingMaster", false)
        .with_ext("compressed", false)
        .with_ext("bodyCrc32", 0)
        .with_body(body(counter, topics))
}

fn get_route(topic: &str) -> RemotingCommand {
    RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic)
}

async fn call(c: &RemotingClient, addr: &str, cmd: RemotingCommand) -> RemotingCommand {
    c.invoke(addr, cmd, T).await.unwrap()
}

async fn route(c: &RemotingClient, addr: &str, topic: &str) -> Option<TopicRouteData> {
    let r = call(c, addr, get_route(topic)).await;
    match r.code {
        response_code::SUCCESS => Some(decode_body(&r.body).unwrap()),
        response_code::TOPIC_NOT_EXIST => None,
        other => panic!("unexpected code {other}: {:?}", r.remark),
    }
}

async fn cluster_info(c: &RemotingClient, addr: &str) -> ClusterInfo {
    let r = call(
        c,
        addr,
        RemotingCommand::request(request_code::GET_BROKER_CLUSTER_INFO),
    )
    .await;
    assert_eq!(r.code, response_code::SUCCESS);
    decode_body(&r.body).unwrap()
}

#[tokio::test]
async fn register_routes_heartbeat_and_data_version() {
    let f = start().await;
    let a = &f.addr;
    let c = RemotingClient::default();

    let r = call(
        &c,
        a,
        register("b1", 0, "127.0.0.1:10911", 1, &[("T", 4), ("U", 2)]),
    )
    .await;
    assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.ext("masterAddr"), None);
    assert!(r.body.is_empty(), "no order config yet");

    // Standard JSON for current clients.
    let resp = call(&c, a, get_route("T")).await;
    assert_eq!(resp.code, response_code::SUCCESS);
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    assert!(
        text.contains(r#""brokerAddrs":{"0":"127.0.0.1:10911"}"#),
        "{text}"
    );
    let rt: TopicRouteData = decode_body(&resp.body).unwrap();
    assert_eq!(rt.queue_datas.len(), 1);
    assert_eq!(rt.queue_datas[0].read_queue_nums, 4);
    assert_eq!(rt.queue_datas[0].perm, perm::READ_WRITE);
    assert_eq!(rt.broker_datas[0].cluster, "DefaultCluster");
    assert_eq!(rt.order_topic_conf, None);

    // Legacy integer keys for old clients, unless they ask for standard JSON.
    let mut old = get_route("T");
    old.version = 300;
    let resp = call(&c, a, old.clone()).await;
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    assert!(
        text.contains(r#""brokerAddrs":{0:"127.0.0.1:10911"}"#),
        "{text}"
    );
    let resp = call(&c, a, old.with_ext("acceptStandardJsonOnly", "true")).await;
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    assert!(text.contains(r#"{"0":"127.0.0.1:10911"}"#), "{text}");

    // A slave is told the master's addresses.
    let r = call(&c, a, register("b1", 1, "127.0.0.1:10921", 1, &[("T", 4)])).await;
    assert_eq!(r.code, response_code::SUCCESS);
    assert_eq!(r.ext("masterAddr"), Some("127.0.0.1:10911"));
    assert_eq!(r.ext("haServerAddr"), Some("127.0.0.1:10911-ha"));
    let ci = cluster_info(&c, a).await;
    assert_eq!(ci.broker_addr_table["b1"].broker_addrs.len(), 2);
    assert!(ci.cluster_addr_table["DefaultCluster"].contains("b1"));

    // Order config reaches routes and registering brokers.
    let put = RemotingCommand::request(request_code::PUT_KV_CONFIG)
        .with_ext("namespace", "ORDER_TOPIC_CONFIG")
        .with_ext("key", "T")
        .with_ext("value", "b1:4");
    assert_eq!(call(&c, a, put).await.code, response_code::SUCCESS);
    assert_eq!(
        route(&c, a, "T").await.unwrap().order_topic_conf.as_deref(),
        Some("b1:4")
    );
    let r = call(
        &c,
        a,
        register("b1", 0, "127.0.0.1:10911", 1, &[("T", 4), ("U", 2)]),
    )
    .await;
    let kv: KVTable = decode_body(&r.body).unwrap();
    assert_eq!(kv.table["T"], "b1:4");

    // Heartbeats refresh; QUERY_DATA_VERSION compares.
    let hb = RemotingCommand::request(request_code::BROKER_HEARTBEAT)
        .with_ext("clusterName", "DefaultCluster")
        .with_ext("brokerAddr", "127.0.0.1:10911")
        .with_ext("brokerName", "b1")
        .with_ext("brokerId", 0);
    assert_eq!(call(&c, a, hb).await.code, response_code::SUCCESS);
    let qdv = |counter: i64| {
        RemotingCommand::request(request_code::QUERY_DATA_VERSION)
            .with_ext("clusterName", "DefaultCluster")
            .with_ext("brokerAddr", "127.0.0.1:10911")
            .with_ext("brokerName", "b1")
            .with_ext("brokerId", 0)
            .with_body(
                encode_body(&DataVersion {
                    state_version: 0,
                    timestamp: 1_000,
                    counter,
                })
                .unwrap(),
            )
    };
    let r = call(&c, a, qdv(1)).await;
    assert_eq!(r.ext("changed"), Some("false"));
    let current: DataVersion = decode_body(&r.body).unwrap();
    assert_eq!(current.counter, 1);
    assert_eq!(call(&c, a, qdv(2)).await.ext("changed"), Some("true"));

    // A new data version updates the queues; the slave's topics never count.
    call(&c, a, register("b1", 0, "127.0.0.1:10911", 2, &[("T", 8)])).await;
    assert_eq!(
        route(&c, a, "T").await.unwrap().queue_datas[0].read_queue_nums,
        8
    );
    assert!(route(&c, a, "nope").await.is_none());

    // UNREGISTER removes the master; the slave keeps the group readable.
    let unreg = RemotingCommand::request(request_code::UNREGISTER_BROKER)
        .with_ext("clusterName", "DefaultCluster")
        .with_ext("brokerAddr", "127.0.0.1:10911")
        .with_ext("brokerName", "b1")
        .with_ext("brokerId", 0);
    assert_eq!(call(&c, a, unreg).await.code, response_code::SUCCESS);
    let rt = route(&c, a, "T").await.unwrap();
    assert_eq!(rt.broker_datas[0].master_addr(), None);
    assert_eq!(rt.broker_datas[0].broker_addrs.len(), 1);
    f.ns.shutdown().await;
}

#[tokio::test]
async fn closing_the_connection_unregisters_the_broker() {
    let f = start().await;
    let a = f.addr.clone();
    let admin = RemotingClient::default();
    let broker = RemotingClient::default();
    let stays = RemotingClient::default();

    call(
        &broker,
        &a,
        register("b1", 0, "127.0.0.1:10911", 1, &[("T", 4)]),
    )
    .await;
    call(
        &stays,
        &a,
        register("b2", 0, "127.0.0.1:10912", 1, &[("T", 4)]),
    )
    .await;
    assert_eq!(route(&admin, &a, "T").await.unwrap().queue_datas.len(), 2);
    assert_eq!(f.ns.route().live_broker_count(), 2);

    broker.shutdown();
    wait_until("b1 removed after its connection closed", || {
        let admin = admin.clone();
        let a = a.clone();
        async move {
            !cluster_info(&admin, &a)
                .await
                .broker_addr_table
                .contains_key("b1")
        }
    })
    .await;
    let rt = route(&admin, &a, "T").await.unwrap();
    assert_eq!(rt.queue_datas.len(), 1);
    assert_eq!(rt.queue_datas[0].broker_name, "b2");
    assert!(f.ns.route().is_live("DefaultCluster", "127.0.0.1:10912"));

    stays.shutdown();
    wait_until("topic gone with the last broker", || {
        let admin = admin.clone();
        let a = a.clone();
        async move { route(&admin, &a, "T").await.is_none() }
    })
    .await;
    assert!(cluster_info(&admin, &a).await.cluster_addr_table.is_empty());
    f.ns.shutdown().await;
}

#[tokio::test]
async fn silent_brokers_expire_on_the_injected_clock() {
    let f = start().await;
    let a = f.addr.clone();
    let admin = RemotingClient::default();
    let broker = RemotingClient::default();
    call(
        &broker,
        &a,
        register("b1", 0, "127.0.0.1:10911", 1, &[("T", 4)]),
    )
    .await;
    let ch = broker.channel(&a).await.unwrap();

    // Within the 10 s timeout, a heartbeat keeps it: 9 s + 9 s of silence in total.
    f.clock.advance(9_000);
    let hb = RemotingCommand::request(request_code::BROKER_HEARTBEAT)
        .with_ext("clusterName", "DefaultCluster")
        .with_ext("brokerAddr", "127.0.0.1:10911");
    assert_eq!(call(&broker, &a, hb).await.code, response_code::SUCCESS);
    f.clock.advance(9_000);
    assert!(f.ns.route().scan_not_active_brokers().is_empty());
    assert!(route(&admin, &a, "T").await.is_some());

    f.clock.advance(2_000);
    wait_until("expired broker removed by the periodic scan", || {
        let admin = admin.clone();
        let a = a.clone();
        async move { route(&admin, &a, "T").await.is_none() }
    })
    .await;
    assert_eq!(f.ns.route().live_broker_count(), 0);
    // The nameserver also closes the expired broker's connection.
    wait_until("expired broker's connection closed", || {
        let ch = ch.clone();
        async move { ch.is_closed() }
    })
    .await;
    f.ns.shutdown().await;
}

#[tokio::test]
async fn wipe_and_add_write_perm_change_routes() {
    let f = start().await;
    let a = &f.addr;
    let c = RemotingClient::default();
    call(
        &c,
        a,
        register("b1", 0, "127.0.0.1:10911", 1, &[("T", 4), ("U", 4)]),
    )
    .await;
    call(&c, a, register("b2", 0, "127.0.0.1:10912", 1, &[("T", 4)])).await;

    let wipe = RemotingCommand::request(request_code::WIPE_WRITE_PERM_OF_BROKER)
        .with_ext("brokerName", "b1");
    let r = call(&c, a, wipe).await;
    assert_eq!(r.code, response_code::SUCCESS);
    assert_eq!(r.ext("wipeTopicCount"), Some("2"));
    let rt = route(&c, a, "T").await.unwrap();
    let perm_of = |rt: &TopicRouteData, b: &str| {
        rt.queue_datas
            .iter()
            .find(|q| q.broker_name == b)
            .unwrap()
            .perm
    };
    assert_eq!(perm_of(&rt, "b1"), perm::READ);
    assert_eq!(perm_of(&rt, "b2"), perm::READ_WRITE);
    assert_eq!(rt.writable_queue_datas().count(), 1);
    // A periodic re-registration with the same data version does not undo the wipe.
    call(
        &c,
        a,
        register("b1", 0, "127.0.0.1:10911", 1, &[("T", 4), ("U", 4)]),
    )
    .await;
    assert_eq!(perm_of(&route(&c, a, "T").await.unwrap(), "b1"), perm::READ);

    let add = RemotingCommand::request(request_code::ADD_WRITE_PERM_OF_BROKER)
        .with_ext("brokerName", "b1");
    let r = call(&c, a, add).await;
    assert_eq!(r.ext("addTopicCount"), Some("2"));
    assert_eq!(
        perm_of(&route(&c, a, "T").await.unwrap(), "b1"),
        perm::READ_WRITE
    );
    f.ns.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_error_responses() {
    let f = start().await;
    let a = &f.addr;
    let c = RemotingClient::default();

    let mut missing = register("b1", 0, "127.0.0.1:10911", 1, &[("T", 4)]);
    missing.ext_fields.remove("brokerName");
    let r = call(&c, a, missing).await;
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert_eq!(r.remark.as_deref(), Some("missing header field brokerName"));

    let bad_id = register("b1", 0, "127.0.0.1:10911", 1, &[]).with_ext("brokerId", "zero");
    let r = call(&c, a, bad_id).await;
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains("brokerId"));

    let empty_name = register("", 0, "127.0.0.1:10911", 1, &[]);
    assert_eq!(
        call(&c, a, empty_name).await.code,
        response_code::INVALID_PARAMETER
    );

    let bad_body = register("b1", 0, "127.0.0.1:10911", 1, &[]).with_body(&b"{not json"[..]);
    let r = call(&c, a, bad_body).await;
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains("RegisterBrokerBody"));

    let compressed = register("b1", 0, "127.0.0.1:10911", 1, &[])
        .with_ext("compressed", true)
        .with_body(&b"\x78\x9c\x03\x00"[..]);
    let r = call(&c, a, compressed).await;
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains("compressed"));

    // CRC: a wrong value is refused; Java's 31-bit value is accepted.
    let good = register("b1", 0, "127.0.0.1:10911", 1, &[("T", 4)]);
    let crc = crc32fast::hash(&good.body);
    let r = call(
        &c,
        a,
        good.clone()
            .with_ext("bodyCrc32", crc.wrapping_add(1) & 0x7FFF_FFFF),
    )
    .await;
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert_eq!(r.remark.as_deref(), Some("crc32 not match"));
    assert!(
        route(&c, a, "T").await.is_none(),
        "refused registration left no trace"
    );
    let r = call(&c, a, good.with_ext("bodyCrc32", crc & 0x7FFF_FFFF)).await;
    assert_eq!(r.code, response_code::SUCCESS);

    let r = call(
        &c,
        a,
        RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC),
    )
    .await;
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert_eq!(r.remark.as_deref(), Some("missing header field topic"));

    let r = call(&c, a, get_route("Missing")).await;
    assert_eq!(r.code, response_code::TOPIC_NOT_EXIST);
    assert!(
        r.remark
            .unwrap()
            .starts_with("No topic route info in name server for the topic: Missing")
    );

    let r = call(&c, a, RemotingCommand::request(9999)).await;
    assert_eq!(r.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        r.remark.as_deref(),
        Some(" request type 9999 not supported")
    );

    let r = call(
        &c,
        a,
        RemotingCommand::request(request_code::QUERY_DATA_VERSION)
            .with_ext("clusterName", "DefaultCluster")
            .with_ext("brokerAddr", "x:1")
            .with_body(&b"\"nope\""[..]),
    )
    .await;
    assert_eq!(r.code, response_code::SYSTEM_ERROR);

    let r = call(
        &c,
        a,
        RemotingCommand::request(request_code::REGISTER_TOPIC_IN_NAMESRV)
            .with_ext("topic", "R")
            .with_body(&b"{{{"[..]),
    )
    .await;
    assert_eq!(r.code, response_code::SYSTEM_ERROR);

    for code in [
        request_code::UNREGISTER_BROKER,
        request_code::BROKER_HEARTBEAT,
        request_code::PUT_KV_CONFIG,
        request_code::GET_KV_CONFIG,
        request_code::DELETE_KV_CONFIG,
        request_code::GET_KVLIST_BY_NAMESPACE,
        request_code::DELETE_TOPIC_IN_NAMESRV,
        request_code::WIPE_WRITE_PERM_OF_BROKER,
        request_code::GET_TOPICS_BY_CLUSTER,
    ] {
        let r = call(&c, a, RemotingCommand::request(code)).await;
        assert_eq!(r.code, response_code::SYSTEM_ERROR, "code {code}");
        assert!(
            r.remark.unwrap().starts_with("missing header field"),
            "code {code}"
        );
    }

    // Still serving.
    assert!(route(&c, a, "T").await.is_some());
    f.ns.shutdown().await;
}

#[tokio::test]
async fn kv_config_topics_and_namesrv_config() {
    let f = start().await;
    let a = f.addr.clone();
    let c = RemotingClient::default();

    // KV: put, get, list, delete, miss.
    let put = |k: &str, v: &str| {
        RemotingCommand::request(request_code::PUT_KV_CONFIG)
            .with_ext("namespace", "ns")
            .with_ext("key", k)
            .with_ext("value", v)
    };
    let get = |k: &str| {
        RemotingCommand::request(request_code::GET_KV_CONFIG)
            .with_ext("namespace", "ns")
            .with_ext("key", k)
    };
    assert_eq!(
        call(&c, &a, put("k1", "v1")).await.code,
        response_code::SUCCESS
    );
    assert_eq!(
        call(&c, &a, put("k2", "v2")).await.code,
        response_code::SUCCESS
    );
    assert_eq!(call(&c, &a, get("k1")).await.ext("value"), Some("v1"));
    let r = call(&c, &a, get("zz")).await;
    assert_eq!(r.code, response_code::QUERY_NOT_FOUND);
    let list =
        RemotingCommand::request(request_code::GET_KVLIST_BY_NAMESPACE).with_ext("namespace", "ns");
    let t: KVTable = decode_body(&call(&c, &a, list).await.body).unwrap();
    assert_eq!(t.table.len(), 2);
    let del = RemotingCommand::request(request_code::DELETE_KV_CONFIG)
        .with_ext("namespace", "ns")
        .with_ext("key", "k1");
    assert_eq!(call(&c, &a, del).await.code, response_code::SUCCESS);
    assert_eq!(
        call(&c, &a, get("k1")).await.code,
        response_code::QUERY_NOT_FOUND
    );
    let list = RemotingCommand::request(request_code::GET_KVLIST_BY_NAMESPACE)
        .with_ext("namespace", "other");
    assert_eq!(
        call(&c, &a, list).await.code,
        response_code::QUERY_NOT_FOUND
    );

    // Topics: two clusters, delete per cluster, register directly, list.
    call(
        &c,
        &a,
        register("b1", 0, "127.0.0.1:10911", 1, &[("T", 4), ("A", 1)]),
    )
    .await;
    let other =
        register("b2", 0, "127.0.0.1:10912", 1, &[("T", 4)]).with_ext("clusterName", "Other");
    call(&c, &a, other).await;
    let by_cluster = |cl: &str| {
        RemotingCommand::request(request_code::GET_TOPICS_BY_CLUSTER).with_ext("cluster", cl)
    };
    let tl: TopicList = decode_body(&call(&c, &a, by_cluster("Other")).await.body).unwrap();
    assert_eq!(tl.topic_list.iter().collect::<Vec<_>>(), vec!["T"]);
    let del = RemotingCommand::request(request_code::DELETE_TOPIC_IN_NAMESRV)
        .with_ext("topic", "T")
        .with_ext("clusterName", "Other");
    assert_eq!(call(&c, &a, del).await.code, response_code::SUCCESS);
    let rt = route(&c, &a, "T").await.unwrap();
    assert_eq!(rt.queue_datas.len(), 1);
    assert_eq!(rt.queue_datas[0].broker_name, "b1");
    let reg_topic = RemotingCommand::request(request_code::REGISTER_TOPIC_IN_NAMESRV)
        .with_ext("topic", "R")
        .with_body(
            encode_body(&TopicRouteData {
                queue_datas: vec![QueueData {
                    broker_name: "b2".into(),
                    read_queue_nums: 3,
                    write_queue_nums: 3,
                    perm: 6,
                    topic_sys_flag: 0,
                }],
                ..TopicRouteData::default()
            })
            .unwrap(),
        );
    assert_eq!(call(&c, &a, reg_topic).await.code, response_code::SUCCESS);
    assert_eq!(
        route(&c, &a, "R").await.unwrap().broker_datas[0].cluster,
        "Other"
    );
    let all = call(
        &c,
        &a,
        RemotingCommand::request(request_code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
    )
    .await;
    let tl: TopicList = decode_body(&all.body).unwrap();
    assert_eq!(
        tl.topic_list.iter().collect::<Vec<_>>(),
        vec!["A", "R", "T"]
    );
    let del =
        RemotingCommand::request(request_code::DELETE_TOPIC_IN_NAMESRV).with_ext("topic", "T");
    call(&c, &a, del).await;
    assert!(route(&c, &a, "T").await.is_none());

    // Namesrv config: read, update, black list, switch off topic lists.
    let cfg = call(
        &c,
        &a,
        RemotingCommand::request(request_code::GET_NAMESRV_CONFIG),
    )
    .await;
    let text = String::from_utf8(cfg.body.to_vec()).unwrap();
    assert!(text.contains("scanNotActiveBrokerInterval=10\n"), "{text}");
    let upd = RemotingCommand::request(request_code::UPDATE_NAMESRV_CONFIG).with_body(
        &b"enableAllTopicList=false\nscanNotActiveBrokerInterval=20\nsomethingElse=1\n"[..],
    );
    assert_eq!(call(&c, &a, upd).await.code, response_code::SUCCESS);
    let all = call(
        &c,
        &a,
        RemotingCommand::request(request_code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
    )
    .await;
    assert_eq!(all.code, response_code::SYSTEM_ERROR);
    assert_eq!(all.remark.as_deref(), Some("disable"));
    assert_eq!(
        f.ns.config().runtime.scan_interval,
        Duration::from_millis(20)
    );
    let upd = RemotingCommand::request(request_code::UPDATE_NAMESRV_CONFIG)
        .with_body(&b"kvConfigPath=/etc/passwd\n"[..]);
    assert_eq!(call(&c, &a, upd).await.code, response_code::NO_PERMISSION);
    let upd = RemotingCommand::request(request_code::UPDATE_NAMESRV_CONFIG)
        .with_body(&b"enableTopicList=perhaps\n"[..]);
    assert_eq!(
        call(&c, &a, upd).await.code,
        response_code::INVALID_PARAMETER
    );
    assert!(
        f.ns.config().runtime.enable_topic_list,
        "a rejected update changes nothing"
    );

    // The KV config survives a restart.
    f.ns.shutdown().await;
    let dir = f.dir;
    assert!(dir.path().join("namesrv/kvConfig.json").exists());
    let f2 = start_in(dir).await;
    let c2 = RemotingClient::default();
    assert_eq!(
        call(&c2, &f2.addr, get("k2")).await.ext("value"),
        Some("v2")
    );
    f2.ns.shutdown().await;
}

#[tokio::test]
async fn register_broker_with_junk_topics_is_refused_and_changes_nothing() {
    let f = start().await;
    let c = RemotingClient::default();
    let ok = call(
        &c,
        &f.addr,
        register("broker-a", 0, "127.0.0.1:10911", 1, &[("Good", 4)]),
    )
    .await;
    assert_eq!(ok.code, response_code::SUCCESS);
    let long = "x".repeat(128);
    for junk in ["bad.topic", "sp ace", long.as_str(), "t\u{e9}"] {
        let r = call(
            &c,
            &f.addr,
            register(
                "broker-b",
                0,
                "127.0.0.1:20911",
                1,
                &[("Fine", 4), (junk, 4)],
            ),
        )
        .await;
        assert_eq!(
            r.code,
            response_code::INVALID_PARAMETER,
            "{junk:?}: {:?}",
            r.remark
        );
        assert!(r.remark.unwrap_or_default().contains("topic"));
    }
    // Nothing of broker-b reached the table: not even its valid topic.
    assert!(route(&c, &f.addr, "Fine").await.is_none());
    assert!(
        !cluster_info(&c, &f.addr)
            .await
            .broker_addr_table
            .contains_key("broker-b")
    );
    assert!(route(&c, &f.addr, "Good").await.is_some());
    let r = call(
        &c,
        &f.addr,
        RemotingCommand::request(request_code::REGISTER_TOPIC_IN_NAMESRV).with_ext("topic", "a/b"),
    )
    .await;
    assert_eq!(r.code, response_code::INVALID_PARAMETER);
}

#[tokio::test]
async fn with_acl_state_changes_need_an_admin_signature() {
    use flotilla_remoting::SessionCredentials;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("conf")).unwrap();
    std::fs::write(
        dir.path().join("conf/plain_acl.yml"),
        "accounts:\n  - accessKey: brokeradmin\n    secretKey: admin-secret\n    admin: true\n  \
         - accessKey: appuser1\n    secretKey: app-secret\n    defaultTopicPerm: PUB|SUB\n",
    )
    .unwrap();
    let mut config = NamesrvConfig {
        listen: "127.0.0.1:0".into(),
        kv_config_path: dir.path().join("namesrv/kvConfig.json"),
        rocketmq_home: Some(dir.path().display().to_string()),
        acl_enable: true,
        ..NamesrvConfig::default()
    };
    config.runtime.scan_interval = Duration::from_millis(10);
    let ns = Namesrv::start(config).await.unwrap();
    let addr = ns.local_addr().to_string();
    let anon = RemotingClient::default();
    let app = RemotingClient::default()
        .with_credentials(SessionCredentials::new("appuser1", "app-secret"));
    let forged = RemotingClient::default()
        .with_credentials(SessionCredentials::new("brokeradmin", "guessed-secret"));
    let admin = RemotingClient::default()
        .with_credentials(SessionCredentials::new("brokeradmin", "admin-secret"));
    let reg = || register("broker-a", 0, "127.0.0.1:10911", 1, &[("TopicA", 4)]);
    for (who, c) in [
        ("anonymous", &anon),
        ("non-admin", &app),
        ("forged", &forged),
    ] {
        let r = call(c, &addr, reg()).await;
        assert_eq!(
            r.code,
            response_code::NO_PERMISSION,
            "{who}: {:?}",
            r.remark
        );
        let put = RemotingCommand::request(request_code::PUT_KV_CONFIG)
            .with_ext("namespace", "ns")
            .with_ext("key", "k")
            .with_ext("value", "v");
        assert_eq!(
            call(c, &addr, put).await.code,
            response_code::NO_PERMISSION,
            "{who}"
        );
    }
    assert!(
        route(&anon, &addr, "TopicA").await.is_none(),
        "no refused registration applied"
    );
    assert!(ns.kv().get("ns", "k").is_none());
    assert_eq!(
        call(&admin, &addr, reg()).await.code,
        response_code::SUCCESS
    );
    // Route queries: open unsigned, and for a signed non-admin account.
    assert!(route(&anon, &addr, "TopicA").await.is_some());
    assert!(route(&app, &addr, "TopicA").await.is_some());
    let r = call(&forged, &addr, get_route("TopicA")).await;
    assert_eq!(
        r.code,
        response_code::NO_PERMISSION,
        "a forged signature is never accepted"
    );
    ns.shutdown().await;
}

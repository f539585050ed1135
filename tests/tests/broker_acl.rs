//! End-to-end: ACL 1.0 on `flotilla-namesrv` and `flotilla-broker` (`aclEnable=true`,
//! `<rocketmqHome>/conf/plain_acl.yml`), with a real client we did not write: Apache's C++
//! client (PyPI `rocketmq` 0.4.4, `set_session_credentials`), which signs as RocketMQ's
//! ACL 1.0 clients do.
//!
//! What must hold: the client with the right keys sends and consumes; a wrong secret, no
//! credentials, and an account with SUB only cannot send, and nothing is stored; anonymous
//! or non-admin admin requests (create topic, register or unregister a broker) are refused
//! with NO_PERMISSION and change neither the broker nor the nameserver; the broker's own
//! registration is signed (the nameserver only accepts it from an admin account); an edit
//! of `plain_acl.yml` applies without a restart, and a broken edit keeps the old rules.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flotilla_remoting::protocol::encode_body;
use flotilla_remoting::{
    RemotingClient, RemotingCommand, SessionCredentials, request_code, response_code,
};
use flotilla_tests::broker_proc::{self, cluster_info, registered_at, route, topic_queues};
use flotilla_tests::cpp::{Consume, Produce, bodies};
use flotilla_tests::{
    Proc, bin_path, free_broker_port, free_port, temp_dir, wait_for_port, wait_until,
};

const WAIT: Duration = Duration::from_secs(30);
const TOPIC: &str = "AclTopic";
const ADMIN: (&str, &str) = ("flotillaadmin", "admin-secret-1");
const APP: (&str, &str) = ("appclient1", "app-secret-1");
const SUB_ONLY: (&str, &str) = ("subonly01", "sub-secret-1");

/// The rules: an admin (the broker signs with it), an application account with PUB|SUB
/// on the test topic and SUB on groups, and an account with SUB only. `sub_only_topic_perm`
/// is what the SUB-only account gets on the test topic.
fn acl_yaml(sub_only_topic_perm: &str) -> String {
    format!(
        "accounts:\n\
         \x20 - accessKey: {}\n    secretKey: {}\n    admin: true\n\
         \x20 - accessKey: {}\n    secretKey: {}\n    defaultTopicPerm: DENY\n    defaultGroupPerm: SUB\n    topicPerms:\n      - {TOPIC}=PUB|SUB\n\
         \x20 - accessKey: {}\n    secretKey: {}\n    defaultTopicPerm: SUB\n    defaultGroupPerm: SUB\n    topicPerms:\n      - {TOPIC}={sub_only_topic_perm}\n",
        ADMIN.0, ADMIN.1, APP.0, APP.1, SUB_ONLY.0, SUB_ONLY.1
    )
}

fn signed(creds: (&str, &str)) -> RemotingClient {
    RemotingClient::default().with_credentials(SessionCredentials::new(creds.0, creds.1))
}

struct AclCluster {
    dir: tempfile::TempDir,
    _ns: Proc,
    ns: String,
    _broker: Proc,
    addr: String,
    admin: RemotingClient,
}

impl AclCluster {
    async fn start(name: &str) -> AclCluster {
        let dir = temp_dir(name);
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join("conf")).expect("conf dir");
        std::fs::write(home.join("conf/plain_acl.yml"), acl_yaml("SUB")).expect("acl file");
        let ns = format!("127.0.0.1:{}", free_port());
        let ns_conf = dir.path().join("namesrv.properties");
        let (host, port) = ns.rsplit_once(':').expect("host:port");
        std::fs::write(
            &ns_conf,
            format!(
                "bindAddress={host}\nlistenPort={port}\nkvConfigPath={}\nrocketmqHome={}\n\
                 aclEnable=true\nflotillaAclWatchIntervalMills=100\n",
                dir.path().join("kv.json").display(),
                home.display()
            ),
        )
        .expect("namesrv conf");
        let mut cmd = Command::new(bin_path("flotilla-namesrv"));
        cmd.arg("-c")
            .arg(&ns_conf)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let ns_proc = Proc::spawn("namesrv", &mut cmd, Some(&dir.path().join("namesrv.log")));
        wait_for_port(&ns, WAIT).await.expect("namesrv up");
        let port = free_broker_port();
        let base = format!(
            "brokerClusterName=AclCluster\nbrokerName=broker-acl\nbrokerId=0\n\
             namesrvAddr={ns}\nlistenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
             storePathRootDir={}\nbrokerRole=ASYNC_MASTER\nflushDiskType=ASYNC_FLUSH\n\
             registerNameServerPeriod=1000\nmappedFileSizeCommitLog=67108864\n\
             flushConsumerOffsetInterval=500\naclEnable=true\nrocketmqHome={}\n\
             flotillaAclWatchIntervalMills=100\n\
             innerClientAuthenticationCredentials={{\"accessKey\":\"{}\",\"secretKey\":\"{}\"}}\n",
            dir.path().join("store").display(),
            home.display(),
            ADMIN.0,
            ADMIN.1
        );
        let conf = broker_proc::write_conf(dir.path(), &base, &[]);
        let broker = broker_proc::spawn_broker(dir.path(), &conf, "flotilla-broker");
        let addr = format!("127.0.0.1:{port}");
        // Cluster info is a read: open to unsigned clients. The registration it shows was
        // accepted only because the broker signed it as an admin.
        let anon = RemotingClient::default();
        let (a, n, b) = (anon.clone(), ns.clone(), addr.clone());
        let up = wait_until("broker registered with the ACL nameserver", WAIT, || {
            let (a, n, b) = (a.clone(), n.clone(), b.clone());
            async move { registered_at(&a, &n, &b).await.then_some(()) }
        })
        .await;
        if up.is_err() {
            panic!(
                "{}\n--- namesrv ---\n{}",
                broker_proc::broker_log(dir.path()),
                std::fs::read_to_string(dir.path().join("namesrv.log")).unwrap_or_default()
            );
        }
        AclCluster {
            dir,
            _ns: ns_proc,
            ns,
            _broker: broker,
            addr,
            admin: signed(ADMIN),
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn acl_file(&self) -> PathBuf {
        self.dir().join("home/conf/plain_acl.yml")
    }

    /// Messages stored in the test topic (sum of its queues' max offsets).
    async fn stored(&self) -> i64 {
        let mut n = 0;
        for q in 0..4 {
            n += broker_proc::max_offset(&self.admin, &self.addr, TOPIC, q)
                .await
                .max(0);
        }
        n
    }

    async fn create_topic(&self) {
        broker_proc::create_topic(&self.admin, &self.addr, TOPIC, 4, 6).await;
        let (a, n) = (self.admin.clone(), self.ns.clone());
        wait_until("the topic's route at the nameserver", WAIT, || {
            let (a, n) = (a.clone(), n.clone());
            async move { route(&a, &n, TOPIC).await.map(|_| ()) }
        })
        .await
        .expect("route");
    }
}

fn create_topic_request(topic: &str) -> RemotingCommand {
    RemotingCommand::request(request_code::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", 4)
        .with_ext("writeQueueNums", 4)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
        .with_ext("topicSysFlag", 0)
        .with_ext("order", false)
}

async fn answer(c: &RemotingClient, addr: &str, cmd: RemotingCommand) -> RemotingCommand {
    c.invoke(addr, cmd, Duration::from_secs(5))
        .await
        .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_admits_signed_clients_and_refuses_the_rest_changing_nothing() {
    let c = AclCluster::start("acl-e2e").await;

    // Admin requests without an admin signature: refused, nothing created.
    let anon = RemotingClient::default();
    let tampered = signed((ADMIN.0, "not-the-secret"));
    let app = signed(APP);
    for (who, client) in [
        ("anonymous", &anon),
        ("wrong secret", &tampered),
        ("non-admin", &app),
    ] {
        let r = answer(client, &c.addr, create_topic_request("AnonTopic")).await;
        assert_eq!(
            r.code,
            response_code::NO_PERMISSION,
            "{who} create topic: {:?}",
            r.remark
        );
        assert!(r.remark.unwrap_or_default().starts_with("[ACL]"));
    }
    assert_eq!(
        topic_queues(&c.admin, &c.addr, "AnonTopic").await,
        None,
        "no topic was created"
    );
    assert!(route(&c.admin, &c.ns, "AnonTopic").await.is_none());

    // Nameserver state changes without an admin signature: refused, route table unchanged.
    let before = cluster_info(&anon, &c.ns).await.expect("cluster info");
    let junk = RemotingCommand::request(request_code::REGISTER_BROKER)
        .with_ext("brokerName", "intruder")
        .with_ext("brokerAddr", "127.0.0.1:1")
        .with_ext("clusterName", "AclCluster")
        .with_ext("brokerId", 0)
        .with_body(
            encode_body(&serde_json::json!({"topicConfigSerializeWrapper": {
                "topicConfigTable": {"Hijacked": {"topicName": "Hijacked", "readQueueNums": 1,
                    "writeQueueNums": 1, "perm": 6}},
                "dataVersion": {"timestamp": 1, "counter": 1}}, "filterServerList": []}))
            .expect("body"),
        );
    let unregister = RemotingCommand::request(request_code::UNREGISTER_BROKER)
        .with_ext("brokerName", "broker-acl")
        .with_ext("brokerAddr", c.addr.as_str())
        .with_ext("clusterName", "AclCluster")
        .with_ext("brokerId", 0);
    for (who, client) in [
        ("anonymous", &anon),
        ("wrong secret", &tampered),
        ("non-admin", &app),
    ] {
        for cmd in [junk.clone(), unregister.clone()] {
            let r = answer(client, &c.ns, cmd).await;
            assert_eq!(
                r.code,
                response_code::NO_PERMISSION,
                "{who}: {:?}",
                r.remark
            );
        }
    }
    assert!(route(&anon, &c.ns, "Hijacked").await.is_none());
    let after = cluster_info(&anon, &c.ns).await.expect("cluster info");
    assert_eq!(
        before.broker_addr_table.keys().collect::<Vec<_>>(),
        after.broker_addr_table.keys().collect::<Vec<_>>()
    );
    assert!(
        registered_at(&anon, &c.ns, &c.addr).await,
        "our broker is still registered"
    );

    // The admin creates the topic; the real client with the right keys sends and consumes.
    c.create_topic().await;
    let mut p = Produce::new(&c.ns, TOPIC, "ok", 10);
    p.credentials = Some(APP);
    let sent = p.run(c.dir());
    assert!(sent.iter().all(|s| s.ok), "signed sends: {sent:?}");
    assert_eq!(sent.len(), 10);
    let mut consume = Consume::new(&c.ns, "aclgroup", TOPIC);
    consume.credentials = Some(APP);
    let consumer = consume.start(c.dir(), "acl-consumer").await;
    consumer
        .wait_for(
            "signed consumer gets every message",
            &bodies("ok", 10),
            WAIT,
        )
        .await;
    assert_eq!(c.stored().await, 10);

    // A wrong secret, no credentials, SUB only: nothing is sent, nothing stored.
    for (who, creds) in [
        ("wrong secret", Some((APP.0, "wrong-secret-9"))),
        ("unsigned", None),
        ("SUB only", Some(SUB_ONLY)),
    ] {
        let mut p = Produce::new(&c.ns, TOPIC, "refused", 3);
        p.credentials = creds;
        let sent = p.run(c.dir());
        assert_eq!(sent.len(), 3, "{who}: {sent:?}");
        assert!(sent.iter().all(|s| !s.ok), "{who} must not send: {sent:?}");
    }
    assert_eq!(c.stored().await, 10, "refused sends stored nothing");
    // And through our own client, the refusal is NO_PERMISSION naming the account.
    let r = broker_proc::send_raw(&signed(SUB_ONLY), &c.addr, TOPIC, "x")
        .await
        .expect("answer");
    assert_eq!(r.code, response_code::NO_PERMISSION);
    assert!(r.remark.unwrap_or_default().contains(SUB_ONLY.0));
    let r = broker_proc::send_raw(&anon, &c.addr, TOPIC, "x")
        .await
        .expect("answer");
    assert_eq!(r.code, response_code::NO_PERMISSION, "a missing signature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_edit_of_plain_acl_yml_applies_and_a_broken_one_keeps_the_rules() {
    let c = AclCluster::start("acl-live").await;
    c.create_topic().await;
    let sub_only = signed(SUB_ONLY);
    let send = |body: &'static str| {
        let (client, addr) = (sub_only.clone(), c.addr.clone());
        async move {
            broker_proc::send_raw(&client, &addr, TOPIC, body)
                .await
                .map(|r| r.code)
        }
    };
    assert_eq!(send("before").await, Some(response_code::NO_PERMISSION));

    // Grant PUB: applies without a restart.
    std::fs::write(c.acl_file(), acl_yaml("PUB|SUB")).expect("edit");
    wait_until("the granted PUB to apply", WAIT, || async {
        (send("granted").await == Some(response_code::SUCCESS)).then_some(())
    })
    .await
    .expect("live grant");

    // A broken edit is refused (logged) and the granted rules stay.
    std::fs::write(c.acl_file(), "accounts:\n  - accessKey: [broken\n").expect("edit");
    let log = c.dir().join("broker.log");
    wait_until("the broker to refuse the broken file", WAIT, || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("ACL file refused")
            .then_some(())
    })
    .await
    .expect("refusal logged");
    assert_eq!(
        send("still").await,
        Some(response_code::SUCCESS),
        "old rules stay in force"
    );

    // Revoke again: applies too.
    std::fs::write(c.acl_file(), acl_yaml("SUB")).expect("edit");
    wait_until("the revoked PUB to apply", WAIT, || async {
        (send("revoked").await == Some(response_code::NO_PERMISSION)).then_some(())
    })
    .await
    .expect("live revoke");
}

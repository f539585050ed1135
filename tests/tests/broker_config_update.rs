//! End-to-end tests of UPDATE_BROKER_CONFIG on a real `flotilla-broker`: a key is applied
//! live or refused with a remark naming it — never answered SUCCESS while waiting for a
//! restart — a feature the broker does not have (ACL 2.0's `authenticationEnabled=true`)
//! refuses to start, and so does `aclEnable=true` without a RocketMQ home for plain_acl.yml.

use std::process::Command;
use std::time::Duration;

use flotilla_remoting::{RemotingClient, RemotingCommand, request_code, response_code};
use flotilla_tests::broker_proc::{self, Namesrv, registered_at};
use flotilla_tests::{bin_path, free_broker_port, temp_dir, wait_for_port, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn base_conf(ns: &str, port: u16, store: &std::path::Path) -> String {
    format!(
        "brokerClusterName=CfgCluster\nbrokerName=broker-cfg\nbrokerId=0\nnamesrvAddr={ns}\n\
         listenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\nstorePathRootDir={}\n\
         brokerRole=ASYNC_MASTER\nflushDiskType=ASYNC_FLUSH\nregisterNameServerPeriod=2000\n\
         mappedFileSizeCommitLog=67108864\nmessageDelayLevel=1s 2s 3s\n",
        store.display()
    )
}

async fn update(admin: &RemotingClient, addr: &str, body: &str) -> RemotingCommand {
    broker_proc::call(
        admin,
        addr,
        RemotingCommand::request(request_code::UPDATE_BROKER_CONFIG)
            .with_body(body.as_bytes().to_vec()),
    )
    .await
    .expect("UPDATE_BROKER_CONFIG answered")
}

async fn config_value(admin: &RemotingClient, addr: &str, key: &str) -> Option<String> {
    let r = broker_proc::call(
        admin,
        addr,
        RemotingCommand::request(request_code::GET_BROKER_CONFIG),
    )
    .await?;
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_config_update_applies_live_keys_and_refuses_restart_only_keys_by_name() {
    let dir = temp_dir("broker-cfg");
    let ns = Namesrv::start(dir.path(), "namesrv");
    wait_for_port(&ns.addr, WAIT).await.expect("namesrv up");
    let port = free_broker_port();
    let conf = broker_proc::write_conf(
        dir.path(),
        &base_conf(&ns.addr, port, &dir.path().join("store")),
        &[],
    );
    let _broker = broker_proc::spawn_broker(dir.path(), &conf, "flotilla-broker");
    let addr = format!("127.0.0.1:{port}");
    let admin = RemotingClient::default();
    let (a, n, b) = (admin.clone(), ns.addr.clone(), addr.clone());
    wait_until("broker registered", WAIT, || {
        let (a, n, b) = (a.clone(), n.clone(), b.clone());
        async move { registered_at(&a, &n, &b).await.then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", broker_proc::broker_log(dir.path())));
    let file_before = std::fs::read_to_string(&conf).expect("read conf");

    // Restart-only keys: refused, the remark names the key, nothing changes or is written.
    for (key, value) in [
        ("listenPort", "20911"),
        ("flushDiskType", "SYNC_FLUSH"),
        ("fileReservedTime", "1"),
        ("brokerName", "other"),
        ("mappedFileSizeCommitLog", "1048576"),
    ] {
        let r = update(&admin, &addr, &format!("{key}={value}\n")).await;
        assert_eq!(
            r.code,
            response_code::INVALID_PARAMETER,
            "{key}: {:?}",
            r.remark
        );
        let remark = r.remark.unwrap_or_default();
        assert!(
            remark.starts_with(&format!("{key} cannot be changed")),
            "{remark}"
        );
        assert_ne!(
            config_value(&admin, &addr, key).await.as_deref(),
            Some(value)
        );
    }
    // A key nothing reads is refused too; more delay levels than the broker runs; ACL.
    let r = update(&admin, &addr, "noSuchKey=1\n").await;
    assert_eq!(r.code, response_code::INVALID_PARAMETER);
    assert!(r.remark.unwrap_or_default().contains("noSuchKey"));
    let r = update(&admin, &addr, "messageDelayLevel=1s 2s 3s 4s\n").await;
    assert!(
        r.remark
            .unwrap_or_default()
            .starts_with("messageDelayLevel")
    );
    let r = update(&admin, &addr, "aclEnable=true\n").await;
    assert_ne!(r.code, response_code::SUCCESS);
    assert!(r.remark.unwrap_or_default().contains("aclEnable"));
    // One refused key refuses the whole update: the live key with it is not applied.
    let r = update(&admin, &addr, "brokerPermission=4\nlistenPort=1\n").await;
    assert_eq!(r.code, response_code::INVALID_PARAMETER);
    assert_eq!(
        config_value(&admin, &addr, "brokerPermission")
            .await
            .as_deref(),
        Some("6")
    );
    assert_eq!(
        std::fs::read_to_string(&conf).expect("read conf"),
        file_before
    );

    // Live keys: applied, visible at once, persisted for the next start.
    let r = update(
        &admin,
        &addr,
        "brokerPermission=4\nmessageDelayLevel=100ms 200ms 300ms\nlistenPort={port}\n"
            .replace("{port}", &port.to_string())
            .as_str(),
    )
    .await;
    assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    assert_eq!(
        config_value(&admin, &addr, "brokerPermission")
            .await
            .as_deref(),
        Some("4")
    );
    let file = std::fs::read_to_string(&conf).expect("read conf");
    assert!(file.contains("brokerPermission=4"), "{file}");
    assert!(
        file.contains("messageDelayLevel=100ms 200ms 300ms"),
        "{file}"
    );
    // brokerPermission is live: the nameserver's route loses W for the broker's topics.
    let (a, n) = (admin.clone(), ns.addr.clone());
    wait_until("the route shows the broker read-only", WAIT, || {
        let (a, n) = (a.clone(), n.clone());
        async move {
            broker_proc::route(&a, &n, "broker-cfg")
                .await
                .filter(|r| r.queue_datas.iter().all(|q| q.perm == 4))
                .map(|_| ())
        }
    })
    .await
    .expect("permission applied live");
}

#[test]
fn broker_acl_enable_refuses_to_start() {
    let dir = temp_dir("broker-acl");
    let conf = broker_proc::write_conf(
        dir.path(),
        &base_conf("127.0.0.1:1", free_broker_port(), &dir.path().join("store")),
        &[("aclEnable", "true")],
    );
    let out = Command::new(bin_path("flotilla-broker"))
        .arg("-c")
        .arg(&conf)
        .env_remove("ROCKETMQ_HOME")
        .output()
        .expect("run broker");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("aclEnable=true but there is no RocketMQ home"),
        "{err}"
    );
    let conf = broker_proc::write_conf(
        dir.path(),
        &base_conf("127.0.0.1:1", free_broker_port(), &dir.path().join("store")),
        &[("authenticationEnabled", "true")],
    );
    let out = Command::new(bin_path("flotilla-broker"))
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("run broker");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("authenticationEnabled=true is not supported"),
        "{err}"
    );
}

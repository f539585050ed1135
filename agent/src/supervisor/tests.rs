//! Supervisor tests with real processes (shell scripts standing in for brokers).

use super::*;
use flotilla_proto::agent::v1::Ports;
use std::os::unix::fs::PermissionsExt;

fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

fn config(data: &Path) -> SupervisorConfig {
    let mut c = SupervisorConfig::new(data.to_path_buf(), data.join("bin"), "test".into());
    c.restart_base = Duration::from_millis(20);
    c.restart_max = Duration::from_millis(100);
    c.stop_grace = Duration::from_secs(5);
    c
}

fn instance(name: &str, program: &str, policy: RestartPolicy) -> Instance {
    // A port nothing listens on: probes fail fast (connection refused).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Instance {
        name: name.into(),
        kind: InstanceKind::Broker as i32,
        cluster: "c".into(),
        version: program.into(),
        restart_policy: policy as i32,
        config_hash: "h1".into(),
        restart_hash: "r1".into(),
        ports: Some(Ports {
            listen: u32::from(port),
            ha: 0,
            dledger: 0,
        }),
        ..Instance::default()
    }
}

fn desired(instances: Vec<Instance>) -> DesiredState {
    DesiredState {
        epoch: 1,
        generation: 1,
        instances,
    }
}

fn obs(s: &Supervisor, name: &str) -> InstanceObservation {
    s.observations()
        .into_iter()
        .find(|o| o.name == name)
        .unwrap()
}

async fn tick_until(s: &mut Supervisor, what: &str, mut f: impl FnMut(&Supervisor) -> bool) {
    for _ in 0..400 {
        s.tick().await;
        if f(s) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn kill_group(pid: i64) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        Signal::SIGKILL,
    );
}

#[tokio::test]
async fn crashing_process_is_restarted_with_backoff() {
    let tmp = tempfile::tempdir().unwrap();
    let prog = script(tmp.path(), "fail.sh", "exit 1");
    let mut s = Supervisor::new(config(tmp.path()), RemotingClient::default());
    s.apply(&desired(vec![instance(
        "b-0",
        &prog,
        RestartPolicy::Always,
    )]))
    .await;
    tick_until(&mut s, "three restarts", |s| obs(s, "b-0").restarts >= 3).await;
    let o = obs(&s, "b-0");
    assert_eq!(o.last_exit.unwrap().code, 1);
    assert!(!o.ready);
    // The record follows the restarts.
    let rec = StateDir::load_instance_file(&s.state.instance_path("b-0")).unwrap();
    assert!(rec.restarts >= 3);
    // Removing it from the desired state forgets it and its ephemeral dir.
    let dir = s.instance_dir("b-0").unwrap().to_path_buf();
    s.apply(&desired(vec![])).await;
    tick_until(&mut s, "removal", |s| s.instance_names().is_empty()).await;
    assert!(!dir.exists());
    assert!(!s.state.instance_path("b-0").exists());
}

#[tokio::test]
async fn restart_policy_never_leaves_it_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let prog = script(tmp.path(), "fail.sh", "exit 3");
    let mut s = Supervisor::new(config(tmp.path()), RemotingClient::default());
    s.apply(&desired(vec![instance("b-0", &prog, RestartPolicy::Never)]))
        .await;
    tick_until(&mut s, "failure", |s| {
        obs(s, "b-0").state == InstanceState::Failed as i32
    })
    .await;
    for _ in 0..20 {
        s.tick().await;
    }
    let o = obs(&s, "b-0");
    assert_eq!(o.state, InstanceState::Failed as i32);
    assert_eq!(o.restarts, 1);
    assert_eq!(o.pid, 0);
    assert_eq!(o.last_exit.unwrap().code, 3);
}

#[tokio::test]
async fn restarted_supervisor_readopts_and_orphans_unverified() {
    let tmp = tempfile::tempdir().unwrap();
    // No `exec`: the shell stays the recorded process (its command line is stable).
    let prog = script(tmp.path(), "run.sh", "tail -f /dev/null");
    let mut s = Supervisor::new(config(tmp.path()), RemotingClient::default());
    s.apply(&desired(vec![instance(
        "b-0",
        &prog,
        RestartPolicy::Always,
    )]))
    .await;
    tick_until(&mut s, "a pid", |s| obs(s, "b-0").pid > 0).await;
    let pid = obs(&s, "b-0").pid;
    let conf = std::fs::read_to_string(s.instance_dir("b-0").unwrap().join("broker.conf")).unwrap();
    assert!(conf.contains("listenPort="));
    drop(s); // the "agent" goes away; the process does not

    let mut s2 = Supervisor::new(config(tmp.path()), RemotingClient::default());
    s2.recover();
    let o = obs(&s2, "b-0");
    assert_eq!(o.pid, pid, "re-adopted, not restarted");
    assert_eq!(o.state, InstanceState::Starting as i32);
    for _ in 0..5 {
        s2.tick().await;
    }
    assert_eq!(obs(&s2, "b-0").pid, pid);
    assert_eq!(obs(&s2, "b-0").restarts, 0);
    drop(s2);

    // A record whose start time does not match: reported ORPHANED, never killed.
    let path = StateDir::new(tmp.path()).instance_path("b-0");
    let mut rec = StateDir::load_instance_file(&path).unwrap();
    rec.start_time_ticks += 1;
    StateDir::new(tmp.path()).save_instance(&rec).unwrap();
    let mut s3 = Supervisor::new(config(tmp.path()), RemotingClient::default());
    s3.recover();
    assert_eq!(obs(&s3, "b-0").state, InstanceState::Orphaned as i32);
    s3.apply(&desired(vec![])).await;
    for _ in 0..5 {
        s3.tick().await;
    }
    assert!(s3.instance_names().is_empty());
    assert!(
        proc_identity::read_stat(i32::try_from(pid).unwrap())
            .unwrap()
            .is_some_and(|st| !st.is_zombie())
    );
    kill_group(pid);
}

#[tokio::test]
async fn removed_instance_is_stopped_with_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let prog = script(tmp.path(), "run.sh", "tail -f /dev/null");
    let mut s = Supervisor::new(config(tmp.path()), RemotingClient::default());
    s.apply(&desired(vec![instance(
        "b-0",
        &prog,
        RestartPolicy::Always,
    )]))
    .await;
    tick_until(&mut s, "a pid", |s| obs(s, "b-0").pid > 0).await;
    let pid = obs(&s, "b-0").pid;
    s.apply(&desired(vec![])).await;
    tick_until(&mut s, "stop", |s| s.instance_names().is_empty()).await;
    assert!(read_stat_gone(pid));
}

fn read_stat_gone(pid: i64) -> bool {
    match proc_identity::read_stat(i32::try_from(pid).unwrap()).unwrap() {
        None => true,
        Some(st) => st.is_zombie(),
    }
}

#[tokio::test]
async fn restart_needing_change_waits_for_permission() {
    let tmp = tempfile::tempdir().unwrap();
    let prog = script(tmp.path(), "run.sh", "tail -f /dev/null");
    let mut s = Supervisor::new(config(tmp.path()), RemotingClient::default());
    let mut inst = instance("b-0", &prog, RestartPolicy::Always);
    s.apply(&desired(vec![inst.clone()])).await;
    tick_until(&mut s, "a pid", |s| obs(s, "b-0").pid > 0).await;
    let pid = obs(&s, "b-0").pid;
    inst.config.insert("maxMessageSize".into(), "1024".into());
    inst.config_hash = "h2".into();
    inst.restart_hash = "r2".into();
    s.apply(&desired(vec![inst.clone()])).await;
    for _ in 0..5 {
        s.tick().await;
    }
    assert_eq!(obs(&s, "b-0").pid, pid, "no restart without may_restart");
    assert_eq!(obs(&s, "b-0").config_hash, "h1");
    inst.may_restart = true;
    s.apply(&desired(vec![inst])).await;
    tick_until(&mut s, "restart", |s| {
        let o = obs(s, "b-0");
        o.pid > 0 && o.pid != pid && o.config_hash == "h2"
    })
    .await;
    let new_pid = obs(&s, "b-0").pid;
    assert_eq!(
        obs(&s, "b-0").restarts,
        0,
        "a requested restart is not a crash"
    );
    kill_group(new_pid);
}

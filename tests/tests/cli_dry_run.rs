//! `flotilla apply --dry-run` prints, member by member, what a cluster change would do and
//! changes nothing; a real apply prints the same plan and does it (real processes).

use std::process::Output;
use std::time::Duration;

use flotilla_tests::fleet::{Fleet, pids};
use flotilla_tests::{bin_path, wait_until};

const WAIT: Duration = Duration::from_secs(90);

async fn flotilla(fleet: &Fleet, args: &[&str], stdin: &str) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(bin_path("flotilla"))
        .args(args)
        .env("FLOTILLA_SERVER", &fleet.cp_addr)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run flotilla");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    child.wait_with_output().await.expect("output")
}

fn doc(nameservers: u32, extra_config: &str) -> String {
    format!(
        "apiVersion: flotilla.io/v1\nkind: Cluster\nmetadata: {{name: plan}}\nspec:\n  \
         nameservers: {nameservers}\n  groups: 1\n  replicasPerGroup: 2\n  mode: master-slave\n  \
         spread: preferred\n  allowRestart: true\n  config: {{diskMaxUsedSpaceRatio: '95', \
         diskSpaceWarningLevelRatio: '99', diskSpaceCleanForciblyRatio: '98'{extra_config}}}\n"
    )
}

async fn apply(fleet: &Fleet, text: &str, dry_run: bool) -> String {
    let mut args = vec!["apply", "-f", "-"];
    if dry_run {
        args.push("--dry-run");
    }
    let o = flotilla(fleet, &args, text).await;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "apply {args:?}: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_dry_run_prints_the_plan_and_changes_nothing() {
    let fleet = Fleet::start(3).await;
    let created = wait_until("created (once the control plane leads)", WAIT, || async {
        let o = flotilla(&fleet, &["apply", "-f", "-"], &doc(1, "")).await;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    })
    .await
    .expect("apply");
    assert!(created.contains("cluster plan created"), "{created}");
    let c = fleet.wait_running("plan").await;
    let generation = c.metadata.as_ref().map(|m| m.generation);
    let before = pids(&c);

    // A restart-only key: both brokers would roll, nothing happens.
    let out = apply(&fleet, &doc(1, ", fileReservedTime: '24'"), true).await;
    for m in ["plan-0-0", "plan-0-1"] {
        assert!(
            out.lines().any(|l| l.contains(m)
                && l.contains("rolling restart")
                && l.contains("fileReservedTime")),
            "{m} in:\n{out}"
        );
    }
    assert!(
        out.contains("would be updated") && out.contains("nothing was changed"),
        "{out}"
    );
    let c = fleet.get_cluster("plan").await.expect("cluster");
    assert_eq!(c.metadata.as_ref().map(|m| m.generation), generation);

    // A second nameserver for real: it starts, the brokers change online, nobody restarts.
    let out = apply(&fleet, &doc(2, ""), false).await;
    assert!(
        out.lines()
            .any(|l| l.contains("plan-namesrv-1") && l.contains("start on")),
        "{out}"
    );
    for m in ["plan-0-0", "plan-0-1"] {
        assert!(
            out.lines()
                .any(|l| l.contains(m) && l.contains("online change") && l.contains("namesrvAddr")),
            "{m} in:\n{out}"
        );
    }
    let c = fleet
        .wait_cluster("plan", "two nameservers running", |c| {
            flotilla_tests::fleet::is_running(c)
                && flotilla_tests::fleet::namesrv_addr(c).split(';').count() == 2
        })
        .await;
    for (m, pid) in pids(&c) {
        if let Some(old) = before.get(&m) {
            assert_eq!(*old, pid, "{m} was not restarted");
        }
    }
}

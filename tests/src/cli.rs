//! Running the `flotilla` CLI binary against a fleet, as a user would, for the CLI's
//! end-to-end tests: its exit code, stdout and stderr are what they assert on.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::fleet::Fleet;
use crate::{bin_path, wait_until};

/// Runs `flotilla ARGS` against the fleet's control plane (`FLOTILLA_SERVER`), with `stdin`
/// piped in (or nothing).
pub async fn run(fleet: &Fleet, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = tokio::process::Command::new(bin_path("flotilla"))
        .args(args)
        .env("FLOTILLA_SERVER", &fleet.cp_addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flotilla");
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    child.wait_with_output().await.expect("flotilla output")
}

/// Runs `flotilla ARGS` with nothing on stdin.
pub async fn flotilla(fleet: &Fleet, args: &[&str]) -> Output {
    run(fleet, args, None).await
}

/// Exit code, stdout and stderr, for failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a command that must succeed; returns its stdout.
pub async fn ok(fleet: &Fleet, args: &[&str]) -> String {
    let o = flotilla(fleet, args).await;
    assert!(o.status.success(), "flotilla {args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a command that must succeed and print JSON.
pub async fn json(fleet: &Fleet, args: &[&str]) -> Value {
    let out = ok(fleet, args).await;
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("flotilla {args:?}: not JSON ({e}):\n{out}"))
}

/// Runs a command that must fail with `exit` and print `[code]` on stderr; returns stderr.
pub async fn fails(
    fleet: &Fleet,
    args: &[&str],
    stdin: Option<&str>,
    exit: i32,
    code: &str,
) -> String {
    let o = run(fleet, args, stdin).await;
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(exit),
        "flotilla {args:?}: {}",
        text(&o)
    );
    assert!(
        err.contains(&format!("[{code}]")),
        "flotilla {args:?} names {code}: {}",
        text(&o)
    );
    err
}

/// Waits until the control plane leads: a business call on an unknown cluster then answers
/// CLUSTER_NOT_FOUND instead of NOT_LEADER (the fleet only waits for its port).
pub async fn wait_leader(fleet: &Fleet, timeout: Duration) {
    wait_until("the control plane leads", timeout, || async {
        let o = flotilla(fleet, &["topic", "list", "-c", "no-such-cluster"]).await;
        String::from_utf8_lossy(&o.stderr)
            .contains("[CLUSTER_NOT_FOUND]")
            .then_some(())
    })
    .await
    .expect("a leader is elected");
}

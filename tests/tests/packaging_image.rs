//! The container image holds exactly the binaries the workspace builds: the runtime stage
//! of the `Dockerfile` copies one file per `[[bin]]` target `cargo metadata` reports (none
//! missing, none that no longer exists), into the directory where the agent looks for the
//! broker and nameserver next to itself; the runtime stage runs as a non-root user and has
//! no build tools.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

/// Names of every binary target of the workspace's own packages.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version=1", "--offline"])
        .current_dir(repo())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let mut bins = BTreeSet::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        for t in pkg["targets"].as_array().expect("targets") {
            let is_bin = t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"));
            if is_bin {
                bins.insert(t["name"].as_str().expect("a target name").to_string());
            }
        }
    }
    bins
}

/// The Dockerfile's stages: (the `FROM` line, the lines after it), comments dropped and
/// continuation lines joined.
fn stages(text: &str) -> Vec<(String, Vec<String>)> {
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || (l.is_empty() && cur.is_empty()) {
            continue;
        }
        match l.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(l);
                logical.push(std::mem::take(&mut cur));
            }
        }
    }
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for l in logical {
        if l.starts_with("FROM ") {
            out.push((l, Vec::new()));
        } else if let Some(last) = out.last_mut() {
            last.1.push(l);
        }
    }
    out
}

#[test]
fn dockerfile_copies_exactly_the_workspace_binaries() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("the Dockerfile");
    let stages = stages(&text);
    assert!(stages.len() >= 2, "a multi-stage build: {stages:?}");
    let (from, body) = stages.last().expect("a runtime stage");
    let mut copied = BTreeSet::new();
    for l in body.iter().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = l.split_whitespace().collect();
        assert!(
            words.iter().any(|w| w.starts_with("--from=")),
            "the runtime stage copies only build outputs: {l}"
        );
        let files: Vec<&str> = words[1..]
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let (dest, sources) = files.split_last().expect("COPY SRC DEST");
        assert!(
            dest.starts_with("/usr/local/bin/"),
            "binaries go to /usr/local/bin: {l}"
        );
        for s in sources {
            let name = Path::new(s)
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a file name");
            copied.insert(name.to_string());
        }
    }
    let built = workspace_binaries();
    assert_eq!(
        copied, built,
        "the runtime image must copy exactly the workspace's binaries (left: Dockerfile, \
         right: cargo metadata)"
    );
    // The build stage builds every one of them.
    let build = &stages[..stages.len() - 1];
    let build_text: String = build.iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(build_text.contains("cargo build --release --locked --bins"));
    for b in &built {
        assert!(
            build_text.contains(&format!("target/release/{b}")),
            "the build stage collects {b}"
        );
    }
    // Runtime: a slim base, a numeric non-root user, no toolchain.
    assert!(from.contains("-slim"), "a slim runtime base: {from}");
    let user = body
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.trim().parse().ok())
        .expect("USER is numeric (runAsNonRoot can check it)");
    assert_ne!(uid, 0, "the image does not run as root");
    for l in body {
        for tool in [
            "cargo",
            "rustc",
            "protobuf-compiler",
            "build-essential",
            "gcc",
        ] {
            assert!(
                !l.contains(tool),
                "the runtime stage has no build tools: {l}"
            );
        }
    }
}

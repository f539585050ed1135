//! Every flag the packaging passes to a binary exists: the Helm chart's containers (as
//! rendered by Helm for the default values and every example values file) and the systemd
//! units (with their sample environment files) are run through each binary's own argument
//! parser, in its parse-only mode (`FLOTILLA_CHECK_ARGS`: parse the flags and environment,
//! print them, exit 0 without starting anything).
//!
//! The manifests are rendered by `scripts/packaging-check` (which `scripts/test` runs before
//! the Rust tests) into `<target>/chart-check/rendered/*.yaml`; without them this test fails
//! and says so rather than passing on nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flotilla_tests::bin_path;
use serde::Deserialize;
use serde_yaml::Value;

/// What the downward API would give a pod, for the fields the chart reads.
fn field_ref(path: &str) -> String {
    match path {
        "spec.nodeName" => "node-a".into(),
        "status.hostIP" => "10.0.0.11".into(),
        "status.podIP" => "10.1.0.5".into(),
        "metadata.name" => "pod-0".into(),
        "metadata.namespace" => "flotilla".into(),
        other => panic!("the chart reads fieldRef {other}: give this test a value for it"),
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

fn rendered_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test-binary>  ->  target/chart-check/rendered
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps");
    let dir = target.join("chart-check/rendered");
    assert!(
        dir.join("default.yaml").exists(),
        "{} has no rendered manifests: run scripts/packaging-check (scripts/test does) to \
         render the Helm chart",
        dir.display()
    );
    dir
}

/// Kubernetes' `$(VAR)` expansion of a container argument: defined variables are replaced,
/// `$$` is a literal `$`, anything else stays as written.
fn expand_k8s(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some(v) = env.get(&inner[..end])
        {
            out.push_str(v);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Runs `binary args` in parse-only mode with exactly `env` (plus PATH).
fn check_args(binary: &str, args: &[String], env: &BTreeMap<String, String>) -> Output {
    let mut cmd = Command::new(bin_path(binary));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .env("FLOTILLA_CHECK_ARGS", "1");
    cmd.output().expect("the binary runs")
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .expect("a scalar serializes")
                        .trim()
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A container of the rendered chart that runs one of our binaries.
struct Container {
    origin: String,
    binary: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

fn pod_spec(doc: &Value) -> Option<&Value> {
    match doc.get("kind")?.as_str()? {
        "Deployment" | "DaemonSet" | "StatefulSet" | "Job" => {
            doc.get("spec")?.get("template")?.get("spec")
        }
        "Pod" => doc.get("spec"),
        _ => None,
    }
}

fn containers(file: &Path) -> Vec<Container> {
    let text = std::fs::read_to_string(file).expect("rendered manifests are readable");
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(&text) {
        let doc = Value::deserialize(de).expect("rendered manifests are YAML");
        let Some(spec) = pod_spec(&doc) else { continue };
        let name = format!(
            "{}/{}",
            doc["kind"].as_str().unwrap_or("?"),
            doc["metadata"]["name"].as_str().unwrap_or("?")
        );
        for list in ["initContainers", "containers"] {
            for c in spec
                .get(list)
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let command = str_list(&c["command"]);
                let Some(binary) = command.first().filter(|b| b.starts_with("flotilla")) else {
                    continue;
                };
                let mut env = BTreeMap::new();
                for e in c
                    .get("env")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    let key = e["name"].as_str().expect("env has a name").to_string();
                    let value = match (e.get("value"), e.get("valueFrom")) {
                        (Some(v), _) => v.as_str().unwrap_or_default().to_string(),
                        (None, Some(from)) => field_ref(
                            from["fieldRef"]["fieldPath"]
                                .as_str()
                                .expect("only fieldRef env sources are used"),
                        ),
                        (None, None) => String::new(),
                    };
                    // Later entries may refer to earlier ones.
                    let value = expand_k8s(&value, &env);
                    env.insert(key, value);
                }
                let mut args: Vec<String> = command[1..].to_vec();
                args.extend(str_list(&c["args"]));
                let args = args.iter().map(|a| expand_k8s(a, &env)).collect();
                out.push(Container {
                    origin: format!(
                        "{} {name} container {}",
                        file.display(),
                        c["name"].as_str().unwrap_or("?")
                    ),
                    binary: binary.clone(),
                    args,
                    env,
                });
            }
        }
    }
    out
}

#[test]
fn chart_containers_pass_only_flags_the_binaries_accept() {
    let dir = rendered_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the rendered directory is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for file in &files {
        for c in containers(file) {
            let out = check_args(&c.binary, &c.args, &c.env);
            *seen.entry(c.binary.clone()).or_default() += 1;
            if !out.status.success() {
                failures.push(format!(
                    "{}: {} {:?} was refused:\n{}",
                    c.origin,
                    c.binary,
                    c.args,
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
            // The agent's node id is the Kubernetes node name, through the downward API.
            if c.binary == "flotilla-agent" {
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    stdout.contains("node_id: \"node-a\""),
                    "{}: the agent's node id is not the node name:\n{stdout}",
                    c.origin
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for binary in ["flotilla-cp", "flotilla-agent", "flotilla"] {
        assert!(
            seen.contains_key(binary),
            "no rendered container runs {binary}: {seen:?}"
        );
    }
}

#[test]
fn parse_only_mode_still_refuses_unknown_flags() {
    // The check above proves something only if parse-only mode parses: an unknown flag, a
    // bad value and a bad store spec are refused there too.
    let env = BTreeMap::new();
    let cases: [(&str, &[&str]); 4] = [
        (
            "flotilla-agent",
            &[
                "--control-plane=a:1",
                "--node-id=n",
                "--data-dir=/d",
                "--no-such-flag",
            ],
        ),
        ("flotilla-cp", &["--resync-interval=soon"]),
        ("flotilla-cp", &["--etcd-endpoints=https://etcd:2379"]),
        ("flotilla", &["get", "nodes", "--sever=x:1"]),
    ];
    for (binary, args) in cases {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = check_args(binary, &args, &env);
        assert!(
            !out.status.success(),
            "{binary} {args:?} was accepted in parse-only mode"
        );
    }
    let ok = check_args("flotilla", &["get".into(), "nodes".into()], &env);
    assert!(ok.status.success(), "{ok:?}");
}

/// `KEY=VALUE` lines of a systemd environment file (comments and blank lines skipped).
fn env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .expect("the sample environment file is readable")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// systemd's ExecStart expansion: `${VAR}` is one word, `$VAR` splits on whitespace.
fn exec_start(line: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    for w in line.split_whitespace() {
        if let Some(name) = w.strip_prefix('$').filter(|n| !n.starts_with('{')) {
            let v = env.get(name).map(String::as_str).unwrap_or_default();
            words.extend(v.split_whitespace().map(str::to_string));
            continue;
        }
        let mut out = String::new();
        let mut rest = w;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let inner = &rest[i + 2..];
            let end = inner.find('}').expect("${VAR} is closed");
            out.push_str(
                env.get(&inner[..end])
                    .map(String::as_str)
                    .unwrap_or_default(),
            );
            rest = &inner[end + 1..];
        }
        out.push_str(rest);
        words.push(out);
    }
    words
}

#[test]
fn systemd_units_pass_only_flags_the_binaries_accept() {
    let dir = repo().join("packaging/systemd");
    for (unit, env) in [
        ("flotilla-cp.service", "flotilla-cp.env"),
        ("flotilla-agent.service", "flotilla-agent.env"),
    ] {
        let text = std::fs::read_to_string(dir.join(unit)).expect("the unit is readable");
        let env = env_file(&dir.join(env));
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("the unit has an ExecStart");
        let words = exec_start(line, &env);
        let binary = Path::new(&words[0])
            .file_name()
            .and_then(|n| n.to_str())
            .expect("ExecStart names a binary")
            .to_string();
        let out = check_args(&binary, &words[1..], &env);
        assert!(
            out.status.success(),
            "{unit}: {words:?} was refused:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

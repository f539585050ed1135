//! Durable agent state: one versioned JSON file per supervised instance, plus the agent's own
//! record (last desired state, applied generation).
//!
//! Brokers outlive the agent (DESIGN principle 5). What lets a restarted agent find them again
//! is this state: for every instance, the pid, the process start time (`/proc/<pid>/stat`
//! field 22), the command line and the config hash it was started with, and the `Instance`
//! spec it runs. Files carry a `version` field so a later agent can read or refuse older
//! layouts, and are written atomically (temp file, fsync, rename, fsync of the directory) so a
//! crash never leaves a half-written record.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flotilla_proto::agent::v1::{DesiredState, Instance};
use prost::Message;
use serde::{Deserialize, Serialize};

/// Layout version of [`InstanceRecord`] files.
pub const INSTANCE_RECORD_VERSION: u32 = 1;
/// Layout version of [`AgentRecord`] files.
pub const AGENT_RECORD_VERSION: u32 = 1;

/// Reading or writing agent state failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be read, written, renamed or listed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid JSON of the expected shape.
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A file was written by an agent with a newer, unknown layout.
    #[error("state file {path} has version {found}, this agent reads up to {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The newest version this agent knows.
        supported: u32,
    },
    /// An embedded protobuf message does not decode.
    #[error("state file {path}: embedded protobuf does not decode: {reason}")]
    BadProto {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl StateError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "STATE_IO",
            Self::Corrupt { .. } => "STATE_CORRUPT",
            Self::UnsupportedVersion { .. } => "STATE_UNSUPPORTED_VERSION",
            Self::BadProto { .. } => "STATE_BAD_PROTO",
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: a sibling temp file, fsync, rename, fsync of the dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_string());
    let tmp = dir.join(format!(".{file_name}.tmp"));
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Serialises a protobuf message as hex (kept inside JSON state files).
pub fn proto_to_hex<M: Message>(m: &M) -> String {
    hex::encode(m.encode_to_vec())
}

/// Decodes a hex protobuf produced by [`proto_to_hex`].
pub fn proto_from_hex<M: Message + Default>(path: &Path, s: &str) -> Result<M, StateError> {
    let bytes = hex::decode(s).map_err(|e| StateError::BadProto {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    M::decode(bytes.as_slice()).map_err(|e| StateError::BadProto {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// What the agent knows about one supervised instance and its process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Layout version ([`INSTANCE_RECORD_VERSION`]).
    pub version: u32,
    /// Instance name.
    pub name: String,
    /// Process id (0 = no process recorded).
    pub pid: i32,
    /// Process start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time_ticks: u64,
    /// The command line the process was started with.
    pub cmdline: Vec<String>,
    /// Config hash the process runs with (at start, or after an online update).
    pub config_hash: String,
    /// Restart hash the process was started with.
    #[serde(default)]
    pub restart_hash: String,
    /// Restarts so far.
    #[serde(default)]
    pub restarts: u32,
    /// Where the instance keeps its data and rendered config.
    pub dir: PathBuf,
    /// The `Instance` spec it runs, protobuf as hex.
    pub spec_pb: String,
}

impl InstanceRecord {
    /// The embedded spec.
    pub fn spec(&self, path: &Path) -> Result<Instance, StateError> {
        proto_from_hex(path, &self.spec_pb)
    }
}

/// The agent's own durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentRecord {
    /// Layout version ([`AGENT_RECORD_VERSION`]).
    pub version: u32,
    /// Generation of the last DesiredState applied.
    pub applied_generation: i64,
    /// The last DesiredState applied (protobuf as hex; empty = none yet).
    #[serde(default)]
    pub desired_pb: String,
}

/// Where the state lives: `<data-dir>/instances/<name>.json` and `<data-dir>/agent.json`.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

fn check_version(path: &Path, found: u32, supported: u32) -> Result<(), StateError> {
    if found > supported {
        return Err(StateError::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    Ok(())
}

impl StateDir {
    /// State rooted at the agent's data dir.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The agent's data dir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn instances_dir(&self) -> PathBuf {
        self.root.join("instances")
    }

    /// The record file of `name`.
    pub fn instance_path(&self, name: &str) -> PathBuf {
        self.instances_dir().join(format!("{name}.json"))
    }

    /// Writes (atomically) the record of one instance.
    pub fn save_instance(&self, rec: &InstanceRecord) -> Result<(), StateError> {
        let path = self.instance_path(&rec.name);
        let bytes = serde_json::to_vec_pretty(rec).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes)
    }

    /// Removes the record of one instance (missing is fine).
    pub fn remove_instance(&self, name: &str) -> Result<(), StateError> {
        let path = self.instance_path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Reads one record file.
    pub fn load_instance_file(path: &Path) -> Result<InstanceRecord, StateError> {
        let bytes = fs::read(path).map_err(io(path))?;
        let rec: InstanceRecord =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.to_path_buf(),
                source,
            })?;
        check_version(path, rec.version, INSTANCE_RECORD_VERSION)?;
        Ok(rec)
    }

    /// Every instance record, with the files that could not be read (path, error).
    pub fn load_instances(&self) -> (Vec<InstanceRecord>, Vec<StateError>) {
        let dir = self.instances_dir();
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (out, errors),
            Err(source) => {
                errors.push(StateError::Io { path: dir, source });
                return (out, errors);
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for p in paths {
            match Self::load_instance_file(&p) {
                Ok(r) => out.push(r),
                Err(e) => errors.push(e),
            }
        }
        (out, errors)
    }

    fn agent_path(&self) -> PathBuf {
        self.root.join("agent.json")
    }

    /// Saves the agent record.
    pub fn save_agent(&self, rec: &AgentRecord) -> Result<(), StateError> {
        let path = self.agent_path();
        let bytes = serde_json::to_vec_pretty(rec).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes)
    }

    /// Loads the agent record (default when absent).
    pub fn load_agent(&self) -> Result<AgentRecord, StateError> {
        let path = self.agent_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AgentRecord {
                    version: AGENT_RECORD_VERSION,
                    ..AgentRecord::default()
                });
            }
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let rec: AgentRecord =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.clone(),
                source,
            })?;
        check_version(&path, rec.version, AGENT_RECORD_VERSION)?;
        Ok(rec)
    }

    /// The last desired state recorded, if any.
    pub fn last_desired(&self, rec: &AgentRecord) -> Result<Option<DesiredState>, StateError> {
        if rec.desired_pb.is_empty() {
            return Ok(None);
        }
        proto_from_hex(&self.agent_path(), &rec.desired_pb).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> InstanceRecord {
        let spec = Instance {
            name: name.to_string(),
            config_hash: "h1".into(),
            ..Instance::default()
        };
        InstanceRecord {
            version: INSTANCE_RECORD_VERSION,
            name: name.to_string(),
            pid: 42,
            start_time_ticks: 1234,
            cmdline: vec!["flotilla-broker".into(), "-c".into(), "broker.conf".into()],
            config_hash: "h1".into(),
            restart_hash: "r1".into(),
            restarts: 2,
            dir: PathBuf::from("/tmp/x"),
            spec_pb: proto_to_hex(&spec),
        }
    }

    #[test]
    fn instance_record_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::new(tmp.path());
        let rec = record("c-0-0");
        st.save_instance(&rec).unwrap();
        let (all, errs) = st.load_instances();
        assert!(errs.is_empty());
        assert_eq!(all, vec![rec.clone()]);
        let spec = all[0].spec(&st.instance_path("c-0-0")).unwrap();
        assert_eq!(spec.name, "c-0-0");
        let text = fs::read_to_string(st.instance_path("c-0-0")).unwrap();
        assert!(text.contains("\"version\": 1"));
        st.remove_instance("c-0-0").unwrap();
        st.remove_instance("c-0-0").unwrap();
        assert!(st.load_instances().0.is_empty());
    }

    #[test]
    fn newer_version_is_refused_and_corrupt_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::new(tmp.path());
        let mut rec = record("a");
        rec.version = INSTANCE_RECORD_VERSION + 1;
        st.save_instance(&rec).unwrap();
        write_atomic(&st.instance_path("b"), b"{not json").unwrap();
        let (all, errs) = st.load_instances();
        assert!(all.is_empty());
        let codes: Vec<_> = errs.iter().map(StateError::code).collect();
        assert_eq!(codes, vec!["STATE_UNSUPPORTED_VERSION", "STATE_CORRUPT"]);
    }

    #[test]
    fn agent_record_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::new(tmp.path());
        let rec = st.load_agent().unwrap();
        assert_eq!(rec.version, AGENT_RECORD_VERSION);
        assert!(st.last_desired(&rec).unwrap().is_none());
        let ds = DesiredState {
            epoch: 3,
            generation: 7,
            instances: vec![Instance {
                name: "x".into(),
                ..Instance::default()
            }],
        };
        let rec = AgentRecord {
            version: AGENT_RECORD_VERSION,
            applied_generation: 7,
            desired_pb: proto_to_hex(&ds),
        };
        st.save_agent(&rec).unwrap();
        let back = st.load_agent().unwrap();
        assert_eq!(back, rec);
        assert_eq!(st.last_desired(&back).unwrap(), Some(ds));
    }
}

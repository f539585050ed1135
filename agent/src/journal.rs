//! The command journal: applied command ids and their results, so a repeat does nothing.
//!
//! Imperative steps carry a deterministic `command_id` (DESIGN principle 3). A workflow that
//! resumes after a control-plane restart may send the same step again; the agent answers from
//! the journal (the recorded result, `duplicate = true`) instead of acting twice. The journal
//! is an append-only JSON-lines file (one fsync'd line per command), bounded to the most recent
//! `capacity` entries; it is compacted by an atomic rewrite when it grows past 1.5× that.

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use flotilla_proto::agent::v1::CommandResult;
use serde::{Deserialize, Serialize};

use crate::state::{StateError, proto_from_hex, proto_to_hex, write_atomic};

/// Default number of command ids remembered.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Journal errors.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal file could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

impl JournalError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::State(e) => e.code(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    /// Layout version of the line.
    v: u32,
    id: String,
    /// CommandResult protobuf, hex.
    result: String,
}

/// Applied commands, most recent last.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    capacity: usize,
    order: VecDeque<String>,
    results: HashMap<String, CommandResult>,
    lines_in_file: usize,
}

impl Journal {
    /// Opens (or creates) `<data-dir>/journal.jsonl`, keeping the last `capacity` entries.
    /// Unreadable lines (a torn last write) are skipped.
    pub fn open(data_dir: &Path, capacity: usize) -> Result<Self, JournalError> {
        let path = data_dir.join("journal.jsonl");
        let mut j = Self {
            path: path.clone(),
            capacity: capacity.max(1),
            order: VecDeque::new(),
            results: HashMap::new(),
            lines_in_file: 0,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for l in text.lines() {
                    j.lines_in_file += 1;
                    let Ok(line) = serde_json::from_str::<Line>(l) else {
                        continue;
                    };
                    let Ok(res) = proto_from_hex::<CommandResult>(&path, &line.result) else {
                        continue;
                    };
                    j.insert_mem(line.id, res);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StateError::Io { path, source }.into()),
        }
        Ok(j)
    }

    fn insert_mem(&mut self, id: String, res: CommandResult) {
        if self.results.insert(id.clone(), res).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.results.remove(&old);
            }
        }
    }

    /// The recorded result of `id`, marked as a duplicate.
    pub fn get(&self, id: &str) -> Option<CommandResult> {
        self.results.get(id).map(|r| CommandResult {
            duplicate: true,
            ..r.clone()
        })
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the journal is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Records `id` → `result` durably.
    pub fn record(&mut self, id: &str, result: &CommandResult) -> Result<(), JournalError> {
        let stored = CommandResult {
            duplicate: false,
            ..result.clone()
        };
        let line = Line {
            v: 1,
            id: id.to_string(),
            result: proto_to_hex(&stored),
        };
        let mut text = serde_json::to_string(&line).map_err(|source| StateError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        text.push('\n');
        self.insert_mem(id.to_string(), stored);
        if self.lines_in_file + 1 > self.capacity + self.capacity / 2 {
            self.compact()?;
            return Ok(());
        }
        let io = |source| StateError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        self.lines_in_file += 1;
        Ok(())
    }

    fn compact(&mut self) -> Result<(), JournalError> {
        let mut out = String::new();
        for id in &self.order {
            if let Some(r) = self.results.get(id) {
                let line = Line {
                    v: 1,
                    id: id.clone(),
                    result: proto_to_hex(r),
                };
                if let Ok(s) = serde_json::to_string(&line) {
                    out.push_str(&s);
                    out.push('\n');
                }
            }
        }
        write_atomic(&self.path, out.as_bytes())?;
        self.lines_in_file = self.order.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: &str) -> CommandResult {
        CommandResult {
            command_id: id.to_string(),
            success: true,
            ..CommandResult::default()
        }
    }

    #[test]
    fn repeat_returns_recorded_result_and_survives_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let mut j = Journal::open(tmp.path(), 100).unwrap();
        assert!(j.get("a").is_none());
        j.record("a", &ok("a")).unwrap();
        let r = j.get("a").unwrap();
        assert!(r.duplicate && r.success && r.command_id == "a");
        drop(j);
        let j = Journal::open(tmp.path(), 100).unwrap();
        assert!(j.get("a").unwrap().duplicate);
        assert_eq!(j.len(), 1);
    }

    #[test]
    fn bounded_and_compacted() {
        let tmp = tempfile::tempdir().unwrap();
        let mut j = Journal::open(tmp.path(), 4).unwrap();
        for i in 0..20 {
            j.record(&format!("c{i}"), &ok(&format!("c{i}"))).unwrap();
        }
        assert_eq!(j.len(), 4);
        assert!(j.get("c15").is_none());
        assert!(j.get("c19").is_some());
        let lines = std::fs::read_to_string(tmp.path().join("journal.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= 6, "{lines} lines");
        let j = Journal::open(tmp.path(), 4).unwrap();
        assert_eq!(j.len(), 4);
        assert!(j.get("c16").is_some());
        // A torn last line is skipped.
        let mut f = OpenOptions::new()
            .append(true)
            .open(tmp.path().join("journal.jsonl"))
            .unwrap();
        f.write_all(b"{\"v\":1,\"id\":\"x\",\"res").unwrap();
        let j = Journal::open(tmp.path(), 4).unwrap();
        assert_eq!(j.len(), 4);
    }
}

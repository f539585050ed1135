//! The nameserver's KV config: small string tables by namespace, kept across restarts.
//!
//! Operators and tools store cluster-wide settings here — most importantly the
//! `ORDER_TOPIC_CONFIG` namespace (topic → `brokerName:queueNums;…`), which the
//! nameserver returns as `orderTopicConf` in routes and to every registering broker. The
//! file has Java's layout (`{"configTable":{namespace:{key:value}}}`), so an existing
//! `kvConfig.json` can be reused.
//!
//! Every change is written before it is acknowledged, atomically: the new table goes to a
//! temporary file in the same directory, is fsynced, renamed over the old file, and the
//! directory is fsynced. A change whose write fails is rolled back, so memory and disk
//! agree. A file that cannot be parsed stops the start instead of being overwritten.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use flotilla_remoting::protocol::KVTable;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::info;

/// The namespace of order-topic configs.
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

/// A KV config operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The file could not be read at start.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a KV config (`{"configTable":{…}}`).
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The new table could not be written; the change was rolled back.
    #[error("cannot persist {path}: {source}")]
    Persist {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl KvError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "KV_CONFIG_READ_FAILED",
            Self::Parse { .. } => "KV_CONFIG_CORRUPT",
            Self::Persist { .. } => "KV_CONFIG_PERSIST_FAILED",
        }
    }
}

type Table = BTreeMap<String, BTreeMap<String, String>>;

/// The file's layout (Java's `KVConfigSerializeWrapper`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct KvFile {
    config_table: Table,
}

/// The KV config, in memory and on disk.
#[derive(Debug)]
pub struct KvConfigManager {
    path: PathBuf,
    table: Mutex<Table>,
}

impl KvConfigManager {
    /// Loads `path` (a missing file is an empty config).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, KvError> {
        let path = path.into();
        let table = match std::fs::read(&path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Table::new(),
            Ok(bytes) => {
                let file: KvFile =
                    flotilla_remoting::fastjson::from_slice(&bytes).map_err(|e| {
                        KvError::Parse {
                            path: path.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                file.config_table
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Table::new(),
            Err(source) => return Err(KvError::Read { path, source }),
        };
        let entries: usize = table.values().map(BTreeMap::len).sum();
        info!(path = %path.display(), namespaces = table.len(), entries, "kv config loaded");
        Ok(Self {
            path,
            table: Mutex::new(table),
        })
    }

    /// The file this config is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets `namespace`/`key` to `value` and persists it.
    pub fn put(&self, namespace: &str, key: &str, value: &str) -> Result<(), KvError> {
        let mut table = self.table.lock();
        let prev = table
            .entry(namespace.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
        if let Err(e) = persist(&self.path, &table) {
            // Roll back, so memory matches the file.
            match prev {
                Some(old) => {
                    if let Some(ns) = table.get_mut(namespace) {
                        ns.insert(key.to_string(), old);
                    }
                }
                None => remove_key(&mut table, namespace, key),
            }
            return Err(e);
        }
        info!(namespace, key, value, "kv config put");
        Ok(())
    }

    /// The value of `namespace`/`key`.
    pub fn get(&self, namespace: &str, key: &str) -> Option<String> {
        self.table.lock().get(namespace)?.get(key).cloned()
    }

    /// Deletes `namespace`/`key` and persists the change. Returns whether it existed.
    pub fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        let mut table = self.table.lock();
        let Some(old) = table.get(namespace).and_then(|ns| ns.get(key)).cloned() else {
            return Ok(false);
        };
        remove_key(&mut table, namespace, key);
        if let Err(e) = persist(&self.path, &table) {
            table
                .entry(namespace.to_string())
                .or_default()
                .insert(key.to_string(), old);
            return Err(e);
        }
        info!(namespace, key, "kv config deleted");
        Ok(true)
    }

    /// Every entry of `namespace`, or `None` when it has none.
    pub fn namespace(&self, namespace: &str) -> Option<KVTable> {
        let table = self.table.lock();
        let ns = table.get(namespace).filter(|ns| !ns.is_empty())?;
        Some(KVTable { table: ns.clone() })
    }
}

fn remove_key(table: &mut Table, namespace: &str, key: &str) {
    if let Some(ns) = table.get_mut(namespace) {
        ns.remove(key);
        if ns.is_empty() {
            table.remove(namespace);
        }
    }
}

/// Writes `table` to `path` atomically (temp file, fsync, rename, fsync directory).
fn persist(path: &Path, table: &Table) -> Result<(), KvError> {
    let err = |source| KvError::Persist {
        path: path.to_path_buf(),
        source,
    };
    let file = KvFile {
        config_table: table.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| err(std::io::Error::other(e)))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".kvConfig")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(err)?;
    tmp.write_all(&bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    // The rename is durable only once the directory is.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_persist_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/kvConfig.json");
        let kv = KvConfigManager::load(&path).unwrap();
        assert_eq!(kv.get("ns", "k"), None);
        kv.put("ns", "k", "v").unwrap();
        kv.put("ns", "k2", "v2").unwrap();
        kv.put(NAMESPACE_ORDER_TOPIC_CONFIG, "T", "b1:4").unwrap();
        assert_eq!(kv.get("ns", "k").as_deref(), Some("v"));
        assert_eq!(kv.namespace("ns").unwrap().table.len(), 2);
        assert!(kv.delete("ns", "k").unwrap());
        assert!(!kv.delete("ns", "k").unwrap());
        assert!(kv.namespace("missing").is_none());

        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["configTable"]["ORDER_TOPIC_CONFIG"]["T"], "b1:4");

        let again = KvConfigManager::load(&path).unwrap();
        assert_eq!(again.get("ns", "k2").as_deref(), Some("v2"));
        assert_eq!(again.get("ns", "k"), None);
        assert_eq!(
            again.get(NAMESPACE_ORDER_TOPIC_CONFIG, "T").as_deref(),
            Some("b1:4")
        );
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn reads_java_files_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvConfig.json");
        std::fs::write(
            &path,
            r#"{"configTable":{"ORDER_TOPIC_CONFIG":{"T":"b:8"}}}"#,
        )
        .unwrap();
        let kv = KvConfigManager::load(&path).unwrap();
        assert_eq!(kv.get("ORDER_TOPIC_CONFIG", "T").as_deref(), Some("b:8"));

        std::fs::write(&path, "{not json").unwrap();
        let err = KvConfigManager::load(&path).unwrap_err();
        assert_eq!(err.code(), "KV_CONFIG_CORRUPT");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{not json",
            "left untouched"
        );

        std::fs::write(&path, "  \n").unwrap();
        assert!(
            KvConfigManager::load(&path)
                .unwrap()
                .namespace("x")
                .is_none()
        );
    }

    #[test]
    fn failed_write_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        let kv = KvConfigManager::load(sub.join("kvConfig.json")).unwrap();
        // The parent "directory" becomes a file: every write fails.
        std::fs::write(&sub, "x").unwrap();
        let err = kv.put("ns", "k", "v").unwrap_err();
        assert_eq!(err.code(), "KV_CONFIG_PERSIST_FAILED");
        assert_eq!(kv.get("ns", "k"), None);
    }
}

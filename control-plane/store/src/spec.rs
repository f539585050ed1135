//! Choosing a backend from the command line.
//!
//! Binaries accept `--store embedded:<dir>` (the default, with a default directory of their
//! choosing) or `--etcd-endpoints a,b,c` (or `--store etcd:a,b,c`). [`StoreSpec`] parses either
//! form and [`StoreSpec::open`] returns the `Arc<dyn IntentStore>` the control plane holds, so
//! nothing else in the program knows which backend is in use.
//!
//! Endpoints without a scheme get `http://`; `https://` is refused until TLS is wired up, so a
//! misconfiguration fails loudly at start-up instead of at the first request.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::error::{Result, StoreError};
use crate::etcd::EtcdStore;
use crate::store::IntentStore;

/// Which backend to open, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The embedded store in a directory.
    Embedded {
        /// Directory holding `intent.redb`.
        dir: PathBuf,
    },
    /// An etcd cluster.
    Etcd {
        /// `http://host:port` endpoints.
        endpoints: Vec<String>,
    },
}

impl StoreSpec {
    /// Parses `embedded:<dir>` or `etcd:<endpoint>[,<endpoint>…]`.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(dir) = s.strip_prefix("embedded:") {
            if dir.trim().is_empty() {
                return Err(StoreError::InvalidSpec(
                    "embedded: needs a directory, e.g. embedded:/var/lib/flotilla".into(),
                ));
            }
            return Ok(StoreSpec::Embedded {
                dir: PathBuf::from(dir),
            });
        }
        if let Some(list) = s.strip_prefix("etcd:") {
            return Self::etcd_endpoints(list);
        }
        Err(StoreError::InvalidSpec(format!(
            "{s:?}: expected embedded:<dir> or etcd:<endpoints>"
        )))
    }

    /// Parses the value of `--etcd-endpoints` (`a,b,c`).
    pub fn etcd_endpoints(list: &str) -> Result<Self> {
        let mut endpoints = Vec::new();
        for raw in list.split(',') {
            let e = raw.trim();
            if e.is_empty() {
                continue;
            }
            if e.starts_with("https://") {
                return Err(StoreError::InvalidSpec(format!(
                    "{e}: TLS etcd endpoints are not supported yet"
                )));
            }
            let e = if e.starts_with("http://") {
                e.to_string()
            } else if e.contains("://") {
                return Err(StoreError::InvalidSpec(format!("{e}: unsupported scheme")));
            } else {
                format!("http://{e}")
            };
            let hostport = e.trim_start_matches("http://").trim_end_matches('/');
            if hostport.is_empty() || hostport.contains('/') {
                return Err(StoreError::InvalidSpec(format!(
                    "{raw:?}: expected host:port or http://host:port"
                )));
            }
            endpoints.push(e);
        }
        if endpoints.is_empty() {
            return Err(StoreError::InvalidSpec("no etcd endpoints given".into()));
        }
        Ok(StoreSpec::Etcd { endpoints })
    }

    /// Resolves the two flags binaries take: `--etcd-endpoints` wins when given (and then
    /// `--store` must be absent or name the same etcd); otherwise `--store`; otherwise the
    /// embedded store in `default_dir`.
    pub fn from_flags(
        store: Option<&str>,
        etcd_endpoints: Option<&str>,
        default_dir: &Path,
    ) -> Result<Self> {
        match (store, etcd_endpoints) {
            (None, None) => Ok(StoreSpec::Embedded {
                dir: default_dir.to_path_buf(),
            }),
            (Some(s), None) => Self::parse(s),
            (None, Some(e)) => Self::etcd_endpoints(e),
            (Some(s), Some(e)) => {
                let from_store = Self::parse(s)?;
                let from_etcd = Self::etcd_endpoints(e)?;
                if from_store == from_etcd {
                    Ok(from_etcd)
                } else {
                    Err(StoreError::InvalidSpec(format!(
                        "--store {s} conflicts with --etcd-endpoints {e}; give one"
                    )))
                }
            }
        }
    }

    /// Opens the backend.
    pub async fn open(&self) -> Result<Arc<dyn IntentStore>> {
        self.open_with(EmbeddedOptions::default()).await
    }

    /// Opens the backend, with options for the embedded store.
    pub async fn open_with(&self, options: EmbeddedOptions) -> Result<Arc<dyn IntentStore>> {
        Ok(match self {
            StoreSpec::Embedded { dir } => Arc::new(EmbeddedStore::open_with(dir, options).await?),
            StoreSpec::Etcd { endpoints } => Arc::new(EtcdStore::connect(endpoints).await?),
        })
    }
}

impl FromStr for StoreSpec {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Embedded { dir } => write!(f, "embedded:{}", dir.display()),
            StoreSpec::Etcd { endpoints } => write!(f, "etcd:{}", endpoints.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            StoreSpec::parse("embedded:/tmp/x").unwrap(),
            StoreSpec::Embedded {
                dir: PathBuf::from("/tmp/x")
            }
        );
        assert_eq!(
            StoreSpec::parse("etcd:a:2379, http://b:2379").unwrap(),
            StoreSpec::Etcd {
                endpoints: vec!["http://a:2379".into(), "http://b:2379".into()]
            }
        );
        assert_eq!(
            "etcd:http://a:1".parse::<StoreSpec>().unwrap().to_string(),
            "etcd:http://a:1"
        );
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "",
            "embedded:",
            "etcd:",
            "etcd:https://a:1",
            "zk:a",
            "etcd:ftp://a",
        ] {
            let err = StoreSpec::parse(bad).unwrap_err();
            assert_eq!(err.code(), "STORE_INVALID_SPEC", "{bad}");
        }
    }

    #[test]
    fn flags_resolve() {
        let d = Path::new("/var/lib/f");
        assert_eq!(
            StoreSpec::from_flags(None, None, d).unwrap(),
            StoreSpec::Embedded { dir: d.into() }
        );
        assert!(matches!(
            StoreSpec::from_flags(None, Some("a:1,b:2"), d).unwrap(),
            StoreSpec::Etcd { endpoints } if endpoints.len() == 2
        ));
        assert!(StoreSpec::from_flags(Some("embedded:/x"), Some("a:1"), d).is_err());
        assert!(StoreSpec::from_flags(Some("etcd:a:1"), Some("http://a:1"), d).is_ok());
    }
}

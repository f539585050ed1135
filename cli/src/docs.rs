//! The documents `flotilla apply -f` reads: YAML or JSON, several per file, in the
//! `apiVersion`/`kind`/`metadata`/`spec` shape kubectl users know.
//!
//! ```yaml
//! apiVersion: flotilla.io/v1
//! kind: Cluster            # spec: the fields of the flat cluster file (see `apply`)
//! metadata: {name: demo}
//! spec: {groups: 1, replicasPerGroup: 3, mode: dledger}
//! ---
//! apiVersion: flotilla.io/v1
//! kind: Topic
//! metadata: {name: Orders}
//! spec: {cluster: demo, queues: 8, perm: rw}
//! ---
//! apiVersion: flotilla.io/v1
//! kind: ConsumerGroup
//! metadata: {name: cg-orders}
//! spec: {cluster: demo, maxRetries: 16}
//! ```
//!
//! A document without `kind` is the original flat cluster file, so existing files keep
//! working. The RocketMQ operator's documents (`rocketmq.apache.org/v1alpha1`) are read too,
//! see [`crate::operator`]. JSON input (starting with `{` or `[`) may hold one document, an array of them, or
//! several objects one after another; YAML input separates documents with `---`. Every field
//! is checked by name (unknown fields are errors that name the document and the field).
//! Parsing is pure; [`crate::apply`] sends the documents.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::apply::ClusterFile;

/// The apiVersion of Flotilla documents.
pub const API_VERSION: &str = "flotilla.io/v1";

/// The kinds `apply` knows.
pub const KINDS: [&str; 3] = ["Cluster", "Topic", "ConsumerGroup"];

/// A document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// The text is not YAML (or JSON).
    #[error("not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// The text looked like JSON but is not.
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A document has a kind `apply` does not know.
    #[error("document {index}: unknown kind {kind:?} (known: {})", KINDS.join(", "))]
    UnknownKind {
        /// 1-based position in the input.
        index: usize,
        /// The kind given.
        kind: String,
    },
    /// A document of an API version `apply` does not read.
    #[error("document {index}: unsupported apiVersion {api_version:?} (use {API_VERSION})")]
    UnsupportedVersion {
        /// 1-based position in the input.
        index: usize,
        /// The version given.
        api_version: String,
    },
    /// A document's fields do not fit its kind.
    #[error("document {index} ({kind}): {message}")]
    Invalid {
        /// 1-based position in the input.
        index: usize,
        /// Its kind.
        kind: String,
        /// What is wrong.
        message: String,
    },
    /// The input holds no document.
    #[error("no document in the input")]
    Empty,
}

impl DocError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Yaml(_) | Self::Json(_) => "APPLY_PARSE",
            Self::UnknownKind { .. } => "APPLY_UNKNOWN_KIND",
            Self::UnsupportedVersion { .. } => "APPLY_UNSUPPORTED_VERSION",
            Self::Invalid { .. } => "APPLY_INVALID_DOCUMENT",
            Self::Empty => "APPLY_EMPTY",
        }
    }
}

/// A topic document's spec.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicSpec {
    /// Cluster.
    pub cluster: String,
    /// Read and write queues.
    #[serde(default)]
    pub queues: Option<i64>,
    /// Read queues.
    #[serde(default)]
    pub read_queues: Option<i64>,
    /// Write queues.
    #[serde(default)]
    pub write_queues: Option<i64>,
    /// rw / r / w or 6 / 4 / 2.
    #[serde(default)]
    pub perm: Option<Value>,
    /// Ordered.
    #[serde(default)]
    pub order: bool,
    /// Broker groups (empty = all).
    #[serde(default)]
    pub groups: Vec<String>,
    /// RocketMQ attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A consumer-group document's spec.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupSpec {
    /// Cluster.
    pub cluster: String,
    /// Retry queues.
    #[serde(default = "one")]
    pub retry_queues: i64,
    /// Redeliveries before the DLQ.
    #[serde(default = "sixteen")]
    pub max_retries: i64,
    /// Broadcasting.
    #[serde(default)]
    pub broadcast: bool,
    /// Start from the first offset.
    #[serde(default)]
    pub consume_from_min: bool,
    /// Orderly.
    #[serde(default)]
    pub orderly: bool,
    /// Consumption on.
    #[serde(default = "yes")]
    pub consume_enable: bool,
    /// Broker groups (empty = all).
    #[serde(default)]
    pub groups: Vec<String>,
}

fn one() -> i64 {
    1
}
fn sixteen() -> i64 {
    16
}
fn yes() -> bool {
    true
}

/// One document.
#[derive(Debug, Clone)]
pub enum Document {
    /// A cluster.
    Cluster(Box<ClusterFile>),
    /// A topic.
    Topic {
        /// Name.
        name: String,
        /// Spec.
        spec: TopicSpec,
    },
    /// A consumer group.
    Group {
        /// Name.
        name: String,
        /// Spec.
        spec: GroupSpec,
    },
    /// A topic migration between clusters (the operator's TopicTransfer).
    Migrate {
        /// The document's name.
        name: String,
        /// Topic.
        topic: String,
        /// From this cluster.
        source: String,
        /// To this cluster.
        target: String,
    },
}

impl Document {
    /// `Kind name` for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Cluster(c) => format!("Cluster {}", c.name),
            Self::Topic { name, .. } => format!("Topic {name}"),
            Self::Group { name, .. } => format!("ConsumerGroup {name}"),
            Self::Migrate { name, .. } => format!("TopicTransfer {name}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Splits the input into raw documents (JSON values).
pub fn split(text: &str) -> Result<Vec<Value>, DocError> {
    let trimmed = text.trim_start();
    let mut out = Vec::new();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        for v in serde_json::Deserializer::from_str(trimmed).into_iter::<Value>() {
            match v? {
                Value::Array(items) => out.extend(items),
                v => out.push(v),
            }
        }
    } else {
        for d in serde_yaml::Deserializer::from_str(text) {
            let v = Value::deserialize(d)?;
            if !v.is_null() {
                out.push(v);
            }
        }
    }
    if out.is_empty() {
        return Err(DocError::Empty);
    }
    Ok(out)
}

fn typed<T: serde::de::DeserializeOwned>(
    index: usize,
    kind: &str,
    what: &str,
    v: Value,
) -> Result<T, DocError> {
    serde_json::from_value(v).map_err(|e| DocError::Invalid {
        index,
        kind: kind.to_string(),
        message: format!("{what}: {e}"),
    })
}

/// Reads one raw document (`index` is 1-based, for messages).
pub fn document(index: usize, v: Value) -> Result<Document, DocError> {
    let Value::Object(mut obj) = v else {
        return Err(DocError::Invalid {
            index,
            kind: "?".into(),
            message: "a document must be a mapping".into(),
        });
    };
    let Some(kind) = obj.remove("kind") else {
        // The original flat cluster file.
        let c: ClusterFile = typed(index, "Cluster", "cluster file", Value::Object(obj))?;
        return Ok(Document::Cluster(Box::new(c)));
    };
    let kind = kind.as_str().unwrap_or_default().to_string();
    let api_version = obj
        .remove("apiVersion")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| API_VERSION.to_string());
    if api_version != API_VERSION {
        return Err(DocError::UnsupportedVersion { index, api_version });
    }
    if !KINDS.contains(&kind.as_str()) {
        return Err(DocError::UnknownKind { index, kind });
    }
    let meta: Meta = typed(
        index,
        &kind,
        "metadata",
        obj.remove("metadata").unwrap_or(Value::Null),
    )?;
    let spec = obj
        .remove("spec")
        .unwrap_or_else(|| Value::Object(Default::default()));
    if let Some(extra) = obj.keys().next() {
        return Err(DocError::Invalid {
            index,
            kind,
            message: format!(
                "unknown top-level field {extra:?} (apiVersion, kind, metadata, spec)"
            ),
        });
    }
    match kind.as_str() {
        "Cluster" => {
            let Value::Object(mut s) = spec else {
                return Err(DocError::Invalid {
                    index,
                    kind,
                    message: "spec must be a mapping".into(),
                });
            };
            s.insert("name".into(), Value::String(meta.name));
            if !meta.labels.is_empty() {
                let labels = serde_json::to_value(meta.labels).map_err(DocError::Json)?;
                s.insert("labels".into(), labels);
            }
            let c: ClusterFile = typed(index, &kind, "spec", Value::Object(s))?;
            Ok(Document::Cluster(Box::new(c)))
        }
        "Topic" => Ok(Document::Topic {
            name: meta.name,
            spec: typed(index, &kind, "spec", spec)?,
        }),
        _ => Ok(Document::Group {
            name: meta.name,
            spec: typed(index, &kind, "spec", spec)?,
        }),
    }
}

/// Every document of the input: the RocketMQ operator's documents translated first
/// ([`crate::operator`], with their warnings), then Flotilla's in input order.
pub fn parse(text: &str) -> Result<crate::operator::Translation, DocError> {
    let mut operator = Vec::new();
    let mut flotilla = Vec::new();
    for (i, v) in split(text)?.into_iter().enumerate() {
        if crate::operator::is_operator(&v) {
            operator.push((i + 1, v));
        } else {
            flotilla.push(document(i + 1, v)?);
        }
    }
    let mut out = if operator.is_empty() {
        crate::operator::Translation::default()
    } else {
        crate::operator::translate(operator)?
    };
    out.documents.extend(flotilla);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
apiVersion: flotilla.io/v1
kind: Cluster
metadata:
  name: demo
  labels: {team: pay}
spec:
  groups: 2
  replicasPerGroup: 1
---
apiVersion: flotilla.io/v1
kind: Topic
metadata: {name: Orders}
spec: {cluster: demo, queues: 4, perm: rw}
---
kind: ConsumerGroup
metadata: {name: cg-orders}
spec: {cluster: demo, maxRetries: 3}
";

    #[test]
    fn yaml_with_several_documents() {
        let docs = parse(YAML).unwrap().documents;
        assert_eq!(docs.len(), 3);
        match &docs[0] {
            Document::Cluster(c) => {
                assert_eq!((c.name.as_str(), c.groups), ("demo", 2));
                assert_eq!(c.labels["team"], "pay");
            }
            d => panic!("{d:?}"),
        }
        match &docs[1] {
            Document::Topic { name, spec } => {
                assert_eq!(name, "Orders");
                assert_eq!(spec.queues, Some(4));
                assert_eq!(spec.perm, Some(Value::String("rw".into())));
            }
            d => panic!("{d:?}"),
        }
        match &docs[2] {
            Document::Group { name, spec } => {
                assert_eq!(name, "cg-orders");
                assert_eq!((spec.max_retries, spec.retry_queues), (3, 1));
                assert!(spec.consume_enable);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn json_forms() {
        let one = r#"{"name":"demo","groups":1}"#;
        assert!(
            matches!(&parse(one).unwrap().documents[0], Document::Cluster(c) if c.name == "demo")
        );
        let array = r#"[{"kind":"Topic","metadata":{"name":"A"},"spec":{"cluster":"c"}},
                        {"kind":"Topic","metadata":{"name":"B"},"spec":{"cluster":"c"}}]"#;
        assert_eq!(parse(array).unwrap().documents.len(), 2);
        let stream = r#"{"kind":"Topic","metadata":{"name":"A"},"spec":{"cluster":"c"}}
                        {"kind":"Topic","metadata":{"name":"B"},"spec":{"cluster":"c"}}"#;
        let docs = parse(stream).unwrap().documents;
        assert_eq!(docs[1].describe(), "Topic B");
    }

    #[test]
    fn bad_documents_say_where_and_what() {
        let e = parse("kind: Queue\nmetadata: {name: x}\n").unwrap_err();
        assert_eq!(e.code(), "APPLY_UNKNOWN_KIND");
        assert!(
            e.to_string().contains("document 1: unknown kind \"Queue\""),
            "{e}"
        );
        let e = parse("a: [b\n").unwrap_err();
        assert_eq!(e.code(), "APPLY_PARSE");
        let e = parse(&format!(
            "{YAML}---\nkind: Topic\nmetadata: {{name: T}}\nspec: {{cluster: c, queue: 3}}\n"
        ))
        .unwrap_err();
        assert_eq!(e.code(), "APPLY_INVALID_DOCUMENT");
        assert!(
            e.to_string()
                .starts_with("document 4 (Topic): spec: unknown field `queue`"),
            "{e}"
        );
        let e = parse("apiVersion: v9\nkind: Topic\n").unwrap_err();
        assert_eq!(e.code(), "APPLY_UNSUPPORTED_VERSION");
        assert_eq!(parse("---\n").unwrap_err().code(), "APPLY_EMPTY");
        let e =
            parse("kind: Topic\nmetadata: {name: T}\nspec: {cluster: c}\nextra: 1\n").unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
    }
}

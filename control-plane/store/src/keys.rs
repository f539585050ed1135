//! Key builders for the store layout in `DESIGN.md`.
//!
//! Every key the control plane writes is built here, so the layout lives in one place:
//!
//! | key | holds |
//! |---|---|
//! | `/flotilla/v1/clusters/{name}` | a `Cluster` |
//! | `/flotilla/v1/nodes/{node}` | a `Node` registration |
//! | `/flotilla/v1/nodes/{node}/desired` | the node's desired state |
//! | `/flotilla/v1/observed/{node}` | the node's last report (under the node's lease) |
//! | `/flotilla/v1/operations/{id}` | an `Operation` |
//! | `/flotilla/v1/requests/{request_id}` | the outcome of an idempotent request (AIP-155) |
//! | `/flotilla/v1/leader/{lease-hex}` | election candidates (election name [`LEADER_ELECTION`]) |
//!
//! Names are single path segments: non-empty, no `/`, no NUL. Builders reject anything else,
//! so a node called `a/desired` can never alias another node's desired-state key. Note that a
//! range over [`NODES`] returns both registrations and desired states; [`parse_node_key`] tells
//! them apart.

use crate::error::{Result, StoreError};

/// Root of every Flotilla key.
pub const ROOT: &str = "/flotilla/v1/";
/// Prefix of clusters.
pub const CLUSTERS: &str = "/flotilla/v1/clusters/";
/// Prefix of nodes (registrations and desired states).
pub const NODES: &str = "/flotilla/v1/nodes/";
/// Prefix of observed state.
pub const OBSERVED: &str = "/flotilla/v1/observed/";
/// Prefix of operations.
pub const OPERATIONS: &str = "/flotilla/v1/operations/";
/// Prefix of idempotent request records.
pub const REQUESTS: &str = "/flotilla/v1/requests/";
/// Audit records, keyed so that byte order is time order: `{unix_ms:020}-{id}`.
pub const AUDIT: &str = "/flotilla/v1/audit/";
/// The control-plane election name (candidates live under `LEADER_ELECTION/`).
pub const LEADER_ELECTION: &str = "/flotilla/v1/leader";

/// Checks that `name` is one path segment.
pub fn validate_segment(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(StoreError::InvalidArgument(format!("empty {what} name")));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(StoreError::InvalidArgument(format!(
            "{what} name {name:?} must not contain '/' or NUL"
        )));
    }
    Ok(())
}

/// `/flotilla/v1/clusters/{name}`.
pub fn cluster(name: &str) -> Result<String> {
    validate_segment("cluster", name)?;
    Ok(format!("{CLUSTERS}{name}"))
}

/// `/flotilla/v1/nodes/{node}`.
pub fn node(node: &str) -> Result<String> {
    validate_segment("node", node)?;
    Ok(format!("{NODES}{node}"))
}

/// `/flotilla/v1/nodes/{node}/desired`.
pub fn node_desired(node: &str) -> Result<String> {
    validate_segment("node", node)?;
    Ok(format!("{NODES}{node}/desired"))
}

/// `/flotilla/v1/observed/{node}`.
pub fn observed(node: &str) -> Result<String> {
    validate_segment("node", node)?;
    Ok(format!("{OBSERVED}{node}"))
}

/// `/flotilla/v1/operations/{id}`.
pub fn operation(id: &str) -> Result<String> {
    validate_segment("operation", id)?;
    Ok(format!("{OPERATIONS}{id}"))
}

/// `/flotilla/v1/requests/{request_id}`.
pub fn request(request_id: &str) -> Result<String> {
    validate_segment("request", request_id)?;
    Ok(format!("{REQUESTS}{request_id}"))
}

/// `/flotilla/v1/audit/{unix_ms:020}-{id}`: zero-padded so keys sort by time.
pub fn audit(unix_ms: u64, id: &str) -> Result<String> {
    validate_segment("audit record", id)?;
    Ok(format!("{AUDIT}{unix_ms:020}-{id}"))
}

/// A key under [`NODES`], decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKey<'a> {
    /// `/flotilla/v1/nodes/{node}`.
    Node(&'a str),
    /// `/flotilla/v1/nodes/{node}/desired`.
    Desired(&'a str),
}

/// Decodes a key under [`NODES`]; `None` for anything else.
pub fn parse_node_key(key: &str) -> Option<NodeKey<'_>> {
    let rest = key.strip_prefix(NODES)?;
    match rest.split_once('/') {
        None if !rest.is_empty() => Some(NodeKey::Node(rest)),
        Some((node, "desired")) if !node.is_empty() => Some(NodeKey::Desired(node)),
        _ => None,
    }
}

/// The last path segment of a key under `prefix` (e.g. the cluster name of a cluster key).
pub fn name_under<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix)?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_design_layout() {
        assert_eq!(cluster("c1").unwrap(), "/flotilla/v1/clusters/c1");
        assert_eq!(node("n1").unwrap(), "/flotilla/v1/nodes/n1");
        assert_eq!(node_desired("n1").unwrap(), "/flotilla/v1/nodes/n1/desired");
        assert_eq!(observed("n1").unwrap(), "/flotilla/v1/observed/n1");
        assert_eq!(operation("op-1").unwrap(), "/flotilla/v1/operations/op-1");
        assert_eq!(request("r-1").unwrap(), "/flotilla/v1/requests/r-1");
        assert_eq!(LEADER_ELECTION, "/flotilla/v1/leader");
    }

    #[test]
    fn rejects_names_that_would_alias() {
        assert!(node("a/desired").is_err());
        assert!(cluster("").is_err());
        assert!(operation("x\0").is_err());
    }

    #[test]
    fn parses_node_keys() {
        assert_eq!(
            parse_node_key("/flotilla/v1/nodes/n1"),
            Some(NodeKey::Node("n1"))
        );
        assert_eq!(
            parse_node_key("/flotilla/v1/nodes/n1/desired"),
            Some(NodeKey::Desired("n1"))
        );
        assert_eq!(parse_node_key("/flotilla/v1/nodes/n1/other"), None);
        assert_eq!(parse_node_key("/flotilla/v1/clusters/c"), None);
        assert_eq!(name_under(CLUSTERS, "/flotilla/v1/clusters/c"), Some("c"));
    }
}

//! Flotilla's gRPC APIs, generated from the `.proto` files in this crate.
//!
//! - [`v1`] (`flotilla.v1`): the public API for platforms and the `flotilla` CLI — clusters,
//!   nodes, operations and business management (topics, groups, messages).
//! - [`agent::v1`] (`flotilla.agent.v1`): the internal control plane ↔ agent protocol.
//!
//! [`FILE_DESCRIPTOR_SET`] is the encoded `FileDescriptorSet` of every file, for gRPC
//! reflection and for schema checks.

#![allow(clippy::all, clippy::unwrap_used, rust_2018_idioms)] // generated code

/// The public API, package `flotilla.v1`.
pub mod v1 {
    tonic::include_proto!("flotilla.v1");
}

/// Internal protocols.
pub mod agent {
    /// Package `flotilla.agent.v1`.
    pub mod v1 {
        tonic::include_proto!("flotilla.agent.v1");
    }
}

/// Encoded `google.protobuf.FileDescriptorSet` of all Flotilla protos.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("flotilla_descriptor");

//! Compiles the `.proto` files into Rust (prost messages, tonic clients and servers) and writes
//! a file descriptor set for gRPC reflection and for the schema test.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "flotilla/v1/common.proto",
        "flotilla/v1/cluster.proto",
        "flotilla/v1/node.proto",
        "flotilla/v1/operation.proto",
        "flotilla/v1/business.proto",
        "flotilla/v1/audit.proto",
        "flotilla/agent/v1/agent.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    // No `Client::connect` constructors: `AgentService.Connect` would clash with it. Clients
    // are built with `XClient::new(Channel)`.
    tonic_prost_build::configure()
        .build_transport(false)
        .file_descriptor_set_path(out.join("flotilla_descriptor.bin"))
        .compile_protos(&protos, &["."])?;
    Ok(())
}

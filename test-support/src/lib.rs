//! Test-only helpers shared across the workspace.
//!
//! This crate sits below everything else: it depends on nothing of ours, so both the DLedger
//! engine's own tests (`broker/dledger`) and the end-to-end harness (`tests/`, which depends
//! on the broker and therefore on DLedger) can use it without a dependency cycle.

pub mod fault_proxy;

pub use fault_proxy::FaultProxy;

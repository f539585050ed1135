//! RocketMQ ACL 1.0 for Flotilla's broker and nameserver.
//!
//! With `aclEnable=true` a RocketMQ broker serves only requests signed by an account of
//! `plain_acl.yml` that has the permissions the request needs; real clients sign with
//! their `AccessKey` and secret (`AclClientRPCHook`). This crate is that check, shared by
//! `flotilla-broker` and `flotilla-namesrv` so both apply one set of rules; the signature
//! itself lives in `flotilla_remoting::signing`, next to the client that makes it.
//!
//! - [`rules`]: `plain_acl.yml` parsed and validated as a whole;
//! - [`perm`], [`address`]: permissions (`DENY|PUB|SUB`) and white-listed addresses;
//! - [`resource`]: what each request code needs, and the admin codes;
//! - [`check`]: one request against the rules, in Java's order;
//! - [`watch`]: the rules in force, re-read when the file changes (a bad file never
//!   replaces good rules);
//! - [`hook`]: the remoting server hook answering refusals with `NO_PERMISSION`.
//!
//! ACL 2.0 (RocketMQ 5.3's users and policies, `authenticationEnabled`) is not here.

pub mod address;
pub mod check;
pub mod hook;
pub mod perm;
pub mod resource;
pub mod rules;
pub mod watch;

pub use check::{Denied, Scope, check};
pub use hook::AclHook;
pub use perm::Perm;
pub use rules::{AclRules, RulesError};
pub use watch::{AclFile, AclFileError, DEFAULT_ACL_FILE, acl_file_path};

/// How often servers re-read `plain_acl.yml` unless configured otherwise.
pub const DEFAULT_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1000);

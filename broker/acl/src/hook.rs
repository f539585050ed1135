//! The remoting server hook that applies the ACL to every request.
//!
//! Registered on a broker's or nameserver's [`flotilla_remoting::RemotingServer`] when
//! `aclEnable=true`, it checks each request against the rules in force at that moment (so
//! a reloaded `plain_acl.yml` applies from the next request on) and answers a refusal with
//! `NO_PERMISSION` (16) and a remark saying why.
//!
//! Java's ACL 1.0 hook throws an `AclException`, which its remoting server answers with
//! `SYSTEM_ERROR` (1) and the exception text; RocketMQ 5's ACL 2.0 answers
//! `NO_PERMISSION`. We answer `NO_PERMISSION` for both: clients treat either as a failed
//! request, and 16 says what happened.

use std::net::SocketAddr;
use std::sync::Arc;

use flotilla_remoting::{ProcessError, RemotingCommand, RequestHook, response_code};
use tracing::debug;

use crate::check::{Scope, check};
use crate::watch::AclFile;

/// Prefix of every refusal's remark.
pub const REMARK_PREFIX: &str = "[ACL] ";

/// Checks requests against an [`AclFile`]'s current rules.
#[derive(Debug, Clone)]
pub struct AclHook {
    scope: Scope,
    file: Arc<AclFile>,
}

impl AclHook {
    /// A hook for a server of `scope` using `file`'s rules.
    pub fn new(scope: Scope, file: Arc<AclFile>) -> Self {
        Self { scope, file }
    }
}

impl RequestHook for AclHook {
    fn before(&self, remote: SocketAddr, request: &RemotingCommand) -> Result<(), ProcessError> {
        let rules = self.file.rules();
        check(&rules, self.scope, remote.ip(), request).map_err(|denied| {
            debug!(code = request.code, remote = %remote, reason = denied.code(), "refused by ACL");
            ProcessError::new(
                response_code::NO_PERMISSION,
                format!("{REMARK_PREFIX}{denied}"),
            )
        })
    }
}

//! Calls to the control plane's business services and how their failures read.
//!
//! A refused call prints the control plane's message, one line per bad field (from
//! `google.rpc.BadRequest`) and, as the error's code, the stable reason from
//! `google.rpc.ErrorInfo` (`TOPIC_NOT_FOUND`, `INVALID_REQUEST`, `BROKERS_UNAVAILABLE`, …), so
//! a person sees what to fix and a script can match the code.
//!
//! The generated clients are built on [`crate::client::channel`], the one way every command
//! connects.

use flotilla_proto::v1::group_service_client::GroupServiceClient;
use flotilla_proto::v1::topic_service_client::TopicServiceClient;
use tonic_types::StatusExt;

use crate::client::{self, ClientError};

/// A business command failed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The control plane answered with an error.
    #[error("{}", describe(.0))]
    Api(tonic::Status),
    /// The control plane could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A flag's value is out of range or malformed (checked before anything is sent).
    #[error("{flag}: {message}")]
    Invalid {
        /// The flag, e.g. `--queues`.
        flag: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The answer could not be printed.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// A followed operation ended other than Succeeded.
    #[error("operation {name} ended {phase}{}", if .error.is_empty() { String::new() } else { format!(": {}", .error) })]
    Operation {
        /// Operation name.
        name: String,
        /// Its final phase.
        phase: String,
        /// Its error, when it failed.
        error: String,
    },
}

impl From<tonic::Status> for CmdError {
    fn from(s: tonic::Status) -> Self {
        Self::Api(s)
    }
}

impl CmdError {
    /// A bad flag value.
    pub fn invalid(flag: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            flag: flag.to_string(),
            message: message.into(),
        }
    }

    /// Stable code: the control plane's ErrorInfo reason when it sent one.
    pub fn code(&self) -> String {
        match self {
            Self::Api(s) => {
                reason(s).unwrap_or_else(|| format!("GRPC_{:?}", s.code()).to_uppercase())
            }
            Self::Client(e) => e.code().to_string(),
            Self::Invalid { .. } => "CLI_INVALID_ARGUMENT".to_string(),
            Self::Output(e) => e.code().to_string(),
            Self::Operation { phase, .. } => format!("OPERATION_{}", phase.to_uppercase()),
        }
    }

    /// Exit status: 2 for a bad command line (as for clap's own usage errors), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid { .. } => 2,
            _ => 1,
        }
    }
}

/// The ErrorInfo reason of a status.
pub fn reason(s: &tonic::Status) -> Option<String> {
    s.get_details_error_info().map(|i| i.reason)
}

/// The message of a status, then one indented line per bad field.
pub fn describe(s: &tonic::Status) -> String {
    let mut out = s.message().to_string();
    if out.is_empty() {
        out = format!("{:?}", s.code());
    }
    if let Some(br) = s.get_details_bad_request() {
        for v in br.field_violations {
            out.push_str(&format!("\n  {}: {}", v.field, v.description));
        }
    }
    if let Some(pf) = s.get_details_precondition_failure() {
        for v in pf.violations {
            out.push_str(&format!("\n  {} [{}]", v.subject, v.r#type));
        }
    }
    out
}

/// TopicService client.
pub async fn topics(server: &str) -> Result<TopicServiceClient<crate::client::Chan>, ClientError> {
    Ok(TopicServiceClient::new(client::channel(server).await?))
}

/// GroupService client.
pub async fn groups(server: &str) -> Result<GroupServiceClient<crate::client::Chan>, ClientError> {
    Ok(GroupServiceClient::new(client::channel(server).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn refusals_read_well() {
        let mut d = ErrorDetails::with_error_info("INVALID_REQUEST", "flotilla.io", []);
        d.add_bad_request_violation("topic.name", "must match ^[%|a-zA-Z0-9_-]+$");
        let s = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "invalid argument: topic.name: must match",
            d,
        );
        let e = CmdError::from(s);
        assert_eq!(e.code(), "INVALID_REQUEST");
        let text = e.to_string();
        assert!(
            text.ends_with("\n  topic.name: must match ^[%|a-zA-Z0-9_-]+$"),
            "{text}"
        );
        let mut d = ErrorDetails::with_error_info("NODE_IN_USE", "flotilla.io", []);
        d.add_precondition_failure_violation("AGENT_CONNECTED", "name: nodes/n1", "connected");
        let s = tonic::Status::with_error_details(
            tonic::Code::FailedPrecondition,
            "node n1 cannot be deleted: its agent is connected",
            d,
        );
        let e = CmdError::from(s);
        assert_eq!(e.code(), "NODE_IN_USE");
        assert!(
            e.to_string()
                .ends_with("\n  name: nodes/n1 [AGENT_CONNECTED]"),
            "{e}"
        );
        let bare = CmdError::from(tonic::Status::unimplemented("no"));
        assert_eq!(bare.code(), "GRPC_UNIMPLEMENTED");
        assert_eq!(bare.exit_code(), 1);
        let bad = CmdError::invalid("--queues", "must be 1..=1024, got -1");
        assert_eq!(
            (bad.code().as_str(), bad.exit_code()),
            ("CLI_INVALID_ARGUMENT", 2)
        );
        assert_eq!(bad.to_string(), "--queues: must be 1..=1024, got -1");
    }
}

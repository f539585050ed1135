//! Online config changes: applying a broker config change through the admin protocol
//! (UPDATE_BROKER_CONFIG) instead of restarting the broker (DESIGN principle 6).
//!
//! The control plane marks a change as online-capable by leaving the instance's
//! `restart_hash` unchanged while its `config_hash` changes (the nameserver list,
//! `brokerPermission`). The agent sends exactly the keys whose values changed, then rewrites
//! the rendered config file so a later restart starts with the same values.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_remoting::{RemotingClient, RemotingCommand, request_code, response_code};

/// An online update failed.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    /// The broker could not be reached.
    #[error("UPDATE_BROKER_CONFIG to {addr}: {source}")]
    Transport {
        /// Broker address.
        addr: String,
        /// The cause.
        #[source]
        source: flotilla_remoting::RemotingError,
    },
    /// The broker refused the update.
    #[error("UPDATE_BROKER_CONFIG to {addr} refused: code {code} ({remark})")]
    Refused {
        /// Broker address.
        addr: String,
        /// Response code.
        code: i32,
        /// Remark.
        remark: String,
    },
}

impl OnlineError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Transport { .. } => "ONLINE_UNREACHABLE",
            Self::Refused { .. } => "ONLINE_REFUSED",
        }
    }
}

/// Timeout of one admin call.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The keys whose values differ between `old` and `new` (with their new values); `None` when
/// a key was removed, which UPDATE_BROKER_CONFIG cannot express.
pub fn changed_keys(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    if old.keys().any(|k| !new.contains_key(k)) {
        return None;
    }
    Some(
        new.iter()
            .filter(|(k, v)| old.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// The UPDATE_BROKER_CONFIG body: `k=v\n` lines.
pub fn properties_body(kv: &BTreeMap<String, String>) -> String {
    kv.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// Sends UPDATE_BROKER_CONFIG with `kv` to the broker at `addr`.
pub async fn update_broker_config(
    client: &RemotingClient,
    addr: &str,
    kv: &BTreeMap<String, String>,
) -> Result<(), OnlineError> {
    let cmd = RemotingCommand::request(request_code::UPDATE_BROKER_CONFIG)
        .with_body(properties_body(kv).into_bytes());
    let resp = client
        .invoke(addr, cmd, ADMIN_TIMEOUT)
        .await
        .map_err(|source| OnlineError::Transport {
            addr: addr.to_string(),
            source,
        })?;
    if resp.code != response_code::SUCCESS {
        return Err(OnlineError::Refused {
            addr: addr.to_string(),
            code: resp.code,
            remark: resp.remark.unwrap_or_default(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn diff_and_body() {
        let old = m(&[("namesrvAddr", "a:1"), ("brokerName", "b")]);
        let new = m(&[("namesrvAddr", "a:1;c:2"), ("brokerName", "b")]);
        let d = changed_keys(&old, &new).unwrap();
        assert_eq!(d, m(&[("namesrvAddr", "a:1;c:2")]));
        assert_eq!(properties_body(&d), "namesrvAddr=a:1;c:2\n");
        assert!(changed_keys(&new, &m(&[("brokerName", "b")])).is_none());
        assert!(changed_keys(&old, &old).unwrap().is_empty());
    }
}

//! GET_PRODUCER_CONNECTION_LIST (204): who produces with a producer group right now.
//!
//! Producers announce their groups in heartbeats (`client_manage`); dashboards and
//! `mqadmin producerConnection` ask a broker for the connections of one group. The answer is
//! RocketMQ's `ProducerConnection` body (`{"connectionSet":[{clientId, clientAddr, language,
//! version}]}`), and a group with no connection is answered as Java answers it: SYSTEM_ERROR
//! with the remark `the producer group[<group>] not exist`.

use flotilla_remoting::protocol::{Connection, encode_body};
use flotilla_remoting::{ProcessError, ProcessResult, RemotingCommand};
use serde::{Deserialize, Serialize};

use super::bad_header;
use crate::broker::Broker;
use crate::client_manager::ClientInfo;
use crate::headers::Ext;

/// Reply body of GET_PRODUCER_CONNECTION_LIST (RocketMQ `ProducerConnection`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerConnection {
    /// One entry per connection of the group.
    pub connection_set: Vec<Connection>,
}

/// The body for `clients` (sorted by client id, then address, so answers are stable).
pub fn producer_connection(clients: &[ClientInfo]) -> ProducerConnection {
    let mut connection_set: Vec<Connection> = clients
        .iter()
        .filter(|c| !c.channel.is_closed())
        .map(|c| Connection {
            client_id: c.client_id.clone(),
            client_addr: c.channel.remote_addr().to_string(),
            language: c.language.name().to_string(),
            version: c.version,
        })
        .collect();
    connection_set
        .sort_by(|a, b| (&a.client_id, &a.client_addr).cmp(&(&b.client_id, &b.client_addr)));
    ProducerConnection { connection_set }
}

/// GET_PRODUCER_CONNECTION_LIST with header `producerGroup`.
pub fn connection_list(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let group = Ext(req).string("producerGroup").map_err(bad_header)?;
    let _span = tracing::debug_span!("producer_connection_list", group).entered();
    let body = producer_connection(&b.clients.producers(group));
    if body.connection_set.is_empty() {
        return Err(ProcessError::system(format!(
            "the producer group[{group}] not exist"
        )));
    }
    Ok(Some(
        RemotingCommand::success().with_body(encode_body(&body)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_uses_java_field_names() {
        let body = ProducerConnection {
            connection_set: vec![Connection {
                client_id: "127.0.0.1@1".into(),
                client_addr: "127.0.0.1:5000".into(),
                language: "RUST".into(),
                version: 475,
            }],
        };
        let v: serde_json::Value = serde_json::from_slice(&encode_body(&body).unwrap()).unwrap();
        assert_eq!(v["connectionSet"][0]["clientId"], "127.0.0.1@1");
        assert_eq!(v["connectionSet"][0]["clientAddr"], "127.0.0.1:5000");
        assert_eq!(v["connectionSet"][0]["language"], "RUST");
        assert_eq!(v["connectionSet"][0]["version"], 475);
        assert!(producer_connection(&[]).connection_set.is_empty());
    }
}

//! The slave's metadata follower: topics, subscription groups and consumer offsets.
//!
//! Messages arrive through the CommitLog stream, but the metadata that gives them meaning
//! (which topics and queues exist, which groups may consume, where each group stands) lives
//! in the master's config files. A slave that serves reads after its master dies needs them,
//! so it pulls GET_ALL_TOPIC_CONFIG (21), GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201) and
//! GET_ALL_CONSUMER_OFFSET (43) from the master's remoting address at start, whenever the
//! master's address changes, and every `flotillaSlaveSyncIntervalMills` — Java does it every
//! 60 s; seconds keep a slave's routes and offsets close enough to be useful. The slave's
//! tables are made equal to the master's (entries it lacks are added or replaced, entries
//! the master no longer has are removed); an unreachable master leaves them as they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_message_store::metadata::{
    ConsumerOffsetTable, SubscriptionGroupTable, TopicConfigTable,
};
use flotilla_remoting::protocol::decode_body;
use flotilla_remoting::{
    ClientConfig, RemotingClient, RemotingCommand, request_code, response_code,
};

use super::HaError;
use crate::broker::Broker;

const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Syncs until the broker stops.
pub async fn run(b: Arc<Broker>) {
    let client = RemotingClient::new(ClientConfig {
        connect_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    });
    // The master may have ACL on: sign as the broker (`innerClientAuthenticationCredentials`).
    client.set_credentials(b.config().inner_credentials.clone());
    let mut failing = false;
    loop {
        if let Some(addr) = b.ha.master_addr() {
            match sync_once(&b, &client, &addr).await {
                Ok(()) => {
                    if failing {
                        tracing::info!(master = %addr, "metadata sync from the master works again");
                    }
                    failing = false;
                    b.ha.metadata_synced(true);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(master = %addr, error = %e, code = e.code(), "metadata sync failed");
                    }
                    failing = true;
                    b.ha.metadata_synced(false);
                    client.close_addr(&addr);
                }
            }
        }
        let period = b.ha.config().metadata_sync_interval;
        tokio::select! {
            () = b.stop.cancelled() => return,
            () = b.ha.master_changed.notified() => {}
            () = tokio::time::sleep(period) => {}
        }
    }
}

pub(crate) async fn fetch<T: serde::de::DeserializeOwned>(
    client: &RemotingClient,
    addr: &str,
    code: i32,
) -> Result<T, HaError> {
    let err = |reason: String| HaError::MetadataSync {
        addr: addr.to_string(),
        reason,
    };
    let r = client
        .invoke(addr, RemotingCommand::request(code), CALL_TIMEOUT)
        .await
        .map_err(|e| err(e.to_string()))?;
    if r.code != response_code::SUCCESS {
        return Err(err(format!(
            "request {code} answered {}: {}",
            r.code,
            r.remark.unwrap_or_default()
        )));
    }
    decode_body(&r.body).map_err(|e| err(format!("request {code}: bad body: {e}")))
}

/// The master's (or DLedger leader's) metadata, as fetched in one round.
#[derive(Debug, Clone, Default)]
pub struct MetadataSnapshot {
    /// GET_ALL_TOPIC_CONFIG.
    pub topics: TopicConfigTable,
    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG.
    pub groups: SubscriptionGroupTable,
    /// GET_ALL_CONSUMER_OFFSET.
    pub offsets: ConsumerOffsetTable,
    /// GET_ALL_DELAY_OFFSET (level → next queue offset), when asked for.
    pub delay_offsets: Option<BTreeMap<i32, i64>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct DelayOffsets {
    offset_table: BTreeMap<i32, i64>,
}

/// Fetches the three tables from `addr`, and the delay offsets too when `with_delay` (a
/// DLedger follower may become the member that runs delayed delivery).
pub async fn fetch_all(
    client: &RemotingClient,
    addr: &str,
    with_delay: bool,
) -> Result<MetadataSnapshot, HaError> {
    let topics: TopicConfigTable = fetch(client, addr, request_code::GET_ALL_TOPIC_CONFIG).await?;
    let groups: SubscriptionGroupTable =
        fetch(client, addr, request_code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG).await?;
    let offsets: ConsumerOffsetTable =
        fetch(client, addr, request_code::GET_ALL_CONSUMER_OFFSET).await?;
    let delay_offsets = if with_delay {
        let d: DelayOffsets = fetch(client, addr, request_code::GET_ALL_DELAY_OFFSET).await?;
        Some(d.offset_table)
    } else {
        None
    };
    Ok(MetadataSnapshot {
        topics,
        groups,
        offsets,
        delay_offsets,
    })
}

/// One round: fetch all three tables, then apply them.
#[tracing::instrument(level = "debug", skip(b, client))]
pub async fn sync_once(b: &Broker, client: &RemotingClient, addr: &str) -> Result<(), HaError> {
    let snap = fetch_all(client, addr, false).await?;
    let changed = apply(b, addr, &snap)?;
    if changed > 0 {
        tracing::info!(changed, "metadata synced from the master");
    }
    Ok(())
}

/// Makes this broker's tables equal to `snap` (fetched from `addr`); returns how many
/// topics and groups changed.
pub fn apply(b: &Broker, addr: &str, snap: &MetadataSnapshot) -> Result<usize, HaError> {
    let MetadataSnapshot {
        topics,
        groups,
        offsets,
        delay_offsets,
    } = snap;
    let meta = |e: &dyn std::fmt::Display| HaError::MetadataSync {
        addr: addr.to_string(),
        reason: format!("cannot apply: {e}"),
    };
    let mut changed = 0usize;
    for (name, tc) in &topics.topic_config_table {
        if b.topics.get(name).as_ref() != Some(tc) {
            b.topics.upsert(tc.clone()).map_err(|e| meta(&e))?;
            changed += 1;
        }
    }
    for name in b.topics.names() {
        if !topics.topic_config_table.contains_key(&name) {
            b.topics.delete(&name).map_err(|e| meta(&e))?;
            changed += 1;
        }
    }
    let local = b.groups.snapshot();
    for (name, g) in &groups.subscription_group_table {
        if local.subscription_group_table.get(name) != Some(g) {
            b.groups.upsert(g.clone()).map_err(|e| meta(&e))?;
            changed += 1;
        }
    }
    for name in local.subscription_group_table.keys() {
        if !groups.subscription_group_table.contains_key(name) {
            b.groups.delete(name).map_err(|e| meta(&e))?;
            changed += 1;
        }
    }
    for (key, queues) in &offsets.offset_table {
        let Some((topic, group)) = key.rsplit_once('@') else {
            continue;
        };
        for (q, off) in queues {
            b.offsets.commit(group, topic, *q, *off);
        }
    }
    b.offsets.remove_where(|t, g| {
        !offsets.offset_table.contains_key(
            &flotilla_message_store::metadata::ConsumerOffsetTable::key(t, g),
        )
    });
    if let Some(d) = delay_offsets {
        b.schedule.set_offsets(d);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_offsets_decode_quoted_and_java_keys() {
        let ours = serde_json::to_vec(
            &serde_json::json!({ "offsetTable": BTreeMap::from([(1, 5i64), (3, 7)]) }),
        )
        .unwrap();
        let d: DelayOffsets = decode_body(&ours).unwrap();
        assert_eq!(d.offset_table, BTreeMap::from([(1, 5), (3, 7)]));
        let java: DelayOffsets = decode_body(br#"{"offsetTable":{1:5,2:0}}"#).unwrap();
        assert_eq!(java.offset_table, BTreeMap::from([(1, 5), (2, 0)]));
    }
}

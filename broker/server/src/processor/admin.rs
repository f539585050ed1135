//! Admin requests: topics, subscription groups, broker config, runtime info, stats,
//! connections, offset reset, and slave-sync snapshots.
//!
//! These are what `mqadmin`, dashboards and the Flotilla agent call. Topic and config
//! changes persist before they are acknowledged and re-register with nameservers at once
//! when routes are affected. GET_BROKER_RUNTIME_INFO carries RocketMQ's usual keys plus
//! Flotilla's (`flotillaConfirmOffset`, `flotillaRegisteredNameservers`,
//! `flotillaBrokerPermission`, …) that the agent reads.

use std::collections::BTreeMap;

use flotilla_message_store::Boundary;
use flotilla_message_store::metadata::{SubscriptionGroupConfig, TopicConfig};
use flotilla_remoting::protocol::{
    ConsumeStats, ConsumerOffsetSerializeWrapper, KVTable, MessageQueue, OffsetWrapper,
    ResetOffsetBody, TopicOffset, TopicStatsTable, decode_body, encode_body,
};
use flotilla_remoting::{
    Channel, ProcessError, ProcessResult, RemotingCommand, perm, request_code as rc,
    response_code as code, version,
};

use super::{bad_header, ok};
use crate::broker::Broker;
use crate::config::ConfigError;
use crate::headers::Ext;
use crate::properties;
use crate::topic_config::{now_ms, wire_wrapper};

/// Dispatches admin codes.
pub async fn handle(b: &Broker, _ch: &Channel, req: RemotingCommand) -> ProcessResult {
    match req.code {
        rc::UPDATE_AND_CREATE_TOPIC => update_topic(b, &req),
        rc::DELETE_TOPIC_IN_BROKER => delete_topic(b, &req),
        rc::GET_TOPIC_CONFIG => {
            // Java's TopicConfigAndQueueMapping: the topic's config (no queue mapping here).
            let topic = Ext(&req).string("topic").map_err(bad_header)?;
            let cfg = b.topics.get(topic).ok_or_else(|| {
                ProcessError::new(
                    code::TOPIC_NOT_EXIST,
                    format!("No topic in this broker. topic: {topic}"),
                )
            })?;
            let w = crate::topic_config::to_wire(&cfg, 0xF);
            Ok(Some(RemotingCommand::success().with_body(encode_body(&w)?)))
        }
        rc::QUERY_TOPIC_CONSUME_BY_WHO => {
            // Online groups subscribed to the topic, and groups with offsets on it.
            let topic = Ext(&req).string("topic").map_err(bad_header)?;
            let mut group_list: std::collections::BTreeSet<String> = b
                .clients
                .consumer_groups()
                .into_iter()
                .filter(|g| b.clients.subscription(g, topic).is_some())
                .collect();
            for key in b.offsets.snapshot().offset_table.keys() {
                if let Some((t, g)) = key.split_once('@')
                    && t == topic
                {
                    group_list.insert(g.to_string());
                }
            }
            let body = flotilla_remoting::protocol::GroupList { group_list };
            Ok(Some(
                RemotingCommand::success().with_body(encode_body(&body)?),
            ))
        }
        rc::CLONE_GROUP_OFFSET => {
            // Java: every topic srcGroup has offsets for (or the one named); topics this
            // broker does not have are skipped, and unless `offline`, so are topics an online
            // srcGroup does not subscribe to.
            let e = Ext(&req);
            let src = e.string("srcGroup").map_err(bad_header)?;
            let dest = e.string("destGroup").map_err(bad_header)?;
            let offline = e.bool_opt("offline").unwrap_or(false);
            let topics = match e.opt("topic") {
                Some(t) => vec![t.to_string()],
                None => b.offsets.topics_of(src),
            };
            let online = b.clients.consumer_group(src).is_some();
            for topic in topics {
                if b.topics.get(&topic).is_none() {
                    tracing::warn!(topic, "CLONE_GROUP_OFFSET: topic not on this broker");
                    continue;
                }
                if !offline && online && b.clients.subscription(src, &topic).is_none() {
                    tracing::warn!(
                        topic,
                        src,
                        "CLONE_GROUP_OFFSET: the online group does not subscribe"
                    );
                    continue;
                }
                b.offsets.clone_offsets(src, dest, &topic);
            }
            ok()
        }
        rc::QUERY_TOPICS_BY_CONSUMER => {
            let group = Ext(&req).string("group").map_err(bad_header)?;
            let body = flotilla_remoting::protocol::TopicList {
                topic_list: b.offsets.topics_of(group).into_iter().collect(),
                broker_addr: Some(b.config().broker_addr()),
            };
            Ok(Some(
                RemotingCommand::success().with_body(encode_body(&body)?),
            ))
        }
        rc::GET_ALL_TOPIC_CONFIG => {
            let w = wire_wrapper(&b.topics.snapshot(), 0xF);
            Ok(Some(RemotingCommand::success().with_body(encode_body(&w)?)))
        }
        rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => {
            let g: SubscriptionGroupConfig = decode_body(&req.body)?;
            if g.group_name.trim().is_empty() {
                return Err(ProcessError::invalid("groupName is empty"));
            }
            flotilla_remoting::names::check_group(&g.group_name)
                .map_err(|e| ProcessError::invalid(e.to_string()))?;
            b.groups
                .upsert(g)
                .map_err(|e| ProcessError::system(e.to_string()))?;
            ok()
        }
        rc::DELETE_SUBSCRIPTIONGROUP => {
            let e = Ext(&req);
            let group = e.string("groupName").map_err(bad_header)?.to_string();
            let clean = e.bool_opt("cleanOffset").unwrap_or(false);
            b.groups
                .delete(&group)
                .map_err(|e| ProcessError::system(e.to_string()))?;
            if clean {
                b.offsets.remove_where(|_, g| g == group);
            }
            ok()
        }
        rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => {
            let body = serde_json::to_vec(&b.groups.snapshot())?;
            Ok(Some(RemotingCommand::success().with_body(body)))
        }
        rc::UPDATE_BROKER_CONFIG => update_config(b, &req).await,
        rc::GET_BROKER_CONFIG => {
            let cfg = b.config();
            Ok(Some(
                RemotingCommand::success()
                    .with_ext(
                        "version",
                        format!(
                            "{{\"counter\":0,\"stateVersion\":0,\"timestamp\":{}}}",
                            b.boot_ms
                        ),
                    )
                    .with_body(cfg.render()),
            ))
        }
        rc::GET_BROKER_RUNTIME_INFO => {
            let t = KVTable {
                table: runtime_info(b),
            };
            Ok(Some(RemotingCommand::success().with_body(encode_body(&t)?)))
        }
        rc::FLOTILLA_TRANSFER_LEADERSHIP => transfer_leadership(b, &req).await,
        rc::GET_CONSUME_STATS => consume_stats(b, &req),
        rc::GET_TOPIC_STATS_INFO => topic_stats(b, &req),
        rc::GET_CONSUMER_CONNECTION_LIST => {
            let group = Ext(&req).string("consumerGroup").map_err(bad_header)?;
            match b.clients.connection_list(group) {
                Some(c) => Ok(Some(RemotingCommand::success().with_body(encode_body(&c)?))),
                None => Err(ProcessError::new(
                    code::CONSUMER_NOT_ONLINE,
                    format!("the consumer group[{group}] not online"),
                )),
            }
        }
        rc::INVOKE_BROKER_TO_RESET_OFFSET => reset_offset(b, &req),
        rc::GET_ALL_CONSUMER_OFFSET => {
            let snap = b.offsets.snapshot();
            let w = ConsumerOffsetSerializeWrapper {
                offset_table: snap.offset_table,
                data_version: None,
            };
            Ok(Some(RemotingCommand::success().with_body(w.encode_java()?)))
        }
        rc::GET_ALL_DELAY_OFFSET => {
            let v = serde_json::json!({ "offsetTable": b.schedule.offsets() });
            Ok(Some(
                RemotingCommand::success().with_body(serde_json::to_vec(&v)?),
            ))
        }
        rc::TRIGGER_DELETE_FILES => {
            let store = b.store.clone();
            tokio::task::spawn_blocking(move || store.run_retention_once(true))
                .await
                .map_err(|e| ProcessError::system(format!("retention task failed: {e}")))?;
            ok()
        }
        other => Err(ProcessError::new(
            code::REQUEST_CODE_NOT_SUPPORTED,
            format!(" request type {other} not supported"),
        )),
    }
}

fn update_topic(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let e = Ext(req);
    let topic = e.topic("topic").map_err(bad_header)?;
    let cfg = b.config();
    if topic == cfg.broker_cluster_name {
        return Err(ProcessError::system(format!(
            "the topic[{topic}] is conflict with system topic"
        )));
    }
    let old = b.topics.get(topic);
    let mut tc = old
        .clone()
        .unwrap_or_else(|| TopicConfig::new(topic, cfg.default_topic_queue_nums));
    if let Some(r) = e.i32_opt("readQueueNums") {
        tc.read_queue_nums = r;
    }
    if let Some(w) = e.i32_opt("writeQueueNums") {
        tc.write_queue_nums = w;
    }
    if let Some(p) = e.i32_opt("perm") {
        if !perm::is_valid(p) {
            return Err(ProcessError::invalid(format!(
                "perm {p} is not a permission 0..15"
            )));
        }
        tc.perm = p;
    }
    if let Some(f) = e.opt("topicFilterType") {
        tc.topic_filter_type = f.to_string();
    }
    if let Some(f) = e.i32_opt("topicSysFlag") {
        tc.topic_sys_flag = f;
    }
    if let Some(o) = e.bool_opt("order") {
        tc.order = o;
    }
    if let Some(a) = e.opt("attributes") {
        for pair in a.split(',') {
            let pair = pair.trim().trim_start_matches('+');
            if let Some((k, v)) = pair.split_once('=') {
                tc.attributes.insert(k.to_string(), v.to_string());
            }
        }
    }
    let changed = b
        .topics
        .upsert(tc)
        .map_err(|e| ProcessError::invalid(e.to_string()))?;
    if changed {
        tracing::info!(topic, "topic created or updated");
    }
    ok()
}

fn delete_topic(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let topic = Ext(req).topic("topic").map_err(bad_header)?.to_string();
    b.topics
        .delete(&topic)
        .map_err(|e| ProcessError::system(e.to_string()))?;
    b.offsets.remove_where(|t, _| t == topic);
    b.store
        .delete_topic(&topic)
        .map_err(|e| ProcessError::system(format!("cannot delete topic data: {e}")))?;
    ok()
}

async fn update_config(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let text = std::str::from_utf8(&req.body)
        .map_err(|_| ProcessError::invalid("the config body is not UTF-8"))?;
    let updates: BTreeMap<String, String> = properties::parse(text);
    if updates.is_empty() {
        return ok();
    }
    match b.update_config(&updates).await {
        Ok(_) => ok(),
        Err(e @ ConfigError::Forbidden(_)) => {
            Err(ProcessError::new(code::NO_PERMISSION, e.to_string()))
        }
        Err(e @ ConfigError::Io { .. }) => Err(ProcessError::system(e.to_string())),
        Err(e) => Err(ProcessError::invalid(e.to_string())),
    }
}

/// FLOTILLA_TRANSFER_LEADERSHIP: hands DLedger leadership to `targetSelfId` (waits at most
/// `timeoutMillis`, default 10 s). SUCCESS once the target leads; SERVICE_NOT_AVAILABLE
/// when this member is not the leader (the remark names the leader); INVALID_PARAMETER for
/// an unknown member; SYSTEM_ERROR on timeout.
#[tracing::instrument(skip_all, fields(target = Ext(req).opt("targetSelfId").unwrap_or("")))]
async fn transfer_leadership(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    use flotilla_dledger::TransferError;
    let e = Ext(req);
    let target = e.string("targetSelfId").map_err(bad_header)?;
    let timeout_ms = e.i64_opt("timeoutMillis").unwrap_or(10_000);
    let timeout = std::time::Duration::from_millis(
        u64::try_from(timeout_ms.clamp(1, 120_000)).unwrap_or(10_000),
    );
    let Some(d) = &b.dledger else {
        return Err(ProcessError::new(
            code::SERVICE_NOT_AVAILABLE,
            "this broker does not run in DLedger mode (enableDLegerCommitLog=false)",
        ));
    };
    match d.engine.transfer_leadership(target, timeout).await {
        Ok(()) => {
            tracing::info!(target, "leadership transferred");
            ok()
        }
        Err(err) => {
            let c = match &err {
                TransferError::NotLeader { .. } => code::SERVICE_NOT_AVAILABLE,
                TransferError::UnknownPeer(_) => code::INVALID_PARAMETER,
                _ => code::SYSTEM_ERROR,
            };
            Err(ProcessError::new(c, format!("{}: {err}", err.code())))
        }
    }
}

/// The GET_BROKER_RUNTIME_INFO table.
pub fn runtime_info(b: &Broker) -> BTreeMap<String, String> {
    let cfg = b.config();
    let (put_tps, get_tps) = b.stats.tps();
    let (producers, consumers) = b.clients.counts();
    let load =
        |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed).to_string();
    let mut t = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        t.insert(k.to_string(), v);
    };
    put("brokerVersionDesc", "V5_3_3".into());
    put("brokerVersion", version::CURRENT.to_string());
    let (role, broker_id) = b.effective_role();
    put("brokerRole", role.name().into());
    put("brokerId", broker_id.to_string());
    put("bootTimestamp", b.boot_ms.to_string());
    put("runtime", format!("{} ms", now_ms() - b.boot_ms));
    put("msgPutTotalTodayNow", load(&b.stats.put_msgs));
    put("msgGetTotalTodayNow", load(&b.stats.get_msgs));
    put("putTps", format!("{put_tps:.2}"));
    put("getTransferredTps", format!("{get_tps:.2}"));
    put(
        "commitLogMinOffset",
        b.store.commitlog_min_offset().to_string(),
    );
    put(
        "commitLogMaxOffset",
        b.store.commitlog_max_offset().to_string(),
    );
    put(
        "flotillaConfirmOffset",
        b.store.confirm_offset().to_string(),
    );
    put(
        "flotillaFlushedOffset",
        b.store.flushed_offset().to_string(),
    );
    put(
        "flotillaRegisteredNameservers",
        b.registrar.registered().join(";"),
    );
    put(
        "flotillaBrokerPermission",
        cfg.broker_permission.to_string(),
    );
    put("flotillaBrokerName", cfg.broker_name.clone());
    put("flotillaBrokerId", broker_id.to_string());
    put("flotillaClusterName", cfg.broker_cluster_name.clone());
    put("flotillaBrokerAddr", cfg.broker_addr());
    put("flotillaDiskFull", b.store.is_disk_full().to_string());
    put("flotillaProducerConnections", producers.to_string());
    put("flotillaConsumerConnections", consumers.to_string());
    put("flotillaPutFailures", load(&b.stats.put_failures));
    crate::ha::runtime_info(b, &mut t);
    if let Some(d) = &b.dledger {
        // The names the agent's probe reads (`dLegerRole`, `dLegerTerm`).
        let rs = d.role_state();
        t.insert(
            "dLegerRole".into(),
            crate::dledger::role_name(rs.role).into(),
        );
        t.insert("dLegerTerm".into(), rs.term.to_string());
        t.insert("dLegerLeader".into(), rs.leader_id.unwrap_or_default());
        t.insert("dLegerSelfId".into(), d.engine.self_id().to_string());
        t.insert(
            "dLegerCommitOffset".into(),
            d.engine.commit_offset().to_string(),
        );
        t.insert("dLegerWritable".into(), d.is_writable().to_string());
        let (synced_ms, ok) = b.ha.metadata_sync_state();
        t.insert("flotillaMetadataSyncedAt".into(), synced_ms.to_string());
        t.insert("flotillaMetadataSyncOk".into(), ok.to_string());
    }
    t
}

fn consume_stats(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let e = Ext(req);
    let group = e.string("consumerGroup").map_err(bad_header)?;
    let cfg = b.config();
    let topics: Vec<String> = match e.opt("topic") {
        Some(t) => vec![t.to_string()],
        None => {
            let mut ts = b.offsets.topics_of(group);
            if let Some(g) = b.clients.consumer_group(group) {
                for t in g.subscriptions.keys() {
                    if !ts.contains(t) {
                        ts.push(t.clone());
                    }
                }
            }
            ts
        }
    };
    let mut stats = ConsumeStats::default();
    for topic in topics {
        let Some(tc) = b.topics.get(&topic) else {
            continue;
        };
        for qid in 0..tc.read_queue_nums.max(tc.write_queue_nums) {
            let broker_offset = b.max_offset_in_queue(&topic, qid);
            let consumer_offset = b.offsets.query(group, &topic, qid).unwrap_or(0);
            let pull_offset = b
                .offsets
                .pull_offset(group, &topic, qid)
                .unwrap_or(consumer_offset);
            let last_timestamp = if consumer_offset > 0 {
                b.store
                    .message_store_time(&topic, qid, consumer_offset - 1)
                    .unwrap_or(0)
            } else {
                0
            };
            stats.offset_table.insert(
                MessageQueue::new(topic.clone(), cfg.broker_name.clone(), qid),
                OffsetWrapper {
                    broker_offset,
                    consumer_offset,
                    pull_offset,
                    last_timestamp,
                },
            );
        }
    }
    Ok(Some(
        RemotingCommand::success().with_body(stats.encode_java()?),
    ))
}

fn topic_stats(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let topic = Ext(req).topic("topic").map_err(bad_header)?;
    let Some(tc) = b.topics.get(topic) else {
        return Err(ProcessError::new(
            code::TOPIC_NOT_EXIST,
            format!("topic[{topic}] not exist"),
        ));
    };
    let cfg = b.config();
    let mut t = TopicStatsTable::default();
    for qid in 0..tc.write_queue_nums.max(tc.read_queue_nums) {
        let max = b.max_offset_in_queue(topic, qid);
        let last = if max > 0 {
            b.store.message_store_time(topic, qid, max - 1).unwrap_or(0)
        } else {
            0
        };
        t.offset_table.insert(
            MessageQueue::new(topic, cfg.broker_name.clone(), qid),
            TopicOffset {
                min_offset: b.store.min_offset_in_queue(topic, qid),
                max_offset: max,
                last_update_timestamp: last,
            },
        );
    }
    t.topic_put_tps = b.stats.tps().0;
    Ok(Some(RemotingCommand::success().with_body(t.encode_java()?)))
}

fn reset_offset(b: &Broker, req: &RemotingCommand) -> ProcessResult {
    let e = Ext(req);
    let group = e.string("group").map_err(bad_header)?;
    let topic = e.topic("topic").map_err(bad_header)?;
    let qid = e.i32_opt("queueId").unwrap_or(-1);
    let offset = e.i64_opt("offset");
    let ts = e.i64_opt("timestamp").unwrap_or(-1);
    let force = e.bool_opt("isForce").unwrap_or(true);
    let Some(tc) = b.topics.get(topic) else {
        return Err(ProcessError::new(
            code::TOPIC_NOT_EXIST,
            format!("topic[{topic}] not exist"),
        ));
    };
    let cfg = b.config();
    let queues: Vec<i32> = if qid >= 0 {
        vec![qid]
    } else {
        (0..tc.read_queue_nums.max(tc.write_queue_nums)).collect()
    };
    let mut body = ResetOffsetBody::default();
    for q in queues {
        let (min, max) = (
            b.store.min_offset_in_queue(topic, q),
            b.max_offset_in_queue(topic, q),
        );
        let target = match offset {
            Some(o) if o >= 0 => o.clamp(min, max),
            _ if ts < 0 => max,
            _ => b
                .store
                .offset_by_time(topic, q, ts, Boundary::Lower)
                .clamp(min, max),
        };
        let current = b.offsets.query(group, topic, q);
        let new = match current {
            Some(c) if !force && target >= c => c,
            _ => target,
        };
        b.offsets.commit(group, topic, q, new);
        b.offsets.request_reset(group, topic, q, new);
        body.offset_table
            .insert(MessageQueue::new(topic, cfg.broker_name.clone(), q), new);
    }
    tracing::info!(group, topic, "consumer offsets reset");
    Ok(Some(
        RemotingCommand::success().with_body(body.encode_java()?),
    ))
}

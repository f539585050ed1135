//! What `-o json` and `-o yaml` print: plain structs with stable snake_case field names, one
//! per kind of answer, built from the API's messages. Scripts may rely on these names; fields
//! are only ever added. Times are RFC 3339 strings (absent when unknown); permissions are
//! RocketMQ's number (`perm`) and its letters (`perm_name`: `rw`, `r-`, `-w`).

use std::collections::BTreeMap;

use flotilla_proto::v1 as pb;
use serde::Serialize;

/// RocketMQ permission bits as letters: read, write.
pub fn perm_name(perm: u32) -> String {
    format!(
        "{}{}",
        if perm & 4 != 0 { 'r' } else { '-' },
        if perm & 2 != 0 { 'w' } else { '-' }
    )
}

/// A protobuf timestamp as RFC 3339 (UTC, milliseconds).
pub fn time(t: Option<&prost_types::Timestamp>) -> Option<String> {
    let t = t?;
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    let st = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
    Some(humantime::format_rfc3339_millis(st).to_string())
}

/// A broker group (or nameserver) that did not answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    /// brokerName.
    pub broker_name: String,
    /// Member asked.
    pub member: String,
    /// Its node.
    pub node: String,
    /// Stable reason.
    pub reason: String,
    /// Detail.
    pub message: String,
}

impl From<&pb::BrokerFailure> for Failure {
    fn from(f: &pb::BrokerFailure) -> Self {
        Self {
            broker_name: f.broker_name.clone(),
            member: f.member.clone(),
            node: f.node.clone(),
            reason: f.reason.clone(),
            message: f.message.clone(),
        }
    }
}

/// Failures as views.
pub fn failures(f: &[pb::BrokerFailure]) -> Vec<Failure> {
    f.iter().map(Failure::from).collect()
}

/// A topic.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Read queues (per broker group).
    pub read_queues: u32,
    /// Write queues (per broker group).
    pub write_queues: u32,
    /// RocketMQ perm bits.
    pub perm: u32,
    /// `rw`, `r-`, `-w`.
    pub perm_name: String,
    /// Ordered topic.
    pub order: bool,
    /// Broker groups holding it.
    pub groups: Vec<String>,
    /// RocketMQ attributes.
    pub attributes: BTreeMap<String, String>,
}

impl From<&pb::Topic> for Topic {
    fn from(t: &pb::Topic) -> Self {
        Self {
            name: t.name.clone(),
            read_queues: t.read_queue_nums,
            write_queues: t.write_queue_nums,
            perm: t.perm,
            perm_name: perm_name(t.perm),
            order: t.order,
            groups: t.groups.clone(),
            attributes: t.attributes.clone().into_iter().collect(),
        }
    }
}

/// A topic listing.
#[derive(Debug, Clone, Serialize)]
pub struct TopicList {
    /// Topics.
    pub topics: Vec<Topic>,
    /// Silent broker groups.
    pub failures: Vec<Failure>,
}

/// One queue's offsets.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStats {
    /// brokerName.
    pub broker_name: String,
    /// Queue id.
    pub queue_id: i32,
    /// First offset.
    pub min_offset: i64,
    /// Next offset.
    pub max_offset: i64,
    /// Store time of the last message.
    pub last_update_time: Option<String>,
}

/// A topic's stats.
#[derive(Debug, Clone, Serialize)]
pub struct TopicStats {
    /// Topic.
    pub topic: String,
    /// Sum of (max - min).
    pub total_messages: i64,
    /// Per queue.
    pub queues: Vec<QueueStats>,
    /// Silent broker groups.
    pub failures: Vec<Failure>,
}

impl From<&pb::TopicStats> for TopicStats {
    fn from(s: &pb::TopicStats) -> Self {
        Self {
            topic: s.topic.clone(),
            total_messages: s.total_messages,
            queues: s
                .queues
                .iter()
                .map(|q| QueueStats {
                    broker_name: q.broker_name.clone(),
                    queue_id: q.queue_id,
                    min_offset: q.min_offset,
                    max_offset: q.max_offset,
                    last_update_time: time(q.last_update_time.as_ref()),
                })
                .collect(),
            failures: failures(&s.failures),
        }
    }
}

/// One broker group in a route.
#[derive(Debug, Clone, Serialize)]
pub struct RouteGroup {
    /// brokerName.
    pub broker_name: String,
    /// Read queues.
    pub read_queues: u32,
    /// Write queues.
    pub write_queues: u32,
    /// Perm bits.
    pub perm: u32,
    /// brokerId → address (0 = master).
    pub addresses: BTreeMap<i64, String>,
}

/// A topic's route.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Topic.
    pub topic: String,
    /// The nameserver that answered.
    pub nameserver: String,
    /// Per broker group.
    pub groups: Vec<RouteGroup>,
}

impl From<&pb::TopicRoute> for Route {
    fn from(r: &pb::TopicRoute) -> Self {
        Self {
            topic: r.topic.clone(),
            nameserver: r.nameserver.clone(),
            groups: r
                .queues
                .iter()
                .map(|q| RouteGroup {
                    broker_name: q.broker_name.clone(),
                    read_queues: q.read_queue_nums,
                    write_queues: q.write_queue_nums,
                    perm: q.perm,
                    addresses: r
                        .brokers
                        .iter()
                        .find(|b| b.broker_name == q.broker_name)
                        .map(|b| b.addresses.clone().into_iter().collect())
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// A consumer group.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Group {
    /// Name.
    pub name: String,
    /// Consuming allowed.
    pub consume_enable: bool,
    /// Broadcast consumption.
    pub broadcast: bool,
    /// New consumers start from the first offset.
    pub consume_from_min: bool,
    /// Orderly consumption.
    pub orderly: bool,
    /// Retry queues.
    pub retry_queues: u32,
    /// Redeliveries before the DLQ.
    pub max_retries: u32,
    /// Broker id consumed from.
    pub broker_id: i64,
    /// Broker groups holding it.
    pub groups: Vec<String>,
}

impl From<&pb::ConsumerGroup> for Group {
    fn from(g: &pb::ConsumerGroup) -> Self {
        Self {
            name: g.name.clone(),
            consume_enable: g.consume_enable,
            broadcast: g.consume_broadcast_enable,
            consume_from_min: g.consume_from_min_enable,
            orderly: g.consume_message_orderly,
            retry_queues: g.retry_queue_nums,
            max_retries: g.retry_max_times,
            broker_id: g.broker_id,
            groups: g.groups.clone(),
        }
    }
}

/// A group listing.
#[derive(Debug, Clone, Serialize)]
pub struct GroupList {
    /// Groups.
    pub groups: Vec<Group>,
    /// Silent broker groups.
    pub failures: Vec<Failure>,
}

/// One queue's progress.
#[derive(Debug, Clone, Serialize)]
pub struct QueueLag {
    /// Topic.
    pub topic: String,
    /// brokerName.
    pub broker_name: String,
    /// Queue id.
    pub queue_id: i32,
    /// Broker's next offset.
    pub broker_offset: i64,
    /// Group's committed offset.
    pub consumer_offset: i64,
    /// broker - consumer.
    pub lag: i64,
    /// Store time of the last consumed message.
    pub last_consume_time: Option<String>,
}

/// A group's progress.
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    /// Group.
    pub group: String,
    /// Sum of lags.
    pub total_lag: i64,
    /// Consume rate.
    pub consume_tps: f64,
    /// Per queue.
    pub queues: Vec<QueueLag>,
    /// Silent broker groups.
    pub failures: Vec<Failure>,
}

fn queue_lag(q: &pb::QueueProgress) -> QueueLag {
    QueueLag {
        topic: q.topic.clone(),
        broker_name: q.broker_name.clone(),
        queue_id: q.queue_id,
        broker_offset: q.broker_offset,
        consumer_offset: q.consumer_offset,
        lag: q.lag,
        last_consume_time: time(q.last_timestamp.as_ref()),
    }
}

impl From<&pb::GroupProgress> for Lag {
    fn from(p: &pb::GroupProgress) -> Self {
        Self {
            group: p.group.clone(),
            total_lag: p.total_lag,
            consume_tps: p.consume_tps,
            queues: p.queues.iter().map(queue_lag).collect(),
            failures: failures(&p.failures),
        }
    }
}

/// The offsets a reset set.
#[derive(Debug, Clone, Serialize)]
pub struct Reset {
    /// Group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// New offset per queue.
    pub queues: Vec<ResetQueue>,
}

/// One queue's new offset.
#[derive(Debug, Clone, Serialize)]
pub struct ResetQueue {
    /// brokerName.
    pub broker_name: String,
    /// Queue id.
    pub queue_id: i32,
    /// New committed offset.
    pub offset: i64,
}

/// One client.
#[derive(Debug, Clone, Serialize)]
pub struct Client {
    /// Client id.
    pub client_id: String,
    /// ip:port.
    pub address: String,
    /// Language.
    pub language: String,
    /// Version code.
    pub version: i32,
    /// Broker groups it is connected to.
    pub broker_names: Vec<String>,
}

impl From<&pb::ClientConnection> for Client {
    fn from(x: &pb::ClientConnection) -> Self {
        Self {
            client_id: x.client_id.clone(),
            address: x.client_address.clone(),
            language: x.language.clone(),
            version: x.version,
            broker_names: x.broker_names.clone(),
        }
    }
}

/// A producer group's connected producers.
#[derive(Debug, Clone, Serialize)]
pub struct Producers {
    /// Producer group.
    pub group: String,
    /// Clients.
    pub connections: Vec<Client>,
    /// Silent broker groups.
    pub failures: Vec<Failure>,
}

impl From<&pb::ProducerConnections> for Producers {
    fn from(c: &pb::ProducerConnections) -> Self {
        Self {
            group: c.group.clone(),
            connections: c.connections.iter().map(Client::from).collect(),
            failures: failures(&c.failures),
        }
    }
}

/// One subscription.
#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    /// Topic.
    pub topic: String,
    /// Expression.
    pub expression: String,
    /// TAG or SQL92.
    pub expression_type: String,
}

/// A group's online consumers.
#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    /// Group.
    pub group: String,
    /// CONSUME_ACTIVELY / CONSUME_PASSIVELY.
    pub consume_type: String,
    /// CLUSTERING / BROADCASTING.
    pub message_model: String,
    /// Where new consumers start.
    pub consume_from_where: String,
    /// Clients.
    pub connections: Vec<Client>,
    /// Subscriptions.
    pub subscriptions: Vec<Subscription>,
    /// Silent broker groups.
    pub failures: Vec<Failure>,
}

impl From<&pb::ConsumerConnections> for Connections {
    fn from(c: &pb::ConsumerConnections) -> Self {
        Self {
            group: c.group.clone(),
            consume_type: c.consume_type.clone(),
            message_model: c.message_model.clone(),
            consume_from_where: c.consume_from_where.clone(),
            connections: c.connections.iter().map(Client::from).collect(),
            subscriptions: c
                .subscriptions
                .iter()
                .map(|s| Subscription {
                    topic: s.topic.clone(),
                    expression: s.expression.clone(),
                    expression_type: s.expression_type.clone(),
                })
                .collect(),
            failures: failures(&c.failures),
        }
    }
}

/// A cluster, as `flotilla get clusters -o json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// Name.
    pub name: String,
    /// Phase (Pending, Provisioning, Running, Degraded, Deleting).
    pub phase: String,
    /// Spec generation.
    pub generation: i64,
    /// Generation the status describes.
    pub observed_generation: i64,
    /// Nameserver list for clients.
    pub namesrv_addr: String,
    /// Ready members.
    pub ready_members: usize,
    /// Members.
    pub members: Vec<Member>,
    /// Broker groups and their readiness.
    pub groups: Vec<GroupReadiness>,
    /// Conditions (type → status).
    pub conditions: BTreeMap<String, String>,
}

/// A broker group's readiness.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReadiness {
    /// brokerName.
    pub name: String,
    /// Ready by the readiness rule.
    pub ready: bool,
    /// Writable master.
    pub master: String,
    /// Why not, when not.
    pub reason: String,
}

/// A member.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// Instance name.
    pub name: String,
    /// `namesrv` or `broker`.
    pub kind: String,
    /// brokerName.
    pub group: String,
    /// Role.
    pub role: String,
    /// brokerId.
    pub broker_id: i64,
    /// Node.
    pub node: String,
    /// Client address.
    pub address: String,
    /// Process id (0 when not running).
    pub pid: i64,
    /// Ready.
    pub ready: bool,
    /// Accepts writes.
    pub writable: bool,
    /// Raft term.
    pub term: i64,
    /// Restarts.
    pub restarts: u32,
    /// Agent state.
    pub state: String,
}

/// A node.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Name.
    pub name: String,
    /// Ready / NotReady.
    pub phase: String,
    /// Address.
    pub address: String,
    /// Cordoned.
    pub cordoned: bool,
    /// Instances on it.
    pub instances: Vec<String>,
    /// cgroup2 / rlimit.
    pub limits: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_and_times() {
        assert_eq!(perm_name(6), "rw");
        assert_eq!(perm_name(4), "r-");
        assert_eq!(perm_name(2), "-w");
        let t = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5_000_000,
        };
        assert_eq!(time(Some(&t)).unwrap(), "2023-11-14T22:13:20.005Z");
        assert_eq!(time(None), None);
    }

    #[test]
    fn topic_json_field_names_are_stable() {
        let t = Topic::from(&pb::Topic {
            name: "T".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: 6,
            groups: vec!["c-0".into()],
            ..Default::default()
        });
        let v = serde_json::to_value(&t).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "attributes",
                "groups",
                "name",
                "order",
                "perm",
                "perm_name",
                "read_queues",
                "write_queues"
            ]
        );
    }
}

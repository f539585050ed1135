//! `flotilla group create|update|delete|get|list|lag|connections` and `flotilla offset reset`:
//! a cluster's consumer groups through the control plane's GroupService.
//!
//! `group lag` is the console's "consumer progress": per queue the broker's offset, the
//! group's committed offset and the difference, with the total. `offset reset` moves a
//! group's committed offsets on one topic to a time (`--to-time`, milliseconds since the epoch
//! or RFC 3339) or to an offset (`--to-offset`, clamped to each queue's range).

use clap::{Args, Subcommand};
use flotilla_proto::v1::{
    ConsumerGroup, CreateGroupRequest, DeleteGroupRequest, GetConsumerConnectionsRequest,
    GetGroupProgressRequest, GetGroupRequest, ListGroupsRequest, ResetOffsetRequest,
    UpdateGroupRequest, reset_offset_request,
};

use crate::api::{self, CmdError};
use crate::output::{self, Format, columns};
use crate::topic::{On, warn_failures};
use crate::view;

/// Settings of a consumer group.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Retry queues (1..=64).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub retry_queues: i64,
    /// Redeliveries before a message goes to %DLQ%<group> (0..=64).
    #[arg(long, default_value_t = 16, allow_hyphen_values = true)]
    pub max_retries: i64,
    /// Every consumer gets every message (broadcasting).
    #[arg(long)]
    pub broadcast: bool,
    /// New consumers start from the first stored message.
    #[arg(long)]
    pub consume_from_min: bool,
    /// Orderly consumption.
    #[arg(long)]
    pub orderly: bool,
    /// Create it with consumption switched off.
    #[arg(long)]
    pub disabled: bool,
    /// Only on this broker group (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
}

impl Settings {
    /// The group config these flags describe.
    pub fn to_group(&self, name: String) -> Result<ConsumerGroup, CmdError> {
        let range = |flag: &str, v: i64, lo: i64| {
            if (lo..=64).contains(&v) {
                u32::try_from(v).map_err(|_| CmdError::invalid(flag, "out of range"))
            } else {
                Err(CmdError::invalid(
                    flag,
                    format!("must be {lo}..=64, got {v}"),
                ))
            }
        };
        Ok(ConsumerGroup {
            name,
            consume_enable: !self.disabled,
            consume_broadcast_enable: self.broadcast,
            consume_from_min_enable: self.consume_from_min,
            consume_message_orderly: self.orderly,
            retry_queue_nums: range("--retry-queues", self.retry_queues, 1)?,
            retry_max_times: range("--max-retries", self.max_retries, 0)?,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            groups: self.groups.clone(),
        })
    }
}

/// `flotilla group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create a consumer group on every broker group (or those given with --group).
    Create {
        /// Group name: 1-127 of [%|a-zA-Z0-9_-].
        name: String,
        #[command(flatten)]
        on: On,
        #[command(flatten)]
        settings: Settings,
    },
    /// Replace an existing group's settings.
    Update {
        /// Group name.
        name: String,
        #[command(flatten)]
        on: On,
        #[command(flatten)]
        settings: Settings,
    },
    /// Delete a consumer group (and its offsets).
    Delete {
        /// Group name.
        name: String,
        #[command(flatten)]
        on: On,
    },
    /// One consumer group.
    Get {
        /// Group name.
        name: String,
        #[command(flatten)]
        on: On,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
    /// Every consumer group of the cluster.
    List {
        #[command(flatten)]
        on: On,
        /// Include RocketMQ's own groups.
        #[arg(long)]
        system: bool,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
    /// Per queue: broker offset, consumer offset, lag.
    Lag {
        /// Group name.
        name: String,
        #[command(flatten)]
        on: On,
        /// Only this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
    /// The group's online consumers and their subscriptions.
    Connections {
        /// Group name.
        name: String,
        #[command(flatten)]
        on: On,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
}

/// `flotilla offset …`.
#[derive(Debug, Subcommand)]
pub enum OffsetCmd {
    /// Move a group's committed offsets on a topic.
    Reset {
        /// Consumer group.
        group: String,
        #[command(flatten)]
        on: On,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// To the first message stored at or after this time: milliseconds since the epoch,
        /// or RFC 3339 (2024-05-01T12:00:00Z).
        #[arg(
            long,
            conflicts_with = "to_offset",
            required_unless_present = "to_offset"
        )]
        to_time: Option<String>,
        /// To this offset in every queue (clamped to each queue's range).
        #[arg(long, allow_hyphen_values = true)]
        to_offset: Option<i64>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
}

/// A `--to-time` value: milliseconds since the epoch, or RFC 3339.
pub fn parse_time(s: &str) -> Result<prost_types::Timestamp, CmdError> {
    let ms: i64 = match s.trim().parse::<i64>() {
        Ok(ms) if ms >= 0 => ms,
        Ok(_) => return Err(CmdError::invalid("--to-time", "must not be negative")),
        Err(_) => {
            let t = humantime::parse_rfc3339_weak(s.trim()).map_err(|e| {
                CmdError::invalid(
                    "--to-time",
                    format!("{s:?} is neither milliseconds nor RFC 3339 ({e})"),
                )
            })?;
            let d = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| CmdError::invalid("--to-time", "before 1970"))?;
            i64::try_from(d.as_millis())
                .map_err(|_| CmdError::invalid("--to-time", "too far in the future"))?
        }
    };
    Ok(prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    })
}

fn group_table(groups: &[view::Group], wide: bool) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut r = vec![
                g.name.clone(),
                g.retry_queues.to_string(),
                g.max_retries.to_string(),
                if g.broadcast {
                    "broadcast"
                } else {
                    "clustering"
                }
                .to_string(),
                g.groups.join(","),
            ];
            if wide {
                r.push(g.consume_enable.to_string());
                r.push(g.consume_from_min.to_string());
                r.push(g.orderly.to_string());
                r.push(g.broker_id.to_string());
            }
            r
        })
        .collect();
    let mut header = vec!["NAME", "RETRY-QUEUES", "MAX-RETRIES", "MODEL", "GROUPS"];
    if wide {
        header.extend(["ENABLED", "FROM-MIN", "ORDERLY", "BROKER-ID"]);
    }
    columns(&header, &rows)
}

fn lag_table(l: &view::Lag, wide: bool) -> String {
    let rows: Vec<Vec<String>> = l
        .queues
        .iter()
        .map(|q| {
            let mut r = vec![
                q.topic.clone(),
                q.broker_name.clone(),
                q.queue_id.to_string(),
                q.broker_offset.to_string(),
                q.consumer_offset.to_string(),
                q.lag.to_string(),
            ];
            if wide {
                r.push(q.last_consume_time.clone().unwrap_or_else(|| "-".into()));
            }
            r
        })
        .collect();
    let mut header = vec![
        "TOPIC",
        "BROKER",
        "QUEUE",
        "BROKER-OFFSET",
        "CONSUMER-OFFSET",
        "LAG",
    ];
    if wide {
        header.push("LAST-CONSUMED");
    }
    let mut out = columns(&header, &rows);
    out.push_str(&format!("total lag: {}\n", l.total_lag));
    out
}

/// The clients table of `group connections` and `producer connections`.
pub fn clients_table(clients: &[view::Client]) -> String {
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|x| {
            vec![
                x.client_id.clone(),
                x.address.clone(),
                x.language.clone(),
                x.version.to_string(),
                x.broker_names.join(","),
            ]
        })
        .collect();
    columns(
        &["CLIENT-ID", "ADDRESS", "LANGUAGE", "VERSION", "BROKERS"],
        &rows,
    )
}

fn connections_table(c: &view::Connections) -> String {
    let mut out = clients_table(&c.connections);
    if !c.subscriptions.is_empty() {
        out.push('\n');
        let subs: Vec<Vec<String>> = c
            .subscriptions
            .iter()
            .map(|s| {
                vec![
                    s.topic.clone(),
                    s.expression_type.clone(),
                    s.expression.clone(),
                ]
            })
            .collect();
        out.push_str(&columns(&["TOPIC", "TYPE", "EXPRESSION"], &subs));
    }
    out
}

/// Runs one `flotilla group` command.
pub async fn run(cmd: GroupCmd) -> Result<(), CmdError> {
    match cmd {
        GroupCmd::Create { name, on, settings } => {
            let g = settings.to_group(name)?;
            let mut c = api::groups(&on.server).await?;
            let g = c
                .create_group(CreateGroupRequest {
                    cluster: on.cluster,
                    group: Some(g),
                    request_id: String::new(),
                })
                .await?
                .into_inner();
            println!(
                "consumer group {} created on {}",
                g.name,
                g.groups.join(", ")
            );
        }
        GroupCmd::Update { name, on, settings } => {
            let g = settings.to_group(name)?;
            let mut c = api::groups(&on.server).await?;
            let g = c
                .update_group(UpdateGroupRequest {
                    cluster: on.cluster,
                    group: Some(g),
                    request_id: String::new(),
                })
                .await?
                .into_inner();
            println!(
                "consumer group {} updated on {}",
                g.name,
                g.groups.join(", ")
            );
        }
        GroupCmd::Delete { name, on } => {
            let mut c = api::groups(&on.server).await?;
            c.delete_group(DeleteGroupRequest {
                cluster: on.cluster.clone(),
                name: name.clone(),
                request_id: String::new(),
            })
            .await?;
            println!("consumer group {name} deleted from cluster {}", on.cluster);
        }
        GroupCmd::Get { name, on, output } => {
            let mut c = api::groups(&on.server).await?;
            let g = c
                .get_group(GetGroupRequest {
                    cluster: on.cluster,
                    name,
                })
                .await?
                .into_inner();
            let v = view::Group::from(&g);
            output::print(output, &v, |wide| {
                group_table(std::slice::from_ref(&v), wide)
            })?;
        }
        GroupCmd::List { on, system, output } => {
            let mut c = api::groups(&on.server).await?;
            let mut all = view::GroupList {
                groups: Vec::new(),
                failures: Vec::new(),
            };
            let mut token = String::new();
            loop {
                let page = c
                    .list_groups(ListGroupsRequest {
                        cluster: on.cluster.clone(),
                        page_size: 500,
                        page_token: token.clone(),
                        include_system: system,
                    })
                    .await?
                    .into_inner();
                all.groups.extend(page.groups.iter().map(view::Group::from));
                if all.failures.is_empty() {
                    all.failures = view::failures(&page.failures);
                }
                warn_failures(&page.failures);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            output::print(output, &all, |wide| group_table(&all.groups, wide))?;
        }
        GroupCmd::Lag {
            name,
            on,
            topic,
            output,
        } => {
            let mut c = api::groups(&on.server).await?;
            let p = c
                .get_group_progress(GetGroupProgressRequest {
                    cluster: on.cluster,
                    group: name,
                    topic: topic.unwrap_or_default(),
                })
                .await?
                .into_inner();
            warn_failures(&p.failures);
            let v = view::Lag::from(&p);
            output::print(output, &v, |wide| lag_table(&v, wide))?;
        }
        GroupCmd::Connections { name, on, output } => {
            let mut c = api::groups(&on.server).await?;
            let x = c
                .get_consumer_connections(GetConsumerConnectionsRequest {
                    cluster: on.cluster,
                    group: name,
                })
                .await?
                .into_inner();
            warn_failures(&x.failures);
            let v = view::Connections::from(&x);
            output::print(output, &v, |_| connections_table(&v))?;
        }
    }
    Ok(())
}

/// Runs one `flotilla offset` command.
pub async fn run_offset(cmd: OffsetCmd) -> Result<(), CmdError> {
    let OffsetCmd::Reset {
        group,
        on,
        topic,
        to_time,
        to_offset,
        output,
    } = cmd;
    let target = match (to_time, to_offset) {
        (Some(t), None) => reset_offset_request::Target::Timestamp(parse_time(&t)?),
        (None, Some(o)) if o >= 0 => reset_offset_request::Target::Offset(o),
        (None, Some(o)) => {
            return Err(CmdError::invalid(
                "--to-offset",
                format!("must be >= 0, got {o}"),
            ));
        }
        _ => {
            return Err(CmdError::invalid(
                "flotilla offset reset",
                "give exactly one of --to-time or --to-offset",
            ));
        }
    };
    let mut c = api::groups(&on.server).await?;
    let r = c
        .reset_offset(ResetOffsetRequest {
            cluster: on.cluster,
            group: group.clone(),
            topic: topic.clone(),
            target: Some(target),
            request_id: String::new(),
        })
        .await?
        .into_inner();
    let v = view::Reset {
        group,
        topic,
        queues: r
            .queues
            .iter()
            .map(|q| view::ResetQueue {
                broker_name: q.broker_name.clone(),
                queue_id: q.queue_id,
                offset: q.consumer_offset,
            })
            .collect(),
    };
    output::print(output, &v, |_| {
        let rows: Vec<Vec<String>> = v
            .queues
            .iter()
            .map(|q| {
                vec![
                    q.broker_name.clone(),
                    q.queue_id.to_string(),
                    q.offset.to_string(),
                ]
            })
            .collect();
        let mut s = format!(
            "offsets of {} on {} reset on {} queues\n",
            v.group,
            v.topic,
            v.queues.len()
        );
        s.push_str(&columns(&["BROKER", "QUEUE", "OFFSET"], &rows));
        s
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_forms() {
        assert_eq!(parse_time("1700000000005").unwrap().seconds, 1_700_000_000);
        assert_eq!(parse_time("1700000000005").unwrap().nanos, 5_000_000);
        let t = parse_time("2023-11-14T22:13:20Z").unwrap();
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 0));
        let e = parse_time("yesterday").unwrap_err();
        assert!(e.to_string().starts_with("--to-time: \"yesterday\""), "{e}");
        assert!(parse_time("-5").is_err());
    }

    #[test]
    fn settings_ranges() {
        let s = Settings {
            retry_queues: 1,
            max_retries: 16,
            broadcast: false,
            consume_from_min: false,
            orderly: false,
            disabled: false,
            groups: vec![],
        };
        let g = s.to_group("g".into()).unwrap();
        assert!(g.consume_enable);
        assert_eq!((g.retry_queue_nums, g.retry_max_times), (1, 16));
        let bad = Settings {
            max_retries: 65,
            ..s.clone()
        };
        let e = bad.to_group("g".into()).unwrap_err();
        assert_eq!(e.to_string(), "--max-retries: must be 0..=64, got 65");
        let bad = Settings {
            retry_queues: 0,
            ..s
        };
        assert!(bad.to_group("g".into()).is_err());
    }
}

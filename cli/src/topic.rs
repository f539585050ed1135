//! `flotilla topic create|update|delete|get|list|route|stats`: a cluster's topics through the
//! control plane's TopicService.
//!
//! Flag values are checked here first (queue counts 1..=1024, permissions), so a typo is
//! answered with the flag's name and exit status 2 before anything is sent; the control plane
//! checks names and everything else and its refusals are printed with their field paths.
//! Broker groups that did not answer a read are printed as warnings on stderr (and are in the
//! `failures` field of `-o json|yaml`).

use std::collections::HashMap;

use clap::{Args, Subcommand};
use flotilla_proto::v1::{
    CreateTopicRequest, DeleteTopicRequest, GetTopicRequest, GetTopicRouteRequest,
    GetTopicStatsRequest, ListTopicsRequest, Topic, UpdateTopicRequest,
};

use crate::api::{self, CmdError};
use crate::output::{self, Format, columns};
use crate::view;

/// Most queues per broker group.
pub const MAX_QUEUES: i64 = 1024;

/// Where a business command goes: the control plane and the cluster.
#[derive(Debug, Clone, Args)]
pub struct On {
    /// The cluster.
    #[arg(long, short = 'c', env = "FLOTILLA_CLUSTER")]
    pub cluster: String,
    /// Control-plane address.
    #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
    pub server: String,
}

/// Queue counts and permission of a topic.
#[derive(Debug, Clone, Args, Default)]
pub struct Shape {
    /// Read and write queues per broker group (1..=1024).
    #[arg(long, allow_hyphen_values = true)]
    pub queues: Option<i64>,
    /// Read queues per broker group (1..=1024); overrides --queues.
    #[arg(long, allow_hyphen_values = true)]
    pub read_queues: Option<i64>,
    /// Write queues per broker group (1..=1024); overrides --queues.
    #[arg(long, allow_hyphen_values = true)]
    pub write_queues: Option<i64>,
    /// Permission: rw, r, w (or RocketMQ's number 6, 4, 2).
    #[arg(long)]
    pub perm: Option<String>,
}

/// `flotilla topic …`.
#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic on every broker group (or those given with --group).
    Create {
        /// Topic name: 1-127 of [%|a-zA-Z0-9_-].
        name: String,
        #[command(flatten)]
        on: On,
        #[command(flatten)]
        shape: Shape,
        /// An ordered topic.
        #[arg(long)]
        order: bool,
        /// Only on this broker group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A RocketMQ attribute KEY=VALUE (repeatable).
        #[arg(long = "attribute")]
        attributes: Vec<String>,
    },
    /// Change queue counts or permission; --group adds broker groups.
    Update {
        /// Topic name.
        name: String,
        #[command(flatten)]
        on: On,
        #[command(flatten)]
        shape: Shape,
        /// Also create it on this broker group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Delete a topic from its broker groups and the nameservers.
    Delete {
        /// Topic name.
        name: String,
        #[command(flatten)]
        on: On,
    },
    /// One topic.
    Get {
        /// Topic name.
        name: String,
        #[command(flatten)]
        on: On,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
    /// Every topic of the cluster.
    List {
        #[command(flatten)]
        on: On,
        /// Include RocketMQ's own topics (%RETRY%, %DLQ%, …).
        #[arg(long)]
        system: bool,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
    /// The topic's route as clients get it from a nameserver.
    Route {
        /// Topic name.
        name: String,
        #[command(flatten)]
        on: On,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
    /// Min/max offset and last update of every queue.
    Stats {
        /// Topic name.
        name: String,
        #[command(flatten)]
        on: On,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Format,
    },
}

/// A queue count flag: 1..=1024.
pub fn queue_count(flag: &str, n: Option<i64>) -> Result<u32, CmdError> {
    match n {
        None => Ok(0),
        Some(n) if (1..=MAX_QUEUES).contains(&n) => {
            u32::try_from(n).map_err(|_| CmdError::invalid(flag, "out of range"))
        }
        Some(n) => Err(CmdError::invalid(
            flag,
            format!("must be 1..={MAX_QUEUES}, got {n}"),
        )),
    }
}

/// A permission flag: rw / r / w (also ro, wo) or 6 / 4 / 2.
pub fn parse_perm(p: Option<&str>) -> Result<u32, CmdError> {
    let Some(p) = p else { return Ok(0) };
    match p.to_ascii_lowercase().as_str() {
        "rw" | "wr" | "6" => Ok(6),
        "r" | "ro" | "r-" | "4" => Ok(4),
        "w" | "wo" | "-w" | "2" => Ok(2),
        _ => Err(CmdError::invalid(
            "--perm",
            format!("must be rw, r or w (or 6, 4, 2), got {p:?}"),
        )),
    }
}

impl Shape {
    /// (read, write, perm); 0 = not given.
    pub fn resolve(&self) -> Result<(u32, u32, u32), CmdError> {
        let both = queue_count("--queues", self.queues)?;
        let read = queue_count("--read-queues", self.read_queues)?;
        let write = queue_count("--write-queues", self.write_queues)?;
        let pick = |x: u32| if x == 0 { both } else { x };
        Ok((pick(read), pick(write), parse_perm(self.perm.as_deref())?))
    }
}

fn attributes(kv: &[String]) -> Result<HashMap<String, String>, CmdError> {
    kv.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CmdError::invalid(
                "--attribute",
                format!("must be KEY=VALUE, got {s:?}"),
            )),
        })
        .collect()
}

/// Prints warnings for silent broker groups.
pub fn warn_failures(f: &[flotilla_proto::v1::BrokerFailure]) {
    for f in f {
        let at = if f.member.is_empty() {
            String::new()
        } else {
            format!(" ({} on {})", f.member, f.node)
        };
        eprintln!(
            "warning: broker group {}{at} did not answer: {} [{}]",
            f.broker_name, f.message, f.reason
        );
    }
}

/// The table of topics.
pub fn topic_table(topics: &[view::Topic], wide: bool) -> String {
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| {
            let mut r = vec![
                t.name.clone(),
                t.read_queues.to_string(),
                t.write_queues.to_string(),
                t.perm_name.clone(),
                t.groups.join(","),
            ];
            if wide {
                r.push(t.order.to_string());
                r.push(
                    t.attributes
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            r
        })
        .collect();
    let mut header = vec!["NAME", "READ", "WRITE", "PERM", "GROUPS"];
    if wide {
        header.extend(["ORDER", "ATTRIBUTES"]);
    }
    columns(&header, &rows)
}

fn stats_table(s: &view::TopicStats) -> String {
    let rows: Vec<Vec<String>> = s
        .queues
        .iter()
        .map(|q| {
            vec![
                q.broker_name.clone(),
                q.queue_id.to_string(),
                q.min_offset.to_string(),
                q.max_offset.to_string(),
                q.last_update_time.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = columns(&["BROKER", "QUEUE", "MIN", "MAX", "LAST-UPDATE"], &rows);
    out.push_str(&format!("total messages: {}\n", s.total_messages));
    out
}

fn route_table(r: &view::Route, wide: bool) -> String {
    let rows: Vec<Vec<String>> = r
        .groups
        .iter()
        .map(|g| {
            let addrs = if wide {
                g.addresses
                    .iter()
                    .map(|(id, a)| format!("{id}={a}"))
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                g.addresses.get(&0).cloned().unwrap_or_else(|| "-".into())
            };
            vec![
                g.broker_name.clone(),
                g.read_queues.to_string(),
                g.write_queues.to_string(),
                view::perm_name(g.perm),
                addrs,
            ]
        })
        .collect();
    let last = if wide { "ADDRESSES" } else { "MASTER" };
    columns(&["BROKER", "READ", "WRITE", "PERM", last], &rows)
}

/// Runs one `flotilla topic` command.
pub async fn run(cmd: TopicCmd) -> Result<(), CmdError> {
    match cmd {
        TopicCmd::Create {
            name,
            on,
            shape,
            order,
            groups,
            attributes: attrs,
        } => {
            let (read, write, perm) = shape.resolve()?;
            let topic = Topic {
                name,
                read_queue_nums: read,
                write_queue_nums: write,
                perm,
                order,
                attributes: attributes(&attrs)?,
                groups,
            };
            let mut c = api::topics(&on.server).await?;
            let t = c
                .create_topic(CreateTopicRequest {
                    cluster: on.cluster.clone(),
                    topic: Some(topic),
                    request_id: String::new(),
                })
                .await?
                .into_inner();
            println!(
                "topic {} created on {} ({} read / {} write queues, {})",
                t.name,
                t.groups.join(", "),
                t.read_queue_nums,
                t.write_queue_nums,
                view::perm_name(t.perm)
            );
        }
        TopicCmd::Update {
            name,
            on,
            shape,
            groups,
        } => {
            let (read, write, perm) = shape.resolve()?;
            if read == 0 && write == 0 && perm == 0 && groups.is_empty() {
                return Err(CmdError::invalid(
                    "flotilla topic update",
                    "nothing to change: give --queues, --read-queues, --write-queues, --perm or --group",
                ));
            }
            let mut c = api::topics(&on.server).await?;
            let t = c
                .update_topic(UpdateTopicRequest {
                    cluster: on.cluster.clone(),
                    topic: Some(Topic {
                        name,
                        read_queue_nums: read,
                        write_queue_nums: write,
                        perm,
                        groups,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await?
                .into_inner();
            println!(
                "topic {} updated on {} ({} read / {} write queues, {})",
                t.name,
                t.groups.join(", "),
                t.read_queue_nums,
                t.write_queue_nums,
                view::perm_name(t.perm)
            );
        }
        TopicCmd::Delete { name, on } => {
            let mut c = api::topics(&on.server).await?;
            c.delete_topic(DeleteTopicRequest {
                cluster: on.cluster.clone(),
                name: name.clone(),
                request_id: String::new(),
            })
            .await?;
            println!("topic {name} deleted from cluster {}", on.cluster);
        }
        TopicCmd::Get { name, on, output } => {
            let mut c = api::topics(&on.server).await?;
            let t = c
                .get_topic(GetTopicRequest {
                    cluster: on.cluster,
                    name,
                })
                .await?
                .into_inner();
            let v = view::Topic::from(&t);
            output::print(output, &v, |wide| {
                topic_table(std::slice::from_ref(&v), wide)
            })?;
        }
        TopicCmd::List { on, system, output } => {
            let mut c = api::topics(&on.server).await?;
            let mut all = view::TopicList {
                topics: Vec::new(),
                failures: Vec::new(),
            };
            let mut token = String::new();
            loop {
                let page = c
                    .list_topics(ListTopicsRequest {
                        cluster: on.cluster.clone(),
                        page_size: 500,
                        page_token: token.clone(),
                        include_system: system,
                    })
                    .await?
                    .into_inner();
                all.topics.extend(page.topics.iter().map(view::Topic::from));
                if all.failures.is_empty() {
                    all.failures = view::failures(&page.failures);
                }
                warn_failures(&page.failures);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            output::print(output, &all, |wide| topic_table(&all.topics, wide))?;
        }
        TopicCmd::Route { name, on, output } => {
            let mut c = api::topics(&on.server).await?;
            let r = c
                .get_topic_route(GetTopicRouteRequest {
                    cluster: on.cluster,
                    name,
                })
                .await?
                .into_inner();
            let v = view::Route::from(&r);
            output::print(output, &v, |wide| route_table(&v, wide))?;
        }
        TopicCmd::Stats { name, on, output } => {
            let mut c = api::topics(&on.server).await?;
            let s = c
                .get_topic_stats(GetTopicStatsRequest {
                    cluster: on.cluster,
                    name,
                })
                .await?
                .into_inner();
            warn_failures(&s.failures);
            let v = view::TopicStats::from(&s);
            output::print(output, &v, |_| stats_table(&v))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked_before_sending() {
        let e = queue_count("--queues", Some(-1)).unwrap_err();
        assert_eq!(e.to_string(), "--queues: must be 1..=1024, got -1");
        assert!(queue_count("--queues", Some(0)).is_err());
        assert!(queue_count("--queues", Some(1025)).is_err());
        assert_eq!(queue_count("--queues", Some(16)).unwrap(), 16);
        assert_eq!(queue_count("--queues", None).unwrap(), 0);
        assert_eq!(parse_perm(Some("rw")).unwrap(), 6);
        assert_eq!(parse_perm(Some("R")).unwrap(), 4);
        assert_eq!(parse_perm(Some("2")).unwrap(), 2);
        assert!(
            parse_perm(Some("x"))
                .unwrap_err()
                .to_string()
                .contains("--perm")
        );
        let s = Shape {
            queues: Some(4),
            write_queues: Some(2),
            ..Default::default()
        };
        assert_eq!(s.resolve().unwrap(), (4, 2, 0));
        assert!(attributes(&["=x".into()]).is_err());
        assert_eq!(attributes(&["a=b".into()]).unwrap()["a"], "b");
    }

    #[test]
    fn topic_table_columns() {
        let t = view::Topic {
            name: "Orders".into(),
            read_queues: 8,
            write_queues: 8,
            perm: 6,
            perm_name: "rw".into(),
            order: false,
            groups: vec!["c-0".into(), "c-1".into()],
            attributes: Default::default(),
        };
        let s = topic_table(&[t], false);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("NAME"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["Orders", "8", "8", "rw", "c-0,c-1"]
        );
    }
}

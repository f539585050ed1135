//! Message trace: decoding the records RocketMQ clients with tracing on write to the trace
//! topic (`RMQ_SYS_TRACE_TOPIC` unless configured), and folding them into the publish and
//! consume trace of each message, as the RocketMQ console's trace page shows it.
//!
//! The format (RocketMQ `TraceDataEncoder`): a trace message's body holds records, each
//! ended by `\u{2}` (FIELD_SPLITOR), with fields split by `\u{1}` (CONTENT_SPLITOR):
//!
//! - `Pub` timestamp regionId group topic msgId tags keys storeHost bodyLength costTime
//!   msgType(ordinal) [offsetMsgId] success [clientHost] — 13, 14 or 15+ fields;
//! - `SubBefore` timestamp regionId group requestId msgId retryTimes keys;
//! - `SubAfter` requestId msgId costTime success keys [contextCode [timestamp [group]]];
//! - `EndTransaction` timestamp regionId group topic msgId tags keys storeHost msgType
//!   transactionId transactionState fromTransactionCheck;
//! - `Recall` timestamp regionId group topic msgId success.
//!
//! The trace message's KEYS are the traced messages' unique keys plus their own keys, so
//! the brokers' index finds a message's records by its id (QUERY_MESSAGE on the trace
//! topic). Decoding never fails on input: a record of an unknown type or too few fields is
//! skipped, an unparsable number reads as 0 (clients of every age wrote these, and Java's
//! `split` drops trailing empty fields).

use std::collections::BTreeMap;

use flotilla_proto::v1::{ConsumeTrace, MessageTrace, TraceRecord};

/// The default trace topic.
pub const DEFAULT_TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// Ends one record.
pub const FIELD_SPLITOR: char = '\u{2}';
/// Splits the fields of a record.
pub const CONTENT_SPLITOR: char = '\u{1}';

/// RocketMQ `MessageType` by ordinal.
const MESSAGE_TYPES: [&str; 5] = [
    "Normal_Msg",
    "Trans_Msg_Half",
    "Trans_msg_Commit",
    "Delay_Msg",
    "Order_Msg",
];

/// RocketMQ `ConsumeReturnType` by ordinal (SubAfter's context code).
const CONSUME_STATUS: [&str; 5] = ["SUCCESS", "TIME_OUT", "EXCEPTION", "RETURNNULL", "FAILED"];

fn ts(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    })
}

fn ms(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos / 1_000_000))
    })
}

fn keys(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

fn message_type(s: &str) -> String {
    s.parse::<usize>()
        .ok()
        .and_then(|i| MESSAGE_TYPES.get(i))
        .map_or_else(|| s.to_string(), |t| (*t).to_string())
}

/// Decodes every record of one trace message body.
pub fn decode(body: &str) -> Vec<TraceRecord> {
    body.split(FIELD_SPLITOR)
        .filter(|r| !r.trim().is_empty())
        .filter_map(|r| decode_record(&r.split(CONTENT_SPLITOR).collect::<Vec<_>>()))
        .collect()
}

/// One record from its fields; `None` for an unknown type or too few fields.
pub fn decode_record(f: &[&str]) -> Option<TraceRecord> {
    let at = |i: usize| f.get(i).copied().unwrap_or("");
    let int = |i: usize| at(i).trim().parse::<i64>().unwrap_or(0);
    let int32 = |i: usize| i32::try_from(int(i)).unwrap_or(0);
    let yes = |i: usize| at(i).trim().eq_ignore_ascii_case("true");
    let mut r = TraceRecord {
        r#type: at(0).to_string(),
        ..Default::default()
    };
    match at(0) {
        "Pub" if f.len() >= 13 => {
            r.time = ts(int(1));
            r.region_id = at(2).into();
            r.group = at(3).into();
            r.topic = at(4).into();
            r.message_id = at(5).into();
            r.tags = at(6).into();
            r.keys = keys(at(7));
            r.store_host = at(8).into();
            r.body_length = int32(9);
            r.cost_time_ms = int32(10);
            r.message_type = message_type(at(11));
            if f.len() == 13 {
                r.success = yes(12);
            } else {
                r.offset_message_id = at(12).into();
                r.success = yes(13);
                r.client_host = at(14).into();
            }
        }
        "SubBefore" if f.len() >= 6 => {
            r.time = ts(int(1));
            r.region_id = at(2).into();
            r.group = at(3).into();
            r.request_id = at(4).into();
            r.message_id = at(5).into();
            r.retry_times = int32(6);
            r.keys = keys(at(7));
        }
        "SubAfter" if f.len() >= 5 => {
            r.request_id = at(1).into();
            r.message_id = at(2).into();
            r.cost_time_ms = int32(3);
            r.success = yes(4);
            r.keys = keys(at(5));
            if f.len() >= 7 {
                r.consume_status = usize::try_from(int(6))
                    .ok()
                    .and_then(|i| CONSUME_STATUS.get(i))
                    .map_or_else(String::new, |s| (*s).to_string());
            }
            r.time = ts(int(7));
            r.group = at(8).into();
        }
        "EndTransaction" if f.len() >= 10 => {
            r.time = ts(int(1));
            r.region_id = at(2).into();
            r.group = at(3).into();
            r.topic = at(4).into();
            r.message_id = at(5).into();
            r.tags = at(6).into();
            r.keys = keys(at(7));
            r.store_host = at(8).into();
            r.message_type = message_type(at(9));
            r.transaction_id = at(10).into();
            r.transaction_state = at(11).into();
            r.from_transaction_check = yes(12);
        }
        "Recall" if f.len() >= 6 => {
            r.time = ts(int(1));
            r.region_id = at(2).into();
            r.group = at(3).into();
            r.topic = at(4).into();
            r.message_id = at(5).into();
            r.success = yes(6);
        }
        _ => return None,
    }
    Some(r)
}

/// Folds records into one trace per message id, keeping only the messages `wanted` accepts;
/// records by time, consume attempts paired by request id, traces by first record time.
pub fn fold(records: Vec<TraceRecord>, wanted: impl Fn(&TraceRecord) -> bool) -> Vec<MessageTrace> {
    let mut by_id: BTreeMap<String, Vec<TraceRecord>> = BTreeMap::new();
    for r in records {
        if !r.message_id.is_empty() && wanted(&r) {
            by_id.entry(r.message_id.clone()).or_default().push(r);
        }
    }
    let mut traces: Vec<MessageTrace> = by_id
        .into_iter()
        .map(|(id, mut records)| {
            records.sort_by_key(|r| (ms(r.time.as_ref()), order(&r.r#type)));
            records.dedup();
            let topic = records
                .iter()
                .find(|r| !r.topic.is_empty())
                .map(|r| r.topic.clone())
                .unwrap_or_default();
            MessageTrace {
                message_id: id,
                topic,
                consumes: consumes(&records),
                records,
            }
        })
        .collect();
    traces.sort_by_key(|t| t.records.first().map_or(0, |r| ms(r.time.as_ref())));
    traces
}

/// Publishes before consumes at the same millisecond (SubAfter of old clients has no time).
fn order(kind: &str) -> u8 {
    match kind {
        "Pub" => 0,
        "EndTransaction" => 1,
        "SubBefore" => 2,
        "SubAfter" => 3,
        _ => 4,
    }
}

/// Consume attempts: each SubBefore with the SubAfter of the same request id.
fn consumes(records: &[TraceRecord]) -> Vec<ConsumeTrace> {
    records
        .iter()
        .filter(|r| r.r#type == "SubBefore")
        .map(|b| {
            let after = records
                .iter()
                .find(|a| a.r#type == "SubAfter" && a.request_id == b.request_id);
            ConsumeTrace {
                group: b.group.clone(),
                request_id: b.request_id.clone(),
                begin_time: b.time,
                retry_times: b.retry_times,
                cost_time_ms: after.map_or(0, |a| a.cost_time_ms),
                success: after.is_some_and(|a| a.success),
                status: match after {
                    None => "PENDING".to_string(),
                    Some(a) if !a.consume_status.is_empty() => a.consume_status.clone(),
                    Some(a) if a.success => "SUCCESS".to_string(),
                    Some(_) => "FAILED".to_string(),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record in the wire format (fields joined by CONTENT_SPLITOR, ended by FIELD_SPLITOR).
    fn rec(fields: &[&str]) -> String {
        let mut s = fields.join(&CONTENT_SPLITOR.to_string());
        s.push(FIELD_SPLITOR);
        s
    }

    #[test]
    fn every_record_type_decodes() {
        let body = [
            rec(&[
                "Pub",
                "1700000000000",
                "DefaultRegion",
                "pg",
                "T",
                "ID1",
                "tg",
                "k1 k2",
                "127.0.0.1:10911",
                "5",
                "3",
                "0",
                "OFFSETID",
                "true",
                "127.0.0.1@1",
            ]),
            rec(&[
                "SubBefore",
                "1700000000100",
                "DefaultRegion",
                "cg",
                "req-1",
                "ID1",
                "0",
                "k1",
            ]),
            rec(&[
                "SubAfter",
                "req-1",
                "ID1",
                "7",
                "true",
                "k1",
                "0",
                "1700000000107",
                "cg",
            ]),
            rec(&[
                "EndTransaction",
                "1700000000001",
                "DefaultRegion",
                "pg",
                "T",
                "ID2",
                "",
                "",
                "127.0.0.1:10911",
                "1",
                "tx-1",
                "COMMIT_MESSAGE",
                "false",
            ]),
            rec(&[
                "Recall",
                "1700000000002",
                "DefaultRegion",
                "pg",
                "T",
                "ID3",
                "true",
            ]),
            rec(&["Nonsense", "1"]),
            rec(&["Pub", "short"]),
        ]
        .concat();
        let r = decode(&body);
        assert_eq!(r.len(), 5, "unknown and short records are skipped: {r:?}");
        let p = &r[0];
        assert_eq!(
            (p.group.as_str(), p.topic.as_str(), p.message_id.as_str()),
            ("pg", "T", "ID1")
        );
        assert_eq!(p.keys, ["k1", "k2"]);
        assert_eq!((p.body_length, p.cost_time_ms), (5, 3));
        assert_eq!(p.message_type, "Normal_Msg");
        assert_eq!(p.offset_message_id, "OFFSETID");
        assert!(p.success);
        assert_eq!(p.client_host, "127.0.0.1@1");
        assert_eq!(ms(p.time.as_ref()), 1_700_000_000_000);
        assert_eq!(r[1].request_id, "req-1");
        assert_eq!(r[2].consume_status, "SUCCESS");
        assert_eq!(r[2].group, "cg");
        assert_eq!(r[3].transaction_state, "COMMIT_MESSAGE");
        assert_eq!(r[3].message_type, "Trans_Msg_Half");
        assert!(r[4].success);
    }

    #[test]
    fn old_shapes_decode() {
        // 13-field Pub (no offset id), 7-field SubAfter (no timestamp, no group), and Java's
        // split having dropped trailing empty fields of a SubBefore without keys.
        let body = [
            rec(&[
                "Pub", "10", "r", "pg", "T", "ID", "", "", "h", "1", "2", "4", "false",
            ]),
            rec(&["SubBefore", "20", "r", "cg", "q", "ID", "2"]),
            rec(&["SubAfter", "q", "ID", "9", "false", "", "1"]),
        ]
        .concat();
        let r = decode(&body);
        assert_eq!(r.len(), 3);
        assert!(!r[0].success);
        assert_eq!(r[0].offset_message_id, "");
        assert_eq!(r[0].message_type, "Order_Msg");
        assert_eq!(r[1].retry_times, 2);
        assert!(r[1].keys.is_empty());
        assert_eq!(r[2].consume_status, "TIME_OUT");
        assert!(r[2].time.is_none());
        let t = fold(r, |_| true);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].topic, "T");
        assert_eq!(t[0].consumes.len(), 1);
        let c = &t[0].consumes[0];
        assert_eq!((c.group.as_str(), c.retry_times), ("cg", 2));
        assert_eq!(
            (c.status.as_str(), c.cost_time_ms, c.success),
            ("TIME_OUT", 9, false)
        );
    }

    #[test]
    fn fold_pairs_attempts_and_filters() {
        let body = [
            rec(&["SubBefore", "30", "r", "cg", "q2", "A", "1", ""]),
            rec(&["SubBefore", "20", "r", "cg", "q1", "A", "0", ""]),
            rec(&["SubAfter", "q1", "A", "5", "false", "", "4", "25", "cg"]),
            rec(&[
                "Pub", "10", "r", "pg", "T", "A", "", "", "h", "1", "2", "0", "O", "true",
            ]),
            rec(&[
                "Pub", "11", "r", "pg", "T", "B", "", "", "h", "1", "2", "0", "O", "true",
            ]),
        ]
        .concat();
        let all = fold(decode(&body), |_| true);
        assert_eq!(all.len(), 2);
        let a = &all[0];
        assert_eq!(a.message_id, "A");
        let kinds: Vec<&str> = a.records.iter().map(|r| r.r#type.as_str()).collect();
        assert_eq!(
            kinds,
            ["Pub", "SubBefore", "SubAfter", "SubBefore"],
            "by time"
        );
        assert_eq!(a.consumes.len(), 2);
        assert_eq!(a.consumes[0].status, "FAILED");
        assert_eq!(a.consumes[1].status, "PENDING");
        let only_b = fold(decode(&body), |r| r.message_id == "B");
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].message_id, "B");
    }
}

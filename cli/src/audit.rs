//! `flotilla audit`: who changed what, from the control plane's audit log, newest first.
//!
//! `-o json` prints one JSON object per line (the log's own JSON lines form, for `jq` and log
//! tools); `-o yaml` a list; the table is for people. Needs the admin role.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_proto::v1::{
    AuditRecord, ListAuditRecordsRequest, audit_service_client::AuditServiceClient,
};
use serde::Serialize;

use crate::api::CmdError;
use crate::client;
use crate::output::{self, Format, OutputError};

/// `flotilla audit` flags.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only calls by this principal (`flotilla://operator/bob`, `anonymous`).
    #[arg(long)]
    pub principal: Option<String>,
    /// Only methods containing this text (`DeleteTopic`, `ClusterService`).
    #[arg(long)]
    pub method: Option<String>,
    /// Only calls in this last stretch of time (`30m`, `2h`, `7d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// At most this many records (1..=10000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Format,
    /// Control-plane addresses.
    #[arg(long, default_value = "127.0.0.1:7443", env = "FLOTILLA_SERVER")]
    pub server: String,
}

/// One record as scripts read it (stable snake_case names).
#[derive(Debug, Serialize)]
struct RecordView<'a> {
    time: &'a str,
    principal: &'a str,
    method: &'a str,
    request_id: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    replica: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    peer: &'a str,
}

fn view(r: &AuditRecord) -> RecordView<'_> {
    RecordView {
        time: &r.time,
        principal: &r.principal,
        method: &r.method,
        request_id: &r.request_id,
        code: &r.code,
        message: &r.message,
        replica: &r.replica,
        peer: &r.peer,
    }
}

/// Runs `flotilla audit`.
pub async fn run(a: AuditArgs) -> Result<(), CmdError> {
    if !(1..=10_000).contains(&a.limit) {
        return Err(CmdError::invalid("--limit", "must be 1..=10000"));
    }
    let since_unix_ms = match a.since {
        None => 0,
        Some(d) => {
            let from = SystemTime::now()
                .checked_sub(d)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .ok_or_else(|| CmdError::invalid("--since", "reaches before 1970"))?;
            i64::try_from(from.as_millis()).unwrap_or(i64::MAX)
        }
    };
    let mut c = AuditServiceClient::new(client::channel(&a.server).await?);
    let mut records = Vec::new();
    let mut token = String::new();
    while records.len() < a.limit {
        let page = c
            .list_audit_records(ListAuditRecordsRequest {
                page_size: i32::try_from((a.limit - records.len()).min(1000)).unwrap_or(1000),
                page_token: std::mem::take(&mut token),
                principal: a.principal.clone().unwrap_or_default(),
                method: a.method.clone().unwrap_or_default(),
                since_unix_ms,
            })
            .await?
            .into_inner();
        records.extend(page.records);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    records.truncate(a.limit);
    let views: Vec<_> = records.iter().map(view).collect();
    if a.output == Format::Json {
        let mut out = String::new();
        for v in &views {
            out.push_str(&serde_json::to_string(v).map_err(OutputError::from)?);
            out.push('\n');
        }
        print!("{out}");
        return Ok(());
    }
    output::print(a.output, &views, |wide| {
        let mut header = vec!["TIME", "PRINCIPAL", "METHOD", "CODE"];
        if wide {
            header.extend(["REQUEST-ID", "REPLICA", "PEER", "MESSAGE"]);
        }
        let rows: Vec<Vec<String>> = views
            .iter()
            .map(|v| {
                let method = v.method.rsplit('/').next().unwrap_or(v.method);
                let mut row = vec![
                    v.time.to_string(),
                    v.principal.to_string(),
                    method.to_string(),
                    v.code.to_string(),
                ];
                if wide {
                    row.extend([
                        v.request_id.to_string(),
                        v.replica.to_string(),
                        v.peer.to_string(),
                        v.message.to_string(),
                    ]);
                }
                row
            })
            .collect();
        output::columns(&header, &rows)
    })?;
    Ok(())
}

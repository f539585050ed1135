//! Scraping a `/metrics` endpoint and reading samples, through a real Prometheus text parser
//! (`prometheus-parse`), as Prometheus itself would read it.

use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` of `addr`, parsed. Panics when the text does not parse.
pub async fn scrape(addr: &str) -> Scrape {
    let body = metrics_text(addr).await;
    Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("the metrics of {addr} do not parse: {e}\n{body}"))
}

/// The body of `GET /metrics` of `addr` (HTTP/1.0, so the body ends with the connection).
/// Panics when the endpoint does not answer 200.
pub async fn metrics_text(addr: &str) -> String {
    let text = tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .unwrap_or_else(|_| panic!("scraping {addr} timed out"))
    .unwrap_or_else(|e| panic!("scraping {addr}: {e}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response from {addr}: {text}"));
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_string()
}

/// The value of the sample `name` whose labels include every pair of `labels`; `None` when
/// there is none. Counters, gauges and untyped samples (a histogram's `_count`, `_sum`).
pub fn sample(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
            _ => None,
        })
}

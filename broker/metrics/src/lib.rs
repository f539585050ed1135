//! Prometheus metrics for Flotilla's broker and nameserver, named and labelled as RocketMQ 5
//! names them, so RocketMQ's own Grafana dashboards work against our processes unchanged.
//!
//! RocketMQ 5 exports through OpenTelemetry; with `metricsExporterType=PROM` it serves the
//! Prometheus text format on `metricsPromExporterHost:metricsPromExporterPort` (5557). We
//! serve the same format from `prometheus-client` and keep everything else of the broker
//! free of metrics plumbing:
//!
//! | module | job |
//! |---|---|
//! | [`exporter`] | the exporter keys (`metricsExporterType`, host, port, `metricsLabel`, label caps), parsed and refused as RocketMQ's `BrokerConfig` names them |
//! | [`cap`] | bounded label values: topic and group labels cannot grow the series set without limit |
//! | [`rpc`] | `rocketmq_rpc_latency`, fed by the remoting server's [`flotilla_remoting::RpcObserver`] |
//! | [`http`] | the tiny `GET /metrics` endpoint |
//! | [`logging`] | `--log-format text\|json` for every binary |

pub mod cap;
pub mod exporter;
pub mod http;
pub mod logging;
pub mod rpc;

pub use cap::LabelCap;
pub use exporter::{ExporterType, MetricsConfig, MetricsConfigError};
pub use http::{MetricsServer, ServeError};
pub use rpc::RpcMetrics;

/// The label RocketMQ 5 puts on every series with the kind of node (`node_type`).
pub const LABEL_NODE_TYPE: &str = "node_type";
/// The cluster label (`cluster`).
pub const LABEL_CLUSTER: &str = "cluster";
/// The node label (`node_id`): the broker name on a broker, as Java's `BrokerMetricsManager`.
pub const LABEL_NODE_ID: &str = "node_id";

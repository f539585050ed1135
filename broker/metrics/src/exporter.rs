//! The exporter keys of RocketMQ 5's `BrokerConfig`, shared by broker and nameserver.
//!
//! `metricsExporterType` takes Java's enum names or its numeric values (DISABLE=0,
//! OTLP_GRPC=1, PROM=2, LOG=3, as `MetricsExporterType`). We implement DISABLE and PROM;
//! OTLP_GRPC and LOG are refused with [`MetricsConfigError::Unsupported`] so a config that
//! asks for them fails at start instead of running without the metrics it asked for. An
//! unknown value is refused too (Java would quietly fall back to DISABLE).
//!
//! `metricsPromExporterHost` empty means the broker's advertised address in Java
//! (`brokerIP1`); the caller passes that default in. `metricsLabel` is `k:v,k2:v2`, extra
//! labels put on every series; Java skips a malformed pair with a warning, we refuse it.
//! The label caps (`flotillaMetricsMaxTopics`, `flotillaMetricsMaxGroups`) are Flotilla's
//! own: see [`crate::cap`].

/// The exporter kinds of RocketMQ's `MetricsExporterType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExporterType {
    /// No metrics (default).
    #[default]
    Disable,
    /// Prometheus pull endpoint.
    Prom,
}

/// Key names.
pub mod keys {
    /// `metricsExporterType`.
    pub const EXPORTER_TYPE: &str = "metricsExporterType";
    /// `metricsPromExporterHost`.
    pub const PROM_HOST: &str = "metricsPromExporterHost";
    /// `metricsPromExporterPort`.
    pub const PROM_PORT: &str = "metricsPromExporterPort";
    /// `metricsLabel`.
    pub const LABEL: &str = "metricsLabel";
    /// `flotillaMetricsMaxTopics`: distinct topic label values before the overflow bucket.
    pub const MAX_TOPICS: &str = "flotillaMetricsMaxTopics";
    /// `flotillaMetricsMaxGroups`: distinct consumer group label values before overflow.
    pub const MAX_GROUPS: &str = "flotillaMetricsMaxGroups";
    /// Every key, with its default (for the known-key lists of broker and nameserver).
    pub const ALL: &[(&str, &str)] = &[
        (EXPORTER_TYPE, "DISABLE"),
        (PROM_HOST, ""),
        (PROM_PORT, "5557"),
        (LABEL, ""),
        (MAX_TOPICS, "1000"),
        (MAX_GROUPS, "1000"),
    ];
}

/// An exporter key with a value we cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsConfigError {
    /// The value does not parse.
    #[error("invalid value {value:?} for {key}: expected {expected}")]
    InvalidValue {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// A RocketMQ exporter this build does not implement.
    #[error(
        "{key}={value} is not supported: only DISABLE (0) and PROM (2) are implemented; \
         use PROM and scrape /metrics"
    )]
    Unsupported {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
    },
}

impl MetricsConfigError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidValue { .. } => "CONFIG_INVALID_VALUE",
            Self::Unsupported { .. } => "CONFIG_UNSUPPORTED",
        }
    }
}

/// The parsed exporter settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `metricsExporterType`.
    pub exporter: ExporterType,
    /// `metricsPromExporterHost` (or the caller's default when empty).
    pub host: String,
    /// `metricsPromExporterPort`.
    pub port: u16,
    /// `metricsLabel`, in the order given.
    pub labels: Vec<(String, String)>,
    /// `flotillaMetricsMaxTopics`.
    pub max_topics: usize,
    /// `flotillaMetricsMaxGroups`.
    pub max_groups: usize,
}

impl MetricsConfig {
    /// Parses the keys through `raw` (the value given or "" when absent); an empty host
    /// becomes `default_host`.
    pub fn parse(
        raw: impl Fn(&str) -> String,
        default_host: &str,
    ) -> Result<Self, MetricsConfigError> {
        let get = |k: &'static str| -> String {
            let v = raw(k).trim().to_string();
            if v.is_empty() {
                keys::ALL
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, d)| (*d).to_string())
                    .unwrap_or_default()
            } else {
                v
            }
        };
        let exporter = parse_exporter(&get(keys::EXPORTER_TYPE))?;
        let host = match get(keys::PROM_HOST) {
            h if h.is_empty() => default_host.to_string(),
            h => h,
        };
        let port_raw = get(keys::PROM_PORT);
        let port = port_raw.parse::<u16>().ok().filter(|p| *p > 0).ok_or(
            MetricsConfigError::InvalidValue {
                key: keys::PROM_PORT,
                value: port_raw,
                expected: "a TCP port 1..65535",
            },
        )?;
        let labels = parse_labels(&get(keys::LABEL))?;
        let cap = |k: &'static str| -> Result<usize, MetricsConfigError> {
            let v = get(k);
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(MetricsConfigError::InvalidValue {
                    key: k,
                    value: v,
                    expected: "a positive number of label values",
                })
        };
        Ok(Self {
            exporter,
            host,
            port,
            labels,
            max_topics: cap(keys::MAX_TOPICS)?,
            max_groups: cap(keys::MAX_GROUPS)?,
        })
    }

    /// The address to serve `/metrics` on, `host:port` (IPv6 hosts bracketed).
    pub fn listen_addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn parse_exporter(v: &str) -> Result<ExporterType, MetricsConfigError> {
    match v.to_ascii_uppercase().as_str() {
        "DISABLE" | "0" => Ok(ExporterType::Disable),
        "PROM" | "2" => Ok(ExporterType::Prom),
        "OTLP_GRPC" | "1" | "LOG" | "3" => Err(MetricsConfigError::Unsupported {
            key: keys::EXPORTER_TYPE,
            value: v.to_string(),
        }),
        _ => Err(MetricsConfigError::InvalidValue {
            key: keys::EXPORTER_TYPE,
            value: v.to_string(),
            expected: "DISABLE, OTLP_GRPC, PROM or LOG (or 0..3)",
        }),
    }
}

/// A label name as Prometheus allows it: `[a-zA-Z_][a-zA-Z0-9_]*`, not `__`-reserved.
fn valid_label_name(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with("__")
}

fn parse_labels(v: &str) -> Result<Vec<(String, String)>, MetricsConfigError> {
    let bad = || MetricsConfigError::InvalidValue {
        key: keys::LABEL,
        value: v.to_string(),
        expected: "name:value pairs separated by ',' (names [a-zA-Z_][a-zA-Z0-9_]*)",
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut parts = item.split(':');
        let (Some(k), Some(val), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let (k, val) = (k.trim(), val.trim());
        if !valid_label_name(k) || out.iter().any(|(n, _)| n == k) {
            return Err(bad());
        }
        out.push((k.to_string(), val.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<MetricsConfig, MetricsConfigError> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        MetricsConfig::parse(|k| m.get(k).cloned().unwrap_or_default(), "10.0.0.7")
    }

    #[test]
    fn defaults_are_disabled_on_5557() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.exporter, ExporterType::Disable);
        assert_eq!(c.port, 5557);
        assert_eq!(c.host, "10.0.0.7");
        assert!(c.labels.is_empty());
        assert_eq!((c.max_topics, c.max_groups), (1000, 1000));
    }

    #[test]
    fn names_and_numbers_are_accepted() {
        for v in ["PROM", "prom", "2"] {
            assert_eq!(
                parse(&[("metricsExporterType", v)]).unwrap().exporter,
                ExporterType::Prom
            );
        }
        for v in ["DISABLE", "0"] {
            assert_eq!(
                parse(&[("metricsExporterType", v)]).unwrap().exporter,
                ExporterType::Disable
            );
        }
    }

    #[test]
    fn unimplemented_exporters_are_refused_by_name() {
        for v in ["OTLP_GRPC", "1", "LOG", "3"] {
            let e = parse(&[("metricsExporterType", v)]).unwrap_err();
            assert_eq!(e.code(), "CONFIG_UNSUPPORTED", "{v}");
            assert!(e.to_string().contains("metricsExporterType"), "{e}");
        }
        let e = parse(&[("metricsExporterType", "STATSD")]).unwrap_err();
        assert_eq!(e.code(), "CONFIG_INVALID_VALUE");
    }

    #[test]
    fn host_port_labels_and_caps() {
        let c = parse(&[
            ("metricsExporterType", "PROM"),
            ("metricsPromExporterHost", "127.0.0.1"),
            ("metricsPromExporterPort", "15557"),
            ("metricsLabel", "region:eu, az:a1"),
            ("flotillaMetricsMaxTopics", "5"),
        ])
        .unwrap();
        assert_eq!(c.listen_addr(), "127.0.0.1:15557");
        assert_eq!(
            c.labels,
            vec![("region".into(), "eu".into()), ("az".into(), "a1".into())]
        );
        assert_eq!(c.max_topics, 5);
        let v6 = parse(&[("metricsPromExporterHost", "::1")]).unwrap();
        assert_eq!(v6.listen_addr(), "[::1]:5557");
        for (k, v) in [
            ("metricsPromExporterPort", "0"),
            ("metricsPromExporterPort", "70000"),
            ("metricsLabel", "novalue"),
            ("metricsLabel", "a:b:c"),
            ("metricsLabel", "1x:y"),
            ("metricsLabel", "a:1,a:2"),
            ("flotillaMetricsMaxGroups", "0"),
        ] {
            let e = parse(&[(k, v)]).unwrap_err();
            assert!(e.to_string().contains(k), "{k}={v}: {e}");
        }
    }
}

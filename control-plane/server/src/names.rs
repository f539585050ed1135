//! Names of everything the control plane derives: broker groups, instances, DLedger ids.
//!
//! RocketMQ and the operator fix these shapes (`brokerName`, `n0`…), and the agent and the
//! business API find instances by them, so they are built in exactly one place.

/// Broker group `i` of a cluster: `<cluster>-<i>` (RocketMQ `brokerName`).
pub fn group(cluster: &str, i: u32) -> String {
    format!("{cluster}-{i}")
}

/// Nameserver `i` of a cluster: `<cluster>-namesrv-<i>`.
pub fn namesrv(cluster: &str, i: u32) -> String {
    format!("{cluster}-namesrv-{i}")
}

/// The index of a nameserver instance of `cluster` (`<cluster>-namesrv-<i>` → `i`).
pub fn namesrv_index(cluster: &str, name: &str) -> Option<u32> {
    name.strip_prefix(cluster)?
        .strip_prefix("-namesrv-")?
        .parse()
        .ok()
}

/// Member `m` of a broker group: `<group>-<m>`.
pub fn member(group: &str, m: u32) -> String {
    format!("{group}-{m}")
}

/// DLedger self id of member `m`: `n<m>`.
pub fn dledger_self_id(m: u32) -> String {
    format!("n{m}")
}

/// The index of a group name of `cluster` (`<cluster>-<i>` → `i`).
pub fn group_index(cluster: &str, group: &str) -> Option<u32> {
    group.strip_prefix(cluster)?.strip_prefix('-')?.parse().ok()
}

/// Whether `s` is a DNS-1123 label: 1-63 of `[a-z0-9-]`, starting with a letter, ending with a
/// letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Whether `s` is a DNS-1123 subdomain (dot-separated labels, at most 253 characters; labels
/// may start with a digit).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0].is_ascii_alphanumeric()
                && b.last().is_some_and(|c| c.is_ascii_alphanumeric())
        })
}

/// The host part of an advertise address (`host`, `host:port`, `[v6]:port`).
pub fn advertise_host(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(group("orders", 2), "orders-2");
        assert_eq!(namesrv("orders", 0), "orders-namesrv-0");
        assert_eq!(member("orders-2", 1), "orders-2-1");
        assert_eq!(dledger_self_id(3), "n3");
        assert_eq!(group_index("orders", "orders-12"), Some(12));
        assert_eq!(group_index("orders", "orders-x"), None);
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("a"));
        assert!(is_dns_label("orders-1"));
        assert!(!is_dns_label("1orders"));
        assert!(!is_dns_label("Orders"));
        assert!(!is_dns_label("orders-"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("example.com"));
        assert!(!is_dns_subdomain("-x.com"));
    }

    #[test]
    fn hosts() {
        assert_eq!(advertise_host("10.0.0.1"), "10.0.0.1");
        assert_eq!(advertise_host("node-a:7000"), "node-a");
        assert_eq!(advertise_host("[::1]:7000"), "::1");
    }
}

//! White-listed remote addresses (`globalWhiteRemoteAddresses`, `whiteRemoteAddress`).
//!
//! Java's `RemoteAddressStrategyFactory` formats, for IPv4 and IPv6:
//!
//! - blank: matches nothing; `*`, `*.*.*.*`, `*:*:*:*:*:*:*:*`: matches everything;
//! - `192.168.0.{1,2,3}` (the last part in braces) and `10.0.0.1,10.0.0.2`: a set;
//! - `192.168.1.*`, `192.168.1-5.*`, `10.*.*.*`, `fe80::1-ff`: per-part values, `*` or
//!   ranges `a-b` (decimal for IPv4, hex for IPv6);
//! - one address.
//!
//! A malformed pattern is an error, so a typo rejects the file rather than opening it up
//! or silently closing it. Per-part matching is at least as strict as Java's (Java ignores
//! the parts after its first range); IPv4-mapped IPv6 peers match IPv4 patterns.

use std::net::IpAddr;

/// A parsed address pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPattern(Kind);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Never,
    Any,
    Set(Vec<IpAddr>),
    Parts { v6: bool, parts: Vec<Part> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Value(u16),
    Range(u16, u16),
}

impl AddressPattern {
    /// A pattern that matches nothing (a blank `whiteRemoteAddress`).
    pub fn never() -> Self {
        Self(Kind::Never)
    }

    /// Parses one pattern; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self(Kind::Never));
        }
        if matches!(s, "*" | "*.*.*.*" | "*:*:*:*:*:*:*:*") {
            return Ok(Self(Kind::Any));
        }
        if s.ends_with('}') {
            let open = s
                .rfind('{')
                .ok_or_else(|| format!("{s:?}: '}}' without '{{'"))?;
            let (head, tail) = s.split_at(open);
            if !(head.ends_with('.') || head.ends_with(':')) {
                return Err(format!(
                    "{s:?}: braces must hold the last part of the address"
                ));
            }
            let inner = &tail[1..tail.len() - 1];
            let set = inner
                .split(',')
                .map(|p| ip(&format!("{head}{}", p.trim())))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self(Kind::Set(set)));
        }
        if s.contains(',') {
            let set = s
                .split(',')
                .map(|p| ip(p.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self(Kind::Set(set)));
        }
        if s.contains('*') || s.contains('-') {
            return parts(s);
        }
        Ok(Self(Kind::Set(vec![ip(s)?])))
    }

    /// Whether a peer at `addr` matches.
    pub fn matches(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        match &self.0 {
            Kind::Never => false,
            Kind::Any => true,
            Kind::Set(set) => set.iter().any(|a| canonical(*a) == addr),
            Kind::Parts { v6, parts } => {
                let values: Vec<u16> = match (addr, v6) {
                    (IpAddr::V4(a), false) => a.octets().iter().map(|o| u16::from(*o)).collect(),
                    (IpAddr::V6(a), true) => a.segments().to_vec(),
                    _ => return false,
                };
                values.len() == parts.len()
                    && values.iter().zip(parts).all(|(v, p)| match p {
                        Part::Value(x) => v == x,
                        Part::Range(lo, hi) => (lo..=hi).contains(&v),
                    })
            }
        }
    }
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address"))
}

fn parts(s: &str) -> Result<AddressPattern, String> {
    let v6 = s.contains(':');
    let (max, radix, n) = if v6 {
        (0xffff_u32, 16, 8)
    } else {
        (255_u32, 10, 4)
    };
    let mut raw: Vec<&str> = s.split(if v6 { ':' } else { '.' }).collect();
    if v6 {
        // `a::b` → zero groups in the gap; a trailing `*` stands for the groups left.
        if let Some(gap) = raw.iter().position(|p| p.is_empty()) {
            let given: Vec<&str> = raw.iter().copied().filter(|p| !p.is_empty()).collect();
            if given.len() >= n {
                return Err(format!("{s:?}: too many groups for an IPv6 address"));
            }
            let mut full: Vec<&str> = raw[..gap]
                .iter()
                .copied()
                .filter(|p| !p.is_empty())
                .collect();
            let after: Vec<&str> = raw[gap..]
                .iter()
                .copied()
                .filter(|p| !p.is_empty())
                .collect();
            full.extend(std::iter::repeat_n("0", n - given.len()));
            full.extend(after);
            raw = full;
        } else if raw.len() < n && raw.last() == Some(&"*") {
            raw.extend(std::iter::repeat_n("*", n - raw.len()));
        }
    }
    if raw.len() != n {
        return Err(format!(
            "{s:?}: an {} pattern has {n} parts",
            if v6 { "IPv6" } else { "IPv4" }
        ));
    }
    let num = |p: &str| -> Result<u16, String> {
        u32::from_str_radix(p.trim(), radix)
            .ok()
            .filter(|v| *v <= max)
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| format!("{s:?}: {p:?} is not an address part"))
    };
    let parts = raw
        .iter()
        .map(|p| {
            let p = p.trim();
            if p == "*" {
                return Ok(Part::Range(0, u16::try_from(max).unwrap_or(u16::MAX)));
            }
            match p.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(format!("{s:?}: range {p:?} runs backwards"));
                    }
                    Ok(Part::Range(a, b))
                }
                None => Ok(Part::Value(num(p)?)),
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(AddressPattern(Kind::Parts { v6, parts }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, a: &str) -> bool {
        AddressPattern::parse(p)
            .unwrap()
            .matches(a.parse().unwrap())
    }

    #[test]
    fn java_formats() {
        assert!(!m("", "127.0.0.1"));
        assert!(m("*", "10.1.2.3") && m("*.*.*.*", "::1"));
        assert!(m("192.168.0.{1,2}", "192.168.0.2"));
        assert!(!m("192.168.0.{1,2}", "192.168.0.3"));
        assert!(m("10.0.0.1,10.0.0.2", "10.0.0.1"));
        assert!(m("192.168.1.*", "192.168.1.77"));
        assert!(!m("192.168.1.*", "192.168.2.77"));
        assert!(m("192.168.1-5.*", "192.168.3.9"));
        assert!(!m("192.168.1-5.*", "192.168.6.9"));
        assert!(m("10.*.*.*", "10.200.1.1"));
        assert!(m("127.0.0.1", "127.0.0.1"));
        assert!(!m("127.0.0.1", "127.0.0.2"));
        assert!(
            m("127.0.0.1", "::ffff:127.0.0.1"),
            "IPv4-mapped peers match IPv4"
        );
        assert!(m("::1", "::1"));
        assert!(m("fe80::1-ff", "fe80::a0"));
        assert!(!m("fe80::1-ff", "fe80::100"));
        assert!(m("fe80:*", "fe80::1:2"));
        assert!(!m("10.*.*.*", "fe80::1"));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for p in [
            "300.1.1.1",
            "1.2.3",
            "1.2.3.5-1",
            "1.2.3.x",
            "a.b.c.{1,x}",
            "10.0.0.1,nope",
        ] {
            assert!(AddressPattern::parse(p).is_err(), "{p} must be refused");
        }
    }
}

//! ACL 1.0 permissions: `DENY`, `PUB`, `SUB`, `PUB|SUB`, with Java's check semantics.
//!
//! The bits are Java's `Permission` (DENY=1, ANY=2, PUB=4, SUB=8). An owned permission
//! with the DENY bit allows nothing; a needed ANY is met by PUB or SUB; otherwise the
//! needed and owned bits must share one.

use std::fmt;

/// A permission: what an account owns on a resource, or what a request needs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Perm(u8);

impl Perm {
    /// Nothing is allowed.
    pub const DENY: Perm = Perm(1);
    /// Needed: PUB or SUB is enough.
    pub const ANY: Perm = Perm(1 << 1);
    /// Send.
    pub const PUB: Perm = Perm(1 << 2);
    /// Pull, consume, commit offsets.
    pub const SUB: Perm = Perm(1 << 3);
    /// Both.
    pub const PUB_SUB: Perm = Perm((1 << 2) | (1 << 3));

    /// Java's permission strings: `DENY`, `PUB`, `SUB`, `PUB|SUB`, `SUB|PUB`. Anything else
    /// is refused (Java reads it as DENY; refusing tells the operator about the typo).
    pub fn parse(s: &str) -> Option<Perm> {
        match s.trim() {
            "DENY" => Some(Self::DENY),
            "PUB" => Some(Self::PUB),
            "SUB" => Some(Self::SUB),
            "PUB|SUB" | "SUB|PUB" => Some(Self::PUB_SUB),
            _ => None,
        }
    }

    /// Whether owning `self` grants `needed` (Java's `Permission.checkPermission`).
    pub fn grants(self, needed: Perm) -> bool {
        if self.0 & Self::DENY.0 != 0 {
            return false;
        }
        if needed.0 & Self::ANY.0 != 0 {
            return self.0 & (Self::PUB.0 | Self::SUB.0) != 0;
        }
        needed.0 & self.0 != 0
    }

    /// The permission as written in `plain_acl.yml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::DENY => "DENY",
            Self::ANY => "ANY",
            Self::PUB => "PUB",
            Self::SUB => "SUB",
            Self::PUB_SUB => "PUB|SUB",
            _ => "DENY",
        }
    }
}

impl fmt::Debug for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_java_strings_only() {
        assert_eq!(Perm::parse("PUB"), Some(Perm::PUB));
        assert_eq!(Perm::parse(" SUB "), Some(Perm::SUB));
        assert_eq!(Perm::parse("PUB|SUB"), Some(Perm::PUB_SUB));
        assert_eq!(Perm::parse("SUB|PUB"), Some(Perm::PUB_SUB));
        assert_eq!(Perm::parse("DENY"), Some(Perm::DENY));
        assert_eq!(Perm::parse("pub"), None);
        assert_eq!(Perm::parse("ANY"), None);
        assert_eq!(Perm::parse("PUB SUB"), None);
    }

    #[test]
    fn deny_pub_sub_semantics() {
        assert!(Perm::PUB.grants(Perm::PUB));
        assert!(!Perm::PUB.grants(Perm::SUB));
        assert!(Perm::SUB.grants(Perm::SUB));
        assert!(!Perm::SUB.grants(Perm::PUB));
        assert!(Perm::PUB_SUB.grants(Perm::PUB) && Perm::PUB_SUB.grants(Perm::SUB));
        for needed in [Perm::PUB, Perm::SUB, Perm::ANY, Perm::PUB_SUB] {
            assert!(!Perm::DENY.grants(needed), "DENY grants nothing ({needed})");
        }
        assert!(Perm::PUB.grants(Perm::ANY) && Perm::SUB.grants(Perm::ANY));
    }
}

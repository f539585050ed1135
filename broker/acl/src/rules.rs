//! `plain_acl.yml`: the accounts and white lists, parsed and checked as a whole.
//!
//! The file is Java's (`distribution/conf/plain_acl.yml`):
//!
//! ```yaml
//! globalWhiteRemoteAddresses: [10.10.103.*]
//! accounts:
//!   - accessKey: RocketMQ
//!     secretKey: 12345678
//!     whiteRemoteAddress:
//!     admin: false
//!     defaultTopicPerm: DENY
//!     defaultGroupPerm: SUB
//!     topicPerms: [topicA=DENY, topicB=PUB|SUB, topicC=SUB]
//!     groupPerms: [groupA=DENY, groupB=PUB|SUB, groupC=SUB]
//! ```
//!
//! Scalars are read as YAML gives them (`secretKey: 12345678` is a number there), as
//! Java's loader does. Missing default permissions are DENY, as in Java. Unlike Java, which
//! turns an unknown permission string into DENY and lets the last of two equal access keys
//! win, a malformed entry rejects the whole file with the entry's place in it
//! (`accounts[1].topicPerms[0]`): the watcher then keeps the previous rules. Keys this
//! broker does not use (`dataVersion`) are ignored.

use std::collections::HashMap;

use serde_yaml::Value;

use crate::address::AddressPattern;
use crate::perm::Perm;
use crate::resource::retry_topic;

/// Java's minimum: access and secret keys longer than 6 characters.
const KEY_MIN_LEN: usize = 7;

/// `plain_acl.yml` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// Not YAML at all.
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// An entry has the wrong shape or value.
    #[error("{place}: {reason}")]
    Invalid {
        /// Where in the file (`accounts[0].secretKey`).
        place: String,
        /// What is wrong.
        reason: String,
    },
}

impl RulesError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Yaml(_) => "ACL_FILE_NOT_YAML",
            Self::Invalid { .. } => "ACL_FILE_INVALID",
        }
    }
}

fn invalid(place: impl Into<String>, reason: impl Into<String>) -> RulesError {
    RulesError::Invalid {
        place: place.into(),
        reason: reason.into(),
    }
}

/// One account of `accounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// `accessKey`.
    pub access_key: String,
    /// `secretKey`.
    pub secret_key: String,
    /// `whiteRemoteAddress`: peers from here skip the signature and permission checks.
    pub white: AddressPattern,
    /// `admin`: may use the admin request codes.
    pub admin: bool,
    /// `defaultTopicPerm`.
    pub default_topic_perm: Perm,
    /// `defaultGroupPerm`.
    pub default_group_perm: Perm,
    /// `topicPerms` by topic and `groupPerms` by the group's retry topic (`%RETRY%g`), as
    /// Java keys them.
    pub perms: HashMap<String, Perm>,
}

/// Everything `plain_acl.yml` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclRules {
    /// `globalWhiteRemoteAddresses`: peers from here skip every check.
    pub global_white: Vec<AddressPattern>,
    accounts: HashMap<String, Account>,
}

impl AclRules {
    /// No white list and no accounts: every request that needs an account is refused.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The account with `access_key`.
    pub fn account(&self, access_key: &str) -> Option<&Account> {
        self.accounts.get(access_key)
    }

    /// How many accounts there are.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Parses the file's text. An empty file is no rules.
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let doc: Value = serde_yaml::from_str(text).map_err(|e| RulesError::Yaml(e.to_string()))?;
        let map = match doc {
            Value::Null => return Ok(Self::empty()),
            Value::Mapping(m) => m,
            _ => return Err(invalid("the document", "must be a mapping")),
        };
        let mut rules = Self::empty();
        if let Some(list) = map.get("globalWhiteRemoteAddresses") {
            for (i, v) in seq(list, "globalWhiteRemoteAddresses")?.iter().enumerate() {
                let place = format!("globalWhiteRemoteAddresses[{i}]");
                let text = scalar(v, &place)?.unwrap_or_default();
                rules
                    .global_white
                    .push(AddressPattern::parse(&text).map_err(|e| invalid(&place, e))?);
            }
        }
        if let Some(list) = map.get("accounts") {
            for (i, v) in seq(list, "accounts")?.iter().enumerate() {
                let account = parse_account(v, &format!("accounts[{i}]"))?;
                if rules.accounts.contains_key(&account.access_key) {
                    return Err(invalid(
                        format!("accounts[{i}].accessKey"),
                        format!("{} is defined twice", account.access_key),
                    ));
                }
                rules.accounts.insert(account.access_key.clone(), account);
            }
        }
        Ok(rules)
    }
}

fn seq<'a>(v: &'a Value, place: &str) -> Result<&'a [Value], RulesError> {
    match v {
        Value::Null => Ok(&[]),
        Value::Sequence(s) => Ok(s),
        _ => Err(invalid(place, "must be a list")),
    }
}

/// A scalar as text (strings, numbers, booleans); `None` for null.
fn scalar(v: &Value, place: &str) -> Result<Option<String>, RulesError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(invalid(place, "must be a single value")),
    }
}

fn parse_account(v: &Value, place: &str) -> Result<Account, RulesError> {
    let Value::Mapping(m) = v else {
        return Err(invalid(place, "must be a mapping"));
    };
    let field = |k: &str| -> Result<Option<String>, RulesError> {
        m.get(k)
            .map_or(Ok(None), |v| scalar(v, &format!("{place}.{k}")))
    };
    let key = |k: &str| -> Result<String, RulesError> {
        let v = field(k)?.unwrap_or_default();
        if v.chars().count() < KEY_MIN_LEN {
            return Err(invalid(
                format!("{place}.{k}"),
                format!("must be longer than {} characters", KEY_MIN_LEN - 1),
            ));
        }
        Ok(v)
    };
    let access_key = key("accessKey")?;
    let secret_key = key("secretKey")?;
    let white_text = field("whiteRemoteAddress")?.unwrap_or_default();
    let white = AddressPattern::parse(&white_text)
        .map_err(|e| invalid(format!("{place}.whiteRemoteAddress"), e))?;
    let admin = match field("admin")?.as_deref().map(str::trim) {
        None | Some("") => false,
        Some(s) if s.eq_ignore_ascii_case("true") => true,
        Some(s) if s.eq_ignore_ascii_case("false") => false,
        Some(s) => {
            return Err(invalid(
                format!("{place}.admin"),
                format!("{s:?} is not true or false"),
            ));
        }
    };
    let perm = |k: &str| -> Result<Perm, RulesError> {
        match field(k)? {
            None => Ok(Perm::DENY),
            Some(s) if s.trim().is_empty() => Ok(Perm::DENY),
            Some(s) => Perm::parse(&s).ok_or_else(|| {
                invalid(
                    format!("{place}.{k}"),
                    format!("{s:?} is not DENY, PUB, SUB or PUB|SUB"),
                )
            }),
        }
    };
    let default_topic_perm = perm("defaultTopicPerm")?;
    let default_group_perm = perm("defaultGroupPerm")?;
    let mut perms = HashMap::new();
    for (k, is_group) in [("topicPerms", false), ("groupPerms", true)] {
        let Some(list) = m.get(k) else { continue };
        for (i, v) in seq(list, &format!("{place}.{k}"))?.iter().enumerate() {
            let at = format!("{place}.{k}[{i}]");
            let text = scalar(v, &at)?.unwrap_or_default();
            let (name, p) = text
                .split_once('=')
                .map(|(n, p)| (n.trim(), p.trim()))
                .filter(|(n, p)| !n.is_empty() && !p.is_empty() && !p.contains('='))
                .ok_or_else(|| invalid(&at, format!("{text:?} is not name=PERM")))?;
            let p = Perm::parse(p)
                .ok_or_else(|| invalid(&at, format!("{p:?} is not DENY, PUB, SUB or PUB|SUB")))?;
            let resource = if is_group {
                retry_topic(name)
            } else {
                name.to_string()
            };
            perms.insert(resource, p);
        }
    }
    Ok(Account {
        access_key,
        secret_key,
        white,
        admin,
        default_topic_perm,
        default_group_perm,
        perms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Java's sample file (rmq tag 4.9.8, distribution/conf/plain_acl.yml), abridged.
    const SAMPLE: &str = "\
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.*
accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      - groupA=DENY
      - groupB=PUB|SUB
      - groupC=SUB
  - accessKey: rocketmq2
    secretKey: 12345678
    whiteRemoteAddress: 192.168.1.*
    admin: true
";

    #[test]
    fn parses_javas_sample() {
        let r = AclRules::parse(SAMPLE).unwrap();
        assert_eq!(r.global_white.len(), 2);
        assert_eq!(r.account_count(), 2);
        let a = r.account("RocketMQ").unwrap();
        assert_eq!(a.secret_key, "12345678", "a YAML number is read as text");
        assert!(!a.admin);
        assert_eq!(a.default_topic_perm, Perm::DENY);
        assert_eq!(a.default_group_perm, Perm::SUB);
        assert_eq!(a.perms["topicB"], Perm::PUB_SUB);
        assert_eq!(
            a.perms["%RETRY%groupA"],
            Perm::DENY,
            "groups are keyed by retry topic"
        );
        assert!(!a.white.matches("192.168.1.1".parse().unwrap()));
        let b = r.account("rocketmq2").unwrap();
        assert!(b.admin);
        assert_eq!(
            b.default_topic_perm,
            Perm::DENY,
            "a missing default is DENY"
        );
        assert!(b.white.matches("192.168.1.9".parse().unwrap()));
    }

    #[test]
    fn empty_file_is_no_rules() {
        assert_eq!(AclRules::parse("").unwrap(), AclRules::empty());
        assert_eq!(AclRules::parse("# nothing\n").unwrap(), AclRules::empty());
    }

    #[test]
    fn malformed_entries_reject_the_file_naming_the_place() {
        let cases = [
            (
                "accounts: [{accessKey: short, secretKey: 12345678}]",
                "accounts[0].accessKey",
            ),
            (
                "accounts: [{accessKey: RocketMQ, secretKey: 12345678, topicPerms: [a=PUBSUB]}]",
                "accounts[0].topicPerms[0]",
            ),
            (
                "accounts: [{accessKey: RocketMQ, secretKey: 12345678, topicPerms: [justname]}]",
                "accounts[0].topicPerms[0]",
            ),
            (
                "accounts: [{accessKey: RocketMQ, secretKey: 12345678, defaultTopicPerm: ALL}]",
                "accounts[0].defaultTopicPerm",
            ),
            (
                "accounts: [{accessKey: RocketMQ, secretKey: 12345678, admin: yesplease}]",
                "accounts[0].admin",
            ),
            (
                "globalWhiteRemoteAddresses: [10.0.0]",
                "globalWhiteRemoteAddresses[0]",
            ),
            (
                "accounts: [{accessKey: RocketMQ, secretKey: 12345678}, {accessKey: RocketMQ, secretKey: 87654321}]",
                "accounts[1].accessKey",
            ),
            ("accounts: 5", "accounts"),
        ];
        for (text, place) in cases {
            match AclRules::parse(text) {
                Err(RulesError::Invalid { place: p, .. }) => assert_eq!(p, place, "{text}"),
                other => panic!("{text}: expected an error at {place}, got {other:?}"),
            }
        }
        assert!(matches!(
            AclRules::parse("accounts: [unclosed"),
            Err(RulesError::Yaml(_))
        ));
    }
}

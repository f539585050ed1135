//! The check of one request against the rules, in Java's order.
//!
//! `PlainPermissionManager.validate`: a peer in `globalWhiteRemoteAddresses` passes; else
//! the request must name a known `AccessKey`; a peer in that account's
//! `whiteRemoteAddress` passes; else the `Signature` must be the account's signature of
//! the request; then admin codes need an admin account, and the resources the request
//! touches (see [`crate::resource`]) need the account's permission on each, falling back
//! to its default topic or group permission. An admin account with no per-resource
//! permissions at all passes the resource check, as in Java.
//!
//! The signed content leaves out `_UNIQUE_KEY_QUERY` for clients of V4_9_3 and older (Java
//! 5.x's rule; 4.9's broker always left it out), and is accepted either way for newer
//! clients, so both Java broker generations' clients verify.
//!
//! On the nameserver (which has no ACL in Java) the same account rules apply, admin codes
//! are those that change its state, no resource permissions are checked, and requests of
//! the other (read-only) codes without an `AccessKey` pass: RocketMQ clients and tools
//! query routes before anything else, and Java's nameserver answers them to anyone. A read
//! that does carry an `AccessKey` is checked in full, so a forged signature never passes.

use std::net::IpAddr;

use flotilla_remoting::RemotingCommand;
use flotilla_remoting::signing::{ACCESS_KEY, SIGNATURE, signed_content, verify_signature};

use crate::perm::Perm;
use crate::resource::{
    BROKER_ADMIN_CODES, NAMESRV_ADMIN_CODES, TRACE_TOPIC, describe, is_group, needed,
};
use crate::rules::AclRules;

/// `MixAll.UNIQUE_MSG_QUERY_FLAG`.
const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";
/// `MQVersion.Version.V4_9_3.ordinal()`.
const V4_9_3: i32 = 400;

/// Which server checks: the admin codes and resource rules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A broker.
    Broker,
    /// A nameserver.
    Namesrv,
}

impl Scope {
    /// Whether `code` needs an admin account here.
    pub fn is_admin_code(self, code: i32) -> bool {
        match self {
            Self::Broker => BROKER_ADMIN_CODES.contains(&code),
            Self::Namesrv => NAMESRV_ADMIN_CODES.contains(&code),
        }
    }
}

/// Why a request was refused; the text is the response's remark.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No `AccessKey` (Java: "No accessKey is configured").
    #[error("no AccessKey in the request: this server requires signed requests (ACL is on)")]
    NoAccessKey,
    /// The `AccessKey` is not in `plain_acl.yml`.
    #[error("no acl config for accessKey={0}")]
    UnknownAccessKey(String),
    /// The signature is missing or wrong.
    #[error("check signature failed for accessKey={0}")]
    BadSignature(String),
    /// An admin code from a non-admin account.
    #[error("request code={code} needs an admin account, but accessKey={access_key} is not")]
    NeedAdmin {
        /// The request code.
        code: i32,
        /// The account.
        access_key: String,
    },
    /// The account lacks a permission on a resource.
    #[error("no {needed} permission for {resource}: accessKey={access_key} has {owned}")]
    NoPermission {
        /// `Topic:x` or `Group:g`.
        resource: String,
        /// What was needed.
        needed: Perm,
        /// What the account has there.
        owned: Perm,
        /// The account.
        access_key: String,
    },
    /// The request's resources cannot be read.
    #[error("{0}")]
    Unreadable(String),
}

impl Denied {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoAccessKey => "ACL_NO_ACCESS_KEY",
            Self::UnknownAccessKey(_) => "ACL_UNKNOWN_ACCESS_KEY",
            Self::BadSignature(_) => "ACL_BAD_SIGNATURE",
            Self::NeedAdmin { .. } => "ACL_NEED_ADMIN",
            Self::NoPermission { .. } => "ACL_NO_PERMISSION",
            Self::Unreadable(_) => "ACL_UNREADABLE_REQUEST",
        }
    }
}

/// Checks `req` from a peer at `remote` against `rules`.
pub fn check(
    rules: &AclRules,
    scope: Scope,
    remote: IpAddr,
    req: &RemotingCommand,
) -> Result<(), Denied> {
    if rules.global_white.iter().any(|w| w.matches(remote)) {
        return Ok(());
    }
    let admin_code = scope.is_admin_code(req.code);
    let Some(access_key) = req.ext(ACCESS_KEY) else {
        if scope == Scope::Namesrv && !admin_code {
            return Ok(());
        }
        return Err(Denied::NoAccessKey);
    };
    let account = rules
        .account(access_key)
        .ok_or_else(|| Denied::UnknownAccessKey(access_key.to_string()))?;
    if account.white.matches(remote) {
        return Ok(());
    }
    if !signature_ok(req, &account.secret_key) {
        return Err(Denied::BadSignature(access_key.to_string()));
    }
    if admin_code && !account.admin {
        return Err(Denied::NeedAdmin {
            code: req.code,
            access_key: access_key.to_string(),
        });
    }
    if scope == Scope::Namesrv {
        return Ok(());
    }
    let needed = needed(req).map_err(|e| Denied::Unreadable(e.to_string()))?;
    if needed
        .iter()
        .any(|(r, p)| r == TRACE_TOPIC && *p == Perm::PUB)
    {
        return Ok(());
    }
    if account.admin && account.perms.is_empty() {
        return Ok(());
    }
    for (resource, perm) in needed {
        let owned = account
            .perms
            .get(&resource)
            .copied()
            .unwrap_or(if is_group(&resource) {
                account.default_group_perm
            } else {
                account.default_topic_perm
            });
        if !owned.grants(perm) {
            return Err(Denied::NoPermission {
                resource: describe(&resource),
                needed: perm,
                owned,
                access_key: access_key.to_string(),
            });
        }
    }
    Ok(())
}

fn signature_ok(req: &RemotingCommand, secret_key: &str) -> bool {
    let Some(signature) = req.ext(SIGNATURE) else {
        return false;
    };
    let fields = |skip_unique: bool| {
        req.ext_fields
            .iter()
            .filter(move |(k, _)| !(skip_unique && k.as_str() == UNIQUE_KEY_QUERY))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    };
    let has_unique = req.ext_fields.contains_key(UNIQUE_KEY_QUERY);
    if req.version <= V4_9_3 && has_unique {
        return verify_signature(
            secret_key,
            &signed_content(fields(true), &req.body),
            signature,
        );
    }
    verify_signature(
        secret_key,
        &signed_content(fields(false), &req.body),
        signature,
    ) || (has_unique
        && verify_signature(
            secret_key,
            &signed_content(fields(true), &req.body),
            signature,
        ))
}

#[cfg(test)]
mod tests {
    use flotilla_remoting::{SessionCredentials, request_code};

    use super::*;

    const RULES: &str = "\
globalWhiteRemoteAddresses: [10.9.9.*]
accounts:
  - accessKey: producer1
    secretKey: producer-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms: [TopicA=PUB, TopicB=SUB]
  - accessKey: consumer1
    secretKey: consumer-secret
    defaultTopicPerm: SUB
    defaultGroupPerm: SUB
    groupPerms: [groupX=DENY]
  - accessKey: adminuser
    secretKey: admin-secret
    admin: true
  - accessKey: trusted1
    secretKey: trusted-secret
    whiteRemoteAddress: 10.1.1.1
";

    fn rules() -> AclRules {
        AclRules::parse(RULES).unwrap()
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5));

    fn send(topic: &str) -> RemotingCommand {
        let mut r = RemotingCommand::request(request_code::SEND_MESSAGE_V2);
        r.put_ext("a", "pg");
        r.put_ext("b", topic);
        r.body = bytes::Bytes::from_static(b"payload");
        r
    }

    fn signed(mut r: RemotingCommand, ak: &str, sk: &str) -> RemotingCommand {
        SessionCredentials::new(ak, sk).sign(&mut r);
        r
    }

    fn run(r: &RemotingCommand, scope: Scope) -> Result<(), Denied> {
        check(&rules(), scope, PEER, r)
    }

    #[test]
    fn signature_rules() {
        assert_eq!(
            run(&send("TopicA"), Scope::Broker),
            Err(Denied::NoAccessKey)
        );
        assert!(
            run(
                &signed(send("TopicA"), "producer1", "producer-secret"),
                Scope::Broker
            )
            .is_ok()
        );
        assert_eq!(
            run(
                &signed(send("TopicA"), "producer1", "wrong-secret"),
                Scope::Broker
            ),
            Err(Denied::BadSignature("producer1".into()))
        );
        assert_eq!(
            run(
                &signed(send("TopicA"), "nobody99", "whatever"),
                Scope::Broker
            ),
            Err(Denied::UnknownAccessKey("nobody99".into()))
        );
        // Tampering after signing: another body, another field.
        let mut t = signed(send("TopicA"), "producer1", "producer-secret");
        t.body = bytes::Bytes::from_static(b"payload!");
        assert!(matches!(
            run(&t, Scope::Broker),
            Err(Denied::BadSignature(_))
        ));
        let mut t = signed(send("TopicA"), "producer1", "producer-secret");
        t.put_ext("b", "TopicB");
        assert!(matches!(
            run(&t, Scope::Broker),
            Err(Denied::BadSignature(_))
        ));
        // A missing signature with a key.
        let mut t = signed(send("TopicA"), "producer1", "producer-secret");
        t.ext_fields.remove(SIGNATURE);
        assert!(matches!(
            run(&t, Scope::Broker),
            Err(Denied::BadSignature(_))
        ));
    }

    #[test]
    fn resource_permissions_and_defaults() {
        let p = |t: &str| {
            run(
                &signed(send(t), "producer1", "producer-secret"),
                Scope::Broker,
            )
        };
        assert!(p("TopicA").is_ok());
        assert!(matches!(
            p("TopicB"),
            Err(Denied::NoPermission {
                needed: Perm::PUB,
                owned: Perm::SUB,
                ..
            })
        ));
        assert!(
            matches!(
                p("Other"),
                Err(Denied::NoPermission {
                    owned: Perm::DENY,
                    ..
                })
            ),
            "default DENY"
        );
        // SUB only cannot send, can pull.
        let c = |r| run(&signed(r, "consumer1", "consumer-secret"), Scope::Broker);
        assert!(matches!(
            c(send("TopicA")),
            Err(Denied::NoPermission { .. })
        ));
        let mut pull = RemotingCommand::request(request_code::PULL_MESSAGE);
        pull.put_ext("topic", "TopicA");
        pull.put_ext("consumerGroup", "groupY");
        assert!(c(pull.clone()).is_ok());
        pull.put_ext("consumerGroup", "groupX");
        match c(pull) {
            Err(Denied::NoPermission { resource, .. }) => assert_eq!(resource, "Group:groupX"),
            other => panic!("{other:?}"),
        }
        // The trace topic may always be sent to.
        assert!(p(TRACE_TOPIC).is_ok());
    }

    #[test]
    fn admin_codes_need_admin() {
        let mut create = RemotingCommand::request(request_code::UPDATE_AND_CREATE_TOPIC);
        create.put_ext("topic", "T");
        assert_eq!(run(&create, Scope::Broker), Err(Denied::NoAccessKey));
        assert!(matches!(
            run(
                &signed(create.clone(), "producer1", "producer-secret"),
                Scope::Broker
            ),
            Err(Denied::NeedAdmin { code: 17, .. })
        ));
        assert!(run(&signed(create, "adminuser", "admin-secret"), Scope::Broker).is_ok());
        // An admin without per-resource permissions passes resource checks.
        assert!(
            run(
                &signed(send("Anything"), "adminuser", "admin-secret"),
                Scope::Broker
            )
            .is_ok()
        );
    }

    #[test]
    fn nameserver_reads_are_open_writes_need_admin() {
        let mut route = RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC);
        route.put_ext("topic", "TopicA");
        assert!(
            run(&route, Scope::Namesrv).is_ok(),
            "an unsigned route query passes"
        );
        assert!(
            run(
                &signed(route.clone(), "consumer1", "consumer-secret"),
                Scope::Namesrv
            )
            .is_ok()
        );
        assert!(matches!(
            run(&signed(route, "consumer1", "bad-secret"), Scope::Namesrv),
            Err(Denied::BadSignature(_))
        ));
        let mut reg = RemotingCommand::request(request_code::REGISTER_BROKER);
        reg.put_ext("brokerName", "b");
        assert_eq!(run(&reg, Scope::Namesrv), Err(Denied::NoAccessKey));
        assert!(matches!(
            run(
                &signed(reg.clone(), "producer1", "producer-secret"),
                Scope::Namesrv
            ),
            Err(Denied::NeedAdmin { .. })
        ));
        assert!(run(&signed(reg, "adminuser", "admin-secret"), Scope::Namesrv).is_ok());
    }

    #[test]
    fn white_lists() {
        let mut create = RemotingCommand::request(request_code::UPDATE_AND_CREATE_TOPIC);
        create.put_ext("topic", "T");
        let r = rules();
        // Global white list: anything passes, unsigned.
        assert!(check(&r, Scope::Broker, "10.9.9.7".parse().unwrap(), &create).is_ok());
        // Account white list: that account from that address passes without a signature.
        let mut t = create.clone();
        t.put_ext(ACCESS_KEY, "trusted1");
        assert!(check(&r, Scope::Broker, "10.1.1.1".parse().unwrap(), &t).is_ok());
        assert!(matches!(
            check(&r, Scope::Broker, "10.1.1.2".parse().unwrap(), &t),
            Err(Denied::BadSignature(_))
        ));
    }

    #[test]
    fn unique_key_query_is_accepted_either_way() {
        let mut q = RemotingCommand::request(request_code::QUERY_MESSAGE);
        q.put_ext("topic", "TopicB");
        q.put_ext(UNIQUE_KEY_QUERY, "true");
        // Signed with the flag (newer clients).
        assert!(
            run(
                &signed(q.clone(), "consumer1", "consumer-secret"),
                Scope::Broker
            )
            .is_ok()
        );
        // Signed before the flag was added (how a 4.9 broker computed it).
        let mut s = q.clone();
        s.ext_fields.remove(UNIQUE_KEY_QUERY);
        let mut s = signed(s, "consumer1", "consumer-secret");
        s.put_ext(UNIQUE_KEY_QUERY, "true");
        assert!(run(&s, Scope::Broker).is_ok());
    }
}

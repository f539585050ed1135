//! The one readiness rule. Pure functions; the status fold, the rolling-restart guard and every
//! workflow wait call these and nothing else.
//!
//! "Process started" and "answers a request" are not what a client needs: a producer needs a
//! route, and a route needs a broker registered as brokerId 0 with the nameserver the client
//! asks. So readiness is measured the way a client would see it (the agent reads each
//! nameserver's route data, see `agent::probe`), and stated per level:
//!
//! - a **nameserver** is Ready when it answers GET_BROKER_CLUSTER_INFO;
//! - a **broker member** is Ready when it answers GET_BROKER_RUNTIME_INFO and is listed, under
//!   its brokerName and the brokerId it reports, by *every current nameserver* of its cluster;
//! - a **group** is Ready when exactly one member is a writable master (brokerId 0: the
//!   master of a master/slave group, the elected DLedger leader), Ready as above, and every
//!   other member (slave or follower) is Ready and no more than [`DEFAULT_MAX_LAG_BYTES`]
//!   behind the master's CommitLog;
//! - a **cluster** is Ready when every nameserver and every group is.
//!
//! The lag threshold is Java's `haMaxGapNotInSync` default (256 MiB), the gap beyond which a
//! RocketMQ master stops counting a slave as in sync.

use flotilla_proto::agent::v1::InstanceObservation;
use flotilla_proto::v1::{GroupStatus, InstanceKind, Member};

/// A slave or follower further behind the master than this is not caught up.
pub const DEFAULT_MAX_LAG_BYTES: i64 = 256 * 1024 * 1024;

/// Why a group is not Ready (the `GroupStatus.reason` values).
pub mod reason {
    /// No member is a writable brokerId 0.
    pub const NO_WRITABLE_MASTER: &str = "NoWritableMaster";
    /// More than one member claims to be a writable brokerId 0.
    pub const SEVERAL_MASTERS: &str = "SeveralMasters";
    /// The writable master is not listed by every nameserver yet.
    pub const MASTER_NOT_REGISTERED: &str = "MasterNotRegistered";
    /// A slave or follower is not running or not listed by every nameserver.
    pub const MEMBER_NOT_REGISTERED: &str = "MemberNotRegistered";
    /// A slave or follower is behind the master by more than the threshold.
    pub const REPLICA_BEHIND: &str = "ReplicaBehind";
}

/// Whether `registered` covers every nameserver in `nameservers`.
pub fn registered_everywhere(registered: &[String], nameservers: &[String]) -> bool {
    nameservers
        .iter()
        .all(|ns| registered.iter().any(|r| r == ns))
}

/// Member readiness from an agent's observation: the instance answers, its node is Ready,
/// and a broker is listed by every current nameserver.
pub fn member_ready(
    kind: InstanceKind,
    obs: &InstanceObservation,
    node_ready: bool,
    nameservers: &[String],
) -> bool {
    obs.ready
        && node_ready
        && (kind != InstanceKind::Broker
            || registered_everywhere(&obs.registered_nameservers, nameservers))
}

/// What the group rule needs of one member.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupMember {
    /// Instance name.
    pub name: String,
    /// Member readiness ([`member_ready`]).
    pub ready: bool,
    /// Writable brokerId 0, as the agent measured it.
    pub writable: bool,
    /// The CommitLog max offset, when reported.
    pub max_offset: Option<i64>,
}

impl GroupMember {
    /// From a folded status member.
    pub fn of(m: &Member) -> Self {
        Self {
            name: m.name.clone(),
            ready: m.ready,
            writable: m.writable,
            max_offset: m.commit_log.map(|c| c.max_offset),
        }
    }

    /// From an observation (the rolling-restart guard, before the status is folded).
    pub fn observed(
        name: &str,
        obs: Option<&InstanceObservation>,
        node_ready: bool,
        nameservers: &[String],
    ) -> Self {
        match obs {
            None => Self {
                name: name.to_string(),
                ..Self::default()
            },
            Some(o) => Self {
                name: name.to_string(),
                ready: member_ready(InstanceKind::Broker, o, node_ready, nameservers),
                writable: o.writable,
                max_offset: o.commit_log.map(|c| c.max_offset),
            },
        }
    }
}

fn not_ready(name: &str, reason: &str, message: String) -> GroupStatus {
    GroupStatus {
        name: name.to_string(),
        ready: false,
        master: String::new(),
        reason: reason.to_string(),
        message,
    }
}

/// The rule for one group.
pub fn group_status(name: &str, members: &[GroupMember], max_lag: i64) -> GroupStatus {
    let masters: Vec<&GroupMember> = members.iter().filter(|m| m.writable).collect();
    let master = match masters.as_slice() {
        [] => {
            return not_ready(
                name,
                reason::NO_WRITABLE_MASTER,
                format!("no member of {name} is a writable brokerId 0 yet"),
            );
        }
        [one] => *one,
        many => {
            let names: Vec<&str> = many.iter().map(|m| m.name.as_str()).collect();
            return not_ready(
                name,
                reason::SEVERAL_MASTERS,
                format!("{} all claim brokerId 0", names.join(", ")),
            );
        }
    };
    if !master.ready {
        return not_ready(
            name,
            reason::MASTER_NOT_REGISTERED,
            format!(
                "master {} is not listed as brokerId 0 by every nameserver yet",
                master.name
            ),
        );
    }
    for m in members.iter().filter(|m| m.name != master.name) {
        if !m.ready {
            return not_ready(
                name,
                reason::MEMBER_NOT_REGISTERED,
                format!(
                    "{} is not running or not listed by every nameserver",
                    m.name
                ),
            );
        }
        let lag = match (master.max_offset, m.max_offset) {
            (Some(a), Some(b)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        match lag {
            Some(l) if l <= max_lag => {}
            Some(l) => {
                return not_ready(
                    name,
                    reason::REPLICA_BEHIND,
                    format!("{} is {l} bytes behind {}", m.name, master.name),
                );
            }
            None => {
                return not_ready(
                    name,
                    reason::REPLICA_BEHIND,
                    format!("{} or {} reports no CommitLog offsets", m.name, master.name),
                );
            }
        }
    }
    GroupStatus {
        name: name.to_string(),
        ready: true,
        master: master.name.clone(),
        reason: String::new(),
        message: String::new(),
    }
}

/// The rolling-restart guard: may `candidate` of this group be stopped now without the group
/// losing its writable master or its last caught-up copy?
///
/// - a lone member may always be restarted (nothing else can serve);
/// - a member that is not the writable master may go when the *rest* of the group is Ready
///   by the rule (one writable, registered master; the others registered and caught up);
/// - the writable master may go when every other member is Ready and caught up with it, so
///   a new master (DLedger election, or the operator's promote) loses nothing.
pub fn may_restart(candidate: &str, members: &[GroupMember], max_lag: i64) -> bool {
    let others: Vec<GroupMember> = members
        .iter()
        .filter(|m| m.name != candidate)
        .cloned()
        .collect();
    if others.is_empty() {
        return true;
    }
    match members.iter().find(|m| m.name == candidate) {
        Some(c) if c.writable => others.iter().all(|o| {
            o.ready
                && matches!((c.max_offset, o.max_offset), (Some(a), Some(b)) if a.saturating_sub(b) <= max_lag)
        }),
        _ => group_status("", &others, max_lag).ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, ready: bool, writable: bool, off: i64) -> GroupMember {
        GroupMember {
            name: name.into(),
            ready,
            writable,
            max_offset: Some(off),
        }
    }

    #[test]
    fn a_group_needs_exactly_one_registered_writable_master() {
        let lag = 100;
        // The DLedger window the rule exists for: every member registered, none as id 0.
        let s = group_status(
            "g",
            &[
                m("a", true, false, 0),
                m("b", true, false, 0),
                m("c", true, false, 0),
            ],
            lag,
        );
        assert_eq!(
            (s.ready, s.reason.as_str()),
            (false, reason::NO_WRITABLE_MASTER)
        );
        let s = group_status("g", &[m("a", false, true, 0), m("b", true, false, 0)], lag);
        assert_eq!(s.reason, reason::MASTER_NOT_REGISTERED);
        let s = group_status("g", &[m("a", true, true, 0), m("b", true, true, 0)], lag);
        assert_eq!(s.reason, reason::SEVERAL_MASTERS);
        let s = group_status(
            "g",
            &[m("a", true, true, 10), m("b", false, false, 10)],
            lag,
        );
        assert_eq!(s.reason, reason::MEMBER_NOT_REGISTERED);
        let s = group_status(
            "g",
            &[m("a", true, true, 500), m("b", true, false, 10)],
            lag,
        );
        assert_eq!(s.reason, reason::REPLICA_BEHIND);
        let s = group_status(
            "g",
            &[m("a", true, true, 110), m("b", true, false, 10)],
            lag,
        );
        assert!(s.ready, "{s:?}");
        assert_eq!(s.master, "a");
        let mut unknown = m("b", true, false, 0);
        unknown.max_offset = None;
        assert!(!group_status("g", &[m("a", true, true, 0), unknown], lag).ready);
        assert!(
            group_status("g", &[m("a", true, true, 0)], lag).ready,
            "single"
        );
        assert!(!group_status("g", &[], lag).ready);
    }

    #[test]
    fn registration_must_cover_every_current_nameserver() {
        let ns = vec!["n1:1".to_string(), "n2:1".to_string()];
        let obs = |reg: &[&str]| InstanceObservation {
            ready: true,
            registered_nameservers: reg.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert!(!member_ready(
            InstanceKind::Broker,
            &obs(&["n1:1"]),
            true,
            &ns
        ));
        assert!(member_ready(
            InstanceKind::Broker,
            &obs(&["n2:1", "n1:1", "old:1"]),
            true,
            &ns
        ));
        assert!(!member_ready(
            InstanceKind::Broker,
            &obs(&["n1:1", "n2:1"]),
            false,
            &ns
        ));
        assert!(member_ready(InstanceKind::Namesrv, &obs(&[]), true, &ns));
    }

    #[test]
    fn restarts_keep_a_writable_master_and_a_caught_up_copy() {
        let lag = 100;
        let healthy = [
            m("a", true, true, 50),
            m("b", true, false, 50),
            m("c", true, false, 50),
        ];
        assert!(
            may_restart("b", &healthy, lag),
            "a follower of a healthy group"
        );
        assert!(
            may_restart("a", &healthy, lag),
            "the master once the others caught up"
        );
        let behind = [
            m("a", true, true, 500),
            m("b", true, false, 50),
            m("c", true, false, 500),
        ];
        assert!(
            !may_restart("a", &behind, lag),
            "b would lose data as the new master"
        );
        assert!(
            !may_restart("c", &behind, lag),
            "the rest would have a lagging member"
        );
        let leaderless = [m("a", true, false, 0), m("b", true, false, 0)];
        assert!(!may_restart("a", &leaderless, lag));
        let crashing_slave = [m("a", true, true, 0), m("b", false, false, 0)];
        assert!(
            may_restart("b", &crashing_slave, lag),
            "a broken slave may be fixed"
        );
        assert!(
            !may_restart("a", &crashing_slave, lag),
            "not the master then"
        );
        assert!(
            may_restart("a", &[m("a", false, false, 0)], lag),
            "lone member"
        );
    }
}

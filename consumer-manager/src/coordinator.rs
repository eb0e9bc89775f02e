//! Group membership decisions as pure functions: a heartbeat (join, stay, leave) or the
//! removal of silent members turns one [`Membership`] into the next. The manager runs them on
//! the leader and commits the result only when it differs.
//!
//! The protocol is incremental (cooperative): a partition that moves leaves its old owner's
//! assignment first and joins the new owner's only after the old owner reported it released
//! (or was removed), so at most one member owns a partition at any time; partitions that stay
//! put are never interrupted.

use std::collections::{BTreeMap, BTreeSet};

use crate::assignor::{Assignor, Tp};
use crate::state::{Member, Membership};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// `None` to join.
    pub member_id: Option<String>,
    pub instance_id: Option<String>,
    pub topics: BTreeSet<String>,
    /// What the member still holds.
    pub owned: BTreeSet<Tp>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub leave: bool,
    pub assignor: Assignor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub member_id: String,
    pub member_epoch: u32,
    pub assignment: BTreeSet<Tp>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(
        "member {0} is not a member of the group (removed after its session timeout, left, or replaced); join again"
    )]
    UnknownMember(String),
    #[error("topics: a member joining must subscribe to at least one topic")]
    NoTopics,
}

/// Applies one heartbeat. `new_member_id` is the id a joining member gets; `partitions` the
/// current partition counts of the subscribed topics.
pub fn heartbeat(
    current: &Membership,
    request: Heartbeat,
    new_member_id: &str,
    partitions: &BTreeMap<String, u32>,
) -> Result<(Membership, Reply), Rejection> {
    let mut next = current.clone();
    let mut rebalance = false;
    let id = match &request.member_id {
        None => {
            rebalance = join(&mut next, &request, new_member_id)?;
            new_member_id.to_owned()
        }
        Some(id) if next.members.contains_key(id) => id.clone(),
        Some(id) => return Err(Rejection::UnknownMember(id.clone())),
    };
    {
        let member = next.members.get_mut(&id).expect("member present");
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        if !request.topics.is_empty() && request.topics != member.topics {
            member.topics = request.topics.clone();
            rebalance = true;
        }
        if request.member_id.is_some() {
            // Partitions it was asked to release and no longer reports are free again.
            let released: Vec<Tp> = member
                .revoking()
                .into_iter()
                .filter(|tp| !request.owned.contains(tp))
                .collect();
            for tp in released {
                member.owned.remove(&tp);
            }
        }
    }
    if request.leave {
        let member = next.members.get_mut(&id).expect("member present");
        if member.instance_id.is_some() {
            // A static member keeps its partitions until its session times out.
            member.away = true;
        } else {
            next.members.remove(&id);
            rebalance = true;
        }
    }
    if rebalance || next.partitions != *partitions {
        retarget(&mut next, partitions, rebalance);
    }
    if let Some(member) = next.members.get(&id)
        && !request.leave
    {
        let wanted = member.target.difference(&member.owned).cloned().collect();
        grant(&mut next, &id, wanted);
    }
    if let Some(member) = next.members.get_mut(&id)
        && !request.leave
    {
        let assignment = member.assignment();
        if member.epoch == 0 || assignment != member.told {
            member.epoch += 1;
            member.told = assignment;
        }
    }
    let reply = match next.members.get(&id) {
        Some(member) if !request.leave => Reply {
            member_id: id,
            member_epoch: member.epoch,
            assignment: member.assignment(),
        },
        _ => Reply {
            member_id: id,
            member_epoch: 0,
            assignment: BTreeSet::new(),
        },
    };
    Ok((next, reply))
}

/// A member joins `next` as `new_member_id`: a static member returning under its instance
/// id takes its old place (and partitions), anyone else comes in new. Returns whether the
/// group must rebalance.
fn join(
    next: &mut Membership,
    request: &Heartbeat,
    new_member_id: &str,
) -> Result<bool, Rejection> {
    if request.topics.is_empty() {
        return Err(Rejection::NoTopics);
    }
    if next.members.is_empty() {
        next.assignor = request.assignor;
    }
    let returning = request.instance_id.as_ref().and_then(|instance| {
        next.members
            .iter()
            .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
            .map(|(id, _)| id.clone())
    });
    let (member, rebalance) = match returning {
        Some(old_id) => {
            let mut member = next.members.remove(&old_id).expect("found above");
            member.away = false;
            (member, false)
        }
        None => (
            Member {
                instance_id: request.instance_id.clone(),
                topics: request.topics.clone(),
                epoch: 0,
                ..Member::default()
            },
            true,
        ),
    };
    next.members.insert(new_member_id.to_owned(), member);
    Ok(rebalance)
}

/// Removes `expired` members (silent past their session timeout, or holding partitions past
/// their rebalance timeout); their partitions become free for the others.
pub fn remove_members(
    current: &Membership,
    expired: &BTreeSet<String>,
    partitions: &BTreeMap<String, u32>,
) -> Membership {
    let mut next = current.clone();
    next.members.retain(|id, _| !expired.contains(id));
    retarget(&mut next, partitions, true);
    next
}

/// Recomputes every member's target; a membership or subscription change raises the group
/// epoch.
fn retarget(next: &mut Membership, partitions: &BTreeMap<String, u32>, members_changed: bool) {
    if members_changed || next.partitions != *partitions {
        next.epoch += 1;
    }
    next.partitions = partitions.clone();
    let subscriptions: BTreeMap<String, BTreeSet<String>> = next
        .members
        .iter()
        .map(|(id, m)| (id.clone(), m.topics.clone()))
        .collect();
    let current: BTreeMap<String, BTreeSet<Tp>> = next
        .members
        .iter()
        .map(|(id, m)| (id.clone(), m.assignment()))
        .collect();
    let mut targets = next
        .assignor
        .assign(&subscriptions, &current, &next.partitions);
    for (id, member) in &mut next.members {
        member.target = targets.remove(id).unwrap_or_default();
    }
}

/// Gives `member` each wanted partition that no other member holds.
fn grant(next: &mut Membership, member: &str, wanted: BTreeSet<Tp>) {
    let held_elsewhere: BTreeSet<Tp> = next
        .members
        .iter()
        .filter(|(id, _)| id.as_str() != member)
        .flat_map(|(_, m)| m.owned.iter().cloned())
        .collect();
    let member = next.members.get_mut(member).expect("member present");
    for tp in wanted {
        if !held_elsewhere.contains(&tp) {
            member.owned.insert(tp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(n: u32) -> BTreeMap<String, u32> {
        BTreeMap::from([("orders".to_owned(), n)])
    }

    fn join(instance: Option<&str>) -> Heartbeat {
        Heartbeat {
            member_id: None,
            instance_id: instance.map(str::to_owned),
            topics: BTreeSet::from(["orders".to_owned()]),
            owned: BTreeSet::new(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 60_000,
            leave: false,
            assignor: Assignor::Uniform,
        }
    }

    fn beat(id: &str, owned: &BTreeSet<Tp>) -> Heartbeat {
        Heartbeat {
            member_id: Some(id.to_owned()),
            owned: owned.clone(),
            ..join(None)
        }
    }

    /// No partition is in two members' `owned`.
    fn assert_single_owner(m: &Membership) {
        let mut seen = BTreeSet::new();
        for (id, member) in &m.members {
            for tp in &member.owned {
                assert!(
                    seen.insert(tp.clone()),
                    "{tp:?} owned twice (again by {id}): {m:?}"
                );
            }
        }
    }

    #[test]
    fn a_joining_member_gets_partitions_only_after_they_are_released() {
        let p = parts(4);
        let (m, a) = heartbeat(&Membership::default(), join(None), "a", &p).unwrap();
        assert_eq!(a.assignment.len(), 4);
        assert_eq!(a.member_epoch, 1);
        assert_eq!(m.epoch, 1);

        // b joins: the target splits 2/2, but a still holds everything, so b gets nothing yet.
        let (m, b) = heartbeat(&m, join(None), "b", &p).unwrap();
        assert!(b.assignment.is_empty());
        assert_eq!(m.epoch, 2);
        assert_single_owner(&m);

        // a's next heartbeat (still holding all 4) is told to keep only 2: its epoch rises.
        let (m, a2) = heartbeat(&m, beat("a", &a.assignment), "unused", &p).unwrap();
        assert_eq!(a2.assignment.len(), 2);
        assert_eq!(a2.member_epoch, 2);
        assert_eq!(m.members["a"].revoking().len(), 2);
        assert_single_owner(&m);

        // b asks again before a released: still nothing.
        let (m, b2) = heartbeat(&m, beat("b", &BTreeSet::new()), "unused", &p).unwrap();
        assert!(b2.assignment.is_empty());

        // a reports the 2 released; then b gets them.
        let (m, a3) = heartbeat(&m, beat("a", &a2.assignment), "unused", &p).unwrap();
        assert_eq!(a3.member_epoch, 2, "a's assignment did not change again");
        assert!(m.members["a"].revoking().is_empty());
        let (m, b3) = heartbeat(&m, beat("b", &BTreeSet::new()), "unused", &p).unwrap();
        assert_eq!(b3.assignment.len(), 2);
        assert!(b3.assignment.is_disjoint(&a3.assignment));
        assert_eq!(m.state(), "stable");
        assert_single_owner(&m);

        // A heartbeat that changes nothing leaves the membership as it was.
        let (same, _) = heartbeat(&m, beat("b", &b3.assignment), "unused", &p).unwrap();
        assert_eq!(same, m);
    }

    #[test]
    fn leaving_and_expiry_free_partitions() {
        let p = parts(4);
        let (m, a) = heartbeat(&Membership::default(), join(None), "a", &p).unwrap();
        let (m, _) = heartbeat(&m, join(None), "b", &p).unwrap();
        let (m, a) = heartbeat(&m, beat("a", &a.assignment), "x", &p).unwrap();
        let (m, _) = heartbeat(&m, beat("a", &a.assignment), "x", &p).unwrap();
        let (m, b) = heartbeat(&m, beat("b", &BTreeSet::new()), "x", &p).unwrap();
        assert_eq!(b.assignment.len(), 2);

        // b leaves: a gets everything back at its next heartbeat.
        let leave = Heartbeat {
            leave: true,
            ..beat("b", &b.assignment)
        };
        let (m, _) = heartbeat(&m, leave, "x", &p).unwrap();
        assert!(!m.members.contains_key("b"));
        let (m, a) = heartbeat(&m, beat("a", &a.assignment), "x", &p).unwrap();
        assert_eq!(a.assignment.len(), 4);

        // c joins, then a is removed as expired: c gets all 4 once a is gone.
        let (m, _) = heartbeat(&m, join(None), "c", &p).unwrap();
        let m = remove_members(&m, &BTreeSet::from(["a".to_owned()]), &p);
        let (m, c) = heartbeat(&m, beat("c", &BTreeSet::new()), "x", &p).unwrap();
        assert_eq!(c.assignment.len(), 4);
        assert_single_owner(&m);
        assert_eq!(
            heartbeat(&m, beat("a", &a.assignment), "x", &p).unwrap_err(),
            Rejection::UnknownMember("a".into())
        );
    }

    #[test]
    fn a_static_member_returns_to_its_partitions_without_a_rebalance() {
        let p = parts(4);
        let (m, s) = heartbeat(&Membership::default(), join(Some("pod-1")), "s1", &p).unwrap();
        let (m, _) = heartbeat(&m, join(None), "d", &p).unwrap();
        let (m, s) = heartbeat(&m, beat("s1", &s.assignment), "x", &p).unwrap();
        let (m, _) = heartbeat(&m, beat("s1", &s.assignment), "x", &p).unwrap();
        let (m, _) = heartbeat(&m, beat("d", &BTreeSet::new()), "x", &p).unwrap();
        let epoch = m.epoch;

        // It leaves (restart): it keeps its partitions, nothing moves.
        let leave = Heartbeat {
            leave: true,
            instance_id: Some("pod-1".into()),
            ..beat("s1", &s.assignment)
        };
        let (m, _) = heartbeat(&m, leave, "x", &p).unwrap();
        assert!(m.members["s1"].away);
        assert_eq!(m.epoch, epoch);

        // It comes back under a new id with the same instance id: same partitions, same
        // group epoch, the old id is fenced.
        let (m, back) = heartbeat(&m, join(Some("pod-1")), "s2", &p).unwrap();
        assert_eq!(back.assignment, s.assignment);
        assert_eq!(m.epoch, epoch);
        assert!(!m.members.contains_key("s1"));
        assert!(!m.members["s2"].away);
        assert_eq!(
            back.member_epoch, s.member_epoch,
            "same assignment, same epoch"
        );
    }

    #[test]
    fn new_partitions_are_assigned_and_joins_need_topics() {
        let (m, a) = heartbeat(&Membership::default(), join(None), "a", &parts(2)).unwrap();
        assert_eq!(a.assignment.len(), 2);
        let (_, a) = heartbeat(&m, beat("a", &a.assignment), "x", &parts(3)).unwrap();
        assert_eq!(a.assignment.len(), 3);
        let no_topics = Heartbeat {
            topics: BTreeSet::new(),
            ..join(None)
        };
        assert_eq!(
            heartbeat(&Membership::default(), no_topics, "a", &parts(2)).unwrap_err(),
            Rejection::NoTopics
        );
    }
}

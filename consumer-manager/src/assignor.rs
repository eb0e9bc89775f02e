//! Assignment strategies: pure functions from members and their subscriptions to the
//! partitions each member should own. Table-tested below.
//!
//! - [`Assignor::Uniform`] (default): every member gets within one partition of the same
//!   count of the partitions it can take, and keeps as many of its current partitions as that
//!   allows (sticky), so a join or a leave moves only what it must.
//! - [`Assignor::Range`]: per topic, its partitions split into contiguous ranges over the
//!   subscribed members in id order (Kafka's range assignor): co-partitioned topics land on
//!   the same member.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A partition of a topic.
pub type Tp = (String, u32);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Assignor {
    #[default]
    Uniform,
    Range,
}

impl Assignor {
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "" | "uniform" => Ok(Self::Uniform),
            "range" => Ok(Self::Range),
            other => Err(format!(
                "unknown assignor '{other}'; expected 'uniform' or 'range'"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Range => "range",
        }
    }

    /// The target assignment: for each member (by id), the partitions it should own.
    /// `subscriptions`: each member's topics; `current`: what each member owns now;
    /// `partitions`: the partition count of each existing topic (missing topics are ignored).
    pub fn assign(
        self,
        subscriptions: &BTreeMap<String, BTreeSet<String>>,
        current: &BTreeMap<String, BTreeSet<Tp>>,
        partitions: &BTreeMap<String, u32>,
    ) -> BTreeMap<String, BTreeSet<Tp>> {
        match self {
            Self::Uniform => uniform(subscriptions, current, partitions),
            Self::Range => range(subscriptions, partitions),
        }
    }
}

fn range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut target: BTreeMap<String, BTreeSet<Tp>> = subscriptions
        .keys()
        .map(|member| (member.clone(), BTreeSet::new()))
        .collect();
    for (topic, &count) in partitions {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() {
            continue;
        }
        let per = count as usize / members.len();
        let extra = count as usize % members.len();
        let mut next = 0u32;
        for (i, member) in members.into_iter().enumerate() {
            let take = per + usize::from(i < extra);
            let owned = target.get_mut(member).expect("member listed");
            for _ in 0..take {
                owned.insert((topic.clone(), next));
                next += 1;
            }
        }
    }
    target
}

fn uniform(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    current: &BTreeMap<String, BTreeSet<Tp>>,
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    // Every partition of a subscribed topic, with the members that may own it.
    let mut eligible: BTreeMap<Tp, Vec<&String>> = BTreeMap::new();
    for (topic, &count) in partitions {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() {
            continue;
        }
        for partition in 0..count {
            eligible.insert((topic.clone(), partition), members.clone());
        }
    }
    let mut target: BTreeMap<String, BTreeSet<Tp>> = subscriptions
        .keys()
        .map(|member| (member.clone(), BTreeSet::new()))
        .collect();
    let mut taken: BTreeSet<Tp> = BTreeSet::new();
    // 1. Sticky: each member keeps its current partitions that it may still own, up to the
    //    floor of its fair share (so an overloaded member gives some up).
    for (member, owned) in current {
        if !subscriptions.contains_key(member) {
            continue;
        }
        let keep_at_most = floor_share(member, &eligible);
        let mine = target.get_mut(member).expect("member listed");
        for tp in owned {
            if mine.len() >= keep_at_most {
                break;
            }
            if eligible.get(tp).is_some_and(|m| m.contains(&member)) && taken.insert(tp.clone()) {
                mine.insert(tp.clone());
            }
        }
    }
    // 2. Hand out the rest, each to the eligible member with the fewest partitions
    //    (ties: the one that owned it, then the lowest id).
    for (tp, members) in &eligible {
        if taken.contains(tp) {
            continue;
        }
        let owner_now = |m: &&String| current.get(*m).is_some_and(|o| o.contains(tp));
        let chosen = members
            .iter()
            .min_by_key(|m| (target[**m].len(), !owner_now(m), **m))
            .expect("eligible partitions have members");
        target
            .get_mut(*chosen)
            .expect("member listed")
            .insert(tp.clone());
        taken.insert(tp.clone());
    }
    target
}

/// The floor of a member's fair share of the partitions it may own.
fn floor_share(member: &String, eligible: &BTreeMap<Tp, Vec<&String>>) -> usize {
    let mine = eligible
        .values()
        .filter(|members| members.contains(&member))
        .count();
    let sharing: BTreeSet<&String> = eligible
        .values()
        .filter(|members| members.contains(&member))
        .flatten()
        .copied()
        .collect();
    if sharing.is_empty() {
        0
    } else {
        mine / sharing.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        members
            .iter()
            .map(|(m, topics)| {
                (
                    (*m).to_owned(),
                    topics.iter().map(|t| (*t).to_owned()).collect(),
                )
            })
            .collect()
    }

    fn topics(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
        list.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    fn counts(target: &BTreeMap<String, BTreeSet<Tp>>) -> Vec<usize> {
        target.values().map(BTreeSet::len).collect()
    }

    fn assert_partition_once(target: &BTreeMap<String, BTreeSet<Tp>>, total: usize) {
        let all: Vec<&Tp> = target.values().flatten().collect();
        let unique: BTreeSet<&Tp> = all.iter().copied().collect();
        assert_eq!(
            all.len(),
            unique.len(),
            "a partition given twice: {target:?}"
        );
        assert_eq!(unique.len(), total, "not every partition given: {target:?}");
    }

    #[test]
    fn uniform_balances_and_moves_only_what_it_must() {
        let parts = topics(&[("orders", 12)]);
        let none = BTreeMap::new();
        // Table: members → expected per-member counts, from scratch.
        for (members, expected) in [
            (vec!["a"], vec![12]),
            (vec!["a", "b"], vec![6, 6]),
            (vec!["a", "b", "c"], vec![4, 4, 4]),
            (vec!["a", "b", "c", "d", "e"], vec![3, 3, 2, 2, 2]),
        ] {
            let s = subs(
                &members
                    .iter()
                    .map(|m| (*m, &["orders"][..]))
                    .collect::<Vec<_>>(),
            );
            let target = Assignor::Uniform.assign(&s, &none, &parts);
            assert_partition_once(&target, 12);
            assert_eq!(counts(&target), expected, "{members:?}");
        }

        // A fourth member joins a balanced group of 3: each old member gives up exactly one.
        let three = subs(&[("a", &["orders"]), ("b", &["orders"]), ("c", &["orders"])]);
        let before = Assignor::Uniform.assign(&three, &none, &parts);
        let four = subs(&[
            ("a", &["orders"]),
            ("b", &["orders"]),
            ("c", &["orders"]),
            ("d", &["orders"]),
        ]);
        let after = Assignor::Uniform.assign(&four, &before, &parts);
        assert_partition_once(&after, 12);
        assert_eq!(counts(&after), vec![3, 3, 3, 3]);
        for member in ["a", "b", "c"] {
            assert!(
                after[member].is_subset(&before[member]),
                "{member} lost a partition it kept"
            );
        }

        // A member leaves: only its partitions move.
        let two = subs(&[("a", &["orders"]), ("c", &["orders"])]);
        let after_leave = Assignor::Uniform.assign(&two, &before, &parts);
        assert_partition_once(&after_leave, 12);
        assert!(before["a"].is_subset(&after_leave["a"]));
        assert!(before["c"].is_subset(&after_leave["c"]));
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let parts = topics(&[("orders", 4), ("prices", 2), ("unsubscribed", 3)]);
        let s = subs(&[
            ("a", &["orders", "prices"]),
            ("b", &["prices"]),
            ("c", &["missing"]),
        ]);
        let target = Assignor::Uniform.assign(&s, &BTreeMap::new(), &parts);
        assert_partition_once(&target, 6);
        assert!(target["b"].iter().all(|(t, _)| t == "prices"));
        assert!(target["c"].is_empty());
        assert_eq!(target["a"].len(), 4, "{target:?}");
        assert!(target["a"].iter().all(|(t, _)| t == "orders"));
        assert_eq!(target["b"].len(), 2);
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let parts = topics(&[("orders", 5), ("prices", 5)]);
        let s = subs(&[("a", &["orders", "prices"]), ("b", &["orders", "prices"])]);
        let target = Assignor::Range.assign(&s, &BTreeMap::new(), &parts);
        let a: Vec<Tp> = target["a"].iter().cloned().collect();
        assert_eq!(
            a,
            [
                ("orders", 0),
                ("orders", 1),
                ("orders", 2),
                ("prices", 0),
                ("prices", 1),
                ("prices", 2)
            ]
            .map(|(t, p)| (t.to_owned(), p))
        );
        assert_eq!(target["b"].len(), 4);
        assert_partition_once(&target, 10);
    }

    #[test]
    fn assignor_names() {
        assert_eq!(Assignor::from_name(""), Ok(Assignor::Uniform));
        assert_eq!(Assignor::from_name("range"), Ok(Assignor::Range));
        assert!(
            Assignor::from_name("sticky")
                .unwrap_err()
                .contains("'sticky'")
        );
    }
}

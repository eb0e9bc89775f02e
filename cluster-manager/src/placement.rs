//! Where replicas go: pure functions of the live brokers and their current load, so they are
//! table-tested and deterministic. [`place`] places a new topic, [`replacement`] picks the
//! broker that takes over one replica (healing, draining), [`rebalance`] evens out replica
//! counts after brokers were added.
//!
//! Rules: the replicas of a partition are on distinct brokers, and on distinct racks as long
//! as there are enough racks; each replica goes to the eligible broker with the fewest
//! replicas, and the preferred leader (first replica) to the one with the fewest leaders; ties
//! go to the lowest broker id.

use std::collections::{BTreeMap, BTreeSet};

use mq_common::ids::{BrokerId, GroupId};

/// A live broker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: BrokerId,
    pub rack: Option<String>,
    /// Replicas it already hosts.
    pub replicas: usize,
    /// Partitions it already prefers to lead.
    pub leaders: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replication factor {requested} needs as many live brokers; {live} are live")]
pub struct NotEnoughBrokers {
    pub requested: u32,
    pub live: usize,
}

/// Brokers for each of `partitions` partitions, `replication_factor` each, preferred leader
/// first.
pub fn place(
    candidates: &[Candidate],
    partitions: u32,
    replication_factor: u32,
) -> Result<Vec<Vec<BrokerId>>, NotEnoughBrokers> {
    if replication_factor as usize > candidates.len() || replication_factor == 0 {
        return Err(NotEnoughBrokers {
            requested: replication_factor,
            live: candidates.len(),
        });
    }
    let mut load: BTreeMap<BrokerId, (usize, usize)> = candidates
        .iter()
        .map(|c| (c.id, (c.replicas, c.leaders)))
        .collect();
    let rack_of: BTreeMap<BrokerId, Option<&str>> = candidates
        .iter()
        .map(|c| (c.id, c.rack.as_deref()))
        .collect();
    let racks: BTreeSet<Option<&str>> = rack_of.values().copied().collect();
    let mut placement = Vec::with_capacity(partitions as usize);
    for _ in 0..partitions {
        let mut chosen: Vec<BrokerId> = Vec::with_capacity(replication_factor as usize);
        for slot in 0..replication_factor as usize {
            let used_racks: BTreeSet<Option<&str>> = chosen.iter().map(|b| rack_of[b]).collect();
            let racks_left = racks.len() > used_racks.len();
            let best = load
                .iter()
                .filter(|(id, _)| !chosen.contains(id))
                .filter(|(id, _)| !racks_left || !used_racks.contains(&rack_of[*id]))
                .min_by_key(|(id, (replicas, leaders))| {
                    if slot == 0 {
                        (*leaders, *replicas, **id)
                    } else {
                        (*replicas, *leaders, **id)
                    }
                })
                .map(|(id, _)| *id)
                .expect("enough brokers were checked above");
            let entry = load.get_mut(&best).expect("chosen from load");
            entry.0 += 1;
            if slot == 0 {
                entry.1 += 1;
            }
            chosen.push(best);
        }
        placement.push(chosen);
    }
    Ok(placement)
}

/// The broker that should take over a replica of a partition whose other replicas are on
/// `others`: not one of them, on a rack they do not use when there is one, then the least
/// loaded (ties: lowest id). `None` when no candidate qualifies.
pub fn replacement(candidates: &[Candidate], others: &[BrokerId]) -> Option<BrokerId> {
    let used_racks: BTreeSet<Option<&str>> = candidates
        .iter()
        .filter(|c| others.contains(&c.id))
        .map(|c| c.rack.as_deref())
        .collect();
    candidates
        .iter()
        .filter(|c| !others.contains(&c.id))
        .min_by_key(|c| {
            let rack_used = used_racks.contains(&c.rack.as_deref()) && c.rack.is_some();
            (rack_used, c.replicas, c.leaders, c.id)
        })
        .map(|c| c.id)
}

/// The most loaded broker and its count (ties: lowest id), unless every broker is within
/// `floor(avg)..=ceil(avg)` already.
fn most_loaded_if_uneven(counts: &BTreeMap<BrokerId, usize>) -> Option<(BrokerId, usize)> {
    let total: usize = counts.values().sum();
    let ceil = total.div_ceil(counts.len().max(1));
    let floor = total / counts.len().max(1);
    let (&most, &max) = counts
        .iter()
        .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))?;
    let min = counts.values().min().copied().unwrap_or(0);
    (max > ceil || min < floor).then_some((most, max))
}

/// A replica to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub group: GroupId,
    pub old_node_id: u64,
    pub from: BrokerId,
    pub to: BrokerId,
}

/// Moves that leave every candidate with `floor(avg)` or `ceil(avg)` replicas: replicas leave
/// the most loaded brokers for the least loaded ones that do not already hold the partition.
/// `partitions` lists each partition's group and replicas `(node id, broker)`; replicas on
/// brokers that are not candidates are left alone.
pub fn rebalance(
    candidates: &[Candidate],
    partitions: &[(GroupId, Vec<(u64, BrokerId)>)],
) -> Vec<Move> {
    if candidates.is_empty() {
        return Vec::new();
    }
    let mut load: BTreeMap<BrokerId, usize> = candidates.iter().map(|c| (c.id, 0)).collect();
    for (_, replicas) in partitions {
        for (_, broker) in replicas {
            if let Some(count) = load.get_mut(broker) {
                *count += 1;
            }
        }
    }
    let mut placed: Vec<(GroupId, Vec<(u64, BrokerId)>)> = partitions.to_vec();
    let mut moves = Vec::new();
    loop {
        let Some((from, most)) = most_loaded_if_uneven(&load) else {
            return moves;
        };
        // The first partition on `from` that some under-loaded broker can take, preferring one
        // `from` does not lead (a moved replica keeps its position, leadership preference
        // included; [`leader_moves`] evens those out).
        let mut order: Vec<usize> = (0..placed.len()).collect();
        order.sort_by_key(|i| placed[*i].1.first().map(|(_, b)| *b) == Some(from));
        let found = order.into_iter().find_map(|i| {
            let (group, replicas) = &mut placed[i];
            let brokers: Vec<BrokerId> = replicas.iter().map(|(_, b)| *b).collect();
            if !brokers.contains(&from) {
                return None;
            }
            let to = load
                .iter()
                .filter(|(id, count)| **count < most - 1 && !brokers.contains(id))
                .min_by_key(|(id, count)| (**count, **id))
                .map(|(id, _)| *id)?;
            let slot = replicas.iter_mut().find(|(_, b)| *b == from)?;
            let old_node_id = slot.0;
            slot.1 = to;
            Some(Move {
                group: *group,
                old_node_id,
                from,
                to,
            })
        });
        let Some(found) = found else {
            return moves;
        };
        *load.get_mut(&found.from).expect("loaded") -= 1;
        *load.get_mut(&found.to).expect("loaded") += 1;
        moves.push(found);
    }
}

/// Preferred-leader changes that leave every candidate preferred for `floor(avg)` or
/// `ceil(avg)` partitions: `(group, node id of the replica to prefer)`. A partition's
/// preference moves to another of its replicas on a candidate.
pub fn leader_moves(
    candidates: &[Candidate],
    partitions: &[(GroupId, Vec<(u64, BrokerId)>)],
) -> Vec<(GroupId, u64)> {
    let mut leads: BTreeMap<BrokerId, usize> = candidates.iter().map(|c| (c.id, 0)).collect();
    if leads.is_empty() {
        return Vec::new();
    }
    /// A partition's replicas and the broker it prefers to lead it.
    type Preferred = (GroupId, Vec<(u64, BrokerId)>, BrokerId);
    let mut preferred: Vec<Preferred> = Vec::new();
    for (group, replicas) in partitions {
        let Some((_, first)) = replicas.first() else {
            continue;
        };
        if let Some(count) = leads.get_mut(first) {
            *count += 1;
            preferred.push((*group, replicas.clone(), *first));
        }
    }
    let mut moves = Vec::new();
    loop {
        let Some((most, max)) = most_loaded_if_uneven(&leads) else {
            return moves;
        };
        let found = preferred.iter_mut().find_map(|(group, replicas, leader)| {
            if *leader != most {
                return None;
            }
            let (node, to) = replicas
                .iter()
                .filter(|(_, b)| leads.get(b).is_some_and(|n| *n + 1 < max))
                .min_by_key(|(_, b)| (leads[b], *b))?;
            *leader = *to;
            Some((*group, *node, *to))
        });
        let Some((group, node, to)) = found else {
            return moves;
        };
        *leads.get_mut(&most).expect("counted") -= 1;
        *leads.get_mut(&to).expect("counted") += 1;
        moves.push((group, node));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(specs: &[(u32, Option<&str>, usize, usize)]) -> Vec<Candidate> {
        specs
            .iter()
            .map(|(id, rack, replicas, leaders)| Candidate {
                id: BrokerId(*id),
                rack: rack.map(str::to_owned),
                replicas: *replicas,
                leaders: *leaders,
            })
            .collect()
    }

    /// Partitions as `(group, [(node id, broker)])`, for rebalance and leader tests.
    type Placed = Vec<(GroupId, Vec<(u64, BrokerId)>)>;

    /// Applies `moves` to `placed`, checking each moved replica was where the move says.
    fn apply(placed: &mut Placed, moves: &[Move]) {
        for m in moves {
            let (_, replicas) = placed.iter_mut().find(|(g, _)| *g == m.group).unwrap();
            let slot = replicas
                .iter_mut()
                .find(|(id, _)| *id == m.old_node_id)
                .unwrap();
            assert_eq!(slot.1, m.from);
            slot.1 = m.to;
        }
    }

    fn ids(placement: &[Vec<BrokerId>]) -> Vec<Vec<u32>> {
        placement
            .iter()
            .map(|r| r.iter().map(|b| b.0).collect())
            .collect()
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            brokers: Vec<Candidate>,
            partitions: u32,
            rf: u32,
            expected: Vec<Vec<u32>>,
        }
        let cases = [
            Case {
                name: "single broker",
                brokers: brokers(&[(1, None, 0, 0)]),
                partitions: 3,
                rf: 1,
                expected: vec![vec![1], vec![1], vec![1]],
            },
            Case {
                name: "three brokers rf3: leaders rotate",
                brokers: brokers(&[(1, None, 0, 0), (2, None, 0, 0), (3, None, 0, 0)]),
                partitions: 3,
                rf: 3,
                expected: vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]],
            },
            Case {
                name: "loaded broker gets the next leader last",
                brokers: brokers(&[(1, None, 5, 5), (2, None, 0, 0), (3, None, 0, 0)]),
                partitions: 2,
                rf: 1,
                expected: vec![vec![2], vec![3]],
            },
            Case {
                name: "racks are spread before brokers are reused",
                brokers: brokers(&[
                    (1, Some("a"), 0, 0),
                    (2, Some("a"), 0, 0),
                    (3, Some("b"), 0, 0),
                ]),
                partitions: 2,
                rf: 2,
                expected: vec![vec![1, 3], vec![2, 3]],
            },
            Case {
                name: "fewer racks than replicas still places",
                brokers: brokers(&[
                    (1, Some("a"), 0, 0),
                    (2, Some("a"), 0, 0),
                    (3, Some("a"), 0, 0),
                ]),
                partitions: 1,
                rf: 3,
                expected: vec![vec![1, 2, 3]],
            },
        ];
        for case in cases {
            let placement = place(&case.brokers, case.partitions, case.rf).unwrap();
            assert_eq!(ids(&placement), case.expected, "{}", case.name);
            // Same input, same output.
            assert_eq!(
                place(&case.brokers, case.partitions, case.rf).unwrap(),
                placement
            );
        }
    }

    #[test]
    fn replicas_are_distinct_and_spread_evenly() {
        let candidates = brokers(&[
            (1, None, 0, 0),
            (2, None, 0, 0),
            (3, None, 0, 0),
            (4, None, 0, 0),
        ]);
        let placement = place(&candidates, 12, 3).unwrap();
        let mut replicas = BTreeMap::<u32, usize>::new();
        let mut leaders = BTreeMap::<u32, usize>::new();
        for brokers in ids(&placement) {
            let distinct: BTreeSet<_> = brokers.iter().collect();
            assert_eq!(distinct.len(), 3);
            *leaders.entry(brokers[0]).or_default() += 1;
            for b in brokers {
                *replicas.entry(b).or_default() += 1;
            }
        }
        assert!(replicas.values().all(|&n| n == 9), "{replicas:?}");
        assert!(leaders.values().all(|&n| n == 3), "{leaders:?}");
    }

    #[test]
    fn too_few_brokers_is_an_error() {
        let err = place(&brokers(&[(1, None, 0, 0)]), 1, 3).unwrap_err();
        assert_eq!(
            err,
            NotEnoughBrokers {
                requested: 3,
                live: 1
            }
        );
    }

    #[test]
    fn replacement_avoids_the_partitions_brokers_and_racks_then_load() {
        /// (name, candidates, brokers of the other replicas, expected).
        type Case = (&'static str, Vec<Candidate>, Vec<u32>, Option<u32>);
        let cases: [Case; 4] = [
            (
                "least loaded outsider",
                brokers(&[
                    (1, None, 0, 0),
                    (2, None, 5, 0),
                    (3, None, 2, 0),
                    (4, None, 3, 0),
                ]),
                vec![1],
                Some(3),
            ),
            (
                "a fresh rack beats a lighter broker",
                brokers(&[
                    (1, Some("a"), 0, 0),
                    (2, Some("a"), 0, 0),
                    (3, Some("b"), 9, 0),
                ]),
                vec![1],
                Some(3),
            ),
            (
                "nobody left",
                brokers(&[(1, None, 0, 0), (2, None, 0, 0)]),
                vec![1, 2],
                None,
            ),
            (
                "ties go to the lowest id",
                brokers(&[(5, None, 1, 1), (4, None, 1, 1), (1, None, 0, 0)]),
                vec![1],
                Some(4),
            ),
        ];
        for (name, candidates, others, expected) in cases {
            let others: Vec<BrokerId> = others.into_iter().map(BrokerId).collect();
            assert_eq!(
                replacement(&candidates, &others),
                expected.map(BrokerId),
                "{name}"
            );
        }
    }

    #[test]
    fn rebalance_evens_out_replicas_onto_new_brokers() {
        // 6 partitions RF2 on brokers 1 and 2; brokers 3 and 4 were added.
        let partitions: Vec<(GroupId, Vec<(u64, BrokerId)>)> = (0..6u64)
            .map(|p| {
                (
                    GroupId(1024 + p),
                    vec![(p * 10 + 1, BrokerId(1)), (p * 10 + 2, BrokerId(2))],
                )
            })
            .collect();
        let candidates = brokers(&[
            (1, None, 0, 0),
            (2, None, 0, 0),
            (3, None, 0, 0),
            (4, None, 0, 0),
        ]);
        let moves = rebalance(&candidates, &partitions);
        assert_eq!(moves, rebalance(&candidates, &partitions), "deterministic");
        let mut load = BTreeMap::<BrokerId, usize>::from([(BrokerId(1), 6), (BrokerId(2), 6)]);
        let mut placed = partitions.clone();
        apply(&mut placed, &moves);
        for m in &moves {
            *load.get_mut(&m.from).unwrap() -= 1;
            *load.entry(m.to).or_default() += 1;
        }
        assert!(load.values().all(|&n| n == 3), "{load:?}");
        for (_, replicas) in &placed {
            assert_ne!(
                replicas[0].1, replicas[1].1,
                "a partition on one broker twice"
            );
        }
        // Already even: nothing to do.
        let even = brokers(&[(1, None, 0, 0), (2, None, 0, 0)]);
        assert!(rebalance(&even, &partitions).is_empty());
    }

    #[test]
    fn rebalance_then_leader_moves_spread_replicas_and_leaders() {
        // 6 partitions RF3 on 3 brokers, leaders rotating; broker 4 added.
        let partitions: Vec<(GroupId, Vec<(u64, BrokerId)>)> = (0..6u64)
            .map(|p| {
                let brokers = [1, 2, 3].map(|i| BrokerId(((p as u32 + i - 1) % 3) + 1));
                (
                    GroupId(1024 + p),
                    brokers
                        .iter()
                        .enumerate()
                        .map(|(k, b)| (p * 10 + k as u64, *b))
                        .collect(),
                )
            })
            .collect();
        let candidates = brokers(&[
            (1, None, 0, 0),
            (2, None, 0, 0),
            (3, None, 0, 0),
            (4, None, 0, 0),
        ]);
        let moves = rebalance(&candidates, &partitions);
        let mut placed = partitions.clone();
        apply(&mut placed, &moves);
        for (group, node) in leader_moves(&candidates, &placed) {
            let (_, replicas) = placed.iter_mut().find(|(g, _)| *g == group).unwrap();
            let at = replicas.iter().position(|(id, _)| *id == node).unwrap();
            let chosen = replicas.remove(at);
            replicas.insert(0, chosen);
        }
        let mut leads = BTreeMap::<BrokerId, usize>::new();
        let mut load = BTreeMap::<BrokerId, usize>::new();
        for (_, replicas) in &placed {
            *leads.entry(replicas[0].1).or_default() += 1;
            for (_, b) in replicas {
                *load.entry(*b).or_default() += 1;
            }
        }
        assert_eq!(leads.len(), 4, "every broker leads: {leads:?}");
        assert!(leads.values().all(|n| (1..=2).contains(n)), "{leads:?}");
        assert!(load.values().all(|n| (4..=5).contains(n)), "{load:?}");
    }
}

//! Where a new topic's replicas go: a pure function of the live brokers and their current
//! load, so it is table-tested and deterministic.
//!
//! Rules: the replicas of a partition are on distinct brokers, and on distinct racks as long
//! as there are enough racks; each replica goes to the eligible broker with the fewest
//! replicas, and the preferred leader (first replica) to the one with the fewest leaders; ties
//! go to the lowest broker id.

use std::collections::{BTreeMap, BTreeSet};

use mq_common::ids::BrokerId;

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
}

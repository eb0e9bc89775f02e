//! The reconciler's decisions, as a pure function: from the committed state and what brokers
//! reported, the actions that make brokers host exactly their assigned replicas, re-create the
//! replicas of dead or draining brokers elsewhere, converge each partition's voters to its
//! assigned replicas, and move leaders to preferred replicas. `manager::reconcile` runs it on
//! the leader and carries the actions out; nothing here does I/O.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mq_common::ids::{BrokerId, GroupId, TopicName, broker_of_node};

use crate::placement;
use crate::reports::Reports;
use crate::state::{ClusterState, MetaCommand, PartitionRecord, ReplicaRecord};

/// A replica asked for is not asked again for this long (until a heartbeat shows it).
pub const CREATE_HOLD_OFF: Duration = Duration::from_secs(10);
/// How long a membership change asked of a partition leader is left to finish before it is
/// asked again.
pub const MEMBERSHIP_HOLD_OFF: Duration = Duration::from_secs(30);
/// After a membership change succeeded, how long until the group may be asked again.
pub const SETTLE_GRACE: Duration = Duration::from_secs(3);
/// A leadership transfer is asked again after this long at the earliest.
pub const TRANSFER_HOLD_OFF: Duration = Duration::from_secs(5);

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask `broker` to host its assigned replica (`node_id`) of `group`.
    CreateReplica {
        broker: BrokerId,
        topic: TopicName,
        group: GroupId,
        node_id: u64,
    },
    /// Commit the replacement of a leaving broker's replica (a `ReplaceReplica` command).
    Commit(MetaCommand),
    /// Ask the group's leader, on `leader`, to make `members` the voters.
    ChangeMembership {
        leader: BrokerId,
        group: GroupId,
        members: Vec<ReplicaRecord>,
    },
    /// Ask the group's leader, on `leader`, to hand leadership to replica `to`.
    TransferLeader {
        leader: BrokerId,
        group: GroupId,
        to: u64,
    },
    /// Ask `broker` to drop its replica of `group`.
    RemoveReplica { broker: BrokerId, group: GroupId },
}

/// Everything the reconciler should do now, in the order to do it: creates, replacements,
/// membership changes, leadership transfers, removals. `membership_asked` holds when each
/// group was last asked to change its voters (a time in the future holds it off longer).
pub fn plan(
    state: &ClusterState,
    reports: &Reports,
    membership_asked: &HashMap<GroupId, Instant>,
    now: Instant,
) -> Vec<Action> {
    let (creates, removes) = hosting(state, reports, now);
    let mut actions = creates;
    actions.extend(heal(state, reports, now));
    actions.extend(converge(state, reports, membership_asked, now));
    actions.extend(balance_leaders(state, reports, now));
    actions.extend(removes);
    actions
}

/// Each live broker hosts exactly its assigned replicas: the creates missing ones, and the
/// removals of replicas no longer assigned to it. A replica moved away leaves only once its
/// group's voters are the assigned ones (its replacement caught up); a deleted topic's leaves
/// at once.
fn hosting(state: &ClusterState, reports: &Reports, now: Instant) -> (Vec<Action>, Vec<Action>) {
    let partitions: HashMap<GroupId, &PartitionRecord> = state
        .topics
        .values()
        .flat_map(|t| t.partitions.iter().map(|p| (p.group, p)))
        .collect();
    let (mut creates, mut removes) = (Vec::new(), Vec::new());
    for broker in reports.live_brokers(state, now) {
        let hosted: HashMap<GroupId, u64> = reports
            .brokers
            .get(&broker.id)
            .map(|(_, replicas)| replicas.iter().map(|r| (r.group, r.node_id)).collect())
            .unwrap_or_default();
        let assigned = state.replicas_on(broker.id);
        for (topic, partition, replica) in &assigned {
            let recently_asked = reports
                .requested
                .get(&(broker.id, partition.group))
                .is_some_and(|at| now.saturating_duration_since(*at) < CREATE_HOLD_OFF);
            if hosted.get(&partition.group) != Some(&replica.node_id) && !recently_asked {
                creates.push(Action::CreateReplica {
                    broker: broker.id,
                    topic: topic.name.clone(),
                    group: partition.group,
                    node_id: replica.node_id,
                });
            }
        }
        let mut stale: Vec<GroupId> = hosted
            .keys()
            .filter(|group| !assigned.iter().any(|(_, p, _)| p.group == **group))
            .copied()
            .collect();
        stale.sort_unstable();
        for group in stale {
            let moved_out = match partitions.get(&group) {
                None => true,
                Some(partition) => reports
                    .leader_report(group, now)
                    .is_some_and(|leader| leader.settled(partition)),
            };
            if moved_out {
                removes.push(Action::RemoveReplica {
                    broker: broker.id,
                    group,
                });
            }
        }
    }
    (creates, removes)
}

/// Replicas on brokers dead past the replace delay, or draining, are re-created on other live
/// brokers: one replica per partition at a time, once its group is settled.
fn heal(state: &ClusterState, reports: &Reports, now: Instant) -> Vec<Action> {
    let leaving: Vec<BrokerId> = state
        .brokers
        .values()
        .filter(|b| b.draining || reports.gone_for_good(b.id, now))
        .map(|b| b.id)
        .collect();
    if leaving.is_empty() {
        return Vec::new();
    }
    let mut candidates = reports.candidates(state, now);
    let mut actions = Vec::new();
    for topic in state.topics.values() {
        for partition in &topic.partitions {
            let Some(old) = partition
                .replicas
                .iter()
                .find(|r| leaving.contains(&r.broker))
            else {
                continue;
            };
            let Some(leader) = reports.leader_report(partition.group, now) else {
                continue;
            };
            if !leader.settled(partition) {
                continue;
            }
            let others: Vec<BrokerId> = partition
                .replicas
                .iter()
                .filter(|r| r.node_id != old.node_id)
                .map(|r| r.broker)
                .collect();
            let Some(to) = placement::replacement(&candidates, &others) else {
                tracing::warn!(topic = %topic.name, partition = partition.partition, "no live broker can take a replica of a leaving broker");
                continue;
            };
            if let Some(c) = candidates.iter_mut().find(|c| c.id == to) {
                c.replicas += 1;
            }
            tracing::info!(topic = %topic.name, partition = partition.partition, from = %old.broker, %to, "re-creating replica");
            actions.push(Action::Commit(MetaCommand::ReplaceReplica {
                group: partition.group,
                old_node_id: old.node_id,
                new_broker: to,
            }));
        }
    }
    actions
}

/// Partition leaders whose voters are not the assigned replicas are asked to make them so,
/// once every assigned replica's broker hosts it (new replicas join as learners first).
fn converge(
    state: &ClusterState,
    reports: &Reports,
    membership_asked: &HashMap<GroupId, Instant>,
    now: Instant,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (_, partition, leader) in reports.led_partitions(state, now) {
        if leader.settled(partition) {
            continue;
        }
        if !partition
            .replicas
            .iter()
            .all(|r| reports.hosts(r.broker, r.node_id))
        {
            continue;
        }
        let held = membership_asked
            .get(&partition.group)
            .is_some_and(|at| now.saturating_duration_since(*at) < MEMBERSHIP_HOLD_OFF);
        if held {
            continue;
        }
        actions.push(Action::ChangeMembership {
            leader: broker_of_node(leader.node_id),
            group: partition.group,
            members: partition.replicas.clone(),
        });
    }
    actions
}

/// Leadership moves to each partition's preferred replica (the first assigned one on a live,
/// non-draining broker) once it is caught up, and off draining brokers.
fn balance_leaders(state: &ClusterState, reports: &Reports, now: Instant) -> Vec<Action> {
    let usable = |broker: BrokerId| {
        reports.is_alive(broker, now) && state.brokers.get(&broker).is_some_and(|b| !b.draining)
    };
    let mut actions = Vec::new();
    for (_, partition, leader) in reports.led_partitions(state, now) {
        if !leader.settled(partition) {
            continue;
        }
        let Some(preferred) = partition
            .replicas
            .iter()
            .find(|r| usable(r.broker) && leader.in_sync(r.node_id))
        else {
            continue;
        };
        if preferred.node_id == leader.node_id {
            continue;
        }
        let first_choice = partition.replicas.iter().find(|r| usable(r.broker));
        let leader_usable = usable(broker_of_node(leader.node_id));
        // Only for the preferred replica itself, or to get off a draining broker.
        if leader_usable && first_choice.map(|r| r.node_id) != Some(preferred.node_id) {
            continue;
        }
        let held = reports
            .transfer_asked
            .get(&partition.group)
            .is_some_and(|at| now.saturating_duration_since(*at) < TRANSFER_HOLD_OFF);
        if held {
            continue;
        }
        actions.push(Action::TransferLeader {
            leader: broker_of_node(leader.node_id),
            group: partition.group,
            to: preferred.node_id,
        });
    }
    actions
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mq_common::ids::replica_node_id;

    use super::*;
    use crate::reports::ReplicaReport;
    use crate::state::{BrokerRecord, PartitionRecord, TopicRecord};

    const GROUP: GroupId = GroupId(1024);
    const SESSION: Duration = Duration::from_secs(10);
    const REPLACE: Duration = Duration::from_secs(60);

    fn node(broker: u32) -> u64 {
        replica_node_id(BrokerId(broker), 7)
    }

    /// Brokers 1..=4 registered (those in `draining` draining); topic `t` with one partition
    /// whose replicas are on `replicas` (preferred leader first).
    fn state(replicas: &[u32], draining: &[u32]) -> ClusterState {
        let mut state = ClusterState::default();
        for id in 1..=4 {
            state.brokers.insert(
                BrokerId(id),
                BrokerRecord {
                    id: BrokerId(id),
                    address: format!("127.0.0.{id}:7070"),
                    rack: None,
                    draining: draining.contains(&id),
                },
            );
        }
        let name = TopicName::new("t").unwrap();
        state.topics.insert(
            name.clone(),
            TopicRecord {
                name,
                topic_id: "id".into(),
                replication_factor: replicas.len() as u32,
                configs: BTreeMap::new(),
                partitions: vec![PartitionRecord {
                    partition: 0,
                    group: GROUP,
                    replicas: replicas
                        .iter()
                        .map(|b| ReplicaRecord {
                            broker: BrokerId(*b),
                            node_id: node(*b),
                            bootstrap: true,
                        })
                        .collect(),
                }],
                created_at_ms: 0,
            },
        );
        state
    }

    /// What one broker says about its replica of the partition.
    #[derive(Clone, Copy)]
    struct Hosted {
        broker: u32,
        leader: u32,
        /// Voters per the leader (only read from the leader's report).
        voters: &'static [u32],
        /// Entries each follower trails the leader by (`None`: not replicating).
        lag: Option<u64>,
    }

    fn report(h: Hosted) -> ReplicaReport {
        let others = h.voters.iter().filter(|b| **b != h.broker);
        ReplicaReport {
            group: GROUP,
            node_id: node(h.broker),
            leader_node_id: Some(node(h.leader)),
            term: 3,
            high_watermark: 100,
            log_start_offset: 0,
            last_log_index: 100,
            followers: others
                .map(|b| (node(*b), h.lag.map(|lag| 100u64.saturating_sub(lag))))
                .collect(),
            voters: h.voters.iter().map(|b| node(*b)).collect(),
            learners: Vec::new(),
        }
    }

    /// Reports as of `now`: brokers in `alive` heartbeated just now with what `hosted` says of
    /// them (nothing for the others); the rest last heartbeated `dead_for` ago.
    fn reports(now: Instant, alive: &[u32], dead_for: Duration, hosted: &[Hosted]) -> Reports {
        let mut reports = Reports::new(SESSION, REPLACE);
        reports.leader_since = Some(now - Duration::from_secs(3600));
        for id in 1..=4 {
            let replicas = hosted
                .iter()
                .filter(|h| h.broker == id)
                .map(|h| report(*h))
                .collect();
            let seen = if alive.contains(&id) {
                now
            } else {
                now - dead_for
            };
            reports.heartbeat(BrokerId(id), replicas, seen);
        }
        reports
    }

    fn led_by(leader: u32, on: &[u32], voters: &'static [u32], lag: Option<u64>) -> Vec<Hosted> {
        on.iter()
            .map(|broker| Hosted {
                broker: *broker,
                leader,
                voters,
                lag,
            })
            .collect()
    }

    fn create(broker: u32) -> Action {
        Action::CreateReplica {
            broker: BrokerId(broker),
            topic: TopicName::new("t").unwrap(),
            group: GROUP,
            node_id: node(broker),
        }
    }

    fn replace(from: u32, to: u32) -> Action {
        Action::Commit(MetaCommand::ReplaceReplica {
            group: GROUP,
            old_node_id: node(from),
            new_broker: BrokerId(to),
        })
    }

    fn change_membership(leader: u32, members: &[u32]) -> Action {
        Action::ChangeMembership {
            leader: BrokerId(leader),
            group: GROUP,
            members: members
                .iter()
                .map(|b| ReplicaRecord {
                    broker: BrokerId(*b),
                    node_id: node(*b),
                    bootstrap: true,
                })
                .collect(),
        }
    }

    fn transfer(leader: u32, to: u32) -> Action {
        Action::TransferLeader {
            leader: BrokerId(leader),
            group: GROUP,
            to: node(to),
        }
    }

    fn remove(broker: u32) -> Action {
        Action::RemoveReplica {
            broker: BrokerId(broker),
            group: GROUP,
        }
    }

    #[test]
    fn plans_per_situation() {
        let now = Instant::now();
        let short = Duration::from_secs(20); // dead, not yet gone for good
        let long = SESSION + REPLACE + Duration::from_secs(1); // gone for good
        let settled: &[u32] = &[1, 2, 3];
        let cases: Vec<(&str, ClusterState, Reports, Vec<Action>)> = vec![
            (
                "converged: nothing to do",
                state(&[1, 2, 3], &[]),
                reports(
                    now,
                    &[1, 2, 3, 4],
                    short,
                    &led_by(1, &[1, 2, 3], settled, Some(0)),
                ),
                vec![],
            ),
            (
                "a new topic: every live broker is asked for its replica",
                state(&[1, 2, 3], &[]),
                reports(now, &[1, 2, 3, 4], short, &[]),
                vec![create(1), create(2), create(3)],
            ),
            (
                "a dead broker gets no create, and is not replaced before the delay",
                state(&[1, 2, 3], &[]),
                reports(
                    now,
                    &[1, 2, 4],
                    short,
                    &led_by(1, &[1, 2], settled, Some(0)),
                ),
                vec![],
            ),
            (
                "heal: a broker gone for good has its replica re-created elsewhere",
                state(&[1, 2, 3], &[]),
                reports(now, &[1, 2, 4], long, &led_by(1, &[1, 2], settled, Some(0))),
                vec![replace(3, 4)],
            ),
            (
                "heal waits while the group is not settled",
                state(&[1, 2, 3], &[]),
                reports(now, &[1, 2, 4], long, &led_by(1, &[1, 2], &[1, 2], Some(0))),
                vec![],
            ),
            (
                "drain: a draining broker's replica moves, and leadership leaves it",
                state(&[1, 2, 3], &[1]),
                reports(
                    now,
                    &[1, 2, 3, 4],
                    short,
                    &led_by(1, &[1, 2, 3], settled, Some(0)),
                ),
                vec![replace(1, 4), transfer(1, 2)],
            ),
            (
                "converge: the replacement hosted, the leader is asked to make it a voter",
                state(&[1, 2, 4], &[]),
                reports(now, &[1, 2, 4], long, &{
                    let mut hosted = led_by(1, &[1, 2], settled, Some(0));
                    hosted.push(Hosted {
                        broker: 4,
                        leader: 1,
                        voters: settled,
                        lag: None,
                    });
                    hosted
                }),
                vec![change_membership(1, &[1, 2, 4])],
            ),
            (
                "converge waits until every assigned replica is hosted",
                state(&[1, 2, 4], &[]),
                reports(now, &[1, 2, 4], long, &led_by(1, &[1, 2], settled, Some(0))),
                vec![create(4)],
            ),
            (
                "removal: a replica moved away leaves once the voters are the assigned ones",
                state(&[1, 2, 4], &[]),
                reports(
                    now,
                    &[1, 2, 3, 4],
                    short,
                    &led_by(1, &[1, 2, 3, 4], &[1, 2, 4], Some(0)),
                ),
                vec![remove(3)],
            ),
            (
                "removal waits while the moved replica is still a voter",
                state(&[1, 2, 4], &[]),
                reports(
                    now,
                    &[1, 2, 3, 4],
                    short,
                    &led_by(1, &[1, 2, 3, 4], settled, Some(0)),
                ),
                vec![change_membership(1, &[1, 2, 4])],
            ),
            (
                "balance: leadership goes back to the preferred replica once it caught up",
                state(&[1, 2, 3], &[]),
                reports(
                    now,
                    &[1, 2, 3, 4],
                    short,
                    &led_by(2, &[1, 2, 3], settled, Some(3)),
                ),
                vec![transfer(2, 1)],
            ),
            (
                "balance waits while the preferred replica lags",
                state(&[1, 2, 3], &[]),
                reports(
                    now,
                    &[1, 2, 3, 4],
                    short,
                    &led_by(2, &[1, 2, 3], settled, Some(500)),
                ),
                vec![],
            ),
            (
                "a deleted topic's replica leaves at once",
                {
                    let mut s = state(&[1, 2, 3], &[]);
                    s.topics.clear();
                    s
                },
                reports(
                    now,
                    &[1, 2, 3, 4],
                    short,
                    &led_by(1, &[1], settled, Some(0)),
                ),
                vec![remove(1)],
            ),
        ];
        for (name, state, reports, expected) in cases {
            let actions = plan(&state, &reports, &HashMap::new(), now);
            assert_eq!(actions, expected, "{name}");
        }
    }

    #[test]
    fn asks_are_held_off() {
        let now = Instant::now();
        let state = state(&[1, 2, 4], &[]);
        let mut hosted = led_by(1, &[1, 2, 4], &[1, 2, 3], Some(0));
        hosted[2].lag = None;
        let mut reports = reports(now, &[1, 2, 4], Duration::from_secs(20), &hosted);
        // A membership change asked a moment ago is not asked again; after the hold-off it is.
        let just_asked = HashMap::from([(GROUP, now - Duration::from_secs(1))]);
        assert_eq!(plan(&state, &reports, &just_asked, now), vec![]);
        let long_ago = HashMap::from([(GROUP, now - MEMBERSHIP_HOLD_OFF)]);
        assert_eq!(
            plan(&state, &reports, &long_ago, now),
            vec![change_membership(1, &[1, 2, 4])]
        );
        // A create asked recently waits for the heartbeat that shows it.
        reports.brokers.get_mut(&BrokerId(4)).unwrap().1.clear();
        reports
            .requested
            .insert((BrokerId(4), GROUP), now - Duration::from_secs(1));
        assert_eq!(plan(&state, &reports, &long_ago, now), vec![]);
        reports
            .requested
            .insert((BrokerId(4), GROUP), now - CREATE_HOLD_OFF);
        assert_eq!(plan(&state, &reports, &long_ago, now), vec![create(4)]);
    }
}

//! The cluster's metadata and the pure function that applies a command to it. The state
//! machine persists what [`ClusterState::apply`] says changed; queries read the same state.

use std::collections::BTreeMap;

use mq_common::ids::{BrokerId, GroupId, TopicName, replica_node_id};
use serde::{Deserialize, Serialize};

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: BrokerId,
    pub address: String,
    pub rack: Option<String>,
    /// Being decommissioned: its replicas move away and it gets no new ones.
    #[serde(default)]
    pub draining: bool,
}

/// One replica of a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub broker: BrokerId,
    /// Raft node id: broker id and the log index that assigned it; never reused.
    pub node_id: u64,
    /// Whether the replica was created with the partition (and initializes its group).
    pub bootstrap: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub partition: u32,
    pub group: GroupId,
    /// Preferred leader first.
    pub replicas: Vec<ReplicaRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: TopicName,
    pub topic_id: String,
    pub replication_factor: u32,
    /// Effective configs (defaults filled in).
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRecord>,
    pub created_at_ms: i64,
}

/// Commands of the cluster manager's Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    RegisterBroker(BrokerRecord),
    /// Create a topic with the given placement (brokers per partition, preferred leader
    /// first), decided by the leader before proposing.
    CreateTopic {
        name: TopicName,
        topic_id: String,
        configs: BTreeMap<String, String>,
        placement: Vec<Vec<BrokerId>>,
        created_at_ms: i64,
    },
    DeleteTopic {
        name: TopicName,
    },
    /// Move one replica of a partition: the replica `old_node_id` is replaced by a new one on
    /// `new_broker`, at the same position in the replica list (a dead broker's replica is
    /// re-created elsewhere, a draining broker is emptied, or the cluster is rebalanced).
    ReplaceReplica {
        group: GroupId,
        old_node_id: u64,
        new_broker: BrokerId,
    },
    /// Start (or stop) decommissioning a broker.
    SetDraining {
        broker: BrokerId,
        draining: bool,
    },
    /// Make replica `node_id` the partition's preferred leader (first in its replica list).
    SetPreferredLeader {
        group: GroupId,
        node_id: u64,
    },
}

impl std::fmt::Display for MetaCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RegisterBroker(b) => write!(f, "register broker {} at {}", b.id, b.address),
            Self::CreateTopic {
                name, placement, ..
            } => write!(f, "create topic {name} ({} partitions)", placement.len()),
            Self::DeleteTopic { name } => write!(f, "delete topic {name}"),
            Self::ReplaceReplica {
                group,
                old_node_id,
                new_broker,
            } => write!(
                f,
                "replace replica {old_node_id} of group {group} with one on broker {new_broker}"
            ),
            Self::SetDraining { broker, draining } => {
                write!(f, "set broker {broker} draining={draining}")
            }
            Self::SetPreferredLeader { group, node_id } => {
                write!(f, "prefer replica {node_id} to lead group {group}")
            }
        }
    }
}

/// The outcome of applying a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    Done,
    TopicCreated(TopicRecord),
    TopicExists,
    TopicNotFound,
    /// The command refers to a replica, partition or broker that is not (or no longer) there.
    Stale,
}

impl std::fmt::Display for MetaResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A piece of state a command changed, for the state machine to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Broker(BrokerId),
    Topic(TopicName),
    TopicRemoved(TopicName),
    NextGroup,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub brokers: BTreeMap<BrokerId, BrokerRecord>,
    pub topics: BTreeMap<TopicName, TopicRecord>,
    /// The next Raft group id for a partition.
    pub next_group: GroupId,
}

impl Default for ClusterState {
    fn default() -> Self {
        Self {
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            next_group: GroupId::FIRST_PARTITION,
        }
    }
}

impl ClusterState {
    /// Applies `command`, committed at log index `index`. Deterministic: every replica of the
    /// cluster manager computes the same state and the same ids.
    pub fn apply(&mut self, index: u64, command: MetaCommand) -> (MetaResponse, Vec<Change>) {
        match command {
            MetaCommand::RegisterBroker(mut broker) => {
                let id = broker.id;
                // Registration never ends a decommission; only SetDraining does.
                broker.draining = self.brokers.get(&id).is_some_and(|b| b.draining);
                if self.brokers.get(&id) == Some(&broker) {
                    return (MetaResponse::Done, vec![]);
                }
                self.brokers.insert(id, broker);
                (MetaResponse::Done, vec![Change::Broker(id)])
            }
            MetaCommand::SetDraining { broker, draining } => match self.brokers.get_mut(&broker) {
                Some(record) if record.draining != draining => {
                    record.draining = draining;
                    (MetaResponse::Done, vec![Change::Broker(broker)])
                }
                Some(_) => (MetaResponse::Done, vec![]),
                None => (MetaResponse::Stale, vec![]),
            },
            MetaCommand::SetPreferredLeader { group, node_id } => {
                let found = self.topics.iter_mut().find_map(|(name, topic)| {
                    let partition = topic.partitions.iter_mut().find(|p| p.group == group)?;
                    let at = partition
                        .replicas
                        .iter()
                        .position(|r| r.node_id == node_id)?;
                    let replica = partition.replicas.remove(at);
                    partition.replicas.insert(0, replica);
                    Some(name.clone())
                });
                match found {
                    Some(name) => (MetaResponse::Done, vec![Change::Topic(name)]),
                    None => (MetaResponse::Stale, vec![]),
                }
            }
            MetaCommand::ReplaceReplica {
                group,
                old_node_id,
                new_broker,
            } => self.replace_replica(index, group, old_node_id, new_broker),
            MetaCommand::CreateTopic {
                name,
                topic_id,
                configs,
                placement,
                created_at_ms,
            } => {
                if self.topics.contains_key(&name) {
                    return (MetaResponse::TopicExists, vec![]);
                }
                let topic = TopicRecord {
                    name: name.clone(),
                    topic_id,
                    replication_factor: placement.first().map_or(0, |r| r.len() as u32),
                    configs,
                    partitions: self.new_partitions(index, &placement),
                    created_at_ms,
                };
                self.topics.insert(name.clone(), topic.clone());
                (
                    MetaResponse::TopicCreated(topic),
                    vec![Change::Topic(name), Change::NextGroup],
                )
            }
            MetaCommand::DeleteTopic { name } => {
                if self.topics.remove(&name).is_none() {
                    return (MetaResponse::TopicNotFound, vec![]);
                }
                (MetaResponse::Done, vec![Change::TopicRemoved(name)])
            }
        }
    }

    /// Replaces replica `old_node_id` of `group` by a new one on `new_broker`, at the same
    /// position; stale when either is gone or the broker already holds a replica.
    fn replace_replica(
        &mut self,
        index: u64,
        group: GroupId,
        old_node_id: u64,
        new_broker: BrokerId,
    ) -> (MetaResponse, Vec<Change>) {
        if !self.brokers.contains_key(&new_broker) {
            return (MetaResponse::Stale, vec![]);
        }
        let Some((name, partition)) = self.topics.iter_mut().find_map(|(name, topic)| {
            topic
                .partitions
                .iter_mut()
                .find(|p| p.group == group)
                .map(|p| (name.clone(), p))
        }) else {
            return (MetaResponse::Stale, vec![]);
        };
        let on_new_broker = partition.replicas.iter().any(|r| r.broker == new_broker);
        let Some(slot) = partition
            .replicas
            .iter_mut()
            .find(|r| r.node_id == old_node_id)
        else {
            return (MetaResponse::Stale, vec![]);
        };
        if on_new_broker {
            return (MetaResponse::Stale, vec![]);
        }
        *slot = ReplicaRecord {
            broker: new_broker,
            node_id: replica_node_id(new_broker, index),
            bootstrap: false,
        };
        (MetaResponse::Done, vec![Change::Topic(name)])
    }

    /// The partitions of a topic created at log `index` with `placement`, each a new group.
    fn new_partitions(&mut self, index: u64, placement: &[Vec<BrokerId>]) -> Vec<PartitionRecord> {
        let mut partitions = Vec::with_capacity(placement.len());
        for (partition, brokers) in placement.iter().enumerate() {
            let group = self.next_group;
            self.next_group = GroupId(group.0 + 1);
            partitions.push(PartitionRecord {
                partition: partition as u32,
                group,
                replicas: brokers
                    .iter()
                    .map(|broker| ReplicaRecord {
                        broker: *broker,
                        node_id: replica_node_id(*broker, index),
                        bootstrap: true,
                    })
                    .collect(),
            });
        }
        partitions
    }

    /// Every replica assigned to `broker`: `(topic, partition record, replica)`.
    pub fn replicas_on(
        &self,
        broker: BrokerId,
    ) -> Vec<(&TopicRecord, &PartitionRecord, &ReplicaRecord)> {
        self.topics
            .values()
            .flat_map(|topic| {
                topic.partitions.iter().flat_map(move |partition| {
                    partition
                        .replicas
                        .iter()
                        .filter(move |r| r.broker == broker)
                        .map(move |replica| (topic, partition, replica))
                })
            })
            .collect()
    }

    /// Replicas per broker, for placement.
    pub fn replica_counts(&self) -> BTreeMap<BrokerId, (usize, usize)> {
        let mut counts: BTreeMap<BrokerId, (usize, usize)> = BTreeMap::new();
        for topic in self.topics.values() {
            for partition in &topic.partitions {
                for (i, replica) in partition.replicas.iter().enumerate() {
                    let entry = counts.entry(replica.broker).or_default();
                    entry.0 += 1;
                    if i == 0 {
                        entry.1 += 1;
                    }
                }
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicName {
        TopicName::new(name).unwrap()
    }

    fn create(name: &str, placement: Vec<Vec<u32>>) -> MetaCommand {
        MetaCommand::CreateTopic {
            name: topic(name),
            topic_id: format!("id-{name}"),
            configs: BTreeMap::new(),
            placement: placement
                .into_iter()
                .map(|r| r.into_iter().map(BrokerId).collect())
                .collect(),
            created_at_ms: 1,
        }
    }

    #[test]
    fn create_allocates_fresh_groups_and_node_ids_from_the_log_index() {
        let mut state = ClusterState::default();
        let (response, changes) = state.apply(7, create("a", vec![vec![1, 2], vec![2, 1]]));
        let MetaResponse::TopicCreated(a) = response else {
            panic!("{response:?}")
        };
        assert_eq!(changes, vec![Change::Topic(topic("a")), Change::NextGroup]);
        assert_eq!(a.partitions[0].group, GroupId::FIRST_PARTITION);
        assert_eq!(
            a.partitions[1].group,
            GroupId(GroupId::FIRST_PARTITION.0 + 1)
        );
        assert_eq!(
            a.partitions[0].replicas[1].node_id,
            replica_node_id(BrokerId(2), 7)
        );
        assert_eq!(a.replication_factor, 2);

        // Deleted and re-created: new groups, new node ids.
        state.apply(8, MetaCommand::DeleteTopic { name: topic("a") });
        let (response, _) = state.apply(9, create("a", vec![vec![1, 2]]));
        let MetaResponse::TopicCreated(again) = response else {
            panic!()
        };
        assert_eq!(
            again.partitions[0].group,
            GroupId(GroupId::FIRST_PARTITION.0 + 2)
        );
        assert_ne!(
            again.partitions[0].replicas[0].node_id,
            a.partitions[0].replicas[0].node_id
        );
    }

    #[test]
    fn duplicates_and_missing_topics_change_nothing() {
        let mut state = ClusterState::default();
        state.apply(1, create("a", vec![vec![1]]));
        let before = state.clone();
        assert_eq!(
            state.apply(2, create("a", vec![vec![1]])).0,
            MetaResponse::TopicExists
        );
        assert_eq!(
            state.apply(3, MetaCommand::DeleteTopic { name: topic("b") }),
            (MetaResponse::TopicNotFound, vec![])
        );
        assert_eq!(state, before);
    }

    #[test]
    fn re_registering_the_same_broker_is_a_no_op() {
        let mut state = ClusterState::default();
        let broker = BrokerRecord {
            id: BrokerId(1),
            address: "127.0.0.1:7070".into(),
            rack: None,
            draining: false,
        };
        let (_, changes) = state.apply(1, MetaCommand::RegisterBroker(broker.clone()));
        assert_eq!(changes, vec![Change::Broker(BrokerId(1))]);
        assert!(
            state
                .apply(2, MetaCommand::RegisterBroker(broker))
                .1
                .is_empty()
        );
    }

    fn broker(id: u32) -> MetaCommand {
        MetaCommand::RegisterBroker(BrokerRecord {
            id: BrokerId(id),
            address: format!("127.0.0.1:{id}"),
            rack: None,
            draining: false,
        })
    }

    #[test]
    fn replace_replica_keeps_the_position_with_a_fresh_node_id() {
        let mut state = ClusterState::default();
        for id in 1..=4 {
            state.apply(u64::from(id), broker(id));
        }
        state.apply(5, create("a", vec![vec![1, 2, 3]]));
        let group = GroupId::FIRST_PARTITION;
        let old = state.topics[&topic("a")].partitions[0].replicas[1].clone();
        let replace = |old_node_id, new_broker| MetaCommand::ReplaceReplica {
            group,
            old_node_id,
            new_broker: BrokerId(new_broker),
        };
        let (response, changes) = state.apply(9, replace(old.node_id, 4));
        assert_eq!(response, MetaResponse::Done);
        assert_eq!(changes, vec![Change::Topic(topic("a"))]);
        let replicas = &state.topics[&topic("a")].partitions[0].replicas;
        assert_eq!(replicas[1].broker, BrokerId(4));
        assert_eq!(replicas[1].node_id, replica_node_id(BrokerId(4), 9));
        assert!(!replicas[1].bootstrap);

        // Replaying it, a broker already in the set, an unknown broker or group: nothing.
        let before = state.clone();
        for command in [
            replace(old.node_id, 4),
            replace(replicas[0].node_id, 3),
            replace(replicas[0].node_id, 9),
            MetaCommand::ReplaceReplica {
                group: GroupId(7),
                old_node_id: replicas[0].node_id,
                new_broker: BrokerId(4),
            },
        ] {
            assert_eq!(state.apply(10, command), (MetaResponse::Stale, vec![]));
        }
        assert_eq!(state, before);
    }

    #[test]
    fn draining_survives_re_registration() {
        let mut state = ClusterState::default();
        state.apply(1, broker(1));
        let drain = MetaCommand::SetDraining {
            broker: BrokerId(1),
            draining: true,
        };
        assert_eq!(
            state.apply(2, drain.clone()).1,
            vec![Change::Broker(BrokerId(1))]
        );
        assert!(state.apply(3, drain).1.is_empty());
        state.apply(4, broker(1));
        assert!(state.brokers[&BrokerId(1)].draining);
        let unknown = MetaCommand::SetDraining {
            broker: BrokerId(5),
            draining: true,
        };
        assert_eq!(state.apply(5, unknown).0, MetaResponse::Stale);
    }
}

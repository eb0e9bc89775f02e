//! The client's cache of where partitions are led.

use std::collections::HashMap;

use mq_common::error::LeaderHint;
use mq_common::ids::BrokerId;
use mq_proto::v1 as pb;

#[derive(Debug, Clone, Default)]
pub(crate) struct TopicRoute {
    /// The leading broker of each partition, by partition number, when known.
    pub leaders: Vec<Option<u32>>,
    /// The brokers holding each partition's replicas, by partition number.
    pub replicas: Vec<Vec<u32>>,
}

#[derive(Debug, Clone)]
struct KnownBroker {
    address: String,
    rack: Option<String>,
    alive: bool,
}

#[derive(Debug, Default)]
pub(crate) struct MetadataCache {
    brokers: HashMap<u32, KnownBroker>,
    topics: HashMap<String, TopicRoute>,
}

impl MetadataCache {
    pub fn update(&mut self, metadata: &pb::GetMetadataResponse) {
        for broker in &metadata.brokers {
            self.brokers.insert(
                broker.broker_id,
                KnownBroker {
                    address: broker.address.clone(),
                    rack: broker.rack.clone(),
                    alive: broker.alive,
                },
            );
        }
        for topic in &metadata.topics {
            let count = topic
                .partitions
                .iter()
                .map(|p| p.partition + 1)
                .max()
                .unwrap_or(0);
            let mut leaders = vec![None; count as usize];
            let mut replicas = vec![Vec::new(); count as usize];
            for partition in &topic.partitions {
                leaders[partition.partition as usize] = partition.leader_id;
                replicas[partition.partition as usize] = partition.replica_ids.clone();
            }
            self.topics
                .insert(topic.name.clone(), TopicRoute { leaders, replicas });
        }
    }

    pub fn topic(&self, topic: &str) -> Option<&TopicRoute> {
        self.topics.get(topic)
    }

    /// The leader's address, when the cache knows it.
    pub fn leader_address(&self, topic: &str, partition: u32) -> Option<String> {
        let leader = (*self.topics.get(topic)?.leaders.get(partition as usize)?)?;
        self.brokers.get(&leader).map(|b| b.address.clone())
    }

    /// The address of a live replica of the partition on a broker in `rack`, when the cache
    /// knows one (lowest broker id first, so every consumer in a rack picks the same one).
    pub fn replica_in_rack(&self, topic: &str, partition: u32, rack: &str) -> Option<String> {
        let replicas = self.topics.get(topic)?.replicas.get(partition as usize)?;
        let mut ids: Vec<u32> = replicas.clone();
        ids.sort_unstable();
        ids.iter().find_map(|id| {
            let broker = self.brokers.get(id)?;
            (broker.alive && broker.rack.as_deref() == Some(rack)).then(|| broker.address.clone())
        })
    }

    /// Records a leader learned from a `NOT_LEADER` error.
    pub fn set_leader(&mut self, topic: &str, partition: u32, leader: &LeaderHint) {
        let Some(BrokerId(broker_id)) = leader.broker() else {
            return;
        };
        let rack = self.brokers.get(&broker_id).and_then(|b| b.rack.clone());
        self.brokers.insert(
            broker_id,
            KnownBroker {
                address: leader.address.clone(),
                rack,
                alive: true,
            },
        );
        if let Some(slot) = self
            .topics
            .get_mut(topic)
            .and_then(|route| route.leaders.get_mut(partition as usize))
        {
            *slot = Some(broker_id);
        }
    }

    /// Routes a partition's requests to the replica after its leader (in replica order, round
    /// and round), after the leader answered nothing: for a call only leaders serve, that
    /// replica is the leader already or names it (`NOT_LEADER`), with no detour through the
    /// metadata. Without a known leader or
    /// another replica, forgets the leader instead.
    pub fn try_next_replica(&mut self, topic: &str, partition: u32) {
        let Some(route) = self.topics.get_mut(topic) else {
            return;
        };
        let (Some(slot), Some(replicas)) = (
            route.leaders.get_mut(partition as usize),
            route.replicas.get(partition as usize),
        ) else {
            return;
        };
        *slot = slot.and_then(|leader| {
            let at = replicas.iter().position(|&id| id == leader)?;
            let next = replicas[(at + 1) % replicas.len()];
            (next != leader).then_some(next)
        });
    }

    /// Forgets a partition's leader so the next request refreshes it.
    pub fn forget_leader(&mut self, topic: &str, partition: u32) {
        if let Some(slot) = self
            .topics
            .get_mut(topic)
            .and_then(|route| route.leaders.get_mut(partition as usize))
        {
            *slot = None;
        }
    }

    pub fn forget_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(leader: Option<u32>, replicas: Vec<u32>) -> MetadataCache {
        let mut cache = MetadataCache::default();
        cache.update(&pb::GetMetadataResponse {
            brokers: (1..=3)
                .map(|id| pb::BrokerInfo {
                    broker_id: id,
                    address: format!("127.0.0.{id}:7070"),
                    alive: true,
                    ..Default::default()
                })
                .collect(),
            topics: vec![pb::TopicMetadata {
                name: "orders".into(),
                partitions: vec![pb::PartitionMetadata {
                    partition: 0,
                    leader_id: leader,
                    replica_ids: replicas,
                }],
            }],
        });
        cache
    }

    #[test]
    fn an_unanswering_leader_hands_its_route_to_the_next_replica_round_and_round() {
        let mut cache = cached(Some(2), vec![1, 2, 3]);
        cache.try_next_replica("orders", 0);
        assert_eq!(
            cache.leader_address("orders", 0).as_deref(),
            Some("127.0.0.3:7070")
        );
        cache.try_next_replica("orders", 0);
        assert_eq!(
            cache.leader_address("orders", 0).as_deref(),
            Some("127.0.0.1:7070")
        );

        // A single replica or no known leader: look the leader up again.
        let mut single = cached(Some(1), vec![1]);
        single.try_next_replica("orders", 0);
        assert_eq!(single.leader_address("orders", 0), None);
        let mut unknown = cached(None, vec![1, 2, 3]);
        unknown.try_next_replica("orders", 0);
        assert_eq!(unknown.leader_address("orders", 0), None);
    }
}

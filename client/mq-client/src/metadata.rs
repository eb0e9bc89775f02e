//! The client's cache of where partitions are led.

use std::collections::HashMap;

use mq_common::error::LeaderHint;
use mq_proto::v1 as pb;

#[derive(Debug, Clone, Default)]
pub(crate) struct TopicRoute {
    /// The leading broker of each partition, by partition number, when known.
    pub leaders: Vec<Option<u32>>,
}

#[derive(Debug, Default)]
pub(crate) struct MetadataCache {
    brokers: HashMap<u32, String>,
    topics: HashMap<String, TopicRoute>,
}

impl MetadataCache {
    pub fn update(&mut self, metadata: &pb::GetMetadataResponse) {
        for broker in &metadata.brokers {
            self.brokers
                .insert(broker.broker_id, broker.address.clone());
        }
        for topic in &metadata.topics {
            let count = topic
                .partitions
                .iter()
                .map(|p| p.partition + 1)
                .max()
                .unwrap_or(0);
            let mut leaders = vec![None; count as usize];
            for partition in &topic.partitions {
                leaders[partition.partition as usize] = partition.leader_id;
            }
            self.topics
                .insert(topic.name.clone(), TopicRoute { leaders });
        }
    }

    pub fn topic(&self, topic: &str) -> Option<&TopicRoute> {
        self.topics.get(topic)
    }

    /// The leader's address, when the cache knows it.
    pub fn leader_address(&self, topic: &str, partition: u32) -> Option<String> {
        let leader = (*self.topics.get(topic)?.leaders.get(partition as usize)?)?;
        self.brokers.get(&leader).cloned()
    }

    /// Records a leader learned from a `NOT_LEADER` error.
    pub fn set_leader(&mut self, topic: &str, partition: u32, leader: &LeaderHint) {
        self.brokers
            .insert(leader.broker_id, leader.address.clone());
        if let Some(slot) = self
            .topics
            .get_mut(topic)
            .and_then(|route| route.leaders.get_mut(partition as usize))
        {
            *slot = Some(leader.broker_id);
        }
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

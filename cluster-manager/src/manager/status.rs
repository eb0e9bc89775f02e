//! The cluster at a glance: the managers, the brokers, and the partitions that need attention.

use mq_common::ids::TopicName;

use super::{BrokerView, ClusterManager};

/// A member of the cluster manager's Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerMember {
    pub node_id: u64,
    pub address: String,
    pub voter: bool,
}

/// The cluster at a glance.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub managers: Vec<ManagerMember>,
    pub manager_leader: Option<u64>,
    pub brokers: Vec<BrokerView>,
    pub topics: usize,
    pub partitions: usize,
    /// `(topic, partition)` with fewer in-sync replicas than assigned ones.
    pub under_replicated: Vec<(TopicName, u32)>,
    /// `(topic, partition)` without a known leader.
    pub offline: Vec<(TopicName, u32)>,
}

impl ClusterManager {
    /// Members and leader of the cluster manager, brokers, and partitions that need attention.
    pub fn cluster_status(&self) -> ClusterStatus {
        let managers = self
            .raft
            .members()
            .into_iter()
            .map(|member| ManagerMember {
                node_id: member.node_id,
                address: member.address,
                voter: member.voter,
            })
            .collect();
        let topics = self.list_topics();
        let mut status = ClusterStatus {
            managers,
            manager_leader: self.raft.leader(),
            brokers: self.brokers(),
            topics: topics.len(),
            partitions: 0,
            under_replicated: Vec::new(),
            offline: Vec::new(),
        };
        for topic in &topics {
            let view = self.view(topic);
            for (record, live) in topic.partitions.iter().zip(&view.partitions) {
                status.partitions += 1;
                let at = (topic.name.clone(), record.partition);
                if live.leader.is_none() {
                    status.offline.push(at);
                } else if live.replicas.iter().any(|(in_sync, _)| !in_sync) {
                    status.under_replicated.push(at);
                }
            }
        }
        status
    }
}

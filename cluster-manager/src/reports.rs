//! What brokers told this cluster-manager node (their heartbeats and the replicas they
//! reported), kept in memory on every node, never committed; and the questions the manager
//! and the reconciler ask of it (who is alive, who leads a group, who may take replicas).
//! Time is always passed in, so every question is a pure function of what was reported.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mq_common::ids::{BrokerId, GroupId};

use crate::placement::Candidate;
use crate::state::{BrokerRecord, ClusterState, PartitionRecord, TopicRecord};

/// Entries a replica may trail its leader by and still count as in sync (a busy partition's
/// followers are always a few batches behind the last report).
pub const IN_SYNC_LAG: u64 = 16;

/// What a broker last said about one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaReport {
    pub group: GroupId,
    pub node_id: u64,
    pub leader_node_id: Option<u64>,
    pub term: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub last_log_index: u64,
    pub followers: Vec<(u64, Option<u64>)>,
    /// The group's voters and learners as this replica sees them.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

impl ReplicaReport {
    /// Whether `node` has the leader's log up to a few entries (reported by a leader).
    pub fn in_sync(&self, node: u64) -> bool {
        node == self.node_id
            || self.followers.iter().any(|(id, matched)| {
                *id == node && matched.is_some_and(|m| m + IN_SYNC_LAG >= self.last_log_index)
            })
    }

    /// How many entries `node` trails this leader by, when the leader knows.
    pub fn lag_of(&self, node: u64) -> Option<u64> {
        if node == self.node_id {
            return Some(0);
        }
        let matched = self
            .followers
            .iter()
            .find(|(id, _)| *id == node)
            .and_then(|(_, m)| *m)?;
        Some(self.last_log_index.saturating_sub(matched))
    }

    /// Whether this leader's voters are exactly the assigned replicas of `partition`.
    pub fn settled(&self, partition: &PartitionRecord) -> bool {
        let mut assigned: Vec<u64> = partition.replicas.iter().map(|r| r.node_id).collect();
        let mut voters = self.voters.clone();
        assigned.sort_unstable();
        voters.sort_unstable();
        assigned == voters
    }
}

/// What brokers reported, and what was recently asked of them.
#[derive(Debug)]
pub struct Reports {
    /// A broker silent for this long is dead.
    pub session_timeout: Duration,
    /// A broker dead for this long more is gone for good: its replicas are re-created.
    pub replace_delay: Duration,
    /// Last heartbeat (or registration) and the replicas it reported, per broker.
    pub brokers: HashMap<BrokerId, (Instant, Vec<ReplicaReport>)>,
    /// Replicas asked for recently, not yet seen in a heartbeat: not asked again before then.
    pub requested: HashMap<(BrokerId, GroupId), Instant>,
    /// Leadership transfers asked recently, per group.
    pub transfer_asked: HashMap<GroupId, Instant>,
    /// Since when this node leads (a broker never heard of since counts as last seen then).
    pub leader_since: Option<Instant>,
}

impl Reports {
    pub fn new(session_timeout: Duration, replace_delay: Duration) -> Self {
        Self {
            session_timeout,
            replace_delay,
            brokers: HashMap::new(),
            requested: HashMap::new(),
            transfer_asked: HashMap::new(),
            leader_since: None,
        }
    }

    /// Records a heartbeat: `replicas` is everything `broker` hosts now. Returns whether the
    /// set of hosted replicas changed.
    pub fn heartbeat(
        &mut self,
        broker: BrokerId,
        replicas: Vec<ReplicaReport>,
        now: Instant,
    ) -> bool {
        let changed = self
            .brokers
            .get(&broker)
            .is_none_or(|(_, previous)| hosted_groups(previous) != hosted_groups(&replicas));
        for report in &replicas {
            self.requested.remove(&(broker, report.group));
        }
        self.brokers.insert(broker, (now, replicas));
        changed
    }

    /// Whether `broker` heartbeated within the session timeout.
    pub fn is_alive(&self, broker: BrokerId, now: Instant) -> bool {
        self.brokers
            .get(&broker)
            .is_some_and(|(seen, _)| now.saturating_duration_since(*seen) < self.session_timeout)
    }

    /// Whether `broker` has been dead for longer than the replace delay.
    pub fn gone_for_good(&self, broker: BrokerId, now: Instant) -> bool {
        let last_seen = self
            .brokers
            .get(&broker)
            .map(|(seen, _)| *seen)
            .or(self.leader_since);
        last_seen.is_some_and(|seen| {
            now.saturating_duration_since(seen) > self.session_timeout + self.replace_delay
        })
    }

    /// The registered brokers that are alive.
    pub fn live_brokers<'a>(&self, state: &'a ClusterState, now: Instant) -> Vec<&'a BrokerRecord> {
        state
            .brokers
            .values()
            .filter(|b| self.is_alive(b.id, now))
            .collect()
    }

    /// The report of the group's leader: from a live broker, at the highest term.
    pub fn leader_report(&self, group: GroupId, now: Instant) -> Option<&ReplicaReport> {
        self.brokers
            .iter()
            .filter(|(broker, _)| self.is_alive(**broker, now))
            .flat_map(|(_, (_, replicas))| replicas.iter())
            .filter(|r| r.group == group && r.leader_node_id == Some(r.node_id))
            .max_by_key(|r| r.term)
    }

    /// Every partition whose leader is known, with the leader's report.
    pub fn led_partitions<'a>(
        &'a self,
        state: &'a ClusterState,
        now: Instant,
    ) -> Vec<(&'a TopicRecord, &'a PartitionRecord, &'a ReplicaReport)> {
        state
            .topics
            .values()
            .flat_map(|topic| topic.partitions.iter().map(move |p| (topic, p)))
            .filter_map(|(topic, partition)| {
                let leader = self.leader_report(partition.group, now)?;
                Some((topic, partition, leader))
            })
            .collect()
    }

    /// Whether `broker` reported hosting the replica with Raft node id `node`.
    pub fn hosts(&self, broker: BrokerId, node: u64) -> bool {
        self.brokers
            .get(&broker)
            .is_some_and(|(_, replicas)| replicas.iter().any(|r| r.node_id == node))
    }

    /// Live brokers that may take replicas (not draining), with their load.
    pub fn candidates(&self, state: &ClusterState, now: Instant) -> Vec<Candidate> {
        let counts = state.replica_counts();
        self.live_brokers(state, now)
            .into_iter()
            .filter(|b| !b.draining)
            .map(|b| {
                let (replicas, leaders) = counts.get(&b.id).copied().unwrap_or_default();
                Candidate {
                    id: b.id,
                    rack: b.rack.clone(),
                    replicas,
                    leaders,
                }
            })
            .collect()
    }
}

fn hosted_groups(replicas: &[ReplicaReport]) -> Vec<(GroupId, u64)> {
    let mut groups: Vec<_> = replicas.iter().map(|r| (r.group, r.node_id)).collect();
    groups.sort_unstable();
    groups
}

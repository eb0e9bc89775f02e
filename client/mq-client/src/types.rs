//! The domain types of the data and admin calls: what callers pass and get, converted from
//! and to protobuf here (the group and queue calls have theirs in `groups.rs` and `queues.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use mq_common::records::Record;
use mq_proto::v1 as pb;
use serde::Serialize;

/// A record read back, with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub offset: u64,
    pub record: Record,
}

/// Records fetched from a partition, with its positions.
#[derive(Debug, Clone, Default)]
pub struct FetchBatch {
    pub records: Vec<ConsumedRecord>,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// The offset to fetch next.
    pub next_offset: u64,
}

/// Limits of one fetch (or of each message of a subscription). Zero values mean the server's
/// defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchOptions {
    pub max_records: u32,
    pub max_bytes: u32,
    /// Long poll: wait this long for a first record when none is available yet (fetch only).
    pub max_wait: Duration,
    /// Latest per key: of the records one read covers, only the last of each key is returned
    /// (keyless records all are). For readers that need only each key's newest value and may
    /// fall behind; one that keeps up still gets every record.
    pub coalesce_by_key: bool,
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Offset(u64),
    Earliest,
    Latest,
}

/// What `list_offset` resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose record timestamp (ms since the epoch) is at or after this.
    Timestamp(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartitionOffset {
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: Option<i64>,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

/// Settings of a topic to create; unset fields take the cluster's defaults.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub partitions: Option<u32>,
    pub replication_factor: Option<u32>,
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = Some(partitions);
        self
    }

    pub fn replication_factor(mut self, replication_factor: u32) -> Self {
        self.replication_factor = Some(replication_factor);
        self
    }

    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }

    /// Whether `topic` is what creating this would have made: every setting given here
    /// matches (those left out take any value).
    pub fn describes(&self, topic: &TopicDescription) -> bool {
        self.partitions
            .is_none_or(|partitions| partitions as usize == topic.partitions.len())
            && self
                .replication_factor
                .is_none_or(|factor| factor == topic.replication_factor)
            && self
                .configs
                .iter()
                .all(|(key, value)| topic.configs.get(key) == Some(value))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: String,
    pub replication_factor: u32,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionInfo>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    pub partition: u32,
    pub leader_id: Option<u32>,
    pub replicas: Vec<ReplicaInfo>,
    pub high_watermark: Option<u64>,
    pub log_start_offset: Option<u64>,
    pub group_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaInfo {
    pub broker_id: u32,
    pub address: String,
    pub in_sync: bool,
    pub lag_entries: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerInfo {
    pub broker_id: u32,
    pub address: String,
    pub rack: Option<String>,
    pub alive: bool,
}

/// A broker with its load, as the cluster manager sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerStatus {
    #[serde(flatten)]
    pub broker: BrokerInfo,
    /// Replicas assigned to it.
    pub replicas: u32,
    /// Partitions it leads.
    pub leaders: u32,
    pub last_heartbeat_ms_ago: Option<u64>,
    /// Being decommissioned.
    pub draining: bool,
}

/// A replica move decided by a rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaMove {
    pub topic: String,
    pub partition: u32,
    pub from_broker_id: u32,
    pub to_broker_id: u32,
}

/// A member of the cluster manager's Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerMember {
    pub node_id: u64,
    pub address: String,
    pub voter: bool,
}

/// The cluster at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub managers: Vec<ManagerMember>,
    pub manager_leader_id: Option<u64>,
    pub brokers: Vec<BrokerStatus>,
    pub topics: u32,
    pub partitions: u32,
    /// `(topic, partition)` with a replica out of sync.
    pub under_replicated: Vec<(String, u32)>,
    /// `(topic, partition)` without a leader.
    pub offline: Vec<(String, u32)>,
}

pub(crate) fn broker_status_from_proto(status: pb::BrokerStatus) -> BrokerStatus {
    let broker = status.broker.unwrap_or_default();
    BrokerStatus {
        broker: BrokerInfo {
            broker_id: broker.broker_id,
            address: broker.address,
            rack: broker.rack,
            alive: broker.alive,
        },
        replicas: status.replicas,
        leaders: status.leaders,
        last_heartbeat_ms_ago: status.last_heartbeat_ms_ago,
        draining: status.draining,
    }
}

pub(crate) fn cluster_status_from_proto(status: pb::GetClusterStatusResponse) -> ClusterStatus {
    let refs =
        |refs: Vec<pb::PartitionRef>| refs.into_iter().map(|r| (r.topic, r.partition)).collect();
    ClusterStatus {
        managers: status
            .managers
            .into_iter()
            .map(|m| ManagerMember {
                node_id: m.node_id,
                address: m.address,
                voter: m.voter,
            })
            .collect(),
        manager_leader_id: status.manager_leader_id,
        brokers: status
            .brokers
            .into_iter()
            .map(broker_status_from_proto)
            .collect(),
        topics: status.topics,
        partitions: status.partitions,
        under_replicated: refs(status.under_replicated),
        offline: refs(status.offline),
    }
}

pub(crate) fn consumed_from_proto(record: pb::ConsumedRecord) -> ConsumedRecord {
    let (offset, record) = mq_common::records::proto::from_consumed(record);
    ConsumedRecord { offset, record }
}

pub(crate) fn description_from_proto(topic: pb::TopicDescription) -> TopicDescription {
    TopicDescription {
        name: topic.name,
        topic_id: topic.topic_id,
        replication_factor: topic.replication_factor,
        configs: topic.configs.into_iter().collect(),
        created_at_ms: topic.created_at_ms,
        partitions: topic
            .partitions
            .into_iter()
            .map(|p| PartitionInfo {
                partition: p.partition,
                leader_id: p.leader_id,
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
                group_id: p.group_id,
                replicas: p
                    .replicas
                    .into_iter()
                    .map(|r| ReplicaInfo {
                        broker_id: r.broker_id,
                        address: r.address,
                        in_sync: r.in_sync,
                        lag_entries: r.lag_entries,
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(
        partitions: u32,
        replication_factor: u32,
        configs: &[(&str, &str)],
    ) -> TopicDescription {
        TopicDescription {
            name: "prices".into(),
            topic_id: "id".into(),
            replication_factor,
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            partitions: (0..partitions)
                .map(|partition| PartitionInfo {
                    partition,
                    leader_id: None,
                    replicas: Vec::new(),
                    high_watermark: None,
                    log_start_offset: None,
                    group_id: u64::from(partition),
                })
                .collect(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_new_topic_describes_a_topic_matching_every_setting_it_gives() {
        let existing = topic(
            3,
            2,
            &[("retention.ms", "60000"), ("cleanup.policy", "delete")],
        );
        assert!(NewTopic::default().describes(&existing));
        assert!(
            NewTopic::default()
                .partitions(3)
                .replication_factor(2)
                .config("retention.ms", "60000")
                .describes(&existing)
        );
        assert!(!NewTopic::default().partitions(4).describes(&existing));
        assert!(
            !NewTopic::default()
                .replication_factor(3)
                .describes(&existing)
        );
        assert!(
            !NewTopic::default()
                .config("retention.ms", "1")
                .describes(&existing)
        );
        assert!(
            !NewTopic::default()
                .config("segment.bytes", "1")
                .describes(&existing)
        );
    }
}

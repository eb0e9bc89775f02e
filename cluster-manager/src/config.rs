//! The cluster manager's settings (`[cluster_manager]` in the standalone broker's config).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest record by default (topic config `max.message.bytes`).
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1 << 20;
/// Largest `max.message.bytes` a topic may set.
pub const MAX_MAX_MESSAGE_BYTES: u32 = 16 << 20;
/// Most partitions one topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterManagerConfig {
    /// This node's id in the cluster manager's Raft group.
    pub node_id: u64,
    /// Replication factor of topics created without one.
    pub default_replication_factor: u32,
    /// A broker that has not heartbeated for this long is dead.
    #[serde(with = "humantime_serde")]
    pub broker_session_timeout: Duration,
    /// How often the leader checks that brokers host exactly their assigned replicas.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// How long CreateTopic waits for the new partitions to elect leaders.
    #[serde(with = "humantime_serde")]
    pub create_topic_wait: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
}

impl Default for ClusterManagerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            default_replication_factor: 1,
            broker_session_timeout: Duration::from_secs(10),
            reconcile_interval: Duration::from_secs(2),
            create_topic_wait: Duration::from_secs(5),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
        }
    }
}

impl ClusterManagerConfig {
    /// The openraft config of the cluster manager's group, validated.
    pub fn raft_config(&self) -> Result<openraft::Config, String> {
        openraft::Config {
            cluster_name: "cluster-manager".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min: self.election_timeout_min.as_millis() as u64,
            election_timeout_max: self.election_timeout_max.as_millis() as u64,
            enable_pre_vote: Some(true),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
            max_in_snapshot_log_to_keep: 1_000,
            ..Default::default()
        }
        .validate()
        .map_err(|err| err.to_string())
    }
}

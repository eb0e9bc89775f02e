//! The cluster manager's settings: the `[cluster_manager]` section of a cluster-manager
//! node's config file (and of a standalone broker's).

use std::collections::BTreeMap;
use std::time::Duration;

use mq_raft::{GroupConfig, InvalidTimings, RaftTimings};
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
    /// The group's voters on first start, `ID=HOST:PORT` each, the same list on every voter
    /// (this node's own entry included). Empty: this node alone (standalone mode).
    pub voters: Vec<String>,
    /// Replication factor of topics created without one.
    pub default_replication_factor: u32,
    /// A broker that has not heartbeated for this long is dead.
    #[serde(with = "humantime_serde")]
    pub broker_session_timeout: Duration,
    /// A broker dead for this long has its replicas re-created on live brokers.
    #[serde(with = "humantime_serde")]
    pub replace_delay: Duration,
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
            voters: Vec::new(),
            default_replication_factor: 1,
            broker_session_timeout: Duration::from_secs(10),
            replace_delay: Duration::from_secs(60),
            reconcile_interval: Duration::from_secs(2),
            create_topic_wait: Duration::from_secs(5),
            heartbeat_interval: RaftTimings::CONTROL.heartbeat_interval,
            election_timeout_min: RaftTimings::CONTROL.election_timeout_min,
            election_timeout_max: RaftTimings::CONTROL.election_timeout_max,
        }
    }
}

impl ClusterManagerConfig {
    /// The initial voters by node id, checked: well-formed, distinct, including this node.
    /// Empty when `voters` is.
    pub fn initial_voters(&self) -> Result<BTreeMap<u64, String>, String> {
        let mut voters = BTreeMap::new();
        for (i, entry) in self.voters.iter().enumerate() {
            let field = format!("cluster_manager.voters[{i}]");
            let (id, address) = entry
                .split_once('=')
                .ok_or_else(|| format!("{field}: expected ID=HOST:PORT, got '{entry}'"))?;
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| format!("{field}: '{id}' is not a node id"))?;
            let address = address.trim();
            if address.is_empty() || !address.contains(':') {
                return Err(format!("{field}: '{address}' is not HOST:PORT"));
            }
            if voters.insert(id, address.to_owned()).is_some() {
                return Err(format!("{field}: node id {id} is listed twice"));
            }
        }
        if !voters.is_empty() && !voters.contains_key(&self.node_id) {
            return Err(format!(
                "cluster_manager.voters does not list this node (cluster_manager.node_id = {})",
                self.node_id
            ));
        }
        Ok(voters)
    }

    /// The Raft timers of the cluster manager's group (the consumer manager's group runs on
    /// the same voters with the same timers).
    pub fn raft_timings(&self) -> RaftTimings {
        RaftTimings {
            heartbeat_interval: self.heartbeat_interval,
            election_timeout_min: self.election_timeout_min,
            election_timeout_max: self.election_timeout_max,
            quiesce_after: Duration::ZERO,
        }
    }

    /// The cluster manager's group config, validated.
    pub fn group_config(&self) -> Result<GroupConfig, InvalidTimings> {
        GroupConfig::control("cluster-manager", &self.raft_timings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_voters(node_id: u64, voters: &[&str]) -> ClusterManagerConfig {
        ClusterManagerConfig {
            node_id,
            voters: voters.iter().map(|v| (*v).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn voters_are_parsed_and_checked() {
        let voters = with_voters(2, &["1=127.0.0.1:1", " 2 = 127.0.0.2:2"])
            .initial_voters()
            .unwrap();
        assert_eq!(voters[&2], "127.0.0.2:2");
        assert!(with_voters(1, &[]).initial_voters().unwrap().is_empty());
        for (node, bad, needle) in [
            (1, vec!["1"], "voters[0]"),
            (1, vec!["x=h:1"], "not a node id"),
            (1, vec!["1=h:1", "1=h:2"], "twice"),
            (3, vec!["1=h:1"], "does not list this node"),
            (1, vec!["1=nohost"], "HOST:PORT"),
        ] {
            let err = with_voters(node, &bad).initial_voters().unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn default_timings_are_valid() {
        ClusterManagerConfig::default().group_config().unwrap();
    }
}

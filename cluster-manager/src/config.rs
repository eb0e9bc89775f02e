//! The cluster manager's settings (`[cluster_manager]` in the standalone broker's config).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mq_common::server::ServerConfig;
use mq_raft::StoreOptions;
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
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
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

    /// The openraft config of the cluster manager's group, validated.
    /// The consumer manager's Raft group runs on the same voters with the same timers.
    pub fn consumer_manager_settings(
        &self,
    ) -> Result<mq_consumer_manager::ConsumerManagerSettings, String> {
        Ok(mq_consumer_manager::ConsumerManagerSettings {
            node_id: self.node_id,
            voters: self.initial_voters()?,
            raft: self.raft_config()?,
        })
    }

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

/// The `mq-cluster-manager` binary's config file; every key overridable by
/// `MQ_<SECTION>__<KEY>` and flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagerNodeConfig {
    /// Where the node keeps its data (one RocksDB).
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub storage: StoreOptions,
    pub cluster_manager: ClusterManagerConfig,
}

/// The cluster manager's default client port.
pub const DEFAULT_MANAGER_LISTEN: &str = "127.0.0.1:7080";

impl Default for ManagerNodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data-cm"),
            server: ServerConfig::new(DEFAULT_MANAGER_LISTEN.parse().expect("valid address")),
            storage: StoreOptions::default(),
            cluster_manager: ClusterManagerConfig::default(),
        }
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
    fn the_deploy_example_parses() {
        let text = include_str!("../../deploy/cluster-manager.example.toml");
        let config: ManagerNodeConfig = mq_common::config::parse_toml(text).unwrap();
        assert_eq!(config.cluster_manager.initial_voters().unwrap().len(), 3);
        config.cluster_manager.raft_config().unwrap();
    }
}

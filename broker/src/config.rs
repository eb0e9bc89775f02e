//! The broker's config file (`mq-broker --config FILE`), every key overridable by
//! `MQ_<SECTION>__<KEY>` and by flags. Defaults are the standalone node's embedded config.

use std::path::PathBuf;
use std::time::Duration;

pub use mq_common::server::{DEFAULT_LISTEN, ServerConfig};
use mq_raft::StoreOptions;
use serde::{Deserialize, Serialize};

pub const DEFAULT_DATA_DIR: &str = "./data";
pub const MIB: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub node: NodeConfig,
    pub server: ServerConfig,
    pub cluster: ClusterConfig,
    pub storage: StoreOptions,
    pub raft: RaftTimings,
    pub limits: Limits,
    pub retention: RetentionSettings,
    /// The embedded cluster manager's settings (standalone mode only).
    pub cluster_manager: mq_cluster_manager::ClusterManagerConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Run broker and cluster manager in one process (`--standalone`).
    pub standalone: bool,
    /// This broker's id, unique in the cluster.
    pub broker_id: u32,
    /// Where the node keeps its data (one RocksDB).
    pub data_dir: PathBuf,
    /// The rack (or zone) of this broker, for rack-aware placement.
    pub rack: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            standalone: false,
            broker_id: 1,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            rack: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster-manager addresses (host:port). Empty in standalone mode: the node's own.
    pub manager_addresses: Vec<String>,
    /// How often the broker heartbeats to the cluster manager.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// On SIGTERM, how long the broker waits for the partitions it leads to move to other
    /// replicas before it stops.
    #[serde(with = "humantime_serde")]
    pub leadership_handoff_timeout: Duration,
    /// Detection of dead partition leaders (fast failover).
    pub peer_watch: crate::peer_watch::PeerWatchConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            manager_addresses: Vec::new(),
            heartbeat_interval: Duration::from_secs(1),
            leadership_handoff_timeout: Duration::from_secs(10),
            peer_watch: crate::peer_watch::PeerWatchConfig::default(),
        }
    }
}

/// Raft timers of partition groups. Relaxed on purpose: every partition is a group, and
/// openraft ticks and heartbeats per group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTimings {
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
}

impl Default for RaftTimings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(500),
            election_timeout_min: Duration::from_millis(1500),
            election_timeout_max: Duration::from_millis(3000),
        }
    }
}

impl RaftTimings {
    /// The openraft config of partition groups, validated.
    pub fn partition_config(&self) -> Result<openraft::Config, String> {
        let heartbeat = self.heartbeat_interval.as_millis() as u64;
        let config = openraft::Config {
            cluster_name: "partition".into(),
            heartbeat_interval: heartbeat,
            election_timeout_min: self.election_timeout_min.as_millis() as u64,
            election_timeout_max: self.election_timeout_max.as_millis() as u64,
            // Skip a heartbeat to a follower that acknowledged anything recently.
            heartbeat_min_interval: Some(heartbeat / 2),
            enable_pre_vote: Some(true),
            // Snapshots are driven by retention (metadata only, at the retention point).
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: 0,
            // Entries are producer batches of up to `max_batch_bytes`.
            max_payload_entries: 8,
            ..Default::default()
        };
        config.validate().map_err(|err| err.to_string())
    }
}

/// How retention is enforced (the limits themselves are topic configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// How often each replica checks its partition's retention limits.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(30),
        }
    }
}

/// Request and size limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest gRPC message accepted, bytes.
    pub max_request_bytes: usize,
    /// Largest batch of records for one partition (one Raft entry), bytes.
    pub max_batch_bytes: usize,
    /// Fetch size when the request says 0, bytes.
    pub default_fetch_bytes: usize,
    /// Largest fetch size a request may ask for, bytes.
    pub max_fetch_bytes: usize,
    /// Bytes all subscriptions together may push ahead of their clients; past it, pushes
    /// shrink to 16 KiB until clients take what was pushed (see `push_budget`).
    pub push_budget_bytes: usize,
    /// Records per fetch when the request says 0.
    pub default_fetch_records: usize,
    /// Longest long-poll wait.
    #[serde(with = "humantime_serde")]
    pub max_fetch_wait: Duration,
    /// Produce timeout when the request says 0.
    #[serde(with = "humantime_serde")]
    pub default_produce_timeout: Duration,
    /// Longest produce timeout a request may ask for.
    #[serde(with = "humantime_serde")]
    pub max_produce_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 64 * MIB,
            max_batch_bytes: 32 * MIB,
            default_fetch_bytes: 4 * MIB,
            max_fetch_bytes: 32 * MIB,
            push_budget_bytes: 128 * MIB,
            default_fetch_records: 10_000,
            max_fetch_wait: Duration::from_secs(60),
            default_produce_timeout: Duration::from_secs(30),
            max_produce_timeout: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_standalone_embedded_config() {
        let config = BrokerConfig::default();
        assert_eq!(config.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.node.data_dir, PathBuf::from("./data"));
        assert!(config.storage.fsync);
        config.raft.partition_config().unwrap();
    }

    #[test]
    fn the_deploy_example_parses_and_sets_what_it_says() {
        let text = include_str!("../../deploy/broker.example.toml");
        let config: BrokerConfig = mq_common::config::parse_toml(text).unwrap();
        assert!(config.node.standalone);
        assert_eq!(config.node.data_dir, PathBuf::from("/var/lib/mq"));
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(config.cluster_manager.default_replication_factor, 1);
        assert!(config.storage.fsync);
        config.raft.partition_config().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = mq_common::config::parse_toml::<BrokerConfig>("[storage]\nfsyn = false\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("fsyn"), "{err}");
    }
}

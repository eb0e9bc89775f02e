//! The broker's sections of its node's config file (`[cluster]`, `[raft]`, `[limits]`,
//! `[retention]`; the file itself is `mq-node`'s), and [`BrokerSettings`], what
//! [`crate::runtime::start`] takes.

use std::time::Duration;

pub use mq_raft::RaftTimings;
use serde::{Deserialize, Serialize};

pub const MIB: usize = 1 << 20;

/// What the broker needs to run, from its node's config file.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSettings {
    /// This broker's id, unique in the cluster.
    pub broker_id: u32,
    /// The rack (or zone) of this broker, for rack-aware placement.
    pub rack: Option<String>,
    pub cluster: ClusterConfig,
    /// Raft timers of partition groups.
    pub raft: RaftTimings,
    pub limits: Limits,
    pub retention: RetentionSettings,
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
    fn default_partition_timings_are_valid() {
        mq_raft::GroupConfig::partition(&RaftTimings::default()).unwrap();
    }
}

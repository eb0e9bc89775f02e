//! A group's openraft settings, built here from plain timings so that no service names
//! `openraft::Config`. Two kinds of group: partitions (many per node, relaxed timers, snapshots
//! only at retention points) and control-plane groups (one each, fast timers, snapshots every
//! so many entries).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Raft timers of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTimings {
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// A group with no writes for this long, whose followers all hold its whole log, stops
    /// ticking on every replica (no heartbeats, no election timers) until a write, a vote or
    /// its leader's death wakes it; one message per node pair and round keeps it quiet
    /// (`quiesce.rs`). Zero: never.
    #[serde(with = "humantime_serde")]
    pub quiesce_after: Duration,
}

impl RaftTimings {
    /// Partition groups: relaxed on purpose, since every partition is a group and openraft
    /// ticks and heartbeats per group.
    pub const PARTITION: Self = Self {
        heartbeat_interval: Duration::from_millis(500),
        election_timeout_min: Duration::from_millis(1500),
        election_timeout_max: Duration::from_millis(3000),
        quiesce_after: Duration::from_secs(3),
    };

    /// Control-plane groups: one per role, so they can afford fast failover.
    pub const CONTROL: Self = Self {
        heartbeat_interval: Duration::from_millis(100),
        election_timeout_min: Duration::from_millis(500),
        election_timeout_max: Duration::from_millis(1000),
        quiesce_after: Duration::ZERO,
    };
}

impl Default for RaftTimings {
    fn default() -> Self {
        Self::PARTITION
    }
}

/// Timings openraft refuses (e.g. an election timeout not above the heartbeat interval).
#[derive(Debug, thiserror::Error)]
#[error("invalid raft timings for {group_kind} groups: {reason}")]
pub struct InvalidTimings {
    pub group_kind: String,
    pub reason: String,
}

/// A validated openraft config, shared by every group started with it.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    openraft: Arc<openraft::Config>,
    /// See [`RaftTimings::quiesce_after`]; zero for groups that never quiesce.
    quiesce_after: Duration,
}

impl GroupConfig {
    /// The config of partition groups.
    pub fn partition(timings: &RaftTimings) -> Result<Self, InvalidTimings> {
        let heartbeat = millis(timings.heartbeat_interval);
        let mut config = Self::validated(openraft::Config {
            cluster_name: "partition".into(),
            heartbeat_interval: heartbeat,
            election_timeout_min: millis(timings.election_timeout_min),
            election_timeout_max: millis(timings.election_timeout_max),
            // Skip a heartbeat to a follower that acknowledged anything recently.
            heartbeat_min_interval: Some(heartbeat / 2),
            enable_pre_vote: Some(true),
            // Snapshots are driven by retention (metadata only, at the retention point).
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: 0,
            // Entries are producer batches: the transport cuts an AppendEntries at
            // `MAX_APPEND_BYTES`, so this only bounds a run of small batches (a follower
            // catching up on a paced producer's one-record batches takes 256 per round trip).
            max_payload_entries: 256,
            ..Default::default()
        })?;
        config.quiesce_after = timings.quiesce_after;
        Ok(config)
    }

    /// The config of a control-plane group (`name` tells them apart in openraft's logs).
    pub fn control(name: &str, timings: &RaftTimings) -> Result<Self, InvalidTimings> {
        Self::validated(openraft::Config {
            cluster_name: name.into(),
            heartbeat_interval: millis(timings.heartbeat_interval),
            election_timeout_min: millis(timings.election_timeout_min),
            election_timeout_max: millis(timings.election_timeout_max),
            enable_pre_vote: Some(true),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
            max_in_snapshot_log_to_keep: 1_000,
            ..Default::default()
        })
    }

    fn validated(config: openraft::Config) -> Result<Self, InvalidTimings> {
        let group_kind = config.cluster_name.clone();
        config
            .validate()
            .map(|config| Self {
                openraft: Arc::new(config),
                quiesce_after: Duration::ZERO,
            })
            .map_err(|err| InvalidTimings {
                group_kind,
                reason: err.to_string(),
            })
    }

    pub(crate) fn openraft(&self) -> Arc<openraft::Config> {
        self.openraft.clone()
    }

    /// How long a group stays idle before it quiesces, when it may.
    pub(crate) fn quiesce_after(&self) -> Option<Duration> {
        (!self.quiesce_after.is_zero()).then_some(self.quiesce_after)
    }

    /// How long an accepted quiescence offer stands in for the leader's lease: the shortest
    /// election timeout, as a follower's lease.
    pub(crate) fn quiet_lease(&self) -> Duration {
        Duration::from_millis(self.openraft.election_timeout_min)
    }

    /// The kind of group (`partition`, or the control-plane group's name), for metrics.
    pub(crate) fn kind(&self) -> Arc<str> {
        Arc::from(self.openraft.cluster_name.as_str())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_timings_are_refused() {
        GroupConfig::partition(&RaftTimings::PARTITION).unwrap();
        GroupConfig::control("cluster-manager", &RaftTimings::CONTROL).unwrap();
        let bad = RaftTimings {
            heartbeat_interval: Duration::from_millis(500),
            election_timeout_min: Duration::from_millis(400),
            election_timeout_max: Duration::from_millis(300),
            quiesce_after: Duration::ZERO,
        };
        let err = GroupConfig::partition(&bad).unwrap_err();
        assert!(err.to_string().contains("partition"), "{err}");
    }
}

//! One partition replica: a Raft group whose log is the partition log.
//!
//! The Raft module (openraft is named here and nowhere else in the broker):
//! - [`types`]: the openraft type config and the entry payload.
//! - [`state_machine`]: applying entries (offsets, offset index, high watermark).
//!
//! The replica's operations, one file each, over the group's [`mq_raft::RaftGroup`]:
//! - this file: the replica (start, status, reads) and its spec;
//! - [`append`]: appends, with the idempotent producers' sequencer ([`producers`]);
//! - [`leadership`]: who leads, transfers, and electing a successor of a dead leader;
//! - [`membership`]: making the assigned replicas the group's voters;
//! - [`maintenance`]: the retention and compaction drivers ([`retention`] and [`compaction`]
//!   decide, purely);
//! - [`read`]: reading records and resolving timestamps.
//!
//! [`Partition`] is a cheap handle: writes go to the Raft group (their single owner) and the
//! caller awaits the reply, so a dropped request never leaves half a write; reads go straight
//! to storage below the published high watermark.

mod append;
pub mod compaction;
mod leadership;
mod maintenance;
mod membership;
pub mod producers;
pub mod read;
pub mod retention;
pub mod state_machine;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mq_common::error::LeaderHint;
use mq_common::ids::{GroupId, PartitionId, TopicName, broker_of_node};
use mq_raft::disk::DiskGuard;
use mq_raft::{GroupConfig, GroupContext, GroupError, GroupSpec, Leader, RocksLogStore, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument;

#[cfg(feature = "chaos-hooks")]
pub use self::append::UNSAFE_ACK_BEFORE_COMMIT;
use self::read::{PartitionReader, ReadLimits, ReadResult};
use self::state_machine::{PartitionStateMachine, Progress};
use self::types::{PartitionGroup, PartitionTypes};
use crate::error::BrokerError;

/// A member of a partition's Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub broker_id: u32,
    pub address: String,
}

/// Everything needed to host one replica; persisted by the broker so replicas come back on
/// restart without asking the cluster manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSpec {
    pub group: GroupId,
    pub topic: TopicName,
    pub topic_id: String,
    pub partition: PartitionId,
    pub partition_count: u32,
    /// This replica's Raft node id.
    pub node_id: u64,
    /// Voters at creation, by Raft node id.
    pub members: BTreeMap<u64, Member>,
    /// Whether this replica initializes the group with `members`.
    pub bootstrap: bool,
    pub max_message_bytes: u32,
    /// How long and how much data the partition keeps.
    #[serde(default)]
    pub retention: retention::Retention,
    /// Compacted topic: keep the latest record of each key.
    #[serde(default)]
    pub compaction: Option<compaction::Compaction>,
}

/// What a replica reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub node_id: u64,
    pub leader_node_id: Option<u64>,
    pub term: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub last_log_index: u64,
    /// On the leader: each follower's last replicated log index.
    pub followers: Vec<(u64, Option<u64>)>,
    /// Voters and learners of the effective membership.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// Shared by every partition of a broker.
#[derive(Debug, Clone)]
pub struct PartitionContext {
    /// The node's store, transport and group registry.
    pub group: GroupContext,
    pub raft_config: GroupConfig,
    /// How often each replica checks its retention limits.
    pub retention_check_interval: Duration,
    /// Free space of the data directory: replication to this replica pauses below its reserve.
    pub disk: DiskGuard,
}

pub struct Partition {
    spec: ReplicaSpec,
    raft: PartitionGroup,
    log: RocksLogStore<PartitionTypes>,
    store: Store,
    progress: watch::Receiver<Progress>,
    sequencer: producers::Sequencer,
    applied_sequences: Arc<producers::AppliedSequences>,
    retention_target: state_machine::RetentionTarget,
    /// The high watermark of the last compaction, and whether it kept tombstones that will
    /// expire (a pass is due when either says so).
    compacted: std::sync::Mutex<(u64, bool)>,
    #[cfg(feature = "chaos-hooks")]
    unsafe_pending: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("group", &self.spec.group)
            .field("topic", &self.spec.topic)
            .field("partition", &self.spec.partition)
            .finish()
    }
}

impl Partition {
    /// Starts the replica's Raft group (recovering its state from the store) and registers it
    /// with the transport. A bootstrap replica initializes a new group.
    pub async fn start(
        context: &PartitionContext,
        spec: ReplicaSpec,
    ) -> Result<Arc<Self>, BrokerError> {
        let span = tracing::info_span!("partition", group = %spec.group, topic = %spec.topic, partition = %spec.partition);
        async {
            let store = context.group.store.clone();
            let log = RocksLogStore::<PartitionTypes>::new(store.clone(), spec.group);
            let state_machine = PartitionStateMachine::open(store.clone(), log.clone())?;
            let progress = state_machine.progress();
            let applied_sequences = state_machine.applied_sequences();
            let retention_target = state_machine.retention_target();
            let group_spec = GroupSpec {
                group: spec.group,
                node_id: spec.node_id,
                config: context.raft_config.clone(),
                bootstrap: spec.bootstrap.then(|| {
                    spec.members
                        .iter()
                        .map(|(id, member)| (*id, member.address.clone()))
                        .collect()
                }),
                disk: context.disk.clone(),
            };
            let raft =
                PartitionGroup::start(&context.group, group_spec, log.clone(), state_machine)
                    .await
                    .map_err(BrokerError::Raft)?;
            tracing::info!(
                high_watermark = progress.borrow().high_watermark,
                "replica started"
            );
            let partition = Arc::new(Self {
                log,
                store,
                raft,
                progress,
                spec,
                sequencer: producers::Sequencer::default(),
                applied_sequences,
                retention_target,
                compacted: std::sync::Mutex::new((0, false)),
                #[cfg(feature = "chaos-hooks")]
                unsafe_pending: std::sync::atomic::AtomicU64::new(0),
            });
            if !partition.spec.retention.is_unlimited() || partition.spec.compaction.is_some() {
                let task =
                    maintenance::run(Arc::downgrade(&partition), context.retention_check_interval);
                tokio::spawn(task.in_current_span());
            }
            Ok(partition)
        }
        .instrument(span)
        .await
    }

    pub fn spec(&self) -> &ReplicaSpec {
        &self.spec
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// A receiver that changes with every apply (for subscriptions).
    pub fn watch_progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Waits until the high watermark passes `offset`, or `max_wait` elapses, or the replica
    /// stops. Returns the progress then.
    pub async fn wait_beyond(&self, offset: u64, max_wait: Duration) -> Progress {
        let mut progress = self.progress.clone();
        let wait = progress.wait_for(|p| p.high_watermark > offset);
        match tokio::time::timeout(max_wait, wait).await {
            Ok(Ok(progress)) => *progress,
            _ => self.progress(),
        }
    }

    /// Reads records from `offset` (which must be within the stored range).
    pub async fn read(
        self: &Arc<Self>,
        offset: u64,
        limits: ReadLimits,
    ) -> Result<(ReadResult, Progress), BrokerError> {
        let progress = self.check_offset(offset)?;
        let partition = self.clone();
        let result = mq_raft::blocking::spawn("read", move || {
            partition
                .reader()
                .read(offset, progress.high_watermark, limits)
        })
        .await
        .map_err(|err| BrokerError::Io(std::io::Error::other(err)))?
        .map_err(|err| self.read_error(err));
        // Retention moves the log start before it deletes: a read that overlapped a deletion
        // finds the offset out of range now, and must not return what it saw.
        self.check_offset(offset)?;
        Ok((result?, progress))
    }

    /// The first offset with a timestamp at or after `timestamp_ms` (and that timestamp), or
    /// the high watermark when none.
    pub async fn offset_for_timestamp(
        self: &Arc<Self>,
        timestamp_ms: i64,
    ) -> Result<(u64, Option<i64>, Progress), BrokerError> {
        let progress = self.progress();
        let partition = self.clone();
        let found = mq_raft::blocking::spawn("offset_for_timestamp", move || {
            partition.reader().offset_for_timestamp(
                timestamp_ms,
                progress.log_start_offset,
                progress.high_watermark,
            )
        })
        .await
        .map_err(|err| BrokerError::Io(std::io::Error::other(err)))?
        .map_err(|err| self.read_error(err))?;
        Ok(match found {
            Some((offset, timestamp)) => (offset, Some(timestamp), progress),
            None => (progress.high_watermark, None, progress),
        })
    }

    /// The progress, if `offset` is within `log_start_offset..=high_watermark`.
    pub fn check_offset(&self, offset: u64) -> Result<Progress, BrokerError> {
        let progress = self.progress();
        check_range(
            self.spec.topic.as_str(),
            self.spec.partition.0,
            offset,
            progress,
        )?;
        Ok(progress)
    }

    fn reader(&self) -> PartitionReader<'_> {
        PartitionReader {
            store: &self.store,
            log: &self.log,
            group: self.spec.group,
        }
    }

    /// The replica's state, from its group and the published progress.
    pub fn status(&self) -> ReplicaStatus {
        let status = self.raft.status();
        let progress = self.progress();
        ReplicaStatus {
            node_id: self.spec.node_id,
            leader_node_id: status.leader,
            term: status.term,
            high_watermark: progress.high_watermark,
            log_start_offset: progress.log_start_offset,
            last_log_index: status.last_log_index.unwrap_or(0),
            followers: status.replication,
            voters: status.voters,
            learners: status.learners,
        }
    }

    /// Stops the Raft group. The replica's data stays unless the caller deletes it.
    pub async fn shutdown(&self) {
        self.raft.shutdown().await;
    }

    /// A group error as this partition reports it: not-leader answers name the leading broker.
    fn group_error(&self, error: GroupError) -> BrokerError {
        let (topic, partition) = (self.spec.topic.to_string(), self.spec.partition.0);
        match error {
            GroupError::NotLeader {
                leader: Leader { node_id, address },
                ..
            } => BrokerError::NotLeader {
                topic,
                partition,
                leader: Some(LeaderHint {
                    id: u64::from(broker_of_node(node_id).0),
                    address,
                }),
            },
            GroupError::LeaderNotAvailable { .. } => {
                BrokerError::LeaderNotAvailable { topic, partition }
            }
            other => BrokerError::Raft(other),
        }
    }

    fn read_error(&self, error: read::ReadError) -> BrokerError {
        BrokerError::from_read(self.spec.topic.as_str(), self.spec.partition.0, error)
    }

    fn timeout(&self, timeout: Duration) -> BrokerError {
        BrokerError::Timeout {
            topic: self.spec.topic.to_string(),
            partition: self.spec.partition.0,
            timeout,
        }
    }
}

/// `Ok` when `offset` is readable or the next to be written: within
/// `log_start_offset..=high_watermark`.
pub fn check_range(
    topic: &str,
    partition: u32,
    offset: u64,
    progress: Progress,
) -> Result<(), BrokerError> {
    if offset < progress.log_start_offset || offset > progress.high_watermark {
        return Err(BrokerError::OffsetOutOfRange {
            topic: topic.to_owned(),
            partition,
            offset,
            log_start_offset: progress.log_start_offset,
            high_watermark: progress.high_watermark,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mq_common::error::{ApiError, ErrorCode};

    use super::*;

    #[test]
    fn offsets_outside_the_stored_range_are_out_of_range() {
        let progress = Progress {
            high_watermark: 100,
            log_start_offset: 40,
        };
        for offset in [40, 70, 100] {
            assert!(check_range("t", 0, offset, progress).is_ok(), "{offset}");
        }
        for offset in [0, 39, 101, u64::MAX] {
            let err = check_range("t", 0, offset, progress).unwrap_err();
            let api = ApiError::from(&err);
            assert_eq!(api.code, ErrorCode::OffsetOutOfRange);
            assert_eq!(api.code.grpc_code(), tonic::Code::OutOfRange);
            assert!(api.message.contains("40..=100"), "{}", api.message);
        }
    }
}

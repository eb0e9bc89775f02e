//! One partition replica: a Raft group whose log is the partition log.
//!
//! - [`types`]: the openraft type config and the entry payload.
//! - [`state_machine`]: applying entries (offsets, offset index, high watermark).
//! - [`read`]: reading records and resolving timestamps.
//!
//! [`Partition`] is a cheap handle: writes go to the Raft group (their single owner) and the
//! caller awaits the reply, so a dropped request never leaves half a write; reads go straight
//! to storage below the published high watermark.

pub mod compaction;
pub mod producers;
pub mod read;
pub mod retention;
pub mod state_machine;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mq_common::clock::now_ms;
use mq_common::error::LeaderHint;
use mq_common::ids::{GroupId, PartitionId, TopicName, broker_of_node};
use mq_raft::disk::DiskGuard;
use mq_raft::transport::{GroupRegistry, GrpcNetworkFactory, Peers, RaftGroupRpc};
use mq_raft::{RocksLogStore, Store};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::impls::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument;

use self::read::{PartitionReader, ReadLimits, ReadResult};
use self::state_machine::{PartitionStateMachine, Progress};
use self::types::{Appended, ApplyResult, PartitionCommand, PartitionRaft, PartitionTypes};
use crate::batch::StoredBatch;
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
    pub store: Store,
    pub peers: Arc<Peers>,
    pub registry: GroupRegistry,
    pub raft_config: Arc<openraft::Config>,
    /// How often each replica checks its retention limits.
    pub retention_check_interval: Duration,
    /// Free space of the data directory: replication to this replica pauses below its reserve.
    pub disk: DiskGuard,
}

pub struct Partition {
    spec: ReplicaSpec,
    raft: PartitionRaft,
    log: RocksLogStore<PartitionTypes>,
    store: Store,
    progress: watch::Receiver<Progress>,
    sequencer: producers::Sequencer,
    applied_sequences: producers::AppliedSequences,
    retention_target: state_machine::RetentionTarget,
    /// The high watermark of the last compaction, and whether it kept tombstones that will
    /// expire (a pass is due when either says so).
    compacted: std::sync::Mutex<(u64, bool)>,
    /// Records acknowledged but not yet committed; only with [`UNSAFE_ACK_BEFORE_COMMIT`].
    unsafe_pending: std::sync::atomic::AtomicU64,
}

/// The environment variable that breaks the broker on purpose, for the chaos suite's proof
/// that its checker catches lost writes: a batch without a producer id is acknowledged
/// before it is committed, at the offset it would probably get. Never set it elsewhere.
pub const UNSAFE_ACK_BEFORE_COMMIT: &str = "MQ_TEST_UNSAFE_ACK_BEFORE_COMMIT";

static ACK_BEFORE_COMMIT: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
    let on = std::env::var_os(UNSAFE_ACK_BEFORE_COMMIT).is_some();
    if on {
        tracing::warn!(
            "{UNSAFE_ACK_BEFORE_COMMIT} is set: acknowledging writes before they are committed (loses data)"
        );
    }
    on
});

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
            let log = RocksLogStore::<PartitionTypes>::new(context.store.clone(), spec.group);
            let state_machine = PartitionStateMachine::open(context.store.clone(), log.clone())?;
            let progress = state_machine.progress();
            let applied_sequences = state_machine.applied_sequences();
            let retention_target = state_machine.retention_target();
            let network = GrpcNetworkFactory::new(context.peers.clone(), spec.group, spec.node_id);
            let raft = openraft::Raft::new(
                spec.node_id,
                context.raft_config.clone(),
                network,
                log.clone(),
                state_machine,
            )
            .await
            .map_err(|err| raft_error(spec.group, err))?;
            context.registry.register(
                spec.group,
                Arc::new(
                    RaftGroupRpc::new(raft.clone(), spec.node_id)
                        .with_disk_guard(context.disk.clone()),
                ),
            );
            if spec.bootstrap
                && !raft
                    .is_initialized()
                    .await
                    .map_err(|err| raft_error(spec.group, err))?
            {
                let members: BTreeMap<u64, BasicNode> = spec
                    .members
                    .iter()
                    .map(|(id, m)| (*id, BasicNode::new(&m.address)))
                    .collect();
                match raft.initialize(members).await {
                    Ok(()) => tracing::info!("initialized raft group"),
                    Err(RaftError::APIError(err)) => {
                        tracing::debug!(%err, "group already initialized")
                    }
                    Err(RaftError::Fatal(err)) => return Err(raft_error(spec.group, err)),
                }
            }
            tracing::info!(
                high_watermark = progress.borrow().high_watermark,
                "replica started"
            );
            let partition = Arc::new(Self {
                log,
                store: context.store.clone(),
                raft,
                progress,
                spec,
                sequencer: producers::Sequencer::default(),
                applied_sequences,
                retention_target,
                compacted: std::sync::Mutex::new((0, false)),
                unsafe_pending: std::sync::atomic::AtomicU64::new(0),
            });
            if !partition.spec.retention.is_unlimited() || partition.spec.compaction.is_some() {
                let task =
                    retention_task(Arc::downgrade(&partition), context.retention_check_interval);
                tokio::spawn(task.in_current_span());
            }
            Ok(partition)
        }
        .instrument(span)
        .await
    }

    /// Compacts the stored range (see [`compaction`]) as of `now_ms`, when anything was
    /// appended since the last pass or a kept tombstone may have expired. Returns the batches
    /// rewritten and the records they dropped.
    pub async fn compact(self: &Arc<Self>, now_ms: i64) -> Result<(usize, usize), BrokerError> {
        let Some(settings) = self.spec.compaction else {
            return Ok((0, 0));
        };
        let progress = self.progress();
        let (done_through, tombstones) = *self.compacted.lock().expect("compacted lock");
        if progress.high_watermark == done_through && !tombstones {
            return Ok((0, 0));
        }
        let cutoff = now_ms.saturating_sub(settings.delete_retention_ms as i64);
        let partition = self.clone();
        let (rewritten, dropped, tombstones) =
            tokio::task::spawn_blocking(move || partition.compact_blocking(progress, cutoff))
                .await
                .map_err(|err| BrokerError::Io(std::io::Error::other(err)))?
                .map_err(|err| {
                    BrokerError::from_read(self.spec.topic.as_str(), self.spec.partition.0, err)
                })?;
        *self.compacted.lock().expect("compacted lock") = (progress.high_watermark, tombstones);
        if rewritten > 0 {
            tracing::info!(group = %self.spec.group, rewritten, dropped, "compacted");
        }
        Ok((rewritten, dropped))
    }

    /// One compaction pass over `progress`'s stored range: the latest offset of every key,
    /// then every batch with a record to drop rewritten in place. Returns the batches
    /// rewritten, the records dropped, and whether a tombstone was kept.
    fn compact_blocking(
        &self,
        progress: Progress,
        tombstone_cutoff_ms: i64,
    ) -> Result<(usize, usize, bool), read::ReadError> {
        let reader = self.reader();
        let rows = reader.rows(progress)?;
        let mut latest = std::collections::HashMap::new();
        for (base, row) in &rows {
            compaction::note_latest(&mut latest, &reader.records_at(*base, *row)?);
        }
        let (mut rewritten, mut dropped, mut tombstones) = (0, 0, false);
        for (base, row) in rows {
            let records = reader.records_at(base, row)?;
            let count = records.len();
            let kept = compaction::kept(records, &latest, tombstone_cutoff_ms);
            tombstones |= kept
                .iter()
                .any(|(_, r)| r.key.is_some() && r.value.is_none());
            if kept.len() == count {
                continue;
            }
            let Some(mut entry) = self.log.read_entry(row.raft_index)? else {
                continue;
            };
            let openraft::EntryPayload::Normal(PartitionCommand::Append {
                batch,
                appended_at_ms,
            }) = &entry.payload
            else {
                continue;
            };
            let header = batch.header().map_err(|source| read::ReadError::Corrupt {
                raft_index: row.raft_index,
                source,
            })?;
            let kept: Vec<(u32, mq_common::records::Record)> = kept
                .into_iter()
                .map(|(offset, record)| ((offset - base) as u32, record))
                .collect();
            let compacted = StoredBatch::compacted(&header, &kept);
            let bytes = compacted.len() as u32;
            let appended_at_ms = *appended_at_ms;
            entry.payload = openraft::EntryPayload::Normal(PartitionCommand::Append {
                batch: compacted,
                appended_at_ms,
            });
            if self.log.rewrite(entry)? {
                state_machine::resize_index_row(&self.store, self.spec.group, base, row, bytes)?;
                rewritten += 1;
                dropped += count - kept.len();
            }
        }
        Ok((rewritten, dropped, tombstones))
    }

    /// Deletes the batches the retention limits expire, as of `now_ms`: sets the snapshot
    /// point and asks Raft for the snapshot, whose build moves the log start offset; Raft then
    /// purges the log up to it. Returns the log start offset asked for, if anything expired.
    pub async fn enforce_retention(
        self: &Arc<Self>,
        now_ms: i64,
    ) -> Result<Option<u64>, BrokerError> {
        let progress = self.progress();
        let limits = self.spec.retention;
        let partition = self.clone();
        let cut = tokio::task::spawn_blocking(move || {
            partition.reader().retention_point(progress, limits, now_ms)
        })
        .await
        .map_err(|err| BrokerError::Io(std::io::Error::other(err)))?
        .map_err(|err| {
            BrokerError::from_read(self.spec.topic.as_str(), self.spec.partition.0, err)
        })?;
        let Some(cut) = cut else {
            return Ok(None);
        };
        tracing::debug!(group = %self.spec.group, raft_index = cut.raft_index, log_start_offset = cut.log_start_offset, "retention cut");
        *self.retention_target.lock().expect("target lock") = Some(cut);
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|err| raft_error(self.spec.group, err))?;
        Ok(Some(cut.log_start_offset))
    }

    pub fn spec(&self) -> &ReplicaSpec {
        &self.spec
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Appends a batch through Raft; returns once it is committed and applied.
    pub async fn append(
        self: &Arc<Self>,
        batch: StoredBatch,
        timeout: Duration,
    ) -> Result<Appended, BrokerError> {
        // An idempotent producer's batch (parsed once; the header was validated upstream).
        let producer = batch.header().ok().filter(|h| h.producer_id != 0);
        if producer.is_none() && *ACK_BEFORE_COMMIT {
            return Ok(self.append_before_commit(batch));
        }
        let write = async {
            let Some(header) = producer else {
                return self
                    .raft
                    .client_write(PartitionCommand::Append {
                        batch,
                        appended_at_ms: now_ms(),
                    })
                    .await;
            };
            // An idempotent producer's batches are handed to Raft in sequence order.
            let term = self.raft.metrics().borrow_watched().current_term;
            let turn = self
                .sequencer
                .admit(
                    term,
                    header.producer_id,
                    header.base_sequence,
                    header.record_count,
                    producers::REORDER_WAIT.min(timeout),
                    |producer| {
                        let applied = self.applied_sequences.lock().expect("sequences lock");
                        applied.get(&producer).copied()
                    },
                )
                .await;
            let (responder, applied) = openraft::impls::ProgressResponder::complete_only();
            let submitted = self
                .raft
                .client_write_ff(
                    PartitionCommand::Append {
                        batch,
                        appended_at_ms: now_ms(),
                    },
                    Some(responder),
                )
                .await;
            drop(turn);
            submitted.map_err(RaftError::Fatal)?;
            match applied.await {
                Ok(result) => result.map_err(RaftError::APIError),
                Err(_) => Err(RaftError::Fatal(openraft::error::Fatal::Stopped)),
            }
        };
        match tokio::time::timeout(timeout, write).await {
            Err(_) => Err(self.timeout(timeout)),
            Ok(Ok(response)) => match response.data {
                ApplyResult::Appended(appended) => Ok(appended),
                ApplyResult::OutOfOrderSequence { expected, got } => {
                    if let Some(header) = producer {
                        self.sequencer.correct(header.producer_id, expected);
                    }
                    Err(BrokerError::OutOfOrderSequence {
                        topic: self.spec.topic.to_string(),
                        partition: self.spec.partition.0,
                        expected,
                        got,
                    })
                }
                ApplyResult::DuplicateSequence { expected, got } => {
                    Err(BrokerError::DuplicateSequence {
                        topic: self.spec.topic.to_string(),
                        partition: self.spec.partition.0,
                        expected,
                        got,
                    })
                }
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                Err(self.not_leader(forward.leader_id, forward.leader_node.map(|n| n.addr)))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)))) => {
                Err(self.timeout(timeout))
            }
            Ok(Err(RaftError::APIError(err))) => Err(raft_error(self.spec.group, err)),
            Ok(Err(RaftError::Fatal(err))) => Err(raft_error(self.spec.group, err)),
        }
    }

    /// The deliberately broken append of [`UNSAFE_ACK_BEFORE_COMMIT`]: proposes the batch in
    /// the background and answers at once with the offset it would get if nothing failed.
    fn append_before_commit(self: &Arc<Self>, batch: StoredBatch) -> Appended {
        use std::sync::atomic::Ordering;
        let record_count = batch.header().map_or(1, |h| h.record_count);
        let pending = self
            .unsafe_pending
            .fetch_add(u64::from(record_count), Ordering::SeqCst);
        let partition = self.clone();
        tokio::spawn(async move {
            let _ = partition
                .raft
                .client_write(PartitionCommand::Append {
                    batch,
                    appended_at_ms: now_ms(),
                })
                .await;
            partition
                .unsafe_pending
                .fetch_sub(u64::from(record_count), Ordering::SeqCst);
        });
        Appended {
            base_offset: self.progress().high_watermark + pending,
            record_count,
            duplicate: false,
        }
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

    /// A receiver that changes with every apply (for subscriptions).
    pub fn watch_progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Reads records from `offset` (which must be within the stored range).
    pub async fn read(
        self: &Arc<Self>,
        offset: u64,
        limits: ReadLimits,
    ) -> Result<(ReadResult, Progress), BrokerError> {
        let progress = self.check_offset(offset)?;
        let partition = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            partition
                .reader()
                .read(offset, progress.high_watermark, limits)
        })
        .await
        .map_err(|err| BrokerError::Io(std::io::Error::other(err)))?
        .map_err(|err| {
            BrokerError::from_read(self.spec.topic.as_str(), self.spec.partition.0, err)
        });
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
        let found = tokio::task::spawn_blocking(move || {
            partition.reader().offset_for_timestamp(
                timestamp_ms,
                progress.log_start_offset,
                progress.high_watermark,
            )
        })
        .await
        .map_err(|err| BrokerError::Io(std::io::Error::other(err)))?
        .map_err(|err| {
            BrokerError::from_read(self.spec.topic.as_str(), self.spec.partition.0, err)
        })?;
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

    /// Whether this replica leads its group now.
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// The error for a request that needs the leader, with the leader when known.
    pub fn not_leader_error(&self) -> BrokerError {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let address = metrics.current_leader.and_then(|leader| {
            metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|node| node.addr.clone())
        });
        self.not_leader(metrics.current_leader, address)
    }

    fn not_leader(&self, leader: Option<u64>, address: Option<String>) -> BrokerError {
        let (topic, partition) = (self.spec.topic.to_string(), self.spec.partition.0);
        match (leader, address) {
            (Some(node), Some(address)) if node != self.spec.node_id => BrokerError::NotLeader {
                topic,
                partition,
                leader: Some(LeaderHint {
                    id: u64::from(broker_of_node(node).0),
                    address,
                }),
            },
            _ => BrokerError::LeaderNotAvailable { topic, partition },
        }
    }

    fn timeout(&self, timeout: Duration) -> BrokerError {
        BrokerError::Timeout {
            topic: self.spec.topic.to_string(),
            partition: self.spec.partition.0,
            timeout,
        }
    }

    /// The replica's state, from Raft metrics and the published progress.
    pub fn status(&self) -> ReplicaStatus {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let progress = self.progress();
        let followers = metrics
            .replication
            .as_ref()
            .map(|replication| {
                replication
                    .iter()
                    .filter(|(id, _)| **id != self.spec.node_id)
                    .map(|(id, matched)| (*id, matched.as_ref().map(|log_id| log_id.index())))
                    .collect()
            })
            .unwrap_or_default();
        let membership = metrics.membership_config.membership();
        ReplicaStatus {
            node_id: self.spec.node_id,
            leader_node_id: metrics.current_leader,
            term: metrics.current_term,
            high_watermark: progress.high_watermark,
            log_start_offset: progress.log_start_offset,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            followers,
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    /// On the leader: asks `to` (a voter) to take over leadership. Returns at once.
    pub async fn transfer_leadership(&self, to: u64) -> Result<(), BrokerError> {
        if !self.is_leader() {
            return Err(self.not_leader_error());
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|err| raft_error(self.spec.group, err))
    }

    /// The leader's broker address, when this replica follows a known leader.
    pub fn leader_address(&self) -> Option<(u64, String)> {
        // Called for every hosted partition on each peer probe: read in place, no clone.
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow_watched();
        let leader = metrics.current_leader?;
        if leader == self.spec.node_id {
            return None;
        }
        let address = metrics
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        Some((leader, address))
    }

    /// The addresses of the group's other voters (this replica left out), with the leader's
    /// node id when this replica follows one.
    pub fn other_voters(&self) -> (Option<u64>, Vec<(u64, String)>) {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow_watched();
        let membership = metrics.membership_config.membership();
        let voters = membership
            .voter_ids()
            .filter(|id| *id != self.spec.node_id)
            .filter_map(|id| Some((id, membership.get_node(&id)?.addr.clone())))
            .collect();
        (metrics.current_leader, voters)
    }

    /// The leader at `dead_address` is gone: this follower stops honouring its lease, and the
    /// group's successor (the lowest-id voter elsewhere; every follower picks the same) starts
    /// an election at once instead of after an election timeout plus the lease. Voting still
    /// checks logs, so a successor that is behind simply loses and a regular election follows.
    pub async fn leader_lost(&self, dead_address: &str) -> Result<(), BrokerError> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let Some(leader) = metrics.current_leader else {
            return Ok(());
        };
        let membership = metrics.membership_config.membership();
        let successor = membership
            .voter_ids()
            .filter(|id| *id != leader)
            .find(|id| {
                membership
                    .get_node(id)
                    .is_some_and(|n| n.addr != dead_address)
            });
        let Some(successor) = successor else {
            return Ok(());
        };
        tracing::info!(group = %self.spec.group, leader, successor, "leader's broker is unreachable; electing a successor");
        let request = openraft::raft::TransferLeaderRequest::new(metrics.vote, successor, None);
        self.raft
            .handle_transfer_leader(request)
            .await
            .map(|_| ())
            .map_err(|err| raft_error(self.spec.group, err))
    }

    /// The voter best placed to take over from this leader: the one with the most of the log
    /// (ties: the lowest node id). `None` unless this replica leads and has another voter.
    pub fn successor(&self) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        let status = self.status();
        status
            .followers
            .iter()
            .filter(|(id, _)| status.voters.contains(id))
            .max_by_key(|(id, matched)| (matched.unwrap_or(0), std::cmp::Reverse(*id)))
            .map(|(id, _)| *id)
    }

    /// On the leader: makes `members` (node id -> broker address) the voters. New members
    /// join as learners and are waited for until they caught up (at most `timeout`); then one
    /// membership change sets the voters, removing those not listed.
    pub async fn change_membership(
        &self,
        members: BTreeMap<u64, String>,
        timeout: Duration,
    ) -> Result<(), BrokerError> {
        if members.is_empty() {
            return Err(BrokerError::invalid(
                "members",
                "at least one member is required",
            ));
        }
        let write_error =
            |err: RaftError<PartitionTypes, ClientWriteError<PartitionTypes>>| match err {
                RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                    self.not_leader(forward.leader_id, forward.leader_node.map(|n| n.addr))
                }
                other => raft_error(self.spec.group, other),
            };
        let work = async {
            let current = self.status();
            for (node_id, address) in &members {
                if !current.voters.contains(node_id) && !current.learners.contains(node_id) {
                    tracing::info!(group = %self.spec.group, node_id, %address, "adding learner");
                    self.raft
                        .add_learner(*node_id, BasicNode::new(address), true)
                        .await
                        .map_err(write_error)?;
                }
            }
            let voters: std::collections::BTreeSet<u64> = members.keys().copied().collect();
            let now: std::collections::BTreeSet<u64> = self.status().voters.into_iter().collect();
            if voters != now {
                tracing::info!(group = %self.spec.group, ?voters, "changing voters");
                self.raft
                    .change_membership(voters, false)
                    .await
                    .map_err(write_error)?;
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout(timeout)),
        }
    }

    /// A receiver of this replica's leader, which changes on every election.
    pub fn watch_leader(&self) -> impl futures::Stream<Item = Option<u64>> + Send + 'static {
        let metrics = self.raft.metrics();
        futures::stream::unfold(
            (metrics, None::<Option<u64>>),
            |(mut metrics, last)| async move {
                loop {
                    let leader = metrics.borrow_watched().current_leader;
                    if last != Some(leader) {
                        return Some((leader, (metrics, Some(leader))));
                    }
                    if metrics.changed().await.is_err() {
                        return None;
                    }
                }
            },
        )
    }

    /// Stops the Raft group. The replica's data stays unless the caller deletes it.
    pub async fn shutdown(&self) {
        if let Err(err) = self.raft.shutdown().await {
            tracing::warn!(group = %self.spec.group, %err, "raft shutdown");
        }
    }
}

/// Checks the retention limits of a partition, and compacts it, every `interval` while it
/// exists.
async fn retention_task(partition: std::sync::Weak<Partition>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(partition) = partition.upgrade() else {
            return;
        };
        let now_ms = now_ms();
        let outcome = match partition.enforce_retention(now_ms).await {
            Ok(_) => partition.compact(now_ms).await.map(drop),
            Err(err) => Err(err),
        };
        if let Err(err) = outcome {
            if partition
                .raft
                .metrics()
                .borrow_watched()
                .running_state
                .is_err()
            {
                return;
            }
            tracing::warn!(%err, "retention or compaction failed");
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

fn raft_error(group: GroupId, err: impl std::fmt::Display) -> BrokerError {
    BrokerError::Raft {
        group: group.0,
        message: err.to_string(),
    }
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

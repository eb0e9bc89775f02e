//! The partition state machine. The Raft log *is* the partition log: applying an entry copies
//! no record bytes, it assigns the batch its offsets and writes one small offset-index row
//! (`base_offset -> raft index, count, max timestamp, bytes`), plus the applied state, in one
//! unsynced `WriteBatch` ordered after the entry in the shared WAL. The high watermark (the next
//! offset at the last applied entry) is published after that write; nothing above it is ever
//! read.
//!
//! Snapshots are metadata only (next offset, log start offset, idempotent producers) and are
//! built only at a retention point ([`super::retention`]): the state *as of* the last deleted
//! batch, which may be older than the last applied entry. The producers as of that point are
//! the previous snapshot's replayed through the deleted batches' index rows (which carry each
//! batch's producer and sequence); the membership as of that point comes from a history of
//! membership entries. A follower that installs such a snapshot gets every retained batch
//! through ordinary appends, so it never has a hole in its retained range.

use std::io;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use mq_common::ids::GroupId;
use mq_raft::keys::{self, CF_OFFSET_INDEX, CF_SM_META};
use mq_raft::{RocksLogStore, Store, codec};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::producers::{AppliedSequences, Producers, RecentBatch, Sequence};
use super::retention::Cut;
use super::types::{
    Appended, ApplyResult, LogId, PartitionCommand, PartitionTypes, Snapshot, SnapshotMeta,
    StoredMembership,
};
use crate::batch::StoredBatch;

/// Tags of this state machine's keys in `sm_meta`.
mod meta_tag {
    pub const APPLIED: u8 = 1;
    pub const SNAPSHOT: u8 = 2;
    /// `group ‖ PRODUCER ‖ producer id` -> that producer's [`ProducerState`].
    pub const PRODUCER: u8 = 3;
    /// `group ‖ MEMBERSHIP ‖ raft index` -> the membership that entry set (history back to the
    /// current snapshot's, for snapshots at a retention point).
    pub const MEMBERSHIP: u8 = 4;
}

/// What the state machine has applied, persisted as one value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// The offset the next record gets: the high watermark.
    pub next_offset: u64,
}

/// The positions readers need, published after every apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

/// The snapshot data of a partition: metadata only (positions and idempotent producers).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PartitionSnapshot {
    next_offset: u64,
    log_start_offset: u64,
    producers: Producers,
}

/// One row of the offset index: where the batch with a given base offset lives, and (for
/// snapshots at a retention point) its idempotent producer and sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub raft_index: u64,
    pub record_count: u32,
    pub max_timestamp_ms: i64,
    pub batch_bytes: u32,
    /// 0: not an idempotent producer's batch.
    pub producer_id: u64,
    pub base_sequence: u32,
    /// When the leader proposed the batch (what retention by time counts from).
    pub appended_at_ms: i64,
}

impl IndexEntry {
    pub const LEN: usize = 44;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.raft_index.to_be_bytes());
        out[8..12].copy_from_slice(&self.record_count.to_be_bytes());
        out[12..20].copy_from_slice(&self.max_timestamp_ms.to_be_bytes());
        out[20..24].copy_from_slice(&self.batch_bytes.to_be_bytes());
        out[24..32].copy_from_slice(&self.producer_id.to_be_bytes());
        out[32..36].copy_from_slice(&self.base_sequence.to_be_bytes());
        out[36..44].copy_from_slice(&self.appended_at_ms.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> io::Result<Self> {
        let bytes: &[u8; Self::LEN] = bytes
            .try_into()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "offset index row size"))?;
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8"));
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4"));
        Ok(Self {
            raft_index: u64_at(0),
            record_count: u32_at(8),
            max_timestamp_ms: u64_at(12) as i64,
            batch_bytes: u32_at(20),
            producer_id: u64_at(24),
            base_sequence: u32_at(32),
            appended_at_ms: u64_at(36) as i64,
        })
    }
}

/// Records a rewritten (compacted) batch's new size in its offset-index row.
pub fn resize_index_row(
    store: &Store,
    group: GroupId,
    base_offset: u64,
    row: IndexEntry,
    batch_bytes: u32,
) -> io::Result<()> {
    let mut batch = WriteBatch::default();
    let row = IndexEntry { batch_bytes, ..row };
    batch.put_cf(
        store.cf(CF_OFFSET_INDEX),
        keys::indexed(group, base_offset),
        row.encode(),
    );
    store.write(batch)
}

/// Where the retention task asks the next snapshot to be built.
pub type RetentionTarget = Arc<Mutex<Option<Cut>>>;

pub struct PartitionStateMachine {
    store: Store,
    log: RocksLogStore<PartitionTypes>,
    group: GroupId,
    state: AppliedState,
    producers: Producers,
    applied_sequences: Arc<AppliedSequences>,
    /// Shared with snapshot builders, which move the log start offset.
    progress: Arc<watch::Sender<Progress>>,
    retention_target: RetentionTarget,
}

impl std::fmt::Debug for PartitionStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionStateMachine")
            .field("group", &self.group)
            .field("state", &self.state)
            .finish()
    }
}

impl PartitionStateMachine {
    /// Loads the applied state of `group` (empty for a new replica).
    pub fn open(store: Store, log: RocksLogStore<PartitionTypes>) -> io::Result<Self> {
        let group = log.group();
        let state: AppliedState = store
            .get_tagged(CF_SM_META, group, meta_tag::APPLIED)?
            .unwrap_or_default();
        let producers = load_producers(&store, group)?;
        let applied_sequences = Arc::new(AppliedSequences::new(producers.next_sequences()));
        let log_start_offset =
            current_snapshot(&store, group)?.map_or(0, |(_, snapshot)| snapshot.log_start_offset);
        let (progress, _) = watch::channel(Progress {
            high_watermark: state.next_offset,
            log_start_offset,
        });
        Ok(Self {
            store,
            log,
            group,
            state,
            producers,
            applied_sequences,
            progress: Arc::new(progress),
            retention_target: RetentionTarget::default(),
        })
    }

    fn get_snapshot_builder_now(&self) -> PartitionSnapshotBuilder {
        let nothing_retained = self.progress.borrow().log_start_offset >= self.state.next_offset;
        self.builder(match nothing_retained {
            true => SnapshotPoint::Applied(
                SnapshotMeta {
                    last_log_id: self.state.last_applied,
                    last_membership: self.state.membership.clone(),
                },
                PartitionSnapshot {
                    next_offset: self.state.next_offset,
                    log_start_offset: self.state.next_offset,
                    producers: self.producers.clone(),
                },
            ),
            false => SnapshotPoint::Current,
        })
    }

    /// Where the retention task sets the point of the next snapshot.
    pub fn retention_target(&self) -> RetentionTarget {
        self.retention_target.clone()
    }

    /// Each producer's next sequence as applied (for the leader's sequencer).
    pub fn applied_sequences(&self) -> Arc<AppliedSequences> {
        self.applied_sequences.clone()
    }

    /// A receiver of the published positions.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Adds the applied state to `batch`, so it lands with what it describes.
    fn put_applied(&self, batch: &mut WriteBatch) -> io::Result<()> {
        self.store.put_tagged(
            batch,
            CF_SM_META,
            self.group,
            meta_tag::APPLIED,
            &self.state,
        )
    }

    /// Records an appended batch of an idempotent producer, in memory and in `batch`.
    fn remember(
        &mut self,
        batch: &mut WriteBatch,
        producer: u64,
        base_sequence: u32,
        record_count: u32,
        base_offset: u64,
        index: u64,
    ) -> io::Result<()> {
        let recent = RecentBatch {
            base_sequence,
            record_count,
            base_offset,
        };
        let evicted = self.producers.record(producer, recent, index);
        self.applied_sequences.update(|applied| {
            applied.insert(producer, base_sequence.wrapping_add(record_count));
            if let Some(evicted) = evicted {
                applied.remove(&evicted);
            }
        });
        if let Some(evicted) = evicted {
            batch.delete_cf(self.store.cf(CF_SM_META), producer_key(self.group, evicted));
        }
        let state = &self.producers.by_id[&producer];
        batch.put_cf(
            self.store.cf(CF_SM_META),
            producer_key(self.group, producer),
            codec::encode(state)?,
        );
        Ok(())
    }

    fn publish(&self) {
        let high_watermark = self.state.next_offset;
        self.progress.send_if_modified(|p| {
            std::mem::replace(&mut p.high_watermark, high_watermark) != high_watermark
        });
    }

    fn builder(&self, at: SnapshotPoint) -> PartitionSnapshotBuilder {
        PartitionSnapshotBuilder {
            store: self.store.clone(),
            log: self.log.clone(),
            group: self.group,
            progress: self.progress.clone(),
            at,
        }
    }
}

fn producer_key(group: GroupId, producer_id: u64) -> Vec<u8> {
    let mut suffix = [0u8; 9];
    suffix[0] = meta_tag::PRODUCER;
    suffix[1..].copy_from_slice(&producer_id.to_be_bytes());
    keys::prefixed(group, &suffix)
}

fn load_producers(store: &Store, group: GroupId) -> io::Result<Producers> {
    let start = keys::prefixed(group, &[meta_tag::PRODUCER]);
    let end = keys::prefixed(group, &[meta_tag::PRODUCER + 1]);
    let mut options = rocksdb::ReadOptions::default();
    options.set_iterate_upper_bound(end);
    let mut producers = Producers::default();
    for item in store.db().iterator_cf_opt(
        store.cf(CF_SM_META),
        options,
        rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
    ) {
        let (key, value) = item.map_err(mq_raft::store::io_error)?;
        let id_bytes: [u8; 8] = key[key.len() - 8..]
            .try_into()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "producer key"))?;
        producers
            .by_id
            .insert(u64::from_be_bytes(id_bytes), codec::decode(&value)?);
    }
    Ok(producers)
}

fn membership_key(group: GroupId, index: u64) -> Vec<u8> {
    let mut suffix = [0u8; 9];
    suffix[0] = meta_tag::MEMBERSHIP;
    suffix[1..].copy_from_slice(&index.to_be_bytes());
    keys::prefixed(group, &suffix)
}

/// The stored current snapshot, decoded.
fn current_snapshot(
    store: &Store,
    group: GroupId,
) -> io::Result<Option<(SnapshotMeta, PartitionSnapshot)>> {
    let stored: Option<(SnapshotMeta, Vec<u8>)> =
        store.get_tagged(CF_SM_META, group, meta_tag::SNAPSHOT)?;
    stored
        .map(|(meta, data)| Ok((meta, codec::decode(&data)?)))
        .transpose()
}

impl PartitionStateMachine {
    /// Applies one committed batch at `log_id`: the next offsets and an index row (into
    /// `batch`), unless an idempotent producer's sequence says it is a duplicate or out of
    /// order, which change nothing.
    fn apply_append(
        &mut self,
        batch: &mut WriteBatch,
        log_id: LogId,
        stored: &StoredBatch,
        appended_at_ms: i64,
    ) -> io::Result<ApplyResult> {
        // Validated by the leader before proposing; a replica that cannot read a committed
        // entry must stop rather than assign different offsets.
        let header = stored.header().map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "group {}: committed entry {log_id} is unreadable: {err}",
                    self.group
                ),
            )
        })?;
        let producer = header.producer_id;
        let sequence = match producer {
            0 => Sequence::Next,
            _ => self
                .producers
                .check(producer, header.base_sequence, header.record_count),
        };
        Ok(match sequence {
            Sequence::Next => {
                let base_offset = self.state.next_offset;
                let row = IndexEntry {
                    raft_index: log_id.index(),
                    record_count: header.record_count,
                    max_timestamp_ms: header.max_timestamp_ms,
                    batch_bytes: stored.len() as u32,
                    producer_id: producer,
                    base_sequence: header.base_sequence,
                    appended_at_ms,
                };
                batch.put_cf(
                    self.store.cf(CF_OFFSET_INDEX),
                    keys::indexed(self.group, base_offset),
                    row.encode(),
                );
                self.state.next_offset += u64::from(header.record_count);
                if producer != 0 {
                    self.remember(
                        batch,
                        producer,
                        header.base_sequence,
                        header.record_count,
                        base_offset,
                        log_id.index(),
                    )?;
                }
                ApplyResult::Appended(Appended {
                    base_offset,
                    record_count: header.record_count,
                    duplicate: false,
                })
            }
            Sequence::Duplicate { base_offset } => ApplyResult::Appended(Appended {
                base_offset,
                record_count: header.record_count,
                duplicate: true,
            }),
            Sequence::OutOfOrder { expected } => ApplyResult::OutOfOrderSequence {
                expected,
                got: header.base_sequence,
            },
            Sequence::TooOld { expected } => ApplyResult::DuplicateSequence {
                expected,
                got: header.base_sequence,
            },
        })
    }
}

impl RaftStateMachine<PartitionTypes> for PartitionStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = PartitionSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<PartitionTypes>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let mut replies = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let mut reply = ApplyResult::Appended(Appended {
                base_offset: self.state.next_offset,
                record_count: 0,
                duplicate: false,
            });
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(PartitionCommand::Append {
                    batch: stored,
                    appended_at_ms,
                }) => reply = self.apply_append(&mut batch, log_id, &stored, appended_at_ms)?,
                EntryPayload::Membership(membership) => {
                    self.state.membership = StoredMembership::new(Some(log_id), membership);
                    batch.put_cf(
                        self.store.cf(CF_SM_META),
                        membership_key(self.group, log_id.index()),
                        codec::encode(&self.state.membership)?,
                    );
                }
            }
            self.state.last_applied = Some(log_id);
            if let Some(responder) = responder {
                replies.push((responder, reply));
            }
        }
        // One write: index rows and applied state move together.
        self.put_applied(&mut batch)?;
        self.store.write(batch)?;
        self.publish();
        for (responder, reply) in replies {
            responder.send(reply);
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<Self::SnapshotBuilder> {
        // Snapshots are built only where the retention task asks. When openraft needs one,
        // it gets the last applied state if no record is retained (nothing can be lost),
        // else the current snapshot again.
        if let Some(cut) = self.retention_target.lock().expect("target lock").take() {
            return Some(self.builder(SnapshotPoint::Cut(cut)));
        }
        force.then(|| self.get_snapshot_builder_now())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.get_snapshot_builder_now()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<(), io::Error> {
        let snapshot: PartitionSnapshot = codec::decode(&data)?;
        tracing::info!(group = %self.group, last = ?meta.last_log_id, next_offset = snapshot.next_offset, log_start_offset = snapshot.log_start_offset, "installing snapshot");
        self.state = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            next_offset: snapshot.next_offset,
        };
        // Readers see the new range before anything below it is deleted.
        self.progress.send_replace(Progress {
            high_watermark: snapshot.next_offset,
            log_start_offset: snapshot.log_start_offset,
        });
        let mut batch = WriteBatch::default();
        self.put_applied(&mut batch)?;
        batch.delete_range_cf(
            self.store.cf(CF_SM_META),
            keys::prefixed(self.group, &[meta_tag::PRODUCER]),
            keys::prefixed(self.group, &[meta_tag::PRODUCER + 1]),
        );
        for (producer, state) in &snapshot.producers.by_id {
            batch.put_cf(
                self.store.cf(CF_SM_META),
                producer_key(self.group, *producer),
                codec::encode(state)?,
            );
        }
        self.producers = snapshot.producers.clone();
        let next = self.producers.next_sequences();
        self.applied_sequences.update(|applied| *applied = next);
        // The snapshot's membership starts the history; every entry it covers is gone.
        batch.delete_range_cf(
            self.store.cf(CF_SM_META),
            keys::prefixed(self.group, &[meta_tag::MEMBERSHIP]),
            keys::prefixed(self.group, &[meta_tag::MEMBERSHIP + 1]),
        );
        if let Some(log_id) = meta.last_membership.log_id() {
            batch.put_cf(
                self.store.cf(CF_SM_META),
                membership_key(self.group, log_id.index()),
                codec::encode(&meta.last_membership)?,
            );
        }
        // Every offset below the snapshot's next offset is covered by it.
        batch.delete_range_cf(
            self.store.cf(CF_OFFSET_INDEX),
            keys::indexed(self.group, 0),
            keys::indexed(self.group, snapshot.next_offset),
        );
        self.store.put_tagged(
            &mut batch,
            CF_SM_META,
            self.group,
            meta_tag::SNAPSHOT,
            &(meta, &data),
        )?;
        self.store.write_durable(batch)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let stored: Option<(SnapshotMeta, Vec<u8>)> =
            self.store
                .get_tagged(CF_SM_META, self.group, meta_tag::SNAPSHOT)?;
        Ok(stored.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// Where a snapshot is built.
#[derive(Debug)]
enum SnapshotPoint {
    /// At a retention point.
    Cut(Cut),
    /// At the last applied entry, with no record retained (its state, copied).
    Applied(SnapshotMeta, PartitionSnapshot),
    /// Where the current snapshot is.
    Current,
}

/// Builds the snapshot at a retention point (or rebuilds the current one).
#[derive(Debug)]
pub struct PartitionSnapshotBuilder {
    store: Store,
    log: RocksLogStore<PartitionTypes>,
    group: GroupId,
    progress: Arc<watch::Sender<Progress>>,
    at: SnapshotPoint,
}

impl PartitionSnapshotBuilder {
    /// The state as of the cut's batch: the current snapshot's, advanced through the index
    /// rows of the batches the cut deletes.
    fn state_at(
        &self,
        cut: Cut,
        previous: &PartitionSnapshot,
    ) -> io::Result<(SnapshotMeta, PartitionSnapshot)> {
        let entry = self.log.read_entry(cut.raft_index)?.ok_or_else(|| {
            io::Error::other(format!(
                "group {}: retention point {} is not in the log",
                self.group, cut.raft_index
            ))
        })?;
        let mut producers = previous.producers.clone();
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_upper_bound(keys::indexed(self.group, cut.log_start_offset).to_vec());
        let start = keys::indexed(self.group, previous.log_start_offset);
        for item in self.store.db().iterator_cf_opt(
            self.store.cf(CF_OFFSET_INDEX),
            options,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        ) {
            let (key, value) = item.map_err(mq_raft::store::io_error)?;
            let row = IndexEntry::decode(&value)?;
            if row.producer_id != 0 {
                let batch = RecentBatch {
                    base_sequence: row.base_sequence,
                    record_count: row.record_count,
                    base_offset: keys::index_of(&key),
                };
                producers.record(row.producer_id, batch, row.raft_index);
            }
        }
        let membership = self.membership_at(cut.raft_index)?;
        let meta = SnapshotMeta {
            last_log_id: Some(entry.log_id()),
            last_membership: membership,
        };
        let snapshot = PartitionSnapshot {
            next_offset: cut.log_start_offset,
            log_start_offset: cut.log_start_offset,
            producers,
        };
        Ok((meta, snapshot))
    }

    /// The last membership set at or before `index`.
    fn membership_at(&self, index: u64) -> io::Result<StoredMembership> {
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_lower_bound(keys::prefixed(self.group, &[meta_tag::MEMBERSHIP]));
        let mut rows = self
            .store
            .db()
            .raw_iterator_cf_opt(self.store.cf(CF_SM_META), options);
        rows.seek_for_prev(membership_key(self.group, index));
        match rows.value() {
            Some(value) => codec::decode(value),
            None => {
                rows.status().map_err(mq_raft::store::io_error)?;
                Ok(StoredMembership::default())
            }
        }
    }
}

impl RaftSnapshotBuilder<PartitionTypes> for PartitionSnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let current = current_snapshot(&self.store, self.group)?;
        let (previous_meta, previous) = current.unwrap_or_default();
        let ahead = |index: u64| {
            previous_meta
                .last_log_id
                .is_none_or(|last| last.index() < index)
        };
        let (meta, snapshot) = match std::mem::replace(&mut self.at, SnapshotPoint::Current) {
            SnapshotPoint::Cut(cut) if ahead(cut.raft_index) => self.state_at(cut, &previous)?,
            SnapshotPoint::Applied(meta, snapshot)
                if meta.last_log_id.is_some_and(|last| ahead(last.index())) =>
            {
                (meta, snapshot)
            }
            _ => (previous_meta, previous),
        };
        let data = codec::encode(&snapshot)?;
        let Some(last) = meta.last_log_id else {
            return Ok(Snapshot {
                meta,
                snapshot: data,
            });
        };
        // Readers see the new log start before anything below it is deleted.
        self.progress.send_if_modified(|p| {
            let moved = p.log_start_offset < snapshot.log_start_offset;
            p.log_start_offset = p.log_start_offset.max(snapshot.log_start_offset);
            moved
        });
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.store.cf(CF_OFFSET_INDEX),
            keys::indexed(self.group, 0),
            keys::indexed(self.group, snapshot.log_start_offset),
        );
        if let Some(membership) = meta.last_membership.log_id() {
            batch.delete_range_cf(
                self.store.cf(CF_SM_META),
                keys::prefixed(self.group, &[meta_tag::MEMBERSHIP]),
                membership_key(self.group, membership.index()),
            );
        }
        self.store.put_tagged(
            &mut batch,
            CF_SM_META,
            self.group,
            meta_tag::SNAPSHOT,
            &(&meta, &data),
        )?;
        self.store.write_durable(batch)?;
        tracing::info!(group = %self.group, %last, log_start_offset = snapshot.log_start_offset, "snapshot at retention point");
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_rows_round_trip() {
        let row = IndexEntry {
            raft_index: 42,
            record_count: 1000,
            max_timestamp_ms: -3,
            batch_bytes: 1 << 20,
            producer_id: u64::MAX - 1,
            base_sequence: 7,
            appended_at_ms: 1_700_000_000_000,
        };
        assert_eq!(IndexEntry::decode(&row.encode()).unwrap(), row);
        assert!(IndexEntry::decode(&[0; 5]).is_err());
    }
}

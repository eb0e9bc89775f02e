//! The partition state machine. The Raft log *is* the partition log: applying an entry copies
//! no record bytes, it assigns the batch its offsets and writes one small offset-index row
//! (`base_offset -> raft index, count, max timestamp, bytes`), plus the applied state, in one
//! unsynced `WriteBatch` ordered after the entry in the shared WAL. The high watermark (the next
//! offset at the last applied entry) is published after that write; nothing above it is ever
//! read.
//!
//! Snapshots are metadata only (next offset, log start offset): the retention scheme of the
//! design builds them at the retention point, so a follower that installs one has every record
//! it must keep sent to it through ordinary appends.

use std::io;

use futures::TryStreamExt;
use mq_common::ids::GroupId;
use mq_raft::keys::{self, CF_OFFSET_INDEX, CF_SM_META};
use mq_raft::{Store, codec};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::types::{
    Appended, LogId, PartitionCommand, PartitionTypes, Snapshot, SnapshotMeta, StoredMembership,
};

/// Tags of this state machine's keys in `sm_meta`.
mod meta_tag {
    pub const APPLIED: u8 = 1;
    pub const SNAPSHOT: u8 = 2;
}

/// What the state machine has applied, persisted as one value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// The offset the next record gets: the high watermark.
    pub next_offset: u64,
    /// The first offset still stored.
    pub log_start_offset: u64,
}

/// The positions readers need, published after every apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

/// The snapshot data of a partition: metadata only.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartitionSnapshot {
    next_offset: u64,
    log_start_offset: u64,
}

/// One row of the offset index: where the batch with a given base offset lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub raft_index: u64,
    pub record_count: u32,
    pub max_timestamp_ms: i64,
    pub batch_bytes: u32,
}

impl IndexEntry {
    pub const LEN: usize = 24;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.raft_index.to_be_bytes());
        out[8..12].copy_from_slice(&self.record_count.to_be_bytes());
        out[12..20].copy_from_slice(&self.max_timestamp_ms.to_be_bytes());
        out[20..24].copy_from_slice(&self.batch_bytes.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> io::Result<Self> {
        let bytes: &[u8; Self::LEN] = bytes
            .try_into()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "offset index row size"))?;
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8"));
        Ok(Self {
            raft_index: u64_at(0),
            record_count: u32::from_be_bytes(bytes[8..12].try_into().expect("4")),
            max_timestamp_ms: u64_at(12) as i64,
            batch_bytes: u32::from_be_bytes(bytes[20..24].try_into().expect("4")),
        })
    }
}

pub struct PartitionStateMachine {
    store: Store,
    group: GroupId,
    state: AppliedState,
    progress: watch::Sender<Progress>,
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
    pub fn open(store: Store, group: GroupId) -> io::Result<Self> {
        let state: AppliedState = store
            .get_tagged(CF_SM_META, group, meta_tag::APPLIED)?
            .unwrap_or_default();
        let (progress, _) = watch::channel(progress_of(&state));
        Ok(Self {
            store,
            group,
            state,
            progress,
        })
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

    fn publish(&self) {
        self.progress.send_replace(progress_of(&self.state));
    }
}

fn progress_of(state: &AppliedState) -> Progress {
    Progress {
        high_watermark: state.next_offset,
        log_start_offset: state.log_start_offset,
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
            let mut reply = Appended {
                base_offset: self.state.next_offset,
                record_count: 0,
            };
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(PartitionCommand::Append(stored)) => {
                    // Validated by the leader before proposing; a replica that cannot read a
                    // committed entry must stop rather than assign different offsets.
                    let header = stored.header().map_err(|err| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "group {}: committed entry {log_id} is unreadable: {err}",
                                self.group
                            ),
                        )
                    })?;
                    let row = IndexEntry {
                        raft_index: log_id.index(),
                        record_count: header.record_count,
                        max_timestamp_ms: header.max_timestamp_ms,
                        batch_bytes: stored.len() as u32,
                    };
                    batch.put_cf(
                        self.store.cf(CF_OFFSET_INDEX),
                        keys::indexed(self.group, self.state.next_offset),
                        row.encode(),
                    );
                    reply.record_count = header.record_count;
                    self.state.next_offset += u64::from(header.record_count);
                }
                EntryPayload::Membership(membership) => {
                    self.state.membership = StoredMembership::new(Some(log_id), membership);
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

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        PartitionSnapshotBuilder {
            store: self.store.clone(),
            group: self.group,
            state: self.state.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<(), io::Error> {
        let snapshot: PartitionSnapshot = codec::decode(&data)?;
        tracing::info!(group = %self.group, last = ?meta.last_log_id, next_offset = snapshot.next_offset, "installing snapshot");
        self.state = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            next_offset: snapshot.next_offset,
            log_start_offset: snapshot.log_start_offset,
        };
        let mut batch = WriteBatch::default();
        self.put_applied(&mut batch)?;
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
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let stored: Option<(SnapshotMeta, Vec<u8>)> =
            self.store
                .get_tagged(CF_SM_META, self.group, meta_tag::SNAPSHOT)?;
        Ok(stored.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// Builds a partition snapshot from a copy of the applied state.
#[derive(Debug)]
pub struct PartitionSnapshotBuilder {
    store: Store,
    group: GroupId,
    state: AppliedState,
}

impl RaftSnapshotBuilder<PartitionTypes> for PartitionSnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.membership.clone(),
        };
        let data = codec::encode(&PartitionSnapshot {
            next_offset: self.state.next_offset,
            log_start_offset: self.state.log_start_offset,
        })?;
        let mut batch = WriteBatch::default();
        self.store.put_tagged(
            &mut batch,
            CF_SM_META,
            self.group,
            meta_tag::SNAPSHOT,
            &(&meta, &data),
        )?;
        self.store.write(batch)?;
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
        };
        assert_eq!(IndexEntry::decode(&row.encode()).unwrap(), row);
        assert!(IndexEntry::decode(&[0; 5]).is_err());
    }
}

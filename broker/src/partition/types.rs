//! The openraft type config of partition groups and the data their entries carry. openraft's
//! types are pinned here once; the rest of the broker uses the aliases (and
//! [`mq_raft::RaftGroup`] for everything a group does).

use std::fmt;

use openraft::impls::BasicNode;
use serde::{Deserialize, Serialize};

use crate::batch::StoredBatch;

/// What one partition log entry asks the state machine to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PartitionCommand {
    /// Append a producer batch: its records get the next offsets. `appended_at_ms` is the
    /// leader's clock when it proposed the batch: retention by time counts from it (not from
    /// the records' own timestamps, which producers set and may date back).
    Append {
        batch: StoredBatch,
        appended_at_ms: i64,
    },
}

impl fmt::Display for PartitionCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Append { batch, .. } => write!(f, "append({} bytes)", batch.len()),
        }
    }
}

/// A batch that is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// Offset of the first record of the batch.
    pub base_offset: u64,
    /// Number of records.
    pub record_count: u32,
    /// The batch repeated one of its producer's recent batches and was not appended again;
    /// `base_offset` is where the original went.
    pub duplicate: bool,
}

/// What applying a command produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyResult {
    Appended(Appended),
    /// Idempotent produce: the batch skips ahead of its producer's next sequence.
    OutOfOrderSequence {
        expected: u32,
        got: u32,
    },
    /// Idempotent produce: the batch repeats a sequence older than the remembered batches.
    DuplicateSequence {
        expected: u32,
        got: u32,
    },
}

impl fmt::Display for ApplyResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

openraft::declare_raft_types!(
    /// The type config of partition groups.
    pub PartitionTypes:
        D = PartitionCommand,
        R = ApplyResult,
        NodeId = u64,
        Node = BasicNode,
);

/// A partition's Raft group.
pub type PartitionGroup =
    mq_raft::RaftGroup<PartitionTypes, super::state_machine::PartitionStateMachine>;
/// What a log entry carries (match on `Normal`, `Blank`, `Membership`).
pub type EntryPayload = openraft::EntryPayload<PartitionCommand, u64, BasicNode>;
pub type LogId = openraft::type_config::alias::LogIdOf<PartitionTypes>;
pub type Entry = openraft::type_config::alias::EntryOf<PartitionTypes>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<PartitionTypes>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<PartitionTypes>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<PartitionTypes, Vec<u8>>;

//! The openraft type config of partition groups and the data their entries carry. openraft's
//! types are pinned here once; the rest of the broker uses the aliases.

use std::fmt;

use openraft::impls::BasicNode;
use serde::{Deserialize, Serialize};

use crate::batch::StoredBatch;

/// What one partition log entry asks the state machine to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PartitionCommand {
    /// Append a producer batch: its records get the next offsets.
    Append(StoredBatch),
}

impl fmt::Display for PartitionCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Append(batch) => write!(f, "append({} bytes)", batch.len()),
        }
    }
}

/// What applying a command produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// Offset of the first record of the batch.
    pub base_offset: u64,
    /// Number of records.
    pub record_count: u32,
}

impl fmt::Display for Appended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "appended {} at {}", self.record_count, self.base_offset)
    }
}

openraft::declare_raft_types!(
    /// The type config of partition groups.
    pub PartitionTypes:
        D = PartitionCommand,
        R = Appended,
        NodeId = u64,
        Node = BasicNode,
);

pub type PartitionRaft =
    openraft::Raft<PartitionTypes, super::state_machine::PartitionStateMachine>;
pub type LogId = openraft::type_config::alias::LogIdOf<PartitionTypes>;
pub type Entry = openraft::type_config::alias::EntryOf<PartitionTypes>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<PartitionTypes>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<PartitionTypes>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<PartitionTypes, Vec<u8>>;
pub type RaftMetrics = openraft::RaftMetrics<PartitionTypes>;
pub type ClientWriteError =
    openraft::error::RaftError<PartitionTypes, openraft::error::ClientWriteError<PartitionTypes>>;

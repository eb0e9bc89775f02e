//! The openraft type config of the cluster manager's group, pinned once here.

use openraft::impls::BasicNode;

use crate::state::{MetaCommand, MetaResponse};

openraft::declare_raft_types!(
    /// The type config of the cluster manager's Raft group.
    pub MetaTypes:
        D = MetaCommand,
        R = MetaResponse,
        NodeId = u64,
        Node = BasicNode,
);

pub type MetaRaft = openraft::Raft<MetaTypes, crate::state_machine::MetaStateMachine>;
pub type LogId = openraft::type_config::alias::LogIdOf<MetaTypes>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<MetaTypes>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<MetaTypes>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<MetaTypes, Vec<u8>>;

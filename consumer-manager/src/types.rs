//! The openraft type config of the consumer manager's group, pinned once here.

use openraft::impls::BasicNode;

use crate::state::{GroupCommand, GroupResponse};

openraft::declare_raft_types!(
    /// The type config of the consumer manager's Raft group.
    pub GroupsTypes:
        D = GroupCommand,
        R = GroupResponse,
        NodeId = u64,
        Node = BasicNode,
);

pub type GroupsRaft = openraft::Raft<GroupsTypes, crate::state_machine::GroupsStateMachine>;
pub type LogId = openraft::type_config::alias::LogIdOf<GroupsTypes>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<GroupsTypes>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<GroupsTypes>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<GroupsTypes, Vec<u8>>;

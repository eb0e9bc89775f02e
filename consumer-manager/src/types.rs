//! The consumer manager's Raft group (group 2): a control-plane group of `mq_raft` over
//! [`GroupsState`].

use crate::state::GroupsState;

/// The consumer manager's Raft group.
pub type GroupsRaft = mq_raft::KvGroup<GroupsState>;
/// Read access to the applied state.
pub type SharedState = mq_raft::SharedState<GroupsState>;

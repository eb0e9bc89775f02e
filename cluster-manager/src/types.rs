//! The cluster manager's Raft group (group 0): a control-plane group of `mq_raft` over
//! [`ClusterState`].

use crate::state::ClusterState;

/// The cluster manager's Raft group.
pub type MetaGroup = mq_raft::KvGroup<ClusterState>;
/// Read access to the applied cluster state.
pub type SharedState = mq_raft::SharedState<ClusterState>;

//! What a Raft group's openraft type config must be to live on this crate's store and
//! transport: u64 node ids, nodes addressed by `BasicNode { addr }`, and entries, votes and log
//! ids that serde can encode (postcard on disk and on the wire).

use openraft::RaftTypeConfig;
use openraft::impls::BasicNode;
use openraft::vote::RaftLeaderId;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Type configs of groups stored by [`crate::RocksLogStore`] and carried by
/// [`crate::transport`]. Implemented for every config that meets the bounds.
pub trait GroupTypes:
    RaftTypeConfig<
        NodeId = u64,
        Node = BasicNode,
        Term = u64,
        Entry: Serialize + DeserializeOwned + Clone,
        Vote: Serialize + DeserializeOwned,
        LeaderId: RaftLeaderId<Committed: Serialize + DeserializeOwned>,
        AsyncRuntime = openraft::impls::TokioRuntime,
    >
{
}

impl<C> GroupTypes for C where
    C: RaftTypeConfig<
            NodeId = u64,
            Node = BasicNode,
            Term = u64,
            Entry: Serialize + DeserializeOwned + Clone,
            Vote: Serialize + DeserializeOwned,
            LeaderId: RaftLeaderId<Committed: Serialize + DeserializeOwned>,
            AsyncRuntime = openraft::impls::TokioRuntime,
        >
{
}

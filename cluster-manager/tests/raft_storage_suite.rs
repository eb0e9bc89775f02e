//! openraft's storage conformance suite, run against the RocksDB log store with the cluster
//! manager's state machine (`mq_raft::KvStateMachine` over `ClusterState`), on a real RocksDB
//! with fsync.

use mq_cluster_manager::state::ClusterState;
use mq_common::ids::GroupId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_store_passes_the_openraft_storage_suite() -> Result<(), String> {
    mq_raft::testing::kv_storage_suite::<ClusterState>(GroupId::CLUSTER_MANAGER).await
}

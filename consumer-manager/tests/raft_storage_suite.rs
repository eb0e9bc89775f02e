//! openraft's storage conformance suite, run against the RocksDB log store with the consumer
//! manager's state machine (`mq_raft::KvStateMachine` over `GroupsState`), on a real RocksDB
//! with fsync.

use mq_common::ids::GroupId;
use mq_consumer_manager::state::GroupsState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_store_passes_the_openraft_storage_suite() -> Result<(), String> {
    mq_raft::testing::kv_storage_suite::<GroupsState>(GroupId::CONSUMER_MANAGER).await
}

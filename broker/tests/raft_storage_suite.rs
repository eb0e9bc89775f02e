//! openraft's storage conformance suite, run against the RocksDB log store with the partition
//! state machine: the store a partition replica really uses, on a real RocksDB with fsync.

use mq_broker::partition::state_machine::PartitionStateMachine;
use mq_broker::partition::types::PartitionTypes;
use mq_common::ids::GroupId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_store_passes_the_openraft_storage_suite() -> Result<(), String> {
    mq_raft::testing::storage_suite::<PartitionTypes, _, _>(GroupId(4242), |store, log| {
        PartitionStateMachine::open(store, log)
    })
    .await
}

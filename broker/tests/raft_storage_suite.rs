//! openraft's storage conformance suite, run against the RocksDB log store with the partition
//! state machine: the store a partition replica really uses, on a real RocksDB with fsync.

use mq_broker::partition::state_machine::PartitionStateMachine;
use mq_broker::partition::types::PartitionTypes;
use mq_common::ids::GroupId;
use mq_raft::{RocksLogStore, Store, StoreOptions};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<PartitionTypes, RocksLogStore<PartitionTypes>, PartitionStateMachine, TempDir>
    for RocksBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            TempDir,
            RocksLogStore<PartitionTypes>,
            PartitionStateMachine,
        ),
        StorageError<PartitionTypes>,
    > {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open store");
        let group = GroupId(4242);
        let log = RocksLogStore::new(store.clone(), group);
        let state_machine =
            PartitionStateMachine::open(store, log.clone()).expect("open state machine");
        Ok((dir, log, state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_store_passes_the_openraft_storage_suite()
-> Result<(), StorageError<PartitionTypes>> {
    Suite::test_all(RocksBuilder).await
}

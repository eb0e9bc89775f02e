//! openraft's storage conformance suite, run against the RocksDB log store with the cluster
//! manager's state machine, on a real RocksDB with fsync.

use mq_cluster_manager::state_machine::MetaStateMachine;
use mq_cluster_manager::types::MetaTypes;
use mq_common::ids::GroupId;
use mq_raft::{RocksLogStore, Store, StoreOptions};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<MetaTypes, RocksLogStore<MetaTypes>, MetaStateMachine, TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, RocksLogStore<MetaTypes>, MetaStateMachine), StorageError<MetaTypes>>
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open store");
        let log = RocksLogStore::new(store.clone(), GroupId::CLUSTER_MANAGER);
        let state_machine = MetaStateMachine::open(store).expect("open state machine");
        Ok((dir, log, state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_store_passes_the_openraft_storage_suite() -> Result<(), StorageError<MetaTypes>> {
    Suite::test_all(RocksBuilder).await
}

//! openraft's storage conformance suite over this crate's log store and a group's state
//! machine, on a real RocksDB with fsync in a temporary directory (feature `testing`).

use std::io;

use mq_common::ids::GroupId;
use openraft::StorageError;
use openraft::storage::RaftStateMachine;
use openraft::testing::log::{StoreBuilder, Suite};
use tempfile::TempDir;

use crate::kv::{KvStateMachine, KvTypes, ReplicatedState};
use crate::log_store::RocksLogStore;
use crate::store::{Store, StoreOptions};
use crate::types::GroupTypes;

/// Runs the suite with the state machine `open` makes on each fresh store; the error names
/// the first check that failed.
pub async fn storage_suite<C, SM, F>(group: GroupId, open: F) -> Result<(), String>
where
    C: GroupTypes<D: std::fmt::Debug, R: std::fmt::Debug>,
    SM: RaftStateMachine<C>,
    F: Fn(Store, RocksLogStore<C>) -> io::Result<SM> + Send + Sync,
{
    Suite::test_all(Builder {
        group,
        open,
        _types: std::marker::PhantomData,
    })
    .await
    .map_err(|err: StorageError<C>| err.to_string())
}

/// The suite over a control-plane group's [`KvStateMachine<S>`].
pub async fn kv_storage_suite<S: ReplicatedState>(group: GroupId) -> Result<(), String> {
    storage_suite::<KvTypes<S>, _, _>(group, |store, _log| KvStateMachine::<S>::open(store, group))
        .await
}

struct Builder<C, F> {
    group: GroupId,
    open: F,
    _types: std::marker::PhantomData<fn() -> C>,
}

impl<C, SM, F> StoreBuilder<C, RocksLogStore<C>, SM, TempDir> for Builder<C, F>
where
    C: GroupTypes,
    SM: RaftStateMachine<C>,
    F: Fn(Store, RocksLogStore<C>) -> io::Result<SM> + Send + Sync,
{
    async fn build(&self) -> Result<(TempDir, RocksLogStore<C>, SM), StorageError<C>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open store");
        let log = RocksLogStore::new(store.clone(), self.group);
        let state_machine = (self.open)(store, log.clone()).expect("open state machine");
        Ok((dir, log, state_machine))
    }
}

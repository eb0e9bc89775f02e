//! openraft's log storage for one group on the shared [`Store`].
//!
//! - Entries live in `raft_log` under `group ‖ index`, postcard-encoded.
//! - `append` writes one unsynced `WriteBatch` (entries readable at once) and hands the flush
//!   callback to the store's syncer, which completes it after the WAL fsync that covers it.
//! - The vote is written synchronously; `committed` and `last_purged` are ordered in the same
//!   WAL, so they never get ahead of the entries they describe.
//! - `truncate_after` and `purge` are one `DeleteRange` each.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use mq_common::ids::GroupId;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::{OptionalSend, RaftTypeConfig};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};

use crate::codec;
use crate::keys::{self, CF_RAFT_LOG, CF_RAFT_STATE, state_tag};
use crate::store::{Store, io_error};
use crate::types::GroupTypes;

/// The Raft log of one group. Cloning is cheap; clones share the store.
pub struct RocksLogStore<C> {
    store: Store,
    group: GroupId,
    _types: PhantomData<fn() -> C>,
}

impl<C> Clone for RocksLogStore<C> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            group: self.group,
            _types: PhantomData,
        }
    }
}

impl<C> Debug for RocksLogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksLogStore")
            .field("group", &self.group)
            .finish()
    }
}

impl<C: GroupTypes> RocksLogStore<C> {
    pub fn new(store: Store, group: GroupId) -> Self {
        Self {
            store,
            group,
            _types: PhantomData,
        }
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Reads the entries with indexes in `range` that are stored (a purged or absent index is
    /// skipped: callers that need contiguity check the indexes).
    pub fn read_entries(&self, range: impl RangeBounds<u64>) -> io::Result<Vec<C::Entry>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) if i < u64::MAX => keys::indexed(self.group, i + 1).to_vec(),
            Bound::Excluded(&i) => keys::indexed(self.group, i).to_vec(),
            Bound::Included(_) | Bound::Unbounded => keys::group_end(self.group).to_vec(),
        };
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(end);
        let log = self.store.cf(CF_RAFT_LOG);
        let from = keys::indexed(self.group, start);
        let iter = self.store.db().iterator_cf_opt(
            log,
            options,
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut entries = Vec::new();
        for item in iter {
            let (_, value) = item.map_err(io_error)?;
            entries.push(codec::decode::<C::Entry>(&value)?);
        }
        Ok(entries)
    }

    /// Reads one entry.
    pub fn read_entry(&self, index: u64) -> io::Result<Option<C::Entry>> {
        let log = self.store.cf(CF_RAFT_LOG);
        match self
            .store
            .db()
            .get_pinned_cf(log, keys::indexed(self.group, index))
            .map_err(io_error)?
        {
            Some(value) => codec::decode(&value).map(Some),
            None => Ok(None),
        }
    }

    fn last_entry(&self) -> io::Result<Option<C::Entry>> {
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(keys::group_start(self.group).to_vec());
        options.set_iterate_upper_bound(keys::group_end(self.group).to_vec());
        let log = self.store.cf(CF_RAFT_LOG);
        let mut iter = self
            .store
            .db()
            .iterator_cf_opt(log, options, IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (_, value) = item.map_err(io_error)?;
                codec::decode(&value).map(Some)
            }
            None => Ok(None),
        }
    }

    fn read_state<T: serde::de::DeserializeOwned>(&self, tag: u8) -> io::Result<Option<T>> {
        let state = self.store.cf(CF_RAFT_STATE);
        match self
            .store
            .db()
            .get_pinned_cf(state, keys::tagged(self.group, tag))
            .map_err(io_error)?
        {
            Some(value) => codec::decode(&value).map(Some),
            None => Ok(None),
        }
    }

    fn state_batch<T: serde::Serialize>(&self, tag: u8, value: &T) -> io::Result<WriteBatch> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.store.cf(CF_RAFT_STATE),
            keys::tagged(self.group, tag),
            codec::encode(value)?,
        );
        Ok(batch)
    }
}

impl<C: GroupTypes> RaftLogReader<C> for RocksLogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        self.read_entries(range)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        self.read_state(state_tag::VOTE)
    }
}

impl<C: GroupTypes> RaftLogStorage<C> for RocksLogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged_log_id: Option<LogIdOf<C>> = self.read_state(state_tag::LAST_PURGED)?;
        let last_log_id = match self.last_entry()? {
            Some(entry) => Some(entry.log_id()),
            None => last_purged_log_id.clone(),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let batch = self.state_batch(state_tag::VOTE, vote)?;
        let store = self.store.clone();
        // A vote must be on disk before this returns; the fsync blocks, so not on a runtime
        // worker.
        tokio::task::spawn_blocking(move || store.write_durable(batch))
            .await
            .map_err(io::Error::other)?
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let batch = self.state_batch(state_tag::COMMITTED, &committed)?;
        self.store.write(batch)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self
            .read_state::<Option<LogIdOf<C>>>(state_tag::COMMITTED)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let log = self.store.cf(CF_RAFT_LOG);
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(
                log,
                keys::indexed(self.group, entry.index()),
                codec::encode(&entry)?,
            );
        }
        self.store.write(batch)?;
        self.store
            .after_sync(Box::new(move |outcome| callback.io_completed(outcome)));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |log_id| log_id.index() + 1);
        tracing::debug!(group = %self.group, from, "truncating log");
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.store.cf(CF_RAFT_LOG),
            keys::indexed(self.group, from).as_slice(),
            keys::group_end(self.group).as_slice(),
        );
        self.store.write(batch)
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        tracing::debug!(group = %self.group, upto = log_id.index(), "purging log");
        let mut batch = self.state_batch(state_tag::LAST_PURGED, &log_id)?;
        batch.delete_range_cf(
            self.store.cf(CF_RAFT_LOG),
            keys::indexed(self.group, 0),
            keys::indexed(self.group, log_id.index() + 1),
        );
        self.store.write(batch)
    }
}

/// The typed log id of an entry (re-exported helper for state machines).
pub fn log_id_of<C: RaftTypeConfig>(entry: &C::Entry) -> LogIdOf<C> {
    entry.log_id()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::testing::blank_ent;
    use openraft::type_config::TypeConfigExt;

    use super::*;
    use crate::StoreOptions;

    openraft::declare_raft_types!(
        TestTypes:
            D = String,
            R = String,
    );

    /// Appends to three groups within one syncer round: one fsync completes all three, and
    /// none completes before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_fsync_serves_appends_of_several_groups() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            sync_linger: Duration::from_millis(300),
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), &options).unwrap();
        let mut waiting = Vec::new();
        for group in 1..=3u64 {
            let mut log = RocksLogStore::<TestTypes>::new(store.clone(), GroupId(1000 + group));
            let (tx, rx) = TestTypes::oneshot();
            log.append([blank_ent::<TestTypes>(1, 1, 1)], IOFlushed::signal(tx))
                .await
                .unwrap();
            // Readable before durable.
            assert_eq!(log.read_entries(1..2).unwrap().len(), 1);
            waiting.push(rx);
        }
        let stats = store.sync_stats().expect("fsync is on");
        assert_eq!(stats.syncs.load(std::sync::atomic::Ordering::Relaxed), 0);
        for rx in waiting {
            rx.await.unwrap().unwrap();
        }
        assert_eq!(stats.syncs.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(
            stats.callbacks.load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }

    #[tokio::test]
    async fn groups_do_not_see_each_others_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut a = RocksLogStore::<TestTypes>::new(store.clone(), GroupId(1));
        let mut b = RocksLogStore::<TestTypes>::new(store.clone(), GroupId(2));
        let entries = (1..=5).map(|i| blank_ent::<TestTypes>(1, 1, i));
        a.append(entries, IOFlushed::noop()).await.unwrap();
        assert_eq!(b.get_log_state().await.unwrap().last_log_id, None);
        assert!(b.read_entries(..).unwrap().is_empty());
        let state = a.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index()), Some(5));
        a.truncate_after(Some(blank_ent::<TestTypes>(1, 1, 2).log_id))
            .await
            .unwrap();
        assert_eq!(a.read_entries(..).unwrap().len(), 2);
        a.purge(blank_ent::<TestTypes>(1, 1, 1).log_id)
            .await
            .unwrap();
        let state = a.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index()), Some(1));
        assert_eq!(state.last_log_id.map(|l| l.index()), Some(2));
    }
}

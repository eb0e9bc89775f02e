//! openraft's log storage for one group on the shared [`Store`].
//!
//! - Entries live in `raft_log` under `group ‖ index`, postcard-encoded.
//! - `append` writes one unsynced `WriteBatch` (entries readable at once) and hands the flush
//!   callback to the store's syncer, which completes it after the WAL fsync that covers it.
//! - The vote is written synchronously; `committed` and `last_purged` are ordered in the same
//!   WAL, so they never get ahead of the entries they describe.
//! - `truncate_after` and `purge` are one `DeleteRange` each.
//! - The most recent entries stay in a small per-group cache, bounded in bytes per group and in
//!   total per store: applying an entry, replicating it and reading the tail of a partition
//!   then skip the RocksDB read and the decode. The cache mirrors the stored log exactly for
//!   the indexes it holds, and keeps each entry's encoding too: replication sends those bytes
//!   (see [`RocksLogStore::encoded`]) instead of encoding the entry again per follower.
//! - A follower hands the encodings it received to [`RocksLogStore::received`] before openraft
//!   appends the entries, so they are stored as received, not encoded again.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
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

/// A log write slower than this is logged.
const SLOW_LOG_IO: std::time::Duration = std::time::Duration::from_millis(50);

/// The Raft log of one group. Cloning is cheap; clones share the store and the cache.
pub struct RocksLogStore<C: RaftTypeConfig> {
    store: Store,
    group: GroupId,
    cache: Arc<Mutex<TailCache<Encoded<C::Entry>>>>,
    /// Encodings a follower received for the entries openraft is about to append.
    received: Arc<Mutex<Received<C>>>,
    _types: PhantomData<fn() -> C>,
}

/// Encodings received by a follower, by index, with the log id each encodes.
type Received<C> = HashMap<u64, (LogIdOf<C>, Bytes)>;

/// An entry with its encoding (what `raft_log` stores for it).
#[derive(Debug, Clone)]
struct Encoded<E> {
    entry: E,
    bytes: Bytes,
}

impl<C: RaftTypeConfig> Clone for RocksLogStore<C> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            group: self.group,
            cache: self.cache.clone(),
            received: self.received.clone(),
            _types: PhantomData,
        }
    }
}

/// Bytes held by every group's cache of one store, against one budget.
#[derive(Debug)]
pub struct CacheBudget {
    used: AtomicUsize,
    total: usize,
    per_group: usize,
}

impl CacheBudget {
    pub fn new(total: usize, per_group: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            total,
            per_group,
        }
    }

    /// Bytes cached now, all groups together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// The latest contiguous entries of a group, by index. A push evicts the group's oldest
/// entries while the group is over its own budget or the store over the shared one (the newest
/// entry always stays, so apply right after append never misses).
#[derive(Debug)]
struct TailCache<E> {
    /// Index of the first cached entry.
    first: u64,
    entries: VecDeque<(E, usize)>,
    bytes: usize,
    budget: Arc<CacheBudget>,
}

impl<E> Drop for TailCache<E> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl<E: Clone> TailCache<E> {
    fn new(budget: Arc<CacheBudget>) -> Self {
        Self {
            first: 0,
            entries: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    fn over_budget(&self) -> bool {
        self.bytes > self.budget.per_group || self.budget.used() > self.budget.total
    }

    /// One past the last cached index.
    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Adds the entry at `index`, which continues the cached run (or restarts it).
    fn push(&mut self, index: u64, entry: E, size: usize) {
        if self.entries.is_empty() || index != self.end() {
            self.clear();
            self.first = index;
        }
        self.entries.push_back((entry, size));
        self.bytes += size;
        self.budget.used.fetch_add(size, Ordering::Relaxed);
        while self.over_budget() && self.entries.len() > 1 {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.forget(size);
            self.first += 1;
        }
    }

    fn forget(&mut self, size: usize) {
        self.bytes -= size;
        self.budget.used.fetch_sub(size, Ordering::Relaxed);
    }

    fn clear(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
        self.entries.clear();
        self.bytes = 0;
    }

    /// Drops entries at `from` and after.
    fn truncate(&mut self, from: u64) {
        while self.end() > from.max(self.first) && !self.entries.is_empty() {
            if let Some((_, size)) = self.entries.pop_back() {
                self.forget(size);
            }
        }
    }

    /// The cached entry at `index`.
    fn at(&self, index: u64) -> Option<&E> {
        let offset = index.checked_sub(self.first)?;
        self.entries
            .get(usize::try_from(offset).ok()?)
            .map(|(e, _)| e)
    }

    /// Replaces the cached entry at `index`, if cached.
    fn replace(&mut self, index: u64, entry: E, size: usize) {
        if index < self.first || index >= self.end() {
            return;
        }
        let slot = &mut self.entries[(index - self.first) as usize];
        let old = std::mem::replace(slot, (entry, size)).1;
        self.forget(old);
        self.bytes += size;
        self.budget.used.fetch_add(size, Ordering::Relaxed);
    }

    /// Drops entries up to and including `upto`.
    fn purge(&mut self, upto: u64) {
        while !self.entries.is_empty() && self.first <= upto {
            self.pop_front();
        }
    }

    /// The entries `start..end` when all of them are cached.
    fn get(&self, start: u64, end: u64) -> Option<Vec<E>> {
        if start < self.first || end > self.end() || start > end {
            return None;
        }
        let from = (start - self.first) as usize;
        let to = (end - self.first) as usize;
        Some(
            self.entries
                .range(from..to)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

impl<C: RaftTypeConfig> Debug for RocksLogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksLogStore")
            .field("group", &self.group)
            .finish()
    }
}

impl<C: GroupTypes> RocksLogStore<C> {
    pub fn new(store: Store, group: GroupId) -> Self {
        let budget = store.log_cache_budget();
        Self {
            store,
            group,
            cache: Arc::new(Mutex::new(TailCache::new(budget))),
            received: Arc::default(),
            _types: PhantomData,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, TailCache<Encoded<C::Entry>>> {
        self.cache.lock().expect("log cache lock")
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
        let end_index = match range.end_bound() {
            Bound::Included(&i) => i.checked_add(1),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        if let Some(end_index) = end_index
            && let Some(entries) = self.cache().get(start, end_index)
        {
            return Ok(entries.into_iter().map(|cached| cached.entry).collect());
        }
        let end = match end_index {
            Some(i) => keys::indexed(self.group, i).to_vec(),
            None => keys::group_end(self.group).to_vec(),
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
            entries.push(decode_stored::<C::Entry>(&value)?);
        }
        Ok(entries)
    }

    /// The encoding of `entry` as stored: the cached bytes when the cache holds the entry with
    /// this log id (a compaction rewrite keeps the log id; either version is the entry),
    /// else encoded now.
    pub fn encoded(&self, entry: &C::Entry) -> io::Result<Bytes> {
        if let Some(cached) = self.cache().at(entry.index())
            && cached.entry.log_id() == entry.log_id()
        {
            return Ok(cached.bytes.clone());
        }
        codec::encode(entry).map(Bytes::from)
    }

    /// Decodes entries a follower received as encoded by the leader (zero copy: their batches
    /// stay slices of `frames`) and keeps the encodings for the append that follows, which
    /// then stores them as they are. Replaces what an earlier call left unused.
    pub fn received(&self, frames: Vec<Bytes>) -> io::Result<Vec<C::Entry>> {
        let mut entries = Vec::with_capacity(frames.len());
        let mut encodings = HashMap::with_capacity(frames.len());
        for frame in frames {
            let entry: C::Entry = codec::decode_shared(&frame)?;
            encodings.insert(entry.index(), (entry.log_id(), frame));
            entries.push(entry);
        }
        *self.received.lock().expect("received lock") = encodings;
        Ok(entries)
    }

    /// Reads one entry.
    pub fn read_entry(&self, index: u64) -> io::Result<Option<C::Entry>> {
        if let Some(mut cached) = self.cache().get(index, index + 1) {
            return Ok(cached.pop().map(|cached| cached.entry));
        }
        let log = self.store.cf(CF_RAFT_LOG);
        match self
            .store
            .db()
            .get_pinned_cf(log, keys::indexed(self.group, index))
            .map_err(io_error)?
        {
            Some(value) => decode_stored(&value).map(Some),
            None => Ok(None),
        }
    }

    /// Replaces the stored entry at `entry`'s index with `entry` (same log id, another payload:
    /// a partition's compaction rewrites old batches). Only an entry still stored is replaced:
    /// returns false when it was purged or truncated meanwhile. Serialized with purges and
    /// truncations, so a purged index is never written back.
    pub fn rewrite(&self, entry: C::Entry) -> io::Result<bool> {
        let index = entry.index();
        let key = keys::indexed(self.group, index);
        let log = self.store.cf(CF_RAFT_LOG);
        let bytes = Bytes::from(codec::encode(&entry)?);
        let mut cache = self.cache();
        let stored = self.store.db().get_pinned_cf(log, key).map_err(io_error)?;
        let same_log_id = match stored {
            Some(value) => codec::decode::<C::Entry>(&value)?.log_id() == entry.log_id(),
            None => false,
        };
        if !same_log_id {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(log, key, &bytes);
        self.store.write(batch)?;
        let size = bytes.len();
        cache.replace(index, Encoded { entry, bytes }, size);
        Ok(true)
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
                decode_stored(&value).map(Some)
            }
            None => Ok(None),
        }
    }

    fn read_state<T: serde::de::DeserializeOwned>(&self, tag: u8) -> io::Result<Option<T>> {
        self.store.get_tagged(CF_RAFT_STATE, self.group, tag)
    }

    fn state_batch<T: serde::Serialize>(&self, tag: u8, value: &T) -> io::Result<WriteBatch> {
        let mut batch = WriteBatch::default();
        self.store
            .put_tagged(&mut batch, CF_RAFT_STATE, self.group, tag, value)?;
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
        crate::blocking::spawn("save_vote", move || store.write_durable(batch))
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
        let mut received = std::mem::take(&mut *self.received.lock().expect("received lock"));
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = match received.remove(&entry.index()) {
                Some((log_id, bytes)) if log_id == entry.log_id() => bytes,
                _ => Bytes::from(codec::encode(&entry)?),
            };
            encoded.push(Encoded { entry, bytes });
        }
        // Sized up front, so RocksDB does not grow (and copy) its buffer per entry.
        let capacity = encoded.iter().map(|e| e.bytes.len() + 32).sum::<usize>() + 12;
        let mut batch = WriteBatch::with_capacity_bytes(capacity);
        for e in &encoded {
            batch.put_cf(log, keys::indexed(self.group, e.entry.index()), &e.bytes);
        }
        let started = std::time::Instant::now();
        self.store.write(batch)?;
        let wrote = started.elapsed();
        metrics::histogram!("mq_raft_log_write_seconds").record(wrote.as_secs_f64());
        if wrote >= SLOW_LOG_IO {
            tracing::warn!(group = %self.group, took_ms = wrote.as_millis() as u64, "slow log write");
        }
        let mut cache = self.cache();
        for e in encoded {
            let size = e.bytes.len();
            cache.push(e.entry.index(), e, size);
        }
        drop(cache);
        self.store.after_sync(Box::new(move |outcome| {
            // From the write to the fsync that made it durable (a slow fsync is logged once
            // per round by the syncer, not once per write here).
            metrics::histogram!("mq_raft_log_flush_seconds")
                .record(started.elapsed().as_secs_f64());
            callback.io_completed(outcome)
        }));
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
        // Under the cache lock: a rewrite never lands between the delete and the cache.
        let mut cache = self.cache();
        self.store.write(batch)?;
        cache.truncate(from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        tracing::debug!(group = %self.group, upto = log_id.index(), "purging log");
        let mut batch = self.state_batch(state_tag::LAST_PURGED, &log_id)?;
        batch.delete_range_cf(
            self.store.cf(CF_RAFT_LOG),
            keys::indexed(self.group, 0),
            keys::indexed(self.group, log_id.index() + 1),
        );
        let mut cache = self.cache();
        self.store.write(batch)?;
        cache.purge(log_id.index());
        Ok(())
    }
}

/// Decodes an entry read from RocksDB: one copy of the value, which the entry's batches then
/// share (rather than a copy of each).
fn decode_stored<E: serde::de::DeserializeOwned>(value: &[u8]) -> io::Result<E> {
    codec::decode_shared(&Bytes::copy_from_slice(value))
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

    /// A rewrite replaces a stored entry with the same log id (cache and disk alike), and never
    /// writes back an entry that was purged or one with another log id.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rewrite_replaces_only_a_stored_entry_with_the_same_log_id() {
        use openraft::EntryPayload;
        use openraft::testing::log_id;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut log = RocksLogStore::<TestTypes>::new(store.clone(), GroupId(1001));
        let entry = |index: u64, term: u64, data: &str| {
            let mut entry = blank_ent::<TestTypes>(term, 1, index);
            entry.payload = EntryPayload::Normal(data.to_owned());
            entry
        };
        let (tx, rx) = TestTypes::oneshot();
        log.append((1..=3).map(|i| entry(i, 1, "old")), IOFlushed::signal(tx))
            .await
            .unwrap();
        rx.await.unwrap().unwrap();
        let payload = |log: &RocksLogStore<TestTypes>, index| match log.read_entry(index).unwrap() {
            Some(openraft::Entry {
                payload: EntryPayload::Normal(data),
                ..
            }) => Some(data),
            _ => None,
        };

        assert!(log.rewrite(entry(2, 1, "new")).unwrap());
        assert_eq!(payload(&log, 2).as_deref(), Some("new"));
        // Read back from disk, past the cache.
        let fresh = RocksLogStore::<TestTypes>::new(store.clone(), GroupId(1001));
        assert_eq!(payload(&fresh, 2).as_deref(), Some("new"));
        // Another log id at that index is not this entry.
        assert!(!log.rewrite(entry(3, 2, "other term")).unwrap());
        assert_eq!(payload(&log, 3).as_deref(), Some("old"));
        // A purged entry stays purged.
        log.purge(log_id::<TestTypes>(1, 1, 2)).await.unwrap();
        assert!(!log.rewrite(entry(1, 1, "revived")).unwrap());
        assert_eq!(payload(&fresh, 1), None);
        assert_eq!(payload(&fresh, 3).as_deref(), Some("old"));
    }

    /// A follower stores the encodings it received (no second encoding), replication sends
    /// the stored bytes, and what is read back, cached or from disk, is the same entry.
    #[tokio::test]
    async fn received_encodings_are_stored_and_sent_as_they_came() {
        use openraft::EntryPayload;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut follower = RocksLogStore::<TestTypes>::new(store.clone(), GroupId(1001));
        let entry = |index: u64| {
            let mut entry = blank_ent::<TestTypes>(1, 1, index);
            entry.payload = EntryPayload::Normal(format!("batch {index}"));
            entry
        };
        let frames: Vec<Bytes> = (1..=3)
            .map(|i| Bytes::from(codec::encode(&entry(i)).unwrap()))
            .collect();
        let entries = follower.received(frames.clone()).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.index()).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        follower.append(entries, IOFlushed::noop()).await.unwrap();
        for (i, frame) in (1..=3).zip(&frames) {
            let sent = follower.encoded(&entry(i)).unwrap();
            assert_eq!(
                sent.as_ptr(),
                frame.as_ptr(),
                "entry {i}: the received bytes, kept"
            );
        }
        // An entry with another log id at a cached index is encoded afresh.
        let other = blank_ent::<TestTypes>(2, 1, 2);
        assert_eq!(
            follower.encoded(&other).unwrap(),
            Bytes::from(codec::encode(&other).unwrap())
        );
        // Encodings left unused by one append are not reused by a later one.
        follower.received(vec![frames[0].clone()]).unwrap();
        follower
            .append([entry(4)], IOFlushed::noop())
            .await
            .unwrap();
        assert!(follower.received.lock().unwrap().is_empty());
        let fresh = RocksLogStore::<TestTypes>::new(store, GroupId(1001));
        let stored = fresh.read_entries(1..5).unwrap();
        assert_eq!(stored.len(), 4);
        for stored in stored {
            assert_eq!(
                codec::encode(&stored).unwrap(),
                codec::encode(&entry(stored.index())).unwrap()
            );
        }
    }

    #[test]
    fn tail_cache_mirrors_appends_truncations_and_purges() {
        let budget = Arc::new(CacheBudget::new(1000, 100));
        let mut cache = TailCache::<u64>::new(budget.clone());
        for i in 1..=5 {
            cache.push(i, i * 10, 10);
        }
        assert_eq!(cache.get(2, 5), Some(vec![20, 30, 40]));
        assert_eq!(cache.get(0, 2), None, "index 0 was never cached");
        assert_eq!(cache.get(4, 7), None, "beyond the tail");
        cache.truncate(4);
        assert_eq!(cache.get(3, 4), Some(vec![30]));
        assert_eq!(cache.get(4, 5), None);
        cache.push(4, 400, 10);
        assert_eq!(cache.get(3, 5), Some(vec![30, 400]));
        cache.purge(2);
        assert_eq!(cache.get(2, 3), None);
        assert_eq!(cache.get(3, 5), Some(vec![30, 400]));
        // Over budget: the oldest go.
        for i in 5..=20 {
            cache.push(i, i, 10);
        }
        assert!(cache.bytes <= 100);
        assert_eq!(cache.get(20, 21), Some(vec![20]));
        assert_eq!(cache.get(5, 6), None);
        // A gap restarts the run.
        cache.push(30, 30, 10);
        assert_eq!(cache.get(20, 21), None);
        assert_eq!(cache.get(30, 31), Some(vec![30]));
        assert_eq!(budget.used(), 10);
        drop(cache);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_shared_budget_bounds_all_groups_together() {
        let budget = Arc::new(CacheBudget::new(100, 80));
        let mut a = TailCache::<u64>::new(budget.clone());
        let mut b = TailCache::<u64>::new(budget.clone());
        for i in 1..=8 {
            a.push(i, i, 10);
        }
        assert_eq!(budget.used(), 80);
        for i in 1..=5 {
            b.push(i, i, 10);
        }
        // b evicts its own oldest to keep the store within 100 bytes.
        assert!(budget.used() <= 100, "{}", budget.used());
        assert_eq!(b.get(5, 6), Some(vec![5]));
        assert_eq!(a.get(1, 9).map(|v| v.len()), Some(8));
    }

    /// With and without the cache, reads return what is stored.
    #[tokio::test]
    async fn cached_and_stored_reads_agree() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            log_cache_mib: 0,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), &options).unwrap();
        let mut log = RocksLogStore::<TestTypes>::new(store.clone(), GroupId(9));
        let entries = (1..=4).map(|i| blank_ent::<TestTypes>(1, 1, i));
        log.append(entries, IOFlushed::noop()).await.unwrap();
        // A zero budget still keeps the newest entry, and misses fall back to RocksDB.
        let all = log.read_entries(1..5).unwrap();
        assert_eq!(
            all.iter().map(|e| e.index()).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(log.read_entry(2).unwrap().map(|e| e.index()), Some(2));
        assert_eq!(log.read_entry(4).unwrap().map(|e| e.index()), Some(4));
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

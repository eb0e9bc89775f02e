//! The process's one RocksDB: opened once with every column family, locked against a second
//! process, shared by every Raft group through cheap clones of [`Store`].

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mq_common::ids::GroupId;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Options,
    WriteBatch, WriteOptions,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::keys::{self, COLUMN_FAMILIES};
use crate::log_store::CacheBudget;
use crate::syncer::{SyncCallback, SyncStats, Syncer};

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "mq.lock";
/// Name of the RocksDB directory inside the data directory.
pub const DB_DIR: &str = "db";

/// Storage settings (the `[storage]` section of the broker config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// Make writes durable before acknowledging them. Only tests turn this off.
    pub fsync: bool,
    /// Shared block cache for reads, MiB.
    pub block_cache_mib: usize,
    /// Memory for all memtables together, MiB.
    pub write_buffer_mib: usize,
    /// WAL size that forces memtable flushes so old WAL files can be removed, MiB.
    pub max_wal_mib: u64,
    /// Background flush and compaction threads.
    pub background_jobs: i32,
    /// Extra wait of the syncer before each fsync, to gather more writes. Zero in production:
    /// writes queue up naturally while an fsync runs.
    #[serde(with = "humantime_serde")]
    pub sync_linger: Duration,
    /// Recent log entries kept in memory per Raft group, MiB (apply, replication and tail
    /// reads skip RocksDB for them).
    pub log_cache_mib: usize,
    /// Cap on those caches, all groups together, MiB.
    pub log_cache_total_mib: usize,
    /// Free space kept on the data directory's disk, MiB: below it the node refuses new data
    /// (see `mq_raft::disk`). Leave more than `write_buffer_mib`, which flushes need.
    pub min_free_mib: u64,
    /// How often free space is measured.
    #[serde(with = "humantime_serde")]
    pub disk_check_interval: Duration,
    /// Most MiB/s memtable flushes and compactions write (a fixed-rate RocksDB rate
    /// limiter); 0 leaves them unlimited. Their bursts otherwise queue ahead of the WAL
    /// fsyncs that acknowledgements wait for.
    pub background_write_mib_per_sec: u64,
    /// Memtable flushes and compactions write with direct IO (`O_DIRECT`), past the page
    /// cache: copying every flushed batch into the page cache was a third of a broker's CPU
    /// at full rate. Turned off by itself (with a warning) on a file system without direct IO.
    pub direct_io_background: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            block_cache_mib: 128,
            write_buffer_mib: 256,
            max_wal_mib: 512,
            background_jobs: 2,
            sync_linger: Duration::ZERO,
            log_cache_mib: 8,
            log_cache_total_mib: 256,
            min_free_mib: 512,
            disk_check_interval: Duration::from_millis(250),
            background_write_mib_per_sec: 256,
            direct_io_background: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "data directory {dir} is in use by another running node (lock file {lock} is held); \
         stop that node or choose another --data-dir"
    )]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error("cannot use data directory {dir}: {source}")]
    Io { dir: PathBuf, source: io::Error },
    #[error("cannot open RocksDB in {dir}: {source}")]
    Open {
        dir: PathBuf,
        source: rocksdb::Error,
    },
}

/// A cheap, cloneable handle to the process's RocksDB.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    // Field order is drop order: the syncer (which holds the DB) stops before the DB closes,
    // and the lock is released last.
    syncer: Option<Syncer>,
    db: Arc<DB>,
    /// The options the DB was opened with: they hold its statistics.
    db_options: Options,
    dir: PathBuf,
    options: StoreOptions,
    log_cache: Arc<CacheBudget>,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("fsync", &self.inner.syncer.is_some())
            .finish()
    }
}

impl Store {
    /// Opens (creating when missing) the store in `dir`, after taking the directory's lock.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        let io_err = |source| StoreError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.to_owned(),
                    lock: lock_path,
                });
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(io_err(err)),
        }

        let db_dir = dir.join(DB_DIR);
        let mut options = options.clone();
        if options.direct_io_background
            && let Err(err) = probe_direct_io(dir)
        {
            tracing::warn!(dir = %dir.display(), %err, "no direct IO here: flushes and compactions go through the page cache");
            options.direct_io_background = false;
        }
        let options = &options;
        let (db, db_options) = open_db(&db_dir, options).map_err(|source| StoreError::Open {
            dir: db_dir.clone(),
            source,
        })?;
        let db = Arc::new(db);
        let syncer = if options.fsync {
            Some(Syncer::start(db.clone(), options.sync_linger).map_err(io_err)?)
        } else {
            tracing::warn!(dir = %dir.display(), "fsync is OFF: acknowledged writes can be lost on a crash");
            None
        };
        tracing::info!(dir = %dir.display(), fsync = options.fsync, "store opened");
        Ok(Self {
            inner: Arc::new(Inner {
                syncer,
                db,
                db_options,
                dir: dir.to_owned(),
                options: options.clone(),
                log_cache: Arc::new(CacheBudget::new(
                    options.log_cache_total_mib << 20,
                    options.log_cache_mib << 20,
                )),
                _lock: lock,
            }),
        })
    }

    pub fn db(&self) -> &DB {
        &self.inner.db
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The budget every group's log cache draws from.
    pub fn log_cache_budget(&self) -> Arc<CacheBudget> {
        self.inner.log_cache.clone()
    }

    /// A column family opened with the store.
    pub fn cf(&self, name: &str) -> &ColumnFamily {
        self.inner
            .db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} is opened with the store"))
    }

    /// Writes `batch` without waiting for the disk. Readable at once; durable after the next
    /// sync (see [`Store::after_sync`]).
    pub fn write(&self, batch: WriteBatch) -> io::Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(false);
        self.inner.db.write_opt(batch, &options).map_err(io_error)
    }

    /// Writes `batch` and waits until it (and every write before it) is on disk.
    pub fn write_durable(&self, batch: WriteBatch) -> io::Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(self.inner.syncer.is_some());
        self.inner.db.write_opt(batch, &options).map_err(io_error)
    }

    /// Runs `callback` once every write issued before this call is on disk (at once, with
    /// fsync off).
    pub fn after_sync(&self, callback: SyncCallback) {
        match &self.inner.syncer {
            Some(syncer) => syncer.after_sync(callback),
            None => callback(Ok(())),
        }
    }

    /// The value stored under `group ‖ tag` in column family `cf`, decoded.
    pub fn get_tagged<T: DeserializeOwned>(
        &self,
        cf: &str,
        group: GroupId,
        tag: u8,
    ) -> io::Result<Option<T>> {
        self.inner
            .db
            .get_pinned_cf(self.cf(cf), keys::tagged(group, tag))
            .map_err(io_error)?
            .map(|value| codec::decode(&value))
            .transpose()
    }

    /// Adds `group ‖ tag -> value` (encoded) in column family `cf` to `batch`.
    pub fn put_tagged<T: Serialize + ?Sized>(
        &self,
        batch: &mut WriteBatch,
        cf: &str,
        group: GroupId,
        tag: u8,
        value: &T,
    ) -> io::Result<()> {
        batch.put_cf(self.cf(cf), keys::tagged(group, tag), codec::encode(value)?);
        Ok(())
    }

    /// RocksDB's stall, flush and compaction counters since the store opened.
    pub fn engine_counters(&self) -> EngineCounters {
        use rocksdb::statistics::{Histogram, Ticker};
        let options = &self.inner.db_options;
        let (flush, compaction) = (
            options.get_histogram_data(Histogram::FlushTime),
            options.get_histogram_data(Histogram::CompactionTime),
        );
        EngineCounters {
            stall_micros: options.get_ticker_count(Ticker::StallMicros),
            flushes: flush.count(),
            flush_write_bytes: options.get_ticker_count(Ticker::FlushWriteBytes),
            flush_micros: flush.sum(),
            compactions: compaction.count(),
            compaction_write_bytes: options.get_ticker_count(Ticker::CompactWriteBytes),
            compaction_micros: compaction.sum(),
        }
    }

    /// Syncer counters; `None` with fsync off.
    pub fn sync_stats(&self) -> Option<&SyncStats> {
        self.inner.syncer.as_ref().map(Syncer::stats)
    }

    /// Deletes every key of `group` in every column family (replica removal). Not synced: a
    /// crash may resurrect the data, and the owner of the group repeats the removal.
    pub fn delete_group(&self, group: GroupId) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        for name in COLUMN_FAMILIES {
            batch.delete_range_cf(
                self.cf(name),
                keys::group_start(group),
                keys::group_end(group),
            );
        }
        self.write(batch)?;
        for name in COLUMN_FAMILIES {
            let cf = self.cf(name);
            let (start, end) = (keys::group_start(group), keys::group_end(group));
            self.inner
                .db
                .delete_file_in_range_cf(cf, start, end)
                .map_err(io_error)?;
        }
        Ok(())
    }
}

/// Checks that files in `dir` can be written with `O_DIRECT` (tmpfs, for one, refuses).
fn probe_direct_io(dir: &Path) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    const BLOCK: usize = 4096;
    let path = dir.join(".direct-io-probe");
    let written = File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
        .open(&path)
        .and_then(|mut file| {
            // Direct IO wants a block-aligned buffer: take an aligned block out of two.
            let buffer = vec![0u8; 2 * BLOCK];
            let start = buffer.as_ptr().align_offset(BLOCK);
            file.write_all(&buffer[start..start + BLOCK])
        });
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

fn open_db(path: &Path, options: &StoreOptions) -> Result<(DB, Options), rocksdb::Error> {
    let mut db_options = Options::default();
    // Counters for stalls, flushes and compactions (see `Store::engine_counters`).
    db_options.enable_statistics();
    db_options.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptDetailedTimers);
    // Flushes and compactions write their files out as they go (sync_file_range every MiB)
    // rather than leaving the kernel a burst of dirty pages that a WAL fsync then waits
    // behind, and at a bounded rate.
    db_options.set_bytes_per_sync(1 << 20);
    db_options.set_use_direct_io_for_flush_and_compaction(options.direct_io_background);
    if options.background_write_mib_per_sec > 0 {
        let rate = i64::try_from(options.background_write_mib_per_sec.saturating_mul(1 << 20))
            .unwrap_or(i64::MAX);
        // A fixed rate, not RocksDB's auto-tuned limiter: that one drops to a twentieth of
        // the rate while demand is low and climbs back by 5 % every 10 s, so a producer that
        // speeds up after a quiet spell had its flushes held to ~13 MB/s for minutes and the
        // memtables filled up (writes stopped for seconds at a time).
        db_options.set_ratelimiter(rate, 100_000, 10);
    }
    db_options.create_if_missing(true);
    db_options.create_missing_column_families(true);
    db_options.increase_parallelism(options.background_jobs.max(1));
    db_options.set_max_background_jobs(options.background_jobs.max(1));
    db_options.set_db_write_buffer_size(options.write_buffer_mib << 20);
    db_options.set_max_total_wal_size(options.max_wal_mib << 20);
    db_options.set_keep_log_file_num(4);

    let cache = Cache::new_lru_cache(options.block_cache_mib << 20);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);

    let families = COLUMN_FAMILIES.map(|name| {
        let mut cf = Options::default();
        cf.set_block_based_table_factory(&table);
        cf.set_level_compaction_dynamic_level_bytes(true);
        if name == keys::CF_RAFT_LOG {
            // Producer batches: big values, written once, read mostly from the tail, and
            // already compressed by producers (or incompressible): compressing them again
            // costs CPU for nothing.
            cf.set_write_buffer_size(64 << 20);
            // Room to keep accepting writes while a full memtable is being flushed.
            cf.set_max_write_buffer_number(4);
            cf.set_compression_type(DBCompressionType::None);
            // Batches go to blob files when flushed: written once, never rewritten by
            // compaction (which then moves only keys and blob references).
            cf.set_enable_blob_files(true);
            cf.set_min_blob_size(4096);
            cf.set_blob_file_size(256 << 20);
            cf.set_blob_compression_type(DBCompressionType::None);
            cf.set_enable_blob_gc(true);
            cf.set_blob_cache(&cache);
        } else {
            cf.set_write_buffer_size(16 << 20);
            cf.set_compression_type(DBCompressionType::Lz4);
        }
        ColumnFamilyDescriptor::new(name, cf)
    });
    let db = DB::open_cf_descriptors(&db_options, path, families)?;
    Ok((db, db_options))
}

/// Cumulative RocksDB counters of a store, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Time writes were stalled or slowed down (memtables or L0 full), microseconds.
    pub stall_micros: u64,
    pub flushes: u64,
    pub flush_write_bytes: u64,
    pub flush_micros: u64,
    pub compactions: u64,
    pub compaction_write_bytes: u64,
    pub compaction_micros: u64,
}

/// RocksDB errors as `io::Error`, the error type openraft's storage traits use.
pub fn io_error(err: rocksdb::Error) -> io::Error {
    io::Error::other(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_a_locked_directory_fails_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let err = Store::open(dir.path(), &StoreOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use by another running node"));
    }

    #[test]
    fn reopen_after_close_sees_durable_writes() {
        let dir = tempfile::tempdir().unwrap();
        let key = keys::tagged(GroupId(5), 1);
        {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(keys::CF_SM_META), key, b"v");
            store.write_durable(batch).unwrap();
        }
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let value = store.db().get_cf(store.cf(keys::CF_SM_META), key).unwrap();
        assert_eq!(value.as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn delete_group_removes_only_that_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut batch = WriteBatch::default();
        // Log values large enough to live in blob files once flushed.
        let big = vec![7u8; 64 << 10];
        for group in [GroupId(1), GroupId(2), GroupId(3)] {
            batch.put_cf(store.cf(keys::CF_RAFT_LOG), keys::indexed(group, 7), &big);
            batch.put_cf(store.cf(keys::CF_KV), keys::prefixed(group, b"k"), b"y");
        }
        store.write(batch).unwrap();
        store.db().flush_cf(store.cf(keys::CF_RAFT_LOG)).unwrap();
        store.delete_group(GroupId(2)).unwrap();
        let log = store.cf(keys::CF_RAFT_LOG);
        let present = |group| {
            store
                .db()
                .get_cf(log, keys::indexed(group, 7))
                .unwrap()
                .is_some()
        };
        assert!(present(GroupId(1)));
        assert!(!present(GroupId(2)));
        assert!(present(GroupId(3)));
        let kv = store.cf(keys::CF_KV);
        assert!(
            store
                .db()
                .get_cf(kv, keys::prefixed(GroupId(2), b"k"))
                .unwrap()
                .is_none()
        );
    }
}

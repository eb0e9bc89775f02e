//! Cross-group group commit: one thread per store makes every unsynced write durable with one
//! WAL fsync, then completes the callbacks waiting for it.
//!
//! Appends of every group are written to RocksDB without sync (readable at once) and queue a
//! callback here. The thread takes every queued callback, fsyncs the shared WAL once (which
//! covers every write issued before the callbacks were queued), and completes them in queue
//! order. While one fsync runs, the next batch of callbacks gathers, so the fsync rate adapts
//! to the disk and not to the number of partitions.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::DB;

/// A WAL fsync slower than this is logged.
const SLOW_SYNC: Duration = Duration::from_millis(50);

/// Completion of a write: called with the outcome of the fsync that covered it.
pub type SyncCallback = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Counters of the syncer, for metrics and tests.
#[derive(Debug, Default)]
pub struct SyncStats {
    /// WAL fsyncs done.
    pub syncs: AtomicU64,
    /// Callbacks completed.
    pub callbacks: AtomicU64,
    /// Total time spent in fsync, microseconds.
    pub sync_micros: AtomicU64,
}

/// Handle of the syncer thread; dropping it stops the thread after the queued callbacks.
#[derive(Debug)]
pub struct Syncer {
    queue: Option<mpsc::Sender<SyncCallback>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<SyncStats>,
}

impl Syncer {
    /// Starts the thread. With a non-zero `linger` it waits that long after the first callback
    /// of a round before syncing, to gather more (tests use it to make rounds deterministic).
    pub fn start(db: Arc<DB>, linger: Duration) -> io::Result<Self> {
        let (queue, pending) = mpsc::channel::<SyncCallback>();
        let stats = Arc::new(SyncStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("wal-syncer".into())
            .spawn(move || run(&db, &pending, linger, &thread_stats))?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            stats,
        })
    }

    /// Queues `callback` to run after the next WAL fsync.
    pub fn after_sync(&self, callback: SyncCallback) {
        let queue = self.queue.as_ref().expect("queue lives until drop");
        if let Err(mpsc::SendError(callback)) = queue.send(callback) {
            callback(Err(io::Error::other("WAL syncer thread has stopped")));
        }
    }

    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("WAL syncer thread panicked");
        }
    }
}

fn run(db: &DB, pending: &mpsc::Receiver<SyncCallback>, linger: Duration, stats: &SyncStats) {
    while let Ok(first) = pending.recv() {
        if !linger.is_zero() {
            std::thread::sleep(linger);
        }
        let mut round = vec![first];
        round.extend(pending.try_iter());
        let started = Instant::now();
        let outcome = db.flush_wal(true);
        let took = started.elapsed();
        metrics::counter!("mq_wal_syncs_total").increment(1);
        metrics::histogram!("mq_wal_sync_seconds").record(took.as_secs_f64());
        metrics::histogram!("mq_wal_sync_writes").record(round.len() as f64);
        if took >= SLOW_SYNC {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                writes = round.len(),
                "slow WAL fsync"
            );
        }
        stats
            .sync_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        stats
            .callbacks
            .fetch_add(round.len() as u64, Ordering::Relaxed);
        if let Err(err) = &outcome {
            tracing::error!(%err, waiting = round.len(), "WAL fsync failed");
        }
        for callback in round {
            callback(
                outcome
                    .as_ref()
                    .map(|_| ())
                    .map_err(|err| io::Error::other(format!("WAL fsync failed: {err}"))),
            );
        }
    }
}

//! Free space on the disk that holds a node's data directory.
//!
//! A write RocksDB cannot make (ENOSPC) fails the Raft group it was for: openraft stops a
//! group on any storage error. So a node refuses new data while free space is below a reserve
//! (`storage.min_free_mib`) instead: producers get `RESOURCE_EXHAUSTED`, and replication to it
//! is refused (the leader backs off and retries) until space returns, when both resume on
//! their own. The reserve leaves room for what still has to be written meanwhile: memtable
//! flushes, compactions, Raft metadata.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The data directory's disk is below the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the data directory's disk has {free_mib} MiB free, below the reserve of {reserve_mib} MiB \
     (storage.min_free_mib): new data is refused until space is freed"
)]
pub struct DiskFull {
    pub free_mib: u64,
    pub reserve_mib: u64,
}

/// Shared view of the free space of one data directory, refreshed by [`DiskGuard::watch`].
#[derive(Debug, Clone)]
pub struct DiskGuard {
    free: Arc<AtomicU64>,
    reserve: u64,
}

impl DiskGuard {
    /// A guard that never refuses (for groups whose writes are not guarded, and unit tests).
    pub fn unlimited() -> Self {
        Self {
            free: Arc::new(AtomicU64::new(u64::MAX)),
            reserve: 0,
        }
    }

    /// Measures `dir`'s disk now and then every `interval` until `shutdown`.
    pub fn watch(
        dir: &Path,
        reserve_mib: u64,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let guard = Self {
            free: Arc::new(AtomicU64::new(free_bytes(dir)?)),
            reserve: reserve_mib << 20,
        };
        let watcher = guard.clone();
        let dir = dir.to_path_buf();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => watcher.refresh(&dir),
                }
            }
        });
        Ok(guard)
    }

    fn refresh(&self, dir: &Path) {
        let free = match free_bytes(dir) {
            Ok(free) => free,
            Err(err) => {
                tracing::warn!(dir = %dir.display(), %err, "cannot measure free disk space");
                return;
            }
        };
        let was = self.free.swap(free, Ordering::Relaxed);
        metrics::gauge!("mq_disk_free_bytes").set(free as f64);
        match (was < self.reserve, free < self.reserve) {
            (false, true) => tracing::warn!(
                free_mib = free >> 20,
                reserve_mib = self.reserve >> 20,
                "disk below the reserve: refusing new data"
            ),
            (true, false) => tracing::info!(
                free_mib = free >> 20,
                reserve_mib = self.reserve >> 20,
                "disk above the reserve again: taking new data"
            ),
            _ => {}
        }
    }

    /// Whether new data may be written.
    pub fn check(&self) -> Result<(), DiskFull> {
        let free = self.free.load(Ordering::Relaxed);
        if free < self.reserve {
            return Err(DiskFull {
                free_mib: free >> 20,
                reserve_mib: self.reserve >> 20,
            });
        }
        Ok(())
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    Ok(stats.blocks_available() as u64 * stats.fragment_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_refuses_below_its_reserve_only() {
        let guard = DiskGuard {
            free: Arc::new(AtomicU64::new(10 << 20)),
            reserve: 16 << 20,
        };
        assert_eq!(
            guard.check(),
            Err(DiskFull {
                free_mib: 10,
                reserve_mib: 16
            })
        );
        guard.free.store(16 << 20, Ordering::Relaxed);
        assert_eq!(guard.check(), Ok(()));
        assert_eq!(DiskGuard::unlimited().check(), Ok(()));
    }

    #[test]
    fn free_space_of_a_real_directory_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }
}

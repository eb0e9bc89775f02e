//! The replica's background work: enforcing retention (a snapshot at the retention point, then
//! Raft purges the log up to it) and compacting a compacted topic's batches in place. What to
//! delete or drop is decided by [`super::retention`] and [`super::compaction`], purely.

use std::sync::{Arc, Weak};
use std::time::Duration;

use mq_common::clock::now_ms;

use super::state_machine::{self, Progress};
use super::types::{EntryPayload, PartitionCommand};
use super::{Partition, compaction, read};
use crate::batch::StoredBatch;
use crate::error::BrokerError;

impl Partition {
    /// Compacts the stored range (see [`compaction`]) as of `now_ms`, when anything was
    /// appended since the last pass or a kept tombstone may have expired. Returns the batches
    /// rewritten and the records they dropped.
    pub async fn compact(self: &Arc<Self>, now_ms: i64) -> Result<(usize, usize), BrokerError> {
        let Some(settings) = self.spec.compaction else {
            return Ok((0, 0));
        };
        let progress = self.progress();
        let (done_through, tombstones) = *self.compacted.lock().expect("compacted lock");
        if progress.high_watermark == done_through && !tombstones {
            return Ok((0, 0));
        }
        let cutoff = now_ms.saturating_sub(settings.delete_retention_ms as i64);
        let partition = self.clone();
        let (rewritten, dropped, tombstones) = mq_raft::blocking::spawn("compaction", move || {
            partition.compact_blocking(progress, cutoff)
        })
        .await
        .map_err(|err| BrokerError::Io(std::io::Error::other(err)))?
        .map_err(|err| self.read_error(err))?;
        *self.compacted.lock().expect("compacted lock") = (progress.high_watermark, tombstones);
        if rewritten > 0 {
            tracing::info!(group = %self.spec.group, rewritten, dropped, "compacted");
        }
        Ok((rewritten, dropped))
    }

    /// One compaction pass over `progress`'s stored range: the latest offset of every key,
    /// then every batch with a record to drop rewritten in place. Returns the batches
    /// rewritten, the records dropped, and whether a tombstone was kept.
    fn compact_blocking(
        &self,
        progress: Progress,
        tombstone_cutoff_ms: i64,
    ) -> Result<(usize, usize, bool), read::ReadError> {
        let reader = self.reader();
        let rows = reader.rows(progress)?;
        let mut latest = std::collections::HashMap::new();
        for (base, row) in &rows {
            compaction::note_latest(&mut latest, &reader.records_at(*base, *row)?);
        }
        let (mut rewritten, mut dropped, mut tombstones) = (0, 0, false);
        for (base, row) in rows {
            let records = reader.records_at(base, row)?;
            let count = records.len();
            let kept = compaction::kept(records, &latest, tombstone_cutoff_ms);
            tombstones |= kept
                .iter()
                .any(|(_, r)| r.key.is_some() && r.value.is_none());
            if kept.len() == count {
                continue;
            }
            let Some(mut entry) = self.log.read_entry(row.raft_index)? else {
                continue;
            };
            let EntryPayload::Normal(PartitionCommand::Append {
                batch,
                appended_at_ms,
            }) = &entry.payload
            else {
                continue;
            };
            let header = batch.header().map_err(|source| read::ReadError::Corrupt {
                raft_index: row.raft_index,
                source,
            })?;
            let kept: Vec<(u32, mq_common::records::Record)> = kept
                .into_iter()
                .map(|(offset, record)| ((offset - base) as u32, record))
                .collect();
            let compacted = StoredBatch::compacted(&header, &kept);
            let bytes = compacted.len() as u32;
            let appended_at_ms = *appended_at_ms;
            entry.payload = EntryPayload::Normal(PartitionCommand::Append {
                batch: compacted,
                appended_at_ms,
            });
            if self.log.rewrite(entry)? {
                state_machine::resize_index_row(&self.store, self.spec.group, base, row, bytes)?;
                rewritten += 1;
                dropped += count - kept.len();
            }
        }
        Ok((rewritten, dropped, tombstones))
    }

    /// Deletes the batches the retention limits expire, as of `now_ms`: sets the snapshot
    /// point and asks Raft for the snapshot, whose build moves the log start offset; Raft then
    /// purges the log up to it. Returns the log start offset asked for, if anything expired.
    pub async fn enforce_retention(
        self: &Arc<Self>,
        now_ms: i64,
    ) -> Result<Option<u64>, BrokerError> {
        let progress = self.progress();
        let limits = self.spec.retention;
        let partition = self.clone();
        let cut = mq_raft::blocking::spawn("retention_point", move || {
            partition.reader().retention_point(progress, limits, now_ms)
        })
        .await
        .map_err(|err| BrokerError::Io(std::io::Error::other(err)))?
        .map_err(|err| self.read_error(err))?;
        let Some(cut) = cut else {
            return Ok(None);
        };
        tracing::debug!(group = %self.spec.group, raft_index = cut.raft_index, log_start_offset = cut.log_start_offset, "retention cut");
        *self.retention_target.lock().expect("target lock") = Some(cut);
        self.raft
            .trigger_snapshot()
            .await
            .map_err(|err| self.group_error(err))?;
        Ok(Some(cut.log_start_offset))
    }
}

/// Checks the retention limits of a partition, and compacts it, every `interval` while it
/// exists.
pub(super) async fn run(partition: Weak<Partition>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(partition) = partition.upgrade() else {
            return;
        };
        let now_ms = now_ms();
        let outcome = match partition.enforce_retention(now_ms).await {
            Ok(_) => partition.compact(now_ms).await.map(drop),
            Err(err) => Err(err),
        };
        if let Err(err) = outcome {
            if !partition.raft.is_running() {
                return;
            }
            tracing::warn!(%err, "retention or compaction failed");
        }
    }
}

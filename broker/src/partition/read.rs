//! Reading a partition: from an offset through the offset index into the Raft log, and finding
//! offsets by timestamp. Blocking RocksDB reads; callers run them off the async workers.

use mq_common::ids::GroupId;
use mq_common::records::Record;
use mq_raft::keys::{self, CF_OFFSET_INDEX};
use mq_raft::{RocksLogStore, Store};
use rocksdb::{DBRawIterator, ReadOptions};

use super::retention::{self, Cut, Retention};
use super::state_machine::{IndexEntry, Progress};
use super::types::{EntryPayload, PartitionCommand, PartitionTypes};
use crate::batch::{BatchError, StoredBatch};

/// How much one read may return. At least one record is returned when one is available, even
/// if it alone exceeds `max_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    /// Return only the latest record of each key among those read ([`coalesce_by_key`]).
    pub coalesce_by_key: bool,
}

/// Records read from a partition.
#[derive(Debug, Default)]
pub struct ReadResult {
    /// `(offset, record)` in offset order.
    pub records: Vec<(u64, Record)>,
    /// Where the next read starts: after the last returned record, or after the last batch
    /// read whole (compaction may have removed its last records); the start offset when
    /// nothing was read.
    pub next_offset: u64,
}

impl ReadResult {
    fn coalesced(mut self, limits: ReadLimits) -> Self {
        if limits.coalesce_by_key {
            self.records = coalesce_by_key(self.records);
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("batch at raft index {raft_index}: {source}")]
    Corrupt {
        raft_index: u64,
        #[source]
        source: BatchError,
    },
    #[error("offset index points at raft index {0}, which holds no batch")]
    MissingBatch(u64),
}

/// A partition's stored data, for reads.
#[derive(Debug)]
pub struct PartitionReader<'a> {
    pub store: &'a Store,
    pub log: &'a RocksLogStore<PartitionTypes>,
    pub group: GroupId,
}

impl PartitionReader<'_> {
    /// Reads records at offsets `from..high_watermark` within `limits`.
    pub fn read(
        &self,
        from: u64,
        high_watermark: u64,
        limits: ReadLimits,
    ) -> Result<ReadResult, ReadError> {
        let mut result = ReadResult {
            records: Vec::new(),
            next_offset: from,
        };
        if from >= high_watermark {
            return Ok(result);
        }
        let mut rows = self.rows_from(from, high_watermark);
        let mut bytes = 0usize;
        while rows.valid() {
            let (base, row) = decode_row(&rows)?;
            if base + u64::from(row.record_count) <= from {
                rows.next();
                continue;
            }
            for (offset, record) in self.records_at(base, row)? {
                if offset < from {
                    continue;
                }
                let full = result.records.len() >= limits.max_records
                    || (!result.records.is_empty() && bytes + record.size() > limits.max_bytes);
                if full || offset >= high_watermark {
                    return Ok(result.coalesced(limits));
                }
                bytes += record.size();
                result.next_offset = offset + 1;
                result.records.push((offset, record));
            }
            // Past the whole batch, also what compaction removed from its end.
            let end = base + u64::from(row.record_count);
            result.next_offset = result.next_offset.max(end.min(high_watermark));
            rows.next();
        }
        rows.status().map_err(mq_raft::store::io_error)?;
        Ok(result.coalesced(limits))
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`, with that
    /// timestamp; `None` when no stored record is that recent.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
        log_start_offset: u64,
        high_watermark: u64,
    ) -> Result<Option<(u64, i64)>, ReadError> {
        let mut rows = self.rows_from(log_start_offset, high_watermark);
        while rows.valid() {
            let (base, row) = decode_row(&rows)?;
            if row.max_timestamp_ms >= timestamp_ms {
                let found = self.records_at(base, row)?.into_iter().find(|(offset, r)| {
                    *offset >= log_start_offset && r.timestamp_ms >= timestamp_ms
                });
                if let Some((offset, record)) = found {
                    return Ok(Some((offset, record.timestamp_ms)));
                }
            }
            rows.next();
        }
        rows.status().map_err(mq_raft::store::io_error)?;
        Ok(None)
    }

    /// Where `limits` cut the stored range of `progress` as of `now_ms`, if anywhere.
    pub fn retention_point(
        &self,
        progress: Progress,
        limits: Retention,
        now_ms: i64,
    ) -> Result<Option<Cut>, ReadError> {
        let mut failure = None;
        let stored_bytes = match limits.max_bytes {
            Some(_) => self
                .stored_rows(progress, &mut failure)
                .map(|(_, row)| u64::from(row.batch_bytes))
                .sum(),
            None => 0,
        };
        if let Some(err) = failure.take() {
            return Err(err);
        }
        let rows = self.stored_rows(progress, &mut failure);
        let cut = retention::retention_point(rows, stored_bytes, now_ms, limits);
        match failure {
            Some(err) => Err(err),
            None => Ok(cut),
        }
    }

    /// The index rows of the stored range of `progress`, oldest first.
    pub fn rows(&self, progress: Progress) -> Result<Vec<(u64, IndexEntry)>, ReadError> {
        let mut failure = None;
        let rows = self.stored_rows(progress, &mut failure).collect();
        match failure {
            Some(err) => Err(err),
            None => Ok(rows),
        }
    }

    /// The index rows of the stored range of `progress`, oldest first; a failure ends them
    /// and is kept in `failure`.
    fn stored_rows<'a>(
        &'a self,
        progress: Progress,
        failure: &'a mut Option<ReadError>,
    ) -> impl Iterator<Item = (u64, IndexEntry)> + 'a {
        let mut rows = self.rows_from(progress.log_start_offset, progress.high_watermark);
        std::iter::from_fn(move || {
            loop {
                if !rows.valid() {
                    if let Err(err) = rows.status() {
                        *failure = Some(ReadError::Storage(mq_raft::store::io_error(err)));
                    }
                    return None;
                }
                let row = decode_row(&rows);
                rows.next();
                match row {
                    Ok((base, row))
                        if base + u64::from(row.record_count) <= progress.log_start_offset => {}
                    Ok(row) => return Some(row),
                    Err(err) => {
                        *failure = Some(err);
                        return None;
                    }
                }
            }
        })
    }

    /// This group's index rows with base offsets below `high_watermark`, positioned at the
    /// batch holding `offset` (or the first batch after it).
    fn rows_from(&self, offset: u64, high_watermark: u64) -> DBRawIterator<'_> {
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(keys::indexed(self.group, 0).to_vec());
        options.set_iterate_upper_bound(keys::indexed(self.group, high_watermark).to_vec());
        let mut rows = self
            .store
            .db()
            .raw_iterator_cf_opt(self.store.cf(CF_OFFSET_INDEX), options);
        rows.seek_for_prev(keys::indexed(self.group, offset));
        if !rows.valid() {
            rows.seek(keys::indexed(self.group, offset));
        }
        rows
    }

    /// The records of the batch `row` describes, with their offsets.
    pub fn records_at(&self, base: u64, row: IndexEntry) -> Result<Vec<(u64, Record)>, ReadError> {
        self.batch(row.raft_index)?
            .records_at(base)
            .map_err(|source| ReadError::Corrupt {
                raft_index: row.raft_index,
                source,
            })
    }

    pub fn batch(&self, raft_index: u64) -> Result<StoredBatch, ReadError> {
        match self.log.read_entry(raft_index)? {
            Some(entry) => match entry.payload {
                EntryPayload::Normal(PartitionCommand::Append { batch, .. }) => Ok(batch),
                _ => Err(ReadError::MissingBatch(raft_index)),
            },
            None => Err(ReadError::MissingBatch(raft_index)),
        }
    }
}

/// Leaves out every keyed record whose key comes again later in `records`; records without a
/// key are all kept; order is kept.
pub fn coalesce_by_key(records: Vec<(u64, Record)>) -> Vec<(u64, Record)> {
    let mut last_of_key = std::collections::HashMap::new();
    for (offset, record) in &records {
        if let Some(key) = &record.key {
            last_of_key.insert(key.clone(), *offset);
        }
    }
    records
        .into_iter()
        .filter(|(offset, record)| {
            record
                .key
                .as_ref()
                .is_none_or(|key| last_of_key[key] == *offset)
        })
        .collect()
}

fn decode_row(rows: &DBRawIterator<'_>) -> Result<(u64, IndexEntry), ReadError> {
    let key = rows.key().expect("valid iterator has a key");
    let value = rows.value().expect("valid iterator has a value");
    Ok((keys::index_of(key), IndexEntry::decode(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescing_keeps_the_last_record_of_each_key_and_every_keyless_one() {
        let record = |key: Option<&str>, value: &str| {
            let record = match key {
                Some(key) => Record::keyed(key.to_owned(), value.to_owned()),
                None => Record::unkeyed(value.to_owned()),
            };
            record.with_timestamp(1)
        };
        let records = vec![
            (10, record(Some("a"), "a1")),
            (11, record(None, "x")),
            (12, record(Some("b"), "b1")),
            (13, record(Some("a"), "a2")),
            (14, record(None, "y")),
            (15, record(Some("c"), "c1")),
            (16, record(Some("a"), "a3")),
        ];
        let kept: Vec<u64> = coalesce_by_key(records)
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        assert_eq!(kept, [11, 12, 14, 15, 16]);
        assert!(coalesce_by_key(Vec::new()).is_empty());
    }
}

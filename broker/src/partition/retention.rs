//! Retention: which prefix of a partition's log has expired, as a pure function of its index
//! rows, its limits and the clock.
//!
//! Deletion itself is the scheme of the design notes: the replica builds a metadata-only Raft
//! snapshot *at the retention point* (the last expired batch's Raft index), moves its log start
//! offset past it and lets openraft purge the log up to it. A follower that needs purged
//! entries gets that snapshot, then every retained batch through ordinary appends, so no replica
//! ever has a hole inside its retained range. Every replica runs its own retention task.

use serde::{Deserialize, Serialize};

use super::state_machine::IndexEntry;

/// A partition's retention limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Batches appended longer ago than this are deleted.
    pub max_age_ms: Option<u64>,
    /// While more than this many bytes are stored, the oldest batches are deleted.
    pub max_bytes: Option<u64>,
}

impl Retention {
    pub fn is_unlimited(&self) -> bool {
        self.max_age_ms.is_none() && self.max_bytes.is_none()
    }
}

/// Where the retained log starts after a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The Raft index of the last deleted batch: the snapshot point.
    pub raft_index: u64,
    /// The first offset kept (one past the last deleted batch).
    pub log_start_offset: u64,
}

/// The cut `limits` call for, given the stored batches oldest first (`(base offset, row)`),
/// their total size and the time now. Only whole batches from the start are deleted, and a
/// batch is deleted by age only when every batch before it is too. `None` when nothing expired.
pub fn retention_point(
    rows: impl IntoIterator<Item = (u64, IndexEntry)>,
    stored_bytes: u64,
    now_ms: i64,
    limits: Retention,
) -> Option<Cut> {
    let cutoff = limits
        .max_age_ms
        .map(|age| now_ms.saturating_sub(i64::try_from(age).unwrap_or(i64::MAX)));
    let mut remaining = stored_bytes;
    let mut cut = None;
    for (base, row) in rows {
        let too_old = cutoff.is_some_and(|cutoff| row.appended_at_ms < cutoff);
        let too_big = limits.max_bytes.is_some_and(|max| remaining > max);
        if !too_old && !too_big {
            break;
        }
        remaining = remaining.saturating_sub(u64::from(row.batch_bytes));
        cut = Some(Cut {
            raft_index: row.raft_index,
            log_start_offset: base + u64::from(row.record_count),
        });
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of 10 records and 100 bytes at raft indexes 2, 4, 6, ...; batch `i` was
    /// appended at `ts[i]`.
    fn rows(ts: &[i64]) -> Vec<(u64, IndexEntry)> {
        ts.iter()
            .enumerate()
            .map(|(i, ts)| {
                let row = IndexEntry {
                    raft_index: 2 * (i as u64 + 1),
                    record_count: 10,
                    max_timestamp_ms: 0,
                    batch_bytes: 100,
                    producer_id: 0,
                    base_sequence: 0,
                    appended_at_ms: *ts,
                };
                (10 * i as u64, row)
            })
            .collect()
    }

    fn cut(raft_index: u64, log_start_offset: u64) -> Option<Cut> {
        Some(Cut {
            raft_index,
            log_start_offset,
        })
    }

    #[test]
    fn the_cut_follows_age_and_size_limits() {
        let now = 10_000;
        let by_age = |ms| Retention {
            max_age_ms: Some(ms),
            max_bytes: None,
        };
        let by_size = |bytes| Retention {
            max_age_ms: None,
            max_bytes: Some(bytes),
        };
        let cases = [
            // (batch timestamps, limits, expected cut)
            (vec![1_000, 2_000, 9_000], by_age(5_000), cut(4, 20)),
            (vec![9_000, 9_500], by_age(5_000), None),
            (vec![1_000, 2_000], by_age(5_000), cut(4, 20)),
            (vec![4_999, 5_000, 5_001], by_age(5_000), cut(2, 10)),
            // A newer batch first stops the cut, even with older ones after it.
            (vec![9_000, 1_000], by_age(5_000), None),
            (vec![0, 0, 0, 0], by_size(250), cut(4, 20)),
            (vec![0, 0, 0, 0], by_size(400), None),
            (vec![0, 0, 0, 0], by_size(399), cut(2, 10)),
            (vec![0, 0, 0, 0], by_size(1), cut(8, 40)),
            (vec![], by_size(1), None),
            (vec![0, 0], Retention::default(), None),
            // Either limit deletes.
            (
                vec![1_000, 9_000, 9_000, 9_000],
                Retention {
                    max_age_ms: Some(5_000),
                    max_bytes: Some(150),
                },
                cut(6, 30),
            ),
        ];
        for (ts, limits, expected) in cases {
            let rows = rows(&ts);
            let bytes = rows.len() as u64 * 100;
            assert_eq!(
                retention_point(rows, bytes, now, limits),
                expected,
                "{ts:?} {limits:?}"
            );
        }
    }
}

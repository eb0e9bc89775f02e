//! Compaction (`cleanup.policy=compact`): a partition keeps only the latest record of each
//! key, at its original offset; records without a key are kept; a tombstone (a keyed record
//! without a value) is kept while it is the latest of its key and younger than
//! `delete_retention_ms`, so readers that follow the topic see the deletion.
//!
//! Every replica compacts its own log: batches whose records changed are rewritten in place
//! (same Raft entry, same span of offsets, see [`crate::batch`]'s compacted format). A follower
//! that receives a rewritten entry through replication applies it exactly as the original: the
//! offsets come from the span, and the producer and sequence are kept.

use std::collections::HashMap;

use bytes::Bytes;
use mq_common::records::Record;
use serde::{Deserialize, Serialize};

/// A compacted partition's settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    pub delete_retention_ms: u64,
}

/// The latest offset of every key among `records` (in offset order), added to `latest`.
pub fn note_latest(latest: &mut HashMap<Bytes, u64>, records: &[(u64, Record)]) {
    for (offset, record) in records {
        if let Some(key) = &record.key {
            latest.insert(key.clone(), *offset);
        }
    }
}

/// The records of a batch that stay: keyless ones, and each key's latest record unless it is
/// a tombstone with a timestamp before `tombstone_cutoff_ms`.
pub fn kept(
    records: Vec<(u64, Record)>,
    latest: &HashMap<Bytes, u64>,
    tombstone_cutoff_ms: i64,
) -> Vec<(u64, Record)> {
    records
        .into_iter()
        .filter(|(offset, record)| match &record.key {
            None => true,
            Some(key) => {
                let newest = latest.get(key) == Some(offset);
                let expired_tombstone =
                    record.value.is_none() && record.timestamp_ms < tombstone_cutoff_ms;
                newest && !expired_tombstone
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&str>, value: Option<&str>, timestamp_ms: i64) -> Record {
        Record {
            key: key.map(|k| Bytes::from(k.to_owned())),
            value: value.map(|v| Bytes::from(v.to_owned())),
            headers: Vec::new(),
            timestamp_ms,
        }
    }

    #[test]
    fn the_latest_of_each_key_stays_with_keyless_records_and_young_tombstones() {
        let first = vec![
            (0, record(Some("a"), Some("a1"), 10)),
            (1, record(Some("b"), Some("b1"), 10)),
            (2, record(None, Some("x"), 10)),
            (3, record(Some("c"), Some("c1"), 10)),
        ];
        let second = vec![
            (4, record(Some("a"), Some("a2"), 20)),
            (5, record(Some("b"), None, 20)),
            (6, record(Some("c"), None, 100)),
            (7, record(Some("a"), Some("a3"), 20)),
        ];
        let mut latest = HashMap::new();
        note_latest(&mut latest, &first);
        note_latest(&mut latest, &second);
        let offsets =
            |kept: Vec<(u64, Record)>| kept.into_iter().map(|(o, _)| o).collect::<Vec<_>>();
        assert_eq!(offsets(kept(first, &latest, 50)), [2]);
        // b's tombstone (timestamp 20) is older than the cutoff: gone; c's (100) stays.
        assert_eq!(offsets(kept(second.clone(), &latest, 50)), [6, 7]);
        assert_eq!(offsets(kept(second, &latest, 0)), [5, 6, 7]);
    }
}

//! Workloads shared by the process-level tests: keyed produce with per-key order, and full
//! reads of a partition.

use std::collections::BTreeMap;

use anyhow::Context;
use bytes::Bytes;
use mq_client::{Client, ConsumedRecord, FetchOptions, Record};

/// A message the broker acknowledged, and where.
#[derive(Debug, Clone)]
pub struct Acked {
    pub seq: usize,
    pub partition: u32,
    pub offset: u64,
    pub record: Record,
}

/// The `i`-th message of a keyed workload over `keys` keys.
pub fn keyed_message(i: usize, keys: usize) -> Record {
    let key = format!("customer-{}", i % keys);
    let value = format!("event-{i}:{}", "x".repeat(64 + i % 64));
    Record::keyed(key, value)
        .with_header("seq", i.to_string())
        .with_header("source", "durability-test")
        .with_timestamp(1_700_000_000_000 + i as i64)
}

/// `count` keyed records with incompressible `value_size`-byte values (as real, or
/// producer-compressed, payloads are), for benchmarks.
pub fn incompressible_records(count: usize, value_size: usize) -> Vec<Record> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..count)
        .map(|i| {
            let value: Vec<u8> = (0..value_size)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            Record::keyed(format!("key-{i:06}"), Bytes::from(value))
        })
        .collect()
}

/// Produces messages `range` through the client's key partitioning, batches of up to `batch`
/// per partition, partitions concurrently, each partition's batches in send order. Returns
/// every acknowledged message.
pub async fn produce_keyed(
    client: &Client,
    topic: &str,
    range: std::ops::Range<usize>,
    keys: usize,
    batch: usize,
) -> anyhow::Result<Vec<Acked>> {
    let mut per_partition: BTreeMap<u32, Vec<(usize, Record)>> = BTreeMap::new();
    for i in range {
        let record = keyed_message(i, keys);
        let key = record.key.clone().expect("keyed");
        let partition = client.partition_for_key(topic, &key).await?;
        per_partition
            .entry(partition)
            .or_default()
            .push((i, record));
    }
    let tasks = per_partition.into_iter().map(|(partition, messages)| {
        let client = client.clone();
        let topic = topic.to_owned();
        tokio::spawn(async move {
            let mut acked = Vec::with_capacity(messages.len());
            for chunk in messages.chunks(batch) {
                let records: Vec<Record> = chunk.iter().map(|(_, r)| r.clone()).collect();
                let base = client
                    .produce(&topic, partition, records)
                    .await
                    .with_context(|| format!("produce to partition {partition}"))?;
                for (k, (seq, record)) in chunk.iter().enumerate() {
                    acked.push(Acked {
                        seq: *seq,
                        partition,
                        offset: base + k as u64,
                        record: record.clone(),
                    });
                }
            }
            anyhow::Ok(acked)
        })
    });
    let mut all = Vec::new();
    for task in futures::future::join_all(tasks).await {
        all.extend(task??);
    }
    all.sort_by_key(|a| a.seq);
    Ok(all)
}

/// Every record of a partition, from offset 0 to the high watermark.
pub async fn read_partition(
    client: &Client,
    topic: &str,
    partition: u32,
) -> anyhow::Result<Vec<ConsumedRecord>> {
    let mut records = Vec::new();
    let mut offset = 0;
    loop {
        let batch = client
            .fetch(topic, partition, offset, FetchOptions::default())
            .await?;
        records.extend(batch.records);
        offset = batch.next_offset;
        if offset >= batch.high_watermark {
            return Ok(records);
        }
    }
}

/// Checks that every acknowledged message is stored at its partition and offset, intact, that
/// nothing else is stored, that the broker put each key's records in one partition, the one
/// the standard key hash gives over `partitions`, and that each key's messages are stored in
/// send order. `stored` holds every partition of the topic as read back from the broker.
pub fn verify_stored(
    acked: &[Acked],
    stored: &BTreeMap<u32, Vec<ConsumedRecord>>,
    partitions: u32,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        stored.keys().copied().eq(0..partitions),
        "read back partitions {:?} of a topic of {partitions}",
        stored.keys().collect::<Vec<_>>()
    );
    let mut expected_counts: BTreeMap<u32, usize> = BTreeMap::new();
    for message in acked {
        *expected_counts.entry(message.partition).or_default() += 1;
        let records = stored
            .get(&message.partition)
            .with_context(|| format!("partition {} missing", message.partition))?;
        let found = records.get(message.offset as usize).with_context(|| {
            format!(
                "message {} lost: {}/{} not stored",
                message.seq, message.partition, message.offset
            )
        })?;
        anyhow::ensure!(
            found.offset == message.offset,
            "offsets are not dense at {}",
            message.offset
        );
        anyhow::ensure!(
            found.record == message.record,
            "message {} at {}/{} differs: stored {:?}, sent {:?}",
            message.seq,
            message.partition,
            message.offset,
            found.record,
            message.record
        );
    }
    for (partition, records) in stored {
        let expected = expected_counts.get(partition).copied().unwrap_or(0);
        anyhow::ensure!(
            records.len() == expected,
            "partition {partition} holds {} records, {expected} were acknowledged",
            records.len()
        );
    }
    // Where the broker put each key, from what it returned, not from where we sent it.
    let mut stored_in: BTreeMap<&Bytes, u32> = BTreeMap::new();
    for (partition, records) in stored {
        for consumed in records {
            let key =
                consumed.record.key.as_ref().with_context(|| {
                    format!("{partition}/{} stored without a key", consumed.offset)
                })?;
            let first = *stored_in.entry(key).or_insert(*partition);
            anyhow::ensure!(
                first == *partition,
                "key {key:?} spans partitions: stored in {first} and in {partition} (at {})",
                consumed.offset
            );
        }
    }
    for (key, partition) in &stored_in {
        let hashed = mq_common::partitioner::partition_for_key(key, partitions);
        anyhow::ensure!(
            *partition == hashed,
            "key {key:?} stored in partition {partition}, the key hash gives {hashed} of {partitions}"
        );
    }
    // Each key lives in one partition (checked above): its messages in send order have
    // increasing offsets there.
    let mut last_offset: BTreeMap<&Bytes, u64> = BTreeMap::new();
    for message in acked {
        let key = message.record.key.as_ref().expect("keyed");
        if let Some(offset) = last_offset.insert(key, message.offset) {
            anyhow::ensure!(offset < message.offset, "key {key:?} out of send order");
        }
    }
    Ok(())
}

//! Compaction end to end (real processes, RocksDB, gRPC): a `cleanup.policy=compact` topic
//! keeps exactly the latest record of every live key at its original offset, tombstones go
//! after `delete.retention.ms`, readers (fetch and subscribe) see only that, the topic stays
//! writable, and a follower that was down while the others compacted catches up to the same
//! offsets and records.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use mq_client::{Client, FetchOptions, NewTopic, Record};
use mq_consumer::{Consumer, ConsumerConfig, Seek};
use mq_tests::cluster::{Cluster, ClusterSpec, read_replica};
use mq_tests::{Node, wait_until};

const CHECK_EVERY: &str = "retention.check_interval=200ms";
const KEYS: usize = 50;
const DELETED_KEYS: usize = 10;

/// What a topic should hold after compaction: offset -> (key, value) of each live key's
/// latest record.
type Expected = BTreeMap<u64, (String, String)>;

/// Writes 20 batches of 100 updates over `KEYS` keys, then tombstones for the first
/// `DELETED_KEYS`, to partition 0 of `topic`; returns what compaction must leave.
async fn write_history(
    client: &Client,
    topic: &str,
    first_update: usize,
) -> anyhow::Result<Expected> {
    let mut latest: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
    for batch in 0..20 {
        let updates: Vec<(String, String)> = (0..100)
            .map(|i| {
                let n = first_update + batch * 100 + i;
                (format!("k{}", n % KEYS), format!("v{n}"))
            })
            .collect();
        let records = updates
            .iter()
            .map(|(key, value)| Record::keyed(key.clone(), value.clone()))
            .collect();
        let base = client.produce(topic, 0, records).await?;
        for (i, (key, value)) in updates.into_iter().enumerate() {
            latest.insert(key, (base + i as u64, Some(value)));
        }
    }
    let tombstones: Vec<Record> = (0..DELETED_KEYS)
        .map(|k| Record {
            value: None,
            ..Record::keyed(format!("k{k}"), "")
        })
        .collect();
    let base = client.produce(topic, 0, tombstones).await?;
    for k in 0..DELETED_KEYS {
        latest.insert(format!("k{k}"), (base + k as u64, None));
    }
    Ok(latest
        .into_iter()
        .filter_map(|(key, (offset, value))| Some((offset, (key, value?))))
        .collect())
}

fn as_expected(records: &[(u64, Record)]) -> Expected {
    records
        .iter()
        .map(|(offset, record)| {
            let text = |b: &Option<bytes::Bytes>| {
                b.as_deref().map_or("<none>".to_owned(), |b| {
                    String::from_utf8_lossy(b).into_owned()
                })
            };
            (*offset, (text(&record.key), text(&record.value)))
        })
        .collect()
}

/// Every record of partition 0 from offset 0, by fetch.
async fn fetch_all(client: &Client, topic: &str) -> anyhow::Result<Vec<(u64, Record)>> {
    let mut records = Vec::new();
    let mut next = 0;
    loop {
        let batch = client
            .fetch(topic, 0, next, FetchOptions::default())
            .await?;
        records.extend(batch.records.into_iter().map(|r| (r.offset, r.record)));
        next = batch.next_offset;
        if next >= batch.high_watermark {
            return Ok(records);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compacted_topic_keeps_exactly_the_latest_value_of_every_live_key() -> anyhow::Result<()>
{
    let node = Node::start_with("compaction", &["--set", CHECK_EVERY]).await?;
    let client = node.client();
    let topic = client
        .create_topic(
            "prices",
            NewTopic::default()
                .config("cleanup.policy", "compact")
                .config("delete.retention.ms", "1000"),
        )
        .await?;
    assert_eq!(topic.configs["cleanup.policy"], "compact");
    let expected = write_history(&client, "prices", 0).await?;
    assert_eq!(expected.len(), KEYS - DELETED_KEYS);
    let hw = client
        .list_offset("prices", 0, mq_client::OffsetSpec::Latest)
        .await?
        .high_watermark;
    assert_eq!(hw, 2_000 + DELETED_KEYS as u64);

    wait_until(
        "compaction to the latest of each live key",
        Duration::from_secs(20),
        || async {
            let records = fetch_all(&client, "prices").await.ok()?;
            (as_expected(&records) == expected).then_some(())
        },
    )
    .await?;
    // Offsets are kept: the high watermark did not move, nothing was renumbered.
    let latest = client
        .list_offset("prices", 0, mq_client::OffsetSpec::Latest)
        .await?;
    assert_eq!((latest.log_start_offset, latest.high_watermark), (0, hw));

    // A subscriber from the start sees the same, and nothing more.
    let mut consumer = Consumer::new(ConsumerConfig::new([node.address()]))?;
    consumer.assign("prices", 0, Seek::Earliest).await?;
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let record = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await?
            .expect("assigned")?;
        seen.push((record.offset, record.record));
    }
    assert_eq!(as_expected(&seen), expected);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), consumer.next())
            .await
            .is_err()
    );

    // The topic stays writable; the next pass compacts the new updates too.
    let more = write_history(&client, "prices", 10_000).await?;
    wait_until("the second pass", Duration::from_secs(20), || async {
        let records = fetch_all(&client, "prices").await.ok()?;
        (as_expected(&records) == more).then_some(())
    })
    .await?;
    node.assert_no_panic();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_down_during_compaction_catches_up_to_the_same_offsets() -> anyhow::Result<()> {
    let spec = ClusterSpec::new(3, 3).broker_set(CHECK_EVERY);
    Cluster::run(spec, async |cluster| {
        let client = cluster.client();
        client
            .create_topic(
                "prices",
                NewTopic::default()
                    .replication_factor(3)
                    .config("cleanup.policy", "compact")
                    .config("delete.retention.ms", "1000"),
            )
            .await?;
        cluster
            .wait_fully_replicated(&client, "prices", Duration::from_secs(30))
            .await?;
        let leader = cluster
            .leader_of(&client, "prices", 0, Duration::from_secs(10))
            .await?;
        let follower = (1..=3).find(|id| *id != leader).expect("a follower");
        cluster.broker(follower).kill9()?;
        let expected = write_history(&client, "prices", 0).await?;
        let leader_address = cluster.broker(leader).address();
        wait_until("the leader to compact", Duration::from_secs(20), || async {
            let (_, records) = read_replica(&leader_address, "prices", 0).await.ok()?;
            (as_expected(&records) == expected).then_some(())
        })
        .await?;
        // Back: it receives compacted entries and must place every record at its offset.
        Cluster::restart(cluster.broker(follower)).await?;
        let addresses = cluster.broker_addresses();
        wait_until(
            "every replica compacted alike",
            Duration::from_secs(30),
            || async {
                for address in &addresses {
                    let (end, records) = read_replica(address, "prices", 0).await.ok()?;
                    if end != 2_000 + DELETED_KEYS as u64 || as_expected(&records) != expected {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await?;
        cluster.assert_no_panic();
        Ok(())
    })
    .await
}

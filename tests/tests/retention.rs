//! Retention end to end (real processes, RocksDB, gRPC): size and time limits delete old
//! batches, the log start offset moves, reads below it are `OUT_OF_RANGE` while consumers can
//! reset (a group does so by itself); the log start survives a restart; bad retention configs
//! are refused; a follower that was down while the leader deleted catches up from the
//! retention snapshot with no hole and the same records as the others.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use mq_client::{Client, ErrorCode, FetchOptions, NewTopic, OffsetCommit, OffsetSpec, Record};
use mq_consumer::{Consumer, ConsumerConfig, GroupConfig, Seek};
use mq_producer::{Producer, ProducerConfig, ProducerRecord};
use mq_tests::cluster::{Cluster, ClusterSpec, read_replica};
use mq_tests::{Node, wait_until};

const CHECK_EVERY: &str = "retention.check_interval=200ms";
const VALUE_BYTES: usize = 1000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The value of the `i`th record a test sends: its number, padded to about 1 KB.
fn value(i: u64) -> String {
    format!("{i:0>width$}", width = VALUE_BYTES)
}

/// An idempotent producer with small batches, so retention has many batches to cut.
fn producer(addresses: Vec<String>) -> anyhow::Result<Producer> {
    let mut config = ProducerConfig::new(addresses);
    config.batch_bytes = 4 << 10;
    config.linger = Duration::ZERO;
    Ok(Producer::new(config)?)
}

/// Sends values `range` to partition 0 of `topic`, in order; each lands at the offset equal to
/// its number when the partition started empty.
async fn send(producer: &Producer, topic: &str, range: std::ops::Range<u64>) -> anyhow::Result<()> {
    let mut pending = Vec::new();
    for i in range {
        let record = ProducerRecord::new(topic).partition(0).value(value(i));
        pending.push((i, producer.enqueue(record).await?));
    }
    for (i, delivery) in pending {
        let delivery = delivery.await?;
        anyhow::ensure!(
            delivery.offset == i,
            "value {i} landed at {}",
            delivery.offset
        );
    }
    Ok(())
}

/// Every record from `from` up to the high watermark, checked to be value `offset` at each
/// offset (no hole, nothing foreign).
async fn read_all(client: &Client, topic: &str, from: u64) -> anyhow::Result<u64> {
    let mut next = from;
    loop {
        let batch = client
            .fetch(topic, 0, next, FetchOptions::default())
            .await?;
        for record in &batch.records {
            anyhow::ensure!(
                record.offset == next,
                "offset {} after {next}",
                record.offset
            );
            anyhow::ensure!(
                record.record.value.as_deref() == Some(value(next).as_bytes()),
                "offset {next} holds another value"
            );
            next += 1;
        }
        if next >= batch.high_watermark {
            return Ok(next);
        }
    }
}

async fn offsets(client: &Client, topic: &str) -> anyhow::Result<(u64, u64)> {
    let latest = client.list_offset(topic, 0, OffsetSpec::Latest).await?;
    Ok((latest.log_start_offset, latest.high_watermark))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_delete_old_data_and_reads_below_the_log_start_are_out_of_range()
-> anyhow::Result<()> {
    let mut node = Node::start_with("retention", &["--set", CHECK_EVERY]).await?;
    let client = node.client();

    // By size: at most 64 KiB per partition.
    client
        .create_topic(
            "sized",
            NewTopic::default().config("retention.bytes", "65536"),
        )
        .await?;
    let producer = producer(vec![node.address()])?;
    send(&producer, "sized", 0..400).await?;
    let (start, end) = wait_until("retention by size", Duration::from_secs(20), || async {
        let (start, end) = offsets(&client, "sized").await.ok()?;
        (start > 0 && end - start <= 64).then_some((start, end))
    })
    .await?;
    assert_eq!(end, 400);
    // No more deleted than the limit asks: what is kept is within one batch of 64 KiB.
    assert!(end - start >= 56, "kept only {start}..{end}");

    let below = client
        .fetch("sized", 0, start - 1, FetchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(below.code(), ErrorCode::OffsetOutOfRange, "{below}");
    assert_eq!(read_all(&client, "sized", start).await?, 400);

    // A plain consumer seeks to the earliest retained record.
    let mut consumer = Consumer::new(ConsumerConfig::new([node.address()]))?;
    consumer.assign("sized", 0, Seek::Earliest).await?;
    let first = consumer.next().await.expect("a record")?;
    assert_eq!(first.offset, start, "the earliest is the log start");
    // A group whose committed offset was deleted starts at the log start by itself.
    client
        .commit_offsets(OffsetCommit::new("readers").offset("sized", 0, 3))
        .await?;
    let mut member = Consumer::new(ConsumerConfig::new([node.address()]))?;
    member
        .subscribe(GroupConfig::new("readers", ["sized"]))
        .await?;
    let first = tokio::time::timeout(Duration::from_secs(20), member.next())
        .await?
        .expect("a record")?;
    assert_eq!(
        first.offset, start,
        "the group resumed at its reset point, the log start"
    );
    member.close().await?;

    // The idempotent producer goes on across cuts; the log start survives a restart.
    send(&producer, "sized", 400..500).await?;
    let (start, _) = wait_until("the next cut", Duration::from_secs(20), || async {
        let (start, end) = offsets(&client, "sized").await.ok()?;
        (end == 500 && end - start <= 64).then_some((start, end))
    })
    .await?;
    producer.close().await?;
    node.terminate().await?;
    node.restart().await?;
    let client = node.client();
    let (after, end) = offsets(&client, "sized").await?;
    assert!(
        after >= start,
        "log start went back from {start} to {after}"
    );
    assert_eq!(end, 500);
    assert_eq!(read_all(&client, "sized", after).await?, 500);

    // By time: batches appended more than 2 s ago, whatever their records' timestamps say
    // (an hour-old event time does not make a fresh batch expire).
    client
        .create_topic("aged", NewTopic::default().config("retention.ms", "2000"))
        .await?;
    let old = now_ms() - 3_600_000;
    let batch = |range: std::ops::Range<u64>, timestamp: i64| -> Vec<Record> {
        range
            .map(|i| Record::unkeyed(value(i)).with_timestamp(timestamp))
            .collect()
    };
    client.produce("aged", 0, batch(0..50, now_ms())).await?;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    client.produce("aged", 0, batch(50..100, old)).await?;
    wait_until("the first batch to go", Duration::from_secs(10), || async {
        (offsets(&client, "aged").await.ok()? == (50, 100)).then_some(())
    })
    .await?;
    assert_eq!(read_all(&client, "aged", 50).await?, 100);
    wait_until(
        "the second batch to expire",
        Duration::from_secs(15),
        || async { (offsets(&client, "aged").await.ok()? == (100, 100)).then_some(()) },
    )
    .await?;
    client.produce("aged", 0, batch(100..101, old)).await?;
    assert_eq!(read_all(&client, "aged", 100).await?, 101);
    node.assert_no_panic();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_retention_configs_are_refused_and_create_nothing() -> anyhow::Result<()> {
    let node = Node::start_standalone("retention-bad").await?;
    let client = node.client();
    for (key, value) in [
        ("retention.ms", "0"),
        ("retention.ms", "-2"),
        ("retention.ms", "1h"),
        ("retention.bytes", "0"),
        ("retention.bytes", "lots"),
        ("cleanup.policy", "shred"),
        ("retention.check", "1"),
    ] {
        let err = client
            .create_topic("t", NewTopic::default().config(key, value))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            ErrorCode::InvalidArgument,
            "{key}={value}: {err}"
        );
        assert!(
            err.to_string().contains(&format!("configs[{key}]")),
            "{key}={value}: {err}"
        );
    }
    assert!(client.list_topics().await?.is_empty());
    let topic = client
        .create_topic("t", NewTopic::default().config("retention.ms", "-1"))
        .await?;
    assert_eq!(topic.configs["retention.ms"], "-1");
    assert_eq!(topic.configs["retention.bytes"], "-1");
    assert_eq!(topic.configs["cleanup.policy"], "delete");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_down_while_the_leader_deletes_catches_up_without_a_hole() -> anyhow::Result<()>
{
    let spec = ClusterSpec::new(3, 3).broker_set(CHECK_EVERY);
    Cluster::run(spec, async |cluster| {
        let client = cluster.client();
        client
            .create_topic(
                "events",
                NewTopic::default()
                    .replication_factor(3)
                    .config("retention.bytes", "32768"),
            )
            .await?;
        cluster
            .wait_fully_replicated(&client, "events", Duration::from_secs(30))
            .await?;
        let producer = producer(cluster.broker_addresses())?;
        send(&producer, "events", 0..20).await?;
        let leader = cluster
            .leader_of(&client, "events", 0, Duration::from_secs(10))
            .await?;
        let follower = (1..=3).find(|id| *id != leader).expect("a follower");
        let follower_address = cluster.broker(follower).address();
        wait_until(
            "the follower to have 20",
            Duration::from_secs(20),
            || async {
                let (end, _) = read_replica(&follower_address, "events", 0).await.ok()?;
                (end == 20).then_some(())
            },
        )
        .await?;
        cluster.broker(follower).kill9()?;

        // While it is down, the others delete far past everything it has.
        send(&producer, "events", 20..300).await?;
        wait_until(
            "the leader to delete past 20",
            Duration::from_secs(30),
            || async {
                let (start, _) = offsets(&client, "events").await.ok()?;
                (start > 100).then_some(())
            },
        )
        .await?;
        // The leader purges its log only when no replication to the dead follower is in
        // flight: give the failing RPCs time to end, then cut again.
        tokio::time::sleep(Duration::from_secs(3)).await;
        send(&producer, "events", 300..400).await?;
        Cluster::restart(cluster.broker(follower)).await?;
        send(&producer, "events", 400..420).await?;

        // Every replica: contiguous values from its own log start to 420, identical where
        // they overlap (each read checks offset = value, so equal offsets mean equal records).
        let addresses = cluster.broker_addresses();
        let starts = wait_until("every replica at 420", Duration::from_secs(30), || async {
            let mut starts = Vec::new();
            for address in &addresses {
                let (end, records) = read_replica(address, "events", 0).await.ok()?;
                let start = records.first().map_or(end, |(offset, _)| *offset);
                let contiguous = records.iter().zip(start..).all(|((offset, record), i)| {
                    *offset == i && record.value.as_deref() == Some(value(i).as_bytes())
                });
                if end != 420 || !contiguous || records.len() as u64 != end - start {
                    return None;
                }
                starts.push(start);
            }
            Some(starts)
        })
        .await?;
        assert!(
            starts.iter().all(|start| *start > 20),
            "a replica still holds what was deleted while the follower was down: {starts:?}"
        );
        assert!(
            cluster
                .broker(follower)
                .log()
                .contains("installing snapshot"),
            "the follower caught up without the retention snapshot"
        );
        producer.close().await?;
        cluster.assert_no_panic();
        Ok(())
    })
    .await
}

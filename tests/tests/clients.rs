//! The producer and consumer crates against real nodes: keyed sends survive a killed leader
//! with every send resolved once, no duplicate and per-key order kept; a producer faster than
//! a (paused) broker stays within its buffer; a consumer resumes after a broker restart;
//! compressed batches round-trip; followers serve nearest-replica reads; bad input gets typed
//! errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mq_client::{Client, ClientError, Compression, EncodedBatch, ErrorCode, NewTopic, Record};
use mq_consumer::{Consumer, ConsumerConfig, ReadMode, Seek};
use mq_producer::{Producer, ProducerConfig, ProducerRecord};
use mq_tests::cluster::{Cluster, ClusterSpec};
use mq_tests::workload::read_partition;
use mq_tests::{Node, rss_bytes, wait_until};

/// Where a send resolved: `(partition, offset)`, or its error.
type Outcome = Result<(u32, u64), String>;

/// Keyed value `key-K:seq-N`: its key and its place in the send order.
fn parse(record: &Record) -> (String, usize) {
    let value = std::str::from_utf8(record.value.as_deref().expect("value")).expect("utf8");
    let (key, seq) = value.split_once(":seq-").expect("value format");
    (key.to_owned(), seq.parse().expect("seq"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_sends_survive_a_killed_leader_resolved_once_without_duplicates_in_key_order()
-> anyhow::Result<()> {
    const RECORDS: usize = 10_000;
    const KEYS: usize = 50;
    const PARTITIONS: u32 = 3;
    Cluster::run(ClusterSpec::new(3, 3), async |cluster| {
        let client = cluster.client();
        client
            .create_topic(
                "orders",
                NewTopic::default()
                    .partitions(PARTITIONS)
                    .replication_factor(3),
            )
            .await?;
        cluster
            .wait_fully_replicated(&client, "orders", Duration::from_secs(30))
            .await?;
        let victim = cluster
            .leader_of(&client, "orders", 0, Duration::from_secs(10))
            .await?;

        let mut config = ProducerConfig::new(cluster.broker_addresses());
        config.linger = Duration::from_millis(2);
        config.batch_bytes = 16 << 10;
        let producer = Producer::new(config)?;
        // Every callback counts its record's resolutions.
        let resolutions: Arc<Vec<AtomicU32>> =
            Arc::new((0..RECORDS).map(|_| AtomicU32::new(0)).collect());
        let outcomes: Arc<Mutex<Vec<Option<Outcome>>>> = Arc::new(Mutex::new(vec![None; RECORDS]));
        for seq in 0..RECORDS {
            if seq == RECORDS / 4 {
                cluster.broker(victim).kill9()?;
            }
            let key = format!("key-{}", seq % KEYS);
            let record = ProducerRecord::new("orders")
                .key(key.clone())
                .value(format!("{key}:seq-{seq}"));
            let (resolutions, outcomes) = (resolutions.clone(), outcomes.clone());
            producer
                .send_with_callback(record, move |outcome| {
                    resolutions[seq].fetch_add(1, Ordering::SeqCst);
                    outcomes.lock().expect("outcomes")[seq] = Some(
                        outcome
                            .map(|d| (d.partition, d.offset))
                            .map_err(|e| e.to_string()),
                    );
                })
                .await?;
            if seq % 100 == 0 {
                // A steady stream rather than one burst, so the kill lands mid-send.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        producer.close().await?;

        let outcomes = outcomes.lock().expect("outcomes").clone();
        for (seq, count) in resolutions.iter().enumerate() {
            let count = count.load(Ordering::SeqCst);
            anyhow::ensure!(count == 1, "record {seq} resolved {count} times");
        }
        let failed: Vec<_> = outcomes
            .iter()
            .enumerate()
            .filter_map(|(seq, o)| match o {
                Some(Err(error)) => Some((seq, error.clone())),
                _ => None,
            })
            .collect();
        anyhow::ensure!(
            failed.is_empty(),
            "failed sends: {:?}",
            &failed[..failed.len().min(5)]
        );

        // The log: each record once, at the offset its send resolved with, in key order.
        let mut stored_at = BTreeMap::new();
        for partition in 0..PARTITIONS {
            let mut last_seq_of_key: BTreeMap<String, usize> = BTreeMap::new();
            for consumed in read_partition(&client, "orders", partition).await? {
                let (key, seq) = parse(&consumed.record);
                anyhow::ensure!(
                    stored_at
                        .insert(seq, (partition, consumed.offset))
                        .is_none(),
                    "record {seq} stored twice"
                );
                if let Some(previous) = last_seq_of_key.insert(key.clone(), seq) {
                    anyhow::ensure!(previous < seq, "{key}: {seq} stored after {previous}");
                }
            }
        }
        anyhow::ensure!(
            stored_at.len() == RECORDS,
            "{} records stored",
            stored_at.len()
        );
        for (seq, outcome) in outcomes.iter().enumerate() {
            let Some(Ok(at)) = outcome else {
                unreachable!("checked above")
            };
            anyhow::ensure!(
                stored_at[&seq] == *at,
                "record {seq} resolved {at:?}, stored {:?}",
                stored_at[&seq]
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_producer_faster_than_the_broker_stays_within_its_buffer_and_drops_nothing()
-> anyhow::Result<()> {
    const BUFFER: usize = 1 << 20;
    let node = Node::start_standalone("back-pressure").await?;
    let client = node.client();
    client.create_topic("events", NewTopic::default()).await?;

    let mut config = ProducerConfig::new([node.address()]);
    config.buffer_bytes = BUFFER;
    config.batch_bytes = 64 << 10;
    config.max_block = Duration::from_millis(200);
    let producer = Producer::new(config)?;
    producer
        .send(ProducerRecord::new("events").value("warm-up"))
        .await?;

    // The broker stops answering: the buffer fills, then sends wait and fail, typed.
    node.pause()?;
    let rss_before = rss_bytes(std::process::id())?;
    let value = vec![7u8; 1000];
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut max_buffered = 0;
    // 64 MiB offered: 64 times the buffer.
    for i in 0..64 * 1024 {
        let record = ProducerRecord::new("events")
            .key(format!("k{i}"))
            .value(value.clone());
        match producer.enqueue(record).await {
            Ok(delivery) => accepted.push(delivery),
            Err(ClientError::BufferFull { limit, waited, .. }) => {
                assert_eq!(limit, BUFFER);
                assert!(
                    waited >= Duration::from_millis(200),
                    "waited only {waited:?}"
                );
                refused += 1;
                if refused >= 3 {
                    break;
                }
            }
            Err(other) => anyhow::bail!("unexpected error {other}"),
        }
        max_buffered = max_buffered.max(producer.buffered_bytes());
    }
    let rss_growth = rss_bytes(std::process::id())?.saturating_sub(rss_before);
    eprintln!(
        "accepted {} records, buffered at most {max_buffered} bytes, RSS grew {rss_growth} bytes",
        accepted.len()
    );
    anyhow::ensure!(refused > 0, "the producer never pushed back");
    anyhow::ensure!(max_buffered <= BUFFER, "buffered {max_buffered} > {BUFFER}");
    anyhow::ensure!(
        accepted.len() < BUFFER / 1000 + 1,
        "accepted {} records of 1 KB into a 1 MiB buffer",
        accepted.len()
    );
    anyhow::ensure!(
        rss_growth < 16 << 20,
        "RSS grew {rss_growth} bytes with a 1 MiB buffer"
    );

    // The broker comes back: everything accepted is delivered, nothing else.
    node.resume()?;
    let count = accepted.len();
    let mut offsets = Vec::new();
    for delivery in accepted {
        offsets.push(delivery.await?.offset);
    }
    offsets.sort_unstable();
    offsets.dedup();
    anyhow::ensure!(offsets.len() == count, "deliveries share offsets");
    let stored = read_partition(&client, "events", 0).await?;
    anyhow::ensure!(
        stored.len() == count + 1,
        "{} stored, {} accepted + 1",
        stored.len(),
        count
    );
    Ok(())
}

async fn consumer_resumes_after_a_broker_restart(mode: ReadMode) -> anyhow::Result<()> {
    let mut node = Node::start_standalone(&format!("consumer-restart-{mode:?}")).await?;
    let client = node.client();
    client.create_topic("events", NewTopic::default()).await?;
    let records = |range: std::ops::Range<usize>| {
        range
            .map(|i| Record::keyed(format!("k{i}"), format!("v{i}")))
            .collect::<Vec<_>>()
    };
    client.produce("events", 0, records(0..500)).await?;

    let mut config = ConsumerConfig::new([node.address()]);
    config.read_mode = mode;
    config.client.request_timeout = Duration::from_secs(60);
    let mut consumer = Consumer::new(config)?;
    assert_eq!(consumer.assign("events", 0, Seek::Earliest).await?, 0);
    let mut seen = Vec::new();
    while seen.len() < 250 {
        let record = consumer.next().await.expect("stream continues")?;
        seen.push(record.offset);
    }

    node.terminate().await?;
    node.restart().await?;
    let client = node.client();
    client.produce("events", 0, records(500..1000)).await?;
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        while seen.len() < 1000 {
            let record = consumer.next().await.expect("stream continues")?;
            seen.push(record.offset);
        }
        Ok::<_, ClientError>(())
    })
    .await;
    anyhow::ensure!(rest.is_ok(), "consumer stalled at {} records", seen.len());
    rest.expect("checked")?;
    let expected: Vec<u64> = (0..1000).collect();
    anyhow::ensure!(seen == expected, "offsets have gaps or repeats");
    assert_eq!(consumer.position("events", 0), Some(1000));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_consumer_resumes_after_a_broker_restart() -> anyhow::Result<()> {
    consumer_resumes_after_a_broker_restart(ReadMode::Subscribe).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_consumer_resumes_after_a_broker_restart() -> anyhow::Result<()> {
    consumer_resumes_after_a_broker_restart(ReadMode::Fetch).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_round_trip_and_seek_by_time() -> anyhow::Result<()> {
    let node = Node::start_standalone("compression").await?;
    let client = node.client();
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let topic = format!("c-{}", codec.name());
        client.create_topic(&topic, NewTopic::default()).await?;
        let mut config = ProducerConfig::new([node.address()]);
        config.compression = codec;
        let producer = Producer::new(config)?;
        let mut sent = Vec::new();
        let mut pending = Vec::new();
        for i in 0..2000i64 {
            let record = ProducerRecord::new(&topic)
                .key(format!("k{}", i % 10))
                .value(format!("value {i} {}", "abc".repeat(50)))
                .header("n", i.to_string())
                .timestamp_ms(1_000_000 + i);
            sent.push(record.record.clone());
            pending.push(producer.enqueue(record).await?);
        }
        for delivery in pending {
            delivery.await?;
        }
        let stored: Vec<Record> = read_partition(&client, &topic, 0)
            .await?
            .into_iter()
            .map(|c| c.record)
            .collect();
        anyhow::ensure!(
            stored == sent,
            "{codec:?}: records differ after the round trip"
        );

        let mut consumer = Consumer::new(ConsumerConfig::new([node.address()]))?;
        let start = consumer
            .assign(&topic, 0, Seek::Timestamp(1_000_000 + 1500))
            .await?;
        assert_eq!(start, 1500, "{codec:?}");
        let first = consumer.next().await.expect("a record")?;
        assert_eq!(first.record, sent[1500]);
    }

    // Corrupt compressed bytes are refused, naming the field; nothing is written.
    let slot = client.reserve("c-lz4", 0, 1).await;
    let batch = EncodedBatch {
        bytes: bytes::Bytes::from_static(b"not an lz4 frame"),
        record_count: 1,
        compression: Compression::Lz4,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let error = client
        .send_reserved("c-lz4", 0, slot, batch, deadline)
        .await
        .expect_err("garbage accepted");
    assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}");
    assert!(error.to_string().contains("encoded_records"), "{error}");
    assert_eq!(read_partition(&client, "c-lz4", 0).await?.len(), 2000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_in_a_rack_reads_from_the_follower_there() -> anyhow::Result<()> {
    Cluster::run(
        ClusterSpec::new(3, 3).broker_set("node.rack=zone-a"),
        async |cluster| {
            let client = cluster.client();
            client
                .create_topic(
                    "orders",
                    NewTopic::default().partitions(3).replication_factor(3),
                )
                .await?;
            cluster
                .wait_fully_replicated(&client, "orders", Duration::from_secs(30))
                .await?;
            // A partition broker 1 follows: the rack's replica of choice (lowest id) is then
            // a follower.
            let mut target = None;
            for partition in 0..3 {
                let leader = cluster
                    .leader_of(&client, "orders", partition, Duration::from_secs(10))
                    .await?;
                if leader != 1 {
                    target = Some((partition, leader));
                    break;
                }
            }
            let (partition, leader) = target.expect("broker 1 cannot lead all 3 partitions");
            let records: Vec<Record> = (0..100)
                .map(|i| Record::keyed("k", format!("v{i}")))
                .collect();
            client.produce("orders", partition, records.clone()).await?;
            cluster
                .wait_fully_replicated(&client, "orders", Duration::from_secs(30))
                .await?;

            let mut config = ConsumerConfig::new(cluster.broker_addresses());
            config.rack = Some("zone-a".into());
            let mut consumer = Consumer::new(config)?;
            consumer
                .assign("orders", partition, Seek::Offset(0))
                .await?;
            // With the leader frozen, only the follower can answer.
            cluster.broker(leader).pause()?;
            let read = tokio::time::timeout(Duration::from_secs(20), async {
                let mut read = Vec::new();
                while read.len() < 100 {
                    let record = consumer.next().await.expect("stream continues")?.record;
                    read.push(record.with_timestamp(0));
                }
                Ok::<_, ClientError>(read)
            })
            .await;
            cluster.broker(leader).resume()?;
            let read = read.map_err(|_| anyhow::anyhow!("no follower read within 20 s"))??;
            anyhow::ensure!(read == records, "follower served different records");
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors() -> anyhow::Result<()> {
    let node = Node::start_standalone("client-bad-input").await?;
    let client: Client = node.client();
    client.create_topic("events", NewTopic::default()).await?;
    client
        .produce("events", 0, vec![Record::unkeyed("one")])
        .await?;
    let producer = Producer::new(ProducerConfig::new([node.address()]))?;

    let huge = ProducerRecord::new("events").value(vec![0u8; 2 << 20]);
    let error = producer.send(huge).await.expect_err("oversize accepted");
    assert!(
        matches!(error, ClientError::RecordTooLarge { .. }),
        "{error}"
    );
    assert!(!error.is_retryable());

    let error = producer
        .send(ProducerRecord::new("no-such-topic").value("x"))
        .await
        .expect_err("unknown topic accepted");
    assert_eq!(error.code(), ErrorCode::TopicNotFound, "{error}");

    let error = producer
        .send(ProducerRecord::new("bad topic!").value("x"))
        .await
        .expect_err("invalid topic accepted");
    assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}");
    assert!(!error.is_retryable());

    let error = producer
        .send(ProducerRecord::new("events").partition(5).value("x"))
        .await
        .expect_err("missing partition accepted");
    assert_eq!(error.code(), ErrorCode::PartitionNotFound, "{error}");

    producer.close().await?;
    let error = producer
        .send(ProducerRecord::new("events").value("x"))
        .await
        .expect_err("closed producer accepted");
    assert!(matches!(error, ClientError::Closed(_)), "{error}");

    let mut consumer = Consumer::new(ConsumerConfig::new([node.address()]))?;
    let error = consumer
        .assign("events", 0, Seek::Offset(5))
        .await
        .expect_err("seek past the end accepted");
    assert!(
        matches!(
            error,
            ClientError::OffsetOutOfRange {
                offset: 5,
                high_watermark: 1,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.code(), ErrorCode::OffsetOutOfRange);
    assert!(consumer.assignment().is_empty());
    let no_topics: [&str; 0] = [];
    let error = consumer
        .subscribe(mq_consumer::GroupConfig::new("billing", no_topics))
        .await
        .expect_err("a group subscription without topics");
    assert!(matches!(error, ClientError::InvalidArgument(_)), "{error}");

    // Only what was valid is stored.
    assert_eq!(read_partition(&client, "events", 0).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_for_lingering_batches() -> anyhow::Result<()> {
    let node = Node::start_standalone("flush").await?;
    let client = node.client();
    client
        .create_topic("events", NewTopic::default().partitions(2))
        .await?;
    let mut config = ProducerConfig::new([node.address()]);
    // Longer than the test would wait for without flush.
    config.linger = Duration::from_secs(600);
    let producer = Producer::new(config)?;
    let delivered = Arc::new(AtomicU32::new(0));
    for i in 0..100 {
        let delivered = delivered.clone();
        producer
            .send_with_callback(
                ProducerRecord::new("events")
                    .key(format!("k{i}"))
                    .value("v"),
                move |outcome| {
                    outcome.expect("delivered");
                    delivered.fetch_add(1, Ordering::SeqCst);
                },
            )
            .await?;
    }
    assert_eq!(
        delivered.load(Ordering::SeqCst),
        0,
        "sent before linger or flush"
    );
    tokio::time::timeout(Duration::from_secs(20), producer.flush()).await??;
    assert_eq!(delivered.load(Ordering::SeqCst), 100);
    wait_until("records stored", Duration::from_secs(5), || async {
        let total = read_partition(&client, "events", 0).await.ok()?.len()
            + read_partition(&client, "events", 1).await.ok()?.len();
        (total == 100).then_some(())
    })
    .await?;
    Ok(())
}

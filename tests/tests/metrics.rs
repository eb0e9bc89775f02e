//! The brokers' `/metrics` (real processes, Prometheus text over HTTP): the stage histograms
//! of the replicated write path, the WAL and log IO, the blocking pool, the RocksDB stall and
//! flush counters, the Raft term counters and the runtime gauges exist, and the counts of
//! the stages move while records are produced and consumed. Values are not checked: figures
//! belong to `mq-latency-bench`.

use std::time::Duration;

use futures::StreamExt;
use mq_client::NewTopic;
use mq_consumer::{Consumer, ConsumerConfig, Seek};
use mq_producer::{Producer, ProducerConfig, ProducerRecord};
use mq_tests::cluster::{Cluster, ClusterSpec};
use mq_tests::metrics::Scrape;

/// Histograms whose `_count` must grow under load, summed over the brokers, with the
/// labels they must carry.
const STAGES: &[(&str, &[(&str, &str)])] = &[
    ("mq_produce_sequencer_wait_seconds", &[]),
    (
        "mq_raft_propose_queue_seconds",
        &[("group_kind", "partition")],
    ),
    (
        "mq_raft_propose_commit_seconds",
        &[("group_kind", "partition")],
    ),
    (
        "mq_raft_propose_apply_seconds",
        &[("group_kind", "partition")],
    ),
    ("mq_raft_log_write_seconds", &[]),
    ("mq_raft_log_flush_seconds", &[]),
    ("mq_wal_sync_seconds", &[]),
    ("mq_raft_rpc_seconds", &[("rpc", "append")]),
    ("mq_raft_append_handle_seconds", &[]),
    ("mq_blocking_wait_seconds", &[("kind", "read")]),
];

/// Counters and gauges that must exist (a stall counter need not move on a light load).
const PRESENT: &[&str] = &[
    "mq_rocksdb_stall_micros_total",
    "mq_rocksdb_flushes_total",
    "mq_rocksdb_compactions_total",
    "mq_raft_term_changes_total",
    "mq_raft_leader_changes_total",
    "mq_raft_elections_won_total",
    "mq_runtime_workers",
    "mq_runtime_workers_busy",
    "mq_runtime_global_queue_depth",
    "mq_blocking_queued",
];

async fn scrape_all(cluster: &Cluster) -> anyhow::Result<Vec<Scrape>> {
    let mut scrapes = Vec::new();
    for broker in &cluster.brokers {
        scrapes.push(broker.scrape_metrics().await?);
    }
    Ok(scrapes)
}

fn count(scrapes: &[Scrape], name: &str, labels: &[(&str, &str)]) -> f64 {
    scrapes
        .iter()
        .map(|scrape| scrape.sum(&format!("{name}_count"), labels))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_histograms_and_stall_counters_are_exported_and_move_under_load() -> anyhow::Result<()>
{
    let cluster = Cluster::start(ClusterSpec::new(1, 3).with_metrics()).await?;
    let client = cluster.client();
    client
        .create_topic(
            "prices",
            NewTopic::default().partitions(1).replication_factor(3),
        )
        .await?;
    cluster
        .wait_fully_replicated(&client, "prices", Duration::from_secs(30))
        .await?;
    let before = scrape_all(&cluster).await?;

    let producer = Producer::new(ProducerConfig::new(cluster.broker_addresses()))?;
    let mut deliveries = Vec::new();
    for i in 0..200 {
        let record = ProducerRecord::new("prices")
            .key(format!("sku-{}", i % 10))
            .value(format!("price {i}"));
        deliveries.push(producer.enqueue(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await?;
    let mut consumer = Consumer::new(ConsumerConfig::new(cluster.broker_addresses()))?;
    consumer.assign("prices", 0, Seek::Earliest).await?;
    for _ in 0..200 {
        tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await?
            .expect("assigned")?;
    }
    // The runtime and engine gauges are sampled once a second: wait for a sample on every
    // broker that counts busy time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let after = scrape_all(&cluster).await?;
        if after
            .iter()
            .all(|scrape| scrape.sum("mq_runtime_busy_micros_total", &[]) > 0.0)
        {
            break after;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "a broker reported no runtime sample within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    for (name, labels) in STAGES {
        let (was, now) = (count(&before, name, labels), count(&after, name, labels));
        assert!(
            now > was,
            "{name}{labels:?}: count {was} before the load, {now} after"
        );
    }
    for name in PRESENT {
        assert!(
            after.iter().all(|scrape| scrape.has(name)),
            "{name} is missing from a broker's /metrics"
        );
    }
    let terms: f64 = after
        .iter()
        .map(|scrape| scrape.sum("mq_raft_term_changes_total", &[("group_kind", "partition")]))
        .sum();
    assert!(
        terms >= 1.0,
        "the partition's election counted no term change"
    );
    cluster.assert_no_panic();
    Ok(())
}

//! `mq-client-bench`: the producer and consumer crates end to end, one producer, one
//! partition, 1 KiB values, fsync on.
//!
//! Starts a standalone node (default) or a cluster of 3 cluster-manager voters + 3 brokers
//! with a topic of replication factor 3 (`--cluster`), then:
//! 1. throughput of `--messages` records for every combination of idempotence on/off, lz4
//!    on/off and linger 0 / 5 ms (records/s, MB/s of values, broker CPU per record);
//! 2. send latency (send → acknowledgement, per record) at half the best rate of step 1,
//!    paced, with the settings of that best run, p50/p99/p99.9;
//! 3. consumer records/s reading a `--backlog-mib` backlog from the start.
//!
//! With `--peers` it runs instead the workload of the peers bench (`../shared/bench/peers`,
//! NATS JetStream, Redis streams, RabbitMQ): one producer keeping at most `--window`
//! un-acknowledged records in flight (linger 0, no compression), one consumer reading at the
//! same time, values of a send timestamp padded with `x`, for `--secs`; `--reps` saturated runs
//! then one paced at `--paced-rate`; publish-ack and end-to-end latency, broker CPU per record.
//! The output lines use the peers bench's keys so the figures sit side by side.
//!
//! Values are domain-event-like text (JSON with random ids and amounts): lz4 shrinks them
//! about 2x, as it would real events; fully random values would make compression pointless.

// A command-line tool: its report is its standard output.
#![allow(clippy::print_stdout)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use mq_client::{Client, Compression, NewTopic};
use mq_consumer::{Consumer, ConsumerConfig, Seek};
use mq_producer::{Producer, ProducerConfig, ProducerRecord};
use mq_tests::Node;
use mq_tests::cluster::{Cluster, ClusterSpec};
use mq_tests::cpu_seconds;

#[derive(Debug, Parser)]
#[command(about = "Producer and consumer crates end to end, with fsync on")]
struct Args {
    /// 3 cluster-manager voters + 3 brokers, replication factor 3 (default: standalone).
    #[arg(long)]
    cluster: bool,
    /// Records per throughput run.
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Seconds of the paced latency run.
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    /// Size of the backlog the consumer reads, MiB.
    #[arg(long, default_value_t = 1024)]
    backlog_mib: usize,
    /// Run the peers bench's workload instead (windowed producer + concurrent consumer).
    #[arg(long)]
    peers: bool,
    /// Peers workload: un-acknowledged records in flight.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Peers workload: seconds per run.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Peers workload: saturated runs.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Peers workload: records/s of the paced latency run.
    #[arg(long, default_value_t = 1000.0)]
    paced_rate: f64,
}

/// Domain-event-like values: JSON text with random ids and amounts, padded to `size`.
fn event_values(count: usize, size: usize) -> Vec<Bytes> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|i| {
            let mut value = format!(
                r#"{{"type":"order.placed","order_id":"{:016x}","customer_id":"customer-{}","items":["#,
                random(),
                random() % 100_000
            );
            while value.len() < size.saturating_sub(80) {
                value.push_str(&format!(
                    r#"{{"sku":"SKU-{:08}","quantity":{},"price_cents":{}}},"#,
                    random() % 100_000_000,
                    random() % 10,
                    random() % 100_000
                ));
            }
            value.push_str(&format!(r#"],"seq":{i},"at":"2026-11-22T09:00:00Z"}}"#));
            value.truncate(size);
            while value.len() < size {
                value.push(' ');
            }
            Bytes::from(value)
        })
        .collect()
}

struct Target {
    servers: Vec<String>,
    broker_pids: Vec<u32>,
    replication_factor: u32,
}

impl Target {
    fn cpu(&self) -> anyhow::Result<f64> {
        self.broker_pids.iter().map(|pid| cpu_seconds(*pid)).sum()
    }

    fn producer_config(&self) -> ProducerConfig {
        ProducerConfig::new(self.servers.clone())
    }

    async fn topic(&self, client: &Client, name: &str) -> anyhow::Result<()> {
        client
            .create_topic(
                name,
                NewTopic::default()
                    .partitions(1)
                    .replication_factor(self.replication_factor),
            )
            .await?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    idempotent: bool,
    compression: Compression,
    linger: Duration,
}

/// Sends `values` as fast as the producer takes them; returns records/s.
async fn throughput(
    target: &Target,
    client: &Client,
    variant: Variant,
    values: &[Bytes],
    run: usize,
) -> anyhow::Result<f64> {
    let topic = format!("bench-{run}");
    target.topic(client, &topic).await?;
    let mut config = target.producer_config();
    config.client.idempotent = variant.idempotent;
    config.compression = variant.compression;
    config.linger = variant.linger;
    let producer = Producer::new(config)?;
    let cpu_before = target.cpu()?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let record = ProducerRecord::new(&topic)
            .key(format!("customer-{}", i % 1000))
            .value(value.clone());
        pending.push(producer.enqueue(record).await?);
    }
    for delivery in pending {
        delivery.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_us = (target.cpu()? - cpu_before) * 1e6 / values.len() as f64;
    let rate = values.len() as f64 / secs;
    let mb = values.iter().map(Bytes::len).sum::<usize>() as f64 / secs / 1e6;
    println!(
        "idempotence {:<3} compression {:<4} linger {:>4}: {:>8.0} records/s {:>6.1} MB/s  broker CPU {:>5.2} us/record",
        if variant.idempotent { "on" } else { "off" },
        variant.compression.name(),
        format!("{}ms", variant.linger.as_millis()),
        rate,
        mb,
        cpu_us,
    );
    producer.close().await?;
    client.delete_topic(&topic).await?;
    Ok(rate)
}

/// Sends at `rate` records/s for `secs` with the settings of `variant`; prints send latency
/// percentiles.
async fn latency(
    target: &Target,
    client: &Client,
    values: &[Bytes],
    variant: Variant,
    rate: f64,
    secs: u64,
) -> anyhow::Result<()> {
    target.topic(client, "bench-latency").await?;
    let mut config = target.producer_config();
    config.client.idempotent = variant.idempotent;
    config.compression = variant.compression;
    config.linger = variant.linger;
    let producer = Producer::new(config)?;
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * secs as f64) as usize;
    let started = Instant::now();
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let record = ProducerRecord::new("bench-latency")
            .key(format!("customer-{}", i % 1000))
            .value(values[i % values.len()].clone());
        let sent = Instant::now();
        let histogram = histogram.clone();
        producer
            .send_with_callback(record, move |outcome| {
                if outcome.is_ok() {
                    let micros = sent.elapsed().as_micros() as u64;
                    histogram.lock().expect("histogram").record(micros).ok();
                }
            })
            .await?;
    }
    producer.close().await?;
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    let histogram = histogram.lock().expect("histogram").clone();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency ({variant:?}) at {rate:.0} records/s offered ({achieved:.0} achieved, {} acked): p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        histogram.len(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        histogram.max() as f64 / 1000.0
    );
    client.delete_topic("bench-latency").await?;
    Ok(())
}

/// Produces a backlog of `mib` MiB, then reads it from the start with a consumer.
async fn backlog(
    target: &Target,
    client: &Client,
    values: &[Bytes],
    mib: usize,
) -> anyhow::Result<()> {
    target.topic(client, "bench-backlog").await?;
    let count = (mib << 20) / values[0].len();
    let producer = Producer::new(target.producer_config())?;
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let record = ProducerRecord::new("bench-backlog")
            .key(format!("customer-{}", i % 1000))
            .value(values[i % values.len()].clone());
        pending.push(producer.enqueue(record).await?);
    }
    for delivery in pending {
        delivery.await?;
    }
    producer.close().await?;

    let mut consumer = Consumer::new(ConsumerConfig::new(target.servers.clone()))?;
    consumer.assign("bench-backlog", 0, Seek::Earliest).await?;
    let cpu_before = target.cpu()?;
    let started = Instant::now();
    let mut read = 0usize;
    let mut bytes = 0usize;
    while read < count {
        let record = consumer.next().await.expect("assigned")?;
        bytes += record.record.value.as_ref().map_or(0, Bytes::len);
        read += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "consumer, {mib} MiB backlog: {read} records in {secs:.1} s: {:.0} records/s {:.1} MB/s  broker CPU {:.2} us/record",
        read as f64 / secs,
        bytes as f64 / secs / 1e6,
        (target.cpu()? - cpu_before) * 1e6 / read as f64
    );
    client.delete_topic("bench-backlog").await?;
    Ok(())
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// A peers-bench value: the send time in nanoseconds (little endian), then `x`.
fn stamped_value(size: usize) -> Bytes {
    let mut value = vec![b'x'; size.max(8)];
    value[..8].copy_from_slice(&now_ns().to_le_bytes());
    Bytes::from(value)
}

fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 120_000_000_000, 3)?)
}

/// One run of the peers bench's workload; `rate` 0 = as fast as the window allows.
async fn peers_run(
    args: &Args,
    target: &Target,
    client: &Client,
    topic: &str,
    rate: f64,
) -> anyhow::Result<()> {
    target.topic(client, topic).await?;
    let mut consumer = Consumer::new(ConsumerConfig::new(target.servers.clone()))?;
    consumer.assign(topic, 0, Seek::Earliest).await?;
    let produced = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let reader = {
        let produced = produced.clone();
        tokio::spawn(async move {
            let mut end_to_end = latency_histogram()?;
            let mut count = 0u64;
            let mut first = None;
            let mut last = Instant::now();
            while count < produced.load(std::sync::atomic::Ordering::Acquire) {
                let next = tokio::time::timeout(Duration::from_millis(200), consumer.next());
                let Ok(record) = next.await else { continue };
                let record = record.expect("assigned")?;
                let value = record.record.value.unwrap_or_default();
                let sent = u64::from_le_bytes(value[..8].try_into()?);
                end_to_end.record(now_ns().saturating_sub(sent).max(1)).ok();
                last = Instant::now();
                first.get_or_insert(last);
                count += 1;
            }
            let span = first.map_or(f64::NAN, |first| (last - first).as_secs_f64());
            anyhow::Ok((count, span, end_to_end))
        })
    };

    let mut config = target.producer_config();
    config.linger = Duration::ZERO;
    let producer = Producer::new(config)?;
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut acks = latency_histogram()?;
    let mut acked = 0u64;
    let cpu_before = target.cpu()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.secs);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        while in_flight.len() >= args.window {
            let sent_at: Instant = in_flight.next().await.expect("in flight")?;
            acks.record(sent_at.elapsed().as_nanos().max(1) as u64).ok();
            acked += 1;
        }
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            while Instant::now() < due {
                tokio::select! {
                    () = tokio::time::sleep_until(due.into()) => {}
                    Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                        let sent_at: Instant = done?;
                        acks.record(sent_at.elapsed().as_nanos().max(1) as u64).ok();
                        acked += 1;
                    }
                }
            }
        }
        let record = ProducerRecord::new(topic).value(stamped_value(args.value_size));
        let sent_at = Instant::now();
        let delivery = producer.enqueue(record).await?;
        in_flight.push(async move { delivery.await.map(|_| sent_at) });
        sent += 1;
    }
    while let Some(done) = in_flight.next().await {
        acks.record(done?.elapsed().as_nanos().max(1) as u64).ok();
        acked += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    produced.store(acked, std::sync::atomic::Ordering::Release);
    let (read, span, end_to_end) = reader.await??;
    let cpu_us = (target.cpu()? - cpu_before) * 1e6 / acked as f64;
    producer.close().await?;
    let us = |histogram: &Histogram<u64>, q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "system=mq size={} window={} rate_limit={rate} replicas={} secs={secs:.1} pub_msgs={acked} pub_msgs_per_s={:.0} pub_MB_per_s={:.2} ack_p50_us={:.0} ack_p99_us={:.0} ack_p999_us={:.0} ack_max_us={:.0} sub_msgs={read} sub_msgs_per_s={:.0} e2e_p50_us={:.0} e2e_p99_us={:.0} e2e_p999_us={:.0} broker_cpu_us_per_msg={cpu_us:.1}",
        args.value_size,
        args.window,
        target.replication_factor,
        acked as f64 / secs,
        acked as f64 * args.value_size as f64 / secs / 1e6,
        us(&acks, 0.5),
        us(&acks, 0.99),
        us(&acks, 0.999),
        acks.max() as f64 / 1000.0,
        read as f64 / span,
        us(&end_to_end, 0.5),
        us(&end_to_end, 0.99),
        us(&end_to_end, 0.999),
    );
    client.delete_topic(topic).await?;
    Ok(())
}

async fn peers(args: &Args, target: &Target) -> anyhow::Result<()> {
    let client = Client::new(mq_client::ClientConfig::new(target.servers.clone()))?;
    for rep in 1..=args.reps {
        peers_run(args, target, &client, &format!("peers-{rep}"), 0.0).await?;
    }
    peers_run(args, target, &client, "peers-paced", args.paced_rate).await
}

async fn bench(args: &Args, target: &Target) -> anyhow::Result<()> {
    if args.peers {
        return peers(args, target).await;
    }
    let client = Client::new(mq_client::ClientConfig::new(target.servers.clone()))?;
    let values = event_values(args.messages.min(100_000), args.value_size);
    let lz4 = Compression::Lz4.compress(&values.concat());
    println!(
        "{} brokers, replication factor {}; {} records of {} bytes per run; lz4 ratio of the values {:.2}",
        target.broker_pids.len(),
        target.replication_factor,
        args.messages,
        args.value_size,
        (values.len() * args.value_size) as f64 / lz4.len() as f64
    );
    let run_values: Vec<Bytes> = (0..args.messages)
        .map(|i| values[i % values.len()].clone())
        .collect();
    let mut best = (0.0, None);
    let mut run = 0;
    for idempotent in [true, false] {
        for compression in [Compression::None, Compression::Lz4] {
            for linger in [Duration::ZERO, Duration::from_millis(5)] {
                let variant = Variant {
                    idempotent,
                    compression,
                    linger,
                };
                run += 1;
                let rate = throughput(target, &client, variant, &run_values, run).await?;
                if rate > best.0 {
                    best = (rate, Some(variant));
                }
            }
        }
    }
    let (rate, variant) = best;
    let variant = variant.expect("at least one run");
    latency(
        target,
        &client,
        &values,
        variant,
        rate / 2.0,
        args.latency_secs,
    )
    .await?;
    backlog(target, &client, &values, args.backlog_mib).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.cluster {
        let cluster = Cluster::start(ClusterSpec::new(3, 3)).await?;
        let target = Target {
            servers: cluster.broker_addresses(),
            broker_pids: cluster.brokers.iter().filter_map(Node::pid).collect(),
            replication_factor: 3,
        };
        bench(&args, &target).await
    } else {
        let node = Node::start_standalone("client-bench").await?;
        let target = Target {
            servers: vec![node.address()],
            broker_pids: node.pid().into_iter().collect(),
            replication_factor: 1,
        };
        bench(&args, &target).await
    }
}

//! `mq-consumer-bench`: the consumer manager's figures, on a standalone node (default) or a
//! cluster of 3 cluster-manager voters + 3 brokers (`--cluster`), fsync on:
//!
//! 1. offset commits: latency of one commit at a time (p50/p99), then commits/s with
//!    `--committers` committing concurrently (one group each, one partition per commit);
//! 2. queue subscription: acks/s with 5 consumers sharing one partition of `--queue-messages`
//!    100-byte messages (receive up to 100, ack them in one call), then a tenth as many acked
//!    one call per message;
//! 3. rebalance: 3 members own a 12-partition group; a 4th joins; time until every member
//!    owns its 3 partitions and none is being revoked (median of `--rebalances`);
//! 4. broadcast: 3 instances follow a 3-partition topic; a producer sends `--broadcast-rate`
//!    records/s for `--broadcast-secs`; fan-out latency (send → each instance) p50/p99/max.

// A command-line tool: its report is its standard output.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use mq_client::{Client, ClientConfig, NewQueue, NewTopic, OffsetCommit, QueueStart, Record};
use mq_consumer::{Consumer, ConsumerConfig, GroupConfig, QueueConsumer};
use mq_tests::Node;
use mq_tests::cluster::{Cluster, ClusterSpec};

#[derive(Debug, Parser)]
#[command(
    about = "Consumer-manager figures: commits, queue acks, rebalance time, broadcast latency"
)]
struct Args {
    /// 3 cluster-manager voters + 3 brokers (default: standalone).
    #[arg(long)]
    cluster: bool,
    /// Sequential commits timed one by one.
    #[arg(long, default_value_t = 2_000)]
    commits: usize,
    /// Concurrent committers of the throughput run.
    #[arg(long, default_value_t = 16)]
    committers: usize,
    /// Messages of the queue run.
    #[arg(long, default_value_t = 50_000)]
    queue_messages: usize,
    /// Joins timed.
    #[arg(long, default_value_t = 5)]
    rebalances: usize,
    /// Records/s of the broadcast run.
    #[arg(long, default_value_t = 1_000.0)]
    broadcast_rate: f64,
    /// Seconds of the broadcast run.
    #[arg(long, default_value_t = 10)]
    broadcast_secs: u64,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn commit_request(group: &str, offset: u64) -> OffsetCommit {
    OffsetCommit::new(group).offset("commits", 0, offset)
}

async fn commits(args: &Args, client: &Client) -> anyhow::Result<()> {
    client.create_topic("commits", NewTopic::default()).await?;
    let mut latency = histogram()?;
    for i in 0..args.commits {
        let started = Instant::now();
        client
            .commit_offsets(commit_request("sequential", i as u64))
            .await?;
        latency.record(started.elapsed().as_micros().max(1) as u64)?;
    }
    println!(
        "commit latency (one at a time, {} commits): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.commits,
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max())
    );
    let done = Arc::new(AtomicU64::new(0));
    let run = Duration::from_secs(5);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for committer in 0..args.committers {
        let (client, done) = (client.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let group = format!("concurrent-{committer}");
            let mut offset = 0;
            while started.elapsed() < run {
                client
                    .commit_offsets(commit_request(&group, offset))
                    .await?;
                offset += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let total = done.load(Ordering::Relaxed);
    println!(
        "commit throughput ({} concurrent committers): {:.0} commits/s",
        args.committers,
        total as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `messages` 100-byte messages through a queue of 5 consumers that ack `per_ack` at a time.
async fn queue(
    client: &Client,
    servers: &[String],
    messages: usize,
    per_ack: usize,
) -> anyhow::Result<()> {
    let topic = format!("jobs-{per_ack}");
    client.create_topic(&topic, NewTopic::default()).await?;
    let value = "x".repeat(100);
    for chunk in (0..messages).collect::<Vec<_>>().chunks(5_000) {
        let records = chunk
            .iter()
            .map(|_| Record::unkeyed(value.clone()))
            .collect();
        client.produce(&topic, 0, records).await?;
    }
    let queue = format!("work-{per_ack}");
    client
        .create_queue(&queue, NewQueue::on(topic).start(QueueStart::Earliest))
        .await?;
    let acked = Arc::new(AtomicU64::new(0));
    let target = messages as u64;
    let started = Instant::now();
    let mut consumers = Vec::new();
    for _ in 0..5 {
        let consumer = QueueConsumer::new(ConsumerConfig::new(servers.to_vec()), queue.clone())?;
        let acked = acked.clone();
        consumers.push(tokio::spawn(async move {
            while acked.load(Ordering::Relaxed) < target {
                let messages = consumer.receive(100, Duration::from_millis(100)).await?;
                let leases: Vec<String> = messages.into_iter().map(|m| m.lease_id).collect();
                for chunk in leases.chunks(per_ack) {
                    consumer.ack(chunk.to_vec()).await?;
                    acked.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    for consumer in consumers {
        consumer.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "queue: {messages} messages acked by 5 consumers, {per_ack} per ack call, in {elapsed:.2} s: {:.0} messages acked/s, {:.0} ack calls/s",
        messages as f64 / elapsed,
        messages as f64 / per_ack as f64 / elapsed
    );
    Ok(())
}

/// A group member whose stream is polled (so it applies and releases assignments).
fn member(servers: &[String], group: &str) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut consumer = Consumer::new(ConsumerConfig::new(servers.to_vec()))?;
    let config = GroupConfig::new(group, ["rebalance"]);
    Ok(tokio::spawn(async move {
        if consumer.subscribe(config).await.is_err() {
            return;
        }
        while consumer.next().await.is_some() {}
    }))
}

/// Waits until the group has `members` members, each owning `partitions / members`
/// partitions, none revoking.
async fn settled(client: &Client, group: &str, members: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        anyhow::ensure!(Instant::now() < deadline, "the group did not settle");
        if let Ok(described) = client.describe_group(group).await {
            let ok = described.members.len() == members
                && described
                    .members
                    .iter()
                    .all(|m| m.assignment.len() == 12 / members && m.revoking.is_empty());
            if ok {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn rebalance(args: &Args, client: &Client, servers: &[String]) -> anyhow::Result<()> {
    client
        .create_topic("rebalance", NewTopic::default().partitions(12))
        .await?;
    let mut times = Vec::new();
    for round in 0..args.rebalances {
        let group = format!("rebalance-{round}");
        let members: Vec<_> = (0..3)
            .map(|_| member(servers, &group))
            .collect::<anyhow::Result<_>>()?;
        settled(client, &group, 3).await?;
        let started = Instant::now();
        let joiner = member(servers, &group)?;
        settled(client, &group, 4).await?;
        times.push(started.elapsed());
        for task in members.into_iter().chain([joiner]) {
            task.abort();
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "rebalance (a 4th member joins 3 on 12 partitions, default 10 s session): median {:.0} ms, min {:.0} ms, max {:.0} ms over {} joins",
        median.as_secs_f64() * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0,
        times.len()
    );
    Ok(())
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn broadcast(args: &Args, client: &Client, servers: &[String]) -> anyhow::Result<()> {
    client
        .create_topic("invalidations", NewTopic::default().partitions(3))
        .await?;
    let total = (args.broadcast_rate * args.broadcast_secs as f64) as usize;
    let mut instances = Vec::new();
    let (ready, mut readiness) = tokio::sync::mpsc::channel(3);
    for _ in 0..3 {
        let mut consumer = Consumer::new(ConsumerConfig::new(servers.to_vec()))?;
        consumer.broadcast(["invalidations"]).await?;
        let ready = ready.clone();
        instances.push(tokio::spawn(async move {
            // Streams open on first poll: the run starts once a warm-up record of every
            // partition arrived, so connection set-up is not counted as latency.
            let mut warm = std::collections::BTreeSet::new();
            while warm.len() < 3 {
                let record = consumer
                    .next()
                    .await
                    .expect("broadcast streams never end")?;
                warm.insert(record.partition);
            }
            ready.send(()).await?;
            let mut latency = histogram()?;
            while (latency.len() as usize) < total {
                let record = consumer
                    .next()
                    .await
                    .expect("broadcast streams never end")?;
                let value = record.record.value.unwrap_or_default();
                let sent: u64 = std::str::from_utf8(&value)?.parse()?;
                latency.record(now_micros().saturating_sub(sent).max(1))?;
            }
            anyhow::Ok(latency)
        }));
    }
    let producer = Client::new(ClientConfig::new(servers.to_vec()))?;
    for partition in 0..3 {
        producer
            .produce("invalidations", partition, vec![Record::unkeyed("warm-up")])
            .await?;
    }
    for _ in 0..3 {
        readiness.recv().await.expect("an instance is ready");
    }
    let started = Instant::now();
    let mut sends = futures::stream::FuturesUnordered::new();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / args.broadcast_rate);
        tokio::time::sleep_until(due.into()).await;
        let producer = producer.clone();
        sends.push(async move {
            let record = Record::keyed(format!("sku-{}", i % 1000), now_micros().to_string());
            producer
                .produce("invalidations", (i % 3) as u32, vec![record])
                .await
        });
        while let Some(Some(sent)) = futures::FutureExt::now_or_never(sends.next()) {
            sent?;
        }
    }
    while let Some(sent) = sends.next().await {
        sent?;
    }
    let mut all = histogram()?;
    for instance in instances {
        all.add(instance.await??)?;
    }
    println!(
        "broadcast fan-out to 3 instances, {} records at {:.0}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        total,
        args.broadcast_rate,
        ms(all.value_at_quantile(0.5)),
        ms(all.value_at_quantile(0.99)),
        ms(all.max())
    );
    Ok(())
}

async fn bench(args: &Args, servers: Vec<String>) -> anyhow::Result<()> {
    let client = Client::new(ClientConfig::new(servers.clone()))?;
    commits(args, &client).await?;
    queue(&client, &servers, args.queue_messages, 100).await?;
    queue(&client, &servers, args.queue_messages / 10, 1).await?;
    rebalance(args, &client, &servers).await?;
    broadcast(args, &client, &servers).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.cluster {
        let cluster = Cluster::start(ClusterSpec::new(3, 3)).await?;
        bench(&args, cluster.broker_addresses()).await
    } else {
        let node = Node::start_standalone("consumer-bench").await?;
        bench(&args, vec![node.address()]).await
    }
}

//! `mq-cluster-bench`: figures of a local cluster (3 cluster-manager voters, 3 brokers, real
//! processes on loopback, default timeouts, fsync on), started by the test harness.
//!
//! - `failover`: time from SIGKILL of a partition leader to the first acknowledged produce on
//!   each partition it led, over `--kills` kills (the broker is restarted between kills).
//! - `scale`: creates `--partitions` partitions with replication factor 3; time until all
//!   have a leader and full replication, then each broker's idle CPU and RSS.
//! - `throughput`: one producer, 1 KiB values, one partition, replication factor 1 and 3:
//!   records/s, MB/s and broker CPU per message summed over the brokers.

// A command-line tool: its report is its standard output.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use mq_client::{NewTopic, Record};
use mq_tests::cluster::{Cluster, ClusterSpec};
use mq_tests::{cpu_seconds, rss_bytes, wait_until};
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
#[command(about = "Failover, scale and replication figures of a local 3-broker cluster")]
struct Args {
    /// A broker config override for every broker, e.g. raft.heartbeat_interval=250ms
    /// (repeatable).
    #[arg(long = "broker-set", value_name = "KEY=VALUE", global = true)]
    broker_set: Vec<String>,
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    Failover {
        #[arg(long, default_value_t = 10)]
        kills: usize,
    },
    Scale {
        #[arg(long, default_value_t = 1000)]
        partitions: u32,
    },
    Throughput {
        #[arg(long, default_value_t = 300_000)]
        messages: u64,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
    },
}

fn broker_pids(cluster: &Cluster) -> Vec<u32> {
    cluster
        .brokers
        .iter()
        .filter_map(mq_tests::Node::pid)
        .collect()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn failover(spec: ClusterSpec, kills: usize) -> anyhow::Result<()> {
    let mut cluster = Cluster::start(spec).await?;
    let client = cluster.client();
    client
        .create_topic(
            "failover",
            NewTopic::default().partitions(3).replication_factor(3),
        )
        .await?;
    // Per partition, when the last acknowledged produce call started and when it returned.
    let now = Instant::now();
    let last_ack: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::new(Mutex::new(vec![(now, now); 3]));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..3u32)
        .map(|partition| {
            let (client, last_ack, stop) = (client.clone(), last_ack.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let records = vec![Record::keyed("k", "v"); 10];
                    let sent = Instant::now();
                    if client.produce("failover", partition, records).await.is_ok() {
                        last_ack.lock().await[partition as usize] = (sent, Instant::now());
                    }
                }
            })
        })
        .collect();
    let mut samples = Vec::new();
    for kill in 0..kills {
        cluster
            .wait_fully_replicated(&client, "failover", Duration::from_secs(60))
            .await?;
        wait_until("leaders spread", Duration::from_secs(60), || async {
            let brokers = client.list_brokers().await.ok()?;
            brokers
                .iter()
                .all(|b| b.broker.alive && b.leaders == 1)
                .then_some(())
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let victim = cluster
            .leader_of(
                &client,
                "failover",
                (kill % 3) as u32,
                Duration::from_secs(10),
            )
            .await?;
        let partition = kill % 3;
        let killed_at = Instant::now();
        cluster.broker(victim).kill9()?;
        let recovered = wait_until("produce to resume", Duration::from_secs(60), || {
            let last_ack = last_ack.clone();
            async move {
                // Only a produce started after the kill counts: one in flight may have
                // committed before it.
                let (sent, acked) = last_ack.lock().await[partition];
                (sent > killed_at).then(|| acked.duration_since(killed_at))
            }
        })
        .await?;
        println!(
            "kill {}: broker {victim}, partition {partition}: first ack after {recovered:?}",
            kill + 1
        );
        samples.push(recovered);
        Cluster::restart(cluster.broker(victim)).await?;
    }
    stop.store(true, Ordering::Relaxed);
    for producer in producers {
        producer.await?;
    }
    samples.sort();
    println!(
        "failover over {} kills: median {:?}, max {:?}",
        samples.len(),
        percentile(&samples, 0.5),
        samples.last().context("no kills")?
    );
    Ok(())
}

async fn scale(spec: ClusterSpec, partitions: u32) -> anyhow::Result<()> {
    let cluster = Cluster::start(spec).await?;
    let client = cluster.client();
    let started = Instant::now();
    client
        .create_topic(
            "scale",
            NewTopic::default()
                .partitions(partitions)
                .replication_factor(3),
        )
        .await?;
    let created = started.elapsed();
    wait_until(
        "every partition online and fully replicated",
        Duration::from_secs(600),
        || async {
            let status = client.cluster_status().await.ok()?;
            (status.partitions == partitions
                && status.offline.is_empty()
                && status.under_replicated.is_empty())
            .then_some(())
        },
    )
    .await?;
    let online = started.elapsed();
    println!(
        "{partitions} partitions RF3: create returned after {created:?}, all online and in sync after {online:?}"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pids = broker_pids(&cluster);
    let before: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(*p))
        .collect::<Result<_, _>>()?;
    let window = Duration::from_secs(20);
    tokio::time::sleep(window).await;
    for (i, pid) in pids.iter().enumerate() {
        let cpu = cpu_seconds(*pid)? - before[i];
        println!(
            "broker {}: idle CPU {:.1}% of a core, RSS {} MiB",
            i + 1,
            cpu / window.as_secs_f64() * 100.0,
            rss_bytes(*pid)? >> 20
        );
    }
    Ok(())
}

async fn throughput(
    spec: ClusterSpec,
    messages: u64,
    batch: usize,
    in_flight: usize,
) -> anyhow::Result<()> {
    let cluster = Cluster::start(spec).await?;
    let client = cluster.client();
    let pids = broker_pids(&cluster);
    let records = mq_tests::workload::incompressible_records(batch, 1024);
    for rf in [1u32, 3] {
        let topic = format!("rf{rf}");
        client
            .create_topic(
                &topic,
                NewTopic::default().partitions(1).replication_factor(rf),
            )
            .await?;
        cluster
            .wait_fully_replicated(&client, &topic, Duration::from_secs(30))
            .await?;
        let batches = messages.div_ceil(batch as u64);
        let total = batches * batch as u64;
        let cpu_before: f64 = pids
            .iter()
            .map(|p| cpu_seconds(*p))
            .sum::<Result<f64, _>>()?;
        let started = Instant::now();
        let client = &client;
        let mut sends = futures::stream::iter(0..batches)
            .map(|_| {
                let (records, topic) = (records.clone(), topic.clone());
                async move { client.produce(&topic, 0, records).await }
            })
            .buffer_unordered(in_flight);
        while let Some(sent) = sends.next().await {
            sent?;
        }
        let secs = started.elapsed().as_secs_f64();
        let cpu: f64 = pids
            .iter()
            .map(|p| cpu_seconds(*p))
            .sum::<Result<f64, _>>()?
            - cpu_before;
        println!(
            "RF{rf}: {:.0} records/s, {:.1} MB/s, broker CPU {:.2} us/msg (sum over 3 brokers)",
            total as f64 / secs,
            total as f64 * 1034.0 / secs / 1e6,
            cpu * 1e6 / total as f64
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec = args
        .broker_set
        .iter()
        .fold(ClusterSpec::new(3, 3), |spec, set| spec.broker_set(set));
    match args.command {
        Bench::Failover { kills } => failover(spec, kills).await,
        Bench::Scale { partitions } => scale(spec, partitions).await,
        Bench::Throughput {
            messages,
            batch,
            in_flight,
        } => throughput(spec, messages, batch, in_flight).await,
    }
}

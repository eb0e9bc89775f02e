//! `mq-cluster-bench`: figures of a local cluster (3 cluster-manager voters, 3 brokers, real
//! processes on loopback, default timeouts, fsync on), started by the test harness.
//!
//! - `failover`: time from SIGKILL of a partition leader to the first acknowledged produce on
//!   each partition it led, over `--kills` kills (the broker is restarted between kills).
//!   With `--idle-partitions N`, a second topic of N partitions sits idle (quiet groups): after
//!   each kill, every one of them the victim led is produced to until acknowledged, and the
//!   median and slowest of those times are reported too.
//! - `scale`: creates `--partitions` partitions with replication factor 3; time until all
//!   have a leader and full replication, then each broker's idle CPU and RSS, then the time
//!   of a produce to 20 of the idle partitions (spread over the topic), one after another.
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
        /// Partitions of a second, idle topic whose failover is measured too.
        #[arg(long, default_value_t = 0)]
        idle_partitions: u32,
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

/// Produces one record to `partition` of `topic` until acknowledged; returns when it was.
async fn produce_until_acked(
    client: &mq_client::Client,
    topic: &str,
    partition: u32,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if client
            .produce(topic, partition, vec![Record::keyed("k", "v")])
            .await
            .is_ok()
        {
            return Ok(Instant::now());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{topic}/{partition} took no write for 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After a kill at `killed_at`: how long each partition of `topic` that `victim` led took to
/// acknowledge a produce again, all probed at once.
async fn idle_failover(
    client: &mq_client::Client,
    topic: &str,
    led: &[u32],
    killed_at: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let probes = led.iter().map(|&partition| async move {
        produce_until_acked(client, topic, partition)
            .await
            .map(|acked| acked.duration_since(killed_at))
    });
    let mut times: Vec<Duration> = futures::future::try_join_all(probes).await?;
    times.sort();
    Ok(times)
}

async fn failover(spec: ClusterSpec, kills: usize, idle_partitions: u32) -> anyhow::Result<()> {
    let mut cluster = Cluster::start(spec).await?;
    let client = cluster.client();
    client
        .create_topic(
            "failover",
            NewTopic::default().partitions(3).replication_factor(3),
        )
        .await?;
    if idle_partitions > 0 {
        client
            .create_topic(
                "idle",
                NewTopic::default()
                    .partitions(idle_partitions)
                    .replication_factor(3),
            )
            .await?;
    }
    let mut idle_samples = Vec::new();
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
        // One partition of the measured topic led by each broker.
        wait_until("leaders spread", Duration::from_secs(60), || async {
            let brokers = client.list_brokers().await.ok()?;
            let topic = client.describe_topic("failover").await.ok()?;
            let leaders: std::collections::BTreeSet<u32> = topic
                .partitions
                .iter()
                .filter_map(|p| p.leader_id)
                .collect();
            (brokers.iter().all(|b| b.broker.alive) && leaders.len() == 3).then_some(())
        })
        .await?;
        if idle_partitions > 0 {
            cluster
                .wait_fully_replicated(&client, "idle", Duration::from_secs(300))
                .await?;
            // Long enough for the idle groups to quiesce (3 s idle, then a round).
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
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
        let idle_led: Vec<u32> = if idle_partitions > 0 {
            client
                .describe_topic("idle")
                .await?
                .partitions
                .iter()
                .filter(|p| p.leader_id == Some(victim))
                .map(|p| p.partition)
                .collect()
        } else {
            Vec::new()
        };
        let killed_at = Instant::now();
        cluster.broker(victim).kill9()?;
        if !idle_led.is_empty() {
            let times = idle_failover(&client, "idle", &idle_led, killed_at).await?;
            println!(
                "kill {}: {} idle partitions it led took writes again after median {:?}, max {:?}",
                kill + 1,
                times.len(),
                percentile(&times, 0.5),
                times.last().context("none led")?
            );
            idle_samples.push(*times.last().context("none led")?);
        }
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
    if !idle_samples.is_empty() {
        idle_samples.sort();
        println!(
            "idle partitions, slowest per kill over {} kills: median {:?}, max {:?}",
            idle_samples.len(),
            percentile(&idle_samples, 0.5),
            idle_samples.last().context("no kills")?
        );
    }
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
    // A produce to an idle (quiet) partition right after: wakes its group on the way.
    let mut acks = Vec::new();
    for i in 0..20u32 {
        let partition = i * partitions / 20;
        let sent = Instant::now();
        client
            .produce("scale", partition, vec![Record::keyed("k", "v")])
            .await?;
        acks.push(sent.elapsed());
    }
    acks.sort();
    println!(
        "a produce to each of 20 idle partitions: median {:?}, max {:?}",
        percentile(&acks, 0.5),
        acks.last().context("no produce")?
    );
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
        Bench::Failover {
            kills,
            idle_partitions,
        } => failover(spec, kills, idle_partitions).await,
        Bench::Scale { partitions } => scale(spec, partitions).await,
        Bench::Throughput {
            messages,
            batch,
            in_flight,
        } => throughput(spec, messages, batch, in_flight).await,
    }
}

//! `mq-latency-bench`: the tail, in one sitting. Fsync on, 1 KiB values, linger 0, one
//! producer keeping at most `--window` records in flight.
//!
//! Points, each after a warm-up and for `--secs`:
//! - `standalone`: one standalone node, one partition, one consumer;
//! - `rf3`: 3 cluster-manager voters + 3 brokers, one partition of replication factor 3, one
//!   consumer;
//! - `broadcast`: the same cluster, 3 partitions of replication factor 3, 3 instances
//!   following the topic as broadcast subscribers (every instance gets every record).
//!
//! Each setup runs saturated first (its maximum), then paced at `--rate` records/s and at
//! half the maximum. Per point: ack (send → acknowledgement) and end-to-end (send → each
//! consumer) p50/p99/p99.9/max, stalls (runs of consecutive records slower than 50 ms),
//! broker CPU per record, and from the brokers' `/metrics` the stage quantiles and the
//! counters that explain a stall (RocksDB stall time, flushes, term changes). Writes a
//! per-second CSV of p50/p99/max and an SVG of it into `--out`.
//!
//! Then it runs NATS JetStream R3 paced at `--rate` through `../shared/bench/peers`
//! (`peers-bench.sh nats3`, after its `install build` steps) and prints the ratios.
//! The disk is synced before every point, so writeback left by something else (a build)
//! does not land inside a measurement.

// A command-line tool: its report is its standard output.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use mq_client::{Client, ClientConfig, NewTopic};
use mq_consumer::{Consumer, ConsumerConfig, Seek};
use mq_producer::{Producer, ProducerConfig, ProducerRecord};
use mq_tests::cluster::{Cluster, ClusterSpec};
use mq_tests::{Node, cpu_seconds};

#[derive(Debug, Parser)]
#[command(about = "Latency tails of standalone, RF=3 and broadcast fan-out, with NATS R3")]
struct Args {
    /// Seconds measured per paced point.
    #[arg(long, default_value_t = 60.0)]
    secs: f64,
    /// Seconds sent before each point is measured (topic set-up, leadership settling).
    #[arg(long, default_value_t = 10.0)]
    warmup_secs: f64,
    /// Seconds of the saturated run that finds a setup's maximum.
    #[arg(long, default_value_t = 10.0)]
    max_secs: f64,
    /// Records/s of the fixed-rate points.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Records in flight at most.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Setups to run (standalone, rf3, broadcast); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the CSV, the SVG and the summary go (default: a new directory under /tmp).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A broker setting (`KEY=VALUE`, as `mq-broker --set`) for every broker, the standalone
    /// node included, e.g. to compare
    /// `storage.background_write_mib_per_sec=0` with the default in one sitting. Repeatable.
    #[arg(long = "set")]
    broker_set: Vec<String>,
    /// Skip NATS JetStream.
    #[arg(long)]
    no_peers: bool,
    /// The peers bench (its `peers-bench.sh`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/bench/peers"))]
    peers_dir: PathBuf,
}

/// A record slower than this is part of a stall.
const STALL: Duration = Duration::from_millis(50);

/// Where a point sends and who reads.
struct Target<'a> {
    servers: Vec<String>,
    brokers: Vec<&'a Node>,
    replication_factor: u32,
    partitions: u32,
    /// Consumers; broadcast subscribers when `broadcast`, else readers of partition 0.
    consumers: usize,
    broadcast: bool,
}

impl Target<'_> {
    fn cpu(&self) -> anyhow::Result<f64> {
        self.brokers
            .iter()
            .filter_map(|node| node.pid())
            .map(cpu_seconds)
            .sum()
    }
}

/// Per-second latency histograms, by second of sending since the measurement started.
#[derive(Clone)]
struct Series(Vec<Histogram<u64>>);

impl Series {
    fn new(secs: f64) -> anyhow::Result<Self> {
        let seconds = secs.ceil() as usize + 1;
        Ok(Self(
            (0..seconds)
                .map(|_| histogram())
                .collect::<Result<_, _>>()?,
        ))
    }

    fn record(&mut self, second: usize, micros: u64) {
        if let Some(histogram) = self.0.get_mut(second) {
            histogram.saturating_record(micros.max(1));
        }
    }

    fn merge(&mut self, other: &Series) -> anyhow::Result<()> {
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            mine.add(theirs)?;
        }
        Ok(())
    }

    fn total(&self) -> anyhow::Result<Histogram<u64>> {
        let mut all = histogram()?;
        for second in &self.0 {
            all.add(second)?;
        }
        Ok(all)
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

/// Runs of consecutive records (by sequence) slower than [`STALL`]; `None` = never arrived.
fn stalls(latencies: &[Option<u32>]) -> (usize, usize) {
    let slow =
        |latency: &Option<u32>| latency.is_none_or(|micros| u128::from(micros) > STALL.as_micros());
    let episodes = latencies
        .iter()
        .enumerate()
        .filter(|(i, latency)| slow(latency) && (*i == 0 || !slow(&latencies[i - 1])))
        .count();
    (episodes, latencies.iter().filter(|l| l.is_none()).count())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// A value: send time (ns since the epoch), sequence number, then `x` up to `size`.
fn value(size: usize, seq: u64) -> Bytes {
    let mut value = vec![b'x'; size.max(16)];
    value[..8].copy_from_slice(&now_ns().to_le_bytes());
    value[8..16].copy_from_slice(&seq.to_le_bytes());
    Bytes::from(value)
}

/// What one point measured.
struct Point {
    name: String,
    offered: f64,
    achieved: f64,
    measured: usize,
    ack: Series,
    e2e: Series,
    ack_stalls: usize,
    e2e_stalls: usize,
    missing: usize,
    cpu_us_per_record: f64,
    stages: String,
}

/// What one consumer measured: per-second end-to-end latency and each record's latency.
struct Received {
    e2e: Series,
    latencies: Vec<Option<u32>>,
}

/// Reads until `done` and every measured record arrived (or 10 s after `done`).
async fn consume(
    mut consumer: Consumer,
    first_measured: Arc<AtomicU64>,
    measured: usize,
    t0_ns: Arc<std::sync::OnceLock<u64>>,
    secs: f64,
    done: Arc<AtomicBool>,
) -> anyhow::Result<Received> {
    let mut e2e = Series::new(secs)?;
    let mut latencies = vec![None; measured];
    let mut got = 0usize;
    let mut done_at = None;
    loop {
        if done.load(Ordering::Acquire) {
            let since = *done_at.get_or_insert_with(Instant::now);
            if got >= measured || since.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        let Ok(next) = tokio::time::timeout(Duration::from_millis(100), consumer.next()).await
        else {
            continue;
        };
        let record = next.context("consumer stream ended")??;
        let Some(value) = record.record.value.filter(|v| v.len() >= 16) else {
            continue;
        };
        let sent = u64::from_le_bytes(value[..8].try_into()?);
        let seq = u64::from_le_bytes(value[8..16].try_into()?);
        let first = first_measured.load(Ordering::Acquire);
        let Some(index) = seq.checked_sub(first).map(|i| i as usize) else {
            continue;
        };
        if index >= measured {
            continue;
        }
        let micros = now_ns().saturating_sub(sent) / 1000;
        let second = t0_ns
            .get()
            .map_or(0, |t0| (sent.saturating_sub(*t0) / 1_000_000_000) as usize);
        e2e.record(second, micros);
        if latencies[index].is_none() {
            got += 1;
        }
        latencies[index] = Some(micros.min(u64::from(u32::MAX)) as u32);
    }
    Ok(Received { e2e, latencies })
}

/// One point: `rate` records/s (0 = as fast as the window allows) for `secs` after
/// `warmup` seconds, on a fresh topic.
async fn point(
    args: &Args,
    target: &Target<'_>,
    client: &Client,
    name: &str,
    rate: f64,
    warmup: f64,
    secs: f64,
) -> anyhow::Result<Point> {
    nix::unistd::sync();
    let topic = format!("latency-{name}");
    client
        .create_topic(
            &topic,
            NewTopic::default()
                .partitions(target.partitions)
                .replication_factor(target.replication_factor),
        )
        .await?;
    // The warm-up's records are not measured: the first measured sequence number is set
    // when the measurement starts.
    let first_shared = Arc::new(AtomicU64::new(u64::MAX));
    let measured_max = if rate > 0.0 {
        (rate * secs).ceil() as usize + 1
    } else {
        2_000_000
    };
    let t0_ns = Arc::new(std::sync::OnceLock::new());
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..target.consumers {
        let mut consumer = Consumer::new(ConsumerConfig::new(target.servers.clone()))?;
        if target.broadcast {
            consumer.broadcast([topic.as_str()]).await?;
        } else {
            consumer.assign(&topic, 0, Seek::Earliest).await?;
        }
        readers.push(tokio::spawn(consume(
            consumer,
            first_shared.clone(),
            measured_max,
            t0_ns.clone(),
            secs,
            done.clone(),
        )));
    }

    let mut config = ProducerConfig::new(target.servers.clone());
    config.linger = Duration::ZERO;
    let producer = Producer::new(config)?;
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut ack = Series::new(secs)?;
    let mut ack_latencies: Vec<Option<u32>> = Vec::new();
    let started = Instant::now();
    let t0 = started + Duration::from_secs_f64(warmup);
    let end = t0 + Duration::from_secs_f64(secs);
    let mut cpu_before = None;
    let mut first_measured = u64::MAX;
    let mut seq = 0u64;
    let settle = |done: Result<(u64, Instant), mq_client::ClientError>,
                  ack: &mut Series,
                  latencies: &mut Vec<Option<u32>>,
                  first: u64|
     -> anyhow::Result<()> {
        let (seq, sent_at) = done?;
        if let Some(index) = seq.checked_sub(first).map(|i| i as usize) {
            let micros = sent_at.elapsed().as_micros() as u64;
            let second = sent_at.saturating_duration_since(t0).as_secs() as usize;
            ack.record(second, micros);
            if latencies.len() <= index {
                latencies.resize(index + 1, None);
            }
            latencies[index] = Some(micros.min(u64::from(u32::MAX)) as u32);
        }
        Ok(())
    };
    while Instant::now() < end {
        while in_flight.len() >= args.window {
            let done = in_flight.next().await.expect("in flight");
            settle(done, &mut ack, &mut ack_latencies, first_measured)?;
        }
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64(seq as f64 / rate);
            while Instant::now() < due {
                tokio::select! {
                    () = tokio::time::sleep_until(due.into()) => {}
                    Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                        settle(done, &mut ack, &mut ack_latencies, first_measured)?;
                    }
                }
            }
        }
        if cpu_before.is_none() && Instant::now() >= t0 {
            cpu_before = Some(target.cpu()?);
            first_measured = seq;
            t0_ns.get_or_init(now_ns);
            first_shared.store(seq, Ordering::Release);
        }
        let record = ProducerRecord::new(&topic)
            .key(format!("sku-{}", seq % 1000))
            .value(value(args.value_size, seq));
        let sent_at = Instant::now();
        let delivery = producer.enqueue(record).await?;
        let this = seq;
        in_flight.push(async move { delivery.await.map(|_| (this, sent_at)) });
        seq += 1;
    }
    while let Some(done) = in_flight.next().await {
        settle(done, &mut ack, &mut ack_latencies, first_measured)?;
    }
    let cpu = target.cpu()? - cpu_before.unwrap_or_default();
    let measured = seq.saturating_sub(first_measured) as usize;
    done.store(true, Ordering::Release);
    producer.close().await?;
    let (mut ack_stalls, _) = stalls(&ack_latencies);
    if ack_latencies.len() < measured {
        ack_stalls += 1;
    }
    let mut e2e = Series::new(secs)?;
    let (mut e2e_stalls, mut missing) = (0, 0);
    for reader in readers {
        let received = reader.await??;
        e2e.merge(&received.e2e)?;
        let (episodes, lost) =
            stalls(&received.latencies[..measured.min(received.latencies.len())]);
        e2e_stalls += episodes;
        missing += lost;
    }
    let stages = stages(target).await?;
    client.delete_topic(&topic).await?;
    Ok(Point {
        name: name.to_owned(),
        offered: rate,
        achieved: measured as f64 / secs,
        measured,
        ack,
        e2e,
        ack_stalls,
        e2e_stalls,
        missing,
        cpu_us_per_record: cpu * 1e6 / measured.max(1) as f64,
        stages,
    })
}

/// Labels a sample must carry.
type Labels<'a> = &'a [(&'a str, &'a str)];

/// The brokers' stage quantiles (the exporter's rolling window: about the last minute) and
/// counters; quantiles are the worst broker's, counters summed.
async fn stages(target: &Target<'_>) -> anyhow::Result<String> {
    let mut scrapes = Vec::new();
    for broker in &target.brokers {
        scrapes.push(broker.scrape_metrics().await?);
    }
    let partition = [("group_kind", "partition")];
    let quantiles: [(&str, &str, Labels); 9] = [
        ("sequencer_wait", "mq_produce_sequencer_wait_seconds", &[]),
        ("propose_queue", "mq_raft_propose_queue_seconds", &partition),
        ("commit", "mq_raft_propose_commit_seconds", &partition),
        ("apply", "mq_raft_propose_apply_seconds", &partition),
        ("log_write", "mq_raft_log_write_seconds", &[]),
        ("log_flush", "mq_raft_log_flush_seconds", &[]),
        ("wal_fsync", "mq_wal_sync_seconds", &[]),
        ("append_rpc", "mq_raft_rpc_seconds", &[("rpc", "append")]),
        ("append_handle", "mq_raft_append_handle_seconds", &[]),
    ];
    let mut line = String::new();
    for (label, name, labels) in quantiles {
        let worst = |q: f64| {
            scrapes
                .iter()
                .filter_map(|scrape| scrape.quantile(name, labels, q))
                .fold(f64::NAN, f64::max)
                * 1000.0
        };
        line.push_str(&format!(
            "{label}_p50_ms={:.2} {label}_p99_ms={:.2} ",
            worst(0.5),
            worst(0.99)
        ));
    }
    let counters = [
        ("rocksdb_stall_micros", "mq_rocksdb_stall_micros_total"),
        ("rocksdb_flushes", "mq_rocksdb_flushes_total"),
        ("rocksdb_compactions", "mq_rocksdb_compactions_total"),
        ("term_changes", "mq_raft_term_changes_total"),
        ("leader_changes", "mq_raft_leader_changes_total"),
    ];
    for (label, name) in counters {
        let total: f64 = scrapes.iter().map(|scrape| scrape.sum(name, &[])).sum();
        line.push_str(&format!("{label}={total:.0} "));
    }
    let busy: f64 = scrapes
        .iter()
        .map(|scrape| scrape.sum("mq_runtime_workers_busy", &[]))
        .sum();
    line.push_str(&format!("runtime_workers_busy={busy:.2}"));
    Ok(line)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn report(point: &Point) -> anyhow::Result<()> {
    let (ack, e2e) = (point.ack.total()?, point.e2e.total()?);
    println!(
        "point={} offered={:.0} achieved={:.0} records={} ack_p50_ms={:.2} ack_p99_ms={:.2} ack_p999_ms={:.2} ack_max_ms={:.2} e2e_p50_ms={:.2} e2e_p99_ms={:.2} e2e_p999_ms={:.2} e2e_max_ms={:.2} ack_stalls_50ms={} e2e_stalls_50ms={} missing={} broker_cpu_us_per_record={:.1}",
        point.name,
        point.offered,
        point.achieved,
        point.measured,
        ms(ack.value_at_quantile(0.5)),
        ms(ack.value_at_quantile(0.99)),
        ms(ack.value_at_quantile(0.999)),
        ms(ack.max()),
        ms(e2e.value_at_quantile(0.5)),
        ms(e2e.value_at_quantile(0.99)),
        ms(e2e.value_at_quantile(0.999)),
        ms(e2e.max()),
        point.ack_stalls,
        point.e2e_stalls,
        point.missing,
        point.cpu_us_per_record,
    );
    println!("stages point={} {}", point.name, point.stages);
    Ok(())
}

/// Saturated, then paced at `--rate` and at half the maximum.
async fn setup(args: &Args, target: &Target<'_>, name: &str) -> anyhow::Result<Vec<Point>> {
    let client = Client::new(ClientConfig::new(target.servers.clone()))?;
    let max = point(
        args,
        target,
        &client,
        &format!("{name}-max"),
        0.0,
        2.0,
        args.max_secs,
    )
    .await?;
    report(&max)?;
    let mut points = Vec::new();
    for (label, rate) in [
        (format!("{name}-{:.0}", args.rate), args.rate),
        (format!("{name}-half-max"), (max.achieved / 2.0).round()),
    ] {
        let paced = point(
            args,
            target,
            &client,
            &label,
            rate,
            args.warmup_secs,
            args.secs,
        )
        .await?;
        report(&paced)?;
        points.push(paced);
    }
    Ok(points)
}

fn write_csv(points: &[Point], path: &Path) -> anyhow::Result<()> {
    let mut csv = String::from(
        "point,second,records,ack_p50_ms,ack_p99_ms,ack_max_ms,e2e_p50_ms,e2e_p99_ms,e2e_max_ms\n",
    );
    for point in points {
        for (second, (ack, e2e)) in point.ack.0.iter().zip(&point.e2e.0).enumerate() {
            if ack.is_empty() {
                continue;
            }
            csv.push_str(&format!(
                "{},{second},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3}\n",
                point.name,
                ack.len(),
                ms(ack.value_at_quantile(0.5)),
                ms(ack.value_at_quantile(0.99)),
                ms(ack.max()),
                ms(e2e.value_at_quantile(0.5)),
                ms(e2e.value_at_quantile(0.99)),
                ms(e2e.max()),
            ));
        }
    }
    std::fs::write(path, csv)?;
    Ok(())
}

/// One panel per point: end-to-end p50, p99 and max per second, log scale, with the 50 ms
/// stall line.
fn draw(points: &[Point], path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1200, 260 * points.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    for (panel, point) in root.split_evenly((points.len(), 1)).iter().zip(points) {
        let seconds: Vec<(f64, [f64; 3])> = point
            .e2e
            .0
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(s, h)| {
                let q = |q: f64| ms(h.value_at_quantile(q)).max(0.1);
                (s as f64, [q(0.5), q(0.99), ms(h.max()).max(0.1)])
            })
            .collect();
        let top = seconds.iter().map(|(_, v)| v[2]).fold(100.0, f64::max) * 1.5;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{}: end-to-end latency per second (ms)", point.name),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(48)
            .build_cartesian_2d(
                0f64..(seconds.len().max(1) as f64),
                (0.1f64..top).log_scale(),
            )?;
        chart.configure_mesh().x_desc("second").draw()?;
        for (i, (label, color)) in [("p50", BLUE), ("p99", GREEN), ("max", RED)]
            .into_iter()
            .enumerate()
        {
            chart
                .draw_series(LineSeries::new(
                    seconds.iter().map(|(s, v)| (*s, v[i])),
                    color,
                ))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        let stall = ms(STALL.as_micros() as u64);
        chart
            .draw_series(LineSeries::new(
                [(0.0, stall), (seconds.len() as f64, stall)],
                BLACK.mix(0.4),
            ))?
            .label("50 ms")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.4)));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// NATS JetStream R3, sync always, paced at `--rate`, through the peers bench: its result
/// line's keys.
fn nats(args: &Args, out: &Path) -> anyhow::Result<Option<BTreeMap<String, f64>>> {
    let script = args.peers_dir.join("peers-bench.sh");
    if !script.is_file() {
        println!("nats: skipped ({} not found)", script.display());
        return Ok(None);
    }
    nix::unistd::sync();
    let peers_out = out.join("peers");
    let status = std::process::Command::new(&script)
        .arg("nats3")
        .env("SECS", format!("{}", args.secs.round()))
        .env("REPS", "0")
        .env("SIZES", args.value_size.to_string())
        .env("LAT_RATE", format!("{}", args.rate.round()))
        .env("OUT", &peers_out)
        .env_remove("CARGO_TARGET_DIR")
        .status()?;
    if !status.success() {
        println!(
            "nats: peers-bench.sh nats3 failed ({status}); install it with `peers-bench.sh install build`"
        );
        return Ok(None);
    }
    let results = std::fs::read_to_string(peers_out.join("nats-js-r3-sync_always.txt"))?;
    let line = results
        .lines()
        .find(|line| line.contains("mode=latency"))
        .context("no paced run in the NATS results")?;
    println!("nats-js-r3-sync_always {line}");
    Ok(Some(
        line.split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .filter_map(|(key, value)| Some((key.to_owned(), value.parse().ok()?)))
            .collect(),
    ))
}

fn ratios(points: &[Point], nats: &BTreeMap<String, f64>, rate: f64) -> anyhow::Result<()> {
    let Some(rf3) = points.iter().find(|p| p.name == format!("rf3-{rate:.0}")) else {
        return Ok(());
    };
    let (ack, e2e) = (rf3.ack.total()?, rf3.e2e.total()?);
    let ratio = |ours_micros: u64, key: &str| {
        nats.get(key)
            .map_or(f64::NAN, |theirs| ours_micros as f64 / theirs)
    };
    println!(
        "ratio rf3-{rate:.0}/nats-r3-always (below 1 = we are faster): ack_p50={:.2} ack_p99={:.2} ack_p999={:.2} ack_max={:.2} e2e_p50={:.2} e2e_p99={:.2} e2e_p999={:.2}",
        ratio(ack.value_at_quantile(0.5), "ack_p50_us"),
        ratio(ack.value_at_quantile(0.99), "ack_p99_us"),
        ratio(ack.value_at_quantile(0.999), "ack_p999_us"),
        ratio(ack.max(), "ack_max_us"),
        ratio(e2e.value_at_quantile(0.5), "e2e_p50_us"),
        ratio(e2e.value_at_quantile(0.99), "e2e_p99_us"),
        ratio(e2e.value_at_quantile(0.999), "e2e_p999_us"),
    );
    Ok(())
}

/// The latency goals, met or not.
fn goals(points: &[Point], rate: f64) -> anyhow::Result<()> {
    let find = |name: String| points.iter().find(|p| p.name == name);
    let check = |label: &str, figure_ms: f64, goal_ms: f64| {
        println!(
            "goal {label} <= {goal_ms} ms: {figure_ms:.2} ms {}",
            if figure_ms <= goal_ms {
                "MET"
            } else {
                "NOT MET"
            }
        );
    };
    if let Some(p) = find(format!("rf3-{rate:.0}")) {
        let (ack, e2e) = (p.ack.total()?, p.e2e.total()?);
        check("rf3 paced ack p99", ms(ack.value_at_quantile(0.99)), 5.0);
        check("rf3 paced e2e p99", ms(e2e.value_at_quantile(0.99)), 10.0);
        check(
            "rf3 paced max (ack and e2e)",
            ms(ack.max().max(e2e.max())),
            50.0,
        );
    }
    if let Some(p) = find("rf3-half-max".to_owned()) {
        check(
            "rf3 half-max e2e p99",
            ms(p.e2e.total()?.value_at_quantile(0.99)),
            25.0,
        );
    }
    if let Some(p) = find(format!("broadcast-{rate:.0}")) {
        check(
            "broadcast fan-out p99",
            ms(p.e2e.total()?.value_at_quantile(0.99)),
            10.0,
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wanted = |setup: &str| args.only.is_empty() || args.only.iter().any(|s| s == setup);
    let out = match &args.out {
        Some(out) => out.clone(),
        None => std::env::temp_dir().join(format!("mq-latency-bench-{}", now_ns() / 1_000_000_000)),
    };
    std::fs::create_dir_all(&out)?;
    let mut points = Vec::new();
    if wanted("standalone") {
        let mut node = Node::new(
            "latency-standalone",
            "mq-broker",
            mq_tests::reserve_port(),
            std::iter::once("--standalone".to_owned())
                .chain(
                    args.broker_set
                        .iter()
                        .flat_map(|setting| ["--set".to_owned(), setting.clone()]),
                )
                .collect(),
        )?
        .with_metrics();
        node.spawn()?;
        node.wait_ready().await?;
        let target = Target {
            servers: vec![node.address()],
            brokers: vec![&node],
            replication_factor: 1,
            partitions: 1,
            consumers: 1,
            broadcast: false,
        };
        points.extend(setup(&args, &target, "standalone").await?);
    }
    if wanted("rf3") || wanted("broadcast") {
        let spec = args
            .broker_set
            .iter()
            .fold(ClusterSpec::new(3, 3).with_metrics(), |spec, setting| {
                spec.broker_set(setting)
            });
        let cluster = Cluster::start(spec).await?;
        let target = |partitions, consumers, broadcast| Target {
            servers: cluster.broker_addresses(),
            brokers: cluster.brokers.iter().collect(),
            replication_factor: 3,
            partitions,
            consumers,
            broadcast,
        };
        if wanted("rf3") {
            points.extend(setup(&args, &target(1, 1, false), "rf3").await?);
        }
        if wanted("broadcast") {
            points.extend(setup(&args, &target(3, 3, true), "broadcast").await?);
        }
    }
    write_csv(&points, &out.join("series.csv"))?;
    draw(&points, &out.join("series.svg"))?;
    println!(
        "per-second series: {} and {}",
        out.join("series.csv").display(),
        out.join("series.svg").display()
    );
    goals(&points, args.rate)?;
    if !args.no_peers
        && let Some(nats) = nats(&args, &out)?
    {
        ratios(&points, &nats, args.rate)?;
    }
    Ok(())
}

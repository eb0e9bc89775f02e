//! `mq-bench`: throughput and latency of one partition on a standalone node, with fsync on.
//!
//! For each batch size: one producer sends `--messages` records of `--value-size` bytes to one
//! partition, `--in-flight` batches at a time, each acknowledged only once fsynced; then one
//! consumer reads the backlog back. Prints records/s, MB/s, produce latency percentiles (per
//! batch), broker CPU (user+sys from /proc) per message, and WAL fsyncs per second (from the
//! broker's Prometheus metrics). By default it starts its own `mq-broker --standalone` in a
//! temporary directory; `--server`, `--broker-pid` and `--metrics` point it at a running one.

// A command-line tool: its report is its standard output.
#![allow(clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mq_tests::cpu_seconds;

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use mq_client::{Client, ClientConfig, FetchOptions, NewTopic};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Parser)]
#[command(about = "Throughput and latency of one partition with fsync on")]
struct Args {
    /// A running node to measure instead of starting one.
    #[arg(long)]
    server: Option<String>,
    /// PID of that node, for broker CPU per message.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// host:port of that node's Prometheus endpoint, for fsyncs per second.
    #[arg(long)]
    metrics: Option<String>,
    /// Records per run.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Records per produce batch; one run per value.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    batch: Vec<usize>,
    /// Produce batches in flight at once.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Print one JSON object per run instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct RunReport {
    batch: usize,
    in_flight: usize,
    value_size: usize,
    messages: u64,
    produce_records_per_sec: f64,
    produce_mb_per_sec: f64,
    produce_latency_ms_p50: f64,
    produce_latency_ms_p99: f64,
    produce_latency_ms_p999: f64,
    produce_latency_ms_max: f64,
    produce_broker_cpu_us_per_msg: Option<f64>,
    fsyncs_per_sec: Option<f64>,
    writes_per_fsync: Option<f64>,
    consume_records_per_sec: f64,
    consume_mb_per_sec: f64,
    consume_broker_cpu_us_per_msg: Option<f64>,
}

/// A broker this tool started; killed when dropped.
struct OwnBroker {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A counter from the broker's Prometheus endpoint.
async fn scrape(metrics: &str, name: &str) -> anyhow::Result<f64> {
    let mut stream = tokio::net::TcpStream::connect(metrics).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0))
}

async fn start_broker() -> anyhow::Result<(OwnBroker, String, String)> {
    let dir = tempfile::Builder::new().prefix("mq-bench-").tempdir()?;
    let (port, metrics_port) = (mq_tests::reserve_port(), mq_tests::reserve_port());
    let child = Command::new(mq_tests::binary("mq-broker"))
        .args(["--standalone", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--set",
            &format!("server.metrics_listen=\"127.0.0.1:{metrics_port}\""),
        ])
        .env("MQ_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start mq-broker")?;
    let broker = OwnBroker { child, _dir: dir };
    let server = format!("127.0.0.1:{port}");
    mq_tests::wait_serving(&server, Duration::from_secs(30)).await?;
    Ok((broker, server, format!("127.0.0.1:{metrics_port}")))
}

async fn run(
    args: &Args,
    client: &Client,
    pid: Option<u32>,
    metrics: Option<&str>,
    batch: usize,
) -> anyhow::Result<RunReport> {
    let topic = format!("bench-{batch}-{}", std::process::id());
    client
        .create_topic(&topic, NewTopic::default().partitions(1))
        .await?;
    let records = mq_tests::workload::incompressible_records(batch, args.value_size);
    let batches = args.messages.div_ceil(batch as u64);
    let total = batches * batch as u64;
    let bytes = total as f64 * (args.value_size + 10) as f64;

    let cpu_before = pid.map(cpu_seconds).transpose()?;
    let syncs_before = match metrics {
        Some(m) => Some(scrape(m, "mq_wal_syncs_total").await?),
        None => None,
    };
    let mut latencies = Histogram::<u64>::new(3)?;
    let started = Instant::now();
    let mut sends = futures::stream::iter(0..batches)
        .map(|_| {
            let records = records.clone();
            let topic = topic.clone();
            async move {
                let sent = Instant::now();
                client
                    .produce(&topic, 0, records)
                    .await
                    .map(|_| sent.elapsed())
            }
        })
        .buffer_unordered(args.in_flight);
    while let Some(latency) = sends.next().await {
        latencies.record(latency?.as_micros() as u64)?;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let produce_cpu = match (pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_seconds(pid)? - before),
        _ => None,
    };
    let syncs = match (metrics, syncs_before) {
        (Some(m), Some(before)) => Some(scrape(m, "mq_wal_syncs_total").await? - before),
        _ => None,
    };

    let cpu_before = pid.map(cpu_seconds).transpose()?;
    let started = Instant::now();
    let mut offset = 0;
    while offset < total {
        let fetched = client
            .fetch(&topic, 0, offset, FetchOptions::default())
            .await?;
        if fetched.records.is_empty() {
            bail!(
                "fetch at {offset} returned nothing below the high watermark {}",
                fetched.high_watermark
            );
        }
        offset = fetched.next_offset;
    }
    let consume_secs = started.elapsed().as_secs_f64();
    let consume_cpu = match (pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_seconds(pid)? - before),
        _ => None,
    };
    client.delete_topic(&topic).await?;

    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    Ok(RunReport {
        batch,
        in_flight: args.in_flight,
        value_size: args.value_size,
        messages: total,
        produce_records_per_sec: total as f64 / produce_secs,
        produce_mb_per_sec: bytes / produce_secs / 1e6,
        produce_latency_ms_p50: ms(0.5),
        produce_latency_ms_p99: ms(0.99),
        produce_latency_ms_p999: ms(0.999),
        produce_latency_ms_max: latencies.max() as f64 / 1000.0,
        produce_broker_cpu_us_per_msg: produce_cpu.map(|cpu| cpu * 1e6 / total as f64),
        fsyncs_per_sec: syncs.map(|s| s / produce_secs),
        writes_per_fsync: syncs.map(|s| batches as f64 / s.max(1.0)),
        consume_records_per_sec: total as f64 / consume_secs,
        consume_mb_per_sec: bytes / consume_secs / 1e6,
        consume_broker_cpu_us_per_msg: consume_cpu.map(|cpu| cpu * 1e6 / total as f64),
    })
}

fn print_text(report: &RunReport) {
    let opt = |v: Option<f64>, unit: &str| v.map_or("n/a".to_owned(), |v| format!("{v:.2}{unit}"));
    println!(
        "batch {:>5} x {} in flight: {} records sent, {:.0} records/sec ({:.1} MB/sec), \
         latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; \
         broker CPU {} per msg; {} fsyncs/sec ({} batches per fsync)",
        report.batch,
        report.in_flight,
        report.messages,
        report.produce_records_per_sec,
        report.produce_mb_per_sec,
        report.produce_latency_ms_p50,
        report.produce_latency_ms_p99,
        report.produce_latency_ms_p999,
        report.produce_latency_ms_max,
        opt(report.produce_broker_cpu_us_per_msg, " us"),
        opt(report.fsyncs_per_sec, ""),
        opt(report.writes_per_fsync, ""),
    );
    println!(
        "                      consumed {} records, {:.0} records/sec ({:.1} MB/sec); broker CPU {} per msg",
        report.messages,
        report.consume_records_per_sec,
        report.consume_mb_per_sec,
        opt(report.consume_broker_cpu_us_per_msg, " us"),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (own, server, pid, metrics) = match &args.server {
        Some(server) => (None, server.clone(), args.broker_pid, args.metrics.clone()),
        None => {
            let (broker, server, metrics) = start_broker().await?;
            let pid = broker.child.id();
            (Some(broker), server, Some(pid), Some(metrics))
        }
    };
    let client = Client::new(ClientConfig::new([server]))?;
    for &batch in &args.batch {
        let report = run(&args, &client, pid, metrics.as_deref(), batch).await?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_text(&report);
        }
    }
    drop(own);
    Ok(())
}

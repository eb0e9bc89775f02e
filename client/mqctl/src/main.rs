//! `mqctl`: the admin and debugging CLI. Noun-verb commands like `rpk` and `kafka-topics`;
//! `--output json` where it prints data; errors on stderr and a non-zero exit code on failure.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use mq_client::{BrokerStatus, Client, ClientConfig, ConsumedRecord, NewTopic, Record, StartAt};
use mq_consumer::{Consumer, ConsumerConfig, GroupConfig};

mod group;
mod queue;

#[derive(Debug, Parser)]
#[command(version, about = "Admin and debugging CLI for the message broker")]
struct Cli {
    /// Server address (host:port); any node of the cluster.
    #[arg(
        long,
        global = true,
        env = "MQ_SERVER",
        default_value = "127.0.0.1:7070"
    )]
    server: String,
    /// Output format of commands that print data.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Produce one message per line of standard input.
    Produce(ProduceArgs),
    /// Print messages of a topic, following new ones (as a member of a group with --group).
    Consume(ConsumeArgs),
    /// The cluster as a whole.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Brokers.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Queue subscriptions.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Dead letters of queue subscriptions.
    #[command(subcommand)]
    Dlq(queue::DlqCommand),
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Cluster-manager members and leader, brokers, under-replicated and offline partitions.
    Status,
    /// Move replicas so every live broker holds about as many (e.g. after adding brokers).
    Rebalance,
}

#[derive(Debug, Subcommand)]
enum BrokerCommand {
    /// List brokers with their state and load.
    List,
    /// Drain a broker: its replicas move to other brokers; stop it once it holds none.
    Decommission { id: u32 },
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p')]
        partitions: Option<u32>,
        #[arg(long, short = 'r')]
        replication_factor: Option<u32>,
        /// Topic config, KEY=VALUE (repeatable), e.g. retention.ms=86400000 or max.message.bytes=2097152.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show a topic's configs, partitions, leaders, replicas and offsets.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
}

#[derive(Debug, Args)]
struct ProduceArgs {
    topic: String,
    /// Key of every message (messages of one key go to one partition, in order).
    #[arg(long, short = 'k')]
    key: Option<String>,
    /// Partition to write to (default: by key, else round-robin per batch).
    #[arg(long, short = 'p')]
    partition: Option<u32>,
    /// Lines per batch.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
}

#[derive(Debug, Args)]
struct ConsumeArgs {
    topic: String,
    /// Only this partition (default: all).
    #[arg(long, short = 'p')]
    partition: Option<u32>,
    /// Start at the first stored message (default: only new messages).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, short = 'o', requires = "partition")]
    offset: Option<u64>,
    /// Stop after this many messages.
    #[arg(long, short = 'n')]
    num: Option<u64>,
    /// Consume as a member of this consumer group: its share of the partitions, from the
    /// group's committed offsets (the beginning when none), committing as it goes.
    #[arg(long, short = 'g', conflicts_with_all = ["partition", "offset", "from_beginning"])]
    group: Option<String>,
    /// Text format: %v value, %k key, %o offset, %p partition, %t timestamp (ms), %h headers,
    /// \t tab, %% a percent sign.
    #[arg(long, short = 'f', default_value = "%v")]
    format: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::new(ClientConfig::new([cli.server.clone()]))?;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Topic(command) => topic(&client, command, cli.output, &mut out).await?,
        Command::Produce(args) => return produce(&client, args, cli.output, &mut out).await,
        Command::Consume(args) => consume(&client, args, cli.output, &mut out).await?,
        Command::Cluster(command) => cluster(&client, command, cli.output, &mut out).await?,
        Command::Broker(command) => broker(&client, command, cli.output, &mut out).await?,
        Command::Group(command) => group::run(&client, command, cli.output, &mut out).await?,
        Command::Queue(command) => queue::run(&client, command, cli.output, &mut out).await?,
        Command::Dlq(command) => queue::run_dlq(&client, command, &mut out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

fn write_brokers(out: &mut impl Write, brokers: &[BrokerStatus]) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:>6} {:<22} {:<8} {:>8} {:>7}  RACK",
        "ID", "ADDRESS", "STATE", "REPLICAS", "LEADERS"
    )?;
    for b in brokers {
        let state = match (b.broker.alive, b.draining) {
            (true, false) => "alive",
            (true, true) => "draining",
            (false, _) => "dead",
        };
        writeln!(
            out,
            "{:>6} {:<22} {:<8} {:>8} {:>7}  {}",
            b.broker.broker_id,
            b.broker.address,
            state,
            b.replicas,
            b.leaders,
            b.broker.rack.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

async fn cluster(
    client: &Client,
    command: ClusterCommand,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status => {
            let status = client.cluster_status().await?;
            if output == Output::Json {
                return print_json(out, &status);
            }
            writeln!(out, "CLUSTER MANAGER")?;
            for m in &status.managers {
                let role = if status.manager_leader_id == Some(m.node_id) {
                    "leader"
                } else if m.voter {
                    "voter"
                } else {
                    "learner"
                };
                writeln!(out, "  {:>4} {:<22} {role}", m.node_id, m.address)?;
            }
            if status.manager_leader_id.is_none() {
                writeln!(out, "  (no leader)")?;
            }
            writeln!(out, "\nBROKERS")?;
            write_brokers(out, &status.brokers)?;
            writeln!(
                out,
                "\nTOPICS {}  PARTITIONS {}  UNDER-REPLICATED {}  OFFLINE {}",
                status.topics,
                status.partitions,
                status.under_replicated.len(),
                status.offline.len()
            )?;
            for (topic, partition) in &status.under_replicated {
                writeln!(out, "  under-replicated {topic}/{partition}")?;
            }
            for (topic, partition) in &status.offline {
                writeln!(out, "  offline          {topic}/{partition}")?;
            }
        }
        ClusterCommand::Rebalance => {
            let moves = client.rebalance().await?;
            match output {
                Output::Json => print_json(out, &moves)?,
                Output::Text if moves.is_empty() => writeln!(out, "already balanced")?,
                Output::Text => {
                    for m in &moves {
                        writeln!(
                            out,
                            "moving {}/{} from broker {} to broker {}",
                            m.topic, m.partition, m.from_broker_id, m.to_broker_id
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

async fn broker(
    client: &Client,
    command: BrokerCommand,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        BrokerCommand::List => {
            let brokers = client.list_brokers().await?;
            match output {
                Output::Json => print_json(out, &brokers)?,
                Output::Text => write_brokers(out, &brokers)?,
            }
        }
        BrokerCommand::Decommission { id } => {
            client.decommission_broker(id).await?;
            writeln!(
                out,
                "draining broker {id}; `mqctl broker list` shows its replicas moving away"
            )?;
        }
    }
    Ok(())
}

async fn topic(
    client: &Client,
    command: TopicCommand,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut topic = NewTopic {
                partitions,
                replication_factor,
                configs: BTreeMap::new(),
            };
            for config in configs {
                let (key, value) = config
                    .split_once('=')
                    .with_context(|| format!("--config {config}: expected KEY=VALUE"))?;
                topic = topic.config(key, value);
            }
            let created = client.create_topic(&name, topic).await?;
            match output {
                Output::Json => print_json(out, &created)?,
                Output::Text => writeln!(
                    out,
                    "created topic {} with {} partition(s), replication factor {}",
                    created.name,
                    created.partitions.len(),
                    created.replication_factor
                )?,
            }
        }
        TopicCommand::List => {
            let topics = client.list_topics().await?;
            match output {
                Output::Json => print_json(out, &topics)?,
                Output::Text => {
                    writeln!(out, "{:<40} {:>10} {:>8}", "NAME", "PARTITIONS", "REPLICAS")?;
                    for t in topics {
                        writeln!(
                            out,
                            "{:<40} {:>10} {:>8}",
                            t.name, t.partitions, t.replication_factor
                        )?;
                    }
                }
            }
        }
        TopicCommand::Describe { name } => {
            let topic = client.describe_topic(&name).await?;
            match output {
                Output::Json => print_json(out, &topic)?,
                Output::Text => {
                    writeln!(out, "NAME        {}", topic.name)?;
                    writeln!(out, "ID          {}", topic.topic_id)?;
                    writeln!(out, "PARTITIONS  {}", topic.partitions.len())?;
                    writeln!(out, "REPLICAS    {}", topic.replication_factor)?;
                    for (key, value) in &topic.configs {
                        writeln!(out, "CONFIG      {key}={value}")?;
                    }
                    writeln!(out)?;
                    writeln!(
                        out,
                        "{:>9} {:>7} {:>14} {:>14}  REPLICAS (broker:in-sync:lag)",
                        "PARTITION", "LEADER", "LOG-START", "HIGH-WATERMARK"
                    )?;
                    let show = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
                    for p in &topic.partitions {
                        let replicas: Vec<String> = p
                            .replicas
                            .iter()
                            .map(|r| {
                                format!(
                                    "{}:{}:{}",
                                    r.broker_id,
                                    if r.in_sync { "yes" } else { "no" },
                                    show(r.lag_entries)
                                )
                            })
                            .collect();
                        writeln!(
                            out,
                            "{:>9} {:>7} {:>14} {:>14}  {}",
                            p.partition,
                            p.leader_id.map_or("-".to_owned(), |l| l.to_string()),
                            show(p.log_start_offset),
                            show(p.high_watermark),
                            replicas.join(" ")
                        )?;
                    }
                }
            }
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            if output == Output::Text {
                writeln!(out, "deleted topic {name}")?;
            }
        }
    }
    Ok(())
}

async fn produce(
    client: &Client,
    args: ProduceArgs,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let partitions = client.partition_count(&args.topic).await?;
    let fixed = match (args.partition, &args.key) {
        (Some(p), _) => Some(p),
        (None, Some(key)) => Some(
            client
                .partition_for_key(&args.topic, key.as_bytes())
                .await?,
        ),
        (None, None) => None,
    };
    let (mut acknowledged, mut failed) = (0u64, 0u64);
    let mut round_robin = 0u32;
    let mut lines = std::io::stdin().lock().lines();
    loop {
        let mut batch = Vec::with_capacity(args.batch_size);
        for line in lines.by_ref().take(args.batch_size) {
            let line = line.context("reading standard input")?;
            let value = bytes::Bytes::from(line);
            batch.push(match &args.key {
                Some(key) => Record::keyed(key.clone(), value),
                None => Record::unkeyed(value),
            });
        }
        if batch.is_empty() {
            break;
        }
        let partition = fixed.unwrap_or_else(|| {
            round_robin = round_robin.wrapping_add(1);
            round_robin % partitions.max(1)
        });
        let count = batch.len() as u64;
        match client.produce(&args.topic, partition, batch).await {
            Ok(_) => acknowledged += count,
            Err(err) => {
                eprintln!("error: {count} message(s) to partition {partition} failed: {err}");
                failed += count;
            }
        }
    }
    match output {
        Output::Json => print_json(
            out,
            &serde_json::json!({ "acknowledged": acknowledged, "failed": failed }),
        )?,
        Output::Text => writeln!(
            out,
            "{acknowledged} message(s) acknowledged, {failed} failed"
        )?,
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn consume(
    client: &Client,
    args: ConsumeArgs,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if let Some(group) = &args.group {
        return consume_group(client, group, &args, output, out).await;
    }
    let partitions: Vec<u32> = match args.partition {
        Some(p) => vec![p],
        None => (0..client.partition_count(&args.topic).await?).collect(),
    };
    let start = match (args.offset, args.from_beginning) {
        (Some(offset), _) => StartAt::Offset(offset),
        (None, true) => StartAt::Earliest,
        (None, false) => StartAt::Latest,
    };
    let mut streams = Vec::new();
    for partition in partitions {
        let subscription = client.subscribe(&args.topic, partition, start).await?;
        streams.push(
            subscription
                .map(move |item| item.map(|record| (partition, record)))
                .boxed(),
        );
    }
    let mut merged = futures::stream::select_all(streams);
    let mut printed = 0u64;
    while args.num.is_none_or(|n| printed < n) {
        let next = tokio::select! {
            next = merged.next() => next,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(item) = next else { break };
        let (partition, record) = item?;
        match output {
            Output::Json => {
                serde_json::to_writer(&mut *out, &record_json(partition, &record))?;
                writeln!(out)?;
            }
            Output::Text => writeln!(out, "{}", format_record(&args.format, partition, &record))?,
        }
        out.flush()?;
        printed += 1;
    }
    Ok(())
}

async fn consume_group(
    client: &Client,
    group: &str,
    args: &ConsumeArgs,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let config = ConsumerConfig {
        client: client.config().clone(),
        ..ConsumerConfig::new(client.config().servers.clone())
    };
    let mut consumer = Consumer::new(config)?;
    consumer
        .subscribe(GroupConfig::new(group, [args.topic.clone()]))
        .await?;
    let mut printed = 0u64;
    while args.num.is_none_or(|n| printed < n) {
        let next = tokio::select! {
            next = consumer.next() => next,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(item) = next else { break };
        let item = item?;
        let record = ConsumedRecord {
            offset: item.offset,
            record: item.record,
        };
        match output {
            Output::Json => {
                serde_json::to_writer(&mut *out, &record_json(item.partition, &record))?;
                writeln!(out)?;
            }
            Output::Text => writeln!(
                out,
                "{}",
                format_record(&args.format, item.partition, &record)
            )?,
        }
        out.flush()?;
        printed += 1;
    }
    // Everything printed counts as processed: commit it, then leave.
    consumer.commit().await?;
    consumer.close().await?;
    Ok(())
}

fn text(bytes: Option<&bytes::Bytes>) -> String {
    bytes.map_or(String::new(), |b| String::from_utf8_lossy(b).into_owned())
}

pub(crate) fn record_json(partition: u32, consumed: &ConsumedRecord) -> serde_json::Value {
    let record = &consumed.record;
    let headers: BTreeMap<&str, String> = record
        .headers
        .iter()
        .map(|h| {
            (
                h.key.as_str(),
                String::from_utf8_lossy(&h.value).into_owned(),
            )
        })
        .collect();
    serde_json::json!({
        "partition": partition,
        "offset": consumed.offset,
        "timestamp_ms": record.timestamp_ms,
        "key": record.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "value": record.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
        "headers": headers,
    })
}

/// Renders `format` for one record (see `--format`).
fn format_record(format: &str, partition: u32, consumed: &ConsumedRecord) -> String {
    let record = &consumed.record;
    let mut rendered = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('%', Some(spec @ ('v' | 'k' | 'o' | 'p' | 't' | 'h' | '%'))) => {
                chars.next();
                match spec {
                    'v' => rendered.push_str(&text(record.value.as_ref())),
                    'k' => rendered.push_str(&text(record.key.as_ref())),
                    'o' => rendered.push_str(&consumed.offset.to_string()),
                    'p' => rendered.push_str(&partition.to_string()),
                    't' => rendered.push_str(&record.timestamp_ms.to_string()),
                    'h' => {
                        let headers: Vec<String> = record
                            .headers
                            .iter()
                            .map(|h| format!("{}={}", h.key, String::from_utf8_lossy(&h.value)))
                            .collect();
                        rendered.push_str(&headers.join(","));
                    }
                    _ => rendered.push('%'),
                }
            }
            ('\\', Some('t')) => {
                chars.next();
                rendered.push('\t');
            }
            (c, _) => rendered.push(c),
        }
    }
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_every_placeholder() {
        let consumed = ConsumedRecord {
            offset: 42,
            record: Record::keyed("k1", "v1")
                .with_header("h", "x")
                .with_timestamp(7),
        };
        assert_eq!(
            format_record("%p:%o %k=%v @%t [%h] 100%%", 3, &consumed),
            "3:42 k1=v1 @7 [h=x] 100%"
        );
        assert_eq!(format_record("%k\\t%v", 0, &consumed), "k1\tv1");
        assert_eq!(format_record("%x", 0, &consumed), "%x");
    }
}

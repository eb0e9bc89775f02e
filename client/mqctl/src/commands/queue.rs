//! `mqctl queue ...` (create, list, describe, delete queue subscriptions) and `mqctl dlq ...`
//! (inspect a queue's dead-letter topic, redrive its messages back to where they came from).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use mq_client::{
    Client, ErrorCode, FetchOptions, NewQueue, OffsetCommit, OffsetSpec, QueueConfig,
    QueueDescription, QueueStart, Record, TopicPartition,
};
use serde_json::json;

use super::consume::record_json;
use super::print_json;
use crate::args::{DlqCommand, Output, QueueCommand};

/// The header prefix the consumer manager puts on dead letters.
const DLQ_HEADER_PREFIX: &str = "mq.dlq.";

pub async fn run(
    client: &Client,
    command: QueueCommand,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        QueueCommand::Create {
            name,
            topic,
            ack_deadline_ms,
            max_deliveries,
            dead_letter_topic,
            key_ordered,
            from_earliest,
        } => {
            let queue = NewQueue {
                topic,
                ack_deadline: (ack_deadline_ms > 0)
                    .then(|| Duration::from_millis(u64::from(ack_deadline_ms))),
                max_deliveries: (max_deliveries > 0).then_some(max_deliveries),
                dead_letter_topic,
                key_ordered,
                start: match from_earliest {
                    true => QueueStart::Earliest,
                    false => QueueStart::Latest,
                },
            };
            create(client, &name, queue, output, out).await
        }
        QueueCommand::List => list(client, output, out).await,
        QueueCommand::Describe { name } => {
            let queue = client.describe_queue(&name).await?;
            match output {
                Output::Json => print_json(out, &description_json(&queue)),
                Output::Text => write_description(out, &queue),
            }
        }
        QueueCommand::Delete { name } => {
            client.delete_queue(&name).await?;
            writeln!(out, "deleted queue {name}")?;
            Ok(())
        }
    }
}

fn config_json(config: &QueueConfig) -> serde_json::Value {
    json!({
        "topic": config.topic,
        "ack_deadline_ms": config.ack_deadline.as_millis() as u64,
        "max_deliveries": config.max_deliveries,
        "dead_letter_topic": config.dead_letter_topic,
        "key_ordered": config.key_ordered,
    })
}

async fn create(
    client: &Client,
    name: &str,
    queue: NewQueue,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let config = client.create_queue(name, queue).await?;
    match output {
        Output::Json => print_json(out, &json!({"queue": name, "config": config_json(&config)}))?,
        Output::Text => writeln!(
            out,
            "created queue {name} on {} (dead letters to {})",
            config.topic, config.dead_letter_topic
        )?,
    }
    Ok(())
}

async fn list(client: &Client, output: Output, out: &mut impl Write) -> anyhow::Result<()> {
    let queues = client.list_queues().await?;
    match output {
        Output::Json => print_json(
            out,
            &queues
                .iter()
                .map(|q| json!({"queue": q.name, "config": config_json(&q.config)}))
                .collect::<Vec<_>>(),
        )?,
        Output::Text => {
            writeln!(out, "{:<24} {:<24} KEY-ORDERED", "QUEUE", "TOPIC")?;
            for queue in &queues {
                let config = &queue.config;
                writeln!(
                    out,
                    "{:<24} {:<24} {}",
                    queue.name, config.topic, config.key_ordered
                )?;
            }
        }
    }
    Ok(())
}

fn description_json(queue: &QueueDescription) -> serde_json::Value {
    json!({
        "queue": queue.name,
        "config": config_json(&queue.config),
        "partitions": queue.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "settled_floor": p.settled_floor,
            "settled_above_floor": p.settled_above_floor,
            "high_watermark": p.high_watermark,
            "backlog": p.high_watermark.map(|hw| hw.saturating_sub(p.settled_floor + p.settled_above_floor)),
            "in_flight": p.in_flight,
        })).collect::<Vec<_>>(),
    })
}

fn write_description(out: &mut impl Write, queue: &QueueDescription) -> anyhow::Result<()> {
    let config = &queue.config;
    writeln!(
        out,
        "queue {} on {} (ack deadline {} ms, {} deliveries, dead letters to {}{})",
        queue.name,
        config.topic,
        config.ack_deadline.as_millis(),
        config.max_deliveries,
        config.dead_letter_topic,
        if config.key_ordered {
            ", key-ordered"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "{:<10} {:>14} {:>14} {:>10}",
        "PARTITION", "SETTLED-FLOOR", "HIGH-WATERMARK", "IN-FLIGHT"
    )?;
    for p in &queue.partitions {
        let hw = p.high_watermark.map_or("-".to_owned(), |hw| hw.to_string());
        writeln!(
            out,
            "{:<10} {:>14} {:>14} {:>10}",
            p.partition, p.settled_floor, hw, p.in_flight
        )?;
    }
    Ok(())
}

pub async fn run_dlq(
    client: &Client,
    command: DlqCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        DlqCommand::Inspect { queue, limit } => inspect(client, &queue, limit, out).await,
        DlqCommand::Redrive { queue } => redrive(client, &queue, out).await,
    }
}

/// The topic a queue's dead letters go to, and the queue's topic.
async fn dead_letter_topic(client: &Client, queue: &str) -> anyhow::Result<(String, String)> {
    let config = client.describe_queue(queue).await?.config;
    Ok((config.dead_letter_topic, config.topic))
}

/// Records of partition 0 of `topic` from `from` up to the high watermark now.
async fn read_all(
    client: &Client,
    topic: &str,
    from: u64,
) -> anyhow::Result<(Vec<(u64, Record)>, u64)> {
    let mut records = Vec::new();
    let mut next = from;
    loop {
        let batch = client
            .fetch(topic, 0, next, FetchOptions::default())
            .await?;
        records.extend(batch.records.into_iter().map(|r| (r.offset, r.record)));
        next = batch.next_offset;
        if next >= batch.high_watermark {
            return Ok((records, next));
        }
    }
}

async fn inspect(
    client: &Client,
    queue: &str,
    limit: Option<usize>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (dlq, _) = dead_letter_topic(client, queue).await?;
    let start = client
        .list_offset(&dlq, 0, OffsetSpec::Earliest)
        .await?
        .offset;
    let (records, _) = read_all(client, &dlq, start).await?;
    for (offset, record) in records.into_iter().take(limit.unwrap_or(usize::MAX)) {
        let consumed = mq_client::ConsumedRecord { offset, record };
        writeln!(
            out,
            "{}",
            serde_json::to_string(&record_json(0, &consumed))?
        )?;
    }
    Ok(())
}

/// Produces the dead letters after where the last redrive stopped (an offset committed for a
/// tool group) back to where they came from, then commits where this one stopped.
async fn redrive(client: &Client, queue: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let (dlq, source) = dead_letter_topic(client, queue).await?;
    let group = format!("mqctl.redrive.{queue}");
    let committed = match client
        .fetch_offsets(&group, &[TopicPartition::new(dlq.clone(), 0)])
        .await
    {
        Ok(offsets) => offsets.first().map_or(0, |c| c.offset),
        Err(error) if error.code() == ErrorCode::GroupNotFound => 0,
        Err(error) => return Err(error.into()),
    };
    let start = client
        .list_offset(&dlq, 0, OffsetSpec::Earliest)
        .await?
        .offset
        .max(committed);
    let (records, end) = read_all(client, &dlq, start).await?;
    let count = records.len();
    for ((topic, partition), records) in by_origin(records, &source) {
        client.produce(&topic, partition, records).await?;
    }
    client
        .commit_offsets(OffsetCommit::new(group).offset(dlq.clone(), 0, end))
        .await?;
    writeln!(out, "redrove {count} messages from {dlq}")?;
    Ok(())
}

/// Dead letters by the partition they came from (`source` partition 0 when their headers do
/// not say), without the dead-letter headers.
fn by_origin(records: Vec<(u64, Record)>, source: &str) -> BTreeMap<(String, u32), Vec<Record>> {
    let mut by_target: BTreeMap<(String, u32), Vec<Record>> = BTreeMap::new();
    for (_, mut record) in records {
        let header = |key: &str| {
            record
                .headers
                .iter()
                .find(|h| h.key == key)
                .map(|h| String::from_utf8_lossy(&h.value).into_owned())
        };
        let topic = header("mq.dlq.topic").unwrap_or_else(|| source.to_owned());
        let partition = header("mq.dlq.partition")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        record
            .headers
            .retain(|h| !h.key.starts_with(DLQ_HEADER_PREFIX));
        by_target
            .entry((topic, partition))
            .or_default()
            .push(record);
    }
    by_target
}

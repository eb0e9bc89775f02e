//! `mqctl consume TOPIC`: print a topic's messages as they come, from its partitions or as a
//! member of a consumer group, in a `--format` or as JSON lines.

use std::collections::BTreeMap;
use std::io::Write;

use futures::StreamExt;
use mq_client::{Client, ConsumedRecord, StartAt};
use mq_consumer::{Consumer, ConsumerConfig, GroupConfig};

use crate::args::{ConsumeArgs, Output};

pub async fn run(
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
        print_record(out, output, &args.format, partition, &record)?;
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
        print_record(out, output, &args.format, item.partition, &record)?;
        printed += 1;
    }
    // Everything printed counts as processed: commit it, then leave.
    consumer.commit().await?;
    consumer.close().await?;
    Ok(())
}

/// One record as a JSON line or in `format`, flushed at once.
fn print_record(
    out: &mut impl Write,
    output: Output,
    format: &str,
    partition: u32,
    record: &ConsumedRecord,
) -> anyhow::Result<()> {
    match output {
        Output::Json => {
            serde_json::to_writer(&mut *out, &record_json(partition, record))?;
            writeln!(out)?;
        }
        Output::Text => writeln!(out, "{}", format_record(format, partition, record))?,
    }
    out.flush()?;
    Ok(())
}

fn text(bytes: Option<&bytes::Bytes>) -> String {
    bytes.map_or(String::new(), |b| String::from_utf8_lossy(b).into_owned())
}

pub(super) fn record_json(partition: u32, consumed: &ConsumedRecord) -> serde_json::Value {
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
    use mq_client::Record;

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

//! `mqctl produce TOPIC`: one message per line of standard input, in batches.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use mq_client::{Client, Record};

use super::print_json;
use crate::args::{Output, ProduceArgs};

/// Exits with a failure when any message was not acknowledged.
pub async fn run(
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
        let batch = read_batch(&mut lines, args.batch_size, args.key.as_ref())?;
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

/// The next `size` lines (fewer at the end), one record each, keyed by `key` when given.
fn read_batch(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    size: usize,
    key: Option<&String>,
) -> anyhow::Result<Vec<Record>> {
    let mut batch = Vec::with_capacity(size);
    for line in lines.by_ref().take(size) {
        let line = line.context("reading standard input")?;
        let value = bytes::Bytes::from(line);
        batch.push(match key {
            Some(key) => Record::keyed(key.clone(), value),
            None => Record::unkeyed(value),
        });
    }
    Ok(batch)
}

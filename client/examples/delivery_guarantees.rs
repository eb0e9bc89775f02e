//! A member of consumer group `billing` on topic `orders`, showing the two delivery
//! guarantees a group gives, by where the offset is committed relative to the processing:
//!
//! - at least once (default): commit *after* processing. A crash between the two re-delivers
//!   the records since the last commit, so processing must tolerate repeats (idempotent
//!   writes, or deduplication by key and offset).
//! - at most once (`--at-most-once`): commit *before* processing. A crash between the two
//!   skips those records; nothing is ever processed twice.
//!
//!     cargo run -p mq-examples --example delivery_guarantees -- 127.0.0.1:7070 [--at-most-once]

// An example: its output is what it shows.
#![allow(clippy::print_stdout)]

use futures::StreamExt;
use mq_consumer::{ClientError, Consumer, ConsumerConfig, ConsumerRecord, GroupConfig};

fn process(record: &ConsumerRecord) {
    let value = record.record.value.as_deref().unwrap_or_default();
    println!(
        "{}/{} @{}: {}",
        record.topic,
        record.partition,
        record.offset,
        String::from_utf8_lossy(value)
    );
}

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let server = std::env::args().nth(1).unwrap_or("127.0.0.1:7070".into());
    let at_most_once = std::env::args().any(|arg| arg == "--at-most-once");
    let mut consumer = Consumer::new(ConsumerConfig::new([server]))?;
    let mut group = GroupConfig::new("billing", ["orders"]);
    // Manual commits: this example decides where they go.
    group.auto_commit = None;
    consumer.subscribe(group).await?;

    while let Some(record) = consumer.next().await {
        let record = record?;
        if at_most_once {
            // The position after this record is committed first; then it is processed.
            consumer.commit().await?;
            process(&record);
        } else {
            process(&record);
            // Committed once processed. (Committing every record is the simplest form;
            // committing every N records or every second trades repeats for throughput, which
            // is what `auto_commit` does.)
            consumer.commit().await?;
        }
    }
    consumer.close().await
}

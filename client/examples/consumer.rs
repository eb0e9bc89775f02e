//! Reads every partition of `orders` from the beginning and keeps following new records.
//!
//!     cargo run -p mq-examples --example consumer -- 127.0.0.1:7070

// An example: its output is what it shows.
#![allow(clippy::print_stdout)]

use futures::StreamExt;
use mq_consumer::{ClientError, Consumer, ConsumerConfig, Seek};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let server = std::env::args().nth(1).unwrap_or("127.0.0.1:7070".into());
    let mut consumer = Consumer::new(ConsumerConfig::new([server]))?;
    let partitions = consumer.client().partition_count("orders").await?;
    for partition in 0..partitions {
        let start = consumer.assign("orders", partition, Seek::Earliest).await?;
        println!("orders/{partition}: reading from offset {start}");
    }
    // Per partition in offset order; resumes by itself after leader changes and restarts.
    while let Some(record) = consumer.next().await {
        let record = record?;
        let value = record.record.value.as_deref().unwrap_or_default();
        println!(
            "{}/{} @{}: {}",
            record.topic,
            record.partition,
            record.offset,
            String::from_utf8_lossy(value)
        );
    }
    Ok(())
}

//! Publishes order events: awaits one send, pipelines many, compresses with lz4.
//!
//!     cargo run -p mq-examples --example producer -- 127.0.0.1:7070

// An example: its output is what it shows.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use mq_client::NewTopic;
use mq_producer::{ClientError, Compression, Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let server = std::env::args().nth(1).unwrap_or("127.0.0.1:7070".into());
    let mut config = ProducerConfig::new([server]);
    config.compression = Compression::Lz4;
    config.linger = Duration::from_millis(5);
    let producer = Producer::new(config)?;

    match producer
        .client()
        .create_topic("orders", NewTopic::default().partitions(3))
        .await
    {
        Err(error) if error.code() == mq_producer::ErrorCode::TopicAlreadyExists => {}
        other => drop(other?),
    }

    // One record, waiting for its acknowledgement (committed and fsynced).
    let delivery = producer
        .send(
            ProducerRecord::new("orders")
                .key("order-1")
                .value(r#"{"status":"placed"}"#)
                .header("source", "checkout"),
        )
        .await?;
    println!(
        "order-1 stored at partition {} offset {}",
        delivery.partition, delivery.offset
    );

    // Many records: enqueue returns as soon as the record is buffered; the futures resolve
    // when their batch is acknowledged.
    let mut pending = Vec::new();
    for i in 2..=10_000 {
        let record = ProducerRecord::new("orders")
            .key(format!("order-{i}"))
            .value(format!(r#"{{"status":"placed","n":{i}}}"#));
        pending.push(producer.enqueue(record).await?);
    }
    let mut stored = 0;
    for delivery in futures::future::join_all(pending).await {
        delivery?;
        stored += 1;
    }
    println!("{stored} more orders stored");

    // Wait for everything still in flight, refuse new records.
    producer.close().await
}

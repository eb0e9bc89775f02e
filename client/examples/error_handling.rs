//! What failures look like and how to decide on them: `ClientError::is_retryable` says
//! whether the same call may succeed later; `code()` names the reason; local failures have
//! their own variants.
//!
//!     cargo run -p mq-examples --example error_handling -- 127.0.0.1:7070

// An example: its output is what it shows.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use mq_consumer::{Consumer, ConsumerConfig, Seek};
use mq_producer::{ClientError, ErrorCode, Producer, ProducerConfig, ProducerRecord};

/// Sends one record, telling apart what to retry, what to fix, and what to drop.
async fn publish(producer: &Producer, record: ProducerRecord) -> Result<(), ClientError> {
    loop {
        match producer.send(record.clone()).await {
            Ok(delivery) => {
                println!("stored at {}/{}", delivery.partition, delivery.offset);
                return Ok(());
            }
            // The buffer stayed full for `max_block`: the broker is slow or away. Back off.
            Err(error @ ClientError::BufferFull { .. }) => {
                eprintln!("{error}; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // Retryable server errors were already retried until `delivery_timeout`.
            Err(error) if error.is_retryable() => {
                eprintln!("gave up after the delivery timeout: {error}");
                return Err(error);
            }
            // Bad input: never retried, fix the call.
            Err(error) => {
                eprintln!("refused ({}): {error}", error.code());
                return Err(error);
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let server = std::env::args().nth(1).unwrap_or("127.0.0.1:7070".into());
    let mut config = ProducerConfig::new([server.clone()]);
    config.max_block = Duration::from_secs(5);
    config.delivery_timeout = Duration::from_secs(30);
    let producer = Producer::new(config)?;

    // A topic that does not exist: TOPIC_NOT_FOUND, not retryable.
    let error = publish(&producer, ProducerRecord::new("no-such-topic").value("x"))
        .await
        .expect_err("no such topic");
    assert_eq!(error.code(), ErrorCode::TopicNotFound);

    // A record above `max_record_bytes` (1 MiB): refused before anything is sent.
    let huge = ProducerRecord::new("orders").value(vec![0u8; 2 << 20]);
    let error = publish(&producer, huge).await.expect_err("too large");
    assert!(matches!(error, ClientError::RecordTooLarge { .. }));

    // A seek past the end of a partition: typed, with the valid range.
    let mut consumer = Consumer::new(ConsumerConfig::new([server]))?;
    if let Err(ClientError::OffsetOutOfRange {
        log_start_offset,
        high_watermark,
        ..
    }) = consumer.assign("orders", 0, Seek::Offset(u64::MAX)).await
    {
        println!("orders/0 holds offsets {log_start_offset}..{high_watermark}");
    }

    // After close, sends fail with `Closed`.
    producer.close().await?;
    let error = producer
        .send(ProducerRecord::new("orders").value("late"))
        .await
        .expect_err("closed");
    assert!(matches!(error, ClientError::Closed(_)));
    Ok(())
}

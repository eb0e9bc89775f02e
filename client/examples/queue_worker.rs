//! A worker of queue subscription `emails` (create it first:
//! `mqctl queue create emails --topic outbox --max-deliveries 5`): any number of workers share
//! the topic's partitions; each message is leased to one worker, acked once sent, nacked with a
//! delay when sending failed, and moved to the dead-letter topic after 5 deliveries.
//!
//!     cargo run -p mq-examples --example queue_worker -- 127.0.0.1:7070

// An example: its output is what it shows.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use mq_consumer::{ClientError, ConsumerConfig, QueueConsumer, QueueMessage};

/// Pretends to send an email; fails for empty bodies.
async fn send(message: &QueueMessage) -> Result<(), String> {
    match message.record.value.as_deref() {
        Some(body) if !body.is_empty() => Ok(()),
        _ => Err("empty body".to_owned()),
    }
}

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let server = std::env::args().nth(1).unwrap_or("127.0.0.1:7070".into());
    let queue = QueueConsumer::new(ConsumerConfig::new([server]), "emails")?;
    loop {
        let messages = queue.receive(50, Duration::from_secs(10)).await?;
        let (mut sent, mut failed) = (Vec::new(), Vec::new());
        for message in messages {
            match send(&message).await {
                Ok(()) => sent.push(message.lease_id),
                Err(reason) => {
                    println!(
                        "offset {} failed (delivery {}): {reason}",
                        message.offset, message.delivery_attempt
                    );
                    failed.push(message.lease_id);
                }
            }
        }
        if !failed.is_empty() {
            // Tried again in 30 s, by whichever worker receives it then.
            queue.nack(failed, Duration::from_secs(30)).await?;
        }
        if !sent.is_empty() {
            println!("sent {}", sent.len());
            // LEASE_EXPIRED here means a lease ran out first: the message will be delivered
            // again, so sending must tolerate a repeat (at-least-once).
            queue.ack(sent).await?;
        }
    }
}

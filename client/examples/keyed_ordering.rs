//! Per-key order: every event of one account goes to the same partition (the standard key
//! hash) and is stored in the order it was sent, even with many sends in flight and retries
//! (the producer is idempotent by default). The example checks it by reading back.
//!
//!     cargo run -p mq-examples --example keyed_ordering -- 127.0.0.1:7070

// An example: its output is what it shows.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;

use futures::StreamExt;
use mq_client::NewTopic;
use mq_consumer::{Consumer, ConsumerConfig, Seek};
use mq_producer::{ClientError, Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let server = std::env::args().nth(1).unwrap_or("127.0.0.1:7070".into());
    let producer = Producer::new(ProducerConfig::new([server.clone()]))?;
    let topic = format!("ledger-{}", std::process::id());
    producer
        .client()
        .create_topic(&topic, NewTopic::default().partitions(4))
        .await?;

    const ACCOUNTS: usize = 20;
    const EVENTS: usize = 5_000;
    let mut pending = Vec::new();
    for n in 0..EVENTS {
        let account = format!("account-{}", n % ACCOUNTS);
        let record = ProducerRecord::new(&topic)
            .key(account)
            .value(n.to_string());
        pending.push(producer.enqueue(record).await?);
    }
    for delivery in pending {
        delivery.await?;
    }
    producer.close().await?;

    let mut consumer = Consumer::new(ConsumerConfig::new([server]))?;
    for partition in 0..4 {
        consumer.assign(&topic, partition, Seek::Earliest).await?;
    }
    let mut last: HashMap<Vec<u8>, (u32, usize)> = HashMap::new();
    for _ in 0..EVENTS {
        let record = consumer.next().await.expect("partitions assigned")?;
        let key = record.record.key.clone().unwrap_or_default().to_vec();
        let n: usize = String::from_utf8_lossy(&record.record.value.unwrap_or_default())
            .parse()
            .expect("a number");
        if let Some((partition, previous)) = last.insert(key, (record.partition, n)) {
            assert_eq!(partition, record.partition, "one key, one partition");
            assert!(previous < n, "per-key order kept");
        }
    }
    println!(
        "{EVENTS} events of {ACCOUNTS} accounts: each account in one partition, in send order"
    );
    consumer.client().delete_topic(&topic).await
}

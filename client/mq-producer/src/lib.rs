//! The producer: what applications publish records with.
//!
//! [`Producer::send`] resolves with the record's partition and offset once the record is
//! committed (replicated to a quorum and fsynced). Under the hood records are batched per
//! partition (up to [`ProducerConfig::batch_bytes`], waiting at most
//! [`ProducerConfig::linger`] for more), optionally compressed, and sent with at most five
//! batches in flight per partition.
//!
//! - **Ordering and no duplicates**: idempotent by default. Every batch carries the
//!   producer's id and a per-partition sequence number, so a batch retried after a timeout or
//!   a leader change is never appended twice and records of one partition are appended in
//!   the order they were sent.
//! - **Partitioning**: explicit partition, else the standard key hash (murmur2, the same as
//!   Kafka's and as documented in `mq.v1.PartitionBatch` for other languages), else *sticky*:
//!   keyless records fill one partition's batch, then move to the next partition.
//! - **Back-pressure**: records wait in a buffer of at most [`ProducerConfig::buffer_bytes`]
//!   (encoded size). When it is full, `send` waits up to [`ProducerConfig::max_block`], then
//!   fails with [`ClientError::BufferFull`]: a producer never drops a record silently.
//! - **Failures**: retryable errors (leader moved, no leader yet, broker restarting) are
//!   retried with exponential backoff until [`ProducerConfig::delivery_timeout`]; others fail
//!   the records of the batch at once. Every `send` resolves exactly once.
//!
//! ```no_run
//! # async fn example() -> Result<(), mq_producer::ClientError> {
//! use mq_producer::{Compression, Producer, ProducerConfig, ProducerRecord};
//!
//! let mut config = ProducerConfig::new(["127.0.0.1:7070"]);
//! config.compression = Compression::Lz4;
//! let producer = Producer::new(config)?;
//!
//! // Wait for one record...
//! let delivery = producer
//!     .send(ProducerRecord::new("orders").key("order-42").value("placed"))
//!     .await?;
//! println!("stored at {}/{}", delivery.partition, delivery.offset);
//!
//! // ...or pipeline many and collect the outcomes.
//! let mut pending = Vec::new();
//! for i in 0..1000 {
//!     let record = ProducerRecord::new("orders").key(format!("order-{i}")).value("placed");
//!     pending.push(producer.enqueue(record).await?);
//! }
//! for delivery in futures::future::join_all(pending).await {
//!     delivery?;
//! }
//! producer.close().await?;
//! # Ok(()) }
//! ```

mod config;
mod lane;
mod partitioner;
mod producer;
mod record;

pub use config::ProducerConfig;
pub use mq_client::{ClientConfig, ClientError, Compression, ErrorCode, Header};
pub use producer::{DeliveryFuture, Producer};
pub use record::{Delivery, ProducerRecord};

//! The consumer: what applications read records with.
//!
//! A [`Consumer`] reads the partitions assigned to it ([`Consumer::assign`]) and is a
//! [`futures::Stream`] of [`ConsumerRecord`]s: per partition in offset order, without gaps
//! or repeats, across leader changes and broker restarts (it resumes from the offset after
//! the last record it yielded). Partitions are interleaved as their records arrive.
//!
//! - **Positions**: [`Seek`] to the earliest or latest offset, an exact offset, or the first
//!   record at or after a timestamp; [`Consumer::position`] is the next offset to be yielded.
//!   A seek outside the stored range fails with [`ClientError::OffsetOutOfRange`].
//! - **Transport**: by default each partition is pushed over a `Subscribe` stream, whose
//!   HTTP/2 flow control keeps a slow consumer from being flooded. [`ReadMode::Fetch`] uses
//!   long-poll `Fetch` calls instead (for proxies without server streaming).
//! - **Nearest replica**: with [`ConsumerConfig::rack`] set, partitions that have a live
//!   replica on a broker in that rack are read there (by long-poll `Fetch`; a follower serves
//!   what its group has committed and it has applied), others from their leader.
//! - **Groups**: [`Consumer::subscribe`] joins a consumer group ([`GroupConfig`]: group id,
//!   topics, static instance id, timeouts, auto-commit): the consumer manager assigns
//!   partitions incrementally (only partitions that must move are interrupted, each owned by
//!   one member at a time) and the stream follows; [`Consumer::commit`] commits positions
//!   (fenced: a member removed from the group cannot commit); [`Consumer::close`] leaves.
//! - **Broadcast**: [`Consumer::broadcast`] reads every partition of some topics from now on,
//!   with no state on the servers (each instance of a service sees every change), optionally
//!   coalesced by key ([`ConsumerConfig::coalesce_by_key`]).
//! - **Queues**: a [`QueueConsumer`] shares a queue subscription's partitions with the
//!   queue's other consumers: each message is leased to one consumer, acked, nacked with a
//!   delay, or redelivered when its lease runs out; after `max_deliveries` it goes to the
//!   queue's dead-letter topic.
//!
//! ```no_run
//! # async fn example() -> Result<(), mq_consumer::ClientError> {
//! use futures::StreamExt;
//! use mq_consumer::{Consumer, ConsumerConfig, Seek};
//!
//! let mut consumer = Consumer::new(ConsumerConfig::new(["127.0.0.1:7070"]))?;
//! consumer.assign("orders", 0, Seek::Earliest).await?;
//! consumer.assign("orders", 1, Seek::Timestamp(1_700_000_000_000)).await?;
//! while let Some(record) = consumer.next().await {
//!     let record = record?;
//!     println!("{}/{} @{}: {:?}", record.topic, record.partition, record.offset, record.record.value);
//! }
//! # Ok(()) }
//! ```

mod consumer;
mod group;
mod queue;
mod reader;

pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, ReadMode, Seek};
pub use group::{GroupConfig, OffsetReset};
pub use mq_client::{ClientConfig, ClientError, ErrorCode, Header, QueueMessage, Record};
pub use queue::QueueConsumer;

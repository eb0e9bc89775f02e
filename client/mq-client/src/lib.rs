//! The Rust client core: what `mqctl`, the producer and consumer crates, and tests use to talk
//! to brokers.
//!
//! - [`Client`]: one per application; cheap to clone. It keeps one gRPC channel per server,
//!   caches topic metadata, routes each partition request to its leader, and retries requests
//!   that a leader change or a restart made fail (`NOT_LEADER`, `LEADER_NOT_AVAILABLE`,
//!   `UNAVAILABLE`) with backoff until the request timeout. A connection that broke after
//!   taking a request, or an attempt unanswered within `attempt_timeout` (`CONNECTION_LOST`,
//!   `TIMEOUT`: it may have been applied), is retried by reads, idempotent produce, and topic
//!   creation and deletion, and reported by a plain produce and other changes.
//! - [`Subscription`]: a stream of records from a partition that resumes from the next offset
//!   after a leader change or a broker restart.
//! - Consumer-group and queue calls ([`Client::heartbeat`], [`Client::commit_offsets`],
//!   [`Client::receive`], [`Client::create_queue`], ...) take and return domain types
//!   ([`Heartbeat`], [`OffsetCommit`], [`GroupDescription`], [`NewQueue`], [`QueueMessage`],
//!   ...), like the admin calls: no protobuf message is part of this crate's API.
//! - [`ClientError`]: every failure, with [`ClientError::code`] and
//!   [`ClientError::is_retryable`] read from the server's error details, never from text.
//!
//! Applications usually use the `mq-producer` and `mq-consumer` crates built on this one.
//!
//! ```no_run
//! # async fn example() -> Result<(), mq_client::ClientError> {
//! use mq_client::{Client, ClientConfig, NewTopic, Record};
//!
//! let client = Client::new(ClientConfig::new(["127.0.0.1:7070"]))?;
//! client.create_topic("orders", NewTopic::default().partitions(3)).await?;
//! let partition = client.partition_for_key("orders", b"order-42").await?;
//! let offset = client
//!     .produce("orders", partition, vec![Record::keyed("order-42", "placed")])
//!     .await?;
//! let batch = client.fetch("orders", partition, offset, Default::default()).await?;
//! assert_eq!(batch.records[0].offset, offset);
//! # Ok(()) }
//! ```

mod admin;
mod client;
mod error;
mod fetch;
mod groups;
mod metadata;
mod produce;
mod queues;
mod routing;
mod sequence;
mod subscription;
mod types;

pub use client::{Client, ClientConfig, MAX_IN_FLIGHT_PER_PARTITION};
pub use error::ClientError;
pub use groups::{
    CommittedOffset, GroupDescription, GroupMember, GroupSummary, Heartbeat, MemberAssignment,
    OffsetCommit, PartitionLag, ResetTo, TopicPartition,
};
pub use mq_common::clock::now_ms;
pub use mq_common::compression::Compression;
pub use mq_common::error::{ApiError, ErrorCode};
pub use mq_common::partitioner::{key_hash, partition_for_key};
pub use mq_common::records::{Header, Record, encode_records};
pub use produce::EncodedBatch;
pub use queues::{
    NewQueue, QueueConfig, QueueDescription, QueueMessage, QueuePartitionStatus, QueueStart,
    QueueSummary,
};
pub use sequence::ProduceSlot;
pub use subscription::Subscription;
pub use types::{
    BrokerInfo, BrokerStatus, ClusterStatus, ConsumedRecord, FetchBatch, FetchOptions,
    ManagerMember, NewTopic, OffsetSpec, PartitionInfo, PartitionOffset, ReplicaInfo, ReplicaMove,
    StartAt, TopicDescription, TopicSummary,
};

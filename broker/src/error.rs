//! The broker's errors, mapped once to the shared API error (and from there to gRPC status).

use std::time::Duration;

use mq_common::error::{ApiError, ErrorCode, LeaderHint};

use crate::partition::read::ReadError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{field}: {problem}")]
    InvalidArgument { field: String, problem: String },
    #[error("this broker: {0}")]
    DiskFull(#[from] mq_raft::disk::DiskFull),
    #[error("topic '{topic}' does not exist")]
    TopicNotFound { topic: String },
    #[error(
        "partition: {partition} is not a partition of topic '{topic}', which has {partitions} (numbered from 0)"
    )]
    PartitionNotFound {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error("this broker does not lead {topic}/{partition}")]
    NotLeader {
        topic: String,
        partition: u32,
        leader: Option<LeaderHint>,
    },
    #[error("{topic}/{partition} has no leader right now; retry shortly")]
    LeaderNotAvailable { topic: String, partition: u32 },
    #[error(
        "offset {offset} is out of range for {topic}/{partition}: valid offsets are \
         {log_start_offset}..={high_watermark}"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        log_start_offset: u64,
        high_watermark: u64,
    },
    #[error(
        "batches[{batch}].records[{record}]: {size} bytes of key, value and headers exceed \
         max.message.bytes of topic '{topic}' ({max})"
    )]
    RecordTooLarge {
        topic: String,
        batch: usize,
        record: usize,
        size: usize,
        max: usize,
    },
    #[error(
        "batches[{batch}].crc32c: {sent:#010x} does not match the records (computed {computed:#010x}); \
         the batch was corrupted on its way, resend it"
    )]
    CorruptBatch {
        batch: usize,
        sent: u32,
        computed: u32,
    },
    #[error(
        "{topic}/{partition}: not committed within {timeout:?}; the write may or may not have happened"
    )]
    Timeout {
        topic: String,
        partition: u32,
        timeout: Duration,
    },
    #[error("{topic}/{partition}: stored data is corrupt: {source}")]
    DataCorruption {
        topic: String,
        partition: u32,
        #[source]
        source: ReadError,
    },
    #[error("{topic}/{partition}: {source}")]
    Storage {
        topic: String,
        partition: u32,
        #[source]
        source: ReadError,
    },
    #[error(
        "{topic}/{partition}: base_sequence {got} skips ahead of the producer's next sequence \
         {expected}; an earlier batch has not arrived yet"
    )]
    OutOfOrderSequence {
        topic: String,
        partition: u32,
        expected: u32,
        got: u32,
    },
    #[error(
        "{topic}/{partition}: base_sequence {got} repeats a batch older than the last 5 of this \
         producer (next sequence {expected}); it was appended before"
    )]
    DuplicateSequence {
        topic: String,
        partition: u32,
        expected: u32,
        got: u32,
    },
    #[error(transparent)]
    Raft(mq_raft::GroupError),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Unavailable(String),
}

impl BrokerError {
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Self::DiskFull { .. } => ErrorCode::DiskFull,
            Self::TopicNotFound { .. } => ErrorCode::TopicNotFound,
            Self::PartitionNotFound { .. } => ErrorCode::PartitionNotFound,
            Self::NotLeader { .. } => ErrorCode::NotLeader,
            Self::LeaderNotAvailable { .. } => ErrorCode::LeaderNotAvailable,
            Self::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            Self::RecordTooLarge { .. } => ErrorCode::RecordTooLarge,
            Self::CorruptBatch { .. } => ErrorCode::CorruptBatch,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
            Self::DuplicateSequence { .. } => ErrorCode::DuplicateSequence,
            Self::DataCorruption { .. } => ErrorCode::DataCorruption,
            Self::Storage { .. } | Self::Io(_) => ErrorCode::Internal,
            Self::Raft(error) => ApiError::from(error).code,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// Read failures split into corruption (the data is bad) and everything else.
    pub fn from_read(topic: &str, partition: u32, source: ReadError) -> Self {
        let (topic, partition) = (topic.to_owned(), partition);
        match source {
            ReadError::Corrupt { .. } | ReadError::MissingBatch(_) => Self::DataCorruption {
                topic,
                partition,
                source,
            },
            ReadError::Storage(_) => Self::Storage {
                topic,
                partition,
                source,
            },
        }
    }
}

impl From<&BrokerError> for ApiError {
    fn from(error: &BrokerError) -> Self {
        if matches!(
            error.code(),
            ErrorCode::Internal | ErrorCode::DataCorruption
        ) {
            tracing::error!(%error, "request failed");
        }
        let leader = match error {
            BrokerError::NotLeader { leader, .. } => leader.clone(),
            _ => None,
        };
        ApiError::new(error.code(), error.to_string()).with_leader(leader)
    }
}

mq_common::status_from_api_error!(BrokerError);

//! The one error type of every client crate (`mq-client`, `mq-producer`, `mq-consumer`).

use std::time::Duration;

use mq_common::error::{ApiError, ErrorCode};

/// Every failure a client call can end with.
///
/// Decide with [`ClientError::is_retryable`] (the same call may succeed later) and
/// [`ClientError::code`] (the server's reason, or the nearest one for local failures); never
/// parse the message. Requests that fail with `INVALID_ARGUMENT` are never retried.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server (or the transport) refused the request.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The request was rejected before it was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A server address could not be used.
    #[error("invalid server address '{address}': {reason}")]
    InvalidAddress { address: String, reason: String },
    /// A record is larger than the producer's `max_record_bytes` (or its whole buffer).
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
    /// The producer's buffer stayed full for the configured `max_block`: the broker is slower
    /// than the application or unreachable. Retryable: send again later.
    #[error(
        "producer buffer full: {needed} more bytes did not fit in {limit} bytes within {waited:?}"
    )]
    BufferFull {
        needed: usize,
        limit: usize,
        waited: Duration,
    },
    /// The producer or consumer was closed before the call.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// A seek to an offset outside the partition's stored range.
    #[error(
        "offset {offset} of {topic}/{partition} is outside the stored range \
         [{log_start_offset}, {high_watermark}]"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        log_start_offset: u64,
        high_watermark: u64,
    },
    /// The operation needs a part of the system this cluster does not have.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl ClientError {
    /// The error's code: from the server's `ErrorInfo`, or the nearest reason for failures
    /// found locally (`INVALID_ARGUMENT` for bad input and closed handles, `TIMEOUT` for a
    /// full buffer).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Api(error) => error.code,
            Self::InvalidArgument(_)
            | Self::InvalidAddress { .. }
            | Self::Closed(_)
            | Self::Unsupported(_) => ErrorCode::InvalidArgument,
            Self::RecordTooLarge { .. } => ErrorCode::RecordTooLarge,
            Self::BufferFull { .. } => ErrorCode::Timeout,
            Self::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        }
    }

    /// Whether the same request may succeed when sent again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api(error) => error.retryable(),
            Self::BufferFull { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn from_status(status: &tonic::Status) -> Self {
        Self::Api(ApiError::from_status(status))
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_is_never_retryable_and_server_reasons_decide_the_rest() {
        let invalid = ClientError::Api(ApiError::new(ErrorCode::InvalidArgument, "topic: empty"));
        assert!(!invalid.is_retryable());
        assert!(!ClientError::InvalidArgument("x".into()).is_retryable());
        assert!(ClientError::Api(ApiError::new(ErrorCode::NotLeader, "moved")).is_retryable());
        assert!(!ClientError::Closed("producer").is_retryable());
        let full = ClientError::BufferFull {
            needed: 10,
            limit: 5,
            waited: Duration::from_millis(1),
        };
        assert!(full.is_retryable());
        assert_eq!(full.code(), ErrorCode::Timeout);
        let large = ClientError::RecordTooLarge { size: 2, limit: 1 };
        assert_eq!(large.code(), ErrorCode::RecordTooLarge);
        assert!(!large.is_retryable());
    }
}

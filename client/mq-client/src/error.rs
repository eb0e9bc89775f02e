//! The client's one error type.

use mq_common::error::{ApiError, ErrorCode};

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
}

impl ClientError {
    /// The error's code: from the server's `ErrorInfo`, or `INVALID_ARGUMENT` for requests
    /// rejected locally.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Api(error) => error.code,
            Self::InvalidArgument(_) | Self::InvalidAddress { .. } => ErrorCode::InvalidArgument,
        }
    }

    /// Whether the same request may succeed when sent again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Api(error) if error.retryable())
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

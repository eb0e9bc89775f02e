//! The consumer manager's errors, mapped once to the shared API error.

use mq_common::error::{ApiError, ErrorCode};
use mq_raft::{GroupError, InvalidTimings};

use crate::coordinator::Rejection;
use crate::state::RefusalCode;

#[derive(Debug, thiserror::Error)]
pub enum CgError {
    #[error("{field}: {problem}")]
    InvalidArgument { field: String, problem: String },
    #[error("group '{group}' does not exist")]
    GroupNotFound { group: String },
    #[error("queue '{queue}' does not exist")]
    QueueNotFound { queue: String },
    #[error("lease {lease} {problem}; the message is or will be delivered again")]
    LeaseExpired {
        lease: String,
        problem: &'static str,
    },
    #[error("{message}")]
    Refused { code: RefusalCode, message: String },
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("{0}")]
    Client(#[from] mq_client::ClientError),
    /// Not the leader, no leader, or the group failed.
    #[error("consumer manager: {0}")]
    Raft(#[from] GroupError),
    #[error(transparent)]
    Timings(#[from] InvalidTimings),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

impl CgError {
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument { .. } | Self::Rejected(Rejection::NoTopics) => {
                ErrorCode::InvalidArgument
            }
            Self::GroupNotFound { .. } => ErrorCode::GroupNotFound,
            Self::QueueNotFound { .. } => ErrorCode::QueueNotFound,
            Self::LeaseExpired { .. } => ErrorCode::LeaseExpired,
            Self::Refused { code, .. } => code.error_code(),
            Self::Rejected(Rejection::UnknownMember(_)) => ErrorCode::UnknownMember,
            Self::Client(error) => error.code(),
            Self::Raft(error) => ApiError::from(error).code,
            Self::Timings(_) | Self::Io(_) => ErrorCode::Internal,
        }
    }
}

impl From<&CgError> for ApiError {
    fn from(error: &CgError) -> Self {
        if error.code() == ErrorCode::Internal {
            tracing::error!(%error, "consumer manager request failed");
        }
        match error {
            CgError::Raft(raft) => ApiError::from(raft),
            _ => ApiError::new(error.code(), error.to_string()),
        }
    }
}

mq_common::status_from_api_error!(CgError);

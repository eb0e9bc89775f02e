//! The consumer manager's errors, mapped once to the shared API error.

use mq_common::error::{ApiError, ErrorCode, LeaderHint};

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
    #[error("this node does not lead the consumer manager")]
    NotLeader { leader: Option<LeaderHint> },
    #[error("the consumer manager has no leader right now; retry shortly")]
    LeaderNotAvailable,
    #[error("{0}")]
    Client(#[from] mq_client::ClientError),
    #[error("consumer manager raft: {0}")]
    Raft(String),
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
            Self::NotLeader { .. } => ErrorCode::NotLeader,
            Self::LeaderNotAvailable => ErrorCode::Unavailable,
            Self::Client(error) => error.code(),
            Self::Raft(_) | Self::Io(_) => ErrorCode::Internal,
        }
    }
}

impl From<&CgError> for ApiError {
    fn from(error: &CgError) -> Self {
        if error.code() == ErrorCode::Internal {
            tracing::error!(%error, "consumer manager request failed");
        }
        let leader = match error {
            CgError::NotLeader { leader } => leader.clone(),
            _ => None,
        };
        ApiError::new(error.code(), error.to_string()).with_leader(leader)
    }
}

impl From<CgError> for tonic::Status {
    fn from(error: CgError) -> Self {
        ApiError::from(&error).into()
    }
}

//! The cluster manager's errors, mapped once to the shared API error.

use mq_common::error::{ApiError, ErrorCode};
use mq_raft::{GroupError, InvalidTimings};

#[derive(Debug, thiserror::Error)]
pub enum CmError {
    #[error("{field}: {problem}")]
    InvalidArgument { field: String, problem: String },
    #[error("topic '{topic}' already exists")]
    TopicExists { topic: String },
    #[error("topic '{topic}' does not exist")]
    TopicNotFound { topic: String },
    #[error(
        "replication_factor: {requested} replicas need as many live brokers, but {live} are live"
    )]
    NotEnoughBrokers { requested: u32, live: usize },
    #[error(
        "broker_id: broker {id} is registered at {address} and alive; a second broker cannot \
         take its id (give this one another --broker-id)"
    )]
    BrokerIdInUse { id: u32, address: String },
    #[error("broker_id: no broker {id} is registered")]
    BrokerNotFound { id: u32 },
    #[error("broker_id: cannot drain broker {id}: {reason}")]
    CannotDrain { id: u32, reason: String },
    /// Not the leader, no leader, or the group failed.
    #[error("cluster manager: {0}")]
    Raft(#[from] GroupError),
    #[error("cluster manager: unexpected reply {reply} to {command}")]
    UnexpectedReply { command: String, reply: String },
    #[error("invalid config: {0}")]
    Config(String),
    #[error(transparent)]
    Timings(#[from] InvalidTimings),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

impl CmError {
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Self::TopicExists { .. } => ErrorCode::TopicAlreadyExists,
            Self::TopicNotFound { .. } => ErrorCode::TopicNotFound,
            Self::NotEnoughBrokers { .. } => ErrorCode::NotEnoughBrokers,
            Self::BrokerIdInUse { .. } => ErrorCode::BrokerIdInUse,
            Self::BrokerNotFound { .. } => ErrorCode::BrokerNotFound,
            Self::CannotDrain { .. } => ErrorCode::NotEnoughBrokers,
            Self::Raft(error) => ApiError::from(error).code,
            Self::UnexpectedReply { .. } | Self::Io(_) | Self::Config(_) | Self::Timings(_) => {
                ErrorCode::Internal
            }
        }
    }
}

impl From<&CmError> for ApiError {
    fn from(error: &CmError) -> Self {
        if error.code() == ErrorCode::Internal {
            tracing::error!(%error, "cluster manager request failed");
        }
        match error {
            CmError::Raft(raft) => ApiError::from(raft),
            _ => ApiError::new(error.code(), error.to_string()),
        }
    }
}

mq_common::status_from_api_error!(CmError);

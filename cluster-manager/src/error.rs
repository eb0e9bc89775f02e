//! The cluster manager's errors, mapped once to the shared API error.

use mq_common::error::{ApiError, ErrorCode, LeaderHint};

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
    #[error("this node does not lead the cluster manager")]
    NotLeader { leader: Option<LeaderHint> },
    #[error("the cluster manager has no leader right now; retry shortly")]
    LeaderNotAvailable,
    #[error("invalid config: {0}")]
    Config(String),
    #[error("cluster manager raft: {0}")]
    Raft(String),
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
            Self::NotLeader { .. } => ErrorCode::NotLeader,
            Self::LeaderNotAvailable => ErrorCode::Unavailable,
            Self::Raft(_) | Self::Io(_) | Self::Config(_) => ErrorCode::Internal,
        }
    }
}

impl From<&CmError> for ApiError {
    fn from(error: &CmError) -> Self {
        if error.code() == ErrorCode::Internal {
            tracing::error!(%error, "cluster manager request failed");
        }
        let leader = match error {
            CmError::NotLeader { leader } => leader.clone(),
            _ => None,
        };
        ApiError::new(error.code(), error.to_string()).with_leader(leader)
    }
}

impl From<CmError> for tonic::Status {
    fn from(error: CmError) -> Self {
        ApiError::from(&error).into()
    }
}

//! The error vocabulary shared by servers and clients, and the one conversion between it and
//! `tonic::Status`.
//!
//! Each crate keeps its own error enum; it maps each variant to an [`ApiError`] once, and
//! `ApiError` becomes a `Status` here: a gRPC code that means what gRPC says, a message for
//! humans, and a `google.rpc.ErrorInfo` detail (domain `mq.v1`) whose `reason` is the
//! [`ErrorCode`] name, with `retryable` and, for `NOT_LEADER`, the leader's id and address.
//! Clients read it back with [`ApiError::from_status`] and decide from the code, never from the
//! message text.

use std::collections::HashMap;
use std::fmt;

use mq_proto::v1 as pb;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every error this project returns.
pub const ERROR_DOMAIN: &str = "mq.v1";

/// Machine-readable error reasons; the same set as `mq.v1.ErrorReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidArgument,
    TopicNotFound,
    TopicAlreadyExists,
    PartitionNotFound,
    NotLeader,
    LeaderNotAvailable,
    OffsetOutOfRange,
    RecordTooLarge,
    CorruptBatch,
    NotEnoughBrokers,
    Timeout,
    Unavailable,
    DataCorruption,
    RequestTooLarge,
    Internal,
    OutOfOrderSequence,
    DuplicateSequence,
    BrokerIdInUse,
    BrokerNotFound,
    GroupNotFound,
    UnknownMember,
    StaleMemberEpoch,
    FencedMember,
    GroupNotEmpty,
    QueueNotFound,
    QueueAlreadyExists,
    LeaseExpired,
    DiskFull,
    ConnectionLost,
}

impl ErrorCode {
    const ALL: [ErrorCode; 29] = [
        Self::InvalidArgument,
        Self::TopicNotFound,
        Self::TopicAlreadyExists,
        Self::PartitionNotFound,
        Self::NotLeader,
        Self::LeaderNotAvailable,
        Self::OffsetOutOfRange,
        Self::RecordTooLarge,
        Self::CorruptBatch,
        Self::NotEnoughBrokers,
        Self::Timeout,
        Self::Unavailable,
        Self::DataCorruption,
        Self::RequestTooLarge,
        Self::Internal,
        Self::OutOfOrderSequence,
        Self::DuplicateSequence,
        Self::BrokerIdInUse,
        Self::BrokerNotFound,
        Self::GroupNotFound,
        Self::UnknownMember,
        Self::StaleMemberEpoch,
        Self::FencedMember,
        Self::GroupNotEmpty,
        Self::QueueNotFound,
        Self::QueueAlreadyExists,
        Self::LeaseExpired,
        Self::DiskFull,
        Self::ConnectionLost,
    ];

    /// The gRPC status code a whole call fails with for this reason.
    pub fn grpc_code(self) -> Code {
        match self {
            Self::InvalidArgument
            | Self::PartitionNotFound
            | Self::RecordTooLarge
            | Self::CorruptBatch
            | Self::NotEnoughBrokers => Code::InvalidArgument,
            Self::TopicNotFound
            | Self::BrokerNotFound
            | Self::GroupNotFound
            | Self::QueueNotFound => Code::NotFound,
            Self::UnknownMember
            | Self::StaleMemberEpoch
            | Self::FencedMember
            | Self::GroupNotEmpty
            | Self::LeaseExpired => Code::FailedPrecondition,
            Self::TopicAlreadyExists | Self::QueueAlreadyExists => Code::AlreadyExists,
            Self::NotLeader | Self::OutOfOrderSequence => Code::FailedPrecondition,
            Self::DuplicateSequence | Self::BrokerIdInUse => Code::AlreadyExists,
            Self::LeaderNotAvailable | Self::Unavailable | Self::ConnectionLost => {
                Code::Unavailable
            }
            Self::OffsetOutOfRange => Code::OutOfRange,
            Self::Timeout => Code::DeadlineExceeded,
            Self::DataCorruption => Code::DataLoss,
            Self::RequestTooLarge | Self::DiskFull => Code::ResourceExhausted,
            Self::Internal => Code::Internal,
        }
    }

    /// Whether the same request may succeed when retried (against the leader, for
    /// `NotLeader`).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::NotLeader
                | Self::LeaderNotAvailable
                | Self::CorruptBatch
                | Self::Timeout
                | Self::Unavailable
                | Self::Internal
                | Self::OutOfOrderSequence
                | Self::StaleMemberEpoch
                | Self::DiskFull
                | Self::ConnectionLost
        )
    }

    /// The reason's name, as in `mq.v1.ErrorReason` and `ErrorInfo.reason`.
    pub fn as_str(self) -> &'static str {
        self.to_proto().as_str_name()
    }

    pub fn to_proto(self) -> pb::ErrorReason {
        match self {
            Self::InvalidArgument => pb::ErrorReason::InvalidArgument,
            Self::TopicNotFound => pb::ErrorReason::TopicNotFound,
            Self::TopicAlreadyExists => pb::ErrorReason::TopicAlreadyExists,
            Self::PartitionNotFound => pb::ErrorReason::PartitionNotFound,
            Self::NotLeader => pb::ErrorReason::NotLeader,
            Self::LeaderNotAvailable => pb::ErrorReason::LeaderNotAvailable,
            Self::OffsetOutOfRange => pb::ErrorReason::OffsetOutOfRange,
            Self::RecordTooLarge => pb::ErrorReason::RecordTooLarge,
            Self::CorruptBatch => pb::ErrorReason::CorruptBatch,
            Self::NotEnoughBrokers => pb::ErrorReason::NotEnoughBrokers,
            Self::Timeout => pb::ErrorReason::Timeout,
            Self::Unavailable => pb::ErrorReason::Unavailable,
            Self::DataCorruption => pb::ErrorReason::DataCorruption,
            Self::RequestTooLarge => pb::ErrorReason::RequestTooLarge,
            Self::Internal => pb::ErrorReason::Internal,
            Self::OutOfOrderSequence => pb::ErrorReason::OutOfOrderSequence,
            Self::DuplicateSequence => pb::ErrorReason::DuplicateSequence,
            Self::BrokerIdInUse => pb::ErrorReason::BrokerIdInUse,
            Self::BrokerNotFound => pb::ErrorReason::BrokerNotFound,
            Self::GroupNotFound => pb::ErrorReason::GroupNotFound,
            Self::UnknownMember => pb::ErrorReason::UnknownMember,
            Self::StaleMemberEpoch => pb::ErrorReason::StaleMemberEpoch,
            Self::FencedMember => pb::ErrorReason::FencedMember,
            Self::GroupNotEmpty => pb::ErrorReason::GroupNotEmpty,
            Self::QueueNotFound => pb::ErrorReason::QueueNotFound,
            Self::QueueAlreadyExists => pb::ErrorReason::QueueAlreadyExists,
            Self::LeaseExpired => pb::ErrorReason::LeaseExpired,
            Self::DiskFull => pb::ErrorReason::DiskFull,
            Self::ConnectionLost => pb::ErrorReason::ConnectionLost,
        }
    }

    pub fn from_proto(reason: pb::ErrorReason) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.to_proto() == reason)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// A best guess for a status that carries no `ErrorInfo` (e.g. produced by tonic or a
    /// proxy rather than by a broker).
    fn from_grpc_code(code: Code) -> Self {
        match code {
            Code::InvalidArgument => Self::InvalidArgument,
            Code::NotFound => Self::TopicNotFound,
            Code::AlreadyExists => Self::TopicAlreadyExists,
            Code::OutOfRange => Self::OffsetOutOfRange,
            Code::DeadlineExceeded | Code::Cancelled => Self::Timeout,
            Code::Unavailable | Code::Aborted => Self::Unavailable,
            Code::DataLoss => Self::DataCorruption,
            Code::ResourceExhausted => Self::RequestTooLarge,
            Code::FailedPrecondition => Self::NotLeader,
            _ => Self::Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who leads, as far as the answering node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    /// The leader's id: a broker id for a partition, a Raft node id for the cluster manager
    /// and the consumer manager.
    pub id: u64,
    pub address: String,
}

impl LeaderHint {
    /// The leading broker, for a partition's hint (broker ids are `u32`).
    pub fn broker(&self) -> Option<crate::ids::BrokerId> {
        u32::try_from(self.id).ok().map(crate::ids::BrokerId)
    }
}

/// An error as it crosses the API: code, message, and for `NotLeader` the leader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub leader: Option<LeaderHint>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            leader: None,
        }
    }

    /// `INVALID_ARGUMENT` naming the offending field: `"<field>: <problem>"`.
    pub fn invalid(field: &str, problem: impl fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidArgument, format!("{field}: {problem}"))
    }

    pub fn with_leader(mut self, leader: Option<LeaderHint>) -> Self {
        self.leader = leader;
        self
    }

    pub fn retryable(&self) -> bool {
        self.code.retryable()
    }

    /// Reads an error back from a status: from its `ErrorInfo` when the server attached one,
    /// else from the gRPC code alone.
    pub fn from_status(status: &tonic::Status) -> Self {
        let message = status.message().to_owned();
        let Some(info) = status
            .get_details_error_info()
            .filter(|info| info.domain == ERROR_DOMAIN)
        else {
            return Self::new(ErrorCode::from_grpc_code(status.code()), message);
        };
        let code = ErrorCode::from_name(&info.reason)
            .unwrap_or_else(|| ErrorCode::from_grpc_code(status.code()));
        let leader = match (
            info.metadata
                .get("leader_id")
                .and_then(|id| id.parse().ok()),
            info.metadata.get("leader_address"),
        ) {
            (Some(id), Some(address)) => Some(LeaderHint {
                id,
                address: address.clone(),
            }),
            _ => None,
        };
        Self {
            code,
            message,
            leader,
        }
    }

    /// The per-partition form used inside batch replies.
    pub fn to_partition_error(&self) -> pb::PartitionError {
        pb::PartitionError {
            reason: self.code.to_proto().into(),
            message: self.message.clone(),
            retryable: self.retryable(),
            leader_id: self.leader.as_ref().and_then(|l| l.broker()).map(|b| b.0),
            leader_address: self.leader.as_ref().map(|l| l.address.clone()),
        }
    }

    /// Reads a per-partition error of a batch reply.
    pub fn from_partition_error(error: &pb::PartitionError) -> Self {
        let code = pb::ErrorReason::try_from(error.reason)
            .ok()
            .and_then(ErrorCode::from_proto)
            .unwrap_or(ErrorCode::Internal);
        let leader = match (error.leader_id, &error.leader_address) {
            (Some(id), Some(address)) => Some(LeaderHint {
                id: u64::from(id),
                address: address.clone(),
            }),
            _ => None,
        };
        Self {
            code,
            message: error.message.clone(),
            leader,
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        let mut metadata = HashMap::from([("retryable".to_owned(), error.retryable().to_string())]);
        if let Some(leader) = &error.leader {
            metadata.insert("leader_id".to_owned(), leader.id.to_string());
            metadata.insert("leader_address".to_owned(), leader.address.clone());
        }
        tonic::Status::with_error_details(
            error.code.grpc_code(),
            error.message,
            ErrorDetails::with_error_info(error.code.as_str(), ERROR_DOMAIN, metadata),
        )
    }
}

/// `impl From<$error> for tonic::Status` through the crate's one `From<&$error> for ApiError`
/// mapping, so a handler can return the crate's error with `?`.
#[macro_export]
macro_rules! status_from_api_error {
    ($error:ty) => {
        impl From<$error> for ::tonic::Status {
            fn from(error: $error) -> Self {
                $crate::error::ApiError::from(&error).into()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_keeps_code_reason_and_leader() {
        for code in ErrorCode::ALL {
            let error = ApiError::new(code, "something").with_leader(Some(LeaderHint {
                id: 3,
                address: "127.0.0.3:7070".into(),
            }));
            let status = tonic::Status::from(error.clone());
            assert_eq!(status.code(), code.grpc_code());
            assert_eq!(ApiError::from_status(&status), error);
        }
    }

    #[test]
    fn a_control_plane_leader_id_is_not_truncated() {
        let id = u64::from(u32::MAX) + 7;
        let error =
            ApiError::new(ErrorCode::NotLeader, "elsewhere").with_leader(Some(LeaderHint {
                id,
                address: "127.0.0.9:7080".into(),
            }));
        let back = ApiError::from_status(&tonic::Status::from(error));
        assert_eq!(back.leader.map(|l| l.id), Some(id));
    }

    #[test]
    fn names_match_the_proto_enum() {
        assert_eq!(ErrorCode::NotLeader.as_str(), "NOT_LEADER");
        assert_eq!(
            ErrorCode::from_name("OFFSET_OUT_OF_RANGE"),
            Some(ErrorCode::OffsetOutOfRange)
        );
    }

    #[test]
    fn plain_statuses_are_classified_by_code() {
        let error = ApiError::from_status(&tonic::Status::unavailable("connection refused"));
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert!(error.retryable());
        let error = ApiError::from_status(&tonic::Status::invalid_argument("x"));
        assert!(!error.retryable());
    }

    #[test]
    fn invalid_names_the_field() {
        let error = ApiError::invalid("topic", "must not be empty");
        assert_eq!(error.message, "topic: must not be empty");
        assert_eq!(error.code.grpc_code(), Code::InvalidArgument);
    }
}

//! The one error type of every client crate (`mq-client`, `mq-producer`, `mq-consumer`).

use std::time::Duration;

use mq_common::control::Refusal;
use mq_common::error::{ApiError, ErrorCode, LeaderHint};

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
        Self::Api(transport_failure(status).unwrap_or_else(|| ApiError::from_status(status)))
    }
}

/// What a failure no server answered says about the request, or `None` for a server's answer.
///
/// tonic builds such a status from the transport's error and keeps that error as its source; a
/// status read off the wire has none. Its code alone conflates two cases a client must tell
/// apart: the request never left (hyper gave it back when the connection closed, CANCELLED;
/// the peer refused the stream; the connection could not be made, UNAVAILABLE), which is safe
/// to send anywhere again, and a connection that broke after the request was handed to it
/// (whatever hyper or h2 reported), whose request may or may not have been applied.
fn transport_failure(status: &tonic::Status) -> Option<ApiError> {
    use std::error::Error as _;

    let source = status.source()?;
    let chain = || std::iter::successors(Some(source), |&error| error.source());
    let not_sent = chain().any(|error| {
        error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
            || error
                .downcast_ref::<h2::Error>()
                .is_some_and(|error| error.reason() == Some(h2::Reason::REFUSED_STREAM))
    });
    let on_a_connection = chain().any(|error| {
        error.downcast_ref::<hyper::Error>().is_some()
            || error.downcast_ref::<h2::Error>().is_some()
    });
    let (code, what) = if not_sent || status.code() == tonic::Code::Unavailable && !on_a_connection
    {
        (ErrorCode::Unavailable, "request not sent")
    } else {
        (
            ErrorCode::ConnectionLost,
            "the connection broke before an answer",
        )
    };
    Some(ApiError::new(code, format!("{what}: {}", status.message())))
}

impl Refusal for ClientError {
    fn leader(&self) -> Option<&LeaderHint> {
        match self {
            Self::Api(error) => error.leader.as_ref(),
            _ => None,
        }
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

    /// Calls `GetMetadata` on `address` and returns how the client reads the failure.
    async fn call(address: std::net::SocketAddr) -> ClientError {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("uri")
            .connect_lazy();
        let status = mq_proto::v1::metadata_client::MetadataClient::new(channel)
            .get_metadata(mq_proto::v1::GetMetadataRequest::default())
            .await
            .expect_err("no server answers");
        ClientError::from(status)
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_since_nothing_was_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let error = call(address).await;
        assert_eq!(error.code(), ErrorCode::Unavailable, "{error}");
        assert!(error.to_string().contains("request not sent"), "{error}");
    }

    #[tokio::test]
    async fn a_connection_cut_after_the_request_arrived_is_connection_lost() {
        use tokio::io::AsyncReadExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            // Reads HTTP/2 frames after the client preface until the request's HEADERS frame
            // (type 1) has arrived, then drops the connection unanswered.
            let mut preface = [0u8; 24];
            socket.read_exact(&mut preface).await.expect("preface");
            loop {
                let mut header = [0u8; 9];
                socket.read_exact(&mut header).await.expect("frame header");
                let length = u32::from_be_bytes([0, header[0], header[1], header[2]]);
                let mut payload = vec![0u8; length as usize];
                socket
                    .read_exact(&mut payload)
                    .await
                    .expect("frame payload");
                if header[3] == 1 {
                    break;
                }
            }
        });
        let error = call(address).await;
        server.await.expect("server");
        assert_eq!(error.code(), ErrorCode::ConnectionLost, "{error}");
        assert!(error.is_retryable());
    }

    #[tokio::test]
    async fn a_request_hyper_gave_back_unsent_is_unavailable() {
        // hyper cancels a request it never handed to a connection (the connection closed
        // first): exactly the error a request on a connection to a killed server can get.
        let (io, _peer) = tokio::io::duplex(1024);
        let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, String>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(io),
        )
        .await
        .expect("handshake");
        drop(connection);
        let error = sender
            .send_request(hyper::Request::new(String::new()))
            .await
            .expect_err("no connection");
        assert!(error.is_canceled(), "{error}");
        let status = tonic::Status::from_error(Box::new(error));
        assert_eq!(status.code(), tonic::Code::Cancelled);
        let error = ClientError::from(status);
        assert_eq!(error.code(), ErrorCode::Unavailable, "{error}");
    }

    #[test]
    fn a_status_a_server_sent_keeps_its_code() {
        for (status, code) in [
            (
                tonic::Status::unavailable("shutting down"),
                ErrorCode::Unavailable,
            ),
            (tonic::Status::cancelled("gone"), ErrorCode::Timeout),
            (tonic::Status::internal("bug"), ErrorCode::Internal),
        ] {
            assert_eq!(ClientError::from(status).code(), code);
        }
    }
}

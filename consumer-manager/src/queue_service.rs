//! `mq.v1.Queues`: handlers that validate and translate requests and replies; the queue
//! bookkeeping is the [`ConsumerManager`]'s.

use std::sync::Arc;
use std::time::Duration;

use mq_common::ids::TopicName;
use mq_common::records::proto::to_consumed;
use mq_proto::v1 as pb;
use mq_proto::v1::queues_server::{Queues, QueuesServer};
use tonic::{Request, Response, Status};

use crate::error::CgError;
use crate::manager::{ConsumerManager, QueueStart};
use crate::queue::QueueConfig;

/// Ack deadline bounds and default, ms.
const ACK_DEADLINE: (u32, u32, u32) = (100, 600_000, 30_000);
const DEFAULT_MAX_DELIVERIES: u32 = 5;
const MAX_MAX_DELIVERIES: u32 = 1_000;
const DEFAULT_RECEIVE: u32 = 100;
const MAX_RECEIVE: u32 = 1_000;
const MAX_RECEIVE_WAIT_MS: u32 = 60_000;
const MAX_NACK_DELAY_MS: u32 = 3_600_000;
/// Most lease ids in one ack, nack or extension.
const MAX_LEASES: usize = 10_000;

#[derive(Debug, Clone)]
pub struct QueuesService {
    manager: Arc<ConsumerManager>,
}

impl QueuesService {
    pub fn new(manager: Arc<ConsumerManager>) -> Self {
        Self { manager }
    }

    pub fn server(&self) -> QueuesServer<Self> {
        QueuesServer::new(self.clone())
    }
}

fn name(field: &str, name: &str) -> Result<String, CgError> {
    TopicName::new(name)
        .map(|name| name.as_str().to_owned())
        .map_err(|problem| CgError::invalid(field, problem))
}

/// The effective config of queue `queue` from the request (defaults filled in, bounds
/// checked), and where it starts.
pub fn queue_config(
    queue: &str,
    config: Option<pb::QueueConfig>,
) -> Result<(QueueConfig, QueueStart), CgError> {
    let config = config.ok_or_else(|| CgError::invalid("config", "required"))?;
    let topic = name("config.topic", &config.topic)?;
    let (min, max, default) = ACK_DEADLINE;
    let ack_deadline_ms = match config.ack_deadline_ms {
        0 => default,
        v if (min..=max).contains(&v) => v,
        v => {
            return Err(CgError::invalid(
                "config.ack_deadline_ms",
                format!("must be between {min} and {max} ms (0 for {default}), got {v}"),
            ));
        }
    };
    let max_deliveries = match config.max_deliveries {
        0 => DEFAULT_MAX_DELIVERIES,
        v if v <= MAX_MAX_DELIVERIES => v,
        v => {
            return Err(CgError::invalid(
                "config.max_deliveries",
                format!(
                    "must be at most {MAX_MAX_DELIVERIES} (0 for {DEFAULT_MAX_DELIVERIES}), got {v}"
                ),
            ));
        }
    };
    let dead_letter_topic = match config.dead_letter_topic.as_str() {
        "" => name("config.topic", &format!("{topic}.{queue}.dlq"))?,
        other => name("config.dead_letter_topic", other)?,
    };
    if dead_letter_topic == topic {
        return Err(CgError::invalid(
            "config.dead_letter_topic",
            "must differ from the queue's topic",
        ));
    }
    let start = match pb::StartPosition::try_from(config.start) {
        Ok(pb::StartPosition::Unspecified | pb::StartPosition::Latest) => QueueStart::Latest,
        Ok(pb::StartPosition::Earliest) => QueueStart::Earliest,
        Err(_) => {
            return Err(CgError::invalid(
                "config.start",
                format!("unknown start position {}", config.start),
            ));
        }
    };
    Ok((
        QueueConfig {
            topic,
            ack_deadline_ms,
            max_deliveries,
            dead_letter_topic,
            key_ordered: config.key_ordered,
        },
        start,
    ))
}

fn config_to_proto(config: QueueConfig) -> pb::QueueConfig {
    pb::QueueConfig {
        topic: config.topic,
        ack_deadline_ms: config.ack_deadline_ms,
        max_deliveries: config.max_deliveries,
        dead_letter_topic: config.dead_letter_topic,
        key_ordered: config.key_ordered,
        start: pb::StartPosition::Unspecified.into(),
    }
}

fn lease_ids(ids: Vec<String>) -> Result<Vec<String>, CgError> {
    match ids.len() {
        0 => Err(CgError::invalid("lease_ids", "name at least one lease")),
        n if n > MAX_LEASES => Err(CgError::invalid(
            "lease_ids",
            format!("at most {MAX_LEASES} per call, got {n}"),
        )),
        _ => Ok(ids),
    }
}

#[tonic::async_trait]
impl Queues for QueuesService {
    #[tracing::instrument(level = "info", skip_all, fields(queue = %request.get_ref().name))]
    async fn create_queue(
        &self,
        request: Request<pb::CreateQueueRequest>,
    ) -> Result<Response<pb::CreateQueueResponse>, Status> {
        let request = request.into_inner();
        let queue = name("name", &request.name)?;
        let (config, start) = queue_config(&queue, request.config)?;
        let config = self.manager.create_queue(&queue, config, start).await?;
        Ok(Response::new(pb::CreateQueueResponse {
            config: Some(config_to_proto(config)),
        }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(queue = %request.get_ref().name))]
    async fn delete_queue(
        &self,
        request: Request<pb::DeleteQueueRequest>,
    ) -> Result<Response<pb::DeleteQueueResponse>, Status> {
        let queue = name("name", &request.into_inner().name)?;
        self.manager.delete_queue(&queue).await?;
        Ok(Response::new(pb::DeleteQueueResponse {}))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_queues(
        &self,
        _request: Request<pb::ListQueuesRequest>,
    ) -> Result<Response<pb::ListQueuesResponse>, Status> {
        let queues = self
            .manager
            .list_queues()
            .await?
            .into_iter()
            .map(|(name, config)| pb::QueueSummary {
                name,
                config: Some(config_to_proto(config)),
            })
            .collect();
        Ok(Response::new(pb::ListQueuesResponse { queues }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(queue = %request.get_ref().name))]
    async fn describe_queue(
        &self,
        request: Request<pb::DescribeQueueRequest>,
    ) -> Result<Response<pb::DescribeQueueResponse>, Status> {
        let queue = name("name", &request.into_inner().name)?;
        let view = self.manager.describe_queue(&queue).await?;
        Ok(Response::new(pb::DescribeQueueResponse {
            name: view.name,
            config: Some(config_to_proto(view.config)),
            partitions: view
                .partitions
                .into_iter()
                .map(
                    |(partition, settled, high_watermark, in_flight)| pb::QueuePartitionStatus {
                        partition,
                        settled_floor: settled.floor,
                        settled_above_floor: settled.above.len() as u64,
                        high_watermark,
                        in_flight: in_flight as u64,
                    },
                )
                .collect(),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(queue = %request.get_ref().queue))]
    async fn receive(
        &self,
        request: Request<pb::ReceiveRequest>,
    ) -> Result<Response<pb::ReceiveResponse>, Status> {
        let request = request.into_inner();
        let queue = name("queue", &request.queue)?;
        let max = match request.max_messages {
            0 => DEFAULT_RECEIVE,
            v if v <= MAX_RECEIVE => v,
            v => {
                return Err(CgError::invalid(
                    "max_messages",
                    format!("must be at most {MAX_RECEIVE}, got {v}"),
                )
                .into());
            }
        };
        if request.max_wait_ms > MAX_RECEIVE_WAIT_MS {
            return Err(CgError::invalid(
                "max_wait_ms",
                format!(
                    "must be at most {MAX_RECEIVE_WAIT_MS}, got {}",
                    request.max_wait_ms
                ),
            )
            .into());
        }
        let wait = Duration::from_millis(u64::from(request.max_wait_ms));
        let delivered = self.manager.receive(&queue, max as usize, wait).await?;
        Ok(Response::new(pb::ReceiveResponse {
            messages: delivered
                .into_iter()
                .map(|d| pb::QueueMessage {
                    lease_id: d.lease_id,
                    partition: d.partition,
                    record: Some(to_consumed(d.offset, d.record)),
                    delivery_attempt: d.attempt,
                    ack_deadline_ms: d.deadline_ms,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(queue = %request.get_ref().queue, leases = request.get_ref().lease_ids.len()))]
    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let request = request.into_inner();
        let queue = name("queue", &request.queue)?;
        let ids = lease_ids(request.lease_ids)?;
        if let Err(error) = self.manager.ack(&queue, &ids).await {
            tracing::debug!(queue, leases = ids.len(), %error, "ack refused");
            return Err(error.into());
        }
        Ok(Response::new(pb::AckResponse {}))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(queue = %request.get_ref().queue, leases = request.get_ref().lease_ids.len()))]
    async fn nack(
        &self,
        request: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
        let request = request.into_inner();
        let queue = name("queue", &request.queue)?;
        let ids = lease_ids(request.lease_ids)?;
        if request.delay_ms > MAX_NACK_DELAY_MS {
            return Err(CgError::invalid(
                "delay_ms",
                format!(
                    "must be at most {MAX_NACK_DELAY_MS}, got {}",
                    request.delay_ms
                ),
            )
            .into());
        }
        self.manager.nack(&queue, &ids, request.delay_ms).await?;
        Ok(Response::new(pb::NackResponse {}))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(queue = %request.get_ref().queue, leases = request.get_ref().lease_ids.len()))]
    async fn extend_leases(
        &self,
        request: Request<pb::ExtendLeasesRequest>,
    ) -> Result<Response<pb::ExtendLeasesResponse>, Status> {
        let request = request.into_inner();
        let queue = name("queue", &request.queue)?;
        let ids = lease_ids(request.lease_ids)?;
        let (min, max, _) = ACK_DEADLINE;
        if !(min..=max).contains(&request.ack_deadline_ms) {
            return Err(CgError::invalid(
                "ack_deadline_ms",
                format!(
                    "must be between {min} and {max} ms, got {}",
                    request.ack_deadline_ms
                ),
            )
            .into());
        }
        self.manager
            .extend_leases(&queue, &ids, request.ack_deadline_ms)
            .await?;
        Ok(Response::new(pb::ExtendLeasesResponse {}))
    }
}

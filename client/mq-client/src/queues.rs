//! Queue-subscription calls (`mq.v1.Queues`): receive, ack, nack and lease extension for
//! `mq-consumer`'s queue consumer, and the queue administration `mqctl` uses, with their
//! domain types (converted from and to protobuf here). Any broker forwards them to the
//! consumer manager; not-leader answers are followed like other control calls.

use std::time::Duration;

use mq_common::error::{ApiError, ErrorCode};
use mq_common::records::Record;
use mq_proto::v1 as pb;
use mq_proto::v1::queues_client::QueuesClient;

use crate::routing::{repeatable, reroutable};
use crate::types::consumed_from_proto;
use crate::{Client, ClientError};

/// Where a new queue starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueStart {
    /// The first offset still stored.
    Earliest,
    /// The high watermark: only records produced from now on.
    #[default]
    Latest,
}

/// Settings of a queue subscription to create; unset fields take the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewQueue {
    /// The topic the queue delivers (it must exist).
    pub topic: String,
    /// How long a lease lasts unless acked, nacked or extended (default 30 s).
    pub ack_deadline: Option<Duration>,
    /// Deliveries after which a message goes to the dead-letter topic (default 5).
    pub max_deliveries: Option<u32>,
    /// Where dead letters go (default `<topic>.<queue>.dlq`), created when missing.
    pub dead_letter_topic: Option<String>,
    /// Never two unsettled messages of one key in flight.
    pub key_ordered: bool,
    pub start: QueueStart,
}

impl NewQueue {
    /// A queue on `topic` with the defaults.
    pub fn on(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            ..Self::default()
        }
    }

    pub fn ack_deadline(mut self, ack_deadline: Duration) -> Self {
        self.ack_deadline = Some(ack_deadline);
        self
    }

    pub fn max_deliveries(mut self, max_deliveries: u32) -> Self {
        self.max_deliveries = Some(max_deliveries);
        self
    }

    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter_topic = Some(topic.into());
        self
    }

    pub fn key_ordered(mut self) -> Self {
        self.key_ordered = true;
        self
    }

    pub fn start(mut self, start: QueueStart) -> Self {
        self.start = start;
        self
    }
}

/// A queue's effective settings (defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub topic: String,
    pub ack_deadline: Duration,
    pub max_deliveries: u32,
    pub dead_letter_topic: String,
    pub key_ordered: bool,
}

/// A queue, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSummary {
    pub name: String,
    pub config: QueueConfig,
}

/// A queue's settings and per-partition progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDescription {
    pub name: String,
    pub config: QueueConfig,
    pub partitions: Vec<QueuePartitionStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePartitionStatus {
    pub partition: u32,
    /// Every offset below this is settled (acked or dead-lettered).
    pub settled_floor: u64,
    /// Offsets at or above the floor that are settled.
    pub settled_above_floor: u64,
    /// The partition's high watermark, when it could be read.
    pub high_watermark: Option<u64>,
    /// Messages leased right now.
    pub in_flight: u64,
}

/// One leased message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// Names this delivery in `ack`, `nack` and `extend_leases`.
    pub lease_id: String,
    pub partition: u32,
    pub offset: u64,
    pub record: Record,
    /// 1 for the first delivery.
    pub delivery_attempt: u32,
    /// When the lease ends unless extended, ms since the Unix epoch.
    pub ack_deadline_ms: i64,
}

impl Client {
    /// Creates a queue subscription named `name` (and its dead-letter topic when missing);
    /// returns its effective settings.
    pub async fn create_queue(
        &self,
        name: &str,
        queue: NewQueue,
    ) -> Result<QueueConfig, ClientError> {
        let request = create_request(name, queue);
        let response = self
            .control(reroutable, |channel| {
                let request = request.clone();
                async move { QueuesClient::new(channel).create_queue(request).await }
            })
            .await?
            .into_inner();
        config_from_proto(response.config, "create queue")
    }

    /// Deletes a queue subscription and its state.
    pub async fn delete_queue(&self, name: &str) -> Result<(), ClientError> {
        let request = pb::DeleteQueueRequest {
            name: name.to_owned(),
        };
        self.control(reroutable, |channel| {
            let request = request.clone();
            async move { QueuesClient::new(channel).delete_queue(request).await }
        })
        .await?;
        Ok(())
    }

    /// Every queue subscription with its settings.
    pub async fn list_queues(&self) -> Result<Vec<QueueSummary>, ClientError> {
        let response = self
            .control(repeatable, |channel| async move {
                QueuesClient::new(channel)
                    .list_queues(pb::ListQueuesRequest {})
                    .await
            })
            .await?
            .into_inner();
        response
            .queues
            .into_iter()
            .map(|q| {
                Ok(QueueSummary {
                    name: q.name,
                    config: config_from_proto(q.config, "list queues")?,
                })
            })
            .collect()
    }

    /// A queue's settings and per-partition progress.
    pub async fn describe_queue(&self, name: &str) -> Result<QueueDescription, ClientError> {
        let request = pb::DescribeQueueRequest {
            name: name.to_owned(),
        };
        let response = self
            .control(repeatable, |channel| {
                let request = request.clone();
                async move { QueuesClient::new(channel).describe_queue(request).await }
            })
            .await?
            .into_inner();
        Ok(QueueDescription {
            name: response.name,
            config: config_from_proto(response.config, "describe queue")?,
            partitions: response
                .partitions
                .into_iter()
                .map(|p| QueuePartitionStatus {
                    partition: p.partition,
                    settled_floor: p.settled_floor,
                    settled_above_floor: p.settled_above_floor,
                    high_watermark: p.high_watermark,
                    in_flight: p.in_flight,
                })
                .collect(),
        })
    }

    /// Leases up to `max_messages` messages of `queue` (0: the server's default, 100),
    /// waiting up to `max_wait` for a first one (capped at half the client's request timeout,
    /// so the call never times out while waiting).
    pub async fn receive(
        &self,
        queue: &str,
        max_messages: u32,
        max_wait: Duration,
    ) -> Result<Vec<QueueMessage>, ClientError> {
        let cap = self.config().request_timeout.as_millis() / 2;
        let request = pb::ReceiveRequest {
            queue: queue.to_owned(),
            max_messages,
            max_wait_ms: millis(max_wait).min(cap.min(u128::from(u32::MAX)) as u32),
        };
        let response = self
            .control(reroutable, |channel| {
                let request = request.clone();
                async move { QueuesClient::new(channel).receive(request).await }
            })
            .await?
            .into_inner();
        Ok(response
            .messages
            .into_iter()
            .filter_map(|m| {
                let consumed = consumed_from_proto(m.record?);
                Some(QueueMessage {
                    lease_id: m.lease_id,
                    partition: m.partition,
                    offset: consumed.offset,
                    record: consumed.record,
                    delivery_attempt: m.delivery_attempt,
                    ack_deadline_ms: m.ack_deadline_ms,
                })
            })
            .collect())
    }

    /// Settles leased messages (all or nothing; repeating an ack succeeds).
    pub async fn ack(&self, queue: &str, lease_ids: Vec<String>) -> Result<(), ClientError> {
        let request = pb::AckRequest {
            queue: queue.to_owned(),
            lease_ids,
        };
        self.control(reroutable, |channel| {
            let request = request.clone();
            async move { QueuesClient::new(channel).ack(request).await }
        })
        .await?;
        Ok(())
    }

    /// Gives leased messages back for redelivery after `delay`.
    pub async fn nack(
        &self,
        queue: &str,
        lease_ids: Vec<String>,
        delay: Duration,
    ) -> Result<(), ClientError> {
        let request = pb::NackRequest {
            queue: queue.to_owned(),
            lease_ids,
            delay_ms: millis(delay),
        };
        self.control(reroutable, |channel| {
            let request = request.clone();
            async move { QueuesClient::new(channel).nack(request).await }
        })
        .await?;
        Ok(())
    }

    /// Moves the deadline of leased messages to now + `ack_deadline`.
    pub async fn extend_leases(
        &self,
        queue: &str,
        lease_ids: Vec<String>,
        ack_deadline: Duration,
    ) -> Result<(), ClientError> {
        let request = pb::ExtendLeasesRequest {
            queue: queue.to_owned(),
            lease_ids,
            ack_deadline_ms: millis(ack_deadline),
        };
        self.control(reroutable, |channel| {
            let request = request.clone();
            async move { QueuesClient::new(channel).extend_leases(request).await }
        })
        .await?;
        Ok(())
    }
}

/// The request creating queue `name`: unset settings go as zero (or empty), which the server
/// reads as its defaults.
fn create_request(name: &str, queue: NewQueue) -> pb::CreateQueueRequest {
    let start = match queue.start {
        QueueStart::Earliest => pb::StartPosition::Earliest,
        QueueStart::Latest => pb::StartPosition::Latest,
    };
    pb::CreateQueueRequest {
        name: name.to_owned(),
        config: Some(pb::QueueConfig {
            topic: queue.topic,
            ack_deadline_ms: queue.ack_deadline.map_or(0, millis),
            max_deliveries: queue.max_deliveries.unwrap_or(0),
            dead_letter_topic: queue.dead_letter_topic.unwrap_or_default(),
            key_ordered: queue.key_ordered,
            start: start.into(),
        }),
    }
}

/// `duration` in whole milliseconds, at most `u32::MAX`.
fn millis(duration: Duration) -> u32 {
    duration.as_millis().min(u128::from(u32::MAX)) as u32
}

/// A queue's settings from an answer that must carry them.
fn config_from_proto(
    config: Option<pb::QueueConfig>,
    call: &str,
) -> Result<QueueConfig, ClientError> {
    let config = config.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Internal,
            format!("{call} response without a config"),
        )
    })?;
    Ok(QueueConfig {
        topic: config.topic,
        ack_deadline: Duration::from_millis(u64::from(config.ack_deadline_ms)),
        max_deliveries: config.max_deliveries,
        dead_letter_topic: config.dead_letter_topic,
        key_ordered: config.key_ordered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_queue_sends_its_settings_and_zero_for_those_left_to_the_server() {
        let request = create_request(
            "work",
            NewQueue::on("jobs")
                .ack_deadline(Duration::from_millis(1_500))
                .max_deliveries(3)
                .start(QueueStart::Earliest),
        );
        assert_eq!(request.name, "work");
        let config = request.config.expect("a config");
        assert_eq!(
            (
                config.topic.as_str(),
                config.ack_deadline_ms,
                config.max_deliveries
            ),
            ("jobs", 1_500, 3)
        );
        assert_eq!(config.start, i32::from(pb::StartPosition::Earliest));
        let defaults = create_request("work", NewQueue::on("jobs"))
            .config
            .expect("a config");
        assert_eq!(
            (
                defaults.ack_deadline_ms,
                defaults.max_deliveries,
                defaults.dead_letter_topic.as_str(),
                defaults.key_ordered,
            ),
            (0, 0, "", false)
        );
        assert_eq!(defaults.start, i32::from(pb::StartPosition::Latest));
        assert_eq!(millis(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn an_answer_without_a_queue_config_is_an_internal_error() {
        let error = config_from_proto(None, "describe queue").expect_err("no config");
        assert_eq!(error.code(), ErrorCode::Internal);
        let config = config_from_proto(
            Some(pb::QueueConfig {
                topic: "jobs".into(),
                ack_deadline_ms: 30_000,
                max_deliveries: 5,
                dead_letter_topic: "jobs.work.dlq".into(),
                key_ordered: true,
                start: 0,
            }),
            "describe queue",
        )
        .expect("a config");
        assert_eq!(config.ack_deadline, Duration::from_secs(30));
        assert_eq!(config.dead_letter_topic, "jobs.work.dlq");
    }
}

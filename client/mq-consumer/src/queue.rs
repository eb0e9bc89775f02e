//! [`QueueConsumer`]: one consumer of a queue subscription, which shares every partition of
//! the queue's topic with the queue's other consumers. Messages are leased: ack each when
//! processed, nack it to have it delivered again later, or extend its lease while working on
//! it; a lease that runs out is delivered again (to any consumer).

use std::time::Duration;

use mq_client::proto as pb;
use mq_client::{Client, ClientError, ConsumedRecord, Record};

use crate::ConsumerConfig;

/// One leased message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// Names this delivery in [`QueueConsumer::ack`], `nack` and `extend`.
    pub lease_id: String,
    pub partition: u32,
    pub offset: u64,
    pub record: Record,
    /// 1 for the first delivery.
    pub delivery_attempt: u32,
    /// When the lease ends unless extended, ms since the Unix epoch.
    pub ack_deadline_ms: i64,
}

/// A consumer of one queue subscription (create the queue first: `mqctl queue create` or
/// [`Client::create_queue`]).
#[derive(Debug, Clone)]
pub struct QueueConsumer {
    client: Client,
    queue: String,
}

impl QueueConsumer {
    pub fn new(config: ConsumerConfig, queue: impl Into<String>) -> Result<Self, ClientError> {
        Ok(Self {
            client: Client::new(config.client)?,
            queue: queue.into(),
        })
    }

    /// Leases up to `max` messages, waiting up to `wait` for a first one; empty when none
    /// came.
    pub async fn receive(
        &self,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<QueueMessage>, ClientError> {
        let response = self
            .client
            .receive(pb::ReceiveRequest {
                queue: self.queue.clone(),
                max_messages: max,
                max_wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
            })
            .await?;
        Ok(response
            .messages
            .into_iter()
            .filter_map(|m| {
                let consumed = ConsumedRecord::from_proto(m.record?);
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

    /// Settles messages for good (all or nothing: `LEASE_EXPIRED` when a lease ran out or the
    /// message was delivered again since; acking twice succeeds). After any other error the
    /// outcome is unknown (the answer may have been lost after the ack was committed): the
    /// messages are either settled or delivered again, never lost.
    pub async fn ack(
        &self,
        lease_ids: impl IntoIterator<Item = String>,
    ) -> Result<(), ClientError> {
        self.client
            .ack(pb::AckRequest {
                queue: self.queue.clone(),
                lease_ids: lease_ids.into_iter().collect(),
            })
            .await
            .map(drop)
    }

    /// Gives messages back, to be delivered again after `delay` (or moved to the dead-letter
    /// topic once they were delivered `max_deliveries` times).
    pub async fn nack(
        &self,
        lease_ids: impl IntoIterator<Item = String>,
        delay: Duration,
    ) -> Result<(), ClientError> {
        self.client
            .nack(pb::NackRequest {
                queue: self.queue.clone(),
                lease_ids: lease_ids.into_iter().collect(),
                delay_ms: delay.as_millis().min(u128::from(u32::MAX)) as u32,
            })
            .await
            .map(drop)
    }

    /// Moves the leases' deadline to now + `deadline`.
    pub async fn extend(
        &self,
        lease_ids: impl IntoIterator<Item = String>,
        deadline: Duration,
    ) -> Result<(), ClientError> {
        self.client
            .extend_leases(pb::ExtendLeasesRequest {
                queue: self.queue.clone(),
                lease_ids: lease_ids.into_iter().collect(),
                ack_deadline_ms: deadline.as_millis().min(u128::from(u32::MAX)) as u32,
            })
            .await
            .map(drop)
    }
}

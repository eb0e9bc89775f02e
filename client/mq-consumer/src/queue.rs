//! [`QueueConsumer`]: one consumer of a queue subscription, which shares every partition of
//! the queue's topic with the queue's other consumers. Messages are leased: ack each when
//! processed, nack it to have it delivered again later, or extend its lease while working on
//! it; a lease that runs out is delivered again (to any consumer).

use std::time::Duration;

use mq_client::{Client, ClientError, QueueMessage};

use crate::ConsumerConfig;

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
        self.client.receive(&self.queue, max, wait).await
    }

    /// Settles messages for good (all or nothing: `LEASE_EXPIRED` when a lease ran out or the
    /// message was delivered again since; acking twice succeeds). After any other error the
    /// outcome is unknown (the answer may have been lost after the ack was committed): the
    /// messages are either settled or delivered again, never lost.
    pub async fn ack(
        &self,
        lease_ids: impl IntoIterator<Item = String>,
    ) -> Result<(), ClientError> {
        let lease_ids = lease_ids.into_iter().collect();
        self.client.ack(&self.queue, lease_ids).await
    }

    /// Gives messages back, to be delivered again after `delay` (or moved to the dead-letter
    /// topic once they were delivered `max_deliveries` times).
    pub async fn nack(
        &self,
        lease_ids: impl IntoIterator<Item = String>,
        delay: Duration,
    ) -> Result<(), ClientError> {
        let lease_ids = lease_ids.into_iter().collect();
        self.client.nack(&self.queue, lease_ids, delay).await
    }

    /// Moves the leases' deadline to now + `deadline`.
    pub async fn extend(
        &self,
        lease_ids: impl IntoIterator<Item = String>,
        deadline: Duration,
    ) -> Result<(), ClientError> {
        let lease_ids = lease_ids.into_iter().collect();
        self.client
            .extend_leases(&self.queue, lease_ids, deadline)
            .await
    }
}

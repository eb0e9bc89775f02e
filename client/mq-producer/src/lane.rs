//! One partition's lane: a task that gathers the partition's records into batches (by size
//! and linger), takes each batch's place in the partition's produce order, and sends it,
//! resolving every record of the batch exactly once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mq_client::{Client, ClientError, Compression, EncodedBatch, Record};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

use crate::ProducerConfig;
use crate::record::Delivery;

/// Turns true when a batch has been resolved (acknowledged or failed).
pub type BatchDone = watch::Receiver<bool>;

/// How a record's outcome reaches the application.
pub enum Reply {
    Future(oneshot::Sender<Result<Delivery, ClientError>>),
    Callback(Box<dyn FnOnce(Result<Delivery, ClientError>) + Send>),
}

impl Reply {
    fn resolve(self, outcome: Result<Delivery, ClientError>) {
        match self {
            // The application may have dropped the future: nobody to tell.
            Self::Future(sender) => drop(sender.send(outcome)),
            Self::Callback(callback) => callback(outcome),
        }
    }
}

/// A record waiting in a lane, with the buffer space it holds until it is resolved.
pub struct Pending {
    pub record: Record,
    pub reply: Reply,
    pub permit: OwnedSemaphorePermit,
    pub enqueued: Instant,
}

pub enum LaneMessage {
    Record(Pending),
    /// Send what is gathered now; answer with every batch not yet resolved.
    Flush(oneshot::Sender<Vec<BatchDone>>),
}

/// Records gathered for the next batch.
struct OpenBatch {
    encoded: Vec<u8>,
    records: Vec<(i64, Reply, OwnedSemaphorePermit)>,
    first_enqueued: Instant,
}

struct Lane {
    client: Client,
    config: Arc<ProducerConfig>,
    topic: Arc<str>,
    partition: u32,
    open: Option<OpenBatch>,
    /// Batches sent and not yet resolved, oldest first.
    in_flight: VecDeque<BatchDone>,
}

/// Runs a lane until its sender is dropped and everything gathered has been sent.
pub async fn run(
    client: Client,
    config: Arc<ProducerConfig>,
    topic: Arc<str>,
    partition: u32,
    mut messages: mpsc::UnboundedReceiver<LaneMessage>,
) {
    let mut lane = Lane {
        client,
        config,
        topic,
        partition,
        open: None,
        in_flight: VecDeque::new(),
    };
    loop {
        let linger_until = lane
            .open
            .as_ref()
            .map(|open| open.first_enqueued + lane.config.linger);
        let message = tokio::select! {
            biased;
            message = messages.recv() => message,
            () = sleep_until(linger_until) => {
                lane.send_open().await;
                continue;
            }
        };
        match message {
            Some(LaneMessage::Record(pending)) => {
                lane.add(pending).await;
                // Take whatever else is queued before deciding, so a busy lane batches.
                while let Ok(message) = messages.try_recv() {
                    match message {
                        LaneMessage::Record(pending) => lane.add(pending).await,
                        LaneMessage::Flush(reply) => lane.flush(reply).await,
                    }
                }
                if lane.config.linger.is_zero() {
                    lane.send_open().await;
                }
            }
            Some(LaneMessage::Flush(reply)) => lane.flush(reply).await,
            None => {
                lane.send_open().await;
                return;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => futures::future::pending().await,
    }
}

impl Lane {
    async fn add(&mut self, pending: Pending) {
        let fits = self.open.as_ref().is_none_or(|open| {
            open.encoded.len() + pending.record.encoded_len() <= self.config.batch_bytes
        });
        if !fits {
            self.send_open().await;
        }
        let open = self.open.get_or_insert_with(|| OpenBatch {
            encoded: Vec::with_capacity(self.config.batch_bytes.min(1 << 20)),
            records: Vec::new(),
            first_enqueued: pending.enqueued,
        });
        mq_client::encode_records([&pending.record], &mut open.encoded);
        open.records
            .push((pending.record.timestamp_ms, pending.reply, pending.permit));
        if open.encoded.len() >= self.config.batch_bytes {
            self.send_open().await;
        }
    }

    async fn flush(&mut self, reply: oneshot::Sender<Vec<BatchDone>>) {
        self.send_open().await;
        self.in_flight.retain(|done| !*done.borrow());
        // The flusher may have given up waiting: nothing to do then.
        drop(reply.send(self.in_flight.iter().cloned().collect()));
    }

    /// Sends the open batch, if any: waits for a place in the partition's order (at most five
    /// batches in flight), then sends in the background.
    async fn send_open(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let count = open.records.len() as u32;
        let slot = self
            .client
            .reserve(&self.topic, self.partition, count)
            .await;
        let (done_sender, done) = watch::channel(false);
        self.in_flight.retain(|done| !*done.borrow());
        self.in_flight.push_back(done);
        let client = self.client.clone();
        let topic = self.topic.clone();
        let partition = self.partition;
        let compression = self.config.compression;
        let deadline = open.first_enqueued + self.config.delivery_timeout;
        tokio::spawn(async move {
            let bytes = match compression {
                Compression::None => Bytes::from(open.encoded),
                codec => Bytes::from(codec.compress(&open.encoded)),
            };
            let batch = EncodedBatch {
                bytes,
                record_count: count,
                compression,
            };
            let outcome = client
                .send_reserved(&topic, partition, slot, batch, deadline)
                .await;
            if let Err(error) = &outcome {
                tracing::debug!(%topic, partition, %error, records = count, "batch failed");
            }
            for (index, (timestamp_ms, reply, permit)) in open.records.into_iter().enumerate() {
                let delivery = outcome.clone().map(|base| Delivery {
                    partition,
                    offset: base + index as u64,
                    timestamp_ms,
                });
                drop(permit);
                reply.resolve(delivery);
            }
            done_sender.send_replace(true);
        });
    }
}

//! [`Producer`]: takes records, reserves buffer space, routes them to their partition's lane.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use mq_client::{Client, ClientError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::ProducerConfig;
use crate::lane::{self, LaneMessage, Pending, Reply};
use crate::partitioner::{self, Sticky};
use crate::record::{Delivery, ProducerRecord};

/// Publishes records. Cheap to clone; clones share batches, buffer and connections.
///
/// Dropping every clone without [`Producer::close`] still sends what was accepted, in the
/// background, as long as the Tokio runtime runs; `close` waits for it.
#[derive(Debug, Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    client: Client,
    config: Arc<ProducerConfig>,
    /// Buffer space in bytes: a record holds its encoded size from `enqueue` until resolved.
    buffer: Arc<Semaphore>,
    lanes: Mutex<HashMap<(Arc<str>, u32), LaneSender>>,
    sticky: Mutex<HashMap<String, Sticky>>,
    closed: AtomicBool,
}

/// Where a partition's records go: its lane task.
type LaneSender = mpsc::UnboundedSender<LaneMessage>;

/// Resolves with a record's [`Delivery`] once it is acknowledged, or with the error that
/// ended its delivery. Resolves exactly once.
#[derive(Debug)]
pub struct DeliveryFuture {
    receiver: oneshot::Receiver<Result<Delivery, ClientError>>,
}

impl Future for DeliveryFuture {
    type Output = Result<Delivery, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(ClientError::Closed("producer runtime"))))
    }
}

impl Producer {
    /// A producer for `config.client.servers`. Connections are made when first needed.
    pub fn new(config: ProducerConfig) -> Result<Self, ClientError> {
        if config.batch_bytes == 0 || config.buffer_bytes == 0 {
            return Err(ClientError::InvalidArgument(
                "batch_bytes and buffer_bytes must be positive".into(),
            ));
        }
        if config.buffer_bytes > u32::MAX as usize {
            return Err(ClientError::InvalidArgument(
                "buffer_bytes: at most 4 GiB".into(),
            ));
        }
        let client = Client::new(config.client.clone())?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                buffer: Arc::new(Semaphore::new(config.buffer_bytes)),
                config: Arc::new(config),
                lanes: Mutex::default(),
                sticky: Mutex::default(),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The underlying client (metadata, admin calls).
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Bytes of records accepted and not yet resolved: never above `buffer_bytes`.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.config.buffer_bytes - self.shared.buffer.available_permits()
    }

    /// Sends a record and waits for its acknowledgement.
    pub async fn send(&self, record: ProducerRecord) -> Result<Delivery, ClientError> {
        self.enqueue(record).await?.await
    }

    /// Accepts a record into the buffer (waiting for space up to `max_block`) and returns a
    /// future of its delivery: call it in a loop to pipeline, then await the futures.
    /// Records of one partition are appended in the order they were enqueued.
    pub async fn enqueue(&self, record: ProducerRecord) -> Result<DeliveryFuture, ClientError> {
        let (sender, receiver) = oneshot::channel();
        self.accept(record, Reply::Future(sender)).await?;
        Ok(DeliveryFuture { receiver })
    }

    /// Fire-and-forget: accepts a record like [`Self::enqueue`] and calls `callback` with
    /// its outcome (on a Tokio worker: keep it short).
    pub async fn send_with_callback(
        &self,
        record: ProducerRecord,
        callback: impl FnOnce(Result<Delivery, ClientError>) + Send + 'static,
    ) -> Result<(), ClientError> {
        self.accept(record, Reply::Callback(Box::new(callback)))
            .await
    }

    async fn accept(&self, record: ProducerRecord, reply: Reply) -> Result<(), ClientError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(ClientError::Closed("producer"));
        }
        let ProducerRecord {
            topic,
            partition,
            record,
        } = record;
        let size = record.encoded_len();
        let limit = shared
            .config
            .max_record_bytes
            .min(shared.config.buffer_bytes);
        if size > limit {
            return Err(ClientError::RecordTooLarge { size, limit });
        }
        let partitions = shared.client.partition_count(&topic).await?;
        let partition = {
            let mut sticky = shared.sticky.lock().expect("sticky lock");
            let sticky = sticky
                .entry(topic.clone())
                .or_insert_with(|| Sticky::new(random_start(), shared.config.batch_bytes));
            partitioner::choose(
                &topic,
                partitions,
                partition,
                record.key.as_deref(),
                sticky,
                size,
            )?
        };
        let waited = Instant::now();
        let permit = match tokio::time::timeout(
            shared.config.max_block,
            shared.buffer.clone().acquire_many_owned(size as u32),
        )
        .await
        {
            Ok(permit) => permit.expect("the buffer semaphore is never closed"),
            Err(_) => {
                return Err(ClientError::BufferFull {
                    needed: size,
                    limit: shared.config.buffer_bytes,
                    waited: waited.elapsed(),
                });
            }
        };
        let record = if record.timestamp_ms == 0 {
            record.with_timestamp(mq_client::now_ms())
        } else {
            record
        };
        let pending = Pending {
            record,
            reply,
            permit,
            enqueued: Instant::now(),
        };
        self.lane(topic, partition)
            .send(LaneMessage::Record(pending))
            .map_err(|_| ClientError::Closed("producer"))
    }

    fn lane(&self, topic: String, partition: u32) -> LaneSender {
        let mut lanes = self.shared.lanes.lock().expect("lanes lock");
        let topic: Arc<str> = Arc::from(topic);
        lanes
            .entry((topic.clone(), partition))
            .or_insert_with(|| {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(lane::run(
                    self.shared.client.clone(),
                    self.shared.config.clone(),
                    topic,
                    partition,
                    receiver,
                ));
                sender
            })
            .clone()
    }

    /// Sends every gathered batch now and waits until every record accepted before the call
    /// is resolved (acknowledged or failed; the outcomes go to their futures and callbacks).
    pub async fn flush(&self) -> Result<(), ClientError> {
        let lanes: Vec<_> = self
            .shared
            .lanes
            .lock()
            .expect("lanes lock")
            .values()
            .cloned()
            .collect();
        let mut answers = Vec::with_capacity(lanes.len());
        for lane in lanes {
            let (sender, receiver) = oneshot::channel();
            if lane.send(LaneMessage::Flush(sender)).is_ok() {
                answers.push(receiver);
            }
        }
        for answer in answers {
            let Ok(batches) = answer.await else { continue };
            for mut done in batches {
                // An error means the batch task ended, which resolves the batch too.
                drop(done.wait_for(|done| *done).await);
            }
        }
        Ok(())
    }

    /// Refuses new records (`ClientError::Closed`), then flushes. Other clones are closed too.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.shared.closed.store(true, Ordering::Release);
        self.flush().await?;
        self.shared.lanes.lock().expect("lanes lock").clear();
        Ok(())
    }
}

/// A random first partition for the sticky partitioner, so producers spread out.
fn random_start() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

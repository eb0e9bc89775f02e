//! [`Client`]: connections, metadata, routing and retries, and every request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mq_common::clock::now_ms;
use mq_common::compression::Compression;
use mq_common::error::{ApiError, ErrorCode};
use mq_common::partitioner::partition_for_key;
use mq_common::records::{Record, encode_records};
use mq_proto::v1 as pb;
use mq_proto::v1::broker_client::BrokerClient;
use mq_proto::v1::metadata_client::MetadataClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;
use crate::metadata::MetadataCache;
use crate::subscription::Subscription;
use crate::types::{
    BrokerInfo, FetchBatch, FetchOptions, OffsetSpec, PartitionOffset, StartAt, consumed_from_proto,
};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Servers to bootstrap from (host:port); any node of the cluster will do.
    pub servers: Vec<String>,
    /// How long one operation may take, retries included.
    pub request_timeout: Duration,
    /// How long one attempt at a partition leader (produce, fetch, list offsets, opening a
    /// subscription) waits for its answer, beyond the wait a long-poll fetch asks for. A leader
    /// that is paused or cut off answers nothing; after this the client tries the next replica
    /// (produce, list offsets) or looks the leader up again (reads) and, where that is safe
    /// (reads, idempotent produce), sends again. A produce asks the broker to answer within
    /// four fifths of it (`TIMEOUT` if the write did not commit by then). Must not be zero.
    pub attempt_timeout: Duration,
    /// How long connecting to a server may take.
    pub connect_timeout: Duration,
    /// First backoff between retries; doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Largest gRPC message sent or received.
    pub max_message_bytes: usize,
    /// Send a CRC-32C with every batch so the broker detects corruption on the way.
    pub send_checksums: bool,
    /// Idempotent produce: batches carry a producer id and sequence numbers, so a batch
    /// retried after a timeout or a leader change is never appended twice, and batches of one
    /// partition are appended in the order `produce` was called. At most
    /// [`MAX_IN_FLIGHT_PER_PARTITION`] batches per partition are then in flight; more wait.
    pub idempotent: bool,
}

/// Batches per partition an idempotent client keeps in flight: the number the broker
/// remembers per producer to recognise retries.
pub const MAX_IN_FLIGHT_PER_PARTITION: usize = 5;

impl ClientConfig {
    pub fn new(servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            request_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            retry_backoff: Duration::from_millis(20),
            retry_backoff_max: Duration::from_millis(500),
            max_message_bytes: 64 << 20,
            send_checksums: true,
            idempotent: true,
        }
    }
}

/// A connection to a cluster (or a standalone node). Clone it freely.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    channels: Mutex<HashMap<String, Channel>>,
    metadata: RwLock<MetadataCache>,
    /// Idempotent produce: the producer id and next sequence per (topic, partition).
    sequences: Mutex<HashMap<(String, u32), Arc<PartitionSequence>>>,
}

/// The idempotent-produce state of one partition.
#[derive(Debug)]
struct PartitionSequence {
    /// `(producer id, next sequence)`. The id is replaced after a batch fails for good: the
    /// broker never saw the sequence it skipped, so later batches start a new sequence.
    next: Mutex<(u64, u32)>,
    /// The batches in flight, in the order they took their places.
    window: Mutex<Window>,
    /// Signalled when the window moves on.
    window_moved: tokio::sync::Notify,
}

/// Places in a partition's produce order: tickets in the order batches were reserved. A
/// place is given back only once every earlier batch has resolved too, so at most
/// [`MAX_IN_FLIGHT_PER_PARTITION`] batches lie between the oldest unresolved one and the
/// newest: a batch retried late (after a failover, say) is still among the last five the
/// broker remembers, even when later batches succeeded in the meantime.
#[derive(Debug, Default)]
struct Window {
    next_ticket: u64,
    /// The oldest ticket not yet given back.
    oldest: u64,
    /// Tickets given back out of order, waiting for the older ones.
    returned: std::collections::BTreeSet<u64>,
}

impl Window {
    /// Takes the next place if the window has room.
    fn enter(&mut self) -> Option<u64> {
        (self.next_ticket - self.oldest < MAX_IN_FLIGHT_PER_PARTITION as u64).then(|| {
            self.next_ticket += 1;
            self.next_ticket - 1
        })
    }

    /// Gives back `ticket`; returns whether the window moved.
    fn leave(&mut self, ticket: u64) -> bool {
        self.returned.insert(ticket);
        let before = self.oldest;
        while self.returned.remove(&self.oldest) {
            self.oldest += 1;
        }
        self.oldest != before
    }
}

impl PartitionSequence {
    fn new() -> Self {
        Self {
            next: Mutex::new((new_producer_id(), 0)),
            window: Mutex::default(),
            window_moved: tokio::sync::Notify::new(),
        }
    }

    /// Waits for a place in the window, then takes it and, when `count` is given (idempotent),
    /// the sequence numbers of a batch of `count` records: both in one step, so places and
    /// sequences are taken in the same order.
    async fn enter(&self, count: Option<u32>) -> (u64, (u64, u32)) {
        loop {
            let moved = self.window_moved.notified();
            if let Some(ticket) = self.window.lock().expect("window lock").enter() {
                let taken = match count {
                    Some(count) => {
                        let mut next = self.next.lock().expect("sequence lock");
                        let taken = *next;
                        next.1 = next.1.wrapping_add(count);
                        taken
                    }
                    None => (0, 0),
                };
                return (ticket, taken);
            }
            moved.await;
        }
    }

    fn leave(&self, ticket: u64) {
        if self.window.lock().expect("window lock").leave(ticket) {
            self.window_moved.notify_waiters();
        }
    }

    fn producer_id(&self) -> u64 {
        self.next.lock().expect("sequence lock").0
    }

    /// Starts a new sequence after a batch of `producer_id` failed for good.
    fn reset(&self, producer_id: u64) {
        let mut next = self.next.lock().expect("sequence lock");
        if next.0 == producer_id {
            *next = (new_producer_id(), 0);
        }
    }
}

/// Records of one partition in the canonical encoding (see `mq.v1.PartitionBatch`), maybe
/// compressed: what a batching producer sends.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    pub bytes: Bytes,
    pub record_count: u32,
    pub compression: Compression,
}

/// A batch's place in its partition's produce order (see [`Client::reserve`]); it holds one
/// of the partition's in-flight slots until dropped.
#[derive(Debug)]
pub struct ProduceSlot {
    ticket: u64,
    sequence: Arc<PartitionSequence>,
    producer_id: u64,
    base_sequence: u32,
}

impl Drop for ProduceSlot {
    fn drop(&mut self) {
        self.sequence.leave(self.ticket);
    }
}

/// A random nonzero producer id.
fn new_producer_id() -> u64 {
    loop {
        let id = uuid::Uuid::new_v4().as_u64_pair().0;
        if id != 0 {
            return id;
        }
    }
}

/// Errors worth retrying for any request, since it was certainly not applied: the partition
/// moved, has no leader yet, or the server is unreachable, restarting, or never got it.
pub(crate) fn reroutable(error: &ClientError) -> bool {
    matches!(
        error.code(),
        ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable | ErrorCode::Unavailable
    )
}

/// Who serves a partition call; decides where the next attempt goes after the leader failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServedBy {
    /// Only the leader (produce, list offsets): a follower refuses with `NOT_LEADER` naming
    /// the leader, so the next replica is worth a try.
    Leader,
    /// Any replica, up to what it applied (fetch, subscribe): the leader is looked up again,
    /// or reads would stay on a follower.
    AnyReplica,
}

/// Errors that leave a request's outcome unknown: no answer came (in time), so it may or may
/// not have been applied.
fn outcome_unknown(error: &ClientError) -> bool {
    matches!(error.code(), ErrorCode::ConnectionLost | ErrorCode::Timeout)
}

/// Errors worth retrying for a request that changes nothing (a read): also those that left
/// the outcome unknown.
pub(crate) fn repeatable(error: &ClientError) -> bool {
    reroutable(error) || outcome_unknown(error)
}

impl Client {
    /// A client for `config.servers`. Connections are made when first needed.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        if config.servers.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no server address given".into(),
            ));
        }
        if config.attempt_timeout.is_zero() {
            return Err(ClientError::InvalidArgument(
                "attempt_timeout: must be more than zero".into(),
            ));
        }
        let client = Self {
            inner: Arc::new(Inner {
                config,
                channels: Mutex::default(),
                metadata: RwLock::default(),
                sequences: Mutex::default(),
            }),
        };
        for server in &client.inner.config.servers {
            client.channel(server)?;
        }
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    fn channel(&self, address: &str) -> Result<Channel, ClientError> {
        let mut channels = self.inner.channels.lock().expect("channel map lock");
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let invalid = |reason: String| ClientError::InvalidAddress {
            address: address.to_owned(),
            reason,
        };
        let uri = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let channel = Endpoint::from_shared(uri)
            .map_err(|err| invalid(err.to_string()))?
            .connect_timeout(self.inner.config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    fn broker(&self, channel: Channel) -> BrokerClient<Channel> {
        let max = self.inner.config.max_message_bytes;
        BrokerClient::new(channel)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// Runs `attempt` until it succeeds, fails with an error `retry` does not accept, or the
    /// request timeout passes. `attempt` gets the time left.
    async fn retrying<T, F, Fut>(
        &self,
        retry: impl Fn(&ClientError) -> bool,
        attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let deadline = Instant::now() + self.inner.config.request_timeout;
        self.retrying_until(deadline, retry, attempt).await
    }

    /// [`Self::retrying`] until `deadline`, retrying the errors `retry` accepts.
    async fn retrying_until<T, F, Fut>(
        &self,
        deadline: Instant,
        retry: impl Fn(&ClientError) -> bool,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let started = Instant::now();
        let mut backoff = self.inner.config.retry_backoff;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(left, attempt(left)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(ApiError::new(
                    ErrorCode::Timeout,
                    format!("no answer within {:?}", started.elapsed()),
                )
                .into()),
            };
            match outcome {
                Err(error) if retry(&error) && Instant::now() + backoff < deadline => {
                    tracing::debug!(%error, ?backoff, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.inner.config.retry_backoff_max);
                }
                other => return other,
            }
        }
    }

    /// Calls the control plane (metadata, admin) on the configured servers in turn, following
    /// not-leader hints and retrying the errors `retry` accepts ([`reroutable`] for calls that
    /// change something, [`repeatable`] for reads).
    pub(crate) async fn control<T, F, Fut>(
        &self,
        retry: fn(&ClientError) -> bool,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let servers = self.inner.config.servers.clone();
        let mut next = 0usize;
        // A leader named by the last error, tried before the next configured server.
        let hint: Arc<Mutex<Option<String>>> = Arc::default();
        self.retrying(retry, |_| {
            let address = hint
                .lock()
                .expect("hint lock")
                .take()
                .unwrap_or_else(|| servers[next % servers.len()].clone());
            next += 1;
            let call = self.channel(&address).map(&call);
            let hint = hint.clone();
            async move {
                let outcome = call?.await.map_err(ClientError::from);
                if let Err(ClientError::Api(ApiError {
                    leader: Some(leader),
                    ..
                })) = &outcome
                {
                    *hint.lock().expect("hint lock") = Some(leader.address.clone());
                }
                outcome
            }
        })
        .await
    }

    /// [`Self::control`] for a change whose effect the caller can check: lost connections are
    /// retried too, and the flag says whether an attempt may have been applied unseen (so an
    /// answer like "already exists" may be that attempt's doing).
    pub(crate) async fn control_change<T, F, Fut>(&self, call: F) -> (Result<T, ClientError>, bool)
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let lost = std::sync::atomic::AtomicBool::new(false);
        let outcome = self
            .control(repeatable, |channel| {
                let call = call(channel);
                let lost = &lost;
                async move {
                    let outcome = call.await;
                    if let Err(status) = &outcome
                        && outcome_unknown(&ClientError::from_status(status))
                    {
                        lost.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    outcome
                }
            })
            .await;
        (outcome, lost.into_inner())
    }

    // ---- metadata and routing -------------------------------------------------------------

    /// Refreshes the cached placement of `topics` (all topics when empty).
    pub async fn refresh_metadata(&self, topics: &[&str]) -> Result<Vec<BrokerInfo>, ClientError> {
        let request = pb::GetMetadataRequest {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        };
        let metadata = self
            .control(repeatable, |channel| {
                let request = request.clone();
                async move {
                    MetadataClient::new(channel)
                        .get_metadata(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await;
        let metadata = match metadata {
            Ok(metadata) => metadata,
            Err(error) => {
                if error.code() == ErrorCode::TopicNotFound {
                    let mut cache = self.inner.metadata.write().expect("metadata lock");
                    topics.iter().for_each(|t| cache.forget_topic(t));
                }
                return Err(error);
            }
        };
        self.inner
            .metadata
            .write()
            .expect("metadata lock")
            .update(&metadata);
        Ok(metadata
            .brokers
            .into_iter()
            .map(|b| BrokerInfo {
                broker_id: b.broker_id,
                address: b.address,
                rack: b.rack,
                alive: b.alive,
            })
            .collect())
    }

    /// The number of partitions of `topic`.
    pub async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        if let Some(route) = self
            .inner
            .metadata
            .read()
            .expect("metadata lock")
            .topic(topic)
        {
            return Ok(route.leaders.len() as u32);
        }
        self.refresh_metadata(&[topic]).await?;
        let cache = self.inner.metadata.read().expect("metadata lock");
        Ok(cache
            .topic(topic)
            .map_or(0, |route| route.leaders.len() as u32))
    }

    /// The partition the standard key hash assigns `key` in `topic`.
    pub async fn partition_for_key(&self, topic: &str, key: &[u8]) -> Result<u32, ClientError> {
        let partitions = self.partition_count(topic).await?;
        if partitions == 0 {
            return Err(ApiError::new(
                ErrorCode::TopicNotFound,
                format!("topic '{topic}' has no partitions"),
            )
            .into());
        }
        Ok(partition_for_key(key, partitions))
    }

    /// A channel to the leader of a partition, refreshing metadata when the cache has none.
    async fn leader(&self, topic: &str, partition: u32) -> Result<Channel, ClientError> {
        let cached = self
            .inner
            .metadata
            .read()
            .expect("metadata lock")
            .leader_address(topic, partition);
        let address = match cached {
            Some(address) => address,
            None => {
                self.refresh_metadata(&[topic]).await?;
                let cache = self.inner.metadata.read().expect("metadata lock");
                match cache.leader_address(topic, partition) {
                    Some(address) => address,
                    None if cache
                        .topic(topic)
                        .is_some_and(|r| partition as usize >= r.leaders.len()) =>
                    {
                        return Err(ApiError::new(
                            ErrorCode::PartitionNotFound,
                            format!("partition: topic '{topic}' has no partition {partition}"),
                        )
                        .into());
                    }
                    None => {
                        return Err(ApiError::new(
                            ErrorCode::LeaderNotAvailable,
                            format!("{topic}/{partition} has no leader yet"),
                        )
                        .into());
                    }
                }
            }
        };
        self.channel(&address)
    }

    /// Runs one call at the leader of a partition: finds the leader's channel, gives `call` at
    /// most `budget` on it, then learns from the error. No answer by then ends the attempt with
    /// `TIMEOUT`: the leader may be paused or cut off.
    async fn at_leader<T, Fut>(
        &self,
        topic: &str,
        partition: u32,
        budget: Duration,
        served_by: ServedBy,
        call: impl FnOnce(Channel) -> Fut,
    ) -> Result<T, ClientError>
    where
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let outcome = match self.leader(topic, partition).await {
            Ok(channel) => tokio::time::timeout(budget, call(channel))
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::new(
                        ErrorCode::Timeout,
                        format!(
                            "no answer from the leader of {topic}/{partition} within {budget:?}"
                        ),
                    )
                    .into())
                }),
            Err(error) => Err(error),
        };
        if let Err(error) = &outcome {
            self.learn(topic, partition, error, served_by);
        }
        outcome
    }

    /// Updates the cache after a routing error or an unanswered request.
    fn learn(&self, topic: &str, partition: u32, error: &ClientError, served_by: ServedBy) {
        if !repeatable(error) {
            return;
        }
        let mut cache = self.inner.metadata.write().expect("metadata lock");
        match error {
            ClientError::Api(ApiError {
                leader: Some(leader),
                ..
            }) => cache.set_leader(topic, partition, leader),
            // The leader is gone or answers nothing: another replica knows its successor
            // sooner than the cluster manager's metadata does.
            error
                if served_by == ServedBy::Leader
                    && (outcome_unknown(error) || error.code() == ErrorCode::Unavailable) =>
            {
                cache.try_next_replica(topic, partition)
            }
            _ => cache.forget_leader(topic, partition),
        }
    }

    /// Drops a topic's cached placement (after it was created or deleted).
    pub(crate) fn forget_topic(&self, topic: &str) {
        self.inner
            .metadata
            .write()
            .expect("metadata lock")
            .forget_topic(topic);
    }

    // ---- data -----------------------------------------------------------------------------

    /// Appends `records` to one partition as one atomic batch; returns the offset of the first.
    /// Records without a timestamp (0) get this client's clock when sent.
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<u64, ClientError> {
        if records.is_empty() {
            return Err(ClientError::InvalidArgument(
                "records: at least one record is required".into(),
            ));
        }
        // Sent in the canonical encoding: the broker stores the bytes as they are.
        let now_ms = now_ms();
        let mut encoded = Vec::with_capacity(records.iter().map(Record::encoded_len).sum());
        for record in &records {
            if record.timestamp_ms == 0 {
                encode_records([&record.clone().with_timestamp(now_ms)], &mut encoded);
            } else {
                encode_records([record], &mut encoded);
            }
        }
        let batch = EncodedBatch {
            bytes: Bytes::from(encoded),
            record_count: records.len() as u32,
            compression: Compression::None,
        };
        let slot = self.reserve(topic, partition, batch.record_count).await;
        let deadline = Instant::now() + self.inner.config.request_timeout;
        self.send_reserved(topic, partition, slot, batch, deadline)
            .await
    }

    /// Takes the next place in a partition's produce order for a batch of `record_count`
    /// records, waiting while the oldest unresolved batch and those after it fill
    /// [`MAX_IN_FLIGHT_PER_PARTITION`] places. Batches of one partition reserved in a given
    /// order are appended in that order when idempotent.
    pub async fn reserve(&self, topic: &str, partition: u32, record_count: u32) -> ProduceSlot {
        let sequence = self
            .inner
            .sequences
            .lock()
            .expect("sequences lock")
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| Arc::new(PartitionSequence::new()))
            .clone();
        let (ticket, (producer_id, base_sequence)) = sequence
            .enter(self.inner.config.idempotent.then_some(record_count))
            .await;
        ProduceSlot {
            ticket,
            sequence,
            producer_id,
            base_sequence,
        }
    }

    /// Sends a batch in the place `slot` reserved, retrying until `deadline`; returns the
    /// offset of its first record. Idempotent (the default): every retryable error is
    /// retried, since the broker recognises a batch it appended; a batch fails at once when
    /// an earlier batch of the partition failed for good (its place in the order is gone).
    pub async fn send_reserved(
        &self,
        topic: &str,
        partition: u32,
        slot: ProduceSlot,
        batch: EncodedBatch,
        deadline: Instant,
    ) -> Result<u64, ClientError> {
        let crc32c = self
            .inner
            .config
            .send_checksums
            .then(|| crc32c::crc32c(&batch.bytes));
        let request_batch = pb::PartitionBatch {
            partition: Some(partition),
            records: Vec::new(),
            crc32c,
            encoded_records: batch.bytes,
            record_count: batch.record_count,
            producer_id: slot.producer_id,
            base_sequence: slot.base_sequence,
            compression: batch.compression.to_proto().into(),
        };
        if slot.producer_id == 0 {
            return self
                .send_batch(topic, partition, request_batch, deadline, reroutable)
                .await;
        }
        let sequence = &slot.sequence;
        let retry = |error: &ClientError| {
            error.is_retryable()
                && !(error.code() == ErrorCode::OutOfOrderSequence
                    && sequence.producer_id() != slot.producer_id)
        };
        let outcome = self
            .send_batch(topic, partition, request_batch, deadline, retry)
            .await;
        if outcome.is_err() {
            sequence.reset(slot.producer_id);
        }
        outcome
    }

    /// Sends one batch to the partition leader, retrying errors `retry` accepts.
    async fn send_batch(
        &self,
        topic: &str,
        partition: u32,
        batch: pb::PartitionBatch,
        deadline: Instant,
        retry: impl Fn(&ClientError) -> bool,
    ) -> Result<u64, ClientError> {
        self.retrying_until(deadline, retry, |left| {
            let budget = left.min(self.inner.config.attempt_timeout);
            let request = pb::ProduceRequest {
                topic: topic.to_owned(),
                batches: vec![batch.clone()],
                // The broker answers TIMEOUT before the client stops waiting.
                timeout_ms: (budget * 4 / 5).as_millis().min(u128::from(u32::MAX)) as u32,
            };
            self.at_leader(
                topic,
                partition,
                budget,
                ServedBy::Leader,
                |channel| async move {
                    let response = self.broker(channel).produce(request).await?.into_inner();
                    let result = response.results.into_iter().next().ok_or_else(|| {
                        ClientError::Api(ApiError::new(
                            ErrorCode::Internal,
                            "empty produce response",
                        ))
                    })?;
                    match result.error {
                        Some(error) => {
                            Err(ClientError::Api(ApiError::from_partition_error(&error)))
                        }
                        None => Ok(result.base_offset),
                    }
                },
            )
        })
        .await
    }

    /// Reads records of a partition from `offset`, on its leader.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: FetchOptions,
    ) -> Result<FetchBatch, ClientError> {
        self.fetch_near(topic, partition, offset, options, None)
            .await
    }

    /// Reads records of a partition from `offset`, on a replica in `rack` when one is alive
    /// there (a follower serves what the group has committed and it has applied), else on
    /// the leader. A follower that cannot serve the offset yet (behind, restarting) is
    /// skipped for the leader within the same attempt.
    pub async fn fetch_near(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: FetchOptions,
        rack: Option<&str>,
    ) -> Result<FetchBatch, ClientError> {
        let request = pb::FetchRequest {
            topic: topic.to_owned(),
            partition,
            offset,
            max_records: options.max_records,
            max_bytes: options.max_bytes,
            max_wait_ms: options.max_wait.as_millis().min(u128::from(u32::MAX)) as u32,
            coalesce_by_key: options.coalesce_by_key,
        };
        self.retrying(repeatable, |left| {
            let request = request.clone();
            let budget = left.min(self.inner.config.attempt_timeout + options.max_wait);
            async move {
                if let Some(address) = rack.and_then(|rack| {
                    self.inner
                        .metadata
                        .read()
                        .expect("metadata lock")
                        .replica_in_rack(topic, partition, rack)
                }) {
                    let channel = self.channel(&address)?;
                    let mut replica = self.broker(channel);
                    match tokio::time::timeout(budget, replica.fetch(request.clone())).await {
                        Ok(Ok(response)) => return Ok(response.into_inner()),
                        Ok(Err(status)) => {
                            tracing::debug!(%address, %status, "replica read failed, reading the leader");
                        }
                        Err(_) => {
                            tracing::debug!(%address, ?budget, "replica did not answer, reading the leader");
                        }
                    }
                }
                self.at_leader(topic, partition, budget, ServedBy::AnyReplica, |channel| async {
                    Ok(self.broker(channel).fetch(request).await?.into_inner())
                })
                .await
            }
        })
        .await
        .map(|response| FetchBatch {
            records: response
                .records
                .into_iter()
                .map(consumed_from_proto)
                .collect(),
            high_watermark: response.high_watermark,
            log_start_offset: response.log_start_offset,
            next_offset: response.next_offset,
        })
    }

    /// A stream of the partition's records from `start`, following the tail.
    pub async fn subscribe(
        &self,
        topic: &str,
        partition: u32,
        start: StartAt,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_with(topic, partition, start, FetchOptions::default())
            .await
    }

    /// [`Client::subscribe`] with the limits of each streamed message and key coalescing
    /// from `options` (`max_wait` does not apply).
    pub async fn subscribe_with(
        &self,
        topic: &str,
        partition: u32,
        start: StartAt,
        options: FetchOptions,
    ) -> Result<Subscription, ClientError> {
        Subscription::open(self.clone(), topic.to_owned(), partition, start, options).await
    }

    /// Opens one `Subscribe` stream on the partition leader (no resumption).
    pub(crate) async fn open_stream(
        &self,
        topic: &str,
        partition: u32,
        start: StartAt,
        options: FetchOptions,
    ) -> Result<tonic::Streaming<pb::SubscribeResponse>, ClientError> {
        let start = match start {
            StartAt::Offset(offset) => pb::subscribe_request::Start::Offset(offset),
            StartAt::Earliest => {
                pb::subscribe_request::Start::Position(pb::StartPosition::Earliest.into())
            }
            StartAt::Latest => {
                pb::subscribe_request::Start::Position(pb::StartPosition::Latest.into())
            }
        };
        let request = pb::SubscribeRequest {
            topic: topic.to_owned(),
            partition,
            start: Some(start),
            max_records: options.max_records,
            max_bytes: options.max_bytes,
            coalesce_by_key: options.coalesce_by_key,
        };
        self.retrying(repeatable, |left| {
            let request = request.clone();
            let budget = left.min(self.inner.config.attempt_timeout);
            self.at_leader(topic, partition, budget, ServedBy::AnyReplica, |channel| async move {
                Ok(self.broker(channel).subscribe(request).await?.into_inner())
            })
        })
        .await
    }

    pub(crate) fn after_stream_error(&self, topic: &str, partition: u32, error: &ClientError) {
        self.learn(topic, partition, error, ServedBy::AnyReplica);
    }

    /// Resolves an offset of a partition on its leader.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<PartitionOffset, ClientError> {
        let (spec, timestamp_ms) = match spec {
            OffsetSpec::Earliest => (pb::OffsetSpec::Earliest, 0),
            OffsetSpec::Latest => (pb::OffsetSpec::Latest, 0),
            OffsetSpec::Timestamp(ts) => (pb::OffsetSpec::Timestamp, ts),
        };
        let request = pb::ListOffsetsRequest {
            topic: topic.to_owned(),
            queries: vec![pb::OffsetQuery {
                partition,
                spec: spec.into(),
                timestamp_ms,
            }],
        };
        self.retrying(repeatable, |left| {
            let request = request.clone();
            let budget = left.min(self.inner.config.attempt_timeout);
            self.at_leader(
                topic,
                partition,
                budget,
                ServedBy::Leader,
                |channel| async move {
                    let response = self
                        .broker(channel)
                        .list_offsets(request)
                        .await?
                        .into_inner();
                    let result = response.results.into_iter().next().ok_or_else(|| {
                        ClientError::Api(ApiError::new(
                            ErrorCode::Internal,
                            "empty list offsets response",
                        ))
                    })?;
                    match &result.error {
                        Some(error) => Err(ClientError::Api(ApiError::from_partition_error(error))),
                        None => Ok(PartitionOffset {
                            partition: result.partition,
                            offset: result.offset,
                            timestamp_ms: result.timestamp_ms,
                            high_watermark: result.high_watermark,
                            log_start_offset: result.log_start_offset,
                        }),
                    }
                },
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_comes_back_only_once_every_older_batch_resolved() {
        let mut window = Window::default();
        let tickets: Vec<u64> = (0..MAX_IN_FLIGHT_PER_PARTITION)
            .map(|_| window.enter().expect("room"))
            .collect();
        assert_eq!(window.enter(), None);
        // Every later batch resolves while the oldest is still being retried: no room, so
        // its retry still finds it among the broker's last five batches.
        for ticket in &tickets[1..] {
            assert!(!window.leave(*ticket));
        }
        assert_eq!(window.enter(), None);
        // The oldest resolves: all five places are free again.
        assert!(window.leave(tickets[0]));
        let taken: Vec<u64> = std::iter::from_fn(|| window.enter()).collect();
        assert_eq!(taken, vec![5, 6, 7, 8, 9]);
    }
}

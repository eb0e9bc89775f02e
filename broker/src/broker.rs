//! The data plane without the transport: produce, fetch, subscribe, list offsets. The gRPC
//! handlers in `service::data` only translate to and from these calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use mq_common::clock::now_ms;
use mq_common::compression::Compression;
use mq_common::error::LeaderHint;
use mq_common::ids::{PartitionId, TopicName};
use mq_common::partitioner::partition_for_key;
use mq_common::records::{self, Record, records_crc32c};
use mq_raft::disk::DiskGuard;
use tokio_util::sync::CancellationToken;

use crate::batch::{ChecksumMismatch, MAX_DECOMPRESSED_BYTES, ProducerSeq, StoredBatch};
use crate::cluster_link::ClusterLink;
use crate::config::Limits;
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::partition::read::{ReadLimits, ReadResult};
use crate::partition::state_machine::Progress;
use crate::partition::types::Appended;
use crate::push_budget::{PushBudget, Pushed};
use crate::replicas::{HostedTopic, Replicas};

/// One batch of a produce request.
#[derive(Debug, Clone)]
pub struct ProduceBatch {
    pub partition: Option<u32>,
    pub records: BatchRecords,
    pub crc32c: Option<u32>,
    /// Idempotent produce (requires `partition`).
    pub producer: ProducerSeq,
}

/// The records of a batch, as sent.
#[derive(Debug, Clone)]
pub enum BatchRecords {
    /// As messages (the broker encodes them, and may split them by key).
    Decoded(Vec<Record>),
    /// Already in the canonical encoding, for one named partition, maybe compressed.
    Encoded {
        bytes: Bytes,
        count: u32,
        compression: Compression,
    },
}

/// The outcome of the records of one batch that went to one partition.
#[derive(Debug)]
pub struct PartitionOutcome {
    pub batch_index: usize,
    pub partition: u32,
    pub record_count: u32,
    /// Where the records are, or why the append failed.
    pub result: Result<Appended, BrokerError>,
}

/// Records read, with the partition's positions at the time.
#[derive(Debug)]
pub struct Fetched {
    pub records: Vec<(u64, Record)>,
    pub next_offset: u64,
    pub progress: Progress,
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    Offset(u64),
    Earliest,
    Latest,
}

/// What a ListOffsets query resolves.
#[derive(Debug, Clone, Copy)]
pub enum OffsetQuery {
    Earliest,
    Latest,
    Timestamp(i64),
}

#[derive(Debug)]
pub struct ResolvedOffset {
    pub offset: u64,
    pub timestamp_ms: Option<i64>,
    pub progress: Progress,
}

pub struct Broker {
    replicas: Arc<Replicas>,
    cluster: ClusterLink,
    limits: Limits,
    /// Free space of the data directory: no new data below its reserve.
    disk: DiskGuard,
    /// Bytes subscriptions may push ahead of their clients, all together.
    push_budget: PushBudget,
    /// Round-robin position for records without key or partition.
    next_keyless: AtomicU32,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Broker {
    pub fn new(
        replicas: Arc<Replicas>,
        cluster: ClusterLink,
        limits: Limits,
        disk: DiskGuard,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            replicas,
            cluster,
            push_budget: PushBudget::new(limits.push_budget_bytes),
            limits,
            disk,
            next_keyless: AtomicU32::new(0),
            shutdown,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validates every batch, splits them by partition, then appends each part. Invalid input
    /// fails the whole request before anything is written; per-partition failures (a disk
    /// below its reserve among them) are reported per partition.
    pub async fn produce(
        &self,
        topic: &TopicName,
        batches: Vec<ProduceBatch>,
        timeout: Duration,
    ) -> Result<Vec<PartitionOutcome>, BrokerError> {
        let hosted = self.hosted_topic(topic).await?;
        let now_ms = now_ms();
        let mut parts = Vec::new();
        for (batch_index, batch) in batches.into_iter().enumerate() {
            match batch.records {
                BatchRecords::Decoded(records) => {
                    let stored = self.prepare_decoded(
                        topic,
                        &hosted,
                        batch_index,
                        (batch.partition, batch.crc32c),
                        records,
                        (now_ms, batch.producer),
                    )?;
                    parts.extend(stored);
                }
                BatchRecords::Encoded {
                    bytes,
                    count,
                    compression,
                } => {
                    let part = self.prepare_encoded(
                        topic,
                        &hosted,
                        batch_index,
                        (batch.partition, batch.crc32c),
                        (bytes, count, compression),
                        (now_ms, batch.producer),
                    )?;
                    parts.push(part);
                }
            }
        }
        let appends = parts
            .into_iter()
            .map(|(batch_index, partition, count, stored)| {
                let target = hosted.partitions.get(&PartitionId(partition)).cloned();
                let bytes = stored.len() as u64;
                async move {
                    let started = std::time::Instant::now();
                    let result = match target {
                        // Not leading: NOT_LEADER sends the client to the leader.
                        Some(target) => match self.disk.check() {
                            Err(full) if target.is_leader() => Err(full.into()),
                            _ => target.append(stored, timeout).await,
                        },
                        None => Err(self.not_hosted(topic, partition).await),
                    };
                    if result.is_ok() {
                        metrics::counter!("mq_produce_records_total").increment(u64::from(count));
                        metrics::counter!("mq_produce_bytes_total").increment(bytes);
                        metrics::histogram!("mq_produce_seconds")
                            .record(started.elapsed().as_secs_f64());
                    } else {
                        metrics::counter!("mq_produce_errors_total").increment(1);
                    }
                    PartitionOutcome {
                        batch_index,
                        partition,
                        record_count: count,
                        result,
                    }
                }
            });
        Ok(futures::future::join_all(appends).await)
    }

    /// Validates decoded records and encodes them into one stored batch per target partition:
    /// `(batch index, partition, record count, batch)`.
    fn prepare_decoded(
        &self,
        topic: &TopicName,
        hosted: &HostedTopic,
        batch_index: usize,
        (partition, sent_crc): (Option<u32>, Option<u32>),
        records: Vec<Record>,
        (now_ms, producer): (i64, ProducerSeq),
    ) -> Result<Vec<(usize, u32, u32, StoredBatch)>, BrokerError> {
        for (record_index, record) in records.iter().enumerate() {
            check_record_size(topic, hosted, batch_index, record_index, record.size())?;
        }
        // The client's checksum covers the whole batch. A batch for one named partition is
        // checked while it is encoded (one pass); one the server partitions is checked
        // before it is split.
        let mut sent_crc = sent_crc;
        if let (Some(sent), None) = (sent_crc, partition) {
            let computed = records_crc32c(&records);
            if computed != sent {
                return Err(BrokerError::CorruptBatch {
                    batch: batch_index,
                    sent,
                    computed,
                });
            }
            sent_crc = None;
        }
        let mut parts = Vec::new();
        for (partition, records) in self.split(partition, records, hosted, topic)? {
            let stored =
                StoredBatch::build(&records, now_ms, sent_crc, producer).map_err(|mismatch| {
                    BrokerError::CorruptBatch {
                        batch: batch_index,
                        sent: mismatch.sent,
                        computed: mismatch.computed,
                    }
                })?;
            self.check_batch_size(batch_index, &stored)?;
            parts.push((batch_index, partition, records.len() as u32, stored));
        }
        Ok(parts)
    }

    /// Validates records sent encoded (and maybe compressed) and wraps them, as sent, into a
    /// stored batch.
    fn prepare_encoded(
        &self,
        topic: &TopicName,
        hosted: &HostedTopic,
        batch_index: usize,
        (partition, sent_crc): (Option<u32>, Option<u32>),
        (bytes, count, compression): (Bytes, u32, Compression),
        (now_ms, producer): (i64, ProducerSeq),
    ) -> Result<(usize, u32, u32, StoredBatch), BrokerError> {
        let partition = partition.ok_or_else(|| {
            BrokerError::invalid(
                format!("batches[{batch_index}].partition"),
                "is required with encoded_records",
            )
        })?;
        check_partition(topic, hosted, partition)?;
        let invalid = |reason: String| {
            BrokerError::invalid(format!("batches[{batch_index}].encoded_records"), reason)
        };
        let corrupt = |mismatch: ChecksumMismatch| BrokerError::CorruptBatch {
            batch: batch_index,
            sent: mismatch.sent,
            computed: mismatch.computed,
        };
        // The records, checked as strictly whether they came compressed or not.
        let scan = |plain: &[u8]| {
            let summary =
                records::scan_records(plain, count as usize).map_err(|e| invalid(e.to_string()))?;
            let (record, size) = summary.largest;
            check_record_size(topic, hosted, batch_index, record, size)?;
            Ok::<_, BrokerError>(summary)
        };
        let stored = if compression == Compression::None {
            let summary = scan(&bytes)?;
            StoredBatch::from_encoded(bytes, count as usize, &summary, now_ms, sent_crc, producer)
                .map_err(corrupt)?
        } else {
            let crc = crc32c::crc32c(&bytes);
            if let Some(sent) = sent_crc.filter(|sent| *sent != crc) {
                return Err(corrupt(ChecksumMismatch {
                    sent,
                    computed: crc,
                }));
            }
            let plain = compression
                .decompress(&bytes, MAX_DECOMPRESSED_BYTES)
                .map_err(|e| invalid(e.to_string()))?;
            let summary = scan(&plain)?;
            StoredBatch::from_compressed(
                (bytes, compression),
                plain,
                count as usize,
                &summary,
                (now_ms, crc),
                producer,
            )
        };
        self.check_batch_size(batch_index, &stored)?;
        Ok((batch_index, partition, count, stored))
    }

    fn check_batch_size(
        &self,
        batch_index: usize,
        stored: &StoredBatch,
    ) -> Result<(), BrokerError> {
        if stored.len() > self.limits.max_batch_bytes {
            return Err(BrokerError::invalid(
                format!("batches[{batch_index}]"),
                format!(
                    "{} bytes of records for one partition exceed the limit of {} bytes; split \
                     the batch",
                    stored.len(),
                    self.limits.max_batch_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The records of `batch` grouped by target partition, in batch order within each.
    fn split(
        &self,
        partition: Option<u32>,
        records: Vec<Record>,
        hosted: &HostedTopic,
        topic: &TopicName,
    ) -> Result<BTreeMap<u32, Vec<Record>>, BrokerError> {
        let partitions = hosted.partition_count;
        if let Some(partition) = partition {
            check_partition(topic, hosted, partition)?;
            return Ok(BTreeMap::from([(partition, records)]));
        }
        let keyless = self.next_keyless.fetch_add(1, Ordering::Relaxed) % partitions;
        let mut split: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for record in records {
            let partition = match &record.key {
                Some(key) => partition_for_key(key, partitions),
                None => keyless,
            };
            split.entry(partition).or_default().push(record);
        }
        Ok(split)
    }

    /// Reads from `offset`; with `max_wait`, waits for a first record when there is none yet.
    pub async fn fetch(
        &self,
        topic: &TopicName,
        partition: u32,
        offset: u64,
        limits: ReadLimits,
        max_wait: Duration,
    ) -> Result<Fetched, BrokerError> {
        let target = self.partition(topic, partition).await?;
        let progress = target.check_offset(offset)?;
        if offset == progress.high_watermark && !max_wait.is_zero() {
            tokio::select! {
                _ = target.wait_beyond(offset, max_wait) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
        let (read, progress) = target.read(offset, limits).await?;
        metrics::counter!("mq_fetch_records_total").increment(read.records.len() as u64);
        Ok(fetched(read, progress))
    }

    /// A stream of record batches from `start`, following the tail until the client goes away,
    /// the position leaves the stored range, or the broker shuts down.
    pub async fn subscribe(
        &self,
        topic: &TopicName,
        partition: u32,
        start: Start,
        limits: ReadLimits,
    ) -> Result<impl Stream<Item = Result<Fetched, BrokerError>> + Send + 'static, BrokerError>
    {
        let target = self.partition(topic, partition).await?;
        let progress = target.progress();
        let next = match start {
            Start::Offset(offset) => {
                target.check_offset(offset)?;
                offset
            }
            Start::Earliest => progress.log_start_offset,
            Start::Latest => progress.high_watermark,
        };
        let state = Subscription {
            progress: target.watch_progress(),
            partition: target,
            next,
            limits,
            budget: self.push_budget.clone(),
            pushed: None,
            shutdown: self.shutdown.clone(),
            done: false,
        };
        Ok(futures::stream::unfold(state, Subscription::next_batch))
    }

    /// Resolves one offset query on the partition leader.
    pub async fn list_offset(
        &self,
        topic: &TopicName,
        partition: u32,
        query: OffsetQuery,
    ) -> Result<ResolvedOffset, BrokerError> {
        let target = self.partition(topic, partition).await?;
        if !target.is_leader() {
            return Err(target.not_leader_error());
        }
        let progress = target.progress();
        Ok(match query {
            OffsetQuery::Earliest => ResolvedOffset {
                offset: progress.log_start_offset,
                timestamp_ms: None,
                progress,
            },
            OffsetQuery::Latest => ResolvedOffset {
                offset: progress.high_watermark,
                timestamp_ms: None,
                progress,
            },
            OffsetQuery::Timestamp(timestamp) => {
                let (offset, timestamp_ms, progress) =
                    target.offset_for_timestamp(timestamp).await?;
                ResolvedOffset {
                    offset,
                    timestamp_ms,
                    progress,
                }
            }
        })
    }

    /// The hosted replica of a partition, or the error that says where it is (or that it
    /// does not exist).
    async fn partition(
        &self,
        topic: &TopicName,
        partition: u32,
    ) -> Result<Arc<Partition>, BrokerError> {
        let hosted = self.hosted_topic(topic).await?;
        if partition >= hosted.partition_count {
            return Err(BrokerError::PartitionNotFound {
                topic: topic.to_string(),
                partition,
                partitions: hosted.partition_count,
            });
        }
        match hosted.partitions.get(&PartitionId(partition)) {
            Some(target) => Ok(target.clone()),
            None => Err(self.not_hosted(topic, partition).await),
        }
    }

    /// The partitions of `topic` hosted here; when there are none, asks the cluster manager
    /// whether the topic exists at all.
    async fn hosted_topic(&self, topic: &TopicName) -> Result<HostedTopic, BrokerError> {
        if let Some(hosted) = self.replicas.topic(topic) {
            return Ok(hosted);
        }
        match self.cluster.topic(topic.as_str()).await {
            Ok(None) => Err(BrokerError::TopicNotFound {
                topic: topic.to_string(),
            }),
            Ok(Some(placement)) => Ok(HostedTopic {
                partition_count: placement.partition_count,
                max_message_bytes: u32::MAX,
                partitions: BTreeMap::new(),
            }),
            Err(err) => Err(BrokerError::Unavailable(format!(
                "topic '{topic}' is not hosted here and the cluster manager cannot be asked: {err}"
            ))),
        }
    }

    /// Why a partition that exists is not served here: its leader, when the cluster manager
    /// knows it.
    async fn not_hosted(&self, topic: &TopicName, partition: u32) -> BrokerError {
        let leader = match self.cluster.topic(topic.as_str()).await {
            Ok(Some(placement)) => placement.leaders.get(&partition).map(|leader| LeaderHint {
                id: u64::from(leader.broker.0),
                address: leader.address.clone(),
            }),
            _ => None,
        };
        match leader {
            Some(leader) => BrokerError::NotLeader {
                topic: topic.to_string(),
                partition,
                leader: Some(leader),
            },
            None => BrokerError::LeaderNotAvailable {
                topic: topic.to_string(),
                partition,
            },
        }
    }
}

fn check_partition(
    topic: &TopicName,
    hosted: &HostedTopic,
    partition: u32,
) -> Result<(), BrokerError> {
    if partition >= hosted.partition_count {
        return Err(BrokerError::PartitionNotFound {
            topic: topic.to_string(),
            partition,
            partitions: hosted.partition_count,
        });
    }
    Ok(())
}

fn check_record_size(
    topic: &TopicName,
    hosted: &HostedTopic,
    batch: usize,
    record: usize,
    size: usize,
) -> Result<(), BrokerError> {
    if size > hosted.max_message_bytes as usize {
        return Err(BrokerError::RecordTooLarge {
            topic: topic.to_string(),
            batch,
            record,
            size,
            max: hosted.max_message_bytes as usize,
        });
    }
    Ok(())
}

struct Subscription {
    partition: Arc<Partition>,
    progress: tokio::sync::watch::Receiver<Progress>,
    next: u64,
    limits: ReadLimits,
    budget: PushBudget,
    /// The last push, counted against the budget until the stream asks for the next one.
    pushed: Option<Pushed>,
    shutdown: CancellationToken,
    done: bool,
}

impl Subscription {
    async fn next_batch(mut self) -> Option<(Result<Fetched, BrokerError>, Self)> {
        // Asked for the next push: the last one went out.
        self.pushed = None;
        if self.done {
            return None;
        }
        loop {
            let progress = *self.progress.borrow_and_update();
            if self.next < progress.high_watermark || self.next < progress.log_start_offset {
                let mut pushed = self.budget.reserve(self.limits.max_bytes);
                let limits = ReadLimits {
                    max_bytes: pushed.bytes(),
                    ..self.limits
                };
                let outcome = self.partition.read(self.next, limits).await;
                match &outcome {
                    Ok((read, _)) => {
                        metrics::counter!("mq_fetch_records_total")
                            .increment(read.records.len() as u64);
                        self.next = read.next_offset;
                        pushed.settle(read.records.iter().map(|(_, r)| r.encoded_len()).sum());
                        self.pushed = Some(pushed);
                    }
                    Err(_) => self.done = true,
                }
                return Some((
                    outcome.map(|(read, progress)| fetched(read, progress)),
                    self,
                ));
            }
            tokio::select! {
                changed = self.progress.changed() => {
                    if changed.is_err() {
                        self.done = true;
                        let error = BrokerError::Unavailable("the replica stopped; resubscribe".into());
                        return Some((Err(error), self));
                    }
                }
                _ = self.shutdown.cancelled() => {
                    self.done = true;
                    let error = BrokerError::Unavailable("the broker is shutting down; resubscribe elsewhere".into());
                    return Some((Err(error), self));
                }
            }
        }
    }
}

fn fetched(read: ReadResult, progress: Progress) -> Fetched {
    Fetched {
        records: read.records,
        next_offset: read.next_offset,
        progress,
    }
}

//! The workload's processes: producers (idempotent, through `mq-client`; plain, with single
//! gRPC attempts of their own so a refusal is a definite failure), plain consumers, group
//! members that commit after every poll, an observer of the group's committed offsets, and
//! the final read. Each records its operations in the history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use mq_client::{Client, ClientConfig, ClientError, FetchOptions, Record};
use mq_common::error::{ApiError, ErrorCode};
use mq_consumer::{Consumer, ConsumerConfig, ConsumerRecord, GroupConfig, Seek};
use mq_proto::v1 as pb;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::history::{Event, F, Kind, Recorder};

/// What every process shares.
#[derive(Debug, Clone)]
pub struct Shared {
    pub recorder: Recorder,
    pub servers: Vec<String>,
    pub topic: String,
    pub partitions: u32,
    pub keys: u32,
    /// The next unique value to send.
    pub next_value: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
    /// How long one operation may take before it is given up as indeterminate.
    pub timeout: Duration,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn client_config(&self, idempotent: bool) -> ClientConfig {
        ClientConfig {
            request_timeout: self.timeout,
            // A leader that answers nothing (paused, cut off) is given up well before the
            // request times out: brokers elect a successor within about a second.
            attempt_timeout: Duration::from_millis(1500),
            connect_timeout: Duration::from_secs(1),
            idempotent,
            ..ClientConfig::new(self.servers.clone())
        }
    }

    /// The next value and its key and partition (each key lives in one partition).
    fn next_send(&self, rng: &mut SmallRng) -> (u64, u32, u32) {
        let value = self.next_value.fetch_add(1, Ordering::Relaxed);
        let key = rng.random_range(0..self.keys);
        (value, key, key % self.partitions)
    }
}

fn record_of(key: u32, value: u64) -> Record {
    Record::keyed(format!("k{key}"), value.to_string())
}

/// The value a record carries (`u64::MAX` when it is not one of ours: a phantom).
fn value_of(record: &Record) -> u64 {
    record
        .value
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

fn send_event(shared: &Shared, process: u32, partition: u32, value: u64) -> Event {
    Event {
        partition: Some(partition),
        value: Some(value),
        ..shared.recorder.event(process, Kind::Invoke, F::Send)
    }
}

/// An idempotent producer: one send at a time through `mq-client`, which retries until its
/// deadline. Only errors found before sending are definite; every other is indeterminate.
pub async fn idempotent_producer(shared: Shared, process: u32, seed: u64, pace: Duration) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let client = Client::new(shared.client_config(true)).expect("client");
    while !shared.stopped() {
        let (value, key, partition) = shared.next_send(&mut rng);
        shared.recorder.record(Event {
            key: Some(format!("k{key}")),
            idempotent: Some(true),
            ..send_event(&shared, process, partition, value)
        });
        let outcome = client
            .produce(&shared.topic, partition, vec![record_of(key, value)])
            .await;
        let completion = match outcome {
            Ok(offset) => Event {
                offset: Some(offset),
                ..send_event(&shared, process, partition, value)
            }
            .with_kind(Kind::Ok),
            Err(error) => {
                let kind = if matches!(
                    error,
                    ClientError::InvalidArgument(_) | ClientError::RecordTooLarge { .. }
                ) {
                    Kind::Fail
                } else {
                    Kind::Info
                };
                Event {
                    detail: Some(error.to_string()),
                    ..send_event(&shared, process, partition, value)
                }
                .with_kind(kind)
            }
        };
        shared.recorder.record(completion);
        tokio::time::sleep(pace).await;
    }
}

/// A plain (not idempotent) producer with one gRPC attempt per send, to the leader it last
/// learned: a refusal by the server (not the leader, no leader) is a definite failure; a
/// timeout or a broken connection is indeterminate.
pub async fn plain_producer(shared: Shared, process: u32, seed: u64, pace: Duration) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let client = Client::new(shared.client_config(false)).expect("client");
    let mut leaders: BTreeMap<u32, String> = BTreeMap::new();
    while !shared.stopped() {
        let (value, key, partition) = shared.next_send(&mut rng);
        let Some(leader) = leader(&client, &shared.topic, partition, &mut leaders).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        shared.recorder.record(Event {
            key: Some(format!("k{key}")),
            idempotent: Some(false),
            ..send_event(&shared, process, partition, value)
        });
        let outcome = produce_once(&shared, &leader, partition, record_of(key, value)).await;
        let completion = match outcome {
            Ok(offset) => Event {
                offset: Some(offset),
                ..send_event(&shared, process, partition, value)
            }
            .with_kind(Kind::Ok),
            Err((definite, error)) => {
                leaders.remove(&partition);
                Event {
                    detail: Some(error.to_string()),
                    ..send_event(&shared, process, partition, value)
                }
                .with_kind(if definite { Kind::Fail } else { Kind::Info })
            }
        };
        shared.recorder.record(completion);
        tokio::time::sleep(pace).await;
    }
}

async fn leader(
    client: &Client,
    topic: &str,
    partition: u32,
    leaders: &mut BTreeMap<u32, String>,
) -> Option<String> {
    if let Some(address) = leaders.get(&partition) {
        return Some(address.clone());
    }
    let description = client.describe_topic(topic).await.ok()?;
    let info = description.partitions.get(partition as usize)?;
    let leader = info.leader_id?;
    let address = info
        .replicas
        .iter()
        .find(|r| r.broker_id == leader)?
        .address
        .clone();
    leaders.insert(partition, address.clone());
    Some(address)
}

/// One Produce call; the error says whether the send definitely did not happen.
async fn produce_once(
    shared: &Shared,
    address: &str,
    partition: u32,
    record: Record,
) -> Result<u64, (bool, ApiError)> {
    let transport = |status: tonic::Status| (false, ApiError::from_status(&status));
    let attempt = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| (false, ApiError::new(ErrorCode::Unavailable, e.to_string())))?
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await
            // Nothing was sent.
            .map_err(|e| (true, ApiError::new(ErrorCode::Unavailable, e.to_string())))?;
        let mut encoded = Vec::new();
        let record = record.with_timestamp(mq_client::now_ms());
        mq_common::records::encode_records([&record], &mut encoded);
        let request = pb::ProduceRequest {
            topic: shared.topic.clone(),
            batches: vec![pb::PartitionBatch {
                partition: Some(partition),
                records: Vec::new(),
                crc32c: Some(crc32c::crc32c(&encoded)),
                encoded_records: encoded.into(),
                record_count: 1,
                producer_id: 0,
                base_sequence: 0,
                compression: pb::Compression::None.into(),
            }],
            timeout_ms: shared.timeout.as_millis() as u32,
        };
        let response = pb::broker_client::BrokerClient::new(channel)
            .produce(request)
            .await
            .map_err(|status| {
                let error = ApiError::from_status(&status);
                (refused(error.code), error)
            })?
            .into_inner();
        let result = response
            .results
            .into_iter()
            .next()
            .ok_or_else(|| transport(tonic::Status::internal("empty produce response")))?;
        match result.error {
            None => Ok(result.base_offset),
            Some(error) => {
                let error = ApiError::from_partition_error(&error);
                Err((refused(error.code), error))
            }
        }
    };
    match tokio::time::timeout(shared.timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err((
            false,
            ApiError::new(ErrorCode::Timeout, "no answer in time"),
        )),
    }
}

/// Reasons a broker gives only when it did not append the batch.
fn refused(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeader
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::InvalidArgument
            | ErrorCode::TopicNotFound
            | ErrorCode::PartitionNotFound
            | ErrorCode::RecordTooLarge
    )
}

impl Event {
    fn with_kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }
}

/// Gathers what the consumer yields for up to `window` (at most 500 records), by partition.
async fn gather(
    consumer: &mut Consumer,
    window: Duration,
) -> (BTreeMap<u32, Vec<(u64, u64)>>, Option<ClientError>, bool) {
    let mut reads: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + window;
    let mut count = 0;
    while count < 500 {
        match tokio::time::timeout_at(deadline, consumer.next()).await {
            Err(_) => break,
            Ok(None) => return (reads, None, true),
            Ok(Some(Err(error))) => return (reads, Some(error), false),
            Ok(Some(Ok(ConsumerRecord {
                partition,
                offset,
                record,
                ..
            }))) => {
                reads
                    .entry(partition)
                    .or_default()
                    .push((offset, value_of(&record)));
                count += 1;
            }
        }
    }
    (reads, None, false)
}

fn record_polls(
    shared: &Shared,
    process: u32,
    group: Option<&str>,
    polls: BTreeMap<u32, Vec<(u64, u64)>>,
) {
    for (partition, reads) in polls {
        shared.recorder.record(Event {
            partition: Some(partition),
            reads,
            group: group.map(str::to_owned),
            ..shared.recorder.event(process, Kind::Ok, F::Poll)
        });
    }
}

fn consumer_config(shared: &Shared) -> ConsumerConfig {
    ConsumerConfig {
        client: shared.client_config(true),
        fetch_max_wait: Duration::from_millis(200),
        ..ConsumerConfig::new(shared.servers.clone())
    }
}

/// A plain consumer of every partition from the start. A partition the consumer gives up on
/// (an error that is not retryable) is assigned again where it stopped.
pub async fn plain_consumer(shared: Shared, process: u32) {
    let mut consumer = Consumer::new(consumer_config(&shared)).expect("consumer");
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    while !shared.stopped() {
        for partition in 0..shared.partitions {
            if consumer.assignment().iter().any(|(_, p)| *p == partition) {
                continue;
            }
            let seek = next
                .get(&partition)
                .map_or(Seek::Earliest, |&offset| Seek::Offset(offset));
            match consumer.assign(&shared.topic, partition, seek).await {
                Ok(start) => shared.recorder.record(Event {
                    partition: Some(partition),
                    offset: Some(start),
                    ..shared.recorder.event(process, Kind::Ok, F::Assign)
                }),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        shared
            .recorder
            .record(shared.recorder.event(process, Kind::Invoke, F::Poll));
        let (polls, error, _) = gather(&mut consumer, Duration::from_millis(300)).await;
        for (partition, reads) in &polls {
            if let Some(&(offset, _)) = reads.last() {
                next.insert(*partition, offset + 1);
            }
        }
        record_polls(&shared, process, None, polls);
        if let Some(error) = error {
            shared.recorder.record(Event {
                detail: Some(error.to_string()),
                ..shared.recorder.event(process, Kind::Info, F::Poll)
            });
        }
    }
}

/// A member of `group`: polls, then commits its positions (no auto-commit), over and over.
pub async fn group_member(shared: Shared, process: u32, group: String) {
    while !shared.stopped() {
        let mut consumer = Consumer::new(consumer_config(&shared)).expect("consumer");
        let config = GroupConfig {
            session_timeout: Duration::from_secs(6),
            auto_commit: None,
            ..GroupConfig::new(group.clone(), [shared.topic.clone()])
        };
        if let Err(error) = consumer.subscribe(config).await {
            shared.recorder.record(Event {
                detail: Some(format!("subscribe: {error}")),
                ..shared.recorder.event(process, Kind::Info, F::Poll)
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        while !shared.stopped() {
            shared
                .recorder
                .record(shared.recorder.event(process, Kind::Invoke, F::Poll));
            let (polls, error, ended) = gather(&mut consumer, Duration::from_millis(300)).await;
            record_polls(&shared, process, Some(&group), polls);
            if let Some(error) = error {
                shared.recorder.record(Event {
                    detail: Some(error.to_string()),
                    ..shared.recorder.event(process, Kind::Info, F::Poll)
                });
            }
            if ended {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let positions: Vec<(u32, u64)> = consumer
                .assignment()
                .iter()
                .filter_map(|(topic, p)| Some((*p, consumer.position(topic, *p)?)))
                .collect();
            shared.recorder.record(Event {
                group: Some(group.clone()),
                ..shared.recorder.event(process, Kind::Invoke, F::Commit)
            });
            let outcome = tokio::time::timeout(shared.timeout, consumer.commit()).await;
            let (kind, detail) = match outcome {
                Ok(Ok(())) => (Kind::Ok, None),
                Ok(Err(error)) => (Kind::Info, Some(error.to_string())),
                Err(_) => (Kind::Info, Some("timed out".to_owned())),
            };
            shared.recorder.record(Event {
                group: Some(group.clone()),
                offsets: positions,
                detail,
                ..shared.recorder.event(process, kind, F::Commit)
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), consumer.close()).await;
    }
}

/// Reads `group`'s committed offsets every `every`.
pub async fn offsets_observer(shared: Shared, process: u32, group: String, every: Duration) {
    let client = Client::new(shared.client_config(true)).expect("client");
    while !shared.stopped() {
        shared.recorder.record(Event {
            group: Some(group.clone()),
            ..shared.recorder.event(process, Kind::Invoke, F::Offsets)
        });
        let outcome = tokio::time::timeout(shared.timeout, client.fetch_offsets(&group, &[])).await;
        let event = match outcome {
            Ok(Ok(offsets)) => Event {
                group: Some(group.clone()),
                offsets: offsets
                    .iter()
                    .filter(|o| o.topic == shared.topic)
                    .map(|o| (o.partition, o.offset))
                    .collect(),
                ..shared.recorder.event(process, Kind::Ok, F::Offsets)
            },
            Ok(Err(error)) => Event {
                group: Some(group.clone()),
                detail: Some(error.to_string()),
                ..shared.recorder.event(process, Kind::Info, F::Offsets)
            },
            Err(_) => Event {
                group: Some(group.clone()),
                detail: Some("timed out".to_owned()),
                ..shared.recorder.event(process, Kind::Info, F::Offsets)
            },
        };
        shared.recorder.record(event);
        tokio::time::sleep(every).await;
    }
}

/// Reads every partition from offset 0 to its high watermark, on its leader, and records it.
pub async fn final_read(shared: &Shared, process: u32) -> anyhow::Result<()> {
    let client = Client::new(shared.client_config(true))?;
    for partition in 0..shared.partitions {
        shared.recorder.record(Event {
            partition: Some(partition),
            ..shared.recorder.event(process, Kind::Invoke, F::FinalRead)
        });
        let mut reads = Vec::new();
        let mut offset = 0;
        loop {
            let batch = client
                .fetch(&shared.topic, partition, offset, FetchOptions::default())
                .await?;
            reads.extend(
                batch
                    .records
                    .iter()
                    .map(|r| (r.offset, value_of(&r.record))),
            );
            offset = batch.next_offset;
            if offset >= batch.high_watermark {
                break;
            }
        }
        shared.recorder.record(Event {
            partition: Some(partition),
            reads,
            ..shared.recorder.event(process, Kind::Ok, F::FinalRead)
        });
    }
    Ok(())
}

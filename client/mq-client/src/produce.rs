//! Produce: plain appends ([`Client::produce`]) and a batching producer's reserved sends
//! ([`Client::reserve`], then [`Client::send_reserved`]), idempotent by default.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mq_common::clock::now_ms;
use mq_common::compression::Compression;
use mq_common::error::{ApiError, ErrorCode};
use mq_common::records::{Record, encode_records};
use mq_proto::v1 as pb;

use crate::client::Client;
use crate::error::ClientError;
use crate::routing::{ServedBy, reroutable};
use crate::sequence::{PartitionSequence, ProduceSlot};

/// Records of one partition in the canonical encoding (see `mq.v1.PartitionBatch`), maybe
/// compressed: what a batching producer sends.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    pub bytes: Bytes,
    pub record_count: u32,
    pub compression: Compression,
}

impl Client {
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
    /// [`crate::MAX_IN_FLIGHT_PER_PARTITION`] places. Batches of one partition reserved in a given
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
}

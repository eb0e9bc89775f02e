//! `mq.v1.Broker`: produce, fetch, subscribe, list offsets.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use mq_common::compression::Compression;
use mq_common::error::ApiError;
use mq_proto::v1 as pb;
use mq_proto::v1::broker_server::{Broker as BrokerRpc, BrokerServer};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::batch::ProducerSeq;
use crate::broker::{BatchRecords, Broker, Fetched, OffsetQuery, ProduceBatch, Start};
use mq_common::records::proto::{from_record, to_consumed};

use crate::convert::topic;
use crate::error::BrokerError;
use crate::partition::read::ReadLimits;

#[derive(Debug, Clone)]
pub struct DataService {
    broker: Arc<Broker>,
}

impl DataService {
    pub fn server(broker: Arc<Broker>) -> BrokerServer<Self> {
        let max = broker.limits().max_request_bytes;
        BrokerServer::new(Self { broker })
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    fn read_limits(
        &self,
        max_records: u32,
        max_bytes: u32,
        coalesce_by_key: bool,
    ) -> Result<ReadLimits, BrokerError> {
        let limits = self.broker.limits();
        if max_bytes as usize > limits.max_fetch_bytes {
            return Err(BrokerError::invalid(
                "max_bytes",
                format!(
                    "{max_bytes} exceeds the limit of {} bytes",
                    limits.max_fetch_bytes
                ),
            ));
        }
        Ok(ReadLimits {
            max_records: if max_records == 0 {
                limits.default_fetch_records
            } else {
                max_records as usize
            },
            max_bytes: if max_bytes == 0 {
                limits.default_fetch_bytes
            } else {
                max_bytes as usize
            },
            coalesce_by_key,
        })
    }
}

fn fetch_response(fetched: Fetched) -> pb::FetchResponse {
    pb::FetchResponse {
        records: fetched
            .records
            .into_iter()
            .map(|(offset, record)| to_consumed(offset, record))
            .collect(),
        high_watermark: fetched.progress.high_watermark,
        log_start_offset: fetched.progress.log_start_offset,
        next_offset: fetched.next_offset,
    }
}

/// One `PartitionBatch` as the broker takes it: records or encoded records, never both.
fn produce_batch(i: usize, batch: pb::PartitionBatch) -> Result<ProduceBatch, BrokerError> {
    if batch.compression != 0 && batch.encoded_records.is_empty() {
        return Err(BrokerError::invalid(
            format!("batches[{i}].compression"),
            "requires encoded_records",
        ));
    }
    let records = match (batch.records.is_empty(), batch.encoded_records.is_empty()) {
        (false, true) => {
            BatchRecords::Decoded(batch.records.into_iter().map(from_record).collect())
        }
        (true, false) if batch.record_count == 0 => {
            return Err(BrokerError::invalid(
                format!("batches[{i}].record_count"),
                "must count the records of encoded_records",
            ));
        }
        (true, false) => BatchRecords::Encoded {
            compression: compression(i, batch.compression)?,
            bytes: batch.encoded_records,
            count: batch.record_count,
        },
        (false, false) => {
            return Err(BrokerError::invalid(
                format!("batches[{i}]"),
                "records and encoded_records are exclusive",
            ));
        }
        (true, true) => {
            return Err(BrokerError::invalid(
                format!("batches[{i}].records"),
                "at least one record is required",
            ));
        }
    };
    if batch.producer_id != 0 && batch.partition.is_none() {
        return Err(BrokerError::invalid(
            format!("batches[{i}].partition"),
            "is required with producer_id (sequences are per partition)",
        ));
    }
    Ok(ProduceBatch {
        partition: batch.partition,
        records,
        crc32c: batch.crc32c,
        producer: ProducerSeq {
            producer_id: batch.producer_id,
            base_sequence: batch.base_sequence,
        },
    })
}

fn compression(i: usize, codec: i32) -> Result<Compression, BrokerError> {
    pb::Compression::try_from(codec)
        .map(Compression::from_proto)
        .map_err(|_| {
            BrokerError::invalid(
                format!("batches[{i}].compression"),
                format!("unknown codec {codec}"),
            )
        })
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl BrokerRpc for DataService {
    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let request = request.into_inner();
        let topic = topic("topic", &request.topic)?;
        let span = tracing::debug_span!("produce", %topic, batches = request.batches.len());
        async {
            if request.batches.is_empty() {
                return Err(
                    BrokerError::invalid("batches", "at least one batch is required").into(),
                );
            }
            let limits = self.broker.limits();
            let timeout = match request.timeout_ms {
                0 => limits.default_produce_timeout,
                ms => Duration::from_millis(u64::from(ms)),
            };
            if timeout > limits.max_produce_timeout {
                return Err(BrokerError::invalid(
                    "timeout_ms",
                    format!(
                        "{} exceeds the limit of {} ms",
                        request.timeout_ms,
                        limits.max_produce_timeout.as_millis()
                    ),
                )
                .into());
            }
            let mut batches = Vec::with_capacity(request.batches.len());
            for (i, batch) in request.batches.into_iter().enumerate() {
                batches.push(produce_batch(i, batch)?);
            }
            let outcomes = self.broker.produce(&topic, batches, timeout).await?;
            let results = outcomes
                .into_iter()
                .map(|outcome| {
                    let (base_offset, duplicate, error) = match &outcome.result {
                        Ok(appended) => (appended.base_offset, appended.duplicate, None),
                        Err(err) => (0, false, Some(ApiError::from(err).to_partition_error())),
                    };
                    pb::PartitionResult {
                        batch_index: outcome.batch_index as u32,
                        partition: outcome.partition,
                        base_offset,
                        record_count: outcome.record_count,
                        error,
                        duplicate,
                    }
                })
                .collect();
            Ok(Response::new(pb::ProduceResponse { results }))
        }
        .instrument(span)
        .await
    }

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let request = request.into_inner();
        let topic = topic("topic", &request.topic)?;
        let limits = self.read_limits(
            request.max_records,
            request.max_bytes,
            request.coalesce_by_key,
        )?;
        let max_wait = Duration::from_millis(u64::from(request.max_wait_ms));
        if max_wait > self.broker.limits().max_fetch_wait {
            return Err(BrokerError::invalid(
                "max_wait_ms",
                format!(
                    "{} exceeds the limit of {} ms",
                    request.max_wait_ms,
                    self.broker.limits().max_fetch_wait.as_millis()
                ),
            )
            .into());
        }
        let fetched = self
            .broker
            .fetch(&topic, request.partition, request.offset, limits, max_wait)
            .instrument(tracing::debug_span!("fetch", %topic, partition = request.partition, offset = request.offset))
            .await?;
        Ok(Response::new(fetch_response(fetched)))
    }

    type SubscribeStream = SubscribeStream;

    #[tracing::instrument(level = "debug", skip_all, fields(topic = %request.get_ref().topic, partition = request.get_ref().partition))]
    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = request.into_inner();
        let topic = topic("topic", &request.topic)?;
        let limits = self.read_limits(
            request.max_records,
            request.max_bytes,
            request.coalesce_by_key,
        )?;
        let start = match request.start {
            Some(pb::subscribe_request::Start::Offset(offset)) => Start::Offset(offset),
            Some(pb::subscribe_request::Start::Position(position)) => {
                match pb::StartPosition::try_from(position) {
                    Ok(pb::StartPosition::Earliest) => Start::Earliest,
                    Ok(pb::StartPosition::Latest) => Start::Latest,
                    _ => {
                        return Err(BrokerError::invalid(
                            "position",
                            format!("{position} is not EARLIEST or LATEST"),
                        )
                        .into());
                    }
                }
            }
            None => {
                return Err(
                    BrokerError::invalid("start", "one of offset or position is required").into(),
                );
            }
        };
        let stream = self
            .broker
            .subscribe(&topic, request.partition, start, limits)
            .await?;
        let stream = stream.map(|item| {
            item.map(|fetched| {
                let response = fetch_response(fetched);
                pb::SubscribeResponse {
                    records: response.records,
                    high_watermark: response.high_watermark,
                    log_start_offset: response.log_start_offset,
                    next_offset: response.next_offset,
                }
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(topic = %request.get_ref().topic))]
    async fn list_offsets(
        &self,
        request: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        let request = request.into_inner();
        let topic = topic("topic", &request.topic)?;
        if request.queries.is_empty() {
            return Err(BrokerError::invalid("queries", "at least one query is required").into());
        }
        let mut queries = Vec::with_capacity(request.queries.len());
        for (i, query) in request.queries.iter().enumerate() {
            let spec = match pb::OffsetSpec::try_from(query.spec) {
                Ok(pb::OffsetSpec::Earliest) => OffsetQuery::Earliest,
                Ok(pb::OffsetSpec::Latest) => OffsetQuery::Latest,
                Ok(pb::OffsetSpec::Timestamp) => OffsetQuery::Timestamp(query.timestamp_ms),
                _ => {
                    return Err(BrokerError::invalid(
                        format!("queries[{i}].spec"),
                        "must be EARLIEST, LATEST or TIMESTAMP",
                    )
                    .into());
                }
            };
            queries.push((query.partition, spec));
        }
        let mut results = Vec::with_capacity(queries.len());
        for (partition, spec) in queries {
            let result = match self.broker.list_offset(&topic, partition, spec).await {
                Ok(resolved) => pb::PartitionOffset {
                    partition,
                    offset: resolved.offset,
                    timestamp_ms: resolved.timestamp_ms,
                    high_watermark: resolved.progress.high_watermark,
                    log_start_offset: resolved.progress.log_start_offset,
                    error: None,
                },
                // A partition that does not exist is bad input, not a per-partition outcome.
                Err(
                    err @ (BrokerError::PartitionNotFound { .. }
                    | BrokerError::TopicNotFound { .. }),
                ) => {
                    return Err(err.into());
                }
                Err(err) => pb::PartitionOffset {
                    partition,
                    error: Some(ApiError::from(&err).to_partition_error()),
                    ..Default::default()
                },
            };
            results.push(result);
        }
        Ok(Response::new(pb::ListOffsetsResponse { results }))
    }
}

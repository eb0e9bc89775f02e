//! Reads: fetch (from the leader or a replica in a rack), subscriptions, and list offsets.

use mq_common::error::{ApiError, ErrorCode};
use mq_proto::v1 as pb;

use crate::client::Client;
use crate::error::ClientError;
use crate::routing::{ServedBy, repeatable};
use crate::subscription::Subscription;
use crate::types::{
    FetchBatch, FetchOptions, OffsetSpec, PartitionOffset, StartAt, consumed_from_proto,
};

impl Client {
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

//! How requests find their server: retries within a deadline, control-plane calls (followed
//! to the leader), the metadata cache's refresh, and partition-leader routing (`leader`,
//! `at_leader`, and `learn` from each routing error).

use std::future::Future;
use std::time::{Duration, Instant};

use mq_common::control::CallPolicy;
use mq_common::error::{ApiError, ErrorCode};
use mq_common::partitioner::partition_for_key;
use mq_proto::v1 as pb;
use mq_proto::v1::metadata_client::MetadataClient;
use tonic::transport::Channel;

use crate::client::Client;
use crate::error::ClientError;
use crate::types::BrokerInfo;

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
pub(crate) enum ServedBy {
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
    /// Runs `attempt` until it succeeds, fails with an error `retry` does not accept, or the
    /// request timeout passes. `attempt` gets the time left.
    pub(crate) async fn retrying<T, F, Fut>(
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
    pub(crate) async fn retrying_until<T, F, Fut>(
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

    /// Calls the control plane (metadata, admin, groups, queues) on the configured servers in
    /// turn, the one that answered last first, following not-leader hints and retrying the
    /// errors `retry` accepts ([`reroutable`] for calls that change something, [`repeatable`]
    /// for reads) with backoff until the request timeout.
    pub(crate) async fn control<T, F, Fut>(
        &self,
        retry: fn(&ClientError) -> bool,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let config = &self.inner.config;
        let policy = CallPolicy::until(
            Instant::now() + config.request_timeout,
            config.retry_backoff,
            config.retry_backoff_max,
            retry,
        );
        self.inner
            .control
            .call(&policy, |address| {
                let call = self.channel(address).map(&call);
                async move { call?.await.map_err(ClientError::from) }
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
    pub(crate) async fn leader(&self, topic: &str, partition: u32) -> Result<Channel, ClientError> {
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
    pub(crate) async fn at_leader<T, Fut>(
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
    pub(crate) fn learn(
        &self,
        topic: &str,
        partition: u32,
        error: &ClientError,
        served_by: ServedBy,
    ) {
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
}

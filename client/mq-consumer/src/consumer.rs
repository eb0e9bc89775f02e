//! [`Consumer`]: assigned partitions, their positions, and the merged stream of records.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use mq_client::{Client, ClientConfig, ClientError, ErrorCode, FetchOptions, OffsetSpec, Record};
use sync_wrapper::SyncWrapper;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::WatchStream;

use crate::group::{Assignment, Group, GroupConfig};
use crate::reader::{self, PartitionStream};

/// How partitions are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Pushed over `Subscribe` streams (flow-controlled); long-poll `Fetch` for partitions
    /// read from a rack replica.
    #[default]
    Subscribe,
    /// Long-poll `Fetch` calls only.
    Fetch,
}

/// Consumer settings. [`ConsumerConfig::new`] gives the defaults listed per field.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Servers, timeouts and retry backoff of the underlying client.
    pub client: ClientConfig,
    pub read_mode: ReadMode,
    /// Most records per fetch (0: the server's default, 10000).
    pub fetch_max_records: u32,
    /// About the most bytes per fetch (0: the server's default, 4 MiB).
    pub fetch_max_bytes: u32,
    /// How long a fetch at the end of the log waits for a record. Default 500 ms.
    pub fetch_max_wait: Duration,
    /// Read partitions from a live replica on a broker in this rack when there is one.
    /// Default none: always the leader.
    pub rack: Option<String>,
    /// Latest per key: of the records one read covers, only the last of each key is yielded
    /// (keyless records all are), so a consumer that fell behind skips superseded values
    /// (cache invalidation, views). One that keeps up still gets every record. Default off.
    pub coalesce_by_key: bool,
}

impl ConsumerConfig {
    pub fn new(servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            client: ClientConfig::new(servers),
            read_mode: ReadMode::Subscribe,
            fetch_max_records: 0,
            fetch_max_bytes: 0,
            fetch_max_wait: Duration::from_millis(500),
            rack: None,
            coalesce_by_key: false,
        }
    }
}

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// The first offset still stored.
    Earliest,
    /// The high watermark: only records committed from now on.
    Latest,
    /// An exact offset within `[log start, high watermark]`.
    Offset(u64),
    /// The first record whose timestamp (ms since the epoch) is at or after this; the high
    /// watermark when none is.
    Timestamp(i64),
}

/// A record read, with where it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub record: Record,
}

type PartitionKey = (Arc<str>, u32);

/// Reads assigned partitions as one stream. The stream ends when no partition is assigned.
///
/// A partition whose read fails with an error that is not retryable (the topic was deleted,
/// the position fell below the log start) yields that error once and is unassigned; seek it
/// again to go on. In group mode a position below the log start (retention deleted it) starts
/// again where [`GroupConfig::offset_reset`] points, without an error. Retryable failures (leader moved, broker restarting or unreachable) never
/// reach the stream: the partition resumes from its position.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    /// In a `SyncWrapper` (only ever used through `&mut`), so that `Consumer` is `Sync` and
    /// futures borrowing it (`commit`, `assign`) can be spawned on a multi-threaded runtime.
    streams: SyncWrapper<StreamMap<PartitionKey, PartitionStream>>,
    positions: HashMap<PartitionKey, u64>,
    /// Group mode: the membership and the assignments it publishes.
    group: Option<(Group, WatchStream<Assignment>)>,
    /// The last record yielded: processed once the stream is polled again.
    yielded: Option<(PartitionKey, u64)>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub fn new(config: ConsumerConfig) -> Result<Self, ClientError> {
        Ok(Self {
            client: Client::new(config.client.clone())?,
            config,
            streams: SyncWrapper::new(StreamMap::new()),
            positions: HashMap::new(),
            group: None,
            yielded: None,
        })
    }

    /// The underlying client (metadata, admin calls).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Starts reading `topic/partition` from `seek` (replacing any earlier position of it);
    /// returns the offset reading starts at.
    pub async fn assign(
        &mut self,
        topic: &str,
        partition: u32,
        seek: Seek,
    ) -> Result<u64, ClientError> {
        let offset = self.resolve(topic, partition, seek).await?;
        let key: PartitionKey = (Arc::from(topic), partition);
        self.positions.insert(key.clone(), offset);
        let stream = self.open(&key, offset, Duration::ZERO);
        self.streams.get_mut().insert(key, stream);
        Ok(offset)
    }

    /// Moves an assigned partition to `seek`; the same as [`Self::assign`].
    pub async fn seek(
        &mut self,
        topic: &str,
        partition: u32,
        seek: Seek,
    ) -> Result<u64, ClientError> {
        self.assign(topic, partition, seek).await
    }

    /// Stops reading `topic/partition`.
    pub fn unassign(&mut self, topic: &str, partition: u32) {
        let key: PartitionKey = (Arc::from(topic), partition);
        self.streams.get_mut().remove(&key);
        self.positions.remove(&key);
    }

    /// The assigned partitions, sorted.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        let mut assigned: Vec<_> = self
            .positions
            .keys()
            .map(|(topic, partition)| (topic.to_string(), *partition))
            .collect();
        assigned.sort();
        assigned
    }

    /// The offset of the next record this consumer will yield from `topic/partition`.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.positions.get(&(Arc::from(topic), partition)).copied()
    }

    /// Broadcast: reads every partition of `topics` from its high watermark now, so this
    /// consumer gets every record published from the moment this returns, as does every other
    /// instance that does the same (cache invalidation: each instance of a service sees every
    /// change). Nothing is kept on the servers: the subscription ends with the consumer.
    /// Combine with [`ConsumerConfig::coalesce_by_key`] so a slow instance skips superseded
    /// values. Replaces any partitions assigned by hand; not for a group member.
    pub async fn broadcast(
        &mut self,
        topics: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<(), ClientError> {
        if self.group.is_some() {
            return Err(ClientError::InvalidArgument(
                "a group member cannot also broadcast; use another consumer".into(),
            ));
        }
        let mut starts = Vec::new();
        for topic in topics {
            let topic = topic.as_ref();
            let partitions = self.client.describe_topic(topic).await?.partitions.len() as u32;
            for partition in 0..partitions {
                let start = self.resolve(topic, partition, Seek::Latest).await?;
                starts.push(((Arc::from(topic), partition), start));
            }
        }
        if starts.is_empty() {
            return Err(ClientError::InvalidArgument(
                "topics: broadcast needs at least one topic".into(),
            ));
        }
        self.streams = SyncWrapper::new(StreamMap::new());
        self.positions.clear();
        for (key, start) in starts {
            let stream = self.open(&key, start, Duration::ZERO);
            self.positions.insert(key.clone(), start);
            self.streams.get_mut().insert(key, stream);
        }
        Ok(())
    }

    /// Joins a consumer group: the consumer manager assigns this consumer a share of the
    /// partitions of `group.topics` (each partition to one member of the group at a time) and
    /// moves them as members come and go; the stream follows. Newly assigned partitions start
    /// at the group's committed offset (or per [`GroupConfig::offset_reset`]). Replaces any
    /// partitions assigned by hand.
    ///
    /// Delivery: with auto-commit (the default) a record's offset is committed only after the
    /// stream was polled again, so a crash re-delivers at most the records since the last
    /// commit (at-least-once). For at-most-once, commit before processing with
    /// [`Self::commit`] and `auto_commit: None`.
    pub async fn subscribe(&mut self, group: GroupConfig) -> Result<(), ClientError> {
        if self.group.is_some() {
            return Err(ClientError::InvalidArgument(
                "already subscribed to a group; close this consumer first".into(),
            ));
        }
        let (group, assignments) = Group::join(self.client.clone(), group).await?;
        self.streams = SyncWrapper::new(StreamMap::new());
        self.positions.clear();
        self.group = Some((group, WatchStream::new(assignments)));
        Ok(())
    }

    /// Commits the position of every partition this member owns (the offset after the last
    /// record yielded) for its group. Fails with `STALE_MEMBER_EPOCH`/`FENCED_MEMBER`/
    /// `UNKNOWN_MEMBER` when the partitions moved away meanwhile.
    pub async fn commit(&self) -> Result<(), ClientError> {
        let Some((group, _)) = &self.group else {
            return Err(ClientError::InvalidArgument(
                "commit needs a group: call subscribe first".into(),
            ));
        };
        let positions = self
            .positions
            .iter()
            .map(|((topic, partition), offset)| ((topic.to_string(), *partition), *offset))
            .collect();
        group.commit(positions).await
    }

    /// Leaves the group (committing positions first with auto-commit) and stops reading.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if let Some((group, _)) = self.group.take() {
            if group.auto_commit() {
                let positions = self
                    .positions
                    .iter()
                    .map(|((topic, partition), offset)| ((topic.to_string(), *partition), *offset))
                    .collect();
                group.commit(positions).await?;
            }
            group.leave().await?;
        }
        Ok(())
    }

    /// Applies a new group assignment: stops partitions taken away (reporting their
    /// positions) and opens the ones given.
    fn apply_assignment(&mut self, assignment: Assignment) {
        let keep: HashMap<PartitionKey, u64> = assignment
            .partitions
            .into_iter()
            .map(|((topic, partition), start)| ((Arc::from(topic.as_str()), partition), start))
            .collect();
        let revoked: Vec<PartitionKey> = self
            .positions
            .keys()
            .filter(|key| !keep.contains_key(*key))
            .cloned()
            .collect();
        let mut released = Vec::with_capacity(revoked.len());
        for key in revoked {
            self.streams.get_mut().remove(&key);
            if let Some(position) = self.positions.remove(&key) {
                released.push(((key.0.to_string(), key.1), position));
            }
        }
        for (key, start) in keep {
            if !self.positions.contains_key(&key) {
                self.positions.insert(key.clone(), start);
                let stream = self.open(&key, start, Duration::ZERO);
                self.streams.get_mut().insert(key, stream);
            }
        }
        if let Some((group, _)) = &self.group {
            group.released(released);
        }
    }

    async fn resolve(&self, topic: &str, partition: u32, seek: Seek) -> Result<u64, ClientError> {
        let spec = match seek {
            Seek::Earliest => OffsetSpec::Earliest,
            Seek::Latest | Seek::Offset(_) => OffsetSpec::Latest,
            Seek::Timestamp(timestamp_ms) => OffsetSpec::Timestamp(timestamp_ms),
        };
        let resolved = self.client.list_offset(topic, partition, spec).await?;
        match seek {
            Seek::Offset(offset)
                if offset < resolved.log_start_offset || offset > resolved.high_watermark =>
            {
                Err(ClientError::OffsetOutOfRange {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                    log_start_offset: resolved.log_start_offset,
                    high_watermark: resolved.high_watermark,
                })
            }
            Seek::Offset(offset) => Ok(offset),
            _ => Ok(resolved.offset),
        }
    }

    /// After the server answered `OFFSET_OUT_OF_RANGE` at `position`. Below the log start
    /// (retention deleted it), a group member starts where `reset` resolves to, as when no
    /// offset was committed, and a plain consumer gets [`ClientError::OffsetOutOfRange`].
    /// Otherwise the position is above the answering leader's high watermark: a new leader
    /// learns the high watermark only once it commits in its term, so the partition resumes
    /// at the same position after a backoff (never a reset: that would re-read or skip).
    fn reopen_out_of_range(
        &self,
        key: &PartitionKey,
        position: u64,
        reset: Option<OffsetSpec>,
    ) -> PartitionStream {
        let (client, topic, partition) = (self.client.clone(), key.0.clone(), key.1);
        let delay = self.client.config().retry_backoff_max;
        let resolved = async move {
            let stored = client
                .list_offset(&topic, partition, OffsetSpec::Earliest)
                .await?;
            if position >= stored.log_start_offset {
                return Ok((position, delay));
            }
            match reset {
                Some(spec) => {
                    tracing::warn!(%topic, partition, position, ?spec, "position below the log start; resetting");
                    let reset = client.list_offset(&topic, partition, spec).await?;
                    Ok((reset.offset, Duration::ZERO))
                }
                None => Err(ClientError::OffsetOutOfRange {
                    topic: topic.to_string(),
                    partition,
                    offset: position,
                    log_start_offset: stored.log_start_offset,
                    high_watermark: stored.high_watermark,
                }),
            }
        };
        let opener = self.opener();
        let key = key.clone();
        futures::stream::once(resolved)
            .flat_map(move |resolved| match resolved {
                Ok((offset, delay)) => opener.open(&key, offset, delay),
                Err(error) => futures::stream::iter([Err(error)]).boxed(),
            })
            .boxed()
    }

    fn open(&self, key: &PartitionKey, offset: u64, delay: Duration) -> PartitionStream {
        self.opener().open(key, offset, delay)
    }

    fn opener(&self) -> Opener {
        Opener {
            client: self.client.clone(),
            options: FetchOptions {
                max_records: self.config.fetch_max_records,
                max_bytes: self.config.fetch_max_bytes,
                max_wait: self.config.fetch_max_wait,
                coalesce_by_key: self.config.coalesce_by_key,
            },
            read_mode: self.config.read_mode,
            rack: self.config.rack.clone(),
        }
    }
}

/// What opening a partition's stream needs.
struct Opener {
    client: Client,
    options: FetchOptions,
    read_mode: ReadMode,
    rack: Option<String>,
}

impl Opener {
    fn open(
        &self,
        (topic, partition): &PartitionKey,
        offset: u64,
        delay: Duration,
    ) -> PartitionStream {
        if self.read_mode == ReadMode::Fetch || self.rack.is_some() {
            reader::fetch(
                self.client.clone(),
                (topic.to_string(), *partition, offset),
                self.options,
                self.rack.clone(),
                delay,
            )
        } else {
            reader::subscribe(
                self.client.clone(),
                (topic.to_string(), *partition, offset),
                self.options,
                delay,
            )
        }
    }
}

impl Stream for Consumer {
    type Item = Result<ConsumerRecord, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(((topic, partition), offset)) = this.yielded.take()
            && let Some((group, _)) = &this.group
        {
            group.processed((topic.to_string(), partition), offset + 1);
        }
        loop {
            if let Some((_, assignments)) = &mut this.group
                && let Poll::Ready(Some(assignment)) = Pin::new(assignments).poll_next(cx)
            {
                this.apply_assignment(assignment);
                continue;
            }
            if this.group.is_some() && this.streams.get_mut().is_empty() {
                // Nothing assigned right now: wait for the next assignment.
                return Poll::Pending;
            }
            let Some((key, item)) = futures::ready!(Pin::new(this.streams.get_mut()).poll_next(cx))
            else {
                return Poll::Ready(None);
            };
            match item {
                Ok(consumed) => {
                    this.positions.insert(key.clone(), consumed.offset + 1);
                    this.yielded = Some((key.clone(), consumed.offset));
                    return Poll::Ready(Some(Ok(ConsumerRecord {
                        topic: key.0,
                        partition: key.1,
                        offset: consumed.offset,
                        record: consumed.record,
                    })));
                }
                Err(error) if error.is_retryable() => {
                    let position = this.positions.get(&key).copied().unwrap_or_default();
                    tracing::debug!(topic = %key.0, partition = key.1, %error, position, "resuming partition");
                    let delay = this.client.config().retry_backoff_max;
                    let stream = this.open(&key, position, delay);
                    this.streams.get_mut().insert(key, stream);
                }
                Err(error @ ClientError::Api(_)) if error.code() == ErrorCode::OffsetOutOfRange => {
                    let position = this.positions.get(&key).copied().unwrap_or_default();
                    let reset = this.group.as_ref().map(|(group, _)| group.reset_spec());
                    tracing::info!(topic = %key.0, partition = key.1, %error, position, "position out of range; checking the stored range");
                    let stream = this.reopen_out_of_range(&key, position, reset);
                    this.streams.get_mut().insert(key, stream);
                }
                Err(error) => {
                    this.streams.get_mut().remove(&key);
                    this.positions.remove(&key);
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
    }
}

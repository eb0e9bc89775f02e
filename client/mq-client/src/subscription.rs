//! [`Subscription`]: a partition's records as a `Stream`, resuming after leader changes and
//! broker restarts from the offset after the last record it yielded.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use mq_proto::v1 as pb;

use crate::client::Client;
use crate::error::ClientError;
use crate::routing::repeatable;
use crate::types::{ConsumedRecord, FetchOptions, StartAt, consumed_from_proto};

/// Records of one partition, in offset order, without gaps or repeats across reconnections.
pub struct Subscription {
    client: Client,
    topic: String,
    partition: u32,
    /// The offset of the next record to yield (once known).
    next: Option<u64>,
    start: StartAt,
    options: FetchOptions,
    buffered: VecDeque<ConsumedRecord>,
    state: State,
}

enum State {
    Streaming(Box<tonic::Streaming<pb::SubscribeResponse>>),
    Opening(BoxFuture<'static, Result<tonic::Streaming<pb::SubscribeResponse>, ClientError>>),
    Failed,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("next", &self.next)
            .finish()
    }
}

impl Subscription {
    pub(crate) async fn open(
        client: Client,
        topic: String,
        partition: u32,
        start: StartAt,
        options: FetchOptions,
    ) -> Result<Self, ClientError> {
        let stream = client
            .open_stream(&topic, partition, start, options)
            .await?;
        Ok(Self {
            client,
            topic,
            partition,
            next: match start {
                StartAt::Offset(offset) => Some(offset),
                _ => None,
            },
            start,
            options,
            buffered: VecDeque::new(),
            state: State::Streaming(Box::new(stream)),
        })
    }

    /// The offset of the next record this subscription will yield, once known.
    pub fn position(&self) -> Option<u64> {
        self.next
    }

    fn reopen(&mut self) {
        let client = self.client.clone();
        let topic = self.topic.clone();
        let partition = self.partition;
        let start = self.next.map_or(self.start, StartAt::Offset);
        let options = self.options;
        self.state = State::Opening(
            async move {
                // A short pause so a restarting broker or a new election can settle.
                tokio::time::sleep(client.config().retry_backoff).await;
                client.open_stream(&topic, partition, start, options).await
            }
            .boxed(),
        );
    }
}

impl Stream for Subscription {
    type Item = Result<ConsumedRecord, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(record) = this.buffered.pop_front() {
                this.next = Some(record.offset + 1);
                return Poll::Ready(Some(Ok(record)));
            }
            match &mut this.state {
                State::Failed => return Poll::Ready(None),
                State::Opening(opening) => match opening.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(stream)) => this.state = State::Streaming(Box::new(stream)),
                    Poll::Ready(Err(error)) => {
                        this.state = State::Failed;
                        return Poll::Ready(Some(Err(error)));
                    }
                },
                State::Streaming(stream) => match stream.poll_next_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(batch))) => {
                        // Skip anything before the position (a resumed stream never repeats).
                        let next = this.next;
                        this.buffered.extend(
                            batch
                                .records
                                .into_iter()
                                .map(consumed_from_proto)
                                .filter(|r| next.is_none_or(|n| r.offset >= n)),
                        );
                        if this.next.is_none() && this.buffered.is_empty() {
                            this.next = Some(batch.next_offset);
                        }
                    }
                    Poll::Ready(Some(Err(status))) => {
                        let error = ClientError::from(status);
                        this.client
                            .after_stream_error(&this.topic, this.partition, &error);
                        if repeatable(&error) {
                            tracing::debug!(%error, topic = %this.topic, partition = this.partition, "resubscribing");
                            this.reopen();
                        } else {
                            this.state = State::Failed;
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                    // The server ended the stream without an error: resume.
                    Poll::Ready(None) => this.reopen(),
                },
            }
        }
    }
}

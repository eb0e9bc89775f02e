//! One partition's records as a stream, by `Subscribe` or by long-poll `Fetch`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use mq_client::{Client, ClientError, ConsumedRecord, FetchOptions, StartAt};

pub type PartitionStream = Pin<Box<dyn Stream<Item = Result<ConsumedRecord, ClientError>> + Send>>;

/// Records of `topic/partition` from `offset` over a `Subscribe` stream (which itself
/// resumes after leader changes). `delay` is waited first (a pause before a reconnection).
pub fn subscribe(
    client: Client,
    (topic, partition, offset): (String, u32, u64),
    options: FetchOptions,
    delay: Duration,
) -> PartitionStream {
    futures::stream::once(async move {
        tokio::time::sleep(delay).await;
        client
            .subscribe_with(&topic, partition, StartAt::Offset(offset), options)
            .await
    })
    .flat_map(|opened| match opened {
        Ok(subscription) => subscription.boxed(),
        Err(error) => futures::stream::iter([Err(error)]).boxed(),
    })
    .boxed()
}

/// Where a fetch loop is.
struct FetchLoop {
    client: Client,
    topic: String,
    partition: u32,
    next: u64,
    options: FetchOptions,
    rack: Option<String>,
    buffered: VecDeque<ConsumedRecord>,
    delay: Duration,
}

/// Records of `topic/partition` from `offset` by long-poll `Fetch` calls, on a replica in
/// `rack` when there is one.
pub fn fetch(
    client: Client,
    (topic, partition, offset): (String, u32, u64),
    options: FetchOptions,
    rack: Option<String>,
    delay: Duration,
) -> PartitionStream {
    let state = FetchLoop {
        client,
        topic,
        partition,
        next: offset,
        options,
        rack,
        buffered: VecDeque::new(),
        delay,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        if !state.delay.is_zero() {
            tokio::time::sleep(std::mem::take(&mut state.delay)).await;
        }
        loop {
            if let Some(record) = state.buffered.pop_front() {
                state.next = record.offset + 1;
                return Some((Ok(record), Some(state)));
            }
            let fetched = state
                .client
                .fetch_near(
                    &state.topic,
                    state.partition,
                    state.next,
                    state.options,
                    state.rack.as_deref(),
                )
                .await;
            match fetched {
                Ok(batch) => state.buffered.extend(
                    batch
                        .records
                        .into_iter()
                        .filter(|record| record.offset >= state.next),
                ),
                // The stream ends after an error; the consumer decides whether to resume.
                Err(error) => return Some((Err(error), None)),
            }
        }
    })
    .boxed()
}

//! Appending a batch: through Raft, answered once committed and applied. An idempotent
//! producer's batches are handed to Raft in sequence order ([`super::producers::Sequencer`]),
//! and their sequence is checked at apply, in log order, on every replica alike.

use std::sync::Arc;
use std::time::Duration;

use mq_common::clock::now_ms;
use mq_raft::GroupError;

use super::Partition;
use super::producers;
use super::types::{Appended, ApplyResult, PartitionCommand};
use crate::batch::StoredBatch;
use crate::error::BrokerError;

impl Partition {
    /// Appends a batch through Raft; returns once it is committed and applied.
    pub async fn append(
        self: &Arc<Self>,
        batch: StoredBatch,
        timeout: Duration,
    ) -> Result<Appended, BrokerError> {
        // An idempotent producer's batch (parsed once; the header was validated upstream).
        let producer = batch.header().ok().filter(|h| h.producer_id != 0);
        #[cfg(feature = "chaos-hooks")]
        if producer.is_none() && *ACK_BEFORE_COMMIT {
            return Ok(self.append_before_commit(batch));
        }
        // Stamped when proposed: retention by time counts from it.
        let command = move || PartitionCommand::Append {
            batch,
            appended_at_ms: now_ms(),
        };
        let write = async {
            let Some(header) = producer else {
                return self.raft.propose(command()).await;
            };
            // An idempotent producer's batches are handed to Raft in sequence order.
            let turn = self
                .sequencer
                .admit(
                    self.raft.term(),
                    header.producer_id,
                    header.base_sequence,
                    header.record_count,
                    producers::REORDER_WAIT.min(timeout),
                    |producer| {
                        let applied = self.applied_sequences.lock().expect("sequences lock");
                        applied.get(&producer).copied()
                    },
                )
                .await;
            let submitted = self.raft.submit(command()).await;
            drop(turn);
            submitted?.await
        };
        let result = match tokio::time::timeout(timeout, write).await {
            Err(_) | Ok(Err(GroupError::OutcomeUnknown { .. })) => {
                return Err(self.timeout(timeout));
            }
            Ok(Err(err)) => return Err(self.group_error(err)),
            Ok(Ok(result)) => result,
        };
        let (topic, partition) = (self.spec.topic.to_string(), self.spec.partition.0);
        match result {
            ApplyResult::Appended(appended) => Ok(appended),
            ApplyResult::OutOfOrderSequence { expected, got } => {
                if let Some(header) = producer {
                    self.sequencer.correct(header.producer_id, expected);
                }
                Err(BrokerError::OutOfOrderSequence {
                    topic,
                    partition,
                    expected,
                    got,
                })
            }
            ApplyResult::DuplicateSequence { expected, got } => {
                Err(BrokerError::DuplicateSequence {
                    topic,
                    partition,
                    expected,
                    got,
                })
            }
        }
    }
}

/// The environment variable that breaks the broker on purpose, for the chaos suite's proof
/// that its checker catches lost writes: a batch without a producer id is acknowledged
/// before it is committed, at the offset it would probably get. Only builds with the
/// `chaos-hooks` feature (which the test suite turns on, release builds never) read it.
#[cfg(feature = "chaos-hooks")]
pub const UNSAFE_ACK_BEFORE_COMMIT: &str = "MQ_TEST_UNSAFE_ACK_BEFORE_COMMIT";

#[cfg(feature = "chaos-hooks")]
static ACK_BEFORE_COMMIT: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
    let on = std::env::var_os(UNSAFE_ACK_BEFORE_COMMIT).is_some();
    if on {
        tracing::warn!(
            "{UNSAFE_ACK_BEFORE_COMMIT} is set: acknowledging writes before they are committed (loses data)"
        );
    }
    on
});

#[cfg(feature = "chaos-hooks")]
impl Partition {
    /// The deliberately broken append of [`UNSAFE_ACK_BEFORE_COMMIT`]: proposes the batch in
    /// the background and answers at once with the offset it would get if nothing failed.
    fn append_before_commit(self: &Arc<Self>, batch: StoredBatch) -> Appended {
        use std::sync::atomic::Ordering;
        let record_count = batch.header().map_or(1, |h| h.record_count);
        let pending = self
            .unsafe_pending
            .fetch_add(u64::from(record_count), Ordering::SeqCst);
        let partition = self.clone();
        tokio::spawn(async move {
            let command = PartitionCommand::Append {
                batch,
                appended_at_ms: now_ms(),
            };
            let _ = partition.raft.propose(command).await;
            partition
                .unsafe_pending
                .fetch_sub(u64::from(record_count), Ordering::SeqCst);
        });
        Appended {
            base_offset: self.progress().high_watermark + pending,
            record_count,
            duplicate: false,
        }
    }
}

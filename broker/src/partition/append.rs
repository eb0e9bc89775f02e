//! Appending a batch: through Raft, answered once committed and applied. An idempotent
//! producer's batches are handed to Raft in sequence order ([`super::producers::Sequencer`]),
//! and their sequence is checked at apply, in log order, on every replica alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mq_common::clock::now_ms;
use mq_raft::{GroupError, Stages};

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
        let started = Instant::now();
        let write = async {
            // An idempotent producer's batches are handed to Raft in sequence order.
            let turn = match producer {
                None => None,
                Some(header) => Some(
                    self.sequencer
                        .admit(
                            self.raft.term(),
                            header.producer_id,
                            header.base_sequence,
                            header.record_count,
                            producers::REORDER_WAIT.min(timeout),
                            &self.applied_sequences,
                        )
                        .await,
                ),
            };
            let waited = started.elapsed();
            let submitted = self.raft.submit(command()).await;
            drop(turn);
            let (result, stages) = submitted?.await?;
            Ok::<_, GroupError>((result, waited, stages))
        };
        let (result, waited, stages) = match tokio::time::timeout(timeout, write).await {
            Err(_) | Ok(Err(GroupError::OutcomeUnknown { .. })) => {
                return Err(self.timeout(timeout));
            }
            Ok(Err(err)) => return Err(self.group_error(err)),
            Ok(Ok(done)) => done,
        };
        self.note_stages(waited, &stages);
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

/// An append slower than this is logged with where its time went.
const SLOW_APPEND: Duration = Duration::from_millis(100);

impl Partition {
    /// Records how long an append waited for its turn and spent in each Raft stage; a slow
    /// one is logged with the breakdown.
    fn note_stages(&self, sequencer_wait: Duration, stages: &Stages) {
        metrics::histogram!("mq_produce_sequencer_wait_seconds")
            .record(sequencer_wait.as_secs_f64());
        let total = sequencer_wait + stages.total();
        if total >= SLOW_APPEND {
            tracing::warn!(
                group = %self.spec.group,
                total_ms = total.as_millis() as u64,
                sequencer_wait_ms = sequencer_wait.as_millis() as u64,
                queued_ms = stages.queued.as_millis() as u64,
                commit_ms = stages.committed.map(|c| c.as_millis() as u64),
                apply_ms = stages.applied.as_millis() as u64,
                "slow append"
            );
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

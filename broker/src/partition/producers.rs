//! Idempotent produce: what a partition remembers of each producer, and the pure decision
//! whether a batch continues its producer's sequence, repeats a recent batch, or skips ahead.
//! Applied identically on every replica (it lives in the state machine and its snapshot), so a
//! retry that reaches a new leader after a failover is recognised there too.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Batches per producer whose offsets are remembered: the most a producer may have in flight
/// on one partition.
pub const RECENT_BATCHES: usize = 5;
/// Producers remembered per partition; the least recently active is forgotten first.
pub const MAX_PRODUCERS: usize = 1000;

/// One recent batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentBatch {
    pub base_sequence: u32,
    pub record_count: u32,
    pub base_offset: u64,
}

/// What a partition knows of one producer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    /// Oldest first, at most [`RECENT_BATCHES`].
    pub recent: VecDeque<RecentBatch>,
    /// Raft index of the producer's last appended batch (for eviction).
    pub last_index: u64,
}

impl ProducerState {
    /// The sequence the producer's next batch must start at.
    pub fn next_sequence(&self) -> Option<u32> {
        self.recent
            .back()
            .map(|b| b.base_sequence.wrapping_add(b.record_count))
    }
}

/// The verdict on a batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// Continues the sequence (or the producer is unknown): append it.
    Next,
    /// Repeats a recent batch, appended at `base_offset`.
    Duplicate { base_offset: u64 },
    /// Skips ahead: an earlier batch has not arrived.
    OutOfOrder { expected: u32 },
    /// Repeats a batch older than the recent ones.
    TooOld { expected: u32 },
}

/// Decides what to do with a batch of `record_count` records starting at `base_sequence`. A
/// producer the partition does not know must start at sequence 0: a batch that arrives
/// before its predecessors is never appended ahead of them.
pub fn check(state: Option<&ProducerState>, base_sequence: u32, record_count: u32) -> Sequence {
    let expected = state.and_then(ProducerState::next_sequence).unwrap_or(0);
    if base_sequence == expected {
        return Sequence::Next;
    }
    if let Some(batch) = state
        .into_iter()
        .flat_map(|s| s.recent.iter())
        .find(|b| b.base_sequence == base_sequence && b.record_count == record_count)
    {
        return Sequence::Duplicate {
            base_offset: batch.base_offset,
        };
    }
    // Ahead of `expected` within half the sequence space: a gap; behind it: an old batch.
    if base_sequence.wrapping_sub(expected) < 1 << 31 {
        Sequence::OutOfOrder { expected }
    } else {
        Sequence::TooOld { expected }
    }
}

/// Every producer a partition remembers, by producer id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producers {
    pub by_id: BTreeMap<u64, ProducerState>,
}

impl Producers {
    pub fn check(&self, producer_id: u64, base_sequence: u32, record_count: u32) -> Sequence {
        check(self.by_id.get(&producer_id), base_sequence, record_count)
    }

    /// Records an appended batch. Returns the producer evicted to stay within
    /// [`MAX_PRODUCERS`], if any (deterministic: the one idle for the most entries).
    pub fn record(&mut self, producer_id: u64, batch: RecentBatch, index: u64) -> Option<u64> {
        let state = self.by_id.entry(producer_id).or_default();
        state.recent.push_back(batch);
        if state.recent.len() > RECENT_BATCHES {
            state.recent.pop_front();
        }
        state.last_index = index;
        if self.by_id.len() <= MAX_PRODUCERS {
            return None;
        }
        let idle = self
            .by_id
            .iter()
            .min_by_key(|(id, state)| (state.last_index, **id))
            .map(|(id, _)| *id)?;
        self.by_id.remove(&idle);
        Some(idle)
    }
}

/// Each producer's next sequence as applied, shared by the state machine (which updates it)
/// with the leader's sequencer (which starts from it and waits on its changes).
#[derive(Debug, Default)]
pub struct AppliedSequences {
    next: std::sync::Mutex<std::collections::HashMap<u64, u32>>,
    changed: tokio::sync::Notify,
}

impl AppliedSequences {
    pub fn new(next: std::collections::HashMap<u64, u32>) -> Self {
        Self {
            next: std::sync::Mutex::new(next),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// `producer`'s next sequence as applied.
    pub fn get(&self, producer: u64) -> Option<u32> {
        self.lock().get(&producer).copied()
    }

    /// Runs `update` on the map and wakes the sequencers waiting on it.
    pub fn update<R>(
        &self,
        update: impl FnOnce(&mut std::collections::HashMap<u64, u32>) -> R,
    ) -> R {
        let result = update(&mut self.lock());
        self.changed.notify_waiters();
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, u32>> {
        self.next.lock().expect("sequences lock")
    }
}

impl Producers {
    /// Every producer's next sequence.
    pub fn next_sequences(&self) -> std::collections::HashMap<u64, u32> {
        self.by_id
            .iter()
            .filter_map(|(id, state)| Some((*id, state.next_sequence()?)))
            .collect()
    }
}

/// How long the leader holds back a batch that arrived ahead of its producer's sequence,
/// waiting for the batches before it (requests on one connection may overtake each other).
pub const REORDER_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The leader's view of the next sequence each producer's next proposal should carry: batches
/// are proposed in sequence order, so they are appended in the order the producer sent them.
#[derive(Debug, Default)]
pub struct Sequencer {
    /// `(term, producer -> next sequence)`; reset when the term changes.
    next: std::sync::Mutex<(u64, std::collections::HashMap<u64, u32>)>,
    proposed: tokio::sync::Notify,
}

/// Producers the sequencer tracks before it starts over (only ordering hints are lost).
const SEQUENCER_CAPACITY: usize = 10_000;

impl Sequencer {
    /// Waits (at most `wait`) until the batch is next in its producer's sequence: until the
    /// batches before it were handed to Raft (in this term). The returned turn marks the batch handed over
    /// when dropped, so drop it right after submitting. A batch behind the sequence (a retry)
    /// goes at once.
    pub async fn admit(
        &self,
        term: u64,
        producer_id: u64,
        base_sequence: u32,
        record_count: u32,
        wait: std::time::Duration,
        applied: &AppliedSequences,
    ) -> SequenceTurn<'_> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let submitted = self.proposed.notified();
            let applied_changed = applied.changed.notified();
            {
                let mut next = self.next.lock().expect("sequencer lock");
                if next.0 != term || next.1.len() >= SEQUENCER_CAPACITY {
                    *next = (term, std::collections::HashMap::new());
                }
                // The applied log may be ahead of what this term handed to Raft: a new
                // leader applies the batches its predecessor committed after it took over,
                // and the producer's next batches continue from those, not from what was
                // applied when it first came.
                let expected = next.1.entry(producer_id).or_insert(0);
                if let Some(applied) = applied.get(producer_id)
                    && applied.wrapping_sub(*expected) < 1 << 31
                {
                    *expected = applied;
                }
                let ahead = base_sequence.wrapping_sub(*expected);
                if ahead == 0 || ahead >= 1 << 31 || tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            tokio::select! {
                _ = submitted => {}
                _ = applied_changed => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        SequenceTurn {
            sequencer: self,
            producer_id,
            end: base_sequence.wrapping_add(record_count),
        }
    }
}

impl Sequencer {
    /// The state machine refused a batch of `producer_id` and expects `expected` next: later
    /// batches wait for that one.
    pub fn correct(&self, producer_id: u64, expected: u32) {
        self.next
            .lock()
            .expect("sequencer lock")
            .1
            .insert(producer_id, expected);
        self.proposed.notify_waiters();
    }
}

/// A batch's turn to be handed to Raft; dropping it lets the producer's next batch go.
#[derive(Debug)]
pub struct SequenceTurn<'a> {
    sequencer: &'a Sequencer,
    producer_id: u64,
    end: u32,
}

impl Drop for SequenceTurn<'_> {
    fn drop(&mut self) {
        let mut next = self.sequencer.next.lock().expect("sequencer lock");
        let expected = next.1.get(&self.producer_id).copied().unwrap_or(0);
        // Never move the expectation backwards (a retry of an old batch).
        if self.end.wrapping_sub(expected) < 1 << 31 {
            next.1.insert(self.producer_id, self.end);
        }
        drop(next);
        self.sequencer.proposed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base_sequence: u32, record_count: u32, base_offset: u64) -> RecentBatch {
        RecentBatch {
            base_sequence,
            record_count,
            base_offset,
        }
    }

    #[test]
    fn sequences_continue_repeat_skip_or_are_too_old() {
        let mut producers = Producers::default();
        assert_eq!(
            producers.check(7, 0, 10),
            Sequence::Next,
            "a new producer starts at 0"
        );
        assert_eq!(
            producers.check(7, 40, 10),
            Sequence::OutOfOrder { expected: 0 },
            "an unknown producer's later batch waits for its first"
        );
        for (i, seq) in [0u32, 10, 20, 30, 40, 50].iter().enumerate() {
            producers.record(7, batch(*seq, 10, 100 + *seq as u64), i as u64);
        }
        let cases = [
            (60, 10, Sequence::Next),
            (50, 10, Sequence::Duplicate { base_offset: 150 }),
            (10, 10, Sequence::Duplicate { base_offset: 110 }),
            (0, 10, Sequence::TooOld { expected: 60 }),
            (70, 10, Sequence::OutOfOrder { expected: 60 }),
            (50, 5, Sequence::TooOld { expected: 60 }),
        ];
        for (seq, count, expected) in cases {
            assert_eq!(
                producers.check(7, seq, count),
                expected,
                "seq {seq} x{count}"
            );
        }
        assert_eq!(producers.check(8, 0, 1), Sequence::Next, "other producer");
    }

    #[test]
    fn sequences_wrap() {
        let mut producers = Producers::default();
        producers.record(1, batch(u32::MAX - 1, 4, 0), 1);
        assert_eq!(producers.check(1, 2, 1), Sequence::Next);
        assert_eq!(
            producers.check(1, 3, 1),
            Sequence::OutOfOrder { expected: 2 }
        );
        assert_eq!(
            producers.check(1, u32::MAX - 1, 4),
            Sequence::Duplicate { base_offset: 0 }
        );
    }

    #[test]
    fn the_longest_idle_producer_is_evicted() {
        let mut producers = Producers::default();
        for id in 0..MAX_PRODUCERS as u64 {
            assert_eq!(producers.record(id, batch(0, 1, id), 10 + id), None);
        }
        // Producer 0 becomes active again; producer 1 is now the longest idle.
        producers.record(0, batch(1, 1, 5000), 5000);
        assert_eq!(producers.record(9999, batch(0, 1, 5001), 5001), Some(1));
        assert_eq!(producers.by_id.len(), MAX_PRODUCERS);
    }

    #[tokio::test]
    async fn the_sequencer_lets_batches_through_in_sequence_order() {
        let sequencer = std::sync::Arc::new(Sequencer::default());
        let none = std::sync::Arc::new(AppliedSequences::default());
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        // The producer's first batch (a new producer starts at 0) goes at once.
        drop(sequencer.admit(1, 7, 0, 10, REORDER_WAIT, &none).await);
        // Batches 3 and 2 arrive before batch 1.
        let mut tasks = Vec::new();
        for seq in [30u32, 20] {
            let (sequencer, order, none) = (sequencer.clone(), order.clone(), none.clone());
            tasks.push(tokio::spawn(async move {
                let turn = sequencer.admit(1, 7, seq, 10, REORDER_WAIT, &none).await;
                order.lock().unwrap().push(seq);
                drop(turn);
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            order.lock().unwrap().is_empty(),
            "ahead of the sequence: held"
        );
        let turn = sequencer.admit(1, 7, 10, 10, REORDER_WAIT, &none).await;
        order.lock().unwrap().push(10);
        drop(turn);
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order, vec![10, 20, 30]);
        // A retry of an old batch is not held; a gap is held only for the wait.
        let started = tokio::time::Instant::now();
        drop(sequencer.admit(1, 7, 0, 10, REORDER_WAIT, &none).await);
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        drop(
            sequencer
                .admit(1, 7, 100, 1, std::time::Duration::from_millis(50), &none)
                .await,
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(50));
        // A new term starts from the applied sequence.
        let started = tokio::time::Instant::now();
        drop(
            sequencer
                .admit(
                    2,
                    7,
                    500,
                    1,
                    REORDER_WAIT,
                    &AppliedSequences::new([(7, 500)].into()),
                )
                .await,
        );
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        // A refused batch resets the expectation to what the state machine wants.
        sequencer.correct(7, 400);
        drop(sequencer.admit(2, 7, 400, 1, REORDER_WAIT, &none).await);
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_batch_ahead_goes_as_soon_as_its_predecessors_are_applied() {
        // A new leader: its predecessor's batches up to sequence 30 are committed but not
        // yet applied here, and the producer's next batch (30) arrives.
        let sequencer = std::sync::Arc::new(Sequencer::default());
        let applied = std::sync::Arc::new(AppliedSequences::new([(7, 10)].into()));
        let admitted = tokio::spawn({
            let (sequencer, applied) = (sequencer.clone(), applied.clone());
            async move {
                drop(sequencer.admit(3, 7, 30, 10, REORDER_WAIT, &applied).await);
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !admitted.is_finished(),
            "held while its predecessors are not applied"
        );
        applied.update(|next| next.insert(7, 30));
        tokio::time::timeout(REORDER_WAIT / 2, admitted)
            .await
            .expect("admitted when the applied sequence caught up, not at the deadline")
            .unwrap();
        // The next batch continues from there.
        let turn = tokio::time::timeout(
            REORDER_WAIT / 2,
            sequencer.admit(3, 7, 40, 10, REORDER_WAIT, &applied),
        )
        .await
        .expect("continues the sequence");
        drop(turn);
    }
}

//! The idempotent-produce state of each partition: the producer id and next sequence, and
//! the window of batches in flight ([`ProduceSlot`]: a batch's place in its partition's order).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::client::MAX_IN_FLIGHT_PER_PARTITION;

/// The idempotent-produce state of one partition.
#[derive(Debug)]
pub(crate) struct PartitionSequence {
    /// `(producer id, next sequence)`. The id is replaced after a batch fails for good: the
    /// broker never saw the sequence it skipped, so later batches start a new sequence.
    next: Mutex<(u64, u32)>,
    /// The batches in flight, in the order they took their places.
    window: Mutex<Window>,
    /// Signalled when the window moves on.
    window_moved: tokio::sync::Notify,
}

/// Places in a partition's produce order: tickets in the order batches were reserved. A
/// place is given back only once every earlier batch has resolved too, so at most
/// [`MAX_IN_FLIGHT_PER_PARTITION`] batches lie between the oldest unresolved one and the
/// newest: a batch retried late (after a failover, say) is still among the last five the
/// broker remembers, even when later batches succeeded in the meantime.
#[derive(Debug, Default)]
struct Window {
    next_ticket: u64,
    /// The oldest ticket not yet given back.
    oldest: u64,
    /// Tickets given back out of order, waiting for the older ones.
    returned: BTreeSet<u64>,
}

impl Window {
    /// Takes the next place if the window has room.
    fn enter(&mut self) -> Option<u64> {
        (self.next_ticket - self.oldest < MAX_IN_FLIGHT_PER_PARTITION as u64).then(|| {
            self.next_ticket += 1;
            self.next_ticket - 1
        })
    }

    /// Gives back `ticket`; returns whether the window moved.
    fn leave(&mut self, ticket: u64) -> bool {
        self.returned.insert(ticket);
        let before = self.oldest;
        while self.returned.remove(&self.oldest) {
            self.oldest += 1;
        }
        self.oldest != before
    }
}

impl PartitionSequence {
    pub(crate) fn new() -> Self {
        Self {
            next: Mutex::new((new_producer_id(), 0)),
            window: Mutex::default(),
            window_moved: tokio::sync::Notify::new(),
        }
    }

    /// Waits for a place in the window, then takes it and, when `count` is given (idempotent),
    /// the sequence numbers of a batch of `count` records: both in one step, so places and
    /// sequences are taken in the same order.
    pub(crate) async fn enter(&self, count: Option<u32>) -> (u64, (u64, u32)) {
        loop {
            let moved = self.window_moved.notified();
            if let Some(ticket) = self.window.lock().expect("window lock").enter() {
                let taken = match count {
                    Some(count) => {
                        let mut next = self.next.lock().expect("sequence lock");
                        let taken = *next;
                        next.1 = next.1.wrapping_add(count);
                        taken
                    }
                    None => (0, 0),
                };
                return (ticket, taken);
            }
            moved.await;
        }
    }

    pub(crate) fn leave(&self, ticket: u64) {
        if self.window.lock().expect("window lock").leave(ticket) {
            self.window_moved.notify_waiters();
        }
    }

    pub(crate) fn producer_id(&self) -> u64 {
        self.next.lock().expect("sequence lock").0
    }

    /// Starts a new sequence after a batch of `producer_id` failed for good.
    pub(crate) fn reset(&self, producer_id: u64) {
        let mut next = self.next.lock().expect("sequence lock");
        if next.0 == producer_id {
            *next = (new_producer_id(), 0);
        }
    }
}

/// A batch's place in its partition's produce order (see [`crate::Client::reserve`]); it holds one
/// of the partition's in-flight slots until dropped.
#[derive(Debug)]
pub struct ProduceSlot {
    pub(crate) ticket: u64,
    pub(crate) sequence: Arc<PartitionSequence>,
    pub(crate) producer_id: u64,
    pub(crate) base_sequence: u32,
}

impl Drop for ProduceSlot {
    fn drop(&mut self) {
        self.sequence.leave(self.ticket);
    }
}

/// A random nonzero producer id.
fn new_producer_id() -> u64 {
    loop {
        let id = uuid::Uuid::new_v4().as_u64_pair().0;
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_comes_back_only_once_every_older_batch_resolved() {
        let mut window = Window::default();
        let tickets: Vec<u64> = (0..MAX_IN_FLIGHT_PER_PARTITION)
            .map(|_| window.enter().expect("room"))
            .collect();
        assert_eq!(window.enter(), None);
        // Every later batch resolves while the oldest is still being retried: no room, so
        // its retry still finds it among the broker's last five batches.
        for ticket in &tickets[1..] {
            assert!(!window.leave(*ticket));
        }
        assert_eq!(window.enter(), None);
        // The oldest resolves: all five places are free again.
        assert!(window.leave(tickets[0]));
        let taken: Vec<u64> = std::iter::from_fn(|| window.enter()).collect();
        assert_eq!(taken, vec![5, 6, 7, 8, 9]);
    }
}

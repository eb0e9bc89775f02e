//! How much subscriptions may push ahead of their clients, broker-wide.
//!
//! A subscription pushes its next response when the server asks for it, which it does as soon
//! as HTTP/2 flow control gives the stream a little room: the first response of every stream
//! is sent (or queued) whether or not its client ever reads. Thousands of streams that never
//! read would each hold a full response (`max_bytes`, 4 MiB by default) in memory. So pushed
//! bytes count against a budget until the stream asks for its next response (the sign the
//! previous one went out); while the budget is spent, responses shrink to a small floor
//! instead of waiting: readers keep being served, in smaller pieces, and memory stays bounded
//! by the budget plus the floor per stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The smallest push: what every stream may still get while the budget is spent (a response
/// holds at least one record, even a larger one).
pub const PUSH_FLOOR_BYTES: usize = 16 << 10;

/// Bytes pushed and not yet taken, against a budget; shared by all subscriptions of a broker.
#[derive(Debug, Clone)]
pub struct PushBudget {
    outstanding: Arc<AtomicUsize>,
    budget: usize,
}

/// Bytes of one pushed response, counted until dropped.
#[derive(Debug)]
pub struct Pushed {
    outstanding: Arc<AtomicUsize>,
    bytes: usize,
}

impl Pushed {
    /// The bytes reserved.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Counts what was actually read instead of what was reserved.
    pub fn settle(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.outstanding
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        } else {
            self.outstanding
                .fetch_add(bytes - self.bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }
}

impl Drop for Pushed {
    fn drop(&mut self) {
        self.outstanding.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl PushBudget {
    pub fn new(budget: usize) -> Self {
        Self {
            outstanding: Arc::default(),
            budget,
        }
    }

    /// Reserves the size of a subscription's next push, for one asking for `wanted` bytes:
    /// counted until the returned guard is dropped (reserved before reading, so streams that
    /// read at the same moment do not all take the whole budget).
    pub fn reserve(&self, wanted: usize) -> Pushed {
        let mut bytes = 0;
        self.outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |outstanding| {
                bytes = push_size(wanted, outstanding, self.budget);
                Some(outstanding + bytes)
            })
            .expect("the update always succeeds");
        Pushed {
            outstanding: self.outstanding.clone(),
            bytes,
        }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
}

/// The size of the next push: all that is wanted while the budget allows, what is left of it
/// when less, and never below the floor (nor above what is wanted).
pub fn push_size(wanted: usize, outstanding: usize, budget: usize) -> usize {
    let left = budget.saturating_sub(outstanding);
    wanted.min(left.max(PUSH_FLOOR_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_shrink_to_the_floor_as_the_budget_is_spent() {
        let mib = 1 << 20;
        assert_eq!(push_size(4 * mib, 0, 100 * mib), 4 * mib);
        assert_eq!(push_size(4 * mib, 98 * mib, 100 * mib), 2 * mib);
        assert_eq!(push_size(4 * mib, 100 * mib, 100 * mib), PUSH_FLOOR_BYTES);
        assert_eq!(push_size(4 * mib, 500 * mib, 100 * mib), PUSH_FLOOR_BYTES);
        // Never more than wanted, even below the floor.
        assert_eq!(push_size(1000, 500 * mib, 100 * mib), 1000);
    }

    #[test]
    fn pushed_bytes_count_until_dropped() {
        let budget = PushBudget::new(1 << 20);
        let mut first = budget.reserve(1 << 20);
        assert_eq!(first.bytes(), 1 << 20);
        // Less was read than reserved.
        first.settle(600 << 10);
        let second = budget.reserve(1 << 20);
        assert_eq!(second.bytes(), 424 << 10);
        let third = budget.reserve(1 << 20);
        assert_eq!(third.bytes(), PUSH_FLOOR_BYTES);
        assert_eq!(budget.outstanding(), (1 << 20) + PUSH_FLOOR_BYTES);
        drop(first);
        drop(third);
        assert_eq!(budget.outstanding(), 424 << 10);
        drop(second);
        assert_eq!(budget.reserve(1 << 20).bytes(), 1 << 20);
        assert_eq!(budget.outstanding(), 0);
    }
}

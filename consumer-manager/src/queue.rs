//! Queue subscriptions, the pure parts: what is replicated per partition ([`Settled`]: which
//! offsets are done, how often the unsettled ones were delivered) and the leader's lease
//! bookkeeping ([`Inflight`]: which fetched messages are ready, leased, delayed or on their way
//! to the dead-letter topic), with every decision a function of the state and the time.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bytes::Bytes;
use mq_common::records::Record;
use serde::{Deserialize, Serialize};

/// A queue subscription's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    pub topic: String,
    pub ack_deadline_ms: u32,
    pub max_deliveries: u32,
    pub dead_letter_topic: String,
    pub key_ordered: bool,
}

/// The replicated progress of one partition of a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    /// Every offset below is settled (acked or dead-lettered).
    pub floor: u64,
    /// Settled offsets at or above the floor.
    pub above: BTreeSet<u64>,
    /// Deliveries counted so far of unsettled offsets (recorded on redelivery).
    pub attempts: BTreeMap<u64, u32>,
}

impl Settled {
    pub fn starting_at(floor: u64) -> Self {
        Self {
            floor,
            ..Self::default()
        }
    }

    pub fn is_settled(&self, offset: u64) -> bool {
        offset < self.floor || self.above.contains(&offset)
    }

    /// Marks `offsets` settled and moves the floor over every settled offset it reaches.
    pub fn settle(&mut self, offsets: impl IntoIterator<Item = u64>) {
        for offset in offsets {
            if offset >= self.floor {
                self.above.insert(offset);
            }
            self.attempts.remove(&offset);
        }
        while self.above.remove(&self.floor) {
            self.floor += 1;
        }
    }

    /// Moves the floor to `offset` at least (the records below are gone from the partition).
    pub fn skip_to(&mut self, offset: u64) {
        if offset <= self.floor {
            return;
        }
        self.floor = offset;
        self.above = self.above.split_off(&offset);
        self.attempts = self.attempts.split_off(&offset);
        while self.above.remove(&self.floor) {
            self.floor += 1;
        }
    }

    /// Records delivery counts (never lowering one).
    pub fn count(&mut self, counts: impl IntoIterator<Item = (u64, u32)>) {
        for (offset, attempts) in counts {
            if !self.is_settled(offset) {
                let entry = self.attempts.entry(offset).or_default();
                *entry = (*entry).max(attempts);
            }
        }
    }
}

/// Why a message went to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    Nacked,
    LeaseExpired,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nacked => "nacked",
            Self::LeaseExpired => "lease expired",
        }
    }
}

/// Where a fetched, unsettled message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Deliverable from `not_before_ms` on.
    Ready {
        not_before_ms: i64,
    },
    Leased {
        attempt: u32,
        deadline_ms: i64,
    },
    /// Being settled (ack or dead-letter under way): delivered to nobody.
    Settling,
    /// To be moved to the dead-letter topic.
    Dead(DeadReason),
}

#[derive(Debug, Clone)]
pub struct Pending {
    pub record: Record,
    /// Deliveries so far.
    pub attempts: u32,
    pub state: State,
    /// Whether this leader leased it (else its deliveries were by an earlier leader).
    pub leased_here: bool,
}

/// One delivery handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub offset: u64,
    pub attempt: u32,
    pub deadline_ms: i64,
}

/// Why a lease was not honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseProblem {
    /// The message is not known as delivered.
    Unknown,
    /// The deadline passed.
    Expired,
    /// Delivered again since (or about to be): this lease is stale.
    Superseded,
}

impl LeaseProblem {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unknown => "is unknown",
            Self::Expired => "expired",
            Self::Superseded => "was superseded by a later delivery",
        }
    }
}

/// What a valid lease refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseCheck {
    /// Leased now under this lease.
    Held,
    /// Settled already (an ack repeated): nothing to do.
    Settled,
}

/// The leader's view of one partition's fetched, unsettled messages.
#[derive(Debug, Default)]
pub struct Inflight {
    pub pending: BTreeMap<u64, Pending>,
}

impl Inflight {
    /// Adds a fetched message (first seen or re-read after a leader change).
    pub fn add(&mut self, offset: u64, record: Record, attempts: u32) {
        self.pending.entry(offset).or_insert(Pending {
            record,
            attempts,
            state: State::Ready { not_before_ms: 0 },
            leased_here: false,
        });
    }

    /// Leases up to `max` deliverable messages in offset order until `now_ms +
    /// ack_deadline_ms`. In `key_ordered` mode only the first unsettled message of a key can
    /// be delivered, and only when it is ready.
    pub fn take(&mut self, now_ms: i64, max: usize, config: &QueueConfig) -> Vec<(Lease, Record)> {
        let mut taken = Vec::new();
        let mut seen_keys: HashSet<Bytes> = HashSet::new();
        for (offset, pending) in self.pending.iter_mut() {
            if taken.len() >= max {
                break;
            }
            let first_of_key = match (&pending.record.key, config.key_ordered) {
                (Some(key), true) => seen_keys.insert(key.clone()),
                _ => true,
            };
            let ready =
                matches!(pending.state, State::Ready { not_before_ms } if not_before_ms <= now_ms);
            if !ready || !first_of_key {
                continue;
            }
            pending.attempts += 1;
            let lease = Lease {
                offset: *offset,
                attempt: pending.attempts,
                deadline_ms: now_ms + i64::from(config.ack_deadline_ms),
            };
            pending.state = State::Leased {
                attempt: lease.attempt,
                deadline_ms: lease.deadline_ms,
            };
            pending.leased_here = true;
            taken.push((lease, pending.record.clone()));
        }
        taken
    }

    /// Leases past their deadline become ready again, or dead after `max_deliveries`.
    /// Returns the offsets whose delivery count should be recorded.
    pub fn expire(&mut self, now_ms: i64, max_deliveries: u32) -> Vec<(u64, u32)> {
        let mut counted = Vec::new();
        for (offset, pending) in &mut self.pending {
            if let State::Leased { deadline_ms, .. } = pending.state
                && deadline_ms <= now_ms
            {
                pending.state = give_back(
                    pending.attempts,
                    max_deliveries,
                    now_ms,
                    DeadReason::LeaseExpired,
                );
                counted.push((*offset, pending.attempts));
            }
        }
        counted
    }

    /// Checks that `lease` is the current, unexpired delivery of its message (or that the
    /// message is settled already).
    pub fn check(
        &self,
        offset: u64,
        attempt: u32,
        now_ms: i64,
        settled: impl Fn(u64) -> bool,
    ) -> Result<LeaseCheck, LeaseProblem> {
        let Some(pending) = self.pending.get(&offset) else {
            return match settled(offset) {
                true => Ok(LeaseCheck::Settled),
                false => Err(LeaseProblem::Unknown),
            };
        };
        let current = pending.attempts;
        match pending.state {
            State::Leased { deadline_ms, .. } if attempt == current => match deadline_ms > now_ms {
                true => Ok(LeaseCheck::Held),
                false => Err(LeaseProblem::Expired),
            },
            // Delivered by an earlier leader (its last deliveries may not be counted), not
            // leased since: the ack saves a redelivery.
            State::Ready { .. } if !pending.leased_here && attempt >= current.max(1) => {
                Ok(LeaseCheck::Held)
            }
            _ if attempt > current => Err(LeaseProblem::Unknown),
            _ if attempt == current => Err(LeaseProblem::Expired),
            _ => Err(LeaseProblem::Superseded),
        }
    }

    /// A nacked message: ready again after `delay_ms`, or dead after `max_deliveries`.
    pub fn nack(&mut self, offset: u64, now_ms: i64, delay_ms: u32, max_deliveries: u32) {
        if let Some(pending) = self.pending.get_mut(&offset) {
            pending.state = give_back(
                pending.attempts,
                max_deliveries,
                now_ms + i64::from(delay_ms),
                DeadReason::Nacked,
            );
        }
    }

    pub fn extend(&mut self, offset: u64, deadline_ms: i64) {
        if let Some(pending) = self.pending.get_mut(&offset)
            && let State::Leased { attempt, .. } = pending.state
        {
            pending.state = State::Leased {
                attempt,
                deadline_ms,
            };
        }
    }

    /// Messages waiting to be moved to the dead-letter topic; they are marked settling.
    pub fn take_dead(&mut self) -> Vec<(u64, Record, u32, DeadReason)> {
        let mut dead = Vec::new();
        for (offset, pending) in &mut self.pending {
            if let State::Dead(reason) = pending.state {
                pending.state = State::Settling;
                dead.push((*offset, pending.record.clone(), pending.attempts, reason));
            }
        }
        dead
    }

    pub fn in_flight(&self) -> usize {
        self.pending
            .values()
            .filter(|p| matches!(p.state, State::Leased { .. }))
            .count()
    }
}

fn give_back(attempts: u32, max_deliveries: u32, not_before_ms: i64, reason: DeadReason) -> State {
    match attempts >= max_deliveries {
        true => State::Dead(reason),
        false => State::Ready { not_before_ms },
    }
}

/// A lease's wire form: `partition:offset:attempt`.
pub fn lease_id(partition: u32, lease: &Lease) -> String {
    format!("{partition}:{}:{}", lease.offset, lease.attempt)
}

/// Parses a lease id into `(partition, offset, attempt)`.
pub fn parse_lease_id(id: &str) -> Option<(u32, u64, u32)> {
    let mut parts = id.split(':');
    let parsed = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    parts.next().is_none().then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(key_ordered: bool) -> QueueConfig {
        QueueConfig {
            topic: "t".into(),
            ack_deadline_ms: 1_000,
            max_deliveries: 3,
            dead_letter_topic: "t.q.dlq".into(),
            key_ordered,
        }
    }

    fn inflight(keys: &[Option<&str>]) -> Inflight {
        let mut inflight = Inflight::default();
        for (offset, key) in keys.iter().enumerate() {
            let record = match key {
                Some(key) => Record::keyed(key.to_string(), format!("v{offset}")),
                None => Record::unkeyed(format!("v{offset}")),
            };
            inflight.add(offset as u64, record, 0);
        }
        inflight
    }

    fn offsets(taken: &[(Lease, Record)]) -> Vec<u64> {
        taken.iter().map(|(lease, _)| lease.offset).collect()
    }

    #[test]
    fn settling_moves_the_floor_over_contiguous_offsets() {
        let mut settled = Settled::starting_at(10);
        settled.count([(12, 2), (11, 1)]);
        settled.settle([12, 13, 5]);
        assert_eq!((settled.floor, settled.above.len()), (10, 2));
        assert!(settled.is_settled(5) && settled.is_settled(12) && !settled.is_settled(11));
        settled.settle([10, 11]);
        assert_eq!(settled.floor, 14);
        assert!(settled.above.is_empty() && settled.attempts.is_empty());
        settled.count([(3, 4), (20, 2), (20, 1)]);
        assert_eq!(settled.attempts, BTreeMap::from([(20, 2)]));
        settled.settle([25]);
        settled.skip_to(25);
        assert_eq!(settled.floor, 26, "the skip also passes settled offsets");
        assert!(settled.attempts.is_empty());
    }

    #[test]
    fn leases_go_out_in_order_expire_and_die_after_max_deliveries() {
        let config = config(false);
        let mut inflight = inflight(&[None, None, None]);
        let first = inflight.take(0, 2, &config);
        assert_eq!(offsets(&first), [0, 1]);
        assert_eq!(first[0].0.deadline_ms, 1_000);
        assert_eq!(offsets(&inflight.take(0, 10, &config)), [2]);
        assert!(inflight.take(0, 10, &config).is_empty(), "all leased");
        assert_eq!(inflight.in_flight(), 3);

        inflight.extend(1, 5_000);
        assert_eq!(inflight.expire(1_000, 3), [(0, 1), (2, 1)]);
        assert_eq!(offsets(&inflight.take(1_000, 10, &config)), [0, 2]);
        // Two more expiries of offset 0: third delivery, then dead.
        inflight.expire(2_000, 3);
        assert_eq!(offsets(&inflight.take(2_000, 1, &config)), [0]);
        inflight.expire(3_000, 3);
        let dead = inflight.take_dead();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].0, dead[0].2, dead[0].3),
            (0, 3, DeadReason::LeaseExpired)
        );
        assert_eq!(
            offsets(&inflight.take(3_000, 10, &config)),
            [2],
            "0 is settling"
        );
    }

    #[test]
    fn nacks_delay_redelivery_and_dead_letter_at_the_limit() {
        let config = config(false);
        let mut inflight = inflight(&[None, None]);
        inflight.take(0, 10, &config);
        inflight.nack(0, 100, 500, 3);
        assert_eq!(offsets(&inflight.take(599, 10, &config)), Vec::<u64>::new());
        assert_eq!(offsets(&inflight.take(600, 10, &config)), [0]);
        inflight.nack(0, 600, 0, 3);
        assert_eq!(offsets(&inflight.take(600, 10, &config)), [0]);
        inflight.nack(0, 700, 0, 3);
        assert!(inflight.take(700, 10, &config).is_empty());
        assert_eq!(inflight.take_dead()[0].3, DeadReason::Nacked);
    }

    #[test]
    fn key_order_never_has_a_key_twice_in_flight_and_a_nack_blocks_only_its_key() {
        let config = config(true);
        let mut inflight = inflight(&[Some("a"), Some("a"), Some("b"), None, Some("b"), None]);
        assert_eq!(offsets(&inflight.take(0, 10, &config)), [0, 2, 3, 5]);
        // a's second message waits for the first, even once the first is nacked with a delay.
        inflight.nack(0, 0, 1_000, 5);
        assert!(inflight.take(10, 10, &config).is_empty());
        // b settles: its next message goes out while a is still delayed.
        inflight.pending.remove(&2);
        assert_eq!(offsets(&inflight.take(10, 10, &config)), [4]);
        assert_eq!(offsets(&inflight.take(1_000, 10, &config)), [0]);
        inflight.pending.remove(&0);
        assert_eq!(offsets(&inflight.take(1_000, 10, &config)), [1]);
    }

    #[test]
    fn lease_checks_refuse_stale_expired_and_unknown_leases() {
        let config = config(false);
        let mut inflight = inflight(&[None, None]);
        inflight.take(0, 10, &config);
        let settled = |offset| offset == 7;
        assert_eq!(inflight.check(0, 1, 500, settled), Ok(LeaseCheck::Held));
        assert_eq!(
            inflight.check(0, 1, 1_000, settled),
            Err(LeaseProblem::Expired)
        );
        assert_eq!(
            inflight.check(0, 2, 500, settled),
            Err(LeaseProblem::Unknown)
        );
        assert_eq!(inflight.check(7, 1, 500, settled), Ok(LeaseCheck::Settled));
        assert_eq!(
            inflight.check(9, 1, 500, settled),
            Err(LeaseProblem::Unknown)
        );
        inflight.expire(1_000, 5);
        inflight.take(1_000, 10, &config);
        assert_eq!(
            inflight.check(0, 1, 1_100, settled),
            Err(LeaseProblem::Superseded)
        );
        assert_eq!(inflight.check(0, 2, 1_100, settled), Ok(LeaseCheck::Held));
        // Given back after its deadline, not yet delivered again: the old lease is expired.
        inflight.expire(3_000, 5);
        assert_eq!(
            inflight.check(0, 2, 3_000, settled),
            Err(LeaseProblem::Expired)
        );
        // After a leader change: re-read with its recorded count, not leased yet.
        let mut fresh = Inflight::default();
        fresh.add(0, Record::unkeyed("v"), 2);
        assert_eq!(fresh.check(0, 2, 0, settled), Ok(LeaseCheck::Held));
        assert_eq!(fresh.check(0, 3, 0, settled), Ok(LeaseCheck::Held));
        assert_eq!(fresh.check(0, 1, 0, settled), Err(LeaseProblem::Superseded));
    }

    #[test]
    fn lease_ids_round_trip_and_reject_garbage() {
        let lease = Lease {
            offset: 42,
            attempt: 3,
            deadline_ms: 0,
        };
        assert_eq!(parse_lease_id(&lease_id(7, &lease)), Some((7, 42, 3)));
        for bad in ["", "1:2", "1:2:3:4", "a:2:3", "-1:2:3"] {
            assert_eq!(parse_lease_id(bad), None, "{bad}");
        }
    }
}

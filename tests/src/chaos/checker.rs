//! The history checker: the analyses of Jepsen's Kafka workload, applied to a [`history`]
//! of sends, polls, commits and a final read.
//!
//! - (a) one value per (partition, offset); a value is read where its send said it went, in
//!   the partition it was sent to, and nothing is read that was never sent;
//! - (b) lost writes: every acknowledged send is in the final read (and, where a partition
//!   has no final read, every acknowledged send below the highest offset read was read);
//! - (c) no value at two offsets when its producer is idempotent;
//! - (d) a send that definitely failed is never read;
//! - (e) a plain consumer's polls of a partition are contiguous and monotonic from where it
//!   was assigned; a group's members together read every offset from the start (no skip);
//!   a group's committed offsets never go backwards in real time;
//! - (f) real-time order: a send acknowledged before another send to the same partition was
//!   invoked has the lower offset.
//!
//! Indeterminate (`info`) sends may or may not appear; either is fine.
//!
//! [`history`]: super::history

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::Serialize;

use super::history::{Event, F, Kind, NEMESIS};

/// Something the history shows that the broker promised would not happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "anomaly", rename_all = "snake_case")]
pub enum Anomaly {
    /// Two different values were seen at one offset.
    InconsistentOffset {
        partition: u32,
        offset: u64,
        values: Vec<u64>,
    },
    /// An acknowledged send was read, but not at the offset its acknowledgement named.
    OffsetMismatch {
        value: u64,
        partition: u32,
        acked_offset: u64,
        read_offsets: Vec<u64>,
    },
    /// A value was read in another partition than it was sent to.
    WrongPartition {
        value: u64,
        sent_to: u32,
        read_in: u32,
    },
    /// A value was read that no send wrote.
    Phantom {
        partition: u32,
        offset: u64,
        value: u64,
    },
    /// An acknowledged send was never read.
    LostWrite {
        value: u64,
        partition: u32,
        offset: u64,
    },
    /// An idempotent producer's value was read at more than one offset.
    Duplicate {
        value: u64,
        partition: u32,
        offsets: Vec<u64>,
    },
    /// A send that definitely failed was read.
    FailedWriteRead {
        value: u64,
        partition: u32,
        offset: u64,
    },
    /// A consumer's poll went back to or before an offset it had already read.
    NonMonotonicPoll {
        process: u32,
        partition: u32,
        expected: u64,
        offset: u64,
    },
    /// A consumer's poll skipped offsets.
    SkippedPoll {
        process: u32,
        partition: u32,
        expected: u64,
        offset: u64,
    },
    /// No member of a group read `missing`, while they read offsets above it.
    GroupSkip {
        group: String,
        partition: u32,
        missing: u64,
        highest_read: u64,
    },
    /// A group's committed offset was observed lower than an earlier observation.
    CommittedBackwards {
        group: String,
        partition: u32,
        earlier: u64,
        later: u64,
    },
    /// A send acknowledged before another was invoked got the higher offset.
    RealTimeReorder {
        partition: u32,
        earlier_value: u64,
        earlier_offset: u64,
        later_value: u64,
        later_offset: u64,
    },
    /// A partition that was written to has no final read: lost writes cannot be ruled out.
    NoFinalRead { partition: u32 },
    /// The partition's history (or its checked prefix) has no linearization as a log.
    NotLinearizable { partition: u32, operations: usize },
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line of JSON names the anomaly and every field.
        write!(
            f,
            "{}",
            serde_json::to_string(self).expect("anomalies serialize")
        )
    }
}

/// What a history held, besides anomalies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub sends_ok: u64,
    pub sends_failed: u64,
    /// Sends with an unknown outcome (`info`, or never completed).
    pub sends_indeterminate: u64,
    /// Of the indeterminate sends, those that were read (they took effect).
    pub indeterminate_read: u64,
    /// Values of non-idempotent producers read at more than one offset (allowed).
    pub duplicates_allowed: u64,
    pub polls_ok: u64,
    pub records_polled: u64,
    pub final_read_records: u64,
    pub commits_ok: u64,
    pub offset_reads_ok: u64,
    pub faults: u64,
}

/// The checker's verdict on a history.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub valid: bool,
    pub anomalies: Vec<Anomaly>,
    pub stats: Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok(u64),
    Failed,
    Unknown,
}

#[derive(Debug, Clone)]
struct Send {
    partition: u32,
    idempotent: bool,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
struct Read {
    partition: u32,
    offset: u64,
    value: u64,
}

/// Checks a history. Events may come in any order; they are taken in time order.
pub fn check(history: &[Event]) -> Verdict {
    let mut events: Vec<&Event> = history.iter().collect();
    events.sort_by_key(|e| e.time_ns);
    let mut anomalies = Vec::new();
    let mut stats = Stats::default();

    let sends = collect_sends(&events, &mut stats);
    let (reads, final_partitions) = collect_reads(&events, &mut stats);
    check_values(
        &sends,
        &reads,
        &final_partitions,
        &mut stats,
        &mut anomalies,
    );
    check_plain_polls(&events, &mut anomalies);
    check_group_reads(&events, &mut anomalies);
    check_committed_offsets(&events, &mut stats, &mut anomalies);
    check_real_time_order(&events, &mut anomalies);
    stats.faults = events
        .iter()
        .filter(|e| e.process == NEMESIS && e.kind == Kind::Invoke)
        .count() as u64;
    Verdict {
        valid: anomalies.is_empty(),
        anomalies,
        stats,
    }
}

/// Every send by value, with its outcome (a send whose completion is missing is unknown).
fn collect_sends(events: &[&Event], stats: &mut Stats) -> HashMap<u64, Send> {
    let mut sends = HashMap::new();
    let mut in_flight: HashMap<u32, u64> = HashMap::new();
    for event in events.iter().filter(|e| e.f == F::Send) {
        let Some(value) = event.value else { continue };
        match event.kind {
            Kind::Invoke => {
                in_flight.insert(event.process, value);
                sends.insert(
                    value,
                    Send {
                        partition: event.partition.unwrap_or_default(),
                        idempotent: event.idempotent.unwrap_or(false),
                        outcome: Outcome::Unknown,
                    },
                );
            }
            kind => {
                in_flight.remove(&event.process);
                if let Some(send) = sends.get_mut(&value) {
                    send.outcome = match (kind, event.offset) {
                        (Kind::Ok, Some(offset)) => Outcome::Ok(offset),
                        (Kind::Fail, _) => Outcome::Failed,
                        _ => Outcome::Unknown,
                    };
                }
            }
        }
    }
    for send in sends.values() {
        match send.outcome {
            Outcome::Ok(_) => stats.sends_ok += 1,
            Outcome::Failed => stats.sends_failed += 1,
            Outcome::Unknown => stats.sends_indeterminate += 1,
        }
    }
    sends
}

/// Every record read by a poll or the final read, and the partitions the final read covered.
fn collect_reads(events: &[&Event], stats: &mut Stats) -> (Vec<Read>, BTreeSet<u32>) {
    let mut reads = Vec::new();
    let mut final_partitions = BTreeSet::new();
    for event in events.iter().filter(|e| e.kind == Kind::Ok) {
        let Some(partition) = event.partition else {
            continue;
        };
        match event.f {
            F::Poll => {
                stats.polls_ok += 1;
                stats.records_polled += event.reads.len() as u64;
            }
            F::FinalRead => {
                final_partitions.insert(partition);
                stats.final_read_records += event.reads.len() as u64;
            }
            _ => continue,
        }
        reads.extend(event.reads.iter().map(|&(offset, value)| Read {
            partition,
            offset,
            value,
        }));
    }
    (reads, final_partitions)
}

/// (a) through (d): where each value was read against what its send said.
fn check_values(
    sends: &HashMap<u64, Send>,
    reads: &[Read],
    final_partitions: &BTreeSet<u32>,
    stats: &mut Stats,
    anomalies: &mut Vec<Anomaly>,
) {
    let mut at_offset: BTreeMap<(u32, u64), BTreeSet<u64>> = BTreeMap::new();
    let mut read_at: BTreeMap<u64, BTreeSet<(u32, u64)>> = BTreeMap::new();
    let mut highest_read: BTreeMap<u32, u64> = BTreeMap::new();
    for read in reads {
        at_offset
            .entry((read.partition, read.offset))
            .or_default()
            .insert(read.value);
        read_at
            .entry(read.value)
            .or_default()
            .insert((read.partition, read.offset));
        let highest = highest_read.entry(read.partition).or_default();
        *highest = (*highest).max(read.offset);
    }
    for (value, send) in sends {
        if let Outcome::Ok(offset) = send.outcome {
            at_offset
                .entry((send.partition, offset))
                .or_default()
                .insert(*value);
        }
    }
    for (&(partition, offset), values) in &at_offset {
        if values.len() > 1 {
            anomalies.push(Anomaly::InconsistentOffset {
                partition,
                offset,
                values: values.iter().copied().collect(),
            });
        }
    }
    for (&value, places) in &read_at {
        let (partition, offset) = *places.first().expect("read somewhere");
        let Some(send) = sends.get(&value) else {
            anomalies.push(Anomaly::Phantom {
                partition,
                offset,
                value,
            });
            continue;
        };
        for &(read_in, _) in places {
            if read_in != send.partition {
                anomalies.push(Anomaly::WrongPartition {
                    value,
                    sent_to: send.partition,
                    read_in,
                });
            }
        }
        let offsets: Vec<u64> = places.iter().map(|&(_, o)| o).collect();
        if offsets.len() > 1 {
            if send.idempotent {
                anomalies.push(Anomaly::Duplicate {
                    value,
                    partition,
                    offsets: offsets.clone(),
                });
            } else {
                stats.duplicates_allowed += 1;
            }
        }
        match send.outcome {
            Outcome::Ok(acked_offset) if !offsets.contains(&acked_offset) => {
                anomalies.push(Anomaly::OffsetMismatch {
                    value,
                    partition: send.partition,
                    acked_offset,
                    read_offsets: offsets,
                });
            }
            Outcome::Ok(_) => {}
            Outcome::Failed => anomalies.push(Anomaly::FailedWriteRead {
                value,
                partition,
                offset,
            }),
            Outcome::Unknown => stats.indeterminate_read += 1,
        }
    }
    let mut written: BTreeSet<u32> = BTreeSet::new();
    let mut lost: Vec<Anomaly> = Vec::new();
    for (&value, send) in sends {
        written.insert(send.partition);
        let Outcome::Ok(offset) = send.outcome else {
            continue;
        };
        if read_at.contains_key(&value) {
            continue;
        }
        let must_be_read = final_partitions.contains(&send.partition)
            || highest_read
                .get(&send.partition)
                .is_some_and(|&highest| offset < highest);
        if must_be_read {
            lost.push(Anomaly::LostWrite {
                value,
                partition: send.partition,
                offset,
            });
        }
    }
    lost.sort_by_key(|a| match a {
        Anomaly::LostWrite {
            partition, offset, ..
        } => (*partition, *offset),
        _ => unreachable!("only lost writes"),
    });
    anomalies.extend(lost);
    for partition in written.difference(final_partitions) {
        anomalies.push(Anomaly::NoFinalRead {
            partition: *partition,
        });
    }
}

/// (e) for plain consumers: per process and partition, each poll continues exactly where the
/// previous one (or the assignment) left off.
fn check_plain_polls(events: &[&Event], anomalies: &mut Vec<Anomaly>) {
    let mut expected: HashMap<(u32, u32), u64> = HashMap::new();
    for event in events.iter().filter(|e| e.kind == Kind::Ok) {
        let Some(partition) = event.partition else {
            continue;
        };
        let position = (event.process, partition);
        match event.f {
            F::Assign => {
                if let Some(offset) = event.offset {
                    expected.insert(position, offset);
                }
            }
            F::Poll if event.group.is_none() => {
                for &(offset, _) in &event.reads {
                    if let Some(&next) = expected.get(&position) {
                        if offset < next {
                            anomalies.push(Anomaly::NonMonotonicPoll {
                                process: event.process,
                                partition,
                                expected: next,
                                offset,
                            });
                        } else if offset > next {
                            anomalies.push(Anomaly::SkippedPoll {
                                process: event.process,
                                partition,
                                expected: next,
                                offset,
                            });
                        }
                    }
                    expected.insert(position, offset + 1);
                }
            }
            _ => {}
        }
    }
}

/// (e) for groups: the members together read every offset from 0 up to the highest read (at
/// least once; a member taking over re-reads from the committed offset).
fn check_group_reads(events: &[&Event], anomalies: &mut Vec<Anomaly>) {
    let mut read: BTreeMap<(String, u32), BTreeSet<u64>> = BTreeMap::new();
    for event in events
        .iter()
        .filter(|e| e.kind == Kind::Ok && e.f == F::Poll)
    {
        let (Some(group), Some(partition)) = (&event.group, event.partition) else {
            continue;
        };
        read.entry((group.clone(), partition))
            .or_default()
            .extend(event.reads.iter().map(|&(offset, _)| offset));
    }
    for ((group, partition), offsets) in read {
        let highest_read = *offsets.last().expect("non-empty");
        if let Some(missing) = (0..highest_read).find(|o| !offsets.contains(o)) {
            anomalies.push(Anomaly::GroupSkip {
                group,
                partition,
                missing,
                highest_read,
            });
        }
    }
}

/// (e) committed offsets: an observation of a group's committed offsets invoked after
/// another completed never shows a lower offset.
fn check_committed_offsets(events: &[&Event], stats: &mut Stats, anomalies: &mut Vec<Anomaly>) {
    // The highest offset per (group, partition) an observation completed with so far.
    let mut highest: HashMap<(String, u32), u64> = HashMap::new();
    // What was highest when each in-flight observation was invoked.
    let mut at_invoke: HashMap<u32, HashMap<(String, u32), u64>> = HashMap::new();
    for event in events
        .iter()
        .filter(|e| matches!(e.f, F::Offsets | F::Commit))
    {
        match (event.f, event.kind) {
            (F::Commit, Kind::Ok) => stats.commits_ok += 1,
            (F::Offsets, Kind::Invoke) => {
                at_invoke.insert(event.process, highest.clone());
            }
            (F::Offsets, Kind::Ok) => {
                stats.offset_reads_ok += 1;
                let Some(group) = &event.group else { continue };
                let before = at_invoke.remove(&event.process).unwrap_or_default();
                for &(partition, offset) in &event.offsets {
                    let key = (group.clone(), partition);
                    if let Some(&earlier) = before.get(&key)
                        && offset < earlier
                    {
                        anomalies.push(Anomaly::CommittedBackwards {
                            group: group.clone(),
                            partition,
                            earlier,
                            later: offset,
                        });
                    }
                    let entry = highest.entry(key).or_default();
                    *entry = (*entry).max(offset);
                }
            }
            (F::Offsets, _) => {
                at_invoke.remove(&event.process);
            }
            _ => {}
        }
    }
}

/// (f) per partition: a send invoked after another was acknowledged gets a higher offset.
fn check_real_time_order(events: &[&Event], anomalies: &mut Vec<Anomaly>) {
    // Per partition, the acknowledged send with the highest offset so far: (offset, value).
    let mut highest: HashMap<u32, (u64, u64)> = HashMap::new();
    // Per in-flight send (by value): the partition's highest acknowledged send at invoke.
    let mut at_invoke: HashMap<u64, (u64, u64)> = HashMap::new();
    for event in events.iter().filter(|e| e.f == F::Send) {
        let (Some(value), Some(partition)) = (event.value, event.partition) else {
            continue;
        };
        match event.kind {
            Kind::Invoke => {
                if let Some(&earlier) = highest.get(&partition) {
                    at_invoke.insert(value, earlier);
                }
            }
            Kind::Ok => {
                let Some(offset) = event.offset else { continue };
                if let Some((earlier_offset, earlier_value)) = at_invoke.remove(&value)
                    && offset <= earlier_offset
                {
                    anomalies.push(Anomaly::RealTimeReorder {
                        partition,
                        earlier_value,
                        earlier_offset,
                        later_value: value,
                        later_offset: offset,
                    });
                }
                let entry = highest.entry(partition).or_insert((offset, value));
                if offset > entry.0 {
                    *entry = (offset, value);
                }
            }
            _ => {
                at_invoke.remove(&value);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds hand-made histories: each call appends an event one millisecond after the last.
    #[derive(Default)]
    pub(crate) struct H {
        pub events: Vec<Event>,
    }

    impl H {
        fn push(&mut self, mut event: Event) -> &mut Self {
            event.time_ns = (self.events.len() as u64 + 1) * 1_000_000;
            self.events.push(event);
            self
        }

        pub fn invoke_send(&mut self, process: u32, partition: u32, value: u64) -> &mut Self {
            self.push(Event {
                partition: Some(partition),
                key: Some(format!("k{value}")),
                value: Some(value),
                idempotent: Some(true),
                ..Event::new(process, Kind::Invoke, F::Send, 0)
            })
        }

        pub fn plain_invoke_send(&mut self, process: u32, partition: u32, value: u64) -> &mut Self {
            self.invoke_send(process, partition, value);
            self.events.last_mut().unwrap().idempotent = Some(false);
            self
        }

        pub fn ok_send(
            &mut self,
            process: u32,
            partition: u32,
            value: u64,
            offset: u64,
        ) -> &mut Self {
            self.push(Event {
                partition: Some(partition),
                value: Some(value),
                offset: Some(offset),
                ..Event::new(process, Kind::Ok, F::Send, 0)
            })
        }

        pub fn end_send(&mut self, process: u32, kind: Kind, value: u64) -> &mut Self {
            self.push(Event {
                value: Some(value),
                ..Event::new(process, kind, F::Send, 0)
            })
        }

        /// An acknowledged send at `offset`.
        pub fn send(&mut self, process: u32, partition: u32, value: u64, offset: u64) -> &mut Self {
            self.invoke_send(process, partition, value)
                .ok_send(process, partition, value, offset)
        }

        pub fn poll(&mut self, process: u32, partition: u32, reads: &[(u64, u64)]) -> &mut Self {
            self.push(Event::new(process, Kind::Invoke, F::Poll, 0));
            self.push(Event {
                partition: Some(partition),
                reads: reads.to_vec(),
                ..Event::new(process, Kind::Ok, F::Poll, 0)
            })
        }

        pub fn group_poll(
            &mut self,
            process: u32,
            group: &str,
            partition: u32,
            reads: &[(u64, u64)],
        ) -> &mut Self {
            self.poll(process, partition, reads);
            self.events.last_mut().unwrap().group = Some(group.into());
            self
        }

        pub fn assign(&mut self, process: u32, partition: u32, offset: u64) -> &mut Self {
            self.push(Event {
                partition: Some(partition),
                offset: Some(offset),
                ..Event::new(process, Kind::Ok, F::Assign, 0)
            })
        }

        pub fn offsets(&mut self, process: u32, group: &str, offsets: &[(u32, u64)]) -> &mut Self {
            self.push(Event::new(process, Kind::Invoke, F::Offsets, 0));
            self.push(Event {
                group: Some(group.into()),
                offsets: offsets.to_vec(),
                ..Event::new(process, Kind::Ok, F::Offsets, 0)
            })
        }

        pub fn final_read(&mut self, partition: u32, reads: &[(u64, u64)]) -> &mut Self {
            self.push(Event {
                partition: Some(partition),
                reads: reads.to_vec(),
                ..Event::new(100, Kind::Ok, F::FinalRead, 0)
            })
        }

        pub fn check(&self) -> Verdict {
            check(&self.events)
        }
    }

    #[test]
    fn a_clean_history_is_valid() {
        let mut h = H::default();
        h.send(1, 0, 10, 0)
            .send(2, 0, 11, 1)
            .invoke_send(1, 0, 12)
            .end_send(1, Kind::Info, 12)
            .invoke_send(2, 1, 13)
            .end_send(2, Kind::Fail, 13)
            .send(2, 1, 14, 0)
            .assign(5, 0, 0)
            .poll(5, 0, &[(0, 10), (1, 11)])
            .poll(5, 0, &[(2, 12)])
            .group_poll(6, "g", 1, &[(0, 14)])
            .offsets(7, "g", &[(1, 1)])
            .final_read(0, &[(0, 10), (1, 11), (2, 12)])
            .final_read(1, &[(0, 14)]);
        let verdict = h.check();
        assert!(verdict.valid, "{:?}", verdict.anomalies);
        assert_eq!(verdict.stats.sends_ok, 3);
        assert_eq!(verdict.stats.sends_failed, 1);
        assert_eq!(verdict.stats.sends_indeterminate, 1);
        assert_eq!(verdict.stats.indeterminate_read, 1);
        assert_eq!(verdict.stats.records_polled, 4);
    }

    #[test]
    fn a_lost_write_is_reported() {
        let mut h = H::default();
        h.send(1, 0, 10, 0)
            .send(1, 0, 11, 1)
            .send(1, 0, 12, 2)
            .final_read(0, &[(0, 10), (1, 12)]);
        let anomalies = h.check().anomalies;
        assert!(
            anomalies.contains(&Anomaly::LostWrite {
                value: 11,
                partition: 0,
                offset: 1
            }),
            "{anomalies:?}"
        );
    }

    #[test]
    fn a_write_lost_below_the_highest_read_is_reported_without_a_final_read() {
        let mut h = H::default();
        h.send(1, 0, 10, 0).send(1, 0, 11, 1).send(1, 0, 12, 2);
        h.poll(5, 0, &[(0, 10), (2, 12)]);
        let anomalies = h.check().anomalies;
        assert!(anomalies.contains(&Anomaly::LostWrite {
            value: 11,
            partition: 0,
            offset: 1
        }));
        assert!(anomalies.contains(&Anomaly::NoFinalRead { partition: 0 }));
        // The poll jumped from 0 to 2 as well.
        assert!(anomalies.contains(&Anomaly::SkippedPoll {
            process: 5,
            partition: 0,
            expected: 1,
            offset: 2
        }));
    }

    #[test]
    fn a_duplicate_of_an_idempotent_send_is_reported_and_of_a_plain_one_counted() {
        let mut h = H::default();
        h.send(1, 0, 10, 0)
            .plain_invoke_send(2, 0, 11)
            .ok_send(2, 0, 11, 2)
            .final_read(0, &[(0, 10), (1, 10), (2, 11), (3, 11)]);
        let verdict = h.check();
        assert_eq!(
            verdict.anomalies,
            vec![Anomaly::Duplicate {
                value: 10,
                partition: 0,
                offsets: vec![0, 1]
            }]
        );
        assert_eq!(verdict.stats.duplicates_allowed, 1);
    }

    #[test]
    fn two_values_at_one_offset_are_reported() {
        let mut h = H::default();
        h.send(1, 0, 10, 0)
            .send(2, 0, 11, 0)
            .final_read(0, &[(0, 10)]);
        let anomalies = h.check().anomalies;
        assert!(anomalies.contains(&Anomaly::InconsistentOffset {
            partition: 0,
            offset: 0,
            values: vec![10, 11]
        }));
        assert!(anomalies.contains(&Anomaly::LostWrite {
            value: 11,
            partition: 0,
            offset: 0
        }));
    }

    #[test]
    fn reads_that_disagree_with_the_acknowledgement_are_reported() {
        let mut h = H::default();
        h.send(1, 0, 10, 0)
            .send(1, 0, 11, 1)
            .send(1, 1, 12, 0)
            .final_read(0, &[(0, 11), (1, 10), (2, 77)])
            .final_read(1, &[(0, 12), (1, 10)]);
        let anomalies = h.check().anomalies;
        assert!(anomalies.contains(&Anomaly::OffsetMismatch {
            value: 11,
            partition: 0,
            acked_offset: 1,
            read_offsets: vec![0]
        }));
        assert!(anomalies.contains(&Anomaly::Phantom {
            partition: 0,
            offset: 2,
            value: 77
        }));
        assert!(anomalies.contains(&Anomaly::WrongPartition {
            value: 10,
            sent_to: 0,
            read_in: 1
        }));
    }

    #[test]
    fn a_failed_send_that_is_read_is_reported() {
        let mut h = H::default();
        h.invoke_send(1, 0, 10)
            .end_send(1, Kind::Fail, 10)
            .final_read(0, &[(0, 10)]);
        assert_eq!(
            h.check().anomalies,
            vec![Anomaly::FailedWriteRead {
                value: 10,
                partition: 0,
                offset: 0
            }]
        );
    }

    #[test]
    fn a_poll_that_goes_back_is_reported_unless_reassigned() {
        let mut h = H::default();
        h.send(1, 0, 10, 0)
            .send(1, 0, 11, 1)
            .poll(5, 0, &[(0, 10), (1, 11)])
            .poll(5, 0, &[(1, 11)])
            .assign(6, 0, 0)
            .poll(6, 0, &[(0, 10)])
            .assign(6, 0, 0)
            .poll(6, 0, &[(0, 10), (1, 11)])
            .final_read(0, &[(0, 10), (1, 11)]);
        assert_eq!(
            h.check().anomalies,
            vec![Anomaly::NonMonotonicPoll {
                process: 5,
                partition: 0,
                expected: 2,
                offset: 1
            }]
        );
    }

    #[test]
    fn an_aborted_read_is_reported() {
        // The consumer saw offset 1 before its write was acknowledged, and the write then
        // failed: the read observed an aborted write.
        let mut h = H::default();
        h.send(1, 0, 10, 0)
            .invoke_send(2, 0, 11)
            .poll(5, 0, &[(0, 10), (1, 11)])
            .end_send(2, Kind::Fail, 11)
            .final_read(0, &[(0, 10)]);
        let anomalies = h.check().anomalies;
        assert!(
            anomalies.contains(&Anomaly::FailedWriteRead {
                value: 11,
                partition: 0,
                offset: 1
            }),
            "{anomalies:?}"
        );
    }

    #[test]
    fn a_group_that_skips_an_offset_is_reported() {
        let mut h = H::default();
        h.send(1, 0, 10, 0)
            .send(1, 0, 11, 1)
            .send(1, 0, 12, 2)
            .group_poll(5, "g", 0, &[(0, 10)])
            // Another member takes over and re-reads 0, but skips 1.
            .group_poll(6, "g", 0, &[(0, 10), (2, 12)])
            .final_read(0, &[(0, 10), (1, 11), (2, 12)]);
        assert_eq!(
            h.check().anomalies,
            vec![Anomaly::GroupSkip {
                group: "g".into(),
                partition: 0,
                missing: 1,
                highest_read: 2
            }]
        );
    }

    #[test]
    fn committed_offsets_that_go_back_are_reported() {
        let mut h = H::default();
        h.offsets(7, "g", &[(0, 5), (1, 3)])
            .offsets(8, "g", &[(0, 6), (1, 2)]);
        assert_eq!(
            h.check().anomalies,
            vec![Anomaly::CommittedBackwards {
                group: "g".into(),
                partition: 1,
                earlier: 3,
                later: 2
            }]
        );
    }

    #[test]
    fn concurrent_observations_of_committed_offsets_may_differ() {
        let mut h = H::default();
        h.push(Event::new(7, Kind::Invoke, F::Offsets, 0));
        h.offsets(8, "g", &[(0, 6)]);
        h.push(Event {
            group: Some("g".into()),
            offsets: vec![(0, 5)],
            ..Event::new(7, Kind::Ok, F::Offsets, 0)
        });
        assert!(h.check().valid);
    }

    #[test]
    fn a_real_time_reorder_is_reported_and_concurrent_sends_may_go_either_way() {
        let mut h = H::default();
        // Concurrent: 11 invoked before 10 was acknowledged, so either order is fine.
        h.invoke_send(1, 0, 10)
            .invoke_send(2, 0, 11)
            .ok_send(2, 0, 11, 0)
            .ok_send(1, 0, 10, 1);
        // Sequential: 12 invoked after 10 (offset 1) was acknowledged, but lands below it.
        h.send(3, 0, 12, 0);
        h.final_read(0, &[(0, 11), (1, 10)]);
        let anomalies = h.check().anomalies;
        assert!(
            anomalies.contains(&Anomaly::RealTimeReorder {
                partition: 0,
                earlier_value: 10,
                earlier_offset: 1,
                later_value: 12,
                later_offset: 0
            }),
            "{anomalies:?}"
        );
        assert!(!anomalies.iter().any(|a| matches!(
            a,
            Anomaly::RealTimeReorder {
                later_value: 10,
                ..
            }
        )));
    }
}

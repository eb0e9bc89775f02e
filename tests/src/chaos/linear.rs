//! The second, independent check: each partition's sends and polls, as operations on a log
//! object, must be linearizable. Done with `stateright`'s [`LinearizabilityTester`], which
//! searches every order the concurrent operations could have taken effect in, so it is run on
//! a bounded prefix of each partition's history.
//!
//! A send is `Append(value)` returning its offset; a poll is `Read { from, len }` returning
//! the values at `from..from + len`. Indeterminate sends are invoked and never return (they may
//! take effect at any later point, or never); definitely failed sends never happened and are
//! left out (the main checker reports them if they are read).

use std::collections::{BTreeMap, HashMap};

use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

use super::checker::Anomaly;
use super::history::{Event, F, Kind};

/// A partition's log, as the sequential specification.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq)]
pub struct Log {
    values: Vec<u64>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub enum LogOp {
    Append(u64),
    Read { from: u64, len: usize },
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub enum LogRet {
    Appended(u64),
    Values(Vec<u64>),
}

impl SequentialSpec for Log {
    type Op = LogOp;
    type Ret = LogRet;

    fn invoke(&mut self, op: &LogOp) -> LogRet {
        match op {
            LogOp::Append(value) => {
                self.values.push(*value);
                LogRet::Appended(self.values.len() as u64 - 1)
            }
            LogOp::Read { from, len } => {
                let from = (*from as usize).min(self.values.len());
                let to = (from + len).min(self.values.len());
                LogRet::Values(self.values[from..to].to_vec())
            }
        }
    }
}

/// One operation of a partition's history.
#[derive(Debug, Clone)]
struct Operation {
    invoked_ns: u64,
    /// `None`: indeterminate (never returns).
    returned: Option<(u64, LogRet)>,
    op: LogOp,
    process: u32,
}

/// Checks the first `max_operations` operations of every partition (by invocation time; later
/// ones, and returns after the cut, are left out: a prefix of a linearizable history is
/// linearizable with its unfinished operations pending). Returns the partitions without a
/// linearization, and how many operations were checked in all.
pub fn check(history: &[Event], max_operations: usize) -> (Vec<Anomaly>, usize) {
    let mut anomalies = Vec::new();
    let mut checked = 0;
    for (partition, operations) in operations_by_partition(history) {
        let prefix: Vec<&Operation> = operations.iter().take(max_operations).collect();
        let cut = operations
            .get(max_operations)
            .map_or(u64::MAX, |next| next.invoked_ns);
        checked += prefix.len();
        if !linearizable(&prefix, cut) {
            anomalies.push(Anomaly::NotLinearizable {
                partition,
                operations: prefix.len(),
            });
        }
    }
    (anomalies, checked)
}

fn linearizable(operations: &[&Operation], cut: u64) -> bool {
    // Events in time order: (time, is_return, index).
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (index, operation) in operations.iter().enumerate() {
        events.push((operation.invoked_ns, false, index));
        if let Some((returned_ns, _)) = &operation.returned
            && *returned_ns < cut
        {
            events.push((*returned_ns, true, index));
        }
    }
    events.sort();
    // A thread has one operation in flight; an operation that never returns keeps its thread,
    // so each process's next operation after one gets a fresh thread.
    let mut thread_of: HashMap<usize, u64> = HashMap::new();
    let mut next_thread: HashMap<u32, u64> = HashMap::new();
    let mut fresh = 0u64;
    let mut tester = LinearizabilityTester::new(Log::default());
    for (_, is_return, index) in events {
        let operation = operations[index];
        let outcome = if is_return {
            let thread = thread_of[&index];
            let (_, ret) = operation.returned.clone().expect("returned");
            tester.on_return(thread, ret).map(|_| ())
        } else {
            let thread = *next_thread.entry(operation.process).or_insert_with(|| {
                fresh += 1;
                fresh
            });
            thread_of.insert(index, thread);
            if operation.returned.as_ref().is_none_or(|(t, _)| *t >= cut) {
                fresh += 1;
                next_thread.insert(operation.process, fresh);
            }
            tester.on_invoke(thread, operation.op.clone()).map(|_| ())
        };
        if outcome.is_err() {
            // The history is malformed for the tester (e.g. overlapping operations of one
            // process); the main checker still judges it.
            return true;
        }
    }
    tester.is_consistent()
}

/// Each partition's operations in invocation order.
fn operations_by_partition(history: &[Event]) -> BTreeMap<u32, Vec<Operation>> {
    let mut events: Vec<&Event> = history.iter().collect();
    events.sort_by_key(|e| e.time_ns);
    let mut by_partition: BTreeMap<u32, Vec<Operation>> = BTreeMap::new();
    // Per process: the in-flight send (partition, index) or the last poll invoke time.
    let mut sends: HashMap<u32, (u32, usize)> = HashMap::new();
    let mut poll_invoked: HashMap<u32, u64> = HashMap::new();
    for event in events {
        match (event.f, event.kind) {
            (F::Send, Kind::Invoke) => {
                let (Some(partition), Some(value)) = (event.partition, event.value) else {
                    continue;
                };
                let operations = by_partition.entry(partition).or_default();
                operations.push(Operation {
                    invoked_ns: event.time_ns,
                    returned: None,
                    op: LogOp::Append(value),
                    process: event.process,
                });
                sends.insert(event.process, (partition, operations.len() - 1));
            }
            (F::Send, kind) => {
                let Some((partition, index)) = sends.remove(&event.process) else {
                    continue;
                };
                let operations = by_partition.get_mut(&partition).expect("invoked");
                match (kind, event.offset) {
                    (Kind::Ok, Some(offset)) => {
                        operations[index].returned =
                            Some((event.time_ns, LogRet::Appended(offset)));
                    }
                    (Kind::Fail, _) => {
                        operations.remove(index);
                        // Indexes of later in-flight sends of this partition shift down.
                        for (p, i) in sends.values_mut() {
                            if *p == partition && *i > index {
                                *i -= 1;
                            }
                        }
                    }
                    _ => {}
                }
            }
            (F::Poll, Kind::Invoke) => {
                poll_invoked.insert(event.process, event.time_ns);
            }
            (F::Poll, Kind::Ok) => {
                let (Some(partition), Some(&invoked_ns)) =
                    (event.partition, poll_invoked.get(&event.process))
                else {
                    continue;
                };
                let Some(&(from, _)) = event.reads.first() else {
                    continue;
                };
                by_partition.entry(partition).or_default().push(Operation {
                    invoked_ns,
                    returned: Some((
                        event.time_ns,
                        LogRet::Values(event.reads.iter().map(|&(_, v)| v).collect()),
                    )),
                    op: LogOp::Read {
                        from,
                        len: event.reads.len(),
                    },
                    // Polls of one consumer on different partitions are separate threads.
                    process: event.process ^ (partition << 24),
                });
            }
            _ => {}
        }
    }
    for operations in by_partition.values_mut() {
        operations.sort_by_key(|o| o.invoked_ns);
    }
    by_partition
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::checker::tests::H;

    #[test]
    fn sequential_and_concurrent_histories_linearize() {
        let mut h = H::default();
        h.send(1, 0, 10, 0)
            .invoke_send(1, 0, 11)
            .invoke_send(2, 0, 12)
            .ok_send(2, 0, 12, 1)
            .ok_send(1, 0, 11, 2)
            .invoke_send(3, 0, 13)
            .end_send(3, Kind::Info, 13)
            .poll(5, 0, &[(0, 10), (1, 12), (2, 11), (3, 13)]);
        let (anomalies, checked) = check(&h.events, 100);
        assert_eq!(anomalies, vec![]);
        assert_eq!(checked, 5);
    }

    #[test]
    fn an_indeterminate_send_may_never_take_effect() {
        let mut h = H::default();
        h.invoke_send(1, 0, 10)
            .end_send(1, Kind::Info, 10)
            .send(1, 0, 11, 0)
            .poll(5, 0, &[(0, 11)]);
        assert_eq!(check(&h.events, 100).0, vec![]);
    }

    #[test]
    fn a_stale_read_and_a_reorder_do_not_linearize() {
        // The poll starts after 11 was acknowledged at offset 1 but finds 12 there.
        let mut h = H::default();
        h.send(1, 0, 10, 0)
            .send(1, 0, 11, 1)
            .invoke_send(2, 0, 12)
            .end_send(2, Kind::Info, 12)
            .poll(5, 0, &[(0, 10), (1, 12)]);
        assert_eq!(
            check(&h.events, 100).0,
            vec![Anomaly::NotLinearizable {
                partition: 0,
                operations: 4
            }]
        );
        // A send acknowledged before another was invoked, at a higher offset.
        let mut h = H::default();
        h.send(1, 1, 10, 1).send(2, 1, 11, 0);
        assert_eq!(check(&h.events, 100).0.len(), 1);
    }

    #[test]
    fn a_lost_write_does_not_linearize() {
        let mut h = H::default();
        h.send(1, 0, 10, 0)
            .send(1, 0, 11, 1)
            .poll(5, 0, &[(0, 10), (1, 12)])
            .send(2, 0, 12, 1);
        assert_eq!(check(&h.events, 100).0.len(), 1);
    }

    #[test]
    fn only_the_prefix_is_checked() {
        let mut h = H::default();
        h.send(1, 0, 10, 0).send(1, 0, 11, 0);
        assert_eq!(check(&h.events, 1), (vec![], 1));
        assert_eq!(check(&h.events, 2).0.len(), 1);
    }
}

//! A queue's runtime on the leader: leasing from the partitions' windows, holding leases for
//! settling, and the tasks that fill the windows (one reader per partition, through
//! `mq-client`) and clean them (the janitor: expired leases, delivery counts, dead letters).

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use mq_client::{ClientError, ErrorCode, FetchOptions, OffsetSpec, Record};

use super::{Delivery, JANITOR_TICK, READ_WAIT, Runtime, WINDOW, WINDOW_BYTES};
use crate::error::CgError;
use crate::manager::{ConsumerManager, now_ms};
use crate::queue::{self, DeadReason, LeaseCheck, LeaseProblem, State};
use crate::state::GroupCommand;

impl Runtime {
    /// Leases up to `max` messages, partitions taking turns.
    pub(super) fn take(&self, max: usize) -> Vec<Delivery> {
        let now = now_ms();
        let mut parts = self.parts.lock().expect("parts lock");
        let count = parts.len().max(1);
        let first = {
            let mut turn = self.turn.lock().expect("turn lock");
            *turn = (*turn + 1) % count;
            *turn
        };
        let mut taken = Vec::new();
        let order: Vec<u32> = parts.keys().copied().collect();
        for partition in order.iter().cycle().skip(first).take(order.len()) {
            if taken.len() >= max {
                break;
            }
            let part = parts.get_mut(partition).expect("listed partition");
            for (lease, record) in part.inflight.take(now, max - taken.len(), &self.config) {
                taken.push(Delivery {
                    lease_id: queue::lease_id(*partition, &lease),
                    partition: *partition,
                    offset: lease.offset,
                    record,
                    attempt: lease.attempt,
                    deadline_ms: lease.deadline_ms,
                });
            }
        }
        taken
    }

    /// The `(partition, offset)` of every lease that is held now; an error naming the first
    /// that is not (nothing is changed then). Leases of settled messages are left out.
    pub(super) fn hold(&self, lease_ids: &[String]) -> Result<Vec<(u32, u64)>, CgError> {
        if lease_ids.is_empty() {
            return Err(CgError::invalid("lease_ids", "name at least one lease"));
        }
        let now = now_ms();
        let parts = self.parts.lock().expect("parts lock");
        let mut held = Vec::with_capacity(lease_ids.len());
        for (i, id) in lease_ids.iter().enumerate() {
            let Some((partition, offset, attempt)) = queue::parse_lease_id(id) else {
                return Err(CgError::invalid(
                    format!("lease_ids[{i}]"),
                    format!("'{id}' is not a lease id"),
                ));
            };
            let problem = |problem: LeaseProblem| CgError::LeaseExpired {
                lease: id.clone(),
                problem: problem.describe(),
            };
            let part = parts
                .get(&partition)
                .ok_or_else(|| problem(LeaseProblem::Unknown))?;
            let check = part
                .inflight
                .check(offset, attempt, now, |o| part.settled.is_settled(o))
                .map_err(problem)?;
            if check == LeaseCheck::Held {
                held.push((partition, offset));
            }
        }
        Ok(held)
    }

    /// Offsets committed as settled leave the window.
    pub(super) fn settled(&self, offsets: &BTreeMap<u32, Vec<u64>>) {
        let mut parts = self.parts.lock().expect("parts lock");
        for (partition, offsets) in offsets {
            if let Some(part) = parts.get_mut(partition) {
                for offset in offsets {
                    part.inflight.pending.remove(offset);
                }
                part.settled.settle(offsets.iter().copied());
            }
        }
        drop(parts);
        self.changed.notify_waiters();
    }
}

pub(super) fn by_partition(
    offsets: impl IntoIterator<Item = (u32, u64)>,
) -> BTreeMap<u32, Vec<u64>> {
    let mut grouped: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (partition, offset) in offsets {
        grouped.entry(partition).or_default().push(offset);
    }
    grouped
}

/// Keeps one partition's window filled while the runtime lives.
pub(super) async fn read_partition(
    manager: Weak<ConsumerManager>,
    runtime: Weak<Runtime>,
    partition: u32,
) {
    loop {
        let (Some(manager), Some(runtime)) = (manager.upgrade(), runtime.upgrade()) else {
            return;
        };
        let (next, room, room_bytes) = {
            let parts = runtime.parts.lock().expect("parts lock");
            let part = &parts[&partition];
            let bytes: usize = part
                .inflight
                .pending
                .values()
                .map(|p| p.record.size())
                .sum();
            (
                part.next_fetch,
                WINDOW.saturating_sub(part.inflight.pending.len()),
                WINDOW_BYTES.saturating_sub(bytes),
            )
        };
        if room == 0 || room_bytes == 0 {
            let changed = runtime.changed.notified();
            let _ = tokio::time::timeout(READ_WAIT, changed).await;
            continue;
        }
        let options = FetchOptions {
            max_records: room as u32,
            max_bytes: room_bytes.min(4 << 20) as u32,
            max_wait: READ_WAIT,
            ..FetchOptions::default()
        };
        let topic = runtime.config.topic.clone();
        match manager.client.fetch(&topic, partition, next, options).await {
            Ok(batch) => {
                let mut parts = runtime.parts.lock().expect("parts lock");
                let part = parts.get_mut(&partition).expect("partition of the queue");
                let mut added = false;
                for consumed in batch.records {
                    if consumed.offset < part.next_fetch || part.settled.is_settled(consumed.offset)
                    {
                        continue;
                    }
                    let attempts = part
                        .settled
                        .attempts
                        .get(&consumed.offset)
                        .copied()
                        .unwrap_or(0);
                    part.inflight
                        .add(consumed.offset, consumed.record, attempts);
                    added = true;
                }
                part.next_fetch = part.next_fetch.max(batch.next_offset);
                drop(parts);
                if added {
                    runtime.changed.notify_waiters();
                }
            }
            Err(error) if error.code() == ErrorCode::OffsetOutOfRange => {
                skip_deleted(&manager, &runtime, partition).await;
            }
            Err(error) => {
                tracing::debug!(queue = %runtime.name, partition, %error, "queue read failed; retrying");
                drop((manager, runtime));
                tokio::time::sleep(READ_WAIT).await;
            }
        }
    }
}

/// Retention deleted records the queue had not settled: the queue goes on from the log start.
async fn skip_deleted(manager: &ConsumerManager, runtime: &Runtime, partition: u32) {
    let topic = &runtime.config.topic;
    let start = match manager
        .client
        .list_offset(topic, partition, OffsetSpec::Earliest)
        .await
    {
        Ok(resolved) => resolved.offset,
        Err(error) => {
            tracing::debug!(queue = %runtime.name, partition, %error, "log start unknown");
            tokio::time::sleep(READ_WAIT).await;
            return;
        }
    };
    tracing::warn!(queue = %runtime.name, partition, start, "records below the log start were deleted before they were settled");
    let skip = BTreeMap::from([(partition, start)]);
    if let Err(error) = manager.settle(&runtime.name, BTreeMap::new(), skip).await {
        tracing::debug!(queue = %runtime.name, %error, "skipping deleted records failed");
        tokio::time::sleep(READ_WAIT).await;
        return;
    }
    let mut parts = runtime.parts.lock().expect("parts lock");
    let part = parts.get_mut(&partition).expect("partition of the queue");
    part.settled.skip_to(start);
    part.next_fetch = part.next_fetch.max(start);
    part.inflight.pending = part.inflight.pending.split_off(&start);
}

/// Expires leases, records delivery counts and moves dead messages, while the runtime lives
/// and this node leads in its term.
pub(super) async fn janitor(manager: Weak<ConsumerManager>, runtime: Weak<Runtime>) {
    let mut tick = tokio::time::interval(JANITOR_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (Some(manager), Some(runtime)) = (manager.upgrade(), runtime.upgrade()) else {
            return;
        };
        let term = manager.raft.term();
        if manager.leader() != Some(manager.node_id) || term != runtime.term {
            let mut map = manager.queues.map.lock().await;
            if map
                .get(&runtime.name)
                .is_some_and(|r| Arc::ptr_eq(r, &runtime))
            {
                map.remove(&runtime.name);
            }
            tracing::info!(queue = %runtime.name, "queue runtime stopped: no longer leading");
            return;
        }
        let now = now_ms();
        let (counts, dead) = {
            let mut parts = runtime.parts.lock().expect("parts lock");
            let mut counts = BTreeMap::new();
            let mut dead = Vec::new();
            for (partition, part) in parts.iter_mut() {
                let counted = part.inflight.expire(now, runtime.config.max_deliveries);
                if !counted.is_empty() {
                    counts.insert(*partition, counted);
                }
                for (offset, record, attempts, reason) in part.inflight.take_dead() {
                    dead.push((*partition, offset, record, attempts, reason));
                }
            }
            (counts, dead)
        };
        if !counts.is_empty() {
            runtime.changed.notify_waiters();
            let command = GroupCommand::CountDeliveries {
                queue: runtime.name.clone(),
                counts,
            };
            if let Err(error) = manager.propose(command).await {
                tracing::debug!(queue = %runtime.name, %error, "recording delivery counts failed");
            }
        }
        if !dead.is_empty() {
            dead_letter(&manager, &runtime, dead).await;
        }
    }
}

/// Produces dead messages to the dead-letter topic with where and why in headers, then
/// settles them; on failure they are tried again next tick (the dead-letter topic may then
/// get a message twice).
async fn dead_letter(
    manager: &ConsumerManager,
    runtime: &Runtime,
    dead: Vec<(u32, u64, Record, u32, DeadReason)>,
) {
    let config = &runtime.config;
    let records: Vec<Record> = dead
        .iter()
        .map(|(partition, offset, record, attempts, reason)| {
            record
                .clone()
                .with_header("mq.dlq.queue", runtime.name.clone())
                .with_header("mq.dlq.topic", config.topic.clone())
                .with_header("mq.dlq.partition", partition.to_string())
                .with_header("mq.dlq.offset", offset.to_string())
                .with_header("mq.dlq.deliveries", attempts.to_string())
                .with_header("mq.dlq.reason", reason.as_str())
        })
        .collect();
    let offsets = by_partition(dead.iter().map(|(p, o, ..)| (*p, *o)));
    let moved: Result<(), CgError> = async {
        manager
            .client
            .produce(&config.dead_letter_topic, 0, records)
            .await
            .map_err(|error: ClientError| CgError::from(error))?;
        manager
            .settle(&runtime.name, offsets.clone(), BTreeMap::new())
            .await
    }
    .await;
    match moved {
        Ok(()) => {
            tracing::info!(queue = %runtime.name, count = dead.len(), topic = %config.dead_letter_topic, "moved dead messages");
            runtime.settled(&offsets);
        }
        Err(error) => {
            tracing::warn!(queue = %runtime.name, %error, "moving dead messages failed; retrying");
            let mut parts = runtime.parts.lock().expect("parts lock");
            for (partition, offset, _, _, reason) in dead {
                if let Some(pending) = parts
                    .get_mut(&partition)
                    .and_then(|part| part.inflight.pending.get_mut(&offset))
                {
                    pending.state = State::Dead(reason);
                }
            }
        }
    }
}

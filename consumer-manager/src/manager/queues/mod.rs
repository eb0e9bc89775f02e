//! Queue subscriptions on the consumer-manager leader. Each queue in use gets a [`Runtime`]:
//! per partition a window of fetched, unsettled messages ([`Inflight`], at most [`WINDOW`]
//! messages and about [`WINDOW_BYTES`]),
//! filled by one reader task per partition through `mq-client`, and a janitor task that expires
//! leases, records delivery counts and moves dead messages to the dead-letter topic. Settling
//! (ack, dead-letter) is committed through Raft before it is answered; leases themselves live
//! only in the leader's memory, so a new leader rebuilds the runtime from the replicated
//! [`Settled`] state and redelivers what was in flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mq_client::{ErrorCode, NewTopic, OffsetSpec, Record};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::runtime::{by_partition, janitor, read_partition};
use super::{ConsumerManager, now_ms};
use crate::error::CgError;
use crate::queue::{Inflight, QueueConfig, Settled, State};
use crate::state::{GroupCommand, QueueState};

mod runtime;

/// Most fetched, unsettled messages kept per partition.
pub const WINDOW: usize = 1_000;
/// Most bytes (keys, values, headers) of fetched, unsettled messages kept per partition.
pub const WINDOW_BYTES: usize = 32 << 20;
/// How often the janitor expires leases and moves dead messages.
const JANITOR_TICK: Duration = Duration::from_millis(100);
/// Long-poll wait of each partition reader.
const READ_WAIT: Duration = Duration::from_millis(500);

/// Where a new queue starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStart {
    Earliest,
    Latest,
}

/// One delivered message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub lease_id: String,
    pub partition: u32,
    pub offset: u64,
    pub record: Record,
    pub attempt: u32,
    pub deadline_ms: i64,
}

/// A queue as described to operators.
#[derive(Debug, Clone)]
pub struct QueueView {
    pub name: String,
    pub config: QueueConfig,
    /// `(partition, settled, high watermark, in flight)`.
    pub partitions: Vec<(u32, Settled, Option<u64>, usize)>,
}

/// The queues this leader serves, by name.
#[derive(Debug, Default)]
pub(super) struct Runtimes {
    map: tokio::sync::Mutex<HashMap<String, Arc<Runtime>>>,
}

impl Runtimes {
    pub(super) async fn clear(&self) {
        self.map.lock().await.clear();
    }
}

#[derive(Debug, Default)]
struct Part {
    inflight: Inflight,
    /// The replicated progress as this runtime knows it (updated as it settles).
    settled: Settled,
    next_fetch: u64,
}

#[derive(Debug)]
struct Runtime {
    name: String,
    config: QueueConfig,
    term: u64,
    parts: Mutex<BTreeMap<u32, Part>>,
    changed: Notify,
    /// Where the next receive starts looking, so partitions take turns.
    turn: Mutex<usize>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().expect("tasks lock").drain(..) {
            task.abort();
        }
    }
}

impl ConsumerManager {
    /// Creates a queue subscription on `config.topic` (and its dead-letter topic).
    pub async fn create_queue(
        &self,
        name: &str,
        config: QueueConfig,
        start: QueueStart,
    ) -> Result<QueueConfig, CgError> {
        self.ensure_current().await?;
        let topic = self.client.describe_topic(&config.topic).await?;
        let spec = match start {
            QueueStart::Earliest => OffsetSpec::Earliest,
            QueueStart::Latest => OffsetSpec::Latest,
        };
        let mut starts = BTreeMap::new();
        for partition in 0..topic.partitions.len() as u32 {
            let resolved = self
                .client
                .list_offset(&config.topic, partition, spec)
                .await?;
            starts.insert(partition, resolved.offset);
        }
        match self
            .client
            .create_topic(&config.dead_letter_topic, NewTopic::default())
            .await
        {
            Ok(_) => {}
            Err(error) if error.code() == ErrorCode::TopicAlreadyExists => {}
            Err(error) => return Err(error.into()),
        }
        self.propose(GroupCommand::CreateQueue {
            name: name.to_owned(),
            config: config.clone(),
            starts,
        })
        .await?;
        Ok(config)
    }

    pub async fn delete_queue(&self, name: &str) -> Result<(), CgError> {
        self.ensure_current().await?;
        self.propose(GroupCommand::DeleteQueue {
            name: name.to_owned(),
        })
        .await?;
        self.queues.map.lock().await.remove(name);
        Ok(())
    }

    pub async fn list_queues(&self) -> Result<Vec<(String, QueueConfig)>, CgError> {
        self.ensure_current().await?;
        let state = self.state.read().expect("state lock");
        Ok(state
            .queues
            .iter()
            .map(|(name, queue)| (name.clone(), queue.config.clone()))
            .collect())
    }

    pub async fn describe_queue(self: &Arc<Self>, name: &str) -> Result<QueueView, CgError> {
        let runtime = self.runtime(name).await?;
        let queue = self.queue_state(name)?;
        let in_flight: BTreeMap<u32, usize> = runtime
            .parts
            .lock()
            .expect("parts lock")
            .iter()
            .map(|(partition, part)| (*partition, part.inflight.in_flight()))
            .collect();
        let mut partitions = Vec::new();
        for (partition, settled) in queue.partitions {
            let high_watermark = tokio::time::timeout(
                Duration::from_secs(2),
                self.client
                    .list_offset(&queue.config.topic, partition, OffsetSpec::Latest),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(|o| o.high_watermark);
            let flying = in_flight.get(&partition).copied().unwrap_or(0);
            partitions.push((partition, settled, high_watermark, flying));
        }
        Ok(QueueView {
            name: name.to_owned(),
            config: queue.config,
            partitions,
        })
    }

    /// Leases up to `max` messages, waiting up to `wait` for a first one.
    pub async fn receive(
        self: &Arc<Self>,
        name: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, CgError> {
        let runtime = self.runtime(name).await?;
        let deadline = Instant::now() + wait;
        loop {
            let changed = runtime.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let taken = runtime.take(max);
            let now = Instant::now();
            if !taken.is_empty() || now >= deadline {
                return Ok(taken);
            }
            // Delayed messages become ready without a notification: look again soon.
            let nap = (deadline - now).min(JANITOR_TICK);
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(nap) => {}
            }
            if self.leader() != Some(self.node_id) {
                return Err(self.not_leader());
            }
        }
    }

    /// Settles leased messages, all or nothing.
    pub async fn ack(self: &Arc<Self>, name: &str, lease_ids: &[String]) -> Result<(), CgError> {
        let runtime = self.runtime(name).await?;
        let held = runtime.hold(lease_ids)?;
        let mut previous = Vec::with_capacity(held.len());
        {
            let mut parts = runtime.parts.lock().expect("parts lock");
            for (partition, offset) in &held {
                if let Some(pending) = parts
                    .get_mut(partition)
                    .and_then(|part| part.inflight.pending.get_mut(offset))
                {
                    previous.push((*partition, *offset, pending.state));
                    pending.state = State::Settling;
                }
            }
        }
        let offsets = by_partition(held.iter().copied());
        match self.settle(name, offsets.clone(), BTreeMap::new()).await {
            Ok(()) => {
                runtime.settled(&offsets);
                Ok(())
            }
            Err(error) => {
                // Nothing was settled: the leases stand as they were.
                let mut parts = runtime.parts.lock().expect("parts lock");
                for (partition, offset, state) in previous {
                    if let Some(pending) = parts
                        .get_mut(&partition)
                        .and_then(|part| part.inflight.pending.get_mut(&offset))
                    {
                        pending.state = state;
                    }
                }
                Err(error)
            }
        }
    }

    /// Gives leased messages back for redelivery after `delay_ms`, all or nothing.
    pub async fn nack(
        self: &Arc<Self>,
        name: &str,
        lease_ids: &[String],
        delay_ms: u32,
    ) -> Result<(), CgError> {
        let runtime = self.runtime(name).await?;
        let held = runtime.hold(lease_ids)?;
        let now = now_ms();
        let mut counts: BTreeMap<u32, Vec<(u64, u32)>> = BTreeMap::new();
        {
            let mut parts = runtime.parts.lock().expect("parts lock");
            for (partition, offset) in &held {
                if let Some(part) = parts.get_mut(partition) {
                    part.inflight
                        .nack(*offset, now, delay_ms, runtime.config.max_deliveries);
                    if let Some(pending) = part.inflight.pending.get(offset) {
                        counts
                            .entry(*partition)
                            .or_default()
                            .push((*offset, pending.attempts));
                    }
                }
            }
        }
        runtime.changed.notify_waiters();
        // Counted so a new leader goes on from here; a lost count only allows one more try.
        if let Err(error) = self
            .propose(GroupCommand::CountDeliveries {
                queue: name.to_owned(),
                counts,
            })
            .await
        {
            tracing::debug!(queue = name, %error, "recording delivery counts failed");
        }
        Ok(())
    }

    /// Moves the deadline of leased messages to now + `ack_deadline_ms`, all or nothing.
    pub async fn extend_leases(
        self: &Arc<Self>,
        name: &str,
        lease_ids: &[String],
        ack_deadline_ms: u32,
    ) -> Result<(), CgError> {
        let runtime = self.runtime(name).await?;
        let held = runtime.hold(lease_ids)?;
        let deadline = now_ms() + i64::from(ack_deadline_ms);
        let mut parts = runtime.parts.lock().expect("parts lock");
        for (partition, offset) in held {
            if let Some(part) = parts.get_mut(&partition) {
                part.inflight.extend(offset, deadline);
            }
        }
        Ok(())
    }

    fn queue_state(&self, name: &str) -> Result<QueueState, CgError> {
        self.state
            .read()
            .expect("state lock")
            .queues
            .get(name)
            .cloned()
            .ok_or_else(|| CgError::QueueNotFound {
                queue: name.to_owned(),
            })
    }

    async fn settle(
        &self,
        name: &str,
        offsets: BTreeMap<u32, Vec<u64>>,
        skip_to: BTreeMap<u32, u64>,
    ) -> Result<(), CgError> {
        self.propose(GroupCommand::Settle {
            queue: name.to_owned(),
            offsets,
            skip_to,
        })
        .await
    }

    /// The runtime of `name` for this leader's term, built (from the replicated state, after
    /// confirming leadership) when missing or from an earlier term.
    async fn runtime(self: &Arc<Self>, name: &str) -> Result<Arc<Runtime>, CgError> {
        if self.leader() != Some(self.node_id) {
            return Err(self.not_leader());
        }
        let term = self.raft.term();
        let mut map = self.queues.map.lock().await;
        if let Some(runtime) = map.get(name).filter(|r| r.term == term) {
            return Ok(runtime.clone());
        }
        self.ensure_current().await?;
        let queue = self.queue_state(name)?;
        let parts = queue
            .partitions
            .iter()
            .map(|(partition, settled)| {
                let part = Part {
                    inflight: Inflight::default(),
                    settled: settled.clone(),
                    next_fetch: settled.floor,
                };
                (*partition, part)
            })
            .collect();
        let runtime = Arc::new(Runtime {
            name: name.to_owned(),
            config: queue.config.clone(),
            term,
            parts: Mutex::new(parts),
            changed: Notify::new(),
            turn: Mutex::new(0),
            tasks: Mutex::default(),
        });
        let mut tasks = Vec::new();
        for partition in queue.partitions.keys() {
            let reader = read_partition(Arc::downgrade(self), Arc::downgrade(&runtime), *partition);
            tasks.push(tokio::spawn(reader));
        }
        tasks.push(tokio::spawn(janitor(
            Arc::downgrade(self),
            Arc::downgrade(&runtime),
        )));
        *runtime.tasks.lock().expect("tasks lock") = tasks;
        tracing::info!(queue = name, term, "queue runtime started");
        map.insert(name.to_owned(), runtime.clone());
        Ok(runtime)
    }
}

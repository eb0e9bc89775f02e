//! The consumer manager's state machine: [`GroupsState`] in memory; each group's membership
//! and each committed offset persisted under its own key in `kv` (group 2 ‖ kind ‖ ids), so a
//! commit writes only the offsets it changes. Snapshots are the whole state, encoded.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
use mq_common::ids::GroupId;
use mq_raft::keys::{self, CF_KV, CF_SM_META};
use mq_raft::{Store, codec};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::assignor::Tp;
use crate::queue::{QueueConfig, Settled};
use crate::state::{Change, Committed, GroupResponse, GroupsState, Membership, QueueState};
use crate::types::{GroupsTypes, LogId, Snapshot, SnapshotMeta, StoredMembership};

const GROUP: GroupId = GroupId::CONSUMER_MANAGER;

mod meta_tag {
    pub const APPLIED: u8 = 1;
    pub const SNAPSHOT: u8 = 2;
}

/// Key kinds in `kv`.
mod kind {
    pub const MEMBERSHIP: u8 = b'm';
    pub const OFFSET: u8 = b'o';
    pub const QUEUE: u8 = b'q';
    pub const QUEUE_PARTITION: u8 = b'p';
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// Read access to the applied state, shared with queries.
pub type SharedState = Arc<RwLock<GroupsState>>;

pub struct GroupsStateMachine {
    store: Store,
    applied: Applied,
    state: SharedState,
}

impl std::fmt::Debug for GroupsStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupsStateMachine")
            .field("applied", &self.applied)
            .finish()
    }
}

fn membership_key(group: &str) -> Vec<u8> {
    let mut suffix = vec![kind::MEMBERSHIP];
    suffix.extend_from_slice(group.as_bytes());
    keys::prefixed(GROUP, &suffix)
}

/// `o ‖ group ‖ 0`: the prefix of a group's offsets (names never contain a 0 byte).
fn offsets_prefix(group: &str) -> Vec<u8> {
    let mut suffix = vec![kind::OFFSET];
    suffix.extend_from_slice(group.as_bytes());
    suffix.push(0);
    keys::prefixed(GROUP, &suffix)
}

fn offset_key(group: &str, (topic, partition): &Tp) -> Vec<u8> {
    let mut key = offsets_prefix(group);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

fn queue_key(queue: &str) -> Vec<u8> {
    let mut suffix = vec![kind::QUEUE];
    suffix.extend_from_slice(queue.as_bytes());
    keys::prefixed(GROUP, &suffix)
}

/// `p ‖ queue ‖ 0`: the prefix of a queue's partitions.
fn queue_partitions_prefix(queue: &str) -> Vec<u8> {
    let mut suffix = vec![kind::QUEUE_PARTITION];
    suffix.extend_from_slice(queue.as_bytes());
    suffix.push(0);
    keys::prefixed(GROUP, &suffix)
}

fn queue_partition_key(queue: &str, partition: u32) -> Vec<u8> {
    let mut key = queue_partitions_prefix(queue);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

impl GroupsStateMachine {
    /// Loads the persisted state.
    pub fn open(store: Store) -> io::Result<Self> {
        let applied = store
            .get_tagged(CF_SM_META, GROUP, meta_tag::APPLIED)?
            .unwrap_or_default();
        let state = load_state(&store)?;
        Ok(Self {
            store,
            applied,
            state: Arc::new(RwLock::new(state)),
        })
    }

    pub fn shared_state(&self) -> SharedState {
        self.state.clone()
    }

    fn put_applied(&self, batch: &mut WriteBatch) -> io::Result<()> {
        self.store
            .put_tagged(batch, CF_SM_META, GROUP, meta_tag::APPLIED, &self.applied)
    }

    fn persist(
        &self,
        state: &GroupsState,
        change: &Change,
        batch: &mut WriteBatch,
    ) -> io::Result<()> {
        let kv = self.store.cf(CF_KV);
        match change {
            Change::Membership(group) => {
                let membership = &state.groups[group].membership;
                batch.put_cf(
                    kv,
                    membership_key(group),
                    codec::encode(&(group, membership))?,
                );
            }
            Change::Offset(group, tp) => {
                let committed = &state.groups[group].offsets[tp];
                batch.put_cf(
                    kv,
                    offset_key(group, tp),
                    codec::encode(&(group, tp, committed))?,
                );
            }
            Change::Queue(queue) => {
                let config = &state.queues[queue].config;
                batch.put_cf(kv, queue_key(queue), codec::encode(&(queue, config))?);
            }
            Change::QueuePartition(queue, partition) => {
                let settled = &state.queues[queue].partitions[partition];
                batch.put_cf(
                    kv,
                    queue_partition_key(queue, *partition),
                    codec::encode(&(queue, partition, settled))?,
                );
            }
            Change::QueueRemoved(queue) => {
                batch.delete_cf(kv, queue_key(queue));
                let start = queue_partitions_prefix(queue);
                let mut end = start.clone();
                *end.last_mut().expect("prefix ends with 0") = 1;
                batch.delete_range_cf(kv, start, end);
            }
            Change::GroupRemoved(group) => {
                batch.delete_cf(kv, membership_key(group));
                let start = offsets_prefix(group);
                let mut end = start.clone();
                *end.last_mut().expect("prefix ends with 0") = 1;
                batch.delete_range_cf(kv, start, end);
            }
        }
        Ok(())
    }

    fn persist_all(&self, state: &GroupsState, batch: &mut WriteBatch) -> io::Result<()> {
        for (name, group) in &state.groups {
            self.persist(state, &Change::Membership(name.clone()), batch)?;
            for tp in group.offsets.keys() {
                self.persist(state, &Change::Offset(name.clone(), tp.clone()), batch)?;
            }
        }
        for (name, queue) in &state.queues {
            self.persist(state, &Change::Queue(name.clone()), batch)?;
            for partition in queue.partitions.keys() {
                self.persist(
                    state,
                    &Change::QueuePartition(name.clone(), *partition),
                    batch,
                )?;
            }
        }
        Ok(())
    }
}

fn load_state(store: &Store) -> io::Result<GroupsState> {
    let mut state = GroupsState::default();
    let mut options = ReadOptions::default();
    options.set_iterate_upper_bound(keys::group_end(GROUP).to_vec());
    let start = keys::group_start(GROUP);
    for item in store.db().iterator_cf_opt(
        store.cf(CF_KV),
        options,
        IteratorMode::From(&start, rocksdb::Direction::Forward),
    ) {
        let (key, value) = item.map_err(mq_raft::store::io_error)?;
        match key.get(8) {
            Some(&kind::MEMBERSHIP) => {
                let (group, membership): (String, Membership) = codec::decode(&value)?;
                state.groups.entry(group).or_default().membership = membership;
            }
            Some(&kind::OFFSET) => {
                let (group, tp, committed): (String, Tp, Committed) = codec::decode(&value)?;
                state
                    .groups
                    .entry(group)
                    .or_default()
                    .offsets
                    .insert(tp, committed);
            }
            Some(&kind::QUEUE) => {
                let (queue, config): (String, QueueConfig) = codec::decode(&value)?;
                queue_entry(&mut state, queue).config = config;
            }
            Some(&kind::QUEUE_PARTITION) => {
                let (queue, partition, settled): (String, u32, Settled) = codec::decode(&value)?;
                queue_entry(&mut state, queue)
                    .partitions
                    .insert(partition, settled);
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unknown key in the consumer manager's state",
                ));
            }
        }
    }
    Ok(state)
}

/// A queue being loaded (its config key sorts after its partition keys: 'q' > 'p').
fn queue_entry(state: &mut GroupsState, queue: String) -> &mut QueueState {
    state.queues.entry(queue).or_insert_with(|| QueueState {
        config: QueueConfig {
            topic: String::new(),
            ack_deadline_ms: 0,
            max_deliveries: 0,
            dead_letter_topic: String::new(),
            key_ordered: false,
        },
        partitions: BTreeMap::new(),
    })
}

impl RaftStateMachine<GroupsTypes> for GroupsStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = GroupsSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<GroupsTypes>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let mut replies = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let reply = match entry.payload {
                EntryPayload::Blank => GroupResponse::Done,
                EntryPayload::Normal(command) => {
                    tracing::debug!(index = log_id.index(), %command, "applying");
                    let mut state = self.state.write().expect("state lock");
                    let (reply, changes) = state.apply(command);
                    for change in &changes {
                        self.persist(&state, change, &mut batch)?;
                    }
                    reply
                }
                EntryPayload::Membership(membership) => {
                    self.applied.membership = StoredMembership::new(Some(log_id), membership);
                    GroupResponse::Done
                }
            };
            self.applied.last_applied = Some(log_id);
            if let Some(responder) = responder {
                replies.push((responder, reply));
            }
        }
        self.put_applied(&mut batch)?;
        self.store.write(batch)?;
        for (responder, reply) in replies {
            responder.send(reply);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        GroupsSnapshotBuilder {
            store: self.store.clone(),
            meta: SnapshotMeta {
                last_log_id: self.applied.last_applied,
                last_membership: self.applied.membership.clone(),
            },
            state: self.state.read().expect("state lock").clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<(), io::Error> {
        let installed: GroupsState = codec::decode(&data)?;
        tracing::info!(last = ?meta.last_log_id, groups = installed.groups.len(), "installing snapshot");
        self.applied = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.store.cf(CF_KV),
            keys::group_start(GROUP),
            keys::group_end(GROUP),
        );
        self.persist_all(&installed, &mut batch)?;
        self.put_applied(&mut batch)?;
        self.store.put_tagged(
            &mut batch,
            CF_SM_META,
            GROUP,
            meta_tag::SNAPSHOT,
            &(meta, &data),
        )?;
        self.store.write_durable(batch)?;
        *self.state.write().expect("state lock") = installed;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let stored: Option<(SnapshotMeta, Vec<u8>)> =
            self.store
                .get_tagged(CF_SM_META, GROUP, meta_tag::SNAPSHOT)?;
        Ok(stored.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// Builds a snapshot from a copy of the state taken at a consistent point.
#[derive(Debug)]
pub struct GroupsSnapshotBuilder {
    store: Store,
    meta: SnapshotMeta,
    state: GroupsState,
}

impl RaftSnapshotBuilder<GroupsTypes> for GroupsSnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let data = codec::encode(&self.state)?;
        let mut batch = WriteBatch::default();
        self.store.put_tagged(
            &mut batch,
            CF_SM_META,
            GROUP,
            meta_tag::SNAPSHOT,
            &(&self.meta, &data),
        )?;
        self.store.write(batch)?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: data,
        })
    }
}

//! The cluster manager's state machine: [`ClusterState`] in memory, each entity persisted under
//! its own key in the `kv` column family (`group 0 ‖ kind ‖ id`), the applied state in
//! `sm_meta`. Snapshots are the whole state, encoded; installing one replaces the group's keys.

use std::io;
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
use mq_common::ids::{BrokerId, GroupId, TopicName};
use mq_raft::keys::{self, CF_KV, CF_SM_META};
use mq_raft::{Store, codec};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::state::{Change, ClusterState, MetaResponse};
use crate::types::{LogId, MetaTypes, Snapshot, SnapshotMeta, StoredMembership};

const GROUP: GroupId = GroupId::CLUSTER_MANAGER;

mod meta_tag {
    pub const APPLIED: u8 = 1;
    pub const SNAPSHOT: u8 = 2;
}

/// Key kinds in `kv`.
mod kind {
    pub const BROKER: u8 = b'b';
    pub const TOPIC: u8 = b't';
    pub const NEXT_GROUP: u8 = b'n';
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// Read access to the applied cluster state, shared with queries.
pub type SharedState = Arc<RwLock<ClusterState>>;

pub struct MetaStateMachine {
    store: Store,
    applied: Applied,
    state: SharedState,
}

impl std::fmt::Debug for MetaStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStateMachine")
            .field("applied", &self.applied)
            .finish()
    }
}

impl MetaStateMachine {
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
        state: &ClusterState,
        change: &Change,
        batch: &mut WriteBatch,
    ) -> io::Result<()> {
        let kv = self.store.cf(CF_KV);
        match change {
            Change::Broker(id) => {
                let broker = state.brokers.get(id).expect("changed broker exists");
                batch.put_cf(kv, broker_key(*id), codec::encode(broker)?);
            }
            Change::Topic(name) => {
                let topic = state.topics.get(name).expect("changed topic exists");
                batch.put_cf(kv, topic_key(name), codec::encode(topic)?);
            }
            Change::TopicRemoved(name) => batch.delete_cf(kv, topic_key(name)),
            Change::NextGroup => {
                batch.put_cf(kv, next_group_key(), codec::encode(&state.next_group)?)
            }
        }
        Ok(())
    }
}

fn broker_key(id: BrokerId) -> Vec<u8> {
    let mut suffix = vec![kind::BROKER];
    suffix.extend_from_slice(&id.0.to_be_bytes());
    keys::prefixed(GROUP, &suffix)
}

fn topic_key(name: &TopicName) -> Vec<u8> {
    let mut suffix = vec![kind::TOPIC];
    suffix.extend_from_slice(name.as_str().as_bytes());
    keys::prefixed(GROUP, &suffix)
}

fn next_group_key() -> Vec<u8> {
    keys::prefixed(GROUP, &[kind::NEXT_GROUP])
}

fn load_state(store: &Store) -> io::Result<ClusterState> {
    let mut state = ClusterState::default();
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
            Some(&kind::BROKER) => {
                let broker: crate::state::BrokerRecord = codec::decode(&value)?;
                state.brokers.insert(broker.id, broker);
            }
            Some(&kind::TOPIC) => {
                let topic: crate::state::TopicRecord = codec::decode(&value)?;
                state.topics.insert(topic.name.clone(), topic);
            }
            Some(&kind::NEXT_GROUP) => state.next_group = codec::decode(&value)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unknown key in the cluster manager's state",
                ));
            }
        }
    }
    Ok(state)
}

impl RaftStateMachine<MetaTypes> for MetaStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = MetaSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<MetaTypes>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let mut replies = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let reply = match entry.payload {
                EntryPayload::Blank => MetaResponse::Done,
                EntryPayload::Normal(command) => {
                    tracing::info!(index = log_id.index(), %command, "applying");
                    let mut state = self.state.write().expect("state lock");
                    let (reply, changes) = state.apply(log_id.index(), command);
                    for change in &changes {
                        self.persist(&state, change, &mut batch)?;
                    }
                    reply
                }
                EntryPayload::Membership(membership) => {
                    self.applied.membership = StoredMembership::new(Some(log_id), membership);
                    MetaResponse::Done
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
        MetaSnapshotBuilder {
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
        let installed: ClusterState = codec::decode(&data)?;
        tracing::info!(last = ?meta.last_log_id, topics = installed.topics.len(), "installing snapshot");
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
        for id in installed.brokers.keys() {
            self.persist(&installed, &Change::Broker(*id), &mut batch)?;
        }
        for name in installed.topics.keys() {
            self.persist(&installed, &Change::Topic(name.clone()), &mut batch)?;
        }
        self.persist(&installed, &Change::NextGroup, &mut batch)?;
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
pub struct MetaSnapshotBuilder {
    store: Store,
    meta: SnapshotMeta,
    state: ClusterState,
}

impl RaftSnapshotBuilder<MetaTypes> for MetaSnapshotBuilder {
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

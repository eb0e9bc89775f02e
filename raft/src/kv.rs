//! The state machine of a control-plane group: a [`ReplicatedState`] kept whole in memory,
//! changed only by its pure `apply`, and persisted one row per changed entity in the `kv`
//! column family (`group ‖ key`), with the applied log id in `sm_meta` in the same write.
//! Snapshots are the whole state, encoded; installing one replaces every row of the group.
//!
//! A service supplies the state, its commands and its key layout; this module supplies the
//! apply loop, the responders, snapshots and recovery, and [`KvTypes`], the group's openraft
//! type config, so that the service names no openraft type.

use std::cmp::Ordering;
use std::fmt::{self, Debug, Display};
use std::io;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
use mq_common::ids::GroupId;
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::vote::RaftLeaderId;
use openraft::{EntryPayload, OptionalSend, RaftTypeConfig};
use rocksdb::{ColumnFamily, IteratorMode, ReadOptions, WriteBatch};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use std::collections::BTreeMap;

use crate::config::GroupConfig;
use crate::disk::DiskGuard;
use crate::group::{GroupContext, GroupError, GroupSpec, RaftGroup};
use crate::keys::{self, CF_KV, CF_SM_META};
use crate::log_store::RocksLogStore;
use crate::store::{Store, io_error};

/// A replicated state: what a control-plane group holds, and the pure function that changes
/// it.
pub trait ReplicatedState:
    Debug + Clone + Default + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// What a log entry asks the state to do.
    type Command: Debug + Display + Clone + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What applying a command answers (the default answers entries without a command).
    type Reply: Debug + Default + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Names an entity a command changed, so that only its row is written.
    type Change;

    /// Applied commands are logged at info level (else debug): for states whose commands are
    /// rare and worth an operator's eye.
    const LOG_COMMANDS: bool = false;

    /// Applies one committed command, at log index `index`: the reply and what changed.
    fn apply(&mut self, index: u64, command: Self::Command) -> (Self::Reply, Vec<Self::Change>);

    /// Writes the row of one changed entity (or deletes it) into `rows`.
    fn persist(&self, change: &Self::Change, rows: &mut Rows<'_>) -> io::Result<()>;

    /// Writes every row of the state into `rows` (installing a snapshot).
    fn persist_all(&self, rows: &mut Rows<'_>) -> io::Result<()>;

    /// Adds one stored row (as [`Rows::put`] wrote it) to a state being loaded.
    fn load_row(&mut self, key: &[u8], value: &[u8]) -> io::Result<()>;
}

/// The rows of one group in `kv`, written into one batch. Keys are the group's own: the group
/// prefix is added here.
pub struct Rows<'a> {
    batch: &'a mut WriteBatch,
    cf: &'a ColumnFamily,
    group: GroupId,
}

impl Debug for Rows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rows").field("group", &self.group).finish()
    }
}

impl Rows<'_> {
    /// Sets `key` to `value`, encoded.
    pub fn put<T: Serialize + ?Sized>(&mut self, key: &[u8], value: &T) -> io::Result<()> {
        self.batch.put_cf(
            self.cf,
            keys::prefixed(self.group, key),
            codec::encode(value)?,
        );
        Ok(())
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.batch
            .delete_cf(self.cf, keys::prefixed(self.group, key));
    }

    /// Deletes every key that starts with `prefix`.
    pub fn delete_prefix(&mut self, prefix: &[u8]) {
        let start = keys::prefixed(self.group, prefix);
        let end = prefix_end(&start).unwrap_or_else(|| keys::group_end(self.group).to_vec());
        self.batch.delete_range_cf(self.cf, start, end);
    }
}

/// The first key after every key that starts with `prefix`; `None` when the prefix is all
/// `0xFF` (no key of that length is after it).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The openraft type config of a group whose state machine is a [`KvStateMachine<S>`]: the
/// same for every such group but for its commands and replies.
pub struct KvTypes<S>(PhantomData<fn() -> S>);

impl<S> Debug for KvTypes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KvTypes")
    }
}

impl<S> Clone for KvTypes<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for KvTypes<S> {}

impl<S> Default for KvTypes<S> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<S> PartialEq for KvTypes<S> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<S> Eq for KvTypes<S> {}

impl<S> PartialOrd for KvTypes<S> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<S> Ord for KvTypes<S> {
    fn cmp(&self, _: &Self) -> Ordering {
        Ordering::Equal
    }
}

type LeaderIdOf = openraft::impls::leader_id_adv::LeaderId<u64, u64>;

impl<S: ReplicatedState> RaftTypeConfig for KvTypes<S> {
    type D = S::Command;
    type R = S::Reply;
    type NodeId = u64;
    type Node = openraft::impls::BasicNode;
    type Term = u64;
    type LeaderId = LeaderIdOf;
    type Vote = openraft::impls::Vote<LeaderIdOf>;
    type Payload = EntryPayload<S::Command, u64, openraft::impls::BasicNode>;
    type Entry = openraft::Entry<<LeaderIdOf as RaftLeaderId>::Committed, Self::Payload>;
    type Responder<T>
        = openraft::impls::ProgressResponder<Self, T>
    where
        T: OptionalSend + 'static;
    type Batch<T>
        = openraft::impls::InlineBatch<T>
    where
        T: OptionalSend + 'static;
    type AsyncRuntime = openraft::impls::TokioRuntime;
    type ErrorSource = openraft::impls::BoxedErrorSource;
}

/// A control-plane group: its Raft handle over its [`KvStateMachine`].
pub type KvGroup<S> = RaftGroup<KvTypes<S>, KvStateMachine<S>>;

/// Where a control-plane group runs on this node.
#[derive(Debug, Clone)]
pub struct ControlGroup {
    pub group: GroupId,
    pub node_id: u64,
    pub config: GroupConfig,
    /// The voters (node id -> address) to initialize the group with on first start, the same
    /// list on every voter; empty: this node alone, at `address`.
    pub voters: BTreeMap<u64, String>,
    /// Where this node serves.
    pub address: String,
}

impl<S: ReplicatedState> KvGroup<S> {
    /// Loads the state the group persisted, starts the group on it (initializing it with
    /// `spec.voters` on first start: every voter may, Raft elects one leader), and returns the
    /// group with read access to its applied state.
    pub async fn start_control(
        context: &GroupContext,
        spec: ControlGroup,
    ) -> Result<(Self, SharedState<S>), GroupError> {
        let ControlGroup {
            group,
            node_id,
            config,
            mut voters,
            address,
        } = spec;
        if voters.is_empty() {
            voters.insert(node_id, address);
        }
        let store = context.store.clone();
        let state_machine = KvStateMachine::<S>::open(store.clone(), group)
            .map_err(|source| GroupError::Load { group, source })?;
        let state = state_machine.shared_state();
        let spec = GroupSpec {
            group,
            node_id,
            config,
            bootstrap: Some(voters),
            disk: DiskGuard::unlimited(),
        };
        let raft = Self::start(
            context,
            spec,
            RocksLogStore::new(store, group),
            state_machine,
        )
        .await?;
        Ok((raft, state))
    }
}

/// Read access to the applied state, shared with queries.
pub type SharedState<S> = Arc<RwLock<S>>;

type LogId<S> = LogIdOf<KvTypes<S>>;
type StoredMembership<S> = StoredMembershipOf<KvTypes<S>>;
type SnapshotMeta<S> = SnapshotMetaOf<KvTypes<S>>;
type Snapshot<S> = SnapshotOf<KvTypes<S>, Vec<u8>>;

mod meta_tag {
    pub const APPLIED: u8 = 1;
    pub const SNAPSHOT: u8 = 2;
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct Applied<S: ReplicatedState> {
    last_applied: Option<LogId<S>>,
    membership: StoredMembership<S>,
}

impl<S: ReplicatedState> Default for Applied<S> {
    fn default() -> Self {
        Self {
            last_applied: None,
            membership: StoredMembership::<S>::default(),
        }
    }
}

/// The state machine of a control-plane group on the shared store.
pub struct KvStateMachine<S: ReplicatedState> {
    store: Store,
    group: GroupId,
    applied: Applied<S>,
    state: SharedState<S>,
}

impl<S: ReplicatedState> Debug for KvStateMachine<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvStateMachine")
            .field("group", &self.group)
            .field("last_applied", &self.applied.last_applied)
            .finish()
    }
}

impl<S: ReplicatedState> KvStateMachine<S> {
    /// Loads the state `group` persisted in `store`.
    pub fn open(store: Store, group: GroupId) -> io::Result<Self> {
        let applied = store
            .get_tagged(CF_SM_META, group, meta_tag::APPLIED)?
            .unwrap_or_default();
        let state = load(&store, group)?;
        Ok(Self {
            store,
            group,
            applied,
            state: Arc::new(RwLock::new(state)),
        })
    }

    pub fn shared_state(&self) -> SharedState<S> {
        self.state.clone()
    }

    fn rows<'a>(&'a self, batch: &'a mut WriteBatch) -> Rows<'a> {
        Rows {
            batch,
            cf: self.store.cf(CF_KV),
            group: self.group,
        }
    }

    fn put_applied(&self, batch: &mut WriteBatch) -> io::Result<()> {
        self.store.put_tagged(
            batch,
            CF_SM_META,
            self.group,
            meta_tag::APPLIED,
            &self.applied,
        )
    }
}

fn load<S: ReplicatedState>(store: &Store, group: GroupId) -> io::Result<S> {
    let mut state = S::default();
    let mut options = ReadOptions::default();
    options.set_iterate_upper_bound(keys::group_end(group).to_vec());
    let start = keys::group_start(group);
    for item in store.db().iterator_cf_opt(
        store.cf(CF_KV),
        options,
        IteratorMode::From(&start, rocksdb::Direction::Forward),
    ) {
        let (key, value) = item.map_err(io_error)?;
        state.load_row(&key[start.len()..], &value)?;
    }
    Ok(state)
}

impl<S: ReplicatedState> RaftStateMachine<KvTypes<S>> for KvStateMachine<S> {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = KvSnapshotBuilder<S>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<S>>, StoredMembership<S>), io::Error> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<KvTypes<S>>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let mut replies = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let reply = match entry.payload {
                EntryPayload::Blank => S::Reply::default(),
                EntryPayload::Normal(command) => {
                    if S::LOG_COMMANDS {
                        tracing::info!(group = %self.group, index = log_id.index(), %command, "applying");
                    } else {
                        tracing::debug!(group = %self.group, index = log_id.index(), %command, "applying");
                    }
                    let mut state = self.state.write().expect("state lock");
                    let (reply, changes) = state.apply(log_id.index(), command);
                    let mut rows = self.rows(&mut batch);
                    for change in &changes {
                        state.persist(change, &mut rows)?;
                    }
                    reply
                }
                EntryPayload::Membership(membership) => {
                    self.applied.membership = StoredMembership::<S>::new(Some(log_id), membership);
                    S::Reply::default()
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
        KvSnapshotBuilder {
            store: self.store.clone(),
            group: self.group,
            meta: SnapshotMeta::<S> {
                last_log_id: self.applied.last_applied,
                last_membership: self.applied.membership.clone(),
            },
            state: self.state.read().expect("state lock").clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<S>,
        data: Vec<u8>,
    ) -> Result<(), io::Error> {
        let installed: S = codec::decode(&data)?;
        tracing::info!(group = %self.group, last = ?meta.last_log_id, "installing snapshot");
        self.applied = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.store.cf(CF_KV),
            keys::group_start(self.group),
            keys::group_end(self.group),
        );
        installed.persist_all(&mut self.rows(&mut batch))?;
        self.put_applied(&mut batch)?;
        self.store.put_tagged(
            &mut batch,
            CF_SM_META,
            self.group,
            meta_tag::SNAPSHOT,
            &(meta, &data),
        )?;
        self.store.write_durable(batch)?;
        *self.state.write().expect("state lock") = installed;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<S>>, io::Error> {
        let stored: Option<(SnapshotMeta<S>, Vec<u8>)> =
            self.store
                .get_tagged(CF_SM_META, self.group, meta_tag::SNAPSHOT)?;
        Ok(stored.map(|(meta, snapshot)| Snapshot::<S> { meta, snapshot }))
    }
}

/// Builds a snapshot from a copy of the state taken at a consistent point.
pub struct KvSnapshotBuilder<S: ReplicatedState> {
    store: Store,
    group: GroupId,
    meta: SnapshotMeta<S>,
    state: S,
}

impl<S: ReplicatedState> Debug for KvSnapshotBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvSnapshotBuilder")
            .field("group", &self.group)
            .field("last_log_id", &self.meta.last_log_id)
            .finish()
    }
}

impl<S: ReplicatedState> RaftSnapshotBuilder<KvTypes<S>> for KvSnapshotBuilder<S> {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot<S>, io::Error> {
        let data = codec::encode(&self.state)?;
        let mut batch = WriteBatch::default();
        self.store.put_tagged(
            &mut batch,
            CF_SM_META,
            self.group,
            meta_tag::SNAPSHOT,
            &(&self.meta, &data),
        )?;
        self.store.write(batch)?;
        Ok(Snapshot::<S> {
            meta: self.meta.clone(),
            snapshot: data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        let end = prefix_end(b"ab\0").unwrap();
        assert_eq!(end, b"ab\x01".to_vec());
        for key in [&b"ab\0"[..], b"ab\0\xFF\xFF", b"ab\0zzz"] {
            assert!(key < end.as_slice());
        }
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }
}

//! Raft groups on RocksDB, for every service of a node: the broker's partition replicas (one
//! group each), the cluster manager's group (0) and the consumer manager's (2).
//!
//! - [`group`]: [`RaftGroup`], one group on this node: start (open, register with the
//!   transport, initialize on first start), propose, confirm leadership, leader and members,
//!   leadership transfer, membership change, shutdown; [`GroupError`] is openraft's errors
//!   sorted once.
//! - [`kv`]: [`KvStateMachine`], the state machine of a control-plane group over a service's
//!   pure [`ReplicatedState`] (apply loop, rows in `kv`, snapshots), and [`KvTypes`], its type
//!   config.
//! - [`config`]: [`RaftTimings`] and [`GroupConfig`], the openraft config of partition and
//!   control-plane groups.
//! - [`store`]: one RocksDB per process with column families by purpose, a lock on the data
//!   directory, and [`syncer`]: one thread that fsyncs the shared WAL once for every pending
//!   append of every group, then completes their flush callbacks (cross-group group commit).
//! - [`keys`]: big-endian `group ‖ index` keys, so one column family holds every group.
//! - [`log_store`]: openraft's `RaftLogStorage` for one group on the shared store.
//! - [`transport`]: the gRPC transport: a network factory whose clients share one channel per
//!   peer for all groups, and a server that routes each message to its group.
//! - [`quiesce`]: idle partition groups stop ticking on every replica, kept quiet by one
//!   message per node pair and round, woken by writes, votes, appends and the backstop.
//! - [`disk`]: free space on the data directory, and the guard that refuses new data below a
//!   reserve. [`codec`]: postcard encoding of entries, votes and rows.
//! - [`types`]: the bounds a group's openraft type config must meet.
//! - `testing` (feature `testing`): openraft's storage suite over a group's state machine.
//!
//! openraft is named here and in the partition's Raft module (`mq-broker`'s `partition::types`
//! and `partition::state_machine`) and nowhere else. What a group's commands mean belongs to
//! the crate that owns the group: this crate never interprets application data.

pub mod blocking;
pub mod codec;
pub mod config;
pub mod disk;
pub mod group;
pub mod keys;
pub mod kv;
pub mod log_store;
pub mod quiesce;
pub mod store;
pub mod syncer;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;
pub mod types;

pub use config::{GroupConfig, InvalidTimings, RaftTimings};
pub use group::{
    GroupContext, GroupError, GroupSpec, GroupStatus, Leader, Member, Pending, RaftGroup, Stages,
};
pub use kv::{ControlGroup, KvGroup, KvStateMachine, KvTypes, ReplicatedState, Rows, SharedState};
pub use log_store::RocksLogStore;
pub use store::{EngineCounters, Store, StoreError, StoreOptions};
pub use types::GroupTypes;

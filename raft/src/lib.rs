//! Raft groups on RocksDB, shared by the broker (one group per partition replica) and the
//! cluster manager (one group for the control plane).
//!
//! - [`store`]: one RocksDB per process with column families by purpose, a lock on the data
//!   directory, and [`syncer`]: one thread that fsyncs the shared WAL once for every pending
//!   append of every group, then completes their flush callbacks (cross-group group commit).
//! - [`keys`]: big-endian `group ‖ index` keys, so one column family holds every group.
//! - [`log_store`]: openraft's `RaftLogStorage` for one group on the shared store.
//! - [`transport`]: the gRPC transport: a network factory whose clients share one channel per
//!   peer for all groups, and a server that routes each message to its group.
//! - [`types`]: the bounds a group's openraft type config must meet.
//!
//! What a group's state machine is, and its snapshot, belong to the crate that owns the group.
//! This crate never interprets application data.

pub mod codec;
pub mod disk;
pub mod keys;
pub mod log_store;
pub mod store;
pub mod syncer;
pub mod transport;
pub mod types;

pub use log_store::RocksLogStore;
pub use store::{Store, StoreError, StoreOptions};
pub use types::GroupTypes;

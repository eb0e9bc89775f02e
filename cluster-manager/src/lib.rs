//! The cluster manager: the control plane of the broker cluster. It owns topics, partitions,
//! their placement on brokers, and the broker registry, in a state machine replicated by its
//! own Raft group (group 0) on the node's RocksDB.
//!
//! - [`state`]: the metadata and the pure function that applies commands to it;
//!   [`state_machine`]: its rows in `kv` (the group's state machine is `mq_raft`'s), and
//!   [`types`]: the group.
//! - [`placement`]: where new replicas go, rebalancing and preferred leaders, pure.
//! - [`reconcile`]: the reconciler's plan (creates, replacements, membership changes,
//!   leadership transfers, removals), pure; [`reports`]: what brokers reported, and liveness.
//! - [`topic_config`]: topic config keys, defaults and validation.
//! - [`manager`]: [`ClusterManager`], the transport-free service running those decisions:
//!   topics, brokers, status, rebalance, and the reconciler's loop.
//! - [`broker_client`]: the calls to brokers' `ReplicaManager`, the only place that builds
//!   them.
//! - [`service`]: the gRPC handlers (`Admin`, `Metadata`, `ClusterManagerInternal`).
//!
//! It never touches partition data: brokers own it. It reaches brokers only through their
//! `ReplicaManager` RPCs, and brokers reach it only through its RPCs. It depends on no other
//! service crate: `mq-node` runs it (next to the consumer manager) as a process.

pub mod broker_client;
pub mod config;
pub mod error;
pub mod manager;
pub mod placement;
pub mod reconcile;
pub mod reports;
pub mod service;
pub mod state;
pub mod state_machine;
pub mod topic_config;
pub mod types;

pub use config::ClusterManagerConfig;
pub use error::CmError;
pub use manager::{ClusterManager, ClusterManagerContext};
pub use service::ClusterManagerService;

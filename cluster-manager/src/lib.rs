//! The cluster manager: the control plane of the broker cluster. It owns topics, partitions,
//! their placement on brokers, and the broker registry, in a state machine replicated by its
//! own Raft group (group 0) on the node's RocksDB.
//!
//! - [`state`]: the metadata and the pure function that applies commands to it.
//! - [`placement`]: where new replicas go, as a pure function.
//! - [`topic_config`]: topic config keys, defaults and validation.
//! - [`state_machine`]: the openraft state machine persisting the state in `kv`.
//! - [`manager`]: [`ClusterManager`], the transport-free service: topic management, broker
//!   liveness, and the reconciler that creates and removes replicas on brokers.
//! - [`service`]: the gRPC handlers (`Admin`, `Metadata`, `ClusterManagerInternal`).
//! - [`node`]: a cluster-manager node on its own, as the `mq-cluster-manager` binary runs it
//!   (a standalone broker embeds [`ClusterManager`] instead).
//!
//! It never touches partition data: brokers own it. It reaches brokers only through their
//! `ReplicaManager` RPCs, and brokers reach it only through its RPCs.

pub mod config;
pub mod error;
pub mod manager;
pub mod node;
pub mod placement;
pub mod service;
pub mod state;
pub mod state_machine;
pub mod topic_config;
pub mod types;

pub use config::{ClusterManagerConfig, ManagerNodeConfig};
pub use error::CmError;
pub use manager::{ClusterManager, ClusterManagerContext};
pub use service::ClusterManagerService;

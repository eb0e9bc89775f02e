//! The composition root: how the services become processes. The three service crates
//! (`mq-broker`, `mq-cluster-manager`, `mq-consumer-manager`) are siblings that never depend
//! on each other; this crate starts them on one node's store and transport and serves them.
//!
//! - [`broker_node`]: `mq-broker`'s node: a broker, and in `--standalone` mode the control
//!   plane too ([`broker_node::run`] returns a handle with the bound address).
//! - [`manager_node`]: `mq-cluster-manager`'s node: one voter of the control plane.
//! - [`control_plane`]: the cluster manager with the consumer manager on the same voters.
//! - [`args`]: the flags both binaries share (`--config`, `--data-dir`, `--listen`,
//!   `--advertised-address`, `--set`).
//! - [`kit`]: what every server process does the same way: config loading, binding and
//!   serving with health and reflection, tracing, signals.
//!
//! The binaries (`src/bin/`) only parse flags, load the config and run a node until a signal.
//! Client crates never depend on this one.

pub mod args;
pub mod broker_node;
pub mod control_plane;
pub mod kit;
pub mod manager_node;

use mq_raft::StoreError;

use crate::kit::server::ServerError;

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("invalid config: {0}")]
    Config(String),
    #[error("cluster manager: {0}")]
    ClusterManager(#[from] mq_cluster_manager::CmError),
    #[error("consumer manager: {0}")]
    ConsumerManager(#[from] mq_consumer_manager::CgError),
    #[error(transparent)]
    Broker(#[from] mq_broker::error::BrokerError),
    #[error("node task failed: {0}")]
    Task(String),
}

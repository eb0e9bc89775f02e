//! The broker: hosts partition replicas, each an openraft group whose log is the partition log,
//! and serves produce, fetch and subscribe. With `--standalone` the same process also runs the
//! cluster manager (through its library), as one node.
//!
//! - [`node`]: [`run`] starts a node (store, replicas, gRPC server) and returns its handle.
//! - [`broker`]: the data plane without transport; [`service`] its gRPC handlers.
//! - [`partition`]: one replica: Raft group, state machine, reads.
//! - [`replicas`]: the replicas hosted here, created and removed on the cluster manager's word.
//! - [`batch`]: the stored batch format (header, CRC-32C, canonical records).
//! - [`cluster_link`]: registration and heartbeats to the cluster manager.
//! - [`peer_watch`]: fast failover: probes leaders' brokers, elects successors when one dies.
//! - [`config`], [`error`], [`convert`].
//!
//! The broker never writes cluster metadata: it only reports to the cluster manager and asks
//! it, through RPCs.

pub mod batch;
pub mod broker;
pub mod cluster_link;
pub mod config;
pub mod convert;
pub mod error;
pub mod node;
pub mod partition;
pub mod peer_watch;
pub mod push_budget;
pub mod replicas;
pub mod service;

pub use config::BrokerConfig;
pub use node::{NodeError, NodeHandle, run};

//! The broker: hosts partition replicas, each a Raft group whose log is the partition log,
//! and serves produce, fetch and subscribe.
//!
//! - [`runtime`]: [`start`] runs the broker on a node's store and transport and hands out its
//!   gRPC services; `mq-node` serves them (and in standalone mode the control plane beside).
//! - [`broker`]: the data plane without transport; [`service`] its gRPC handlers.
//! - [`partition`]: one replica: Raft group, state machine, reads.
//! - [`replicas`]: the replicas hosted here, created and removed on the cluster manager's word.
//! - [`batch`]: the stored batch format (header, CRC-32C, canonical records).
//! - [`cluster_link`]: registration and heartbeats to the cluster manager.
//! - [`peer_watch`]: fast failover: probes leaders' brokers, elects successors when one dies.
//! - [`push_budget`]: the bound on bytes subscriptions push ahead of their clients.
//! - [`config`], [`error`], [`convert`].
//!
//! The broker never writes cluster metadata: it only reports to the cluster manager and asks
//! it, through RPCs. It depends on no other service crate.

pub mod batch;
pub mod broker;
pub mod cluster_link;
pub mod config;
pub mod convert;
pub mod error;
pub mod partition;
pub mod peer_watch;
pub mod push_budget;
pub mod replicas;
pub mod runtime;
pub mod service;

pub use config::BrokerSettings;
pub use runtime::{BrokerRuntime, start};

//! The consumer manager: consumer groups (stream subscriptions) with incremental, server-side
//! assignment, static membership and generation fencing, and their committed offsets; and
//! queue subscriptions (leases, acks, nacks, redelivery, dead-lettering). Both in a state
//! replicated by its own Raft group (group 2) on the cluster-manager nodes.
//!
//! - [`assignor`]: assignment strategies, pure.
//! - [`coordinator`]: membership decisions (join, heartbeat, leave, expiry), pure.
//! - [`queue`]: queue leases and settling, pure.
//! - [`state`]: the replicated state and how commands apply to it (commit fencing and queue
//!   settling happen here, at apply); [`state_machine`]: its rows in `kv` (the group's state
//!   machine is `mq_raft`'s), and [`types`]: the group.
//! - [`manager`]: [`ConsumerManager`], which runs the decisions on the leader: groups in
//!   `manager.rs`, the queues' lease runtime in `manager/queues.rs`.
//! - [`service`]: the `mq.v1.ConsumerGroups` handlers; [`queue_service`]: `mq.v1.Queues`.
//!
//! It reads topics and offsets only through the public RPCs (`mq-client`), like any client,
//! and depends on no other service crate.

pub mod assignor;
pub mod coordinator;
pub mod error;
pub mod manager;
pub mod queue;
pub mod queue_service;
pub mod service;
pub mod state;
pub mod state_machine;
pub mod types;

pub use error::CgError;
pub use manager::{ConsumerManager, ConsumerManagerContext, ConsumerManagerSettings};
pub use queue_service::QueuesService;
pub use service::ConsumerGroupsService;

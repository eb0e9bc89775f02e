//! The consumer manager: consumer groups (stream subscriptions) with incremental, server-side
//! assignment, static membership and generation fencing, and their committed offsets, in a
//! state machine replicated by its own Raft group (group 2) on the cluster-manager nodes.
//!
//! - [`assignor`]: assignment strategies, pure.
//! - [`coordinator`]: membership decisions (join, heartbeat, leave, expiry), pure.
//! - [`state`]: the replicated state and how commands apply to it (commit fencing happens
//!   here, at apply).
//! - [`state_machine`]: the openraft state machine persisting the state in `kv`.
//! - [`manager`]: [`ConsumerManager`], which runs the decisions on the leader.
//! - [`service`]: the `mq.v1.ConsumerGroups` handlers.
//!
//! It reads topics and offsets only through the public RPCs (`mq-client`), like any client.

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

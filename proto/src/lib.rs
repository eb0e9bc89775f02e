//! The gRPC contract of the broker, generated from `proto/` and nothing else: no logic lives
//! here.
//!
//! - [`v1`]: the public API (`mq.v1`): `Broker` (produce, fetch, subscribe, list offsets),
//!   `Metadata`, `Admin`, `ConsumerGroups` (membership, offsets) and `Queues` (queue
//!   subscriptions: leases, acks, nacks).
//! - [`internal`]: RPCs between brokers and cluster-manager nodes (`mq.internal.v1`): Raft
//!   messages of many groups, replica management, broker registration and heartbeats.
//! - [`FILE_DESCRIPTOR_SET`]: both packages' descriptors, for server reflection.

#![allow(missing_docs, missing_debug_implementations)]

/// The public API, package `mq.v1`.
pub mod v1 {
    tonic::include_proto!("mq.v1");
}

/// Internal RPCs, package `mq.internal.v1`.
pub mod internal {
    tonic::include_proto!("mq.internal.v1");
}

/// Encoded `FileDescriptorSet` of `mq.v1` and `mq.internal.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mq_descriptor");

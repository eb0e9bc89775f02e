//! The consumer manager (not built yet; see the consumer-manager issue): consumer groups and
//! their incremental assignment, durable and replicated committed offsets, queue subscriptions
//! with leases, acks, redelivery and dead-lettering, broadcast subscriptions, and retention and
//! compaction policy.
//!
//! It will keep its state in Raft-replicated storage and talk to brokers and clients only
//! through `mq-proto` RPCs. This crate holds no code until then: nothing here is used by the
//! broker or the clients today.

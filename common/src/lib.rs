//! Small pieces every service and client shares, and nothing else.
//!
//! - [`ids`]: domain newtypes (`TopicName`, `PartitionId`, `BrokerId`, `GroupId`) and their
//!   validation.
//! - [`error`]: the shared error-code enum and the one conversion between errors and
//!   `tonic::Status` (with `google.rpc.ErrorInfo` details), both ways.
//! - [`control`]: `LeaderFollower`, calling a replicated control plane where its leader is.
//! - [`clock`]: `now_ms`, the wall clock in Unix milliseconds.
//! - [`partitioner`]: the standard key hash that maps a record key to a partition.
//! - [`compression`]: the batch codecs (none, LZ4 frame, Zstandard frame).
//! - [`records`]: the record type and its canonical encoding (what `crc32c` covers).
//!
//! It must not depend on RocksDB, openraft or any service crate, nor carry what only servers
//! need (config loading, serving, health, reflection, metrics export, tracing setup: those
//! are `mq-node`'s), so client crates compile none of it.

pub mod clock;
pub mod compression;
pub mod control;
pub mod error;
pub mod ids;
pub mod partitioner;
pub mod records;
#[cfg(any(test, feature = "proptest"))]
pub mod strategies;

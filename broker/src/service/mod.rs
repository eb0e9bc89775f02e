//! gRPC handlers of the broker. They translate protobuf to domain calls and back, nothing
//! else: `data` serves `mq.v1.Broker`, `replica` serves `mq.internal.v1.ReplicaManager`,
//! `control` passes `mq.v1.Admin` and `mq.v1.Metadata` on to the cluster manager.

pub mod control;
pub mod data;
pub mod replica;

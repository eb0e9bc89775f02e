//! gRPC handlers of the broker. They translate protobuf to domain calls and back, nothing
//! else: `data` serves `mq.v1.Broker`, `replica` serves `mq.internal.v1.ReplicaManager`.

pub mod data;
pub mod replica;

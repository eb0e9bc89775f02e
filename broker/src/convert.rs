//! Protobuf <-> domain conversions of the broker's replica-management messages (replica
//! specs, members, topic names). A missing or malformed required field becomes an
//! `InvalidArgument` naming it. The data messages' conversions (produce batches, fetch
//! replies) sit beside their handlers in `service/data.rs`; the shared record encoding's in
//! `mq_common::records::proto`.

use std::collections::BTreeMap;

use mq_common::ids::{GroupId, PartitionId, TopicName};
use mq_proto::internal as ipb;

use crate::error::BrokerError;
use crate::partition::compaction::Compaction;
use crate::partition::retention::Retention;
use crate::partition::{Member, ReplicaSpec};

pub fn topic(field: &str, name: &str) -> Result<TopicName, BrokerError> {
    TopicName::new(name).map_err(|problem| BrokerError::invalid(field, problem))
}

pub fn spec_from_proto(spec: ipb::ReplicaSpec) -> Result<ReplicaSpec, BrokerError> {
    if spec.group_id < GroupId::FIRST_PARTITION.0 {
        return Err(BrokerError::invalid(
            "replica.group_id",
            format!("{} is reserved for control groups", spec.group_id),
        ));
    }
    if spec.partition >= spec.partition_count {
        return Err(BrokerError::invalid(
            "replica.partition",
            format!(
                "{} is not below partition_count {}",
                spec.partition, spec.partition_count
            ),
        ));
    }
    let members: BTreeMap<u64, Member> = spec
        .members
        .into_iter()
        .map(|m| {
            (
                m.node_id,
                Member {
                    broker_id: m.broker_id,
                    address: m.address,
                },
            )
        })
        .collect();
    if spec.bootstrap && !members.contains_key(&spec.node_id) {
        return Err(BrokerError::invalid(
            "replica.members",
            "a bootstrap replica must be one of the members",
        ));
    }
    if spec.max_message_bytes == 0 {
        return Err(BrokerError::invalid(
            "replica.max_message_bytes",
            "must be positive",
        ));
    }
    Ok(ReplicaSpec {
        group: GroupId(spec.group_id),
        topic: topic("replica.topic", &spec.topic)?,
        topic_id: spec.topic_id,
        partition: PartitionId(spec.partition),
        partition_count: spec.partition_count,
        node_id: spec.node_id,
        members,
        bootstrap: spec.bootstrap,
        max_message_bytes: spec.max_message_bytes,
        retention: Retention {
            max_age_ms: u64::try_from(spec.retention_ms).ok().filter(|v| *v > 0),
            max_bytes: u64::try_from(spec.retention_bytes).ok().filter(|v| *v > 0),
        },
        compaction: spec.compact.then(|| Compaction {
            delete_retention_ms: u64::try_from(spec.delete_retention_ms).unwrap_or(0),
        }),
    })
}

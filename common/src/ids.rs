//! Domain identifiers. Protobuf carries plain integers and strings; these types are what the
//! rest of the code passes around once a request has been validated.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest topic name, as in Kafka (a file-name limit there, a sane bound here).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// A validated topic name: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(String);

impl TopicName {
    /// Validates `name`; the error says what is wrong with it (without the field name, which
    /// the caller knows).
    pub fn new(name: impl Into<String>) -> Result<Self, String> {
        let name = name.into();
        if name.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if name.len() > MAX_TOPIC_NAME_LEN {
            return Err(format!(
                "is {} characters long, at most {MAX_TOPIC_NAME_LEN} are allowed",
                name.len()
            ));
        }
        if name == "." || name == ".." {
            return Err(format!("'{name}' is not allowed"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "'{name}' contains {bad:?}; only a-z, A-Z, 0-9, '.', '_' and '-' are allowed"
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TopicName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<TopicName> for String {
    fn from(value: TopicName) -> Self {
        value.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A partition number within its topic, 0-based.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct PartitionId(pub u32);

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A broker's id, unique in the cluster and chosen by the operator.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct BrokerId(pub u32);

impl fmt::Display for BrokerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A Raft group id: one per partition replica set, plus [`GroupId::CLUSTER_MANAGER`]. Allocated
/// by the cluster manager and never reused.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The cluster manager's own Raft group.
    pub const CLUSTER_MANAGER: GroupId = GroupId(0);
    /// Not a Raft group: the key prefix of a broker's local registry of hosted replicas.
    pub const BROKER_LOCAL: GroupId = GroupId(1);
    /// The consumer manager's Raft group (groups, offsets), on the cluster-manager nodes.
    pub const CONSUMER_MANAGER: GroupId = GroupId(2);
    /// The first id handed to a partition; ids below are reserved for control groups.
    pub const FIRST_PARTITION: GroupId = GroupId(1024);
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The Raft node id of a partition replica: the broker id in the high 32 bits and an
/// assignment epoch (the cluster-manager log index that assigned the replica) in the low 32
/// bits, so a node id is never reused even when a replica returns to the same broker.
pub fn replica_node_id(broker: BrokerId, epoch: u64) -> u64 {
    (u64::from(broker.0) << 32) | (epoch & 0xffff_ffff)
}

/// The broker hosting a partition replica with Raft node id `node_id`.
pub fn broker_of_node(node_id: u64) -> BrokerId {
    BrokerId((node_id >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_the_documented_rule() {
        for ok in [
            "a",
            "orders",
            "orders.v2",
            "price_changed-eu",
            &"x".repeat(249),
        ] {
            assert!(TopicName::new(ok).is_ok(), "{ok} should be valid");
        }
        for (bad, why) in [
            ("", "empty"),
            (".", "not allowed"),
            ("..", "not allowed"),
            ("a b", "' '"),
            ("a/b", "'/'"),
            ("é", "'é'"),
        ] {
            let err = TopicName::new(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(TopicName::new("x".repeat(250)).unwrap_err().contains("250"));
    }

    #[test]
    fn replica_node_ids_round_trip_the_broker() {
        let id = replica_node_id(BrokerId(7), 12345);
        assert_eq!(broker_of_node(id), BrokerId(7));
        assert_ne!(id, replica_node_id(BrokerId(7), 12346));
    }
}

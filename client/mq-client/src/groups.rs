//! Consumer-group calls (`mq.v1.ConsumerGroups`): membership heartbeats and offset commits for
//! `mq-consumer`, and the group administration `mqctl` uses, with their domain types (converted
//! from and to protobuf here). Any broker forwards them to the consumer manager; not-leader
//! answers are followed like other control calls.

use std::time::Duration;

use mq_proto::v1 as pb;
use mq_proto::v1::consumer_groups_client::ConsumerGroupsClient;
use serde::Serialize;

use crate::routing::{repeatable, reroutable};
use crate::{Client, ClientError};

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

/// One heartbeat of a group member: joins (empty `member_id`), stays in, or leaves a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heartbeat {
    pub group_id: String,
    /// Empty to join; then the id the group gave.
    pub member_id: String,
    /// The epoch of the last answer this member received (0 when joining).
    pub member_epoch: u32,
    /// Static membership: a stable id of this instance, unique in the group.
    pub instance_id: Option<String>,
    /// The topics this member subscribes to (at least one when joining).
    pub topics: Vec<String>,
    /// The partitions this member still holds (reads or may commit).
    pub owned: Vec<TopicPartition>,
    /// Removed after this long without a heartbeat; zero: the server's default (10 s).
    pub session_timeout: Duration,
    /// How long giving up a partition may take; zero: the server's default (60 s).
    pub rebalance_timeout: Duration,
    /// Leave the group now (a static member keeps its partitions until its session times out).
    pub leave: bool,
    /// "uniform" or "range" when joining; empty: the server's default (uniform).
    pub assignor: String,
}

/// A heartbeat's answer: the member's id, epoch and every partition it owns now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAssignment {
    pub member_id: String,
    /// Commits must carry it.
    pub member_epoch: u32,
    /// When to heartbeat next.
    pub heartbeat_interval: Duration,
    /// Stop reading any partition not listed, then report it no longer held.
    pub assignment: Vec<TopicPartition>,
}

/// Offsets to commit for a group: as a member (fenced by its id and epoch), or from outside
/// the membership (empty `member_id`; only while the group has no members).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetCommit {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: u32,
    /// The next offset to read in each partition (one past the last processed record).
    pub offsets: Vec<(TopicPartition, u64)>,
}

impl OffsetCommit {
    /// A commit from outside the group's membership.
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            ..Self::default()
        }
    }

    /// Commits as member `member_id` at `member_epoch`.
    pub fn member(mut self, member_id: impl Into<String>, member_epoch: u32) -> Self {
        self.member_id = member_id.into();
        self.member_epoch = member_epoch;
        self
    }

    /// Adds `offset` for a partition.
    pub fn offset(mut self, topic: impl Into<String>, partition: u32, offset: u64) -> Self {
        self.offsets
            .push((TopicPartition::new(topic, partition), offset));
        self
    }
}

/// A group's committed offset of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// Application data stored with it.
    pub metadata: String,
    /// When it was committed, ms since the Unix epoch (the consumer manager's clock).
    pub commit_time_ms: i64,
}

/// A group, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupSummary {
    pub group_id: String,
    /// Current members.
    pub members: u32,
    /// "stable" (every member holds its target), "reconciling" (partitions moving) or "empty".
    pub state: String,
}

/// A group's members, assignments and committed offsets with their lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDescription {
    pub group_id: String,
    /// As in [`GroupSummary::state`].
    pub state: String,
    pub assignor: String,
    /// Raised whenever members or subscriptions change.
    pub group_epoch: u32,
    pub members: Vec<GroupMember>,
    pub offsets: Vec<PartitionLag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub member_epoch: u32,
    pub topics: Vec<String>,
    /// Partitions it owns (may read and commit).
    pub assignment: Vec<TopicPartition>,
    /// Partitions it was asked to release and has not yet.
    pub revoking: Vec<TopicPartition>,
    /// Time since its last heartbeat, as the consumer manager's leader saw it.
    pub last_heartbeat_ms_ago: u64,
}

/// A partition's committed offset and how far it is behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    pub committed: Option<u64>,
    /// When the partition's leader answered.
    pub high_watermark: Option<u64>,
    /// The high watermark minus the committed offset (or the log start), when known.
    pub lag: Option<u64>,
}

/// Where [`Client::reset_offsets`] moves a group's committed offsets (clamped to each
/// partition's stored range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    Offset(u64),
    /// The first record at or after this time (ms since the Unix epoch).
    Timestamp(i64),
    /// The committed offset (the log start when none) plus this, which may be negative.
    ShiftBy(i64),
}

impl Client {
    /// Joins, stays in or leaves a group; answers the member's assignment.
    pub async fn heartbeat(&self, heartbeat: Heartbeat) -> Result<MemberAssignment, ClientError> {
        let request = heartbeat_to_proto(heartbeat);
        let response = self
            .control(reroutable, |channel| {
                let request = request.clone();
                async move { ConsumerGroupsClient::new(channel).heartbeat(request).await }
            })
            .await?
            .into_inner();
        Ok(MemberAssignment {
            member_id: response.member_id,
            member_epoch: response.member_epoch,
            heartbeat_interval: Duration::from_millis(u64::from(response.heartbeat_interval_ms)),
            assignment: partitions_from_proto(response.assignment),
        })
    }

    /// Commits offsets for a group (fenced by member id and epoch).
    pub async fn commit_offsets(&self, commit: OffsetCommit) -> Result<(), ClientError> {
        let request = pb::CommitOffsetsRequest {
            group_id: commit.group_id,
            member_id: commit.member_id,
            member_epoch: commit.member_epoch,
            offsets: commit
                .offsets
                .into_iter()
                .map(|(tp, offset)| pb::OffsetCommit {
                    topic: tp.topic,
                    partition: tp.partition,
                    offset,
                    metadata: String::new(),
                })
                .collect(),
        };
        self.control(reroutable, |channel| {
            let request = request.clone();
            async move {
                ConsumerGroupsClient::new(channel)
                    .commit_offsets(request)
                    .await
            }
        })
        .await?;
        Ok(())
    }

    /// A group's committed offsets of `partitions` (of every partition with one when empty);
    /// partitions without one are left out.
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<CommittedOffset>, ClientError> {
        let request = pb::FetchOffsetsRequest {
            group_id: group_id.to_owned(),
            partitions: partitions.iter().cloned().map(partition_to_proto).collect(),
        };
        let response = self
            .control(repeatable, |channel| {
                let request = request.clone();
                async move {
                    ConsumerGroupsClient::new(channel)
                        .fetch_offsets(request)
                        .await
                }
            })
            .await?
            .into_inner();
        Ok(committed_from_proto(response.offsets))
    }

    /// Every group with its member count and state.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>, ClientError> {
        let response = self
            .control(repeatable, |channel| async move {
                ConsumerGroupsClient::new(channel)
                    .list_groups(pb::ListGroupsRequest {})
                    .await
            })
            .await?
            .into_inner();
        Ok(response
            .groups
            .into_iter()
            .map(|g| GroupSummary {
                group_id: g.group_id,
                members: g.members,
                state: g.state,
            })
            .collect())
    }

    /// A group's members, assignments, committed offsets and lag.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription, ClientError> {
        let request = pb::DescribeGroupRequest {
            group_id: group_id.to_owned(),
        };
        let response = self
            .control(repeatable, |channel| {
                let request = request.clone();
                async move {
                    ConsumerGroupsClient::new(channel)
                        .describe_group(request)
                        .await
                }
            })
            .await?
            .into_inner();
        Ok(description_from_proto(response))
    }

    /// Moves a group's committed offsets of `topic` (of `partitions`, or all of them when
    /// empty) to `to`; the group must have no members. Returns the new offsets.
    pub async fn reset_offsets(
        &self,
        group_id: &str,
        topic: &str,
        partitions: &[u32],
        to: ResetTo,
    ) -> Result<Vec<CommittedOffset>, ClientError> {
        use pb::reset_offsets_request::To;
        let to = match to {
            ResetTo::Earliest => To::Earliest(true),
            ResetTo::Latest => To::Latest(true),
            ResetTo::Offset(offset) => To::Offset(offset),
            ResetTo::Timestamp(ms) => To::TimestampMs(ms),
            ResetTo::ShiftBy(by) => To::ShiftBy(by),
        };
        let request = pb::ResetOffsetsRequest {
            group_id: group_id.to_owned(),
            topic: topic.to_owned(),
            partitions: partitions.to_vec(),
            to: Some(to),
        };
        let response = self
            .control(reroutable, |channel| {
                let request = request.clone();
                async move {
                    ConsumerGroupsClient::new(channel)
                        .reset_offsets(request)
                        .await
                }
            })
            .await?
            .into_inner();
        Ok(committed_from_proto(response.offsets))
    }

    /// Deletes a group and its offsets (the group must have no members).
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ClientError> {
        let request = pb::DeleteGroupRequest {
            group_id: group_id.to_owned(),
        };
        self.control(reroutable, |channel| {
            let request = request.clone();
            async move {
                ConsumerGroupsClient::new(channel)
                    .delete_group(request)
                    .await
            }
        })
        .await?;
        Ok(())
    }
}

fn heartbeat_to_proto(heartbeat: Heartbeat) -> pb::GroupHeartbeatRequest {
    pb::GroupHeartbeatRequest {
        group_id: heartbeat.group_id,
        member_id: heartbeat.member_id,
        member_epoch: heartbeat.member_epoch,
        instance_id: heartbeat.instance_id,
        topics: heartbeat.topics,
        owned: heartbeat
            .owned
            .into_iter()
            .map(partition_to_proto)
            .collect(),
        session_timeout_ms: heartbeat.session_timeout.as_millis() as u32,
        rebalance_timeout_ms: heartbeat.rebalance_timeout.as_millis() as u32,
        leave: heartbeat.leave,
        assignor: heartbeat.assignor,
    }
}

fn partition_to_proto(tp: TopicPartition) -> pb::PartitionRef {
    pb::PartitionRef {
        topic: tp.topic,
        partition: tp.partition,
    }
}

fn partitions_from_proto(refs: Vec<pb::PartitionRef>) -> Vec<TopicPartition> {
    refs.into_iter()
        .map(|r| TopicPartition::new(r.topic, r.partition))
        .collect()
}

fn committed_from_proto(offsets: Vec<pb::CommittedOffset>) -> Vec<CommittedOffset> {
    offsets
        .into_iter()
        .map(|c| CommittedOffset {
            topic: c.topic,
            partition: c.partition,
            offset: c.offset,
            metadata: c.metadata,
            commit_time_ms: c.commit_time_ms,
        })
        .collect()
}

fn description_from_proto(group: pb::DescribeGroupResponse) -> GroupDescription {
    GroupDescription {
        group_id: group.group_id,
        state: group.state,
        assignor: group.assignor,
        group_epoch: group.group_epoch,
        members: group
            .members
            .into_iter()
            .map(|m| GroupMember {
                member_id: m.member_id,
                instance_id: m.instance_id,
                member_epoch: m.member_epoch,
                topics: m.topics,
                assignment: partitions_from_proto(m.assignment),
                revoking: partitions_from_proto(m.revoking),
                last_heartbeat_ms_ago: m.last_heartbeat_ms_ago,
            })
            .collect(),
        offsets: group
            .offsets
            .into_iter()
            .map(|o| PartitionLag {
                topic: o.topic,
                partition: o.partition,
                committed: o.committed,
                high_watermark: o.high_watermark,
                lag: o.lag,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_sends_its_timeouts_in_milliseconds_and_what_it_owns() {
        let request = heartbeat_to_proto(Heartbeat {
            group_id: "billing".into(),
            member_id: "m1".into(),
            member_epoch: 4,
            topics: vec!["orders".into()],
            owned: vec![TopicPartition::new("orders", 2)],
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_millis(1_500),
            ..Heartbeat::default()
        });
        assert_eq!(
            (request.session_timeout_ms, request.rebalance_timeout_ms),
            (10_000, 1_500)
        );
        assert_eq!(
            request.owned,
            [pb::PartitionRef {
                topic: "orders".into(),
                partition: 2
            }]
        );
        assert_eq!(
            (
                request.member_id.as_str(),
                request.member_epoch,
                request.leave
            ),
            ("m1", 4, false)
        );
    }

    #[test]
    fn an_offset_commit_from_outside_the_membership_has_no_member() {
        let commit = OffsetCommit::new("ledger").offset("events", 0, 7);
        assert_eq!(commit.member_id, "");
        assert_eq!(commit.member_epoch, 0);
        assert_eq!(commit.offsets, [(TopicPartition::new("events", 0), 7)]);
        let member = commit.member("m1", 3);
        assert_eq!((member.member_id.as_str(), member.member_epoch), ("m1", 3));
    }
}

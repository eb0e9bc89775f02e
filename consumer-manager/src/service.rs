//! `mq.v1.ConsumerGroups`: handlers that validate and translate requests and replies; the
//! decisions are the [`ConsumerManager`]'s.

use std::collections::BTreeSet;
use std::sync::Arc;

use mq_common::ids::TopicName;
use mq_proto::v1 as pb;
use mq_proto::v1::consumer_groups_server::{ConsumerGroups, ConsumerGroupsServer};
use tonic::{Request, Response, Status};

use crate::assignor::{Assignor, Tp};
use crate::coordinator::Heartbeat;
use crate::error::CgError;
use crate::manager::{ConsumerManager, ResetTo};
use crate::state::{Committed, Committer, MAX_OFFSET_METADATA};

/// Session timeout bounds and default, ms.
const SESSION_TIMEOUT: (u32, u32, u32) = (1_000, 300_000, 10_000);
/// Rebalance timeout bounds and default, ms.
const REBALANCE_TIMEOUT: (u32, u32, u32) = (1_000, 600_000, 60_000);

#[derive(Debug, Clone)]
pub struct ConsumerGroupsService {
    manager: Arc<ConsumerManager>,
}

impl ConsumerGroupsService {
    pub fn new(manager: Arc<ConsumerManager>) -> Self {
        Self { manager }
    }

    pub fn server(&self) -> ConsumerGroupsServer<Self> {
        ConsumerGroupsServer::new(self.clone())
    }
}

fn group_id(group: &str) -> Result<String, CgError> {
    TopicName::new(group)
        .map(|name| name.as_str().to_owned())
        .map_err(|problem| CgError::invalid("group_id", problem))
}

fn topic(field: &str, name: &str) -> Result<String, CgError> {
    TopicName::new(name)
        .map(|name| name.as_str().to_owned())
        .map_err(|problem| CgError::invalid(field, problem))
}

fn partitions(field: &str, refs: &[pb::PartitionRef]) -> Result<Vec<Tp>, CgError> {
    refs.iter()
        .enumerate()
        .map(|(i, r)| {
            Ok((
                topic(&format!("{field}[{i}].topic"), &r.topic)?,
                r.partition,
            ))
        })
        .collect()
}

fn timeout(field: &str, value: u32, (min, max, default): (u32, u32, u32)) -> Result<u32, CgError> {
    match value {
        0 => Ok(default),
        v if (min..=max).contains(&v) => Ok(v),
        v => Err(CgError::invalid(
            field,
            format!("must be between {min} and {max} ms (0 for {default}), got {v}"),
        )),
    }
}

fn refs(tps: impl IntoIterator<Item = Tp>) -> Vec<pb::PartitionRef> {
    tps.into_iter()
        .map(|(topic, partition)| pb::PartitionRef { topic, partition })
        .collect()
}

fn committed_to_proto(((topic, partition), c): (Tp, Committed)) -> pb::CommittedOffset {
    pb::CommittedOffset {
        topic,
        partition,
        offset: c.offset,
        metadata: c.metadata,
        commit_time_ms: c.commit_time_ms,
    }
}

#[tonic::async_trait]
impl ConsumerGroups for ConsumerGroupsService {
    #[tracing::instrument(skip_all, fields(group = %request.get_ref().group_id, member = %request.get_ref().member_id))]
    async fn heartbeat(
        &self,
        request: Request<pb::GroupHeartbeatRequest>,
    ) -> Result<Response<pb::GroupHeartbeatResponse>, Status> {
        let request = request.into_inner();
        let group = group_id(&request.group_id)?;
        let topics = request
            .topics
            .iter()
            .enumerate()
            .map(|(i, t)| topic(&format!("topics[{i}]"), t))
            .collect::<Result<BTreeSet<_>, _>>()?;
        if let Some(instance) = &request.instance_id
            && (instance.is_empty() || instance.len() > 249)
        {
            return Err(CgError::invalid("instance_id", "must be 1 to 249 characters").into());
        }
        let session_timeout_ms = timeout(
            "session_timeout_ms",
            request.session_timeout_ms,
            SESSION_TIMEOUT,
        )?;
        let heartbeat = Heartbeat {
            member_id: (!request.member_id.is_empty()).then(|| request.member_id.clone()),
            instance_id: request.instance_id.clone(),
            topics,
            owned: partitions("owned", &request.owned)?.into_iter().collect(),
            session_timeout_ms,
            rebalance_timeout_ms: timeout(
                "rebalance_timeout_ms",
                request.rebalance_timeout_ms,
                REBALANCE_TIMEOUT,
            )?,
            leave: request.leave,
            assignor: Assignor::from_name(&request.assignor)
                .map_err(|problem| CgError::invalid("assignor", problem))?,
        };
        let reply = self.manager.heartbeat(&group, heartbeat).await?;
        Ok(Response::new(pb::GroupHeartbeatResponse {
            member_id: reply.member_id,
            member_epoch: reply.member_epoch,
            heartbeat_interval_ms: ConsumerManager::heartbeat_interval_ms(session_timeout_ms),
            assignment: refs(reply.assignment),
        }))
    }

    #[tracing::instrument(skip_all, fields(group = %request.get_ref().group_id, member = %request.get_ref().member_id))]
    async fn commit_offsets(
        &self,
        request: Request<pb::CommitOffsetsRequest>,
    ) -> Result<Response<pb::CommitOffsetsResponse>, Status> {
        let request = request.into_inner();
        let group = group_id(&request.group_id)?;
        if request.offsets.is_empty() {
            return Err(CgError::invalid("offsets", "must not be empty").into());
        }
        let mut offsets = Vec::with_capacity(request.offsets.len());
        for (i, o) in request.offsets.into_iter().enumerate() {
            let name = topic(&format!("offsets[{i}].topic"), &o.topic)?;
            if o.metadata.len() > MAX_OFFSET_METADATA {
                return Err(CgError::invalid(
                    format!("offsets[{i}].metadata"),
                    format!(
                        "is {} bytes, at most {MAX_OFFSET_METADATA}",
                        o.metadata.len()
                    ),
                )
                .into());
            }
            offsets.push(((name, o.partition), o.offset, o.metadata));
        }
        let committer = if request.member_id.is_empty() {
            Committer::Outside
        } else {
            Committer::Member {
                id: request.member_id,
                epoch: request.member_epoch,
            }
        };
        self.manager.commit(&group, committer, offsets).await?;
        Ok(Response::new(pb::CommitOffsetsResponse {}))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(group = %request.get_ref().group_id))]
    async fn fetch_offsets(
        &self,
        request: Request<pb::FetchOffsetsRequest>,
    ) -> Result<Response<pb::FetchOffsetsResponse>, Status> {
        let request = request.into_inner();
        let group = group_id(&request.group_id)?;
        let wanted = partitions("partitions", &request.partitions)?;
        let offsets = self.manager.fetch_offsets(&group, &wanted).await?;
        Ok(Response::new(pb::FetchOffsetsResponse {
            offsets: offsets.into_iter().map(committed_to_proto).collect(),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_groups(
        &self,
        _request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let groups = self.manager.list_groups().await?;
        Ok(Response::new(pb::ListGroupsResponse {
            groups: groups
                .into_iter()
                .map(|(group_id, members, state)| pb::GroupSummary {
                    group_id,
                    members: members as u32,
                    state: state.to_owned(),
                })
                .collect(),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(group = %request.get_ref().group_id))]
    async fn describe_group(
        &self,
        request: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::DescribeGroupResponse>, Status> {
        let group = group_id(&request.into_inner().group_id)?;
        let view = self.manager.describe_group(&group).await?;
        Ok(Response::new(pb::DescribeGroupResponse {
            group_id: view.group,
            state: view.state.to_owned(),
            assignor: view.assignor.to_owned(),
            group_epoch: view.epoch,
            members: view
                .members
                .into_iter()
                .map(|m| pb::GroupMember {
                    member_id: m.member_id,
                    instance_id: m.instance_id,
                    member_epoch: m.member_epoch,
                    topics: m.topics.into_iter().collect(),
                    assignment: refs(m.assignment),
                    revoking: refs(m.revoking),
                    last_heartbeat_ms_ago: m
                        .last_heartbeat
                        .map_or(u64::MAX, |d| d.as_millis() as u64),
                })
                .collect(),
            offsets: view
                .offsets
                .into_iter()
                .map(|l| pb::PartitionLag {
                    topic: l.tp.0,
                    partition: l.tp.1,
                    committed: l.committed,
                    high_watermark: l.high_watermark,
                    lag: l.lag,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(group = %request.get_ref().group_id, topic = %request.get_ref().topic))]
    async fn reset_offsets(
        &self,
        request: Request<pb::ResetOffsetsRequest>,
    ) -> Result<Response<pb::ResetOffsetsResponse>, Status> {
        let request = request.into_inner();
        let group = group_id(&request.group_id)?;
        let name = topic("topic", &request.topic)?;
        let to = match request.to {
            Some(pb::reset_offsets_request::To::Earliest(true)) => ResetTo::Earliest,
            Some(pb::reset_offsets_request::To::Latest(true)) => ResetTo::Latest,
            Some(pb::reset_offsets_request::To::Offset(offset)) => ResetTo::Offset(offset),
            Some(pb::reset_offsets_request::To::TimestampMs(ms)) => ResetTo::Timestamp(ms),
            Some(pb::reset_offsets_request::To::ShiftBy(by)) => ResetTo::ShiftBy(by),
            _ => {
                return Err(CgError::invalid(
                    "to",
                    "name one of earliest, latest, offset, timestamp_ms, shift_by",
                )
                .into());
            }
        };
        let offsets = self
            .manager
            .reset_offsets(&group, &name, &request.partitions, to)
            .await?;
        Ok(Response::new(pb::ResetOffsetsResponse {
            offsets: offsets.into_iter().map(committed_to_proto).collect(),
        }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(group = %request.get_ref().group_id))]
    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let group = group_id(&request.into_inner().group_id)?;
        self.manager.delete_group(&group).await?;
        Ok(Response::new(pb::DeleteGroupResponse {}))
    }
}

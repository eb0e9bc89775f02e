//! `mq.internal.v1.ReplicaManager`: the cluster manager creates, removes and inspects
//! replicas here.

use std::sync::Arc;

use mq_common::ids::GroupId;
use mq_proto::internal as ipb;
use mq_proto::internal::replica_manager_server::{ReplicaManager, ReplicaManagerServer};
use tonic::{Request, Response, Status};

use crate::cluster_link::status_to_proto;
use crate::convert::spec_from_proto;
use crate::error::BrokerError;
use crate::replicas::Replicas;

#[derive(Debug, Clone)]
pub struct ReplicaService {
    replicas: Arc<Replicas>,
}

impl ReplicaService {
    pub fn server(replicas: Arc<Replicas>) -> ReplicaManagerServer<Self> {
        ReplicaManagerServer::new(Self { replicas })
    }
}

#[tonic::async_trait]
impl ReplicaManager for ReplicaService {
    #[tracing::instrument(level = "info", skip_all, fields(group = request.get_ref().replica.as_ref().map(|r| r.group_id), topic = request.get_ref().replica.as_ref().map(|r| r.topic.as_str())))]
    async fn create_replica(
        &self,
        request: Request<ipb::CreateReplicaRequest>,
    ) -> Result<Response<ipb::CreateReplicaResponse>, Status> {
        let spec = request
            .into_inner()
            .replica
            .ok_or_else(|| BrokerError::invalid("replica", "is required"))?;
        let spec = spec_from_proto(spec)?;
        self.replicas.create(spec).await?;
        Ok(Response::new(ipb::CreateReplicaResponse {}))
    }

    #[tracing::instrument(level = "info", skip_all, fields(group = request.get_ref().group_id))]
    async fn remove_replica(
        &self,
        request: Request<ipb::RemoveReplicaRequest>,
    ) -> Result<Response<ipb::RemoveReplicaResponse>, Status> {
        self.replicas
            .remove(GroupId(request.into_inner().group_id))
            .await?;
        Ok(Response::new(ipb::RemoveReplicaResponse {}))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(groups = request.get_ref().group_ids.len()))]
    async fn get_replica_status(
        &self,
        request: Request<ipb::GetReplicaStatusRequest>,
    ) -> Result<Response<ipb::GetReplicaStatusResponse>, Status> {
        let wanted = request.into_inner().group_ids;
        let replicas = self
            .replicas
            .all()
            .into_iter()
            .filter(|p| wanted.is_empty() || wanted.contains(&p.spec().group.0))
            .map(|p| status_to_proto(&p, p.status()))
            .collect();
        Ok(Response::new(ipb::GetReplicaStatusResponse { replicas }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(group = request.get_ref().group_id, to = request.get_ref().to_node_id))]
    async fn transfer_leader(
        &self,
        request: Request<ipb::TransferLeaderRequest>,
    ) -> Result<Response<ipb::TransferLeaderResponse>, Status> {
        let request = request.into_inner();
        let partition = self.hosted(request.group_id)?;
        partition.transfer_leadership(request.to_node_id).await?;
        Ok(Response::new(ipb::TransferLeaderResponse {}))
    }

    #[tracing::instrument(level = "info", skip_all, fields(group = request.get_ref().group_id))]
    async fn change_membership(
        &self,
        request: Request<ipb::ChangeMembershipRequest>,
    ) -> Result<Response<ipb::ChangeMembershipResponse>, Status> {
        let request = request.into_inner();
        let partition = self.hosted(request.group_id)?;
        let members = request
            .members
            .into_iter()
            .map(|m| (m.node_id, m.address))
            .collect();
        partition
            .change_membership(members, MEMBERSHIP_CHANGE_TIMEOUT)
            .await?;
        Ok(Response::new(ipb::ChangeMembershipResponse {}))
    }
}

/// Longest wait for new members to catch up and the change to commit.
const MEMBERSHIP_CHANGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl ReplicaService {
    fn hosted(&self, group_id: u64) -> Result<Arc<crate::partition::Partition>, BrokerError> {
        self.replicas.get(GroupId(group_id)).ok_or_else(|| {
            BrokerError::invalid(
                "group_id",
                format!("no replica of group {group_id} is hosted here"),
            )
        })
    }
}

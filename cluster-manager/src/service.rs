//! gRPC handlers of the cluster manager: `mq.v1.Admin`, `mq.v1.Metadata` and
//! `mq.internal.v1.ClusterManagerInternal`. They only translate between protobuf and
//! [`ClusterManager`] calls.

use std::sync::Arc;

use mq_common::ids::{BrokerId, TopicName};
use mq_proto::internal as ipb;
use mq_proto::internal::cluster_manager_internal_server::{
    ClusterManagerInternal, ClusterManagerInternalServer,
};
use mq_proto::v1 as pb;
use mq_proto::v1::admin_server::{Admin, AdminServer};
use mq_proto::v1::metadata_server::{Metadata, MetadataServer};
use tonic::{Request, Response, Status};

use crate::broker_client::report_from_proto;
use crate::error::CmError;
use crate::manager::{BrokerView, ClusterManager, CreateTopic, TopicView};
use crate::state::BrokerRecord;

/// The three services over one manager.
#[derive(Debug, Clone)]
pub struct ClusterManagerService {
    manager: Arc<ClusterManager>,
}

impl ClusterManagerService {
    pub fn new(manager: Arc<ClusterManager>) -> Self {
        Self { manager }
    }

    pub fn admin_server(&self) -> AdminServer<Self> {
        AdminServer::new(self.clone())
    }

    pub fn metadata_server(&self) -> MetadataServer<Self> {
        MetadataServer::new(self.clone())
    }

    pub fn internal_server(&self) -> ClusterManagerInternalServer<Self> {
        ClusterManagerInternalServer::new(self.clone())
    }
}

fn topic_name(field: &str, name: &str) -> Result<TopicName, CmError> {
    TopicName::new(name).map_err(|problem| CmError::invalid(field, problem))
}

#[tonic::async_trait]
impl Admin for ClusterManagerService {
    #[tracing::instrument(level = "info", skip_all, fields(topic = %request.get_ref().name))]
    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let request = request.into_inner();
        let create = CreateTopic {
            name: topic_name("name", &request.name)?,
            partitions: request.partitions.unwrap_or(1),
            replication_factor: request.replication_factor,
            configs: request.configs.into_iter().collect(),
        };
        let view = self.manager.create_topic(create).await?;
        Ok(Response::new(pb::CreateTopicResponse {
            topic: Some(describe(&view, &self.manager.brokers())),
        }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(topic = %request.get_ref().name))]
    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let name = topic_name("name", &request.into_inner().name)?;
        self.manager.delete_topic(&name).await?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_topics(
        &self,
        _request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let topics = self
            .manager
            .list_topics()
            .into_iter()
            .map(|t| pb::TopicSummary {
                name: t.name.to_string(),
                partitions: t.partitions.len() as u32,
                replication_factor: t.replication_factor,
            })
            .collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(topic = %request.get_ref().name))]
    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::DescribeTopicResponse>, Status> {
        let name = topic_name("name", &request.into_inner().name)?;
        let view = self.manager.describe_topic(&name).await?;
        Ok(Response::new(pb::DescribeTopicResponse {
            topic: Some(describe(&view, &self.manager.brokers())),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_brokers(
        &self,
        _request: Request<pb::ListBrokersRequest>,
    ) -> Result<Response<pb::ListBrokersResponse>, Status> {
        let brokers = self.manager.brokers().iter().map(broker_status).collect();
        Ok(Response::new(pb::ListBrokersResponse { brokers }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(broker = request.get_ref().broker_id))]
    async fn decommission_broker(
        &self,
        request: Request<pb::DecommissionBrokerRequest>,
    ) -> Result<Response<pb::DecommissionBrokerResponse>, Status> {
        let broker = BrokerId(request.into_inner().broker_id);
        self.manager.decommission_broker(broker).await?;
        Ok(Response::new(pb::DecommissionBrokerResponse {}))
    }

    #[tracing::instrument(level = "info", skip_all)]
    async fn rebalance_cluster(
        &self,
        _request: Request<pb::RebalanceClusterRequest>,
    ) -> Result<Response<pb::RebalanceClusterResponse>, Status> {
        let moves = self
            .manager
            .rebalance()
            .await?
            .into_iter()
            .map(|(topic, partition, m)| pb::ReplicaMove {
                topic: topic.to_string(),
                partition,
                from_broker_id: m.from.0,
                to_broker_id: m.to.0,
            })
            .collect();
        Ok(Response::new(pb::RebalanceClusterResponse { moves }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_cluster_status(
        &self,
        _request: Request<pb::GetClusterStatusRequest>,
    ) -> Result<Response<pb::GetClusterStatusResponse>, Status> {
        let status = self.manager.cluster_status();
        let refs = |partitions: &[(TopicName, u32)]| {
            partitions
                .iter()
                .map(|(topic, partition)| pb::PartitionRef {
                    topic: topic.to_string(),
                    partition: *partition,
                })
                .collect()
        };
        Ok(Response::new(pb::GetClusterStatusResponse {
            managers: status
                .managers
                .iter()
                .map(|m| pb::ClusterManagerMember {
                    node_id: m.node_id,
                    address: m.address.clone(),
                    voter: m.voter,
                })
                .collect(),
            manager_leader_id: status.manager_leader,
            brokers: status.brokers.iter().map(broker_status).collect(),
            topics: status.topics as u32,
            partitions: status.partitions as u32,
            under_replicated: refs(&status.under_replicated),
            offline: refs(&status.offline),
        }))
    }
}

#[tonic::async_trait]
impl Metadata for ClusterManagerService {
    #[tracing::instrument(level = "debug", skip_all, fields(topics = ?request.get_ref().topics))]
    async fn get_metadata(
        &self,
        request: Request<pb::GetMetadataRequest>,
    ) -> Result<Response<pb::GetMetadataResponse>, Status> {
        let names = request
            .into_inner()
            .topics
            .iter()
            .enumerate()
            .map(|(i, name)| topic_name(&format!("topics[{i}]"), name))
            .collect::<Result<Vec<_>, _>>()?;
        let (brokers, topics) = self.manager.metadata(&names)?;
        Ok(Response::new(pb::GetMetadataResponse {
            brokers: brokers.iter().map(broker_info).collect(),
            topics: topics
                .iter()
                .map(|view| pb::TopicMetadata {
                    name: view.topic.name.to_string(),
                    partitions: view
                        .topic
                        .partitions
                        .iter()
                        .zip(&view.partitions)
                        .map(|(record, live)| pb::PartitionMetadata {
                            partition: record.partition,
                            leader_id: live.leader.map(|b| b.0),
                            replica_ids: record.replicas.iter().map(|r| r.broker.0).collect(),
                        })
                        .collect(),
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl ClusterManagerInternal for ClusterManagerService {
    #[tracing::instrument(level = "info", skip_all, fields(broker = request.get_ref().broker_id))]
    async fn register_broker(
        &self,
        request: Request<ipb::RegisterBrokerRequest>,
    ) -> Result<Response<ipb::RegisterBrokerResponse>, Status> {
        let request = request.into_inner();
        if request.address.is_empty() {
            return Err(CmError::invalid("address", "must not be empty").into());
        }
        self.manager
            .register_broker(BrokerRecord {
                id: BrokerId(request.broker_id),
                address: request.address,
                rack: request.rack.filter(|r| !r.is_empty()),
                draining: false,
            })
            .await?;
        Ok(Response::new(ipb::RegisterBrokerResponse {}))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(broker = request.get_ref().broker_id))]
    async fn broker_heartbeat(
        &self,
        request: Request<ipb::BrokerHeartbeatRequest>,
    ) -> Result<Response<ipb::BrokerHeartbeatResponse>, Status> {
        let request = request.into_inner();
        let reports = request.replicas.iter().map(report_from_proto).collect();
        self.manager
            .heartbeat(BrokerId(request.broker_id), reports)?;
        Ok(Response::new(ipb::BrokerHeartbeatResponse {}))
    }
}

fn broker_info(view: &BrokerView) -> pb::BrokerInfo {
    pb::BrokerInfo {
        broker_id: view.broker.id.0,
        address: view.broker.address.clone(),
        rack: view.broker.rack.clone(),
        alive: view.alive,
    }
}

fn broker_status(view: &BrokerView) -> pb::BrokerStatus {
    pb::BrokerStatus {
        broker: Some(broker_info(view)),
        replicas: view.replicas as u32,
        leaders: view.leaders as u32,
        last_heartbeat_ms_ago: view.last_heartbeat.map(|d| d.as_millis() as u64),
        draining: view.broker.draining,
    }
}

fn describe(view: &TopicView, brokers: &[BrokerView]) -> pb::TopicDescription {
    let address = |id: BrokerId| {
        brokers
            .iter()
            .find(|b| b.broker.id == id)
            .map(|b| b.broker.address.clone())
            .unwrap_or_default()
    };
    let topic = &view.topic;
    pb::TopicDescription {
        name: topic.name.to_string(),
        topic_id: topic.topic_id.clone(),
        replication_factor: topic.replication_factor,
        configs: topic.configs.clone().into_iter().collect(),
        created_at_ms: topic.created_at_ms,
        partitions: topic
            .partitions
            .iter()
            .zip(&view.partitions)
            .map(|(record, live)| pb::PartitionDescription {
                partition: record.partition,
                leader_id: live.leader.map(|b| b.0),
                high_watermark: live.high_watermark,
                log_start_offset: live.log_start_offset,
                group_id: record.group.0,
                replicas: record
                    .replicas
                    .iter()
                    .zip(&live.replicas)
                    .map(|(replica, (in_sync, lag))| pb::ReplicaDescription {
                        broker_id: replica.broker.0,
                        address: address(replica.broker),
                        in_sync: *in_sync,
                        lag_entries: *lag,
                    })
                    .collect(),
            })
            .collect(),
    }
}

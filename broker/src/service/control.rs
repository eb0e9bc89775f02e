//! `mq.v1.Admin`, `mq.v1.Metadata`, `mq.v1.ConsumerGroups` and `mq.v1.Queues` on a broker of a cluster: each
//! call is passed to the cluster-manager nodes (following the leader of the cluster manager, or
//! of the consumer manager), so clients can bootstrap from any broker.

use std::future::Future;

use mq_proto::v1 as pb;
use mq_proto::v1::admin_client::AdminClient;
use mq_proto::v1::admin_server::{Admin, AdminServer};
use mq_proto::v1::consumer_groups_client::ConsumerGroupsClient;
use mq_proto::v1::consumer_groups_server::{ConsumerGroups, ConsumerGroupsServer};
use mq_proto::v1::metadata_client::MetadataClient;
use mq_proto::v1::metadata_server::{Metadata, MetadataServer};
use mq_proto::v1::queues_client::QueuesClient;
use mq_proto::v1::queues_server::{Queues, QueuesServer};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::cluster_link::{CONTROL_TIMEOUT, ClusterLink};

#[derive(Debug, Clone)]
pub struct ControlForwarder {
    link: ClusterLink,
}

impl ControlForwarder {
    pub fn new(link: ClusterLink) -> Self {
        Self { link }
    }

    pub fn admin_server(&self) -> AdminServer<Self> {
        AdminServer::new(self.clone())
    }

    pub fn metadata_server(&self) -> MetadataServer<Self> {
        MetadataServer::new(self.clone())
    }

    pub fn groups_server(&self) -> ConsumerGroupsServer<Self> {
        ConsumerGroupsServer::new(self.clone())
    }

    pub fn queues_server(&self) -> QueuesServer<Self> {
        QueuesServer::new(self.clone())
    }

    async fn forward<Q, T, F, Fut>(
        &self,
        request: Request<Q>,
        call: F,
    ) -> Result<Response<T>, Status>
    where
        Q: Clone,
        F: Fn(Channel, Q) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.forward_within(CONTROL_TIMEOUT, request, call).await
    }

    async fn forward_within<Q, T, F, Fut>(
        &self,
        timeout: std::time::Duration,
        request: Request<Q>,
        call: F,
    ) -> Result<Response<T>, Status>
    where
        Q: Clone,
        F: Fn(Channel, Q) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let request = request.into_inner();
        let reply = self
            .link
            .call(timeout, |channel| call(channel, request.clone()))
            .await?;
        Ok(Response::new(reply.into_inner()))
    }
}

#[tonic::async_trait]
impl Admin for ControlForwarder {
    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        self.forward(request, |channel, request| async move {
            AdminClient::new(channel).create_topic(request).await
        })
        .await
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        self.forward(request, |channel, request| async move {
            AdminClient::new(channel).delete_topic(request).await
        })
        .await
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        self.forward(request, |channel, request| async move {
            AdminClient::new(channel).list_topics(request).await
        })
        .await
    }

    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::DescribeTopicResponse>, Status> {
        self.forward(request, |channel, request| async move {
            AdminClient::new(channel).describe_topic(request).await
        })
        .await
    }

    async fn list_brokers(
        &self,
        request: Request<pb::ListBrokersRequest>,
    ) -> Result<Response<pb::ListBrokersResponse>, Status> {
        self.forward(request, |channel, request| async move {
            AdminClient::new(channel).list_brokers(request).await
        })
        .await
    }

    async fn decommission_broker(
        &self,
        request: Request<pb::DecommissionBrokerRequest>,
    ) -> Result<Response<pb::DecommissionBrokerResponse>, Status> {
        self.forward(request, |channel, request| async move {
            AdminClient::new(channel).decommission_broker(request).await
        })
        .await
    }

    async fn rebalance_cluster(
        &self,
        request: Request<pb::RebalanceClusterRequest>,
    ) -> Result<Response<pb::RebalanceClusterResponse>, Status> {
        self.forward(request, |channel, request| async move {
            AdminClient::new(channel).rebalance_cluster(request).await
        })
        .await
    }

    async fn get_cluster_status(
        &self,
        request: Request<pb::GetClusterStatusRequest>,
    ) -> Result<Response<pb::GetClusterStatusResponse>, Status> {
        self.forward(request, |channel, request| async move {
            AdminClient::new(channel).get_cluster_status(request).await
        })
        .await
    }
}

#[tonic::async_trait]
impl Metadata for ControlForwarder {
    async fn get_metadata(
        &self,
        request: Request<pb::GetMetadataRequest>,
    ) -> Result<Response<pb::GetMetadataResponse>, Status> {
        self.forward(request, |channel, request| async move {
            MetadataClient::new(channel).get_metadata(request).await
        })
        .await
    }
}

/// Forwards one `ConsumerGroups` method.
macro_rules! forward_groups {
    ($($method:ident($request:ty) -> $response:ty;)*) => {
        #[tonic::async_trait]
        impl ConsumerGroups for ControlForwarder {
            $(
                async fn $method(
                    &self,
                    request: Request<$request>,
                ) -> Result<Response<$response>, Status> {
                    self.forward(request, |channel, request| async move {
                        ConsumerGroupsClient::new(channel).$method(request).await
                    })
                    .await
                }
            )*
        }
    };
}

forward_groups! {
    heartbeat(pb::GroupHeartbeatRequest) -> pb::GroupHeartbeatResponse;
    commit_offsets(pb::CommitOffsetsRequest) -> pb::CommitOffsetsResponse;
    fetch_offsets(pb::FetchOffsetsRequest) -> pb::FetchOffsetsResponse;
    list_groups(pb::ListGroupsRequest) -> pb::ListGroupsResponse;
    describe_group(pb::DescribeGroupRequest) -> pb::DescribeGroupResponse;
    reset_offsets(pb::ResetOffsetsRequest) -> pb::ResetOffsetsResponse;
    delete_group(pb::DeleteGroupRequest) -> pb::DeleteGroupResponse;
}

/// Forwards one `Queues` method.
macro_rules! forward_queues {
    ($($method:ident($request:ty) -> $response:ty;)*) => {
        #[tonic::async_trait]
        impl Queues for ControlForwarder {
            $(
                async fn $method(
                    &self,
                    request: Request<$request>,
                ) -> Result<Response<$response>, Status> {
                    self.forward(request, |channel, request| async move {
                        QueuesClient::new(channel).$method(request).await
                    })
                    .await
                }
            )*

            async fn receive(
                &self,
                request: Request<pb::ReceiveRequest>,
            ) -> Result<Response<pb::ReceiveResponse>, Status> {
                // A long poll: the call may take its wait on top of the usual time.
                let wait = std::time::Duration::from_millis(u64::from(request.get_ref().max_wait_ms));
                self.forward_within(CONTROL_TIMEOUT + wait, request, |channel, request| async move {
                    QueuesClient::new(channel).receive(request).await
                })
                .await
            }
        }
    };
}

forward_queues! {
    create_queue(pb::CreateQueueRequest) -> pb::CreateQueueResponse;
    delete_queue(pb::DeleteQueueRequest) -> pb::DeleteQueueResponse;
    list_queues(pb::ListQueuesRequest) -> pb::ListQueuesResponse;
    describe_queue(pb::DescribeQueueRequest) -> pb::DescribeQueueResponse;
    ack(pb::AckRequest) -> pb::AckResponse;
    nack(pb::NackRequest) -> pb::NackResponse;
    extend_leases(pb::ExtendLeasesRequest) -> pb::ExtendLeasesResponse;
}

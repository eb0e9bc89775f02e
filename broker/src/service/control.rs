//! `mq.v1.Admin`, `mq.v1.Metadata`, `mq.v1.ConsumerGroups` and `mq.v1.Queues` on a broker of a cluster: each
//! call is passed to the cluster-manager nodes (following the leader of the cluster manager, or
//! of the consumer manager), so clients can bootstrap from any broker.

use std::future::Future;
use std::time::Duration;

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

    /// Passes one call to the cluster-manager nodes, each attempt bounded by `timeout`.
    async fn forward<Q, T, F, Fut>(
        &self,
        timeout: Duration,
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

/// Implements `$service` for [`ControlForwarder`]: every method passes its request as it is
/// through `$client`, within [`CONTROL_TIMEOUT`] (plus what `$extra` adds for that request).
macro_rules! forward {
    ($service:ident, $client:ident, {
        $($method:ident($request:ty) -> $response:ty $(, plus $extra:ident)?;)*
    }) => {
        #[tonic::async_trait]
        impl $service for ControlForwarder {
            $(
                #[tracing::instrument(level = "debug", skip_all, name = "forward", fields(method = stringify!($method)))]
                async fn $method(
                    &self,
                    request: Request<$request>,
                ) -> Result<Response<$response>, Status> {
                    let timeout = CONTROL_TIMEOUT $(+ $extra(request.get_ref()))?;
                    self.forward(timeout, request, |channel, request| async move {
                        $client::new(channel).$method(request).await
                    })
                    .await
                }
            )*
        }
    };
}

forward!(Admin, AdminClient, {
    create_topic(pb::CreateTopicRequest) -> pb::CreateTopicResponse;
    delete_topic(pb::DeleteTopicRequest) -> pb::DeleteTopicResponse;
    list_topics(pb::ListTopicsRequest) -> pb::ListTopicsResponse;
    describe_topic(pb::DescribeTopicRequest) -> pb::DescribeTopicResponse;
    list_brokers(pb::ListBrokersRequest) -> pb::ListBrokersResponse;
    decommission_broker(pb::DecommissionBrokerRequest) -> pb::DecommissionBrokerResponse;
    rebalance_cluster(pb::RebalanceClusterRequest) -> pb::RebalanceClusterResponse;
    get_cluster_status(pb::GetClusterStatusRequest) -> pb::GetClusterStatusResponse;
});

forward!(Metadata, MetadataClient, {
    get_metadata(pb::GetMetadataRequest) -> pb::GetMetadataResponse;
});

forward!(ConsumerGroups, ConsumerGroupsClient, {
    heartbeat(pb::GroupHeartbeatRequest) -> pb::GroupHeartbeatResponse;
    commit_offsets(pb::CommitOffsetsRequest) -> pb::CommitOffsetsResponse;
    fetch_offsets(pb::FetchOffsetsRequest) -> pb::FetchOffsetsResponse;
    list_groups(pb::ListGroupsRequest) -> pb::ListGroupsResponse;
    describe_group(pb::DescribeGroupRequest) -> pb::DescribeGroupResponse;
    reset_offsets(pb::ResetOffsetsRequest) -> pb::ResetOffsetsResponse;
    delete_group(pb::DeleteGroupRequest) -> pb::DeleteGroupResponse;
});

forward!(Queues, QueuesClient, {
    create_queue(pb::CreateQueueRequest) -> pb::CreateQueueResponse;
    delete_queue(pb::DeleteQueueRequest) -> pb::DeleteQueueResponse;
    list_queues(pb::ListQueuesRequest) -> pb::ListQueuesResponse;
    describe_queue(pb::DescribeQueueRequest) -> pb::DescribeQueueResponse;
    receive(pb::ReceiveRequest) -> pb::ReceiveResponse, plus long_poll_wait;
    ack(pb::AckRequest) -> pb::AckResponse;
    nack(pb::NackRequest) -> pb::NackResponse;
    extend_leases(pb::ExtendLeasesRequest) -> pb::ExtendLeasesResponse;
});

/// A long poll may take its wait on top of the usual time.
fn long_poll_wait(request: &pb::ReceiveRequest) -> Duration {
    Duration::from_millis(u64::from(request.max_wait_ms))
}

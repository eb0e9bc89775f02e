//! Cluster administration (`mq.v1.Admin`): topics, brokers, cluster status, draining and
//! rebalancing; what `mqctl` uses. Calls go to the cluster manager like every control call.

use mq_common::error::{ApiError, ErrorCode};
use mq_proto::v1 as pb;
use mq_proto::v1::admin_client::AdminClient;

use crate::routing::{repeatable, reroutable};
use crate::types::{
    BrokerStatus, ClusterStatus, NewTopic, ReplicaMove, TopicDescription, TopicSummary,
    broker_status_from_proto, cluster_status_from_proto, description_from_proto,
};
use crate::{Client, ClientError};

impl Client {
    /// Creates a topic. When a connection broke during an attempt and a retry finds the topic
    /// existing exactly as asked, the lost attempt created it: that is a success, not
    /// `TOPIC_ALREADY_EXISTS`.
    pub async fn create_topic(
        &self,
        name: &str,
        topic: NewTopic,
    ) -> Result<TopicDescription, ClientError> {
        let request = pb::CreateTopicRequest {
            name: name.to_owned(),
            partitions: topic.partitions,
            replication_factor: topic.replication_factor,
            configs: topic.configs.clone().into_iter().collect(),
        };
        let (outcome, maybe_applied) = self
            .control_change(|channel| {
                let request = request.clone();
                async move { AdminClient::new(channel).create_topic(request).await }
            })
            .await;
        self.forget_topic(name);
        match outcome {
            Ok(response) => response
                .into_inner()
                .topic
                .map(description_from_proto)
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::Internal, "empty create topic response").into()
                }),
            Err(error) if maybe_applied && error.code() == ErrorCode::TopicAlreadyExists => {
                let existing = self.describe_topic(name).await?;
                if topic.describes(&existing) {
                    Ok(existing)
                } else {
                    Err(error)
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Deletes a topic. When a connection broke during an attempt and a retry finds no such
    /// topic, the lost attempt deleted it: that is a success, not `TOPIC_NOT_FOUND`.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let request = pb::DeleteTopicRequest {
            name: name.to_owned(),
        };
        let (outcome, maybe_applied) = self
            .control_change(|channel| {
                let request = request.clone();
                async move { AdminClient::new(channel).delete_topic(request).await }
            })
            .await;
        self.forget_topic(name);
        match outcome {
            Ok(_) => Ok(()),
            Err(error) if maybe_applied && error.code() == ErrorCode::TopicNotFound => Ok(()),
            Err(error) => Err(error),
        }
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>, ClientError> {
        let response = self
            .control(repeatable, |channel| async move {
                AdminClient::new(channel)
                    .list_topics(pb::ListTopicsRequest {})
                    .await
            })
            .await?
            .into_inner();
        Ok(response
            .topics
            .into_iter()
            .map(|t| TopicSummary {
                name: t.name,
                partitions: t.partitions,
                replication_factor: t.replication_factor,
            })
            .collect())
    }

    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClientError> {
        let request = pb::DescribeTopicRequest {
            name: name.to_owned(),
        };
        let response = self
            .control(repeatable, |channel| {
                let request = request.clone();
                async move { AdminClient::new(channel).describe_topic(request).await }
            })
            .await?
            .into_inner();
        response.topic.map(description_from_proto).ok_or_else(|| {
            ApiError::new(ErrorCode::Internal, "empty describe topic response").into()
        })
    }

    /// Every registered broker with its state and load.
    pub async fn list_brokers(&self) -> Result<Vec<BrokerStatus>, ClientError> {
        let response = self
            .control(repeatable, |channel| async move {
                AdminClient::new(channel)
                    .list_brokers(pb::ListBrokersRequest {})
                    .await
            })
            .await?
            .into_inner();
        Ok(response
            .brokers
            .into_iter()
            .map(broker_status_from_proto)
            .collect())
    }

    /// Cluster-manager members and leader, brokers, and partitions that need attention.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        let response = self
            .control(repeatable, |channel| async move {
                AdminClient::new(channel)
                    .get_cluster_status(pb::GetClusterStatusRequest {})
                    .await
            })
            .await?
            .into_inner();
        Ok(cluster_status_from_proto(response))
    }

    /// Starts draining a broker: its replicas move to the other live brokers.
    pub async fn decommission_broker(&self, broker_id: u32) -> Result<(), ClientError> {
        self.control(reroutable, |channel| async move {
            AdminClient::new(channel)
                .decommission_broker(pb::DecommissionBrokerRequest { broker_id })
                .await
        })
        .await?;
        Ok(())
    }

    /// Evens out replicas over the live brokers; returns the moves decided.
    pub async fn rebalance(&self) -> Result<Vec<ReplicaMove>, ClientError> {
        let response = self
            .control(reroutable, |channel| async move {
                AdminClient::new(channel)
                    .rebalance_cluster(pb::RebalanceClusterRequest {})
                    .await
            })
            .await?
            .into_inner();
        Ok(response
            .moves
            .into_iter()
            .map(|m| ReplicaMove {
                topic: m.topic,
                partition: m.partition,
                from_broker_id: m.from_broker_id,
                to_broker_id: m.to_broker_id,
            })
            .collect())
    }
}

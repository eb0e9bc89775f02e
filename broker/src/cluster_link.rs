//! The broker's side of the control plane: registering with the cluster manager, heartbeating
//! with the state of hosted replicas, and asking it about topics this broker does not host.
//! Calls go to the cluster manager's leader through `mq_common::control::LeaderFollower`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mq_common::control::{CallPolicy, LeaderFollower};
use mq_common::error::{ApiError, ErrorCode};
use mq_common::ids::BrokerId;
use mq_proto::internal as ipb;
use mq_proto::internal::cluster_manager_internal_client::ClusterManagerInternalClient;
use mq_proto::v1 as pb;
use mq_proto::v1::metadata_client::MetadataClient;
use mq_raft::transport::Peers;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::partition::ReplicaStatus;
use crate::replicas::Replicas;

/// Longest wait for one cluster-manager node to answer a control call (creating a topic
/// waits for its partitions to elect leaders).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for one cluster-manager node to take a heartbeat.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// How this broker reaches the cluster manager.
#[derive(Debug, Clone)]
pub struct ClusterLink {
    /// The cluster-manager nodes, and which answered last.
    managers: Arc<LeaderFollower>,
    peers: Arc<Peers>,
}

/// Who this broker is, as registered.
#[derive(Debug, Clone)]
pub struct BrokerIdentity {
    pub broker_id: u32,
    pub address: String,
    pub rack: Option<String>,
}

impl ClusterLink {
    pub fn new(addresses: Vec<String>, peers: Arc<Peers>) -> Self {
        Self {
            managers: Arc::new(LeaderFollower::new(addresses)),
            peers,
        }
    }

    /// Calls `call` on cluster-manager nodes until one answers (each attempt bounded by
    /// `timeout`), starting with the one that answered last; follows not-leader hints. Only
    /// not-leader and unavailable answers move on to the next node: any other refusal is the
    /// answer (a node that refuses bad input would refuse it everywhere). Each node is tried
    /// once (see [`CallPolicy::one_pass`]): callers retry on their own.
    pub async fn call<T, F, Fut>(&self, timeout: Duration, mut call: F) -> Result<T, ApiError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let policy = CallPolicy::one_pass(elsewhere, timeout);
        self.managers
            .call(&policy, |address| {
                let attempt = match self.peers.channel(address) {
                    Ok(channel) => Ok(call(channel)),
                    Err(err) => Err(ApiError::new(
                        ErrorCode::Unavailable,
                        format!("{address}: {err}"),
                    )),
                };
                async move {
                    attempt?
                        .await
                        .map_err(|status| ApiError::from_status(&status))
                }
            })
            .await
    }

    pub async fn register(&self, me: &BrokerIdentity) -> Result<(), ApiError> {
        let request = ipb::RegisterBrokerRequest {
            broker_id: me.broker_id,
            address: me.address.clone(),
            rack: me.rack.clone(),
        };
        self.call(CONTROL_TIMEOUT, |channel| {
            let request = request.clone();
            async move {
                ClusterManagerInternalClient::new(channel)
                    .register_broker(request)
                    .await
                    .map(|_| ())
            }
        })
        .await
    }

    /// Sends a heartbeat to every cluster-manager node at once: the leader acts on it, the
    /// others keep it so that a new leader starts knowing which brokers are alive. Succeeds
    /// when any node took it.
    pub async fn heartbeat(
        &self,
        broker_id: u32,
        replicas: Vec<ipb::ReplicaStatus>,
    ) -> Result<(), ApiError> {
        let request = ipb::BrokerHeartbeatRequest {
            broker_id,
            replicas,
        };
        let sends = self.managers.addresses().iter().map(|address| {
            let request = request.clone();
            let channel = self.peers.channel(address);
            async move {
                let channel = channel
                    .map_err(|err| ApiError::new(ErrorCode::Unavailable, err.to_string()))?;
                let mut client = ClusterManagerInternalClient::new(channel);
                match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.broker_heartbeat(request))
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(status)) => Err(ApiError::from_status(&status)),
                    Err(_) => Err(ApiError::new(
                        ErrorCode::Unavailable,
                        format!("{address}: no answer within {HEARTBEAT_TIMEOUT:?}"),
                    )),
                }
            }
        });
        let outcomes = futures::future::join_all(sends).await;
        if outcomes.iter().any(Result::is_ok) {
            return Ok(());
        }
        Err(outcomes
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| {
                ApiError::new(
                    ErrorCode::Unavailable,
                    "no cluster-manager address configured",
                )
            }))
    }

    /// Where `topic`'s partitions are led, per the cluster manager; `None` when the topic
    /// does not exist.
    pub async fn topic(&self, topic: &str) -> Result<Option<TopicPlacement>, ApiError> {
        let request = pb::GetMetadataRequest {
            topics: vec![topic.to_owned()],
        };
        let outcome = self
            .call(CONTROL_TIMEOUT, |channel| {
                let request = request.clone();
                async move {
                    MetadataClient::new(channel)
                        .get_metadata(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await;
        match outcome {
            Ok(metadata) => Ok(Some(placement_from_proto(&metadata))),
            Err(err) if err.code == ErrorCode::TopicNotFound => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// Refusals that another cluster-manager node may not give: this one is not the leader, knows
/// none, or cannot be reached.
fn elsewhere(error: &ApiError) -> bool {
    matches!(
        error.code,
        ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable | ErrorCode::Unavailable
    )
}

/// Where a topic's partitions are led, as the cluster manager knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlacement {
    pub partition_count: u32,
    /// The leader of each partition whose leader and its address the cluster manager knows.
    pub leaders: BTreeMap<u32, PartitionLeader>,
}

/// The broker leading a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLeader {
    pub broker: BrokerId,
    pub address: String,
}

/// The placement of the one topic a metadata answer for one topic describes.
fn placement_from_proto(metadata: &pb::GetMetadataResponse) -> TopicPlacement {
    let Some(topic) = metadata.topics.first() else {
        return TopicPlacement {
            partition_count: 0,
            leaders: BTreeMap::new(),
        };
    };
    let mut leaders = BTreeMap::new();
    for partition in &topic.partitions {
        let Some(leader_id) = partition.leader_id else {
            continue;
        };
        if let Some(broker) = metadata.brokers.iter().find(|b| b.broker_id == leader_id) {
            leaders
                .entry(partition.partition)
                .or_insert_with(|| PartitionLeader {
                    broker: BrokerId(leader_id),
                    address: broker.address.clone(),
                });
        }
    }
    TopicPlacement {
        partition_count: topic.partitions.len() as u32,
        leaders,
    }
}

/// The wire form of a replica's status.
pub fn status_to_proto(
    partition: &crate::partition::Partition,
    status: ReplicaStatus,
) -> ipb::ReplicaStatus {
    let spec = partition.spec();
    ipb::ReplicaStatus {
        group_id: spec.group.0,
        topic: spec.topic.to_string(),
        partition: spec.partition.0,
        node_id: status.node_id,
        leader_node_id: status.leader_node_id,
        high_watermark: status.high_watermark,
        log_start_offset: status.log_start_offset,
        last_log_index: status.last_log_index,
        followers: status
            .followers
            .into_iter()
            .map(|(node_id, matched_index)| ipb::FollowerProgress {
                node_id,
                matched_index,
            })
            .collect(),
        term: status.term,
        voters: status.voters,
        learners: status.learners,
    }
}

/// Registers this broker, then heartbeats every `interval` and whenever a hosted replica's
/// leader changes, until `shutdown`. `registered` turns true after the first registration.
pub async fn run_membership(
    link: ClusterLink,
    me: BrokerIdentity,
    replicas: Arc<Replicas>,
    interval: Duration,
    registered: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match link.register(&me).await {
            Ok(()) => {
                tracing::info!(broker = me.broker_id, address = %me.address, "registered with the cluster manager");
                registered.send_replace(true);
                break;
            }
            Err(err) => {
                tracing::warn!(%err, retry_in = ?backoff, "cannot register with the cluster manager yet");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    let leader_changed = replicas.leader_changed();
    loop {
        let statuses = replicas
            .all()
            .iter()
            .map(|p| status_to_proto(p, p.status()))
            .collect();
        if let Err(err) = link.heartbeat(me.broker_id, statuses).await {
            tracing::warn!(%err, "heartbeat to the cluster manager failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = leader_changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_names_the_leaders_whose_address_the_answer_gives() {
        let metadata = pb::GetMetadataResponse {
            brokers: vec![pb::BrokerInfo {
                broker_id: 2,
                address: "10.0.0.2:7070".into(),
                ..Default::default()
            }],
            topics: vec![pb::TopicMetadata {
                name: "orders".into(),
                partitions: [(0, Some(2)), (1, None), (2, Some(3))]
                    .into_iter()
                    .map(|(partition, leader_id)| pb::PartitionMetadata {
                        partition,
                        leader_id,
                        replica_ids: vec![2, 3],
                    })
                    .collect(),
            }],
        };
        let placement = placement_from_proto(&metadata);
        assert_eq!(placement.partition_count, 3);
        assert_eq!(
            placement.leaders.into_iter().collect::<Vec<_>>(),
            [(
                0,
                PartitionLeader {
                    broker: BrokerId(2),
                    address: "10.0.0.2:7070".into(),
                }
            )],
            "partition 1 has no leader; partition 2's leader has no known address"
        );
        let empty = placement_from_proto(&pb::GetMetadataResponse::default());
        assert_eq!(empty.partition_count, 0);
    }
}

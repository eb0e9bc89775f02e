//! The cluster manager's calls to brokers (`mq.internal.v1.ReplicaManager`): the one place
//! that builds their requests and reads their answers. Everything else in the crate speaks in
//! domain terms (records of the state, replica reports).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use mq_common::ids::{BrokerId, GroupId};
use mq_proto::internal as ipb;
use mq_proto::internal::replica_manager_client::ReplicaManagerClient;
use mq_raft::transport::Peers;
use tonic::transport::Channel;

use crate::reports::ReplicaReport;
use crate::state::{ClusterState, PartitionRecord, ReplicaRecord, TopicRecord};
use crate::topic_config::TopicConfig;

/// How long a broker has to create or remove a replica.
const REPLICA_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a broker has to report its replicas' status.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call to a broker did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    #[error("broker {broker}: {status}")]
    Refused {
        broker: BrokerId,
        status: tonic::Status,
    },
    #[error("broker {broker} at {address}: {reason}")]
    Address {
        broker: BrokerId,
        address: String,
        reason: String,
    },
    #[error("broker {broker} did not answer within {timeout:?}")]
    Timeout { broker: BrokerId, timeout: Duration },
}

/// A call to a broker under way: its request is built, it borrows nothing.
pub type Call = BoxFuture<'static, Result<(), CallError>>;

/// Calls brokers over the node's shared peer channels. Each call is built at once from the
/// state it is given (addresses, specs) and returned as a future that borrows nothing, so no
/// lock is held while it runs.
#[derive(Debug, Clone)]
pub struct BrokerClient {
    peers: Arc<Peers>,
}

impl BrokerClient {
    pub fn new(peers: Arc<Peers>) -> Self {
        Self { peers }
    }

    fn client(
        &self,
        state: &ClusterState,
        broker: BrokerId,
    ) -> Result<ReplicaManagerClient<Channel>, CallError> {
        let address = &state
            .brokers
            .get(&broker)
            .ok_or(CallError::UnknownBroker(broker))?
            .address;
        let channel = self
            .peers
            .channel(address)
            .map_err(|err| CallError::Address {
                broker,
                address: address.clone(),
                reason: err.to_string(),
            })?;
        Ok(ReplicaManagerClient::new(channel))
    }

    /// Asks `replica`'s broker to host it. The request is built from `state` at once; the
    /// returned call borrows nothing.
    pub fn create_replica(
        &self,
        state: &ClusterState,
        topic: &TopicRecord,
        partition: &PartitionRecord,
        replica: &ReplicaRecord,
    ) -> Call {
        let broker = replica.broker;
        let client = self.client(state, broker);
        let request = ipb::CreateReplicaRequest {
            replica: Some(replica_spec(state, topic, partition, replica)),
        };
        Box::pin(async move {
            let mut client = client?;
            bounded(broker, REPLICA_CALL_TIMEOUT, client.create_replica(request)).await
        })
    }

    /// Asks `broker` to drop its replica of `group` and its data.
    pub fn remove_replica(&self, state: &ClusterState, broker: BrokerId, group: GroupId) -> Call {
        let client = self.client(state, broker);
        let request = ipb::RemoveReplicaRequest { group_id: group.0 };
        Box::pin(async move {
            let mut client = client?;
            bounded(broker, REPLICA_CALL_TIMEOUT, client.remove_replica(request)).await
        })
    }

    /// Asks the group's leader, on `leader`, to make `members` the voters. Waits as long as
    /// the leader takes (new members catch up first).
    pub fn change_membership(
        &self,
        state: &ClusterState,
        leader: BrokerId,
        group: GroupId,
        members: &[ReplicaRecord],
    ) -> Call {
        let client = self.client(state, leader);
        let request = ipb::ChangeMembershipRequest {
            group_id: group.0,
            members: raft_members(state, members),
        };
        Box::pin(async move {
            client?
                .change_membership(request)
                .await
                .map(drop)
                .map_err(|status| CallError::Refused {
                    broker: leader,
                    status,
                })
        })
    }

    /// Asks the group's leader, on `leader`, to hand leadership to replica `to`.
    pub fn transfer_leader(
        &self,
        state: &ClusterState,
        leader: BrokerId,
        group: GroupId,
        to: u64,
    ) -> Call {
        let client = self.client(state, leader);
        let request = ipb::TransferLeaderRequest {
            group_id: group.0,
            to_node_id: to,
        };
        Box::pin(async move {
            client?
                .transfer_leader(request)
                .await
                .map(drop)
                .map_err(|status| CallError::Refused {
                    broker: leader,
                    status,
                })
        })
    }

    /// `broker`'s fresh report of its replicas of `groups`.
    pub fn replica_status(
        &self,
        state: &ClusterState,
        broker: BrokerId,
        groups: Vec<GroupId>,
    ) -> BoxFuture<'static, Result<Vec<ReplicaReport>, CallError>> {
        let client = self.client(state, broker);
        let request = ipb::GetReplicaStatusRequest {
            group_ids: groups.into_iter().map(|g| g.0).collect(),
        };
        Box::pin(async move {
            let mut client = client?;
            let reply = tokio::time::timeout(STATUS_TIMEOUT, client.get_replica_status(request))
                .await
                .map_err(|_| CallError::Timeout {
                    broker,
                    timeout: STATUS_TIMEOUT,
                })?
                .map_err(|status| CallError::Refused { broker, status })?;
            Ok(reply
                .into_inner()
                .replicas
                .iter()
                .map(report_from_proto)
                .collect())
        })
    }
}

/// `call`, at most `timeout` long.
async fn bounded<T>(
    broker: BrokerId,
    timeout: Duration,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<(), CallError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(CallError::Refused { broker, status }),
        Err(_) => Err(CallError::Timeout { broker, timeout }),
    }
}

/// The wire form of `replicas` as Raft members, with their brokers' addresses.
fn raft_members(state: &ClusterState, replicas: &[ReplicaRecord]) -> Vec<ipb::RaftMember> {
    replicas
        .iter()
        .map(|r| ipb::RaftMember {
            node_id: r.node_id,
            broker_id: r.broker.0,
            address: state
                .brokers
                .get(&r.broker)
                .map(|b| b.address.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// The spec a broker needs to host `replica`.
fn replica_spec(
    state: &ClusterState,
    topic: &TopicRecord,
    partition: &PartitionRecord,
    replica: &ReplicaRecord,
) -> ipb::ReplicaSpec {
    let bootstrap: Vec<ReplicaRecord> = partition
        .replicas
        .iter()
        .filter(|r| r.bootstrap)
        .cloned()
        .collect();
    // Stored configs were validated when the topic was created.
    let config = TopicConfig::parse(&topic.configs).unwrap_or_default();
    ipb::ReplicaSpec {
        group_id: partition.group.0,
        topic: topic.name.to_string(),
        topic_id: topic.topic_id.clone(),
        partition: partition.partition,
        node_id: replica.node_id,
        members: raft_members(state, &bootstrap),
        bootstrap: replica.bootstrap,
        max_message_bytes: config.max_message_bytes,
        retention_ms: config.enforced_retention_ms().map_or(-1, |v| v as i64),
        retention_bytes: config.enforced_retention_bytes().map_or(-1, |v| v as i64),
        compact: config.cleanup.compact,
        delete_retention_ms: config.delete_retention_ms as i64,
        partition_count: topic.partitions.len() as u32,
    }
}

/// A broker's report of one replica, as the manager keeps it.
pub fn report_from_proto(status: &ipb::ReplicaStatus) -> ReplicaReport {
    ReplicaReport {
        group: GroupId(status.group_id),
        node_id: status.node_id,
        leader_node_id: status.leader_node_id,
        term: status.term,
        high_watermark: status.high_watermark,
        log_start_offset: status.log_start_offset,
        last_log_index: status.last_log_index,
        followers: status
            .followers
            .iter()
            .map(|f| (f.node_id, f.matched_index))
            .collect(),
        voters: status.voters.clone(),
        learners: status.learners.clone(),
    }
}

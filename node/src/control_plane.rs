//! The control plane on a node: the cluster manager and, on the same voters with the same
//! timers, the consumer manager (each its own Raft group on the node's store). A
//! cluster-manager node runs it, and so does a standalone broker.

use std::sync::Arc;

use mq_cluster_manager::{
    ClusterManager, ClusterManagerConfig, ClusterManagerContext, ClusterManagerService,
};
use mq_consumer_manager::{
    ConsumerGroupsService, ConsumerManager, ConsumerManagerContext, ConsumerManagerSettings,
    QueuesService,
};
use mq_raft::GroupContext;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Router;

use crate::NodeError;

/// The two managers of a control-plane node.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    pub cluster_manager: Arc<ClusterManager>,
    pub consumer_manager: Arc<ConsumerManager>,
}

/// The consumer manager's settings on a cluster-manager voter: the same node id, voters and
/// Raft timers as the cluster manager's group.
pub fn consumer_manager_settings(
    config: &ClusterManagerConfig,
) -> Result<ConsumerManagerSettings, NodeError> {
    Ok(ConsumerManagerSettings {
        node_id: config.node_id,
        voters: config.initial_voters().map_err(NodeError::Config)?,
        timings: config.raft_timings(),
    })
}

impl ControlPlane {
    /// Starts both managers' groups (initializing them on first start).
    pub async fn start(
        groups: &GroupContext,
        advertised_address: &str,
        config: &ClusterManagerConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, NodeError> {
        let cluster_manager = ClusterManager::start(
            ClusterManagerContext {
                group: groups.clone(),
                advertised_address: advertised_address.to_owned(),
            },
            config.clone(),
            shutdown.child_token(),
        )
        .await?;
        let consumer_manager = ConsumerManager::start(
            ConsumerManagerContext {
                group: groups.clone(),
                advertised_address: advertised_address.to_owned(),
            },
            consumer_manager_settings(config)?,
            shutdown.child_token(),
        )
        .await?;
        Ok(Self {
            cluster_manager,
            consumer_manager,
        })
    }

    /// Adds `Admin`, `Metadata`, `ClusterManagerInternal`, `ConsumerGroups` and `Queues`.
    pub fn serve_on(&self, router: Router) -> Router {
        let service = ClusterManagerService::new(self.cluster_manager.clone());
        router
            .add_service(service.admin_server())
            .add_service(service.metadata_server())
            .add_service(service.internal_server())
            .add_service(ConsumerGroupsService::new(self.consumer_manager.clone()).server())
            .add_service(QueuesService::new(self.consumer_manager.clone()).server())
    }

    /// Stops both managers' tasks and groups.
    pub async fn shutdown(&self) {
        self.consumer_manager.shutdown().await;
        self.cluster_manager.shutdown().await;
    }
}

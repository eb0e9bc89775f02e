//! A cluster-manager node on its own (`mq-cluster-manager`): the store, the manager's Raft
//! group, and one gRPC server with `Admin`, `Metadata`, the brokers' `ClusterManagerInternal`,
//! the Raft transport, health and reflection. [`run`] returns once the server listens.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mq_common::server::{self, ServerError};
use mq_common::shutdown::CancellationToken;
use mq_consumer_manager::{
    CgError, ConsumerGroupsService, ConsumerManager, ConsumerManagerContext, QueuesService,
};
use mq_raft::transport::{GroupRegistry, Peers};
use mq_raft::{Store, StoreError};
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;

use crate::config::ManagerNodeConfig;
use crate::error::CmError;
use crate::manager::{ClusterManager, ClusterManagerContext};
use crate::service::ClusterManagerService;

#[derive(Debug, thiserror::Error)]
pub enum ManagerNodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    ClusterManager(#[from] CmError),
    #[error(transparent)]
    ConsumerManager(#[from] CgError),
    #[error("node task failed: {0}")]
    Task(String),
}

/// A started cluster-manager node.
#[derive(Debug)]
pub struct ManagerNodeHandle {
    pub local_addr: SocketAddr,
    pub advertised_address: String,
    pub manager: Arc<ClusterManager>,
    done: JoinHandle<Result<(), ManagerNodeError>>,
}

impl ManagerNodeHandle {
    /// Waits until the node has stopped and its store is closed.
    pub async fn wait(self) -> Result<(), ManagerNodeError> {
        self.done
            .await
            .map_err(|err| ManagerNodeError::Task(err.to_string()))?
    }
}

/// Starts a cluster-manager node; it runs until `shutdown` is cancelled.
pub async fn run(
    config: ManagerNodeConfig,
    shutdown: CancellationToken,
) -> Result<ManagerNodeHandle, ManagerNodeError> {
    let store = Store::open(&config.data_dir, &config.storage)?;
    let bound = server::bind(&config.server).await?;
    let peers = Arc::new(Peers::default());
    let registry = GroupRegistry::default();
    let manager = ClusterManager::start(
        ClusterManagerContext {
            store: store.clone(),
            peers: peers.clone(),
            registry: registry.clone(),
            advertised_address: bound.advertised_address.clone(),
        },
        config.cluster_manager.clone(),
        shutdown.child_token(),
    )
    .await?;
    let consumer_manager = ConsumerManager::start(
        ConsumerManagerContext {
            store: store.clone(),
            peers,
            registry: registry.clone(),
            advertised_address: bound.advertised_address.clone(),
        },
        config
            .cluster_manager
            .consumer_manager_settings()
            .map_err(CmError::Config)?,
        shutdown.child_token(),
    )
    .await?;
    let service = ClusterManagerService::new(manager.clone());
    let (health, router) = server::standard_router(&[mq_proto::FILE_DESCRIPTOR_SET]).await?;
    let router = router
        .add_service(service.admin_server())
        .add_service(service.metadata_server())
        .add_service(service.internal_server())
        .add_service(ConsumerGroupsService::new(consumer_manager.clone()).server())
        .add_service(QueuesService::new(consumer_manager.clone()).server())
        .add_service(mq_raft::transport::server(registry));
    let served = server::serve(router, bound.listener, shutdown.clone());
    tracing::info!(address = %bound.local_addr, advertised = %bound.advertised_address, node = config.cluster_manager.node_id, "cluster manager serving");

    // SERVING once the group has a leader this node knows of.
    let serving = health.clone();
    let waiting = manager.clone();
    let stopped = shutdown.clone();
    tokio::spawn(async move {
        while waiting.leader().is_none() {
            tokio::select! {
                _ = stopped.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        serving.set_service_status("", ServingStatus::Serving).await;
        tracing::info!("ready");
    });

    let grace = config.server.shutdown_grace;
    let stopping = manager.clone();
    let done = tokio::spawn(async move {
        shutdown.cancelled().await;
        tracing::info!("shutting down");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let result = server::drain(served, grace).await;
        consumer_manager.shutdown().await;
        stopping.shutdown().await;
        drop(store);
        tracing::info!("stopped");
        Ok(result?)
    });
    Ok(ManagerNodeHandle {
        local_addr: bound.local_addr,
        advertised_address: bound.advertised_address,
        manager,
        done,
    })
}

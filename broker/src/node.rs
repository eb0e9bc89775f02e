//! A running node: the store, the broker (and in standalone mode the cluster manager), and one
//! gRPC server for all of them, with health and reflection. [`run`] returns once the server
//! listens; the returned handle reports the bound address and waits for the end.

use std::net::SocketAddr;
use std::sync::Arc;

use mq_cluster_manager::{ClusterManager, ClusterManagerContext, ClusterManagerService};
use mq_common::server::{self, ServerError};
use mq_common::shutdown::CancellationToken;
use mq_consumer_manager::{
    ConsumerGroupsService, ConsumerManager, ConsumerManagerContext, QueuesService,
};
use mq_raft::disk::DiskGuard;
use mq_raft::transport::{GroupRegistry, Peers};
use mq_raft::{Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;

use crate::broker::Broker;
use crate::cluster_link::{BrokerIdentity, ClusterLink, run_membership};
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::partition::PartitionContext;
use crate::replicas::Replicas;
use crate::service::control::ControlForwarder;
use crate::service::data::DataService;
use crate::service::replica::ReplicaService;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("invalid config: {0}")]
    Config(String),
    #[error("cluster manager: {0}")]
    ClusterManager(#[from] mq_cluster_manager::CmError),
    #[error("consumer manager: {0}")]
    ConsumerManager(#[from] mq_consumer_manager::CgError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("node task failed: {0}")]
    Task(String),
}

/// A started node.
#[derive(Debug)]
pub struct NodeHandle {
    /// The address the server is bound to.
    pub local_addr: SocketAddr,
    /// The address the node advertises.
    pub advertised_address: String,
    /// Turns true once the broker is registered and the node reports SERVING.
    pub ready: watch::Receiver<bool>,
    shutdown: CancellationToken,
    done: JoinHandle<Result<(), NodeError>>,
}

impl NodeHandle {
    /// Starts a graceful shutdown.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the node has stopped and its store is closed.
    pub async fn wait(self) -> Result<(), NodeError> {
        self.done
            .await
            .map_err(|err| NodeError::Task(err.to_string()))?
    }
}

/// Starts a node with `config`; it runs until `shutdown` is cancelled.
pub async fn run(
    config: BrokerConfig,
    shutdown: CancellationToken,
) -> Result<NodeHandle, NodeError> {
    let partition_raft = Arc::new(config.raft.partition_config().map_err(NodeError::Config)?);
    let store = Store::open(&config.node.data_dir, &config.storage)?;
    let bound = server::bind(&config.server).await?;
    let local_addr = bound.local_addr;
    let advertised_address = bound.advertised_address.clone();
    let peers = Arc::new(Peers::default());
    let registry = GroupRegistry::default();

    // Standalone: the cluster manager and the consumer manager run in this process.
    let (cluster_manager, consumer_manager) = if config.node.standalone {
        let cluster_manager = ClusterManager::start(
            ClusterManagerContext {
                store: store.clone(),
                peers: peers.clone(),
                registry: registry.clone(),
                advertised_address: advertised_address.clone(),
            },
            config.cluster_manager.clone(),
            shutdown.child_token(),
        )
        .await?;
        let consumer_manager = ConsumerManager::start(
            ConsumerManagerContext {
                store: store.clone(),
                peers: peers.clone(),
                registry: registry.clone(),
                advertised_address: advertised_address.clone(),
            },
            config
                .cluster_manager
                .consumer_manager_settings()
                .map_err(NodeError::Config)?,
            shutdown.child_token(),
        )
        .await?;
        (Some(cluster_manager), Some(consumer_manager))
    } else {
        (None, None)
    };
    let manager_addresses = if config.node.standalone {
        vec![advertised_address.clone()]
    } else if config.cluster.manager_addresses.is_empty() {
        return Err(NodeError::Config(
            "cluster.manager_addresses is empty: name the cluster manager (--cluster-manager) or run --standalone".into(),
        ));
    } else {
        config.cluster.manager_addresses.clone()
    };

    let disk = DiskGuard::watch(
        &config.node.data_dir,
        config.storage.min_free_mib,
        config.storage.disk_check_interval,
        shutdown.clone(),
    )
    .map_err(BrokerError::Io)?;
    let replicas = Arc::new(
        Replicas::open(PartitionContext {
            store: store.clone(),
            peers: peers.clone(),
            registry: registry.clone(),
            raft_config: partition_raft,
            retention_check_interval: config.retention.check_interval,
            disk: disk.clone(),
        })
        .await?,
    );
    let link = ClusterLink::new(manager_addresses, peers.clone());
    let broker = Arc::new(Broker::new(
        replicas.clone(),
        link.clone(),
        config.limits.clone(),
        disk,
        shutdown.clone(),
    ));

    let (health, router) = server::standard_router(&[mq_proto::FILE_DESCRIPTOR_SET]).await?;
    let cm_service = cluster_manager.clone().map(ClusterManagerService::new);
    // Admin and Metadata: served by the embedded cluster manager, or passed on to the cluster's.
    let forwarder = cm_service
        .is_none()
        .then(|| ControlForwarder::new(link.clone()));
    let router = router
        .add_service(DataService::server(broker))
        .add_service(ReplicaService::server(replicas.clone()))
        .add_service(mq_raft::transport::server(registry))
        .add_optional_service(cm_service.as_ref().map(ClusterManagerService::admin_server))
        .add_optional_service(
            cm_service
                .as_ref()
                .map(ClusterManagerService::metadata_server),
        )
        .add_optional_service(
            cm_service
                .as_ref()
                .map(ClusterManagerService::internal_server),
        )
        .add_optional_service(
            consumer_manager
                .clone()
                .map(|manager| ConsumerGroupsService::new(manager).server()),
        )
        .add_optional_service(
            consumer_manager
                .clone()
                .map(|manager| QueuesService::new(manager).server()),
        )
        .add_optional_service(forwarder.as_ref().map(ControlForwarder::admin_server))
        .add_optional_service(forwarder.as_ref().map(ControlForwarder::metadata_server))
        .add_optional_service(forwarder.as_ref().map(ControlForwarder::groups_server))
        .add_optional_service(forwarder.as_ref().map(ControlForwarder::queues_server));
    // The server stops after leadership was handed off, so clients are redirected meanwhile.
    let stop_serving = CancellationToken::new();
    let server = server::serve(router, bound.listener, stop_serving.clone());
    tracing::info!(address = %local_addr, advertised = %advertised_address, standalone = config.node.standalone, "serving");

    let (registered, ready) = watch::channel(false);
    let membership = tokio::spawn(run_membership(
        link,
        BrokerIdentity {
            broker_id: config.node.broker_id,
            address: advertised_address.clone(),
            rack: config.node.rack.clone(),
        },
        replicas.clone(),
        config.cluster.heartbeat_interval,
        registered,
        shutdown.clone(),
    ));
    let peer_watch = tokio::spawn(crate::peer_watch::run(
        config.cluster.peer_watch.clone(),
        replicas.clone(),
        peers.clone(),
        shutdown.clone(),
    ));
    let mut became_ready = ready.clone();
    let serving = health.clone();
    tokio::spawn(async move {
        if became_ready.wait_for(|ready| *ready).await.is_ok() {
            serving.set_service_status("", ServingStatus::Serving).await;
            tracing::info!("ready");
        }
    });

    let grace = config.server.shutdown_grace;
    let handoff = config.cluster.leadership_handoff_timeout;
    let stop = shutdown.clone();
    let done = tokio::spawn(async move {
        stop.cancelled().await;
        tracing::info!("shutting down");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        replicas.hand_off_leadership(handoff).await;
        stop_serving.cancel();
        let served = server::drain(server, grace).await;
        let _ = membership.await;
        let _ = peer_watch.await;
        replicas.shutdown().await;
        if let Some(consumer_manager) = consumer_manager {
            consumer_manager.shutdown().await;
        }
        if let Some(cluster_manager) = cluster_manager {
            cluster_manager.shutdown().await;
        }
        drop(store);
        tracing::info!("stopped");
        Ok(served?)
    });

    Ok(NodeHandle {
        local_addr,
        advertised_address,
        ready,
        shutdown,
        done,
    })
}

//! A running node: the store, the broker (and in standalone mode the cluster manager), and one
//! gRPC server for all of them, with health and reflection. [`run`] returns once the server
//! listens; the returned handle reports the bound address and waits for the end.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use mq_cluster_manager::{ClusterManager, ClusterManagerContext, ClusterManagerService};
use mq_common::shutdown::CancellationToken;
use mq_raft::transport::{GroupRegistry, Peers};
use mq_raft::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::broker::Broker;
use crate::cluster_link::{BrokerIdentity, ClusterLink, run_membership};
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::partition::PartitionContext;
use crate::replicas::Replicas;
use crate::service::data::DataService;
use crate::service::replica::ReplicaService;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Config(String),
    #[error("cluster manager: {0}")]
    ClusterManager(#[from] mq_cluster_manager::CmError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("gRPC server: {0}")]
    Server(String),
    #[error("metrics endpoint: {0}")]
    Metrics(String),
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
            .map_err(|err| NodeError::Server(format!("node task failed: {err}")))?
    }
}

/// Starts a node with `config`; it runs until `shutdown` is cancelled.
pub async fn run(
    config: BrokerConfig,
    shutdown: CancellationToken,
) -> Result<NodeHandle, NodeError> {
    let partition_raft = Arc::new(config.raft.partition_config().map_err(NodeError::Config)?);
    if let Some(address) = config.server.metrics_listen {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(address)
            .install()
            .map_err(|err| NodeError::Metrics(format!("{address}: {err}")))?;
        tracing::info!(%address, "serving Prometheus metrics at /metrics");
    }
    let store = Store::open(&config.node.data_dir, &config.storage)?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| NodeError::Bind {
            address: config.server.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| NodeError::Bind {
        address: config.server.listen,
        source,
    })?;
    let advertised_address = config.server.advertised(local_addr);
    let peers = Arc::new(Peers::default());
    let registry = GroupRegistry::default();

    let cluster_manager = if config.node.standalone {
        let context = ClusterManagerContext {
            store: store.clone(),
            peers: peers.clone(),
            registry: registry.clone(),
            advertised_address: advertised_address.clone(),
        };
        Some(
            ClusterManager::start(
                context,
                config.cluster_manager.clone(),
                shutdown.child_token(),
            )
            .await?,
        )
    } else {
        None
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

    let replicas = Arc::new(
        Replicas::open(PartitionContext {
            store: store.clone(),
            peers: peers.clone(),
            registry: registry.clone(),
            raft_config: partition_raft,
        })
        .await?,
    );
    let link = ClusterLink::new(manager_addresses, peers.clone());
    let broker = Arc::new(Broker::new(
        replicas.clone(),
        link.clone(),
        config.limits.clone(),
        shutdown.clone(),
    ));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    // grpcurl 1.8 speaks reflection v1alpha; newer tools v1: serve both.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(mq_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc.ErrorInfo, so tools can decode error details.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|err| NodeError::Server(err.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|err| NodeError::Server(err.to_string()))?;
    let cm_service = cluster_manager.clone().map(ClusterManagerService::new);
    let router = Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
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
        );
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
        if let Ok(stream) = &stream {
            // Small replies (acks) must not wait for Nagle.
            let _ = stream.set_nodelay(true);
        }
        stream
    });
    let stop_serving = shutdown.clone();
    let server = tokio::spawn(
        router
            .serve_with_incoming_shutdown(incoming, async move { stop_serving.cancelled().await }),
    );
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
    let mut became_ready = ready.clone();
    let serving = health.clone();
    tokio::spawn(async move {
        if became_ready.wait_for(|ready| *ready).await.is_ok() {
            serving.set_service_status("", ServingStatus::Serving).await;
            tracing::info!("ready");
        }
    });

    let grace = config.server.shutdown_grace;
    let stop = shutdown.clone();
    let done = tokio::spawn(async move {
        stop.cancelled().await;
        tracing::info!("shutting down");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let served = match tokio::time::timeout(grace, server).await {
            Ok(Ok(result)) => result.map_err(|err| NodeError::Server(err.to_string())),
            Ok(Err(err)) => Err(NodeError::Server(err.to_string())),
            Err(_) => {
                tracing::warn!(
                    ?grace,
                    "requests still in flight after the grace period; stopping anyway"
                );
                Ok(())
            }
        };
        let _ = membership.await;
        replicas.shutdown().await;
        if let Some(cluster_manager) = cluster_manager {
            cluster_manager.shutdown().await;
        }
        drop(store);
        tracing::info!("stopped");
        served
    });

    Ok(NodeHandle {
        local_addr,
        advertised_address,
        ready,
        shutdown,
        done,
    })
}

//! A cluster-manager node (`mq-cluster-manager`): the store, the control plane (the cluster
//! manager's and the consumer manager's Raft groups), and one gRPC server with their services,
//! the Raft transport, health and reflection. [`run`] returns once the server listens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mq_cluster_manager::{ClusterManager, ClusterManagerConfig};
use mq_raft::transport::{GroupRegistry, Peers};
use mq_raft::{GroupContext, Store, StoreOptions};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::NodeError;
use crate::control_plane::ControlPlane;
use crate::kit::server::{self, ServerConfig};

/// The cluster manager's default client port.
pub const DEFAULT_MANAGER_LISTEN: &str = "127.0.0.1:7080";

/// The `mq-cluster-manager` binary's config file; every key overridable by
/// `MQ_<SECTION>__<KEY>` and flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagerNodeConfig {
    /// Where the node keeps its data (one RocksDB).
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub storage: StoreOptions,
    pub cluster_manager: ClusterManagerConfig,
}

impl Default for ManagerNodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data-cm"),
            server: ServerConfig::new(DEFAULT_MANAGER_LISTEN.parse().expect("valid address")),
            storage: StoreOptions::default(),
            cluster_manager: ClusterManagerConfig::default(),
        }
    }
}

/// A started cluster-manager node.
#[derive(Debug)]
pub struct ManagerNodeHandle {
    pub local_addr: SocketAddr,
    pub advertised_address: String,
    pub manager: Arc<ClusterManager>,
    done: JoinHandle<Result<(), NodeError>>,
}

impl ManagerNodeHandle {
    /// Waits until the node has stopped and its store is closed.
    pub async fn wait(self) -> Result<(), NodeError> {
        self.done
            .await
            .map_err(|err| NodeError::Task(err.to_string()))?
    }
}

/// Starts a cluster-manager node; it runs until `shutdown` is cancelled.
pub async fn run(
    config: ManagerNodeConfig,
    shutdown: CancellationToken,
) -> Result<ManagerNodeHandle, NodeError> {
    let store = Store::open(&config.data_dir, &config.storage)?;
    let bound = server::bind(&config.server).await?;
    if config.server.metrics_listen.is_some() {
        crate::kit::process_metrics::spawn(store.clone(), shutdown.clone());
    }
    let groups = GroupContext {
        store: store.clone(),
        peers: Arc::new(Peers::default()),
        registry: GroupRegistry::default(),
    };
    let control_plane = ControlPlane::start(
        &groups,
        &bound.advertised_address,
        &config.cluster_manager,
        &shutdown,
    )
    .await?;
    let (health, router) = server::standard_router(&[mq_proto::FILE_DESCRIPTOR_SET]).await?;
    let router = control_plane
        .serve_on(router)
        .add_service(mq_raft::transport::server(groups.registry.clone()));
    let served = server::serve(router, bound.listener, shutdown.clone());
    tracing::info!(address = %bound.local_addr, advertised = %bound.advertised_address, node = config.cluster_manager.node_id, "cluster manager serving");

    let manager = control_plane.cluster_manager.clone();
    tokio::spawn(report_serving_once_led(
        manager.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    let grace = config.server.shutdown_grace;
    let done = tokio::spawn(async move {
        shutdown.cancelled().await;
        tracing::info!("shutting down");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let result = server::drain(served, grace).await;
        control_plane.shutdown().await;
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

/// SERVING once the group has a leader this node knows of.
async fn report_serving_once_led(
    manager: Arc<ClusterManager>,
    health: HealthReporter,
    shutdown: CancellationToken,
) {
    while manager.leader().is_none() {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    health.set_service_status("", ServingStatus::Serving).await;
    tracing::info!("ready");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deploy_example_parses() {
        let text = include_str!("../../deploy/cluster-manager.example.toml");
        let config: ManagerNodeConfig = crate::kit::config::parse_toml(text).unwrap();
        assert_eq!(config.cluster_manager.initial_voters().unwrap().len(), 3);
        config.cluster_manager.group_config().unwrap();
    }
}

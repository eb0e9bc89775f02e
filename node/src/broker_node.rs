//! A broker node (`mq-broker`): the store, the broker, in standalone mode the control plane
//! too, and one gRPC server for all of them, with health and reflection. [`run`] returns once
//! the server listens; the returned handle reports the bound address and waits for the end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mq_broker::config::{ClusterConfig, Limits, RetentionSettings};
use mq_broker::{BrokerRuntime, BrokerSettings};
use mq_cluster_manager::ClusterManagerConfig;
use mq_raft::transport::{GroupRegistry, Peers};
use mq_raft::{GroupContext, RaftTimings, Store, StoreOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::NodeError;
use crate::control_plane::ControlPlane;
use crate::kit::server::{self, ServerConfig, ServerError};

pub const DEFAULT_DATA_DIR: &str = "./data";

/// The broker's config file (`mq-broker --config FILE`), every key overridable by
/// `MQ_<SECTION>__<KEY>` and by flags. Defaults are the standalone node's embedded config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerNodeConfig {
    pub node: NodeConfig,
    pub server: ServerConfig,
    pub cluster: ClusterConfig,
    pub storage: StoreOptions,
    /// Raft timers of partition groups.
    pub raft: RaftTimings,
    pub limits: Limits,
    pub retention: RetentionSettings,
    /// The embedded cluster manager's settings (standalone mode only).
    pub cluster_manager: ClusterManagerConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Run broker and cluster manager in one process (`--standalone`).
    pub standalone: bool,
    /// This broker's id, unique in the cluster.
    pub broker_id: u32,
    /// Where the node keeps its data (one RocksDB).
    pub data_dir: PathBuf,
    /// The rack (or zone) of this broker, for rack-aware placement.
    pub rack: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            standalone: false,
            broker_id: 1,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            rack: None,
        }
    }
}

impl BrokerNodeConfig {
    /// What the broker runs with; in standalone mode its cluster manager is this node.
    fn broker_settings(&self, advertised_address: &str) -> BrokerSettings {
        let mut cluster = self.cluster.clone();
        if self.node.standalone {
            cluster.manager_addresses = vec![advertised_address.to_owned()];
        }
        BrokerSettings {
            broker_id: self.node.broker_id,
            rack: self.node.rack.clone(),
            cluster,
            raft: self.raft.clone(),
            limits: self.limits.clone(),
            retention: self.retention.clone(),
        }
    }
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

/// Starts a broker node with `config`; it runs until `shutdown` is cancelled.
pub async fn run(
    config: BrokerNodeConfig,
    shutdown: CancellationToken,
) -> Result<NodeHandle, NodeError> {
    let store = Store::open(&config.node.data_dir, &config.storage)?;
    let bound = server::bind(&config.server).await?;
    if config.server.metrics_listen.is_some() {
        crate::kit::process_metrics::spawn(store.clone(), shutdown.clone());
    }
    let (local_addr, advertised_address) = (bound.local_addr, bound.advertised_address.clone());
    let groups = GroupContext {
        store: store.clone(),
        peers: Arc::new(Peers::default()),
        registry: GroupRegistry::default(),
    };
    // Standalone: the cluster manager and the consumer manager run in this process.
    let control_plane = match config.node.standalone {
        true => Some(
            ControlPlane::start(
                &groups,
                &advertised_address,
                &config.cluster_manager,
                &shutdown,
            )
            .await?,
        ),
        false => None,
    };
    let broker = mq_broker::start(
        groups.clone(),
        advertised_address.clone(),
        config.broker_settings(&advertised_address),
        shutdown.clone(),
    )
    .await?;

    let (health, router) = server::standard_router(&[mq_proto::FILE_DESCRIPTOR_SET]).await?;
    let router = services(router, &broker, &groups, control_plane.as_ref());
    // The server stops after leadership was handed off, so clients are redirected meanwhile.
    let stop_serving = CancellationToken::new();
    let served = server::serve(router, bound.listener, stop_serving.clone());
    tracing::info!(address = %local_addr, advertised = %advertised_address, standalone = config.node.standalone, "serving");

    let ready = broker.registered();
    tokio::spawn(report_serving_when_ready(ready.clone(), health.clone()));
    let stopping = Stopping {
        health,
        broker,
        control_plane,
        store,
        served,
        stop_serving,
        grace: config.server.shutdown_grace,
    };
    let done = tokio::spawn(stopping.after(shutdown.clone()));
    Ok(NodeHandle {
        local_addr,
        advertised_address,
        ready,
        shutdown,
        done,
    })
}

/// The node's services: the broker's, the Raft transport, and the control plane's (served
/// here in standalone mode, else passed on to the cluster's).
fn services(
    router: Router,
    broker: &BrokerRuntime,
    groups: &GroupContext,
    control_plane: Option<&ControlPlane>,
) -> Router {
    let router = router
        .add_service(broker.data_server())
        .add_service(broker.replica_server())
        .add_service(mq_raft::transport::server(groups.registry.clone()));
    match control_plane {
        Some(control_plane) => control_plane.serve_on(router),
        None => {
            let forwarders = broker.forwarders();
            router
                .add_service(forwarders.admin)
                .add_service(forwarders.metadata)
                .add_service(forwarders.groups)
                .add_service(forwarders.queues)
        }
    }
}

/// Reports SERVING once the broker is registered.
async fn report_serving_when_ready(mut ready: watch::Receiver<bool>, health: HealthReporter) {
    if ready.wait_for(|ready| *ready).await.is_ok() {
        health.set_service_status("", ServingStatus::Serving).await;
        tracing::info!("ready");
    }
}

/// What a broker node stops, in order, when its shutdown token is cancelled.
struct Stopping {
    health: HealthReporter,
    broker: BrokerRuntime,
    control_plane: Option<ControlPlane>,
    store: Store,
    served: JoinHandle<Result<(), ServerError>>,
    stop_serving: CancellationToken,
    grace: std::time::Duration,
}

impl Stopping {
    /// NOT_SERVING, leadership handed off while still serving, the server drained, the
    /// broker's tasks and replicas stopped, then the managers, and the store closed last.
    async fn after(self, shutdown: CancellationToken) -> Result<(), NodeError> {
        shutdown.cancelled().await;
        tracing::info!("shutting down");
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.broker.hand_off_leadership().await;
        self.stop_serving.cancel();
        let served = server::drain(self.served, self.grace).await;
        self.broker.shutdown().await;
        if let Some(control_plane) = self.control_plane {
            control_plane.shutdown().await;
        }
        drop(self.store);
        tracing::info!("stopped");
        Ok(served?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::config::parse_toml;
    use crate::kit::server::DEFAULT_LISTEN;

    #[test]
    fn defaults_are_the_standalone_embedded_config() {
        let config = BrokerNodeConfig::default();
        assert_eq!(config.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.node.data_dir, PathBuf::from("./data"));
        assert!(config.storage.fsync);
        mq_raft::GroupConfig::partition(&config.raft).unwrap();
    }

    #[test]
    fn the_deploy_example_parses_and_sets_what_it_says() {
        let text = include_str!("../../deploy/broker.example.toml");
        let config: BrokerNodeConfig = parse_toml(text).unwrap();
        assert!(config.node.standalone);
        assert_eq!(config.node.data_dir, PathBuf::from("/var/lib/mq"));
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(config.cluster_manager.default_replication_factor, 1);
        assert!(config.storage.fsync);
        mq_raft::GroupConfig::partition(&config.raft).unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = parse_toml::<BrokerNodeConfig>("[storage]\nfsyn = false\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("fsyn"), "{err}");
    }

    #[test]
    fn a_standalone_broker_registers_with_its_own_node() {
        let mut config = BrokerNodeConfig::default();
        config.cluster.manager_addresses = vec!["elsewhere:7080".into()];
        assert_eq!(
            config.broker_settings("me:7070").cluster.manager_addresses,
            ["elsewhere:7080"]
        );
        config.node.standalone = true;
        assert_eq!(
            config.broker_settings("me:7070").cluster.manager_addresses,
            ["me:7070"]
        );
    }
}

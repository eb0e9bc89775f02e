//! The broker as a running service: its replicas, data plane, control-plane link, membership
//! (registration and heartbeats), peer watch and quiescence rounds, started by [`start`] on a node's store and
//! transport, served by whatever server the node runs, and stopped by
//! [`BrokerRuntime::shutdown`] (leadership handed off first).

use std::sync::Arc;

use mq_proto::internal::replica_manager_server::ReplicaManagerServer;
use mq_proto::v1::admin_server::AdminServer;
use mq_proto::v1::broker_server::BrokerServer;
use mq_proto::v1::consumer_groups_server::ConsumerGroupsServer;
use mq_proto::v1::metadata_server::MetadataServer;
use mq_proto::v1::queues_server::QueuesServer;
use mq_raft::disk::DiskGuard;
use mq_raft::{GroupConfig, GroupContext};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::cluster_link::{BrokerIdentity, ClusterLink, run_membership};
use crate::config::BrokerSettings;
use crate::error::BrokerError;
use crate::partition::PartitionContext;
use crate::replicas::Replicas;
use crate::service::control::ControlForwarder;
use crate::service::data::DataService;
use crate::service::replica::ReplicaService;

/// A started broker.
#[derive(Debug)]
pub struct BrokerRuntime {
    broker: Arc<Broker>,
    replicas: Arc<Replicas>,
    link: ClusterLink,
    settings: BrokerSettings,
    /// Turns true once the broker is registered with the cluster manager.
    registered: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The control-plane services a broker passes on to the cluster manager, for a node that does
/// not run the cluster manager itself.
#[derive(Debug)]
pub struct Forwarders {
    pub admin: AdminServer<ControlForwarder>,
    pub metadata: MetadataServer<ControlForwarder>,
    pub groups: ConsumerGroupsServer<ControlForwarder>,
    pub queues: QueuesServer<ControlForwarder>,
}

/// Starts the broker on the node's store and transport: opens the hosted replicas, then
/// registers with the cluster manager (at `settings.cluster.manager_addresses`) and
/// heartbeats, and watches the partitions' leaders, until `shutdown`.
pub async fn start(
    groups: GroupContext,
    advertised_address: String,
    settings: BrokerSettings,
    shutdown: CancellationToken,
) -> Result<BrokerRuntime, BrokerError> {
    if settings.cluster.manager_addresses.is_empty() {
        return Err(BrokerError::invalid(
            "cluster.manager_addresses",
            "is empty: name the cluster manager (--cluster-manager) or run --standalone",
        ));
    }
    let raft_config = GroupConfig::partition(&settings.raft)
        .map_err(|err| BrokerError::invalid("raft", err.to_string()))?;
    let storage = groups.store.options().clone();
    let disk = DiskGuard::watch(
        groups.store.dir(),
        storage.min_free_mib,
        storage.disk_check_interval,
        shutdown.clone(),
    )
    .map_err(BrokerError::Io)?;
    let peers = groups.peers.clone();
    let quiescence = tokio::spawn(mq_raft::quiesce::run(
        groups.registry.clone(),
        peers.clone(),
        settings.raft.heartbeat_interval,
        shutdown.clone(),
    ));
    let replicas = Arc::new(
        Replicas::open(PartitionContext {
            group: groups,
            raft_config,
            retention_check_interval: settings.retention.check_interval,
            disk: disk.clone(),
        })
        .await?,
    );
    let link = ClusterLink::new(settings.cluster.manager_addresses.clone(), peers.clone());
    let broker = Arc::new(Broker::new(
        replicas.clone(),
        link.clone(),
        settings.limits.clone(),
        disk,
        shutdown.clone(),
    ));
    let (registered_tx, registered) = watch::channel(false);
    let membership = tokio::spawn(run_membership(
        link.clone(),
        BrokerIdentity {
            broker_id: settings.broker_id,
            address: advertised_address,
            rack: settings.rack.clone(),
        },
        replicas.clone(),
        settings.cluster.heartbeat_interval,
        registered_tx,
        shutdown.clone(),
    ));
    let peer_watch = tokio::spawn(crate::peer_watch::run(
        settings.cluster.peer_watch.clone(),
        replicas.clone(),
        peers,
        shutdown,
    ));
    Ok(BrokerRuntime {
        broker,
        replicas,
        link,
        settings,
        registered,
        tasks: vec![membership, peer_watch, quiescence],
    })
}

impl BrokerRuntime {
    /// `mq.v1.Broker`: produce, fetch, subscribe, list offsets.
    pub fn data_server(&self) -> BrokerServer<DataService> {
        DataService::server(self.broker.clone())
    }

    /// `mq.internal.v1.ReplicaManager`: what the cluster manager asks of this broker.
    pub fn replica_server(&self) -> ReplicaManagerServer<ReplicaService> {
        ReplicaService::server(self.replicas.clone())
    }

    /// `Admin`, `Metadata`, `ConsumerGroups` and `Queues`, passed on to the cluster manager.
    pub fn forwarders(&self) -> Forwarders {
        let forwarder = ControlForwarder::new(self.link.clone());
        Forwarders {
            admin: forwarder.admin_server(),
            metadata: forwarder.metadata_server(),
            groups: forwarder.groups_server(),
            queues: forwarder.queues_server(),
        }
    }

    /// Turns true once the broker is registered with the cluster manager.
    pub fn registered(&self) -> watch::Receiver<bool> {
        self.registered.clone()
    }

    /// Hands the partitions this broker leads to other replicas (bounded by
    /// `cluster.leadership_handoff_timeout`), while the node still serves, so clients are
    /// redirected instead of waiting for an election.
    pub async fn hand_off_leadership(&self) {
        self.replicas
            .hand_off_leadership(self.settings.cluster.leadership_handoff_timeout)
            .await;
    }

    /// Waits for the membership, peer-watch and quiescence tasks (which end on the shutdown token), then
    /// stops every replica.
    pub async fn shutdown(self) {
        for task in self.tasks {
            let _ = task.await;
        }
        self.replicas.shutdown().await;
    }
}

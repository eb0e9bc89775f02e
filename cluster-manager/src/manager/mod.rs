//! [`ClusterManager`]: the cluster manager without its transport. Decisions are pure
//! ([`crate::placement`], [`crate::reconcile`], [`ClusterState::apply`]); this module runs
//! them: it proposes commands through the Raft group, remembers what brokers report (in
//! memory, on every node, [`Reports`]), and on the leader asks brokers for replicas through
//! [`BrokerClient`], which owns the wire.
//!
//! One file per operation: [`topics`] (create, delete, describe), [`brokers`] (registration,
//! heartbeats, decommission), [`status`] (the cluster at a glance), [`rebalance`], and
//! [`reconcile`] (the reconciler's loop, carrying out [`crate::reconcile::plan`]).

mod brokers;
mod rebalance;
mod reconcile;
mod status;
mod topics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mq_common::ids::GroupId;
use mq_raft::{ControlGroup, GroupContext};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::brokers::BrokerView;
pub use self::status::{ClusterStatus, ManagerMember};
pub use self::topics::{CreateTopic, PartitionView, TopicView};
use crate::broker_client::BrokerClient;
use crate::config::ClusterManagerConfig;
use crate::error::CmError;
pub use crate::reports::ReplicaReport;
use crate::reports::Reports;
use crate::state::{MetaCommand, MetaResponse};
use crate::types::{MetaGroup, SharedState};

/// Process-wide pieces the cluster manager shares with the node's other groups.
#[derive(Debug, Clone)]
pub struct ClusterManagerContext {
    pub group: GroupContext,
    /// Where this node serves the cluster manager's services.
    pub advertised_address: String,
}

pub struct ClusterManager {
    raft: MetaGroup,
    /// The applied state (written by the group's state machine only). Locks: always the
    /// state before the reports.
    state: SharedState,
    reports: Mutex<Reports>,
    brokers: BrokerClient,
    config: ClusterManagerConfig,
    reconcile: Arc<Notify>,
    /// Membership changes under way, per group (cleared when the leader answers).
    membership_asked: Arc<Mutex<HashMap<GroupId, Instant>>>,
    /// The reconciler and the calls it left running; stopped on shutdown.
    tasks: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterManager")
            .field("node_id", &self.config.node_id)
            .finish()
    }
}

impl ClusterManager {
    /// Starts the cluster manager's Raft group on the shared store (initializing it with the
    /// configured voters, or this node alone, on first start) and its reconciler.
    pub async fn start(
        context: ClusterManagerContext,
        config: ClusterManagerConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, CmError> {
        let spec = ControlGroup {
            group: GroupId::CLUSTER_MANAGER,
            node_id: config.node_id,
            config: config.group_config()?,
            voters: config.initial_voters().map_err(CmError::Config)?,
            address: context.advertised_address.clone(),
        };
        let (raft, state) = MetaGroup::start_control(&context.group, spec).await?;
        let manager = Arc::new(Self {
            raft,
            state,
            reports: Mutex::new(Reports::new(
                config.broker_session_timeout,
                config.replace_delay,
            )),
            brokers: BrokerClient::new(context.group.peers),
            config,
            reconcile: Arc::new(Notify::new()),
            membership_asked: Arc::default(),
            tasks: Mutex::default(),
        });
        let reconciler = manager.clone().run_reconciler(shutdown);
        manager.tasks.lock().expect("tasks lock").spawn(reconciler);
        Ok(manager)
    }

    /// The group's current leader, when this node knows one.
    pub fn leader(&self) -> Option<u64> {
        self.raft.leader()
    }

    /// Stops the reconciler, the calls it left running, and the Raft group.
    pub async fn shutdown(&self) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        tasks.shutdown().await;
        self.raft.shutdown().await;
    }

    async fn propose(&self, command: MetaCommand) -> Result<MetaResponse, CmError> {
        Ok(self.raft.propose(command).await?)
    }

    fn not_leader(&self) -> CmError {
        self.raft.not_leader().into()
    }
}

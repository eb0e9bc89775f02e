//! The cluster manager without its transport: topic management, broker membership and
//! liveness, and the reconciler that makes brokers host exactly their assigned replicas.
//!
//! Decisions are pure ([`crate::placement`], [`ClusterState::apply`]); this module runs them:
//! it proposes commands through Raft, remembers what brokers report (in memory, on every
//! node), and on the leader calls brokers' `ReplicaManager` RPCs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mq_common::clock::now_ms;
use mq_common::error::LeaderHint;
use mq_common::ids::{BrokerId, GroupId, TopicName, broker_of_node};
use mq_proto::internal as ipb;
use mq_proto::internal::replica_manager_client::ReplicaManagerClient;
use mq_raft::Store;
use mq_raft::transport::{GroupRegistry, GrpcNetworkFactory, Peers, RaftGroupRpc};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::impls::BasicNode;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterManagerConfig, MAX_PARTITIONS};
use crate::error::CmError;
use crate::placement;
use crate::state::{BrokerRecord, ClusterState, MetaCommand, MetaResponse, TopicRecord};
use crate::state_machine::{MetaStateMachine, SharedState};
use crate::topic_config::{TopicConfig, effective_configs};
use crate::types::MetaRaft;

mod reconcile;

/// A request to create a topic, validated by the caller's translation layer except for what
/// needs the cluster's state.
#[derive(Debug, Clone)]
pub struct CreateTopic {
    pub name: TopicName,
    pub partitions: u32,
    pub replication_factor: Option<u32>,
    pub configs: BTreeMap<String, String>,
}

/// What a broker last said about one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaReport {
    pub group: GroupId,
    pub node_id: u64,
    pub leader_node_id: Option<u64>,
    pub term: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub last_log_index: u64,
    pub followers: Vec<(u64, Option<u64>)>,
    /// The group's voters and learners as this replica sees them.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

impl ReplicaReport {
    /// Whether `node` has the leader's log up to a few entries (reported by a leader).
    fn in_sync(&self, node: u64) -> bool {
        node == self.node_id
            || self.followers.iter().any(|(id, matched)| {
                *id == node && matched.is_some_and(|m| m + IN_SYNC_LAG >= self.last_log_index)
            })
    }
}

/// Entries a replica may trail its leader by and still count as in sync (a busy partition's
/// followers are always a few batches behind the last report).
const IN_SYNC_LAG: u64 = 16;
/// How long a membership change or leadership transfer asked of a partition leader is left to
/// finish before it is asked again.
const ACTION_HOLD_OFF: Duration = Duration::from_secs(30);
/// After a membership change succeeded, how long until the group may be asked again.
const SETTLE_GRACE: Duration = Duration::from_secs(3);

/// A topic with what is known of its partitions right now.
#[derive(Debug, Clone)]
pub struct TopicView {
    pub topic: TopicRecord,
    pub partitions: Vec<PartitionView>,
}

#[derive(Debug, Clone)]
pub struct PartitionView {
    pub leader: Option<BrokerId>,
    pub high_watermark: Option<u64>,
    pub log_start_offset: Option<u64>,
    /// Per replica (in placement order): in sync, and entries behind the leader when known.
    pub replicas: Vec<(bool, Option<u64>)>,
}

/// A broker with its liveness and load.
#[derive(Debug, Clone)]
pub struct BrokerView {
    pub broker: BrokerRecord,
    pub alive: bool,
    /// Replicas assigned to it.
    pub replicas: usize,
    /// Partitions it leads, per its last heartbeat.
    pub leaders: usize,
    /// Time since its last heartbeat reached this node.
    pub last_heartbeat: Option<Duration>,
}

/// A member of the cluster manager's Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerMember {
    pub node_id: u64,
    pub address: String,
    pub voter: bool,
}

/// The cluster at a glance.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub managers: Vec<ManagerMember>,
    pub manager_leader: Option<u64>,
    pub brokers: Vec<BrokerView>,
    pub topics: usize,
    pub partitions: usize,
    /// `(topic, partition)` with fewer in-sync replicas than assigned ones.
    pub under_replicated: Vec<(TopicName, u32)>,
    /// `(topic, partition)` without a known leader.
    pub offline: Vec<(TopicName, u32)>,
}

#[derive(Debug, Default)]
struct Reports {
    /// Last heartbeat (or registration) and the replicas it reported, per broker.
    brokers: HashMap<BrokerId, (Instant, Vec<ReplicaReport>)>,
    /// Replicas asked for recently, not yet seen in a heartbeat: not asked again before then.
    requested: HashMap<(BrokerId, GroupId), Instant>,
    /// Leadership transfers asked recently, per group.
    transfer_asked: HashMap<GroupId, Instant>,
    /// Since when this node leads (a broker never heard of since counts as last seen then).
    leader_since: Option<Instant>,
}

/// Process-wide pieces the cluster manager shares with a co-located broker.
#[derive(Debug, Clone)]
pub struct ClusterManagerContext {
    pub store: Store,
    pub peers: Arc<Peers>,
    pub registry: GroupRegistry,
    /// Where this node serves the cluster manager's services.
    pub advertised_address: String,
}

pub struct ClusterManager {
    raft: MetaRaft,
    state: SharedState,
    reports: Mutex<Reports>,
    peers: Arc<Peers>,
    config: ClusterManagerConfig,
    reconcile: Arc<Notify>,
    /// Membership changes under way, per group (cleared when the leader answers).
    membership_asked: Arc<Mutex<HashMap<GroupId, Instant>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterManager")
            .field("node_id", &self.config.node_id)
            .finish()
    }
}

impl ClusterManager {
    /// Starts the cluster manager's Raft group on the shared store (initializing it as a
    /// single voter on first start) and its reconciler.
    pub async fn start(
        context: ClusterManagerContext,
        config: ClusterManagerConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, CmError> {
        let raft_config = Arc::new(config.raft_config().map_err(CmError::Raft)?);
        let mut voters = config.initial_voters().map_err(CmError::Config)?;
        if voters.is_empty() {
            voters.insert(config.node_id, context.advertised_address.clone());
        }
        let state_machine = MetaStateMachine::open(context.store.clone())?;
        let state = state_machine.shared_state();
        let log = mq_raft::RocksLogStore::new(context.store.clone(), GroupId::CLUSTER_MANAGER);
        let network = GrpcNetworkFactory::new(
            context.peers.clone(),
            GroupId::CLUSTER_MANAGER,
            config.node_id,
        );
        let raft = openraft::Raft::new(config.node_id, raft_config, network, log, state_machine)
            .await
            .map_err(|err| CmError::Raft(err.to_string()))?;
        context.registry.register(
            GroupId::CLUSTER_MANAGER,
            Arc::new(RaftGroupRpc::new(raft.clone(), config.node_id)),
        );
        if !raft
            .is_initialized()
            .await
            .map_err(|err| CmError::Raft(err.to_string()))?
        {
            // Every voter initializes with the same list (safe in Raft: one leader is elected).
            let members: BTreeMap<u64, BasicNode> = voters
                .iter()
                .map(|(id, address)| (*id, BasicNode::new(address)))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(
                    node = config.node_id,
                    voters = ?voters,
                    "initialized the cluster manager group"
                ),
                Err(RaftError::APIError(err)) => tracing::debug!(%err, "already initialized"),
                Err(RaftError::Fatal(err)) => return Err(CmError::Raft(err.to_string())),
            }
        }
        let manager = Arc::new(Self {
            raft,
            state,
            reports: Mutex::default(),
            peers: context.peers,
            config,
            reconcile: Arc::new(Notify::new()),
            membership_asked: Arc::default(),
            tasks: Mutex::default(),
        });
        let reconciler = tokio::spawn(manager.clone().run_reconciler(shutdown));
        manager.tasks.lock().expect("tasks lock").push(reconciler);
        Ok(manager)
    }

    /// Creates a topic: validates, places, commits, asks brokers to create the replicas, and
    /// waits (bounded) for the partitions to elect leaders.
    pub async fn create_topic(&self, request: CreateTopic) -> Result<TopicView, CmError> {
        if request.partitions == 0 || request.partitions > MAX_PARTITIONS {
            return Err(CmError::invalid(
                "partitions",
                format!(
                    "must be between 1 and {MAX_PARTITIONS}, got {}",
                    request.partitions
                ),
            ));
        }
        let replication_factor = request
            .replication_factor
            .unwrap_or(self.config.default_replication_factor);
        if replication_factor == 0 {
            return Err(CmError::invalid("replication_factor", "must be at least 1"));
        }
        let configs = effective_configs(&request.configs)?;
        let placement = {
            let state = self.state.read().expect("state lock");
            if state.topics.contains_key(&request.name) {
                return Err(CmError::TopicExists {
                    topic: request.name.to_string(),
                });
            }
            let reports = self.reports.lock().expect("reports lock");
            let candidates = self.candidates(&state, &reports);
            placement::place(&candidates, request.partitions, replication_factor).map_err(|e| {
                CmError::NotEnoughBrokers {
                    requested: e.requested,
                    live: e.live,
                }
            })?
        };
        let command = MetaCommand::CreateTopic {
            name: request.name.clone(),
            topic_id: uuid::Uuid::new_v4().to_string(),
            configs,
            placement,
            created_at_ms: now_ms(),
        };
        let topic = match self.propose(command).await? {
            MetaResponse::TopicCreated(topic) => topic,
            MetaResponse::TopicExists => {
                return Err(CmError::TopicExists {
                    topic: request.name.to_string(),
                });
            }
            other => return Err(CmError::Raft(format!("unexpected reply {other:?}"))),
        };
        tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), replication_factor, "topic created");
        // Bounded: a topic of thousands of partitions takes longer to start everywhere; the
        // reconciler creates whatever is still missing.
        let deadline = Instant::now() + self.config.create_topic_wait;
        if tokio::time::timeout_at(deadline.into(), self.create_replicas(&topic))
            .await
            .is_err()
        {
            self.reconcile.notify_one();
        }
        while Instant::now() < deadline {
            let view = self.view(&topic);
            if view.partitions.iter().all(|p| p.leader.is_some()) {
                return Ok(view);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(topic = %topic.name, "not every partition has a leader yet");
        Ok(self.view(&topic))
    }

    /// Deletes a topic; brokers drop its replicas when the reconciler tells them.
    pub async fn delete_topic(&self, name: &TopicName) -> Result<(), CmError> {
        match self
            .propose(MetaCommand::DeleteTopic { name: name.clone() })
            .await?
        {
            MetaResponse::TopicNotFound => Err(CmError::TopicNotFound {
                topic: name.to_string(),
            }),
            _ => {
                tracing::info!(topic = %name, "topic deleted");
                self.reconcile.notify_one();
                Ok(())
            }
        }
    }

    pub fn list_topics(&self) -> Vec<TopicRecord> {
        self.state
            .read()
            .expect("state lock")
            .topics
            .values()
            .cloned()
            .collect()
    }

    /// A topic with fresh figures: leaders are asked for their replicas' state.
    pub async fn describe_topic(&self, name: &TopicName) -> Result<TopicView, CmError> {
        let topic = self.topic(name)?;
        self.refresh_leaders(&topic).await;
        Ok(self.view(&topic))
    }

    pub fn topic(&self, name: &TopicName) -> Result<TopicRecord, CmError> {
        self.state
            .read()
            .expect("state lock")
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| CmError::TopicNotFound {
                topic: name.to_string(),
            })
    }

    /// Brokers and the named topics (all when `names` is empty).
    pub fn metadata(
        &self,
        names: &[TopicName],
    ) -> Result<(Vec<BrokerView>, Vec<TopicView>), CmError> {
        let topics = if names.is_empty() {
            self.list_topics()
        } else {
            names
                .iter()
                .map(|n| self.topic(n))
                .collect::<Result<_, _>>()?
        };
        let views = topics.iter().map(|t| self.view(t)).collect();
        Ok((self.brokers(), views))
    }

    pub fn brokers(&self) -> Vec<BrokerView> {
        let state = self.state.read().expect("state lock");
        let counts = state.replica_counts();
        let reports = self.reports.lock().expect("reports lock");
        state
            .brokers
            .values()
            .map(|broker| {
                let report = reports.brokers.get(&broker.id);
                BrokerView {
                    alive: self.is_alive(&reports, broker.id),
                    broker: broker.clone(),
                    replicas: counts.get(&broker.id).map_or(0, |(replicas, _)| *replicas),
                    leaders: report.map_or(0, |(_, replicas)| {
                        replicas
                            .iter()
                            .filter(|r| r.leader_node_id == Some(r.node_id))
                            .count()
                    }),
                    last_heartbeat: report.map(|(seen, _)| seen.elapsed()),
                }
            })
            .collect()
    }

    /// The group's current leader, when this node knows one.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// Members and leader of the cluster manager, brokers, and partitions that need attention.
    pub fn cluster_status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let managers = membership
            .nodes()
            .map(|(id, node)| ManagerMember {
                node_id: *id,
                address: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let topics = self.list_topics();
        let mut status = ClusterStatus {
            managers,
            manager_leader: metrics.current_leader,
            brokers: self.brokers(),
            topics: topics.len(),
            partitions: 0,
            under_replicated: Vec::new(),
            offline: Vec::new(),
        };
        for topic in &topics {
            let view = self.view(topic);
            for (record, live) in topic.partitions.iter().zip(&view.partitions) {
                status.partitions += 1;
                let at = (topic.name.clone(), record.partition);
                if live.leader.is_none() {
                    status.offline.push(at);
                } else if live.replicas.iter().any(|(in_sync, _)| !in_sync) {
                    status.under_replicated.push(at);
                }
            }
        }
        status
    }

    /// Records a broker's registration (committed only when something changed).
    /// A broker id held by a live broker at another address is refused; a dead broker's id
    /// may move to a new address (the machine was replaced).
    pub async fn register_broker(&self, broker: BrokerRecord) -> Result<(), CmError> {
        let registered = self
            .state
            .read()
            .expect("state lock")
            .brokers
            .get(&broker.id)
            .cloned();
        if let Some(existing) = &registered
            && existing.address != broker.address
            && self.is_alive(&self.reports.lock().expect("reports lock"), broker.id)
        {
            return Err(CmError::BrokerIdInUse {
                id: broker.id.0,
                address: existing.address.clone(),
            });
        }
        let known = registered.as_ref() == Some(&broker);
        if !known {
            self.propose(MetaCommand::RegisterBroker(broker.clone()))
                .await?;
            tracing::info!(broker = %broker.id, address = %broker.address, "broker registered");
        } else if !self.raft.is_leader() {
            return Err(self.not_leader());
        }
        self.reports
            .lock()
            .expect("reports lock")
            .brokers
            .entry(broker.id)
            .or_insert_with(|| (Instant::now(), Vec::new()))
            .0 = Instant::now();
        self.reconcile.notify_one();
        Ok(())
    }

    /// Starts draining `broker`: the reconciler moves its replicas to other live brokers and
    /// leaderships off it. Refused when the other live brokers cannot hold every replica it
    /// has (each partition needs its replicas on distinct brokers).
    pub async fn decommission_broker(&self, broker: BrokerId) -> Result<(), CmError> {
        {
            let state = self.state.read().expect("state lock");
            if !state.brokers.contains_key(&broker) {
                return Err(CmError::BrokerNotFound { id: broker.0 });
            }
            let reports = self.reports.lock().expect("reports lock");
            let others = self
                .candidates(&state, &reports)
                .into_iter()
                .filter(|c| c.id != broker)
                .count();
            let needed = state
                .replicas_on(broker)
                .iter()
                .map(|(_, partition, _)| partition.replicas.len())
                .max()
                .unwrap_or(0);
            if others == 0 || others < needed {
                return Err(CmError::CannotDrain {
                    id: broker.0,
                    reason: format!(
                        "its partitions need {needed} live brokers besides it to keep their \
                         replicas, and {others} other live brokers take replicas"
                    ),
                });
            }
        }
        self.propose(MetaCommand::SetDraining {
            broker,
            draining: true,
        })
        .await?;
        tracing::info!(%broker, "decommissioning broker");
        self.reconcile.notify_one();
        Ok(())
    }

    /// Decides and commits the replica moves that even out the live brokers' loads.
    pub async fn rebalance(&self) -> Result<Vec<(TopicName, u32, placement::Move)>, CmError> {
        if !self.raft.is_leader() {
            return Err(self.not_leader());
        }
        let (moves, leader_moves, named) = {
            let state = self.state.read().expect("state lock");
            let reports = self.reports.lock().expect("reports lock");
            let candidates = self.candidates(&state, &reports);
            let partitions: Vec<(GroupId, Vec<(u64, BrokerId)>)> = state
                .topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .map(|p| {
                    (
                        p.group,
                        p.replicas.iter().map(|r| (r.node_id, r.broker)).collect(),
                    )
                })
                .collect();
            let moves = placement::rebalance(&candidates, &partitions);
            // Preferences after the moves (a moved replica keeps its position).
            let mut placed = partitions.clone();
            for m in &moves {
                if let Some((_, replicas)) = placed.iter_mut().find(|(g, _)| *g == m.group)
                    && let Some(slot) = replicas.iter_mut().find(|(id, _)| *id == m.old_node_id)
                {
                    // The new replica's node id is assigned at commit; mark it by its broker.
                    *slot = (u64::MAX, m.to);
                }
            }
            let leader_moves = placement::leader_moves(&candidates, &placed);
            let named: HashMap<GroupId, (TopicName, u32)> = state
                .topics
                .values()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (p.group, (t.name.clone(), p.partition)))
                })
                .collect();
            (moves, leader_moves, named)
        };
        let mut done = Vec::new();
        for m in moves {
            let response = self
                .propose(MetaCommand::ReplaceReplica {
                    group: m.group,
                    old_node_id: m.old_node_id,
                    new_broker: m.to,
                })
                .await?;
            if response == MetaResponse::Done
                && let Some((topic, partition)) = named.get(&m.group)
            {
                tracing::info!(%topic, partition, from = %m.from, to = %m.to, "moving replica");
                done.push((topic.clone(), *partition, m));
            }
        }
        for (group, node_id) in leader_moves {
            // A replica that just moved is preferred by its broker (its new node id).
            let node_id = if node_id == u64::MAX {
                let state = self.state.read().expect("state lock");
                let moved_to = done
                    .iter()
                    .find(|(_, _, m)| m.group == group)
                    .map(|(_, _, m)| m.to);
                state
                    .topics
                    .values()
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.group == group)
                    .and_then(|p| p.replicas.iter().find(|r| Some(r.broker) == moved_to))
                    .map(|r| r.node_id)
            } else {
                Some(node_id)
            };
            if let Some(node_id) = node_id {
                self.propose(MetaCommand::SetPreferredLeader { group, node_id })
                    .await?;
            }
        }
        self.reconcile.notify_one();
        Ok(done)
    }

    /// Records a heartbeat. Brokers heartbeat every cluster-manager node they reach; only the
    /// leader acts on it, but every node keeps it so a new leader starts warm.
    pub fn heartbeat(&self, broker: BrokerId, replicas: Vec<ReplicaReport>) -> Result<(), CmError> {
        if !self
            .state
            .read()
            .expect("state lock")
            .brokers
            .contains_key(&broker)
        {
            return Err(CmError::invalid(
                "broker_id",
                format!("broker {broker} is not registered; register first"),
            ));
        }
        let mut reports = self.reports.lock().expect("reports lock");
        let changed = reports
            .brokers
            .get(&broker)
            .is_none_or(|(_, previous)| hosted_groups(previous) != hosted_groups(&replicas));
        for report in &replicas {
            reports.requested.remove(&(broker, report.group));
        }
        reports.brokers.insert(broker, (Instant::now(), replicas));
        drop(reports);
        if changed {
            self.reconcile.notify_one();
        }
        Ok(())
    }

    /// Stops the reconciler and the Raft group.
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = self.tasks.lock().expect("tasks lock").drain(..).collect();
        for task in tasks {
            task.abort();
        }
        if let Err(err) = self.raft.shutdown().await {
            tracing::warn!(%err, "cluster manager raft shutdown");
        }
    }

    async fn propose(&self, command: MetaCommand) -> Result<MetaResponse, CmError> {
        match self.raft.client_write(command).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(match (forward.leader_id, forward.leader_node) {
                    (Some(id), Some(node)) => CmError::NotLeader {
                        leader: Some(LeaderHint {
                            id,
                            address: node.addr,
                        }),
                    },
                    _ => CmError::LeaderNotAvailable,
                })
            }
            Err(err) => Err(CmError::Raft(err.to_string())),
        }
    }

    fn not_leader(&self) -> CmError {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let leader = metrics.current_leader.and_then(|id| {
            let node = metrics
                .membership_config
                .membership()
                .get_node(&id)?
                .clone();
            Some(LeaderHint {
                id,
                address: node.addr,
            })
        });
        match leader {
            Some(leader) => CmError::NotLeader {
                leader: Some(leader),
            },
            None => CmError::LeaderNotAvailable,
        }
    }

    fn is_alive(&self, reports: &Reports, broker: BrokerId) -> bool {
        reports
            .brokers
            .get(&broker)
            .is_some_and(|(seen, _)| seen.elapsed() < self.config.broker_session_timeout)
    }

    /// Locks: always the state before the reports.
    fn live_brokers<'a>(
        &self,
        state: &'a ClusterState,
        reports: &Reports,
    ) -> Vec<&'a BrokerRecord> {
        state
            .brokers
            .values()
            .filter(|b| self.is_alive(reports, b.id))
            .collect()
    }

    /// The topic with what brokers last reported.
    fn view(&self, topic: &TopicRecord) -> TopicView {
        let reports = self.reports.lock().expect("reports lock");
        let partitions = topic
            .partitions
            .iter()
            .map(|partition| {
                let leader_report = self.leader_report(&reports, partition.group);
                let leader_report = leader_report.as_ref();
                let replicas = partition
                    .replicas
                    .iter()
                    .map(|replica| match leader_report {
                        Some(leader) if leader.node_id == replica.node_id => (true, Some(0)),
                        Some(leader) => {
                            let matched = leader
                                .followers
                                .iter()
                                .find(|(id, _)| *id == replica.node_id)
                                .and_then(|(_, m)| *m);
                            match matched {
                                Some(index) => {
                                    let lag = leader.last_log_index.saturating_sub(index);
                                    (lag <= IN_SYNC_LAG, Some(lag))
                                }
                                None => (false, None),
                            }
                        }
                        None => (false, None),
                    })
                    .collect();
                PartitionView {
                    leader: leader_report.map(|r| broker_of_node(r.node_id)),
                    high_watermark: leader_report.map(|r| r.high_watermark),
                    log_start_offset: leader_report.map(|r| r.log_start_offset),
                    replicas,
                }
            })
            .collect();
        TopicView {
            topic: topic.clone(),
            partitions,
        }
    }

    /// Asks each broker hosting a replica of `topic` for fresh status, and records it.
    async fn refresh_leaders(&self, topic: &TopicRecord) {
        let by_broker: BTreeMap<BrokerId, Vec<u64>> =
            topic
                .partitions
                .iter()
                .fold(BTreeMap::new(), |mut acc, partition| {
                    for replica in &partition.replicas {
                        acc.entry(replica.broker)
                            .or_insert_with(Vec::new)
                            .push(partition.group.0);
                    }
                    acc
                });
        let calls = by_broker.into_iter().filter_map(|(broker, groups)| {
            let client = self.broker_client(broker)?;
            Some(async move {
                let mut client = client;
                let request = ipb::GetReplicaStatusRequest { group_ids: groups };
                let call = client.get_replica_status(request);
                match tokio::time::timeout(Duration::from_secs(2), call).await {
                    Ok(Ok(reply)) => Some((broker, reply.into_inner().replicas)),
                    _ => None,
                }
            })
        });
        let replies = futures::future::join_all(calls).await;
        let mut reports = self.reports.lock().expect("reports lock");
        for (broker, statuses) in replies.into_iter().flatten() {
            if let Some((_, known)) = reports.brokers.get_mut(&broker) {
                for status in statuses {
                    let fresh = report_from_proto(&status);
                    match known.iter_mut().find(|r| r.group == fresh.group) {
                        Some(slot) => *slot = fresh,
                        None => known.push(fresh),
                    }
                }
            }
        }
    }

    fn broker_client(
        &self,
        broker: BrokerId,
    ) -> Option<ReplicaManagerClient<tonic::transport::Channel>> {
        let address = self
            .state
            .read()
            .expect("state lock")
            .brokers
            .get(&broker)?
            .address
            .clone();
        let channel = self.peers.channel(&address).ok()?;
        Some(ReplicaManagerClient::new(channel))
    }

    /// Asks every broker of `topic` to create its replicas, concurrently.
    async fn create_replicas(&self, topic: &TopicRecord) {
        let calls = topic.partitions.iter().flat_map(|partition| {
            partition
                .replicas
                .iter()
                .map(move |replica| self.create_replica(topic, partition, replica))
        });
        futures::future::join_all(calls).await;
    }

    async fn create_replica(
        &self,
        topic: &TopicRecord,
        partition: &crate::state::PartitionRecord,
        replica: &crate::state::ReplicaRecord,
    ) {
        let spec = {
            let state = self.state.read().expect("state lock");
            replica_spec(&state, topic, partition, replica)
        };
        let Some(mut client) = self.broker_client(replica.broker) else {
            return;
        };
        self.reports
            .lock()
            .expect("reports lock")
            .requested
            .insert((replica.broker, partition.group), Instant::now());
        let request = ipb::CreateReplicaRequest {
            replica: Some(spec),
        };
        match tokio::time::timeout(Duration::from_secs(10), client.create_replica(request)).await {
            Ok(Ok(_)) => {
                tracing::debug!(topic = %topic.name, group = %partition.group, broker = %replica.broker, "replica created")
            }
            Ok(Err(status)) => {
                tracing::warn!(topic = %topic.name, group = %partition.group, broker = %replica.broker, %status, "create replica failed")
            }
            Err(_) => {
                tracing::warn!(topic = %topic.name, group = %partition.group, broker = %replica.broker, "create replica timed out")
            }
        }
    }
}

fn hosted_groups(replicas: &[ReplicaReport]) -> Vec<(GroupId, u64)> {
    let mut groups: Vec<_> = replicas.iter().map(|r| (r.group, r.node_id)).collect();
    groups.sort_unstable();
    groups
}

/// The wire form of `replicas` as Raft members, with their brokers' addresses.
fn raft_members<'a>(
    state: &ClusterState,
    replicas: impl IntoIterator<Item = &'a crate::state::ReplicaRecord>,
) -> Vec<ipb::RaftMember> {
    replicas
        .into_iter()
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
    partition: &crate::state::PartitionRecord,
    replica: &crate::state::ReplicaRecord,
) -> ipb::ReplicaSpec {
    let bootstrap: Vec<_> = partition.replicas.iter().filter(|r| r.bootstrap).collect();
    let members = raft_members(state, bootstrap);
    // Stored configs were validated when the topic was created.
    let config = TopicConfig::parse(&topic.configs).unwrap_or_default();
    ipb::ReplicaSpec {
        group_id: partition.group.0,
        topic: topic.name.to_string(),
        topic_id: topic.topic_id.clone(),
        partition: partition.partition,
        node_id: replica.node_id,
        members,
        bootstrap: replica.bootstrap,
        max_message_bytes: config.max_message_bytes,
        retention_ms: config.enforced_retention_ms().map_or(-1, |v| v as i64),
        retention_bytes: config.enforced_retention_bytes().map_or(-1, |v| v as i64),
        compact: config.cleanup.compact,
        delete_retention_ms: config.delete_retention_ms as i64,
        partition_count: topic.partitions.len() as u32,
    }
}

/// A heartbeat's replica status as the manager keeps it.
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

//! One Raft group on this node: started on the shared store and transport, written to, asked
//! who leads, reconfigured and stopped. Every group of every service (the cluster manager's,
//! the consumer manager's, each partition replica) runs through [`RaftGroup`], so openraft's
//! API and its errors are handled here once and nowhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use mq_common::ids::GroupId;
use openraft::Raft;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::impls::{BasicNode, ProgressResponder};
use openraft::raft::{ClientWriteResult, ReadPolicy, TransferLeaderRequest};
use openraft::storage::RaftStateMachine;

use crate::config::GroupConfig;
use crate::disk::DiskGuard;
use crate::log_store::RocksLogStore;
use crate::quiesce::Quiescence;
use crate::store::Store;
use crate::transport::{GroupRegistry, GrpcNetworkFactory, Peers, RaftGroupRpc};
use crate::types::GroupTypes;

/// Process-wide pieces every group of a node shares.
#[derive(Debug, Clone)]
pub struct GroupContext {
    pub store: Store,
    pub peers: Arc<Peers>,
    pub registry: GroupRegistry,
}

/// What a group is, on this node.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub group: GroupId,
    /// This node's Raft node id in the group.
    pub node_id: u64,
    pub config: GroupConfig,
    /// Voters (node id -> address) this node initializes the group with on its first start;
    /// `None` when another node does (or it joins as a learner).
    pub bootstrap: Option<BTreeMap<u64, String>>,
    /// Replication to this node pauses while its disk is below the reserve.
    pub disk: DiskGuard,
}

/// A group's leader as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub node_id: u64,
    pub address: String,
}

/// A member of a group's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node_id: u64,
    pub address: String,
    pub voter: bool,
}

/// The group as this node sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    /// On the leader: each other member's last replicated log index.
    pub replication: Vec<(u64, Option<u64>)>,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("raft group {group} is led by node {} at {}", leader.node_id, leader.address)]
    NotLeader { group: GroupId, leader: Leader },
    #[error("raft group {group} has no leader right now")]
    LeaderNotAvailable { group: GroupId },
    /// A leader change discarded the entry before it committed: it may still commit through
    /// the new leader, or never.
    #[error("raft group {group}: a leader change discarded the entry; it may or may not commit")]
    OutcomeUnknown { group: GroupId },
    /// Refused for a reason other than leadership (e.g. a membership change under way).
    #[error("raft group {group}: {message}")]
    Refused { group: GroupId, message: String },
    #[error("raft group {group} has stopped")]
    Stopped { group: GroupId },
    #[error("raft group {group} failed: {message}")]
    Fatal { group: GroupId, message: String },
    #[error("raft group {group}: cannot load its state: {source}")]
    Load {
        group: GroupId,
        #[source]
        source: std::io::Error,
    },
}

/// A proposal handed to Raft whose reply is still to come (see [`RaftGroup::submit`]): it
/// resolves to the state machine's reply and how long each stage took.
pub type Pending<R> =
    std::pin::Pin<Box<dyn Future<Output = Result<(R, Stages), GroupError>> + Send>>;

/// How long a proposal spent in each stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stages {
    /// From submitting to Raft taking it into its queue.
    pub queued: std::time::Duration,
    /// From then to committed on a quorum (log written and fsynced there); `None` when no
    /// commit was reported (a refusal).
    pub committed: Option<std::time::Duration>,
    /// From then (or from queueing) to applied, the reply ready.
    pub applied: std::time::Duration,
}

impl Stages {
    pub fn total(&self) -> std::time::Duration {
        self.queued + self.committed.unwrap_or_default() + self.applied
    }
}

/// One Raft group on this node. Cloning is cheap; clones share the group.
pub struct RaftGroup<C: GroupTypes, SM: RaftStateMachine<C>> {
    raft: Raft<C, SM>,
    group: GroupId,
    node_id: u64,
    /// The stage histograms, labelled with the kind of group (`partition`, ...).
    stages: Arc<StageHistograms>,
    quiet: Arc<Quiescence<C, SM>>,
}

/// Handles of a group kind's stage histograms, looked up once rather than per proposal.
struct StageHistograms {
    queue: metrics::Histogram,
    commit: metrics::Histogram,
    apply: metrics::Histogram,
}

impl StageHistograms {
    fn new(kind: &Arc<str>) -> Self {
        let histogram =
            |name: &'static str| metrics::histogram!(name, "group_kind" => kind.clone());
        Self {
            queue: histogram("mq_raft_propose_queue_seconds"),
            commit: histogram("mq_raft_propose_commit_seconds"),
            apply: histogram("mq_raft_propose_apply_seconds"),
        }
    }

    fn record(&self, stages: &Stages) {
        self.queue.record(stages.queued.as_secs_f64());
        if let Some(committed) = stages.committed {
            self.commit.record(committed.as_secs_f64());
        }
        self.apply.record(stages.applied.as_secs_f64());
    }
}

impl<C: GroupTypes, SM: RaftStateMachine<C>> Clone for RaftGroup<C, SM> {
    fn clone(&self) -> Self {
        Self {
            raft: self.raft.clone(),
            group: self.group,
            node_id: self.node_id,
            stages: self.stages.clone(),
            quiet: self.quiet.clone(),
        }
    }
}

impl<C: GroupTypes, SM: RaftStateMachine<C>> fmt::Debug for RaftGroup<C, SM> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftGroup")
            .field("group", &self.group)
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl<C, SM> RaftGroup<C, SM>
where
    C: GroupTypes,
    SM: RaftStateMachine<C, SnapshotData = Vec<u8>>,
{
    /// Starts the group on `log` and `state_machine` (which recover what the store holds),
    /// registers it with the transport, and on first start initializes it with
    /// `spec.bootstrap` (every bootstrap voter may do so with the same list: Raft elects one
    /// leader).
    pub async fn start(
        context: &GroupContext,
        spec: GroupSpec,
        log: RocksLogStore<C>,
        state_machine: SM,
    ) -> Result<Self, GroupError> {
        let GroupSpec {
            group,
            node_id,
            config,
            bootstrap,
            disk,
        } = spec;
        let network = GrpcNetworkFactory::new(context.peers.clone(), group, node_id, log.clone());
        let kind = config.kind();
        let raft = Raft::new(
            node_id,
            config.openraft(),
            network,
            log.clone(),
            state_machine,
        )
        .await
        .map_err(|err| fatal(group, err))?;
        let quiet = Arc::new(Quiescence::new(
            raft.clone(),
            node_id,
            config.quiesce_after(),
            config.quiet_lease(),
        ));
        context.registry.register(
            group,
            Arc::new(
                RaftGroupRpc::new(raft.clone(), node_id, log, quiet.clone()).with_disk_guard(disk),
            ),
            quiet.clone(),
        );
        tokio::spawn(count_elections::<C>(raft.server_metrics(), kind.clone()));
        let this = Self {
            raft,
            group,
            node_id,
            stages: Arc::new(StageHistograms::new(&kind)),
            quiet,
        };
        if let Some(voters) = bootstrap {
            this.initialize(voters).await?;
        }
        Ok(this)
    }

    async fn initialize(&self, voters: BTreeMap<u64, String>) -> Result<(), GroupError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|err| fatal(self.group, err))?;
        if initialized {
            return Ok(());
        }
        let members: BTreeMap<u64, BasicNode> = voters
            .iter()
            .map(|(id, address)| (*id, BasicNode::new(address)))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(group = %self.group, node = self.node_id, ?voters, "initialized raft group");
                Ok(())
            }
            Err(RaftError::APIError(err)) => {
                tracing::debug!(group = %self.group, %err, "raft group already initialized");
                Ok(())
            }
            Err(RaftError::Fatal(err)) => Err(fatal(self.group, err)),
        }
    }
}

impl<C: GroupTypes, SM: RaftStateMachine<C>> RaftGroup<C, SM> {
    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Proposes `command` and waits until it is committed and applied; returns what the state
    /// machine replied.
    pub async fn propose(&self, command: C::D) -> Result<C::R, GroupError> {
        self.quiet.before_write().await;
        self.raft
            .client_write(command)
            .await
            .map(|response| response.data)
            .map_err(|err| self.write_error(err))
    }

    /// Hands `command` to Raft and returns once it is queued for the log, with the future of
    /// its reply: proposals submitted one after another reach the log in that order.
    pub async fn submit(&self, command: C::D) -> Result<Pending<C::R>, GroupError>
    where
        C: GroupTypes<Responder<ClientWriteResult<C>> = ProgressResponder<C, ClientWriteResult<C>>>,
    {
        let started = Instant::now();
        self.quiet.before_write().await;
        let (responder, committed, applied) = ProgressResponder::new();
        self.raft
            .client_write_ff(command, Some(responder))
            .await
            .map_err(|err| fatal(self.group, err))?;
        let queued_at = Instant::now();
        let queued = queued_at - started;
        let this = self.clone();
        Ok(Box::pin(async move {
            let committed = committed.await.ok().map(|_| queued_at.elapsed());
            let commit_at = Instant::now();
            let outcome = applied.await;
            let stages = Stages {
                queued,
                committed,
                applied: commit_at.elapsed(),
            };
            match outcome {
                Ok(Ok(response)) => {
                    this.stages.record(&stages);
                    Ok((response.data, stages))
                }
                Ok(Err(err)) => Err(this.write_error(RaftError::APIError(err))),
                Err(_) => Err(GroupError::Stopped { group: this.group }),
            }
        }))
    }

    /// Confirms that this node leads and that its state machine holds everything committed
    /// before now (ReadIndex: one round of heartbeats to a quorum).
    pub async fn ensure_current(&self) -> Result<(), GroupError> {
        self.quiet.before_write().await;
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => Ok(()),
            Err(RaftError::Fatal(err)) => Err(fatal(self.group, err)),
            Err(RaftError::APIError(_)) => Err(self.not_leader()),
        }
    }

    /// Whether this node leads the group now.
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// The leader's node id, when this node knows one.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The leader, when this node knows one and it is another node. Reads the metrics in
    /// place (cheap enough to call for every hosted group on each peer probe).
    pub fn other_leader(&self) -> Option<Leader> {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow_watched();
        let node_id = metrics.current_leader.filter(|id| *id != self.node_id)?;
        let address = metrics
            .membership_config
            .membership()
            .get_node(&node_id)?
            .addr
            .clone();
        Some(Leader { node_id, address })
    }

    /// The error for a request only the leader serves: who leads instead, when known.
    pub fn not_leader(&self) -> GroupError {
        match self.other_leader() {
            Some(leader) => GroupError::NotLeader {
                group: self.group,
                leader,
            },
            None => GroupError::LeaderNotAvailable { group: self.group },
        }
    }

    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// The members of the effective membership, voters first.
    pub fn members(&self) -> Vec<Member> {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow_watched();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let mut members: Vec<Member> = membership
            .nodes()
            .map(|(id, node)| Member {
                node_id: *id,
                address: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        members.sort_by_key(|m| (!m.voter, m.node_id));
        members
    }

    pub fn status(&self) -> GroupStatus {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow_watched();
        let membership = metrics.membership_config.membership();
        GroupStatus {
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            replication: metrics
                .replication
                .as_ref()
                .map(|replication| {
                    replication
                        .iter()
                        .filter(|(id, _)| **id != self.node_id)
                        .map(|(id, matched)| (*id, matched.as_ref().map(|log_id| log_id.index())))
                        .collect()
                })
                .unwrap_or_default(),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    /// Whether the group still runs (it stops on shutdown or a fatal storage error).
    pub fn is_running(&self) -> bool {
        self.raft.metrics().borrow_watched().running_state.is_ok()
    }

    /// The group's leader, every time it changes (first the current one); ends when the group
    /// stops.
    pub fn watch_leader(&self) -> impl futures::Stream<Item = Option<u64>> + Send + 'static {
        // The server metrics change with votes, states and leaders only (not with every
        // append, as the full metrics do).
        let metrics = self.raft.server_metrics();
        futures::stream::unfold(
            (metrics, None::<Option<u64>>),
            |(mut metrics, last)| async move {
                loop {
                    let leader = metrics.borrow_watched().current_leader;
                    if last != Some(leader) {
                        return Some((leader, (metrics, Some(leader))));
                    }
                    if metrics.changed().await.is_err() {
                        return None;
                    }
                }
            },
        )
    }

    /// On the leader: asks voter `to` to take over. Returns once asked.
    pub async fn transfer_leadership(&self, to: u64) -> Result<(), GroupError> {
        self.quiet.before_write().await;
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|err| fatal(self.group, err))
    }

    /// The current leader is gone: this node stops honouring its lease and `successor`
    /// campaigns at once (as on a leadership transfer from it). Votes still check logs.
    pub async fn elect_successor(&self, successor: u64) -> Result<(), GroupError> {
        self.quiet.wake("leader_lost");
        let vote = self.raft.metrics().borrow_watched().vote.clone();
        let request = TransferLeaderRequest::new(vote, successor, None);
        self.raft
            .handle_transfer_leader(request)
            .await
            .map(drop)
            .map_err(|err| fatal(self.group, err))
    }

    /// On the leader: adds `node_id` at `address` as a learner and waits until it caught up.
    pub async fn add_learner(&self, node_id: u64, address: &str) -> Result<(), GroupError> {
        self.quiet.before_write().await;
        self.raft
            .add_learner(node_id, BasicNode::new(address), true)
            .await
            .map(drop)
            .map_err(|err| self.write_error(err))
    }

    /// On the leader: makes `voters` (already members) the voters, in one membership change.
    pub async fn change_voters(&self, voters: BTreeSet<u64>) -> Result<(), GroupError> {
        self.quiet.before_write().await;
        self.raft
            .change_membership(voters, false)
            .await
            .map(drop)
            .map_err(|err| self.write_error(err))
    }

    /// Asks the state machine for a snapshot now.
    pub async fn trigger_snapshot(&self) -> Result<(), GroupError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|err| fatal(self.group, err))
    }

    /// Stops the group. Its data stays in the store.
    pub async fn shutdown(&self) {
        if let Err(err) = self.raft.shutdown().await {
            tracing::warn!(group = %self.group, %err, "raft shutdown");
        }
    }

    fn write_error(&self, err: RaftError<C, ClientWriteError<C>>) -> GroupError {
        let group = self.group;
        match err {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                let address = forward.leader_node.map(|node| node.addr);
                match (forward.leader_id, address) {
                    (Some(node_id), Some(address)) if node_id != self.node_id => {
                        GroupError::NotLeader {
                            group,
                            leader: Leader { node_id, address },
                        }
                    }
                    // The error named no address: what the metrics know.
                    (Some(node_id), None) if node_id != self.node_id => self.not_leader(),
                    _ => GroupError::LeaderNotAvailable { group },
                }
            }
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
                GroupError::OutcomeUnknown { group }
            }
            RaftError::APIError(err) => GroupError::Refused {
                group,
                message: err.to_string(),
            },
            RaftError::Fatal(err) => fatal(group, err),
        }
    }
}

fn fatal<C: GroupTypes>(group: GroupId, err: Fatal<C>) -> GroupError {
    match err {
        Fatal::Stopped => GroupError::Stopped { group },
        other => GroupError::Fatal {
            group,
            message: other.to_string(),
        },
    }
}

impl From<&GroupError> for mq_common::error::ApiError {
    /// The API form of a control-plane group's error: `NOT_LEADER` naming the leader (its Raft
    /// node id and address), `UNAVAILABLE` while there is none or the group stops, `TIMEOUT`
    /// when the outcome is unknown, `INTERNAL` otherwise.
    fn from(error: &GroupError) -> Self {
        use mq_common::error::{ApiError, ErrorCode, LeaderHint};
        let code = match error {
            GroupError::NotLeader { .. } => ErrorCode::NotLeader,
            GroupError::LeaderNotAvailable { .. } | GroupError::Stopped { .. } => {
                ErrorCode::Unavailable
            }
            GroupError::OutcomeUnknown { .. } => ErrorCode::Timeout,
            GroupError::Refused { .. } | GroupError::Fatal { .. } | GroupError::Load { .. } => {
                ErrorCode::Internal
            }
        };
        let leader = match error {
            GroupError::NotLeader { leader, .. } => Some(LeaderHint {
                id: leader.node_id,
                address: leader.address.clone(),
            }),
            _ => None,
        };
        ApiError::new(code, error.to_string()).with_leader(leader)
    }
}

/// Counts, until the group stops, the terms this replica entered
/// (`mq_raft_term_changes_total`), the elections it won (`mq_raft_elections_won_total`) and
/// the leader changes it saw (`mq_raft_leader_changes_total`), by group kind.
async fn count_elections<C: GroupTypes>(
    mut metrics: openraft::alias::WatchReceiverOf<C, openraft::metrics::RaftServerMetrics<C>>,
    kind: Arc<str>,
) {
    use openraft::vote::{RaftLeaderId as _, RaftVote as _};
    // Exported from the start, at zero on a replica that never led.
    for name in [
        "mq_raft_term_changes_total",
        "mq_raft_leader_changes_total",
        "mq_raft_elections_won_total",
    ] {
        metrics::counter!(name, "group_kind" => kind.clone()).increment(0);
    }
    let (mut term, mut leader, mut leading) = {
        let now = metrics.borrow_watched();
        (
            now.vote.leader_id().term(),
            now.current_leader,
            now.state == openraft::ServerState::Leader,
        )
    };
    while metrics.changed().await.is_ok() {
        let now = metrics.borrow_watched();
        let now_term = now.vote.leader_id().term();
        if now_term != term {
            metrics::counter!("mq_raft_term_changes_total", "group_kind" => kind.clone())
                .increment(1);
            term = now_term;
        }
        if now.current_leader != leader {
            metrics::counter!("mq_raft_leader_changes_total", "group_kind" => kind.clone())
                .increment(1);
            leader = now.current_leader;
        }
        let now_leading = now.state == openraft::ServerState::Leader;
        if now_leading && !leading {
            metrics::counter!("mq_raft_elections_won_total", "group_kind" => kind.clone())
                .increment(1);
        }
        leading = now_leading;
    }
}

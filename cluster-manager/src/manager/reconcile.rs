//! The reconciler's loop: on the cluster-manager leader, with its state confirmed current, it
//! takes [`crate::reconcile::plan`]'s actions in order and carries them out through
//! [`BrokerClient`] (creates and removals awaited in turn, membership changes and leadership
//! transfers left running in the manager's task set) and the Raft group (replacements).
//!
//! [`BrokerClient`]: crate::broker_client::BrokerClient

use std::sync::Arc;
use std::time::Instant;

use mq_common::ids::{BrokerId, GroupId};
use tokio_util::sync::CancellationToken;

use super::ClusterManager;
use crate::reconcile::{self, Action, MEMBERSHIP_HOLD_OFF, SETTLE_GRACE};
use crate::state::{ClusterState, ReplicaRecord};

impl ClusterManager {
    pub(super) async fn run_reconciler(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.reconcile.notified() => {}
                _ = tokio::time::sleep(self.config.reconcile_interval) => {}
            }
            self.reconcile_once().await;
        }
    }

    /// On the leader, with state known to be current: plans, then acts.
    async fn reconcile_once(&self) {
        if !self.raft.is_leader() {
            self.reports.lock().expect("reports lock").leader_since = None;
            return;
        }
        self.reports
            .lock()
            .expect("reports lock")
            .leader_since
            .get_or_insert_with(Instant::now);
        if let Err(err) = self.raft.ensure_current().await {
            tracing::debug!(%err, "reconcile skipped: state not confirmed current");
            return;
        }
        let state = self.state.read().expect("state lock").clone();
        let actions = {
            let reports = self.reports.lock().expect("reports lock");
            let asked = self.membership_asked.lock().expect("asked lock");
            reconcile::plan(&state, &reports, &asked, Instant::now())
        };
        // Replacements are committed in turn until one fails; the pass after them (at once)
        // creates the new replicas.
        let (mut replaced, mut replace_failed) = (false, false);
        for action in actions {
            match action {
                Action::CreateReplica { group, node_id, .. } => {
                    self.create_assigned(&state, group, node_id).await;
                }
                Action::Commit(command) if !replace_failed => match self.propose(command).await {
                    Ok(_) => replaced = true,
                    Err(err) => {
                        tracing::warn!(%err, "replica replacement not committed");
                        replace_failed = true;
                    }
                },
                Action::Commit(_) => {}
                Action::ChangeMembership {
                    leader,
                    group,
                    members,
                } => self.change_membership(&state, leader, group, &members),
                Action::TransferLeader { leader, group, to } => {
                    self.transfer_leader(&state, leader, group, to)
                }
                Action::RemoveReplica { broker, group } => {
                    self.remove_replica(&state, broker, group).await
                }
            }
        }
        if replaced && !replace_failed {
            self.reconcile.notify_one();
        }
    }

    /// Creates the assigned replica `node_id` of `group` on its broker.
    async fn create_assigned(&self, state: &ClusterState, group: GroupId, node_id: u64) {
        let found = state.topics.values().find_map(|topic| {
            let partition = topic.partitions.iter().find(|p| p.group == group)?;
            let replica = partition.replicas.iter().find(|r| r.node_id == node_id)?;
            Some((topic, partition, replica))
        });
        if let Some((topic, partition, replica)) = found {
            self.create_replica(topic, partition, replica).await;
        }
    }

    /// Asks `leader` to make `members` the voters of `group`, in the background: the group is
    /// not asked again until the answer (plus a grace for heartbeats to show the new voters)
    /// or the hold-off.
    fn change_membership(
        &self,
        state: &ClusterState,
        leader: BrokerId,
        group: GroupId,
        members: &[ReplicaRecord],
    ) {
        self.membership_asked
            .lock()
            .expect("asked lock")
            .insert(group, Instant::now());
        let call = self
            .brokers
            .change_membership(state, leader, group, members);
        let asked = self.membership_asked.clone();
        let reconcile = self.reconcile.clone();
        self.spawn(async move {
            match call.await {
                Ok(()) => {
                    tracing::info!(%group, "membership converged");
                    // Heartbeats show the new voters within an interval: wait for them
                    // rather than asking again.
                    asked
                        .lock()
                        .expect("asked lock")
                        .insert(group, Instant::now() + SETTLE_GRACE - MEMBERSHIP_HOLD_OFF);
                }
                Err(err) => {
                    tracing::warn!(%group, %err, "membership change failed");
                    // Asked again at the next reconcile.
                    asked.lock().expect("asked lock").remove(&group);
                }
            }
            reconcile.notify_one();
        });
    }

    /// Asks `leader` to hand leadership of `group` to replica `to`, in the background.
    fn transfer_leader(&self, state: &ClusterState, leader: BrokerId, group: GroupId, to: u64) {
        self.reports
            .lock()
            .expect("reports lock")
            .transfer_asked
            .insert(group, Instant::now());
        let call = self.brokers.transfer_leader(state, leader, group, to);
        self.spawn(async move {
            match call.await {
                Ok(()) => tracing::info!(%group, to, "leadership moved to the preferred replica"),
                Err(err) => tracing::debug!(%group, %err, "leadership transfer not taken"),
            }
        });
    }

    /// Asks `broker` to drop its replica of `group`; forgets it on success.
    async fn remove_replica(&self, state: &ClusterState, broker: BrokerId, group: GroupId) {
        match self.brokers.remove_replica(state, broker, group).await {
            Ok(()) => {
                tracing::info!(%broker, %group, "stale replica removed");
                if let Some((_, replicas)) = self
                    .reports
                    .lock()
                    .expect("reports lock")
                    .brokers
                    .get_mut(&broker)
                {
                    replicas.retain(|r| r.group != group);
                }
            }
            Err(err) => tracing::warn!(%broker, %group, %err, "remove replica failed"),
        }
    }

    /// Runs `task` in the manager's task set (aborted on shutdown), dropping finished ones.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }
}

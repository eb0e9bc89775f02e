//! The reconciler: on the cluster-manager leader, with its state confirmed current, it makes
//! brokers host exactly their assigned replicas, re-creates replicas of dead or draining
//! brokers elsewhere, converges partition memberships, and moves leaders to preferred
//! replicas. Each step decides from the committed state and the brokers' last reports.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mq_common::ids::{BrokerId, GroupId, broker_of_node};
use mq_proto::internal as ipb;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{ACTION_HOLD_OFF, ClusterManager, ReplicaReport, Reports, SETTLE_GRACE, raft_members};
use crate::placement::{self, Candidate};
use crate::state::{ClusterState, MetaCommand, PartitionRecord, TopicRecord};

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

    /// On the leader, with state known to be current: each live broker hosts exactly its
    /// assigned replicas.
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
        if let Err(err) = self
            .raft
            .ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex)
            .await
        {
            tracing::debug!(%err, "reconcile skipped: state not confirmed current");
            return;
        }
        let state = self.state.read().expect("state lock").clone();
        let partitions: HashMap<GroupId, &PartitionRecord> = state
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(|p| (p.group, p)))
            .collect();
        let mut creates = Vec::new();
        let mut removes = Vec::new();
        {
            let reports = self.reports.lock().expect("reports lock");
            for broker in self.live_brokers(&state, &reports) {
                let hosted: HashMap<GroupId, u64> = reports
                    .brokers
                    .get(&broker.id)
                    .map(|(_, replicas)| replicas.iter().map(|r| (r.group, r.node_id)).collect())
                    .unwrap_or_default();
                let assigned = state.replicas_on(broker.id);
                for (topic, partition, replica) in &assigned {
                    let recently_asked = reports
                        .requested
                        .get(&(broker.id, partition.group))
                        .is_some_and(|at| at.elapsed() < Duration::from_secs(10));
                    if hosted.get(&partition.group) != Some(&replica.node_id) && !recently_asked {
                        creates.push(((*topic).clone(), (*partition).clone(), (*replica).clone()));
                    }
                }
                for group in hosted.keys() {
                    if assigned.iter().any(|(_, p, _)| p.group == *group) {
                        continue;
                    }
                    // A replica moved away leaves only once the group's voters are the
                    // assigned ones (its replacement caught up); a deleted topic's at once.
                    let moved_out = match partitions.get(group) {
                        None => true,
                        Some(partition) => self
                            .leader_report(&reports, *group)
                            .is_some_and(|leader| settled(partition, &leader)),
                    };
                    if moved_out {
                        removes.push((broker.id, *group));
                    }
                }
            }
        }
        for (topic, partition, replica) in &creates {
            self.create_replica(topic, partition, replica).await;
        }
        self.heal(&state).await;
        self.converge_memberships(&state);
        self.balance_leaders(&state);
        for (broker, group) in removes {
            let Some(mut client) = self.broker_client(broker) else {
                continue;
            };
            let request = ipb::RemoveReplicaRequest { group_id: group.0 };
            match tokio::time::timeout(Duration::from_secs(10), client.remove_replica(request))
                .await
            {
                Ok(Ok(_)) => {
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
                other => tracing::warn!(%broker, %group, ?other, "remove replica failed"),
            }
        }
    }

    /// The report of the group's leader: from a live broker, at the highest term.
    pub(super) fn leader_report(&self, reports: &Reports, group: GroupId) -> Option<ReplicaReport> {
        reports
            .brokers
            .iter()
            .filter(|(broker, _)| self.is_alive(reports, **broker))
            .flat_map(|(_, (_, replicas))| replicas.iter())
            .filter(|r| r.group == group && r.leader_node_id == Some(r.node_id))
            .max_by_key(|r| r.term)
            .cloned()
    }

    /// Every partition whose leader is known, with the leader's report.
    fn led_partitions<'a>(
        &self,
        state: &'a ClusterState,
        reports: &Reports,
    ) -> Vec<(&'a TopicRecord, &'a PartitionRecord, ReplicaReport)> {
        state
            .topics
            .values()
            .flat_map(|topic| topic.partitions.iter().map(move |p| (topic, p)))
            .filter_map(|(topic, partition)| {
                let leader = self.leader_report(reports, partition.group)?;
                Some((topic, partition, leader))
            })
            .collect()
    }

    /// Whether `broker` has been dead for longer than the replace delay.
    fn gone_for_good(&self, reports: &Reports, broker: BrokerId) -> bool {
        let last_seen = reports
            .brokers
            .get(&broker)
            .map(|(seen, _)| *seen)
            .or(reports.leader_since);
        last_seen.is_some_and(|seen| {
            seen.elapsed() > self.config.broker_session_timeout + self.config.replace_delay
        })
    }

    /// Live brokers that may take replicas, with their load.
    pub(super) fn candidates(&self, state: &ClusterState, reports: &Reports) -> Vec<Candidate> {
        let counts = state.replica_counts();
        self.live_brokers(state, reports)
            .into_iter()
            .filter(|b| !b.draining)
            .map(|b| {
                let (replicas, leaders) = counts.get(&b.id).copied().unwrap_or_default();
                Candidate {
                    id: b.id,
                    rack: b.rack.clone(),
                    replicas,
                    leaders,
                }
            })
            .collect()
    }

    /// Replicas on brokers dead past the replace delay, or draining, are re-created on other
    /// live brokers: one replica per partition at a time, once its group is settled.
    async fn heal(&self, state: &ClusterState) {
        let mut commands = Vec::new();
        {
            let reports = self.reports.lock().expect("reports lock");
            let mut candidates = self.candidates(state, &reports);
            let leaving: Vec<BrokerId> = state
                .brokers
                .values()
                .filter(|b| b.draining || self.gone_for_good(&reports, b.id))
                .map(|b| b.id)
                .collect();
            if leaving.is_empty() {
                return;
            }
            for topic in state.topics.values() {
                for partition in &topic.partitions {
                    let Some(old) = partition
                        .replicas
                        .iter()
                        .find(|r| leaving.contains(&r.broker))
                    else {
                        continue;
                    };
                    let Some(leader) = self.leader_report(&reports, partition.group) else {
                        continue;
                    };
                    if !settled(partition, &leader) {
                        continue;
                    }
                    let others: Vec<BrokerId> = partition
                        .replicas
                        .iter()
                        .filter(|r| r.node_id != old.node_id)
                        .map(|r| r.broker)
                        .collect();
                    let Some(to) = placement::replacement(&candidates, &others) else {
                        tracing::warn!(topic = %topic.name, partition = partition.partition, "no live broker can take a replica of a leaving broker");
                        continue;
                    };
                    if let Some(c) = candidates.iter_mut().find(|c| c.id == to) {
                        c.replicas += 1;
                    }
                    tracing::info!(topic = %topic.name, partition = partition.partition, from = %old.broker, %to, "re-creating replica");
                    commands.push(MetaCommand::ReplaceReplica {
                        group: partition.group,
                        old_node_id: old.node_id,
                        new_broker: to,
                    });
                }
            }
        }
        for command in commands {
            if let Err(err) = self.propose(command).await {
                tracing::warn!(%err, "replica replacement not committed");
                return;
            }
        }
        self.reconcile.notify_one();
    }

    /// Asks partition leaders to make the assigned replicas their voters (adding new replicas
    /// as learners first, once their brokers host them).
    fn converge_memberships(&self, state: &ClusterState) {
        let mut asks = Vec::new();
        {
            let reports = self.reports.lock().expect("reports lock");
            for (_, partition, leader) in self.led_partitions(state, &reports) {
                if settled(partition, &leader) {
                    continue;
                }
                let hosted = |node: u64, broker: BrokerId| {
                    reports
                        .brokers
                        .get(&broker)
                        .is_some_and(|(_, replicas)| replicas.iter().any(|r| r.node_id == node))
                };
                if !partition
                    .replicas
                    .iter()
                    .all(|r| hosted(r.node_id, r.broker))
                {
                    continue;
                }
                {
                    let mut asked = self.membership_asked.lock().expect("asked lock");
                    if asked
                        .get(&partition.group)
                        .is_some_and(|at| at.elapsed() < ACTION_HOLD_OFF)
                    {
                        continue;
                    }
                    asked.insert(partition.group, Instant::now());
                }
                let members = raft_members(state, &partition.replicas);
                asks.push((broker_of_node(leader.node_id), partition.group, members));
            }
        }
        for (broker, group, members) in asks {
            let Some(mut client) = self.broker_client(broker) else {
                continue;
            };
            let reconcile = self.reconcile_handle();
            let asked = self.membership_asked.clone();
            tokio::spawn(async move {
                let request = ipb::ChangeMembershipRequest {
                    group_id: group.0,
                    members,
                };
                match client.change_membership(request).await {
                    Ok(_) => {
                        tracing::info!(%group, "membership converged");
                        // Heartbeats show the new voters within an interval: wait for them
                        // rather than asking again.
                        asked
                            .lock()
                            .expect("asked lock")
                            .insert(group, Instant::now() + SETTLE_GRACE - ACTION_HOLD_OFF);
                    }
                    Err(status) => {
                        tracing::warn!(%group, %status, "membership change failed");
                        // Asked again at the next reconcile.
                        asked.lock().expect("asked lock").remove(&group);
                    }
                }
                reconcile.notify_one();
            });
        }
    }

    /// Moves leadership to each partition's preferred replica (the first assigned one on a
    /// live, non-draining broker) once it is caught up, and off draining brokers.
    fn balance_leaders(&self, state: &ClusterState) {
        let mut asks = Vec::new();
        {
            let mut reports = self.reports.lock().expect("reports lock");
            for (_, partition, leader) in self.led_partitions(state, &reports) {
                if !settled(partition, &leader) {
                    continue;
                }
                let usable = |broker: BrokerId| {
                    self.is_alive(&reports, broker)
                        && state.brokers.get(&broker).is_some_and(|b| !b.draining)
                };
                let Some(preferred) = partition
                    .replicas
                    .iter()
                    .find(|r| usable(r.broker) && leader.in_sync(r.node_id))
                else {
                    continue;
                };
                if preferred.node_id == leader.node_id {
                    continue;
                }
                let first_choice = partition.replicas.iter().find(|r| usable(r.broker));
                let leader_usable = usable(broker_of_node(leader.node_id));
                // Only for the preferred replica itself, or to get off a draining broker.
                if leader_usable && first_choice.map(|r| r.node_id) != Some(preferred.node_id) {
                    continue;
                }
                if reports
                    .transfer_asked
                    .get(&partition.group)
                    .is_some_and(|at| at.elapsed() < Duration::from_secs(5))
                {
                    continue;
                }
                reports
                    .transfer_asked
                    .insert(partition.group, Instant::now());
                asks.push((
                    broker_of_node(leader.node_id),
                    partition.group,
                    preferred.node_id,
                ));
            }
        }
        for (broker, group, to) in asks {
            let Some(mut client) = self.broker_client(broker) else {
                continue;
            };
            tokio::spawn(async move {
                let request = ipb::TransferLeaderRequest {
                    group_id: group.0,
                    to_node_id: to,
                };
                if let Err(status) = client.transfer_leader(request).await {
                    tracing::debug!(%group, %status, "leadership transfer not taken");
                } else {
                    tracing::info!(%group, to, "leadership moved to the preferred replica");
                }
            });
        }
    }

    fn reconcile_handle(&self) -> Arc<Notify> {
        self.reconcile.clone()
    }
}

/// Whether the group's voters (per its leader) are exactly the assigned replicas.
fn settled(partition: &PartitionRecord, leader: &ReplicaReport) -> bool {
    let mut assigned: Vec<u64> = partition.replicas.iter().map(|r| r.node_id).collect();
    let mut voters = leader.voters.clone();
    assigned.sort_unstable();
    voters.sort_unstable();
    assigned == voters
}

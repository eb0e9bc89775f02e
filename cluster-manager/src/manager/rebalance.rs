//! Rebalancing on request: the replica moves that even out the live brokers' loads (decided by
//! [`placement::rebalance`]) and the preferred leaders after them ([`placement::leader_moves`]),
//! committed; the reconciler then carries them out.

use std::collections::HashMap;
use std::time::Instant;

use mq_common::ids::{BrokerId, GroupId, TopicName};

use super::ClusterManager;
use crate::error::CmError;
use crate::placement::{self, Move};
use crate::state::{ClusterState, MetaCommand, MetaResponse};

/// Stands for a moved replica's new node id, which is assigned only when the move commits.
const MOVED: u64 = u64::MAX;

/// What a rebalance decided, before anything is committed.
struct Decided {
    moves: Vec<Move>,
    /// `(group, preferred replica)`; [`MOVED`] names the replica a move creates.
    leader_moves: Vec<(GroupId, u64)>,
    named: HashMap<GroupId, (TopicName, u32)>,
}

impl ClusterManager {
    /// Decides and commits the replica moves that even out the live brokers' loads.
    pub async fn rebalance(&self) -> Result<Vec<(TopicName, u32, Move)>, CmError> {
        if !self.raft.is_leader() {
            return Err(self.not_leader());
        }
        let decided = {
            let state = self.state.read().expect("state lock");
            let reports = self.reports.lock().expect("reports lock");
            decide(&state, &reports.candidates(&state, Instant::now()))
        };
        let mut done = Vec::new();
        for m in decided.moves {
            let response = self
                .propose(MetaCommand::ReplaceReplica {
                    group: m.group,
                    old_node_id: m.old_node_id,
                    new_broker: m.to,
                })
                .await?;
            if response == MetaResponse::Done
                && let Some((topic, partition)) = decided.named.get(&m.group)
            {
                tracing::info!(%topic, partition, from = %m.from, to = %m.to, "moving replica");
                done.push((topic.clone(), *partition, m));
            }
        }
        for (group, node_id) in decided.leader_moves {
            let node_id = match node_id {
                MOVED => self.moved_replica(group, &done),
                node_id => Some(node_id),
            };
            if let Some(node_id) = node_id {
                self.propose(MetaCommand::SetPreferredLeader { group, node_id })
                    .await?;
            }
        }
        self.reconcile.notify_one();
        Ok(done)
    }

    /// The node id a committed move gave the replica it created in `group`.
    fn moved_replica(&self, group: GroupId, done: &[(TopicName, u32, Move)]) -> Option<u64> {
        let moved_to = done
            .iter()
            .find(|(_, _, m)| m.group == group)
            .map(|(_, _, m)| m.to)?;
        let state = self.state.read().expect("state lock");
        state
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.group == group)
            .and_then(|p| p.replicas.iter().find(|r| r.broker == moved_to))
            .map(|r| r.node_id)
    }
}

/// The moves, and the preferred leaders after them (a moved replica keeps its position).
fn decide(state: &ClusterState, candidates: &[placement::Candidate]) -> Decided {
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
    let moves = placement::rebalance(candidates, &partitions);
    let mut placed = partitions;
    for m in &moves {
        if let Some((_, replicas)) = placed.iter_mut().find(|(g, _)| *g == m.group)
            && let Some(slot) = replicas.iter_mut().find(|(id, _)| *id == m.old_node_id)
        {
            *slot = (MOVED, m.to);
        }
    }
    let leader_moves = placement::leader_moves(candidates, &placed);
    let named = state
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.group, (t.name.clone(), p.partition)))
        })
        .collect();
    Decided {
        moves,
        leader_moves,
        named,
    }
}

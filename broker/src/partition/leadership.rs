//! Who leads a partition, and moving leadership: transfers asked by the cluster manager or on
//! shutdown, and electing a successor at once when the leader's broker is found dead (see
//! `peer_watch`).

use mq_raft::Leader;

use super::Partition;
use crate::error::BrokerError;

impl Partition {
    /// Whether this replica leads its group now.
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// The error for a request that needs the leader, with the leader when known.
    pub fn not_leader_error(&self) -> BrokerError {
        self.group_error(self.raft.not_leader())
    }

    /// On the leader: asks `to` (a voter) to take over leadership. Returns at once.
    pub async fn transfer_leadership(&self, to: u64) -> Result<(), BrokerError> {
        if !self.is_leader() {
            return Err(self.not_leader_error());
        }
        self.raft
            .transfer_leadership(to)
            .await
            .map_err(|err| self.group_error(err))
    }

    /// The leader's node id and broker address, when this replica follows a known leader.
    /// Called for every hosted partition on each peer probe: cheap.
    pub fn leader_address(&self) -> Option<(u64, String)> {
        self.raft
            .other_leader()
            .map(|Leader { node_id, address }| (node_id, address))
    }

    /// The addresses of the group's other voters (this replica left out), with the leader's
    /// node id when this replica follows one.
    pub fn other_voters(&self) -> (Option<u64>, Vec<(u64, String)>) {
        let voters = self
            .raft
            .members()
            .into_iter()
            .filter(|m| m.voter && m.node_id != self.spec.node_id)
            .map(|m| (m.node_id, m.address))
            .collect();
        (self.raft.leader(), voters)
    }

    /// The leader at `dead_address` is gone: this follower stops honouring its lease, and the
    /// group's successor (the lowest-id voter elsewhere; every follower picks the same) starts
    /// an election at once instead of after an election timeout plus the lease. Voting still
    /// checks logs, so a successor that is behind simply loses and a regular election follows.
    pub async fn leader_lost(&self, dead_address: &str) -> Result<(), BrokerError> {
        let Some(leader) = self.raft.leader() else {
            return Ok(());
        };
        let voters: Vec<(u64, String)> = self
            .raft
            .members()
            .into_iter()
            .filter(|m| m.voter)
            .map(|m| (m.node_id, m.address))
            .collect();
        let Some(successor) = successor_of_lost_leader(leader, &voters, dead_address) else {
            return Ok(());
        };
        tracing::info!(group = %self.spec.group, leader, successor, "leader's broker is unreachable; electing a successor");
        self.raft
            .elect_successor(successor)
            .await
            .map_err(|err| self.group_error(err))
    }

    /// The voter best placed to take over from this leader: the one with the most of the log
    /// (ties: the lowest node id). `None` unless this replica leads and has another voter.
    pub fn successor(&self) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        let status = self.status();
        status
            .followers
            .iter()
            .filter(|(id, _)| status.voters.contains(id))
            .max_by_key(|(id, matched)| (matched.unwrap_or(0), std::cmp::Reverse(*id)))
            .map(|(id, _)| *id)
    }

    /// This replica's leader, every time it changes (first the current one).
    pub fn watch_leader(&self) -> impl futures::Stream<Item = Option<u64>> + Send + 'static {
        self.raft.watch_leader()
    }
}

/// The voter that campaigns when `leader`'s broker at `dead_address` is gone: the lowest-id
/// voter (of `voters`, by node id and address) other than the leader and not at that address.
fn successor_of_lost_leader(
    leader: u64,
    voters: &[(u64, String)],
    dead_address: &str,
) -> Option<u64> {
    voters
        .iter()
        .filter(|(id, address)| *id != leader && address != dead_address)
        .map(|(id, _)| *id)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_is_the_lowest_voter_away_from_the_dead_leader() {
        let voters = [
            (3, "b:3".to_owned()),
            (1, "b:1".to_owned()),
            (2, "b:2".to_owned()),
        ];
        assert_eq!(successor_of_lost_leader(1, &voters, "b:1"), Some(2));
        assert_eq!(successor_of_lost_leader(2, &voters, "b:2"), Some(1));
        // A voter that shares the dead leader's address is gone too.
        let shared = [
            (1, "b:1".to_owned()),
            (2, "b:1".to_owned()),
            (3, "b:3".to_owned()),
        ];
        assert_eq!(successor_of_lost_leader(1, &shared, "b:1"), Some(3));
        assert_eq!(successor_of_lost_leader(1, &voters[1..2], "b:1"), None);
    }
}

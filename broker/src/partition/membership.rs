//! Making the cluster manager's assigned replicas a partition's voters: new replicas join as
//! learners and catch up first, then one membership change sets the voters.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Partition;
use crate::error::BrokerError;

impl Partition {
    /// On the leader: makes `members` (node id -> broker address) the voters. New members
    /// join as learners and are waited for until they caught up (at most `timeout`); then one
    /// membership change sets the voters, removing those not listed.
    pub async fn change_membership(
        &self,
        members: BTreeMap<u64, String>,
        timeout: Duration,
    ) -> Result<(), BrokerError> {
        if members.is_empty() {
            return Err(BrokerError::invalid(
                "members",
                "at least one member is required",
            ));
        }
        let work = async {
            let current = self.status();
            for (node_id, address) in &members {
                if !current.voters.contains(node_id) && !current.learners.contains(node_id) {
                    tracing::info!(group = %self.spec.group, node_id, %address, "adding learner");
                    self.raft
                        .add_learner(*node_id, address)
                        .await
                        .map_err(|err| self.group_error(err))?;
                }
            }
            let voters: BTreeSet<u64> = members.keys().copied().collect();
            let now: BTreeSet<u64> = self.status().voters.into_iter().collect();
            if voters != now {
                tracing::info!(group = %self.spec.group, ?voters, "changing voters");
                self.raft
                    .change_voters(voters)
                    .await
                    .map_err(|err| self.group_error(err))?;
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout(timeout)),
        }
    }
}

//! Brokers: registration, heartbeats (every node keeps them, so a new leader starts warm),
//! liveness and load, and decommissioning.

use std::time::{Duration, Instant};

use mq_common::ids::BrokerId;

use super::ClusterManager;
use crate::error::CmError;
use crate::reports::ReplicaReport;
use crate::state::{BrokerRecord, MetaCommand};

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

impl ClusterManager {
    pub fn brokers(&self) -> Vec<BrokerView> {
        let state = self.state.read().expect("state lock");
        let counts = state.replica_counts();
        let reports = self.reports.lock().expect("reports lock");
        let now = Instant::now();
        state
            .brokers
            .values()
            .map(|broker| {
                let report = reports.brokers.get(&broker.id);
                BrokerView {
                    alive: reports.is_alive(broker.id, now),
                    broker: broker.clone(),
                    replicas: counts.get(&broker.id).map_or(0, |(replicas, _)| *replicas),
                    leaders: report.map_or(0, |(_, replicas)| {
                        replicas
                            .iter()
                            .filter(|r| r.leader_node_id == Some(r.node_id))
                            .count()
                    }),
                    last_heartbeat: report.map(|(seen, _)| now.saturating_duration_since(*seen)),
                }
            })
            .collect()
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
            && self
                .reports
                .lock()
                .expect("reports lock")
                .is_alive(broker.id, Instant::now())
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
        let changed =
            self.reports
                .lock()
                .expect("reports lock")
                .heartbeat(broker, replicas, Instant::now());
        if changed {
            self.reconcile.notify_one();
        }
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
            let others = reports
                .candidates(&state, Instant::now())
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
}

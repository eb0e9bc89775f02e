//! Fast detection of a dead partition leader. Raft alone notices a dead leader only after an
//! election timeout, and openraft's followers then refuse votes for a further leader lease
//! (the maximum election timeout): ~5 s with the relaxed timers many partitions need. This
//! task probes the brokers holding the other replicas of partitions hosted here (one health
//! check per broker, not per partition); when a leader's broker fails `failures` probes in a
//! row, every partition it led elects a successor at once
//! ([`crate::partition::Partition::leader_lost`]) — but only where this broker still reaches a
//! majority of the partition's voters. A broker cut off from the others would otherwise start
//! an election it cannot win: its term grows, and when the network heals that term makes the
//! group's real leader step down (a second outage, after the fault).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mq_raft::transport::Peers;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::replicas::Replicas;

/// When a leader's broker counts as dead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerWatchConfig {
    /// Probe the leaders' brokers this often (or as soon as the last round ended, when a probe
    /// waited longer); 0 turns fast failover off. A broker that answers nothing is declared
    /// dead after `failures` rounds of `max(probe_interval, probe_timeout)`.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// A probe without an answer within this long fails.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// Consecutive failed probes after which the broker is dead.
    pub failures: u32,
}

impl Default for PeerWatchConfig {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(400),
            failures: 3,
        }
    }
}

/// Probes until `shutdown`.
pub async fn run(
    config: PeerWatchConfig,
    replicas: Arc<Replicas>,
    peers: Arc<Peers>,
    shutdown: CancellationToken,
) {
    if config.probe_interval.is_zero() {
        return;
    }
    let mut failures: HashMap<String, u32> = HashMap::new();
    // Brokers declared dead, and when: not declared again for a while.
    let mut declared: HashMap<String, Instant> = HashMap::new();
    // A round waits for its slowest probe; the next one starts on the next tick, not a whole
    // interval after that (a frozen broker is declared dead after 1.2 s, not 1.8 s).
    let mut ticks = tokio::time::interval(config.probe_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let partitions = replicas.all();
        let peers_of_partitions: HashSet<String> = partitions
            .iter()
            .flat_map(|p| p.other_voters().1.into_iter().map(|(_, address)| address))
            .collect();
        failures.retain(|address, _| peers_of_partitions.contains(address));
        let probes = peers_of_partitions.iter().map(|address| {
            let channel = peers.channel(address);
            let timeout = config.probe_timeout;
            async move {
                let alive = match channel {
                    Ok(channel) => {
                        let mut health =
                            tonic_health::pb::health_client::HealthClient::new(channel);
                        let check = health.check(tonic_health::pb::HealthCheckRequest {
                            service: String::new(),
                        });
                        matches!(tokio::time::timeout(timeout, check).await, Ok(Ok(_)))
                    }
                    Err(_) => false,
                };
                (address.clone(), alive)
            }
        });
        let answers = futures::future::join_all(probes).await;
        let reachable: HashSet<String> = answers
            .iter()
            .filter(|(_, alive)| *alive)
            .map(|(address, _)| address.clone())
            .collect();
        for (address, alive) in answers {
            if alive {
                failures.remove(&address);
                declared.remove(&address);
                continue;
            }
            let count = failures.entry(address.clone()).or_default();
            *count += 1;
            let recently = declared
                .get(&address)
                .is_some_and(|at| at.elapsed() < Duration::from_secs(5));
            if *count < config.failures || recently {
                continue;
            }
            let led: Vec<_> = partitions
                .iter()
                .filter(|p| {
                    p.leader_address()
                        .is_some_and(|(_, leader)| leader == address)
                })
                .collect();
            if led.is_empty() {
                continue;
            }
            tracing::warn!(%address, probes = *count, "leader broker unreachable");
            declared.insert(address.clone(), Instant::now());
            for partition in led {
                let (_, voters) = partition.other_voters();
                let reached = voters
                    .iter()
                    .filter(|(_, voter)| reachable.contains(voter))
                    .count();
                if !majority_reached(voters.len() + 1, reached + 1) {
                    tracing::info!(group = %partition.spec().group, reached = reached + 1, voters = voters.len() + 1, "not electing a successor: this broker reaches no majority of the voters");
                    continue;
                }
                if let Err(err) = partition.leader_lost(&address).await {
                    tracing::debug!(group = %partition.spec().group, %err, "successor election");
                }
            }
        }
    }
}

/// Whether `reached` of `voters` (this replica among both) make a majority: an election this
/// side starts can be won.
fn majority_reached(voters: usize, reached: usize) -> bool {
    reached * 2 > voters
}

#[cfg(test)]
mod tests {
    use super::majority_reached;

    #[test]
    fn a_successor_is_elected_only_where_a_majority_of_voters_is_reached() {
        // Three voters: this replica and one other reachable peer suffice; alone it does not.
        assert!(majority_reached(3, 2));
        assert!(!majority_reached(3, 1));
        // Five voters need three; four voters need three too.
        assert!(!majority_reached(5, 2));
        assert!(majority_reached(5, 3));
        assert!(!majority_reached(4, 2));
        assert!(majority_reached(4, 3));
    }
}

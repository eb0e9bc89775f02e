//! Fast detection of a dead partition leader. Raft alone notices a dead leader only after an
//! election timeout, and openraft's followers then refuse votes for a further leader lease
//! (the maximum election timeout): ~5 s with the relaxed timers many partitions need. This
//! task probes the brokers that lead partitions hosted here (one health check per broker, not
//! per partition); when one fails `failures` probes in a row, every partition it led elects a
//! successor at once ([`crate::partition::Partition::leader_lost`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mq_common::shutdown::CancellationToken;
use mq_raft::transport::Peers;
use serde::{Deserialize, Serialize};

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
        let leaders: HashSet<String> = partitions
            .iter()
            .filter_map(|p| p.leader_address().map(|(_, address)| address))
            .collect();
        failures.retain(|address, _| leaders.contains(address));
        let probes = leaders.iter().map(|address| {
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
        for (address, alive) in futures::future::join_all(probes).await {
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
            tracing::warn!(%address, probes = *count, "leader broker unreachable");
            declared.insert(address.clone(), Instant::now());
            for partition in &partitions {
                if partition
                    .leader_address()
                    .is_some_and(|(_, leader)| leader == address)
                    && let Err(err) = partition.leader_lost(&address).await
                {
                    tracing::debug!(group = %partition.spec().group, %err, "successor election");
                }
            }
        }
    }
}

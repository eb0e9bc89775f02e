//! Faults, each applied for a bounded time and then healed: process faults (SIGKILL,
//! SIGSTOP, rolling restarts) on any cluster, network faults (cuts, slow links) on a cluster
//! whose nodes live in network namespaces.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;

use crate::cluster::Cluster;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL a random broker; restart it at heal.
    KillBroker,
    /// SIGKILL the leader of a random partition of the topic; restart it at heal.
    KillLeader,
    /// SIGKILL the cluster-manager leader; restart it at heal.
    KillManagerLeader,
    /// SIGSTOP a random broker; SIGCONT at heal.
    PauseBroker,
    /// SIGSTOP the cluster-manager leader; SIGCONT at heal.
    PauseManagerLeader,
    /// SIGTERM and restart every broker, one after the other (heals itself).
    RollingRestart,
    /// Cut one random node off from every other node.
    Isolate,
    /// Cut the cluster into a majority and a minority holding a manager and the leader of
    /// partition 0.
    Split,
    /// Two halves that cannot see each other, and one node that sees both.
    Bridge,
    /// Slow a random broker's link to 256 kbit/s (queueing up to 300 ms) both ways.
    Slow,
    /// Delay everything to and from a random broker by 50 to 250 ms (its delaying proxy).
    Delay,
    /// Restart a random broker with its wall clock 1 to 10 minutes off (libfaketime; the
    /// monotonic clock, which Raft's timers use, is left alone); restart it right at heal.
    ClockSkew,
}

impl Fault {
    pub const ALL: [Fault; 12] = [
        Fault::KillBroker,
        Fault::KillLeader,
        Fault::KillManagerLeader,
        Fault::PauseBroker,
        Fault::PauseManagerLeader,
        Fault::RollingRestart,
        Fault::Isolate,
        Fault::Split,
        Fault::Bridge,
        Fault::Slow,
        Fault::Delay,
        Fault::ClockSkew,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillBroker => "kill-broker",
            Fault::KillLeader => "kill-leader",
            Fault::KillManagerLeader => "kill-manager-leader",
            Fault::PauseBroker => "pause-broker",
            Fault::PauseManagerLeader => "pause-manager-leader",
            Fault::RollingRestart => "rolling-restart",
            Fault::Isolate => "isolate",
            Fault::Split => "split",
            Fault::Bridge => "bridge",
            Fault::Slow => "slow",
            Fault::Delay => "delay",
            Fault::ClockSkew => "clock-skew",
        }
    }

    /// Whether the fault needs the brokers behind delaying proxies.
    pub fn needs_proxies(self) -> bool {
        self == Fault::Delay
    }

    /// Whether the fault needs the nodes in network namespaces.
    pub fn needs_namespaces(self) -> bool {
        matches!(
            self,
            Fault::Isolate | Fault::Split | Fault::Bridge | Fault::Slow
        )
    }
}

impl FromStr for Fault {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> anyhow::Result<Self> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .with_context(|| {
                let names: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault '{name}' (one of {})", names.join(", "))
            })
    }
}

/// What to undo when a fault is healed.
#[derive(Debug)]
enum Undo {
    Restart {
        broker: Option<u32>,
        manager: Option<usize>,
    },
    Resume {
        broker: Option<u32>,
        manager: Option<usize>,
    },
    Heal,
    Unslow(usize),
    Unskew(u32),
    Undelay(u32),
    Nothing,
}

/// A fault in force.
#[derive(Debug)]
pub struct Applied {
    pub fault: Fault,
    /// Which nodes, for the history.
    pub description: String,
    undo: Undo,
}

/// Every host of a namespaced cluster: managers then brokers.
fn hosts(cluster: &Cluster) -> usize {
    cluster.managers.len() + cluster.brokers.len()
}

fn host_name(cluster: &Cluster, host: usize) -> String {
    if host < cluster.managers.len() {
        cluster.managers[host].name().to_owned()
    } else {
        cluster.brokers[host - cluster.managers.len()]
            .name()
            .to_owned()
    }
}

/// Starts `fault` on `cluster`, choosing its targets with `rng`.
pub async fn apply(
    fault: Fault,
    cluster: &mut Cluster,
    topic: &str,
    partitions: u32,
    rng: &mut SmallRng,
) -> anyhow::Result<Applied> {
    let client = cluster.client();
    let brokers = cluster.brokers.len() as u32;
    let (description, undo) = match fault {
        Fault::KillBroker | Fault::PauseBroker | Fault::KillLeader => {
            let broker = if fault == Fault::KillLeader {
                let partition = rng.random_range(0..partitions);
                cluster
                    .leader_of(&client, topic, partition, Duration::from_secs(30))
                    .await?
            } else {
                rng.random_range(1..=brokers)
            };
            let node = cluster.broker(broker);
            if fault == Fault::PauseBroker {
                node.pause()?;
                (
                    format!("paused {}", node.name()),
                    Undo::Resume {
                        broker: Some(broker),
                        manager: None,
                    },
                )
            } else {
                node.kill9()?;
                (
                    format!("killed {}", node.name()),
                    Undo::Restart {
                        broker: Some(broker),
                        manager: None,
                    },
                )
            }
        }
        Fault::KillManagerLeader | Fault::PauseManagerLeader => {
            let leader = cluster.manager_leader(Duration::from_secs(30)).await?;
            let node = &mut cluster.managers[leader];
            if fault == Fault::PauseManagerLeader {
                node.pause()?;
                (
                    format!("paused {}", node.name()),
                    Undo::Resume {
                        broker: None,
                        manager: Some(leader),
                    },
                )
            } else {
                node.kill9()?;
                (
                    format!("killed {}", node.name()),
                    Undo::Restart {
                        broker: None,
                        manager: Some(leader),
                    },
                )
            }
        }
        Fault::Delay => {
            let broker = rng.random_range(1..=brokers);
            let delay = Duration::from_millis(rng.random_range(50..=250));
            let node = cluster.broker(broker);
            node.set_link_delay(delay)?;
            (
                format!("delayed {}'s links by {delay:?}", node.name()),
                Undo::Undelay(broker),
            )
        }
        Fault::ClockSkew => {
            let broker = rng.random_range(1..=brokers);
            let seconds = rng.random_range(60..=600) * if rng.random() { 1 } else { -1 };
            let node = cluster.broker(broker);
            node.terminate().await?;
            for (name, value) in faketime(seconds)? {
                node.set_env(name, Some(&value));
            }
            Cluster::restart(node).await?;
            (
                format!("restarted {} with its clock {seconds:+} s off", node.name()),
                Undo::Unskew(broker),
            )
        }
        Fault::RollingRestart => {
            for broker in 1..=brokers {
                cluster.broker(broker).terminate().await?;
                Cluster::restart(cluster.broker(broker)).await?;
                cluster
                    .wait_fully_replicated(&client, topic, Duration::from_secs(60))
                    .await?;
            }
            ("restarted every broker in turn".to_owned(), Undo::Nothing)
        }
        Fault::Isolate | Fault::Split | Fault::Bridge | Fault::Slow => {
            let net = cluster
                .net
                .as_ref()
                .context("network faults need a cluster in namespaces")?;
            let all: Vec<usize> = (0..hosts(cluster)).collect();
            match fault {
                Fault::Isolate => {
                    let lone = rng.random_range(0..all.len());
                    let rest: Vec<usize> = all.iter().copied().filter(|&h| h != lone).collect();
                    net.partition(&[vec![lone], rest])?;
                    (format!("isolated {}", host_name(cluster, lone)), Undo::Heal)
                }
                Fault::Split => {
                    let leader = cluster
                        .leader_of(&client, topic, 0, Duration::from_secs(30))
                        .await?;
                    let minority = vec![
                        rng.random_range(0..cluster.managers.len()),
                        cluster.broker_host(leader),
                    ];
                    let majority: Vec<usize> = all
                        .iter()
                        .copied()
                        .filter(|h| !minority.contains(h))
                        .collect();
                    net.partition(&[minority.clone(), majority])?;
                    let names: Vec<String> =
                        minority.iter().map(|&h| host_name(cluster, h)).collect();
                    (
                        format!("split off minority {}", names.join("+")),
                        Undo::Heal,
                    )
                }
                Fault::Bridge => {
                    let mut order = all.clone();
                    order.shuffle(rng);
                    let bridge = order[0];
                    let half = (order.len() - 1) / 2;
                    let left = order[1..=half].to_vec();
                    let right = order[half + 1..].to_vec();
                    let pairs: Vec<(usize, usize)> = left
                        .iter()
                        .flat_map(|&a| right.iter().map(move |&b| (a, b)))
                        .collect();
                    net.cut(&pairs)?;
                    let names = |hosts: &[usize]| {
                        hosts
                            .iter()
                            .map(|&h| host_name(cluster, h))
                            .collect::<Vec<_>>()
                            .join("+")
                    };
                    (
                        format!(
                            "bridge {} between {} and {}",
                            host_name(cluster, bridge),
                            names(&left),
                            names(&right)
                        ),
                        Undo::Heal,
                    )
                }
                Fault::Slow => {
                    let broker = rng.random_range(1..=brokers);
                    let host = cluster.broker_host(broker);
                    net.slow(host, "256kbit", "300ms")?;
                    (format!("slowed broker{broker}'s link"), Undo::Unslow(host))
                }
                _ => unreachable!("network faults only"),
            }
        }
    };
    Ok(Applied {
        fault,
        description,
        undo,
    })
}

/// Ends a fault.
pub async fn heal(applied: Applied, cluster: &mut Cluster) -> anyhow::Result<()> {
    match applied.undo {
        Undo::Restart { broker, manager } => {
            if let Some(id) = broker {
                Cluster::restart(cluster.broker(id)).await?;
            }
            if let Some(index) = manager {
                Cluster::restart(&mut cluster.managers[index]).await?;
            }
        }
        Undo::Resume { broker, manager } => {
            if let Some(id) = broker {
                cluster.broker(id).resume()?;
            }
            if let Some(index) = manager {
                cluster.managers[index].resume()?;
            }
        }
        Undo::Heal => {
            if let Some(net) = &cluster.net {
                net.heal()?;
            }
        }
        Undo::Unslow(host) => {
            if let Some(net) = &cluster.net {
                net.unslow(host)?;
            }
        }
        Undo::Undelay(broker) => cluster.broker(broker).set_link_delay(Duration::ZERO)?,
        Undo::Unskew(broker) => {
            let node = cluster.broker(broker);
            node.terminate().await?;
            for name in FAKETIME_VARIABLES {
                node.set_env(name, None);
            }
            Cluster::restart(node).await?;
        }
        Undo::Nothing => {}
    }
    Ok(())
}

/// Where Debian's libfaketime lives (package `faketime`, installed by deploy/setup.sh).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The variables [`faketime`] sets.
const FAKETIME_VARIABLES: [&str; 3] = ["LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC"];

/// The environment that runs a process with its wall clock `seconds` off.
fn faketime(seconds: i64) -> anyhow::Result<[(&'static str, String); 3]> {
    anyhow::ensure!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: install the faketime package (deploy/setup.sh does)"
    );
    let [preload, offset, monotonic] = FAKETIME_VARIABLES;
    Ok([
        (preload, LIBFAKETIME.to_owned()),
        (offset, format!("{seconds:+}")),
        // Raft's timers and every timeout use the monotonic clock: leave it alone.
        (monotonic, "1".to_owned()),
    ])
}

/// Waits until every partition of `topic` has a leader and every replica is in sync;
/// returns how long that took.
pub async fn recovery(
    cluster: &Cluster,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let client = cluster.client();
    cluster
        .wait_fully_replicated(&client, topic, timeout)
        .await
        .map_err(|error| {
            if started.elapsed() >= timeout {
                error.context("the cluster did not recover after the fault was healed")
            } else {
                error
            }
        })?;
    if !cluster.brokers.iter().all(crate::Node::is_running) {
        bail!("a broker is not running after heal");
    }
    Ok(started.elapsed())
}

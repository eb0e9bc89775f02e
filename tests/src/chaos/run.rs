//! One chaos run: a 3-manager, 3-broker cluster, a replicated topic, the workload's
//! processes, the nemesis cycling through its faults, then healing, a final read, the checks
//! and the availability figures. Used by the CI tests (short, fixed seeds) and by the
//! `mq-chaos` soak tool.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use mq_client::NewTopic;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::checker::{self, Verdict};
use super::history::{Event, F, Kind, NEMESIS, Recorder};
use super::linear;
use super::nemesis::{self, Fault};
use super::processes::{self, Shared};
use crate::cluster::{Cluster, ClusterSpec, fast_healing};

/// How a run is made.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    /// How long the nemesis keeps making faults.
    pub duration: Duration,
    /// The faults to pick from (at random, seeded).
    pub faults: Vec<Fault>,
    /// How long each fault lasts, and the calm after it heals.
    pub fault_for: Duration,
    pub calm_for: Duration,
    /// Where the history, verdict and node logs go.
    pub out_dir: PathBuf,
    pub partitions: u32,
    pub idempotent_producers: u32,
    pub plain_producers: u32,
    /// Pause between one producer's sends.
    pub pace: Duration,
    /// Config overrides of every broker (`key=value`), e.g. `raft.quiesce_after=1s`.
    pub broker_sets: Vec<String>,
    /// Run the brokers with the deliberately broken acknowledgement
    /// ([`UNSAFE_ACK_BEFORE_COMMIT`]).
    pub unsafe_ack: bool,
    /// Operations per partition the linearizability check covers.
    pub linearizable_prefix: usize,
}

impl RunConfig {
    pub fn new(seed: u64, duration: Duration, faults: Vec<Fault>, out_dir: PathBuf) -> Self {
        Self {
            seed,
            duration,
            faults,
            fault_for: Duration::from_secs(5),
            calm_for: Duration::from_secs(4),
            out_dir,
            partitions: 4,
            idempotent_producers: 3,
            plain_producers: 2,
            pace: Duration::from_millis(20),
            broker_sets: Vec::new(),
            unsafe_ack: false,
            linearizable_prefix: 40,
        }
    }
}

/// The figures of one fault kind.
#[derive(Debug, Clone, Serialize)]
pub struct FaultFigures {
    pub fault: String,
    pub count: usize,
    /// Longest time without an acknowledged send to some partition, during the fault and
    /// until it recovered, ms: median and max over the faults of this kind.
    pub unavailable_median_ms: u64,
    pub unavailable_max_ms: u64,
    /// From heal until every partition was led and fully replicated, ms.
    pub recovery_median_ms: u64,
    pub recovery_max_ms: u64,
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub seed: u64,
    pub verdict: Verdict,
    /// Operations the linearizability check covered.
    pub linearizable_checked: usize,
    pub faults: Vec<FaultFigures>,
    pub history: PathBuf,
}

impl RunReport {
    /// A few lines for people: the verdict, the counts and the per-fault figures.
    pub fn summary(&self) -> String {
        let s = &self.verdict.stats;
        let mut text = format!(
            "seed {}: {} ({} anomalies)\n\
             sends: {} ok, {} failed, {} indeterminate ({} of them read); duplicates of plain producers: {}\n\
             reads: {} polls with {} records, final read {} records; {} commits, {} offset reads; \
             linearizability checked on {} operations; {} faults\n",
            self.seed,
            if self.verdict.valid {
                "valid"
            } else {
                "INVALID"
            },
            self.verdict.anomalies.len(),
            s.sends_ok,
            s.sends_failed,
            s.sends_indeterminate,
            s.indeterminate_read,
            s.duplicates_allowed,
            s.polls_ok,
            s.records_polled,
            s.final_read_records,
            s.commits_ok,
            s.offset_reads_ok,
            self.linearizable_checked,
            s.faults,
        );
        for f in &self.faults {
            text += &format!(
                "  {:<22} x{:<3} unavailable median {:>6} ms max {:>6} ms; recovery median {:>6} ms max {:>6} ms\n",
                f.fault,
                f.count,
                f.unavailable_median_ms,
                f.unavailable_max_ms,
                f.recovery_median_ms,
                f.recovery_max_ms
            );
        }
        for anomaly in self.verdict.anomalies.iter().take(20) {
            text += &format!("  anomaly: {anomaly}\n");
        }
        text += &format!("history: {}\n", self.history.display());
        text
    }
}

pub const TOPIC: &str = "chaos";
const GROUP: &str = "chaos-group";

/// Runs the workload against a new cluster under the configured faults, then checks the
/// history. Errors mean the run could not be made (e.g. the cluster never recovered), not
/// that anomalies were found: those are in the report.
pub async fn run(config: &RunConfig) -> anyhow::Result<RunReport> {
    std::fs::create_dir_all(&config.out_dir)?;
    let namespaces = config.faults.iter().any(|f| f.needs_namespaces());
    let mut spec = fast_healing(ClusterSpec::new(3, 3))
        .manager_set("cluster_manager.broker_session_timeout=3s")
        .broker_set("retention.check_interval=1h")
        .keep_logs_in(&config.out_dir.join("logs"));
    if namespaces {
        spec = spec.in_namespaces();
    }
    if config.faults.iter().any(|f| f.needs_proxies()) {
        spec = spec.brokers_behind_delay_proxies();
    }
    if config.unsafe_ack {
        spec = spec.broker_env(UNSAFE_ACK_BEFORE_COMMIT, "1");
    }
    for set in &config.broker_sets {
        spec = spec.broker_set(set);
    }
    let history = config.out_dir.join("history.jsonl");
    let recorder = Recorder::create(&history)?;
    let outcome = Cluster::run(spec, async |cluster| {
        drive(config, cluster, &recorder).await
    })
    .await;
    recorder.flush()?;
    outcome?;
    let events = recorder.events();
    let mut verdict = checker::check(&events);
    let (mut not_linearizable, linearizable_checked) =
        linear::check(&events, config.linearizable_prefix);
    verdict.anomalies.append(&mut not_linearizable);
    verdict.valid = verdict.anomalies.is_empty();
    let report = RunReport {
        seed: config.seed,
        verdict,
        linearizable_checked,
        faults: fault_figures(&events),
        history,
    };
    std::fs::write(
        config.out_dir.join("verdict.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(report)
}

/// The environment variable that makes a broker acknowledge before commit (the broker's
/// `partition::UNSAFE_ACK_BEFORE_COMMIT`).
pub const UNSAFE_ACK_BEFORE_COMMIT: &str = "MQ_TEST_UNSAFE_ACK_BEFORE_COMMIT";

async fn drive(
    config: &RunConfig,
    cluster: &mut Cluster,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let client = cluster.client();
    client
        .create_topic(
            TOPIC,
            NewTopic::default()
                .partitions(config.partitions)
                .replication_factor(3),
        )
        .await?;
    cluster
        .wait_fully_replicated(&client, TOPIC, Duration::from_secs(60))
        .await?;
    let shared = Shared {
        recorder: recorder.clone(),
        servers: cluster.broker_addresses(),
        topic: TOPIC.to_owned(),
        partitions: config.partitions,
        keys: config.partitions * 4,
        next_value: Arc::new(AtomicU64::new(0)),
        stop: Arc::new(AtomicBool::new(false)),
        timeout: Duration::from_secs(5),
    };
    let mut tasks = Vec::new();
    let mut process = 0;
    for _ in 0..config.idempotent_producers {
        let seed = config.seed.wrapping_mul(1000) + u64::from(process);
        tasks.push(tokio::spawn(processes::idempotent_producer(
            shared.clone(),
            process,
            seed,
            config.pace,
        )));
        process += 1;
    }
    for _ in 0..config.plain_producers {
        let seed = config.seed.wrapping_mul(1000) + u64::from(process);
        tasks.push(tokio::spawn(processes::plain_producer(
            shared.clone(),
            process,
            seed,
            config.pace,
        )));
        process += 1;
    }
    tasks.push(tokio::spawn(processes::plain_consumer(shared.clone(), 100)));
    for member in 0..2 {
        tasks.push(tokio::spawn(processes::group_member(
            shared.clone(),
            200 + member,
            GROUP.to_owned(),
        )));
    }
    tasks.push(tokio::spawn(processes::offsets_observer(
        shared.clone(),
        300,
        GROUP.to_owned(),
        Duration::from_millis(300),
    )));

    let nemesis = run_nemesis(config, cluster, recorder).await;
    // Heal whatever a failed nemesis step left, then let the workload see a healthy cluster.
    for node in cluster
        .managers
        .iter_mut()
        .chain(cluster.brokers.iter_mut())
    {
        let _ = node.resume();
        if !node.is_running() {
            Cluster::restart(node).await?;
        }
    }
    if let Some(net) = &cluster.net {
        net.heal()?;
    }
    let healthy = nemesis::recovery(cluster, TOPIC, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    shared.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        // Every process ends within its operation timeout plus a poll window.
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .context("a workload process did not stop")??;
    }
    nemesis?;
    healthy?;
    processes::final_read(&shared, 400).await?;
    Ok(())
}

async fn run_nemesis(
    config: &RunConfig,
    cluster: &mut Cluster,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    while started.elapsed() < config.duration && !config.faults.is_empty() {
        let fault = config.faults[rng.random_range(0..config.faults.len())];
        let applied = nemesis::apply(fault, cluster, TOPIC, config.partitions, &mut rng).await?;
        recorder.record(Event {
            fault: Some(fault.name().to_owned()),
            detail: Some(applied.description.clone()),
            ..recorder.event(NEMESIS, Kind::Invoke, F::Nemesis)
        });
        if fault != Fault::RollingRestart {
            tokio::time::sleep(config.fault_for).await;
        }
        nemesis::heal(applied, cluster).await?;
        let healed_at = recorder.now();
        let recovered = nemesis::recovery(cluster, TOPIC, Duration::from_secs(90)).await?;
        recorder.record(Event {
            fault: Some(fault.name().to_owned()),
            recovered_ms: Some(recovered.as_millis() as u64),
            time_ns: healed_at,
            ..recorder.event(NEMESIS, Kind::Info, F::Nemesis)
        });
        tokio::time::sleep(config.calm_for).await;
    }
    Ok(())
}

/// Per fault kind: how long sends to some partition went without an acknowledgement while
/// the fault lasted and until the cluster recovered, and how long recovery took.
pub fn fault_figures(events: &[Event]) -> Vec<FaultFigures> {
    // Acknowledgement times per partition.
    let mut acked: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for event in events
        .iter()
        .filter(|e| e.f == F::Send && e.kind == Kind::Ok)
    {
        if let Some(partition) = event.partition {
            acked.entry(partition).or_default().push(event.time_ns);
        }
    }
    for times in acked.values_mut() {
        times.sort_unstable();
    }
    let mut faults: Vec<&Event> = events.iter().filter(|e| e.f == F::Nemesis).collect();
    faults.sort_by_key(|e| e.time_ns);
    let mut per_kind: BTreeMap<String, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    let mut started: Option<&Event> = None;
    for event in faults {
        match event.kind {
            Kind::Invoke => started = Some(event),
            _ => {
                let Some(start) = started.take() else {
                    continue;
                };
                let recovered_ms = event.recovered_ms.unwrap_or_default();
                let end = event.time_ns + recovered_ms * 1_000_000;
                let unavailable = acked
                    .values()
                    .map(|times| longest_gap(times, start.time_ns, end))
                    .max()
                    .unwrap_or_default();
                let entry = per_kind
                    .entry(start.fault.clone().unwrap_or_default())
                    .or_default();
                entry.0.push(unavailable / 1_000_000);
                entry.1.push(recovered_ms);
            }
        }
    }
    per_kind
        .into_iter()
        .map(|(fault, (mut unavailable, mut recovery))| {
            unavailable.sort_unstable();
            recovery.sort_unstable();
            FaultFigures {
                fault,
                count: unavailable.len(),
                unavailable_median_ms: unavailable[unavailable.len() / 2],
                unavailable_max_ms: *unavailable.last().expect("one at least"),
                recovery_median_ms: recovery[recovery.len() / 2],
                recovery_max_ms: *recovery.last().expect("one at least"),
            }
        })
        .collect()
}

/// The longest stretch without an acknowledgement that overlaps `[from, to]`: from the last
/// acknowledgement before `from` (or `from`) to the next one.
fn longest_gap(times: &[u64], from: u64, to: u64) -> u64 {
    let first = times.partition_point(|&t| t < from);
    let mut previous = if first > 0 { times[first - 1] } else { from };
    let mut longest = 0;
    for &t in &times[first..] {
        longest = longest.max(t - previous);
        previous = t;
        if t > to {
            break;
        }
    }
    if previous <= to {
        // No acknowledgement after the window: unavailable to its end at least.
        longest = longest.max(to - previous);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_spans_the_fault_from_the_last_ack_before_it() {
        let ms = 1_000_000;
        let times = [0, 10 * ms, 20 * ms, 900 * ms, 910 * ms, 2000 * ms];
        // A fault from 25 ms to 905 ms: 20 ms .. 900 ms without an acknowledgement.
        assert_eq!(longest_gap(&times, 25 * ms, 905 * ms), 880 * ms);
        // A stretch that begins inside the window counts to its end, past the window.
        assert_eq!(longest_gap(&times, 25 * ms, 950 * ms), 1090 * ms);
        // The stretch after the window's last ack counts up to the next one.
        assert_eq!(longest_gap(&times, 905 * ms, 1000 * ms), 1090 * ms);
        // No ack at all after the start: the whole window.
        assert_eq!(longest_gap(&[0], 10 * ms, 50 * ms), 50 * ms);
    }
}

//! `mq-chaos`: a chaos run of any length. Starts 3 cluster-manager voters and 3 brokers (in
//! network namespaces when a network fault is asked for), runs producers and consumers on a
//! 4-partition RF3 topic while the nemesis cycles through `--faults` (seeded), heals, reads
//! everything back and checks the history. Writes `history.jsonl`, `verdict.json` and every
//! node's log into `--out`; prints the verdict and per-fault figures; exits 1 on an anomaly.
//!
//! `mq-chaos --duration 30m --seed 7 --faults all --out /tmp/soak` is the 30-minute soak.

// A command-line tool: its report is its standard output.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mq_tests::chaos::nemesis::Fault;
use mq_tests::chaos::run::{RunConfig, run};

#[derive(Debug, Parser)]
#[command(about = "Chaos run: faults under load, then a history check")]
struct Args {
    /// How long the nemesis makes faults (e.g. 90s, 30m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Seed of the fault choices and the workload's keys.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Comma-separated faults, `process` (kills, pauses, restarts) or `all`.
    #[arg(long, default_value = "all")]
    faults: String,
    /// How long each fault lasts.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    fault_for: Duration,
    /// Calm between faults.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    calm_for: Duration,
    /// Where the history, the verdict and the logs go.
    #[arg(long, default_value = "chaos-out")]
    out: PathBuf,
    /// Brokers acknowledge before commit (deliberately broken, to see the checker catch it).
    #[arg(long)]
    unsafe_ack: bool,
    /// Pause between one producer's sends; long pauses (seconds) with a short
    /// `raft.quiesce_after` put the partitions' groups to sleep between writes, so faults hit
    /// quiet groups.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    pace: Duration,
    /// A broker config override, e.g. raft.quiesce_after=1s (repeatable).
    #[arg(long = "broker-set", value_name = "KEY=VALUE")]
    broker_set: Vec<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |at| text.split_at(at));
    let number: u64 = number
        .parse()
        .map_err(|_| format!("bad duration '{text}'"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "h" => Ok(Duration::from_secs(number * 3600)),
        _ => Err(format!("bad duration unit in '{text}' (ms, s, m or h)")),
    }
}

fn parse_faults(text: &str) -> anyhow::Result<Vec<Fault>> {
    match text {
        "all" => Ok(Fault::ALL.to_vec()),
        "process" => Ok(Fault::ALL
            .into_iter()
            .filter(|f| !f.needs_namespaces())
            .collect()),
        list => list.split(',').map(|name| name.trim().parse()).collect(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let faults = parse_faults(&args.faults)?;
    if faults.iter().any(|f| f.needs_namespaces()) && !mq_tests::net::available() {
        anyhow::bail!(
            "network faults need root and ip, nft and tc (deploy/setup.sh installs them)"
        );
    }
    let config = RunConfig {
        fault_for: args.fault_for,
        calm_for: args.calm_for,
        unsafe_ack: args.unsafe_ack,
        pace: args.pace,
        broker_sets: args.broker_set.clone(),
        ..RunConfig::new(args.seed, args.duration, faults, args.out.clone())
    };
    println!(
        "chaos run: seed {}, {:?} of faults, out {}",
        args.seed,
        args.duration,
        args.out.display()
    );
    // Interrupted, the run is dropped: its nodes are killed and its namespaces removed.
    let interrupted = mq_node::kit::shutdown::on_signal();
    let report = tokio::select! {
        report = run(&config) => report.map_err(|error| {
            error.context(format!(
                "chaos run with seed {} failed; history and logs in {}",
                args.seed,
                args.out.display()
            ))
        })?,
        _ = interrupted.cancelled() => anyhow::bail!(
            "interrupted: nodes stopped; the history so far is in {}",
            args.out.display()
        ),
    };
    print!("{}", report.summary());
    if !report.verdict.valid {
        println!(
            "ANOMALIES FOUND with seed {}; history and logs kept in {}",
            args.seed,
            args.out.display()
        );
        std::process::exit(1);
    }
    Ok(())
}

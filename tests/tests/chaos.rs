//! The short chaos suite (fixed seeds, about a minute each): the workload runs against 3
//! cluster-manager voters and 3 brokers while the nemesis kills, pauses, restarts, cuts off
//! and slows nodes; the checker must find no anomaly. A third run uses brokers broken on
//! purpose (acknowledging before commit) and must be caught. A failing run keeps its history,
//! verdict and node logs and prints where, with its seed; `mq-chaos` repeats it at any length.

use std::time::Duration;

use mq_tests::chaos::checker::Anomaly;
use mq_tests::chaos::nemesis::Fault;
use mq_tests::chaos::run::{RunConfig, RunReport, run};

async fn chaos(name: &str, config: impl FnOnce(std::path::PathBuf) -> RunConfig) -> RunReport {
    let out = std::env::temp_dir().join(format!("mq-chaos-{name}-{}", std::process::id()));
    let config = config(out.clone());
    let seed = config.seed;
    let report = match run(&config).await {
        Ok(report) => report,
        Err(error) => panic!(
            "chaos run {name} (seed {seed}) could not be completed: {error:#}\n\
             history and logs kept in {}",
            out.display()
        ),
    };
    eprintln!("{name}: {}", report.summary());
    report
}

fn discard(report: &RunReport) {
    if let Some(out) = report.history.parent() {
        let _ = std::fs::remove_dir_all(out);
    }
}

fn assert_valid(name: &str, report: &RunReport) {
    assert!(
        report.verdict.valid,
        "{name}: the checker found anomalies (seed {}); history, verdict and logs kept in {}:\n{}",
        report.seed,
        report.history.parent().unwrap().display(),
        report.summary()
    );
    let stats = &report.verdict.stats;
    assert!(stats.sends_ok > 500, "too little was acknowledged to judge");
    assert!(stats.final_read_records >= stats.sends_ok);
    assert!(stats.records_polled > 0 && stats.commits_ok > 0 && stats.offset_reads_ok > 0);
    assert!(
        stats.faults >= 3,
        "the nemesis made {} faults",
        stats.faults
    );
    assert!(report.linearizable_checked > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn kills_pauses_and_restarts_lose_nothing() {
    let name = "process-faults";
    let report = chaos(name, |out| {
        RunConfig::new(
            11,
            Duration::from_secs(40),
            vec![
                Fault::KillBroker,
                Fault::KillLeader,
                Fault::KillManagerLeader,
                Fault::PauseBroker,
                Fault::PauseManagerLeader,
                Fault::RollingRestart,
                Fault::ClockSkew,
            ],
            out,
        )
    })
    .await;
    assert_valid(name, &report);
    discard(&report);
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_and_slow_links_lose_nothing() {
    let name = "network-faults";
    assert!(
        mq_tests::net::available(),
        "network faults need root and ip, nft and tc (deploy/setup.sh installs them)"
    );
    let report = chaos(name, |out| {
        RunConfig::new(
            12,
            Duration::from_secs(40),
            vec![
                Fault::Isolate,
                Fault::Split,
                Fault::Bridge,
                Fault::Slow,
                Fault::Delay,
            ],
            out,
        )
    })
    .await;
    assert_valid(name, &report);
    discard(&report);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_acknowledges_before_commit_is_caught() {
    let name = "ack-before-commit";
    let report = chaos(name, |out| RunConfig {
        unsafe_ack: true,
        ..RunConfig::new(13, Duration::from_secs(25), vec![Fault::KillLeader], out)
    })
    .await;
    let anomalies = &report.verdict.anomalies;
    assert!(
        anomalies.iter().any(|a| matches!(
            a,
            Anomaly::LostWrite { .. }
                | Anomaly::OffsetMismatch { .. }
                | Anomaly::InconsistentOffset { .. }
        )),
        "the checker did not catch writes acknowledged before commit:\n{}",
        report.summary()
    );
    discard(&report);
}

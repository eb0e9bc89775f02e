//! Quiet Raft groups on real processes (3 brokers, RF=3): idle partitions stop ticking on every
//! replica (no AppendEntries at all while they stay idle), wake on a produce and quiesce again,
//! and fail over when their leader's broker is killed. In network namespaces, with the peer
//! watch off so only Raft and quiescence act: a follower cut off from a quiet leader cannot
//! depose it (openraft#2080's partial partition), and a quiet leader cut off from both
//! followers is replaced, then steps down when the network heals, with identical replicas.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mq_client::{Client, Record};
use mq_tests::cluster::{Cluster, ClusterSpec, replicas_identical};
use mq_tests::metrics::Scrape;
use mq_tests::wait_until;

/// Groups quiesce after one idle second here (three by default), to keep the tests short.
fn quick(spec: ClusterSpec) -> ClusterSpec {
    spec.with_metrics().broker_set("raft.quiesce_after=1s")
}

async fn scrape_running(cluster: &Cluster) -> anyhow::Result<Vec<Scrape>> {
    let mut scrapes = Vec::new();
    for broker in cluster.brokers.iter().filter(|b| b.is_running()) {
        scrapes.push(broker.scrape_metrics().await?);
    }
    Ok(scrapes)
}

fn total(scrapes: &[Scrape], name: &str, labels: &[(&str, &str)]) -> f64 {
    scrapes.iter().map(|s| s.sum(name, labels)).sum()
}

/// Per broker: quiet groups and wakes by reason, for the test's output.
fn describe(scrapes: &[Scrape]) -> String {
    let reasons = [
        "write",
        "append",
        "vote",
        "snapshot",
        "transfer",
        "refused",
        "backstop",
        "leader_lost",
    ];
    scrapes
        .iter()
        .map(|s| {
            let wakes: Vec<String> = reasons
                .iter()
                .map(|r| {
                    format!(
                        "{r}={}",
                        s.sum("mq_raft_quiesce_wakes_total", &[("reason", r)])
                    )
                })
                .collect();
            format!(
                "quiet {} wakes [{}]",
                s.sum("mq_raft_quiet_groups", &[]),
                wakes.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits until every running broker reports `replicas` quiet groups, twice a second apart (the
/// gauge is set once a round, so a group that just woke may still count as quiet once).
async fn wait_all_quiet(cluster: &Cluster, replicas: u32, timeout: Duration) -> anyhow::Result<()> {
    let all_quiet = || async {
        let scrapes = scrape_running(cluster).await.ok()?;
        scrapes
            .iter()
            .all(|s| s.sum("mq_raft_quiet_groups", &[]) == f64::from(replicas))
            .then_some(())
    };
    wait_until(
        &format!("{replicas} quiet groups on every running broker, for a second"),
        timeout,
        || async {
            all_quiet().await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            all_quiet().await
        },
    )
    .await
}

async fn create(
    cluster: &Cluster,
    client: &Client,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<()> {
    cluster
        .create_replicated_topic(client, topic, partitions, Duration::from_secs(60))
        .await?;
    // Settled: the cluster manager moved every leadership to its preferred replica (the
    // transfers would wake the groups and change terms during the test).
    wait_until("leaders spread evenly", Duration::from_secs(30), || async {
        let brokers = client.list_brokers().await.ok()?;
        brokers
            .iter()
            .all(|b| b.leaders == partitions / 3)
            .then_some(())
    })
    .await?;
    Ok(())
}

/// Each partition's leader, as the cluster manager reports it.
async fn leaders(client: &Client, topic: &str) -> anyhow::Result<BTreeMap<u32, Option<u32>>> {
    Ok(client
        .describe_topic(topic)
        .await?
        .partitions
        .iter()
        .map(|p| (p.partition, p.leader_id))
        .collect())
}

/// Produces one record to `partition`, retrying while it fails, until `timeout`; returns how
/// long the first acknowledgement took.
async fn produce_one(
    client: &Client,
    topic: &str,
    partition: u32,
    value: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    wait_until(
        &format!("an acknowledged produce to {topic}/{partition}"),
        timeout,
        || async {
            client
                .produce(topic, partition, vec![Record::keyed("k", value.to_owned())])
                .await
                .ok()
        },
    )
    .await?;
    Ok(started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_partitions_go_quiet_wake_on_produce_and_fail_over_when_their_leader_dies()
-> anyhow::Result<()> {
    const PARTITIONS: u32 = 6;
    Cluster::run(quick(ClusterSpec::new(1, 3)), async |cluster| {
        let client = cluster.client();
        create(cluster, &client, "idle", PARTITIONS).await?;
        wait_all_quiet(cluster, PARTITIONS, Duration::from_secs(30)).await?;

        // Quiet means silent: not one AppendEntries (heartbeat or entries) in three seconds,
        // where six groups would otherwise send 2 × 6 heartbeats a second.
        let appends = |s: &[Scrape]| total(s, "mq_raft_rpc_seconds_count", &[("rpc", "append")]);
        let before = appends(&scrape_running(cluster).await?);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = scrape_running(cluster).await?;
        anyhow::ensure!(
            appends(&after) == before,
            "quiet groups sent {} AppendEntries in 3 s",
            appends(&after) - before
        );
        anyhow::ensure!(
            after.iter().all(|s| s.sum("mq_raft_quiet_groups", &[]) == f64::from(PARTITIONS)),
            "a group woke while idle"
        );

        // A produce wakes its group (on the leader first, for the write) and is acknowledged.
        for partition in 0..PARTITIONS {
            let took = produce_one(&client, "idle", partition, "first", Duration::from_secs(10)).await?;
            eprintln!("partition {partition}: produce to a quiet group acknowledged in {took:?}");
        }
        let woken = total(
            &scrape_running(cluster).await?,
            "mq_raft_quiesce_wakes_total",
            &[("reason", "write")],
        );
        anyhow::ensure!(woken >= f64::from(PARTITIONS), "{woken} wakes for writes counted");
        // ... and quiesces again once idle.
        wait_all_quiet(cluster, PARTITIONS, Duration::from_secs(30)).await?;

        // SIGKILL of a broker leading quiet groups: each of them gets a new leader and takes
        // writes again (peer watch: the survivors wake and elect a successor at once).
        let victim = cluster.leader_of(&client, "idle", 0, Duration::from_secs(10)).await?;
        let led: Vec<u32> = leaders(&client, "idle")
            .await?
            .into_iter()
            .filter(|(_, leader)| *leader == Some(victim))
            .map(|(partition, _)| partition)
            .collect();
        cluster.broker(victim).kill9()?;
        for partition in 0..PARTITIONS {
            let took = produce_one(&client, "idle", partition, "second", Duration::from_secs(20)).await?;
            let was_led = led.contains(&partition);
            eprintln!("partition {partition} (led by the victim: {was_led}): acknowledged {took:?} after the kill");
        }
        let now = leaders(&client, "idle").await?;
        for partition in &led {
            let leader = now[partition];
            anyhow::ensure!(
                leader.is_some() && leader != Some(victim),
                "partition {partition} is led by {leader:?} after broker {victim} died"
            );
        }

        // Back, the victim catches up; every replica holds both records of each partition,
        // and the groups quiesce once more on all three brokers.
        Cluster::restart(cluster.broker(victim)).await?;
        let counts = replicas_identical(cluster, &client, "idle", Duration::from_secs(60)).await?;
        anyhow::ensure!(
            counts.iter().all(|&n| n == 2),
            "records per partition after failover: {counts:?}"
        );
        wait_all_quiet(cluster, PARTITIONS, Duration::from_secs(60)).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quiet_leaders_survive_a_cut_follower_and_are_replaced_when_cut_off() -> anyhow::Result<()>
{
    const PARTITIONS: u32 = 3;
    assert!(
        mq_tests::net::available(),
        "network faults need root and ip, nft and tc (deploy/setup.sh installs them)"
    );
    // Without the peer watch, only Raft's own timers and quiescence decide.
    let spec = quick(ClusterSpec::new(1, 3).in_namespaces())
        .broker_set("cluster.peer_watch.probe_interval=0s");
    Cluster::run(spec, async |cluster| {
        let client = cluster.client();
        create(cluster, &client, "cut", PARTITIONS).await?;
        wait_all_quiet(cluster, PARTITIONS, Duration::from_secs(30)).await?;
        let before = leaders(&client, "cut").await?;
        let terms = |s: &[Scrape]| {
            total(
                s,
                "mq_raft_term_changes_total",
                &[("group_kind", "partition")],
            )
        };
        let terms_before = terms(&scrape_running(cluster).await?);

        // A follower cut off from partition 0's quiet leader: it wakes (no offers reach it)
        // and campaigns, but the other follower, still receiving offers, refuses its
        // pre-votes as it would under a live lease. No leader changes, no term moves.
        let leader = before[&0].expect("partition 0 led");
        let follower = (1..=3).find(|&id| id != leader).expect("a follower");
        let net = cluster.net.as_ref().expect("namespaces");
        net.cut(&[(cluster.broker_host(leader), cluster.broker_host(follower))])?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let scrapes = scrape_running(cluster).await?;
        eprintln!(
            "after 8 s of a cut between brokers {leader} and {follower}: {}",
            describe(&scrapes)
        );
        anyhow::ensure!(
            terms(&scrapes) == terms_before,
            "terms changed under a cut follower: {terms_before} before, {} after",
            terms(&scrapes)
        );
        anyhow::ensure!(
            leaders(&client, "cut").await? == before,
            "leaders changed under a cut follower"
        );
        let backstops = total(
            &scrapes,
            "mq_raft_quiesce_wakes_total",
            &[("reason", "backstop")],
        );
        anyhow::ensure!(backstops >= 1.0, "the cut follower never woke");
        for partition in 0..PARTITIONS {
            produce_one(
                &client,
                "cut",
                partition,
                "under-cut",
                Duration::from_secs(10),
            )
            .await?;
        }
        net.heal()?;
        wait_all_quiet(cluster, PARTITIONS, Duration::from_secs(30)).await?;

        // The quiet leader of partition 0 cut off from everyone: both followers wake (the
        // backstop), their election timers run out, and one of them takes over.
        let isolated = cluster.broker_host(leader);
        let others: Vec<usize> = (0..cluster.managers.len() + 3)
            .filter(|&h| h != isolated)
            .collect();
        net.partition(&[vec![isolated], others])?;
        let cut_at = Instant::now();
        // Writes first: the client moves on to the next replica when a leader answers nothing.
        let led: Vec<u32> = before
            .iter()
            .filter(|(_, l)| **l == Some(leader))
            .map(|(p, _)| *p)
            .collect();
        for &partition in &led {
            produce_one(
                &client,
                "cut",
                partition,
                "cut-off",
                Duration::from_secs(30),
            )
            .await?;
            eprintln!(
                "partition {partition} of the cut-off leader took a write {:?} after the cut",
                cut_at.elapsed()
            );
        }
        wait_until(
            "the cluster manager naming a new leader for each partition of the cut-off broker",
            Duration::from_secs(30),
            || async {
                let now = leaders(&client, "cut").await.ok()?;
                led.iter()
                    .all(|p| now[p].is_some_and(|l| l != leader))
                    .then_some(())
            },
        )
        .await?;
        for partition in (0..PARTITIONS).filter(|p| !led.contains(p)) {
            produce_one(
                &client,
                "cut",
                partition,
                "cut-off",
                Duration::from_secs(20),
            )
            .await?;
        }

        // Healed: the old leader learns the new term and follows; one leader per partition,
        // replicas identical, quiet again.
        net.heal()?;
        let counts = replicas_identical(cluster, &client, "cut", Duration::from_secs(60)).await?;
        anyhow::ensure!(
            counts.iter().all(|&n| n == 2),
            "records per partition: {counts:?}"
        );
        wait_all_quiet(cluster, PARTITIONS, Duration::from_secs(60)).await?;
        Ok(())
    })
    .await
}

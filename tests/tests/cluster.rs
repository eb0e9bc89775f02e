//! Guarantees of a cluster of real processes (3 cluster-manager voters, 3 brokers): partitions
//! fail over when their leader is killed and keyed produce resumes by itself, with every
//! acknowledged message stored exactly once in order; the control plane survives losing its
//! leader while data keeps flowing; a rolling restart surfaces no error to producers; bad
//! requests are refused with clear errors and change nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mq_client::{Client, ClientConfig, ErrorCode, NewTopic, Record};
use mq_tests::cluster::{
    Cluster, ClusterSpec, connect, fast_healing, replica_status, replicas_identical,
};
use mq_tests::wait_until;
use mq_tests::workload::{Acked, produce_keyed, read_partition, verify_stored};
use tokio::task::JoinHandle;

const PARTITIONS: u32 = 6;

/// What one producer task ends with: acknowledged messages with their ack time, and errors.
type Outcome = (Vec<(Instant, Acked)>, Vec<String>);

/// Producers writing keyed batches to every partition until stopped: each partition's task
/// sends the keys the standard key hash puts in that partition, as a keyed producer would.
struct Produce {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Outcome>>,
}

impl Produce {
    fn start(client: &Client, topic: &str, partitions: u32, batch: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seq = Arc::new(AtomicUsize::new(0));
        let tasks = (0..partitions)
            .map(|partition| {
                let (client, topic, stop, seq) =
                    (client.clone(), topic.to_owned(), stop.clone(), seq.clone());
                let keys = keys_of_partition(partition, partitions, 7);
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    let mut errors = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let first = seq.fetch_add(batch, Ordering::Relaxed);
                        let records: Vec<Record> = (first..first + batch)
                            .map(|i| {
                                Record::keyed(keys[i % keys.len()].clone(), format!("v{i}"))
                                    .with_header("seq", i.to_string())
                                    .with_timestamp(1_700_000_000_000 + i as i64)
                            })
                            .collect();
                        match client.produce(&topic, partition, records.clone()).await {
                            Ok(base) => {
                                let now = Instant::now();
                                for (k, record) in records.into_iter().enumerate() {
                                    acked.push((
                                        now,
                                        Acked {
                                            seq: first + k,
                                            partition,
                                            offset: base + k as u64,
                                            record,
                                        },
                                    ));
                                }
                            }
                            Err(err) => errors.push(format!("{partition}: {err}")),
                        }
                    }
                    (acked, errors)
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops and returns every acknowledged message (with its ack time) and every error.
    async fn finish(self) -> anyhow::Result<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        let mut errors = Vec::new();
        for task in self.tasks {
            let (a, e) = task.await?;
            acked.extend(a);
            errors.extend(e);
        }
        acked.sort_by_key(|(_, a)| a.seq);
        Ok((acked, errors))
    }
}

/// The first `count` keys `key<n>` that the standard key hash puts in `partition`.
fn keys_of_partition(partition: u32, partitions: u32, count: usize) -> Vec<String> {
    (0..)
        .map(|n| format!("key{n}"))
        .filter(|key| mq_client::partition_for_key(key.as_bytes(), partitions) == partition)
        .take(count)
        .collect()
}

async fn create_topic(
    cluster: &Cluster,
    client: &Client,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<()> {
    cluster
        .create_replicated_topic(client, topic, partitions, Duration::from_secs(30))
        .await?;
    Ok(())
}

/// Reads every partition through the leaders and checks the acknowledged messages.
async fn verify(
    client: &Client,
    topic: &str,
    partitions: u32,
    acked: &[Acked],
) -> anyhow::Result<()> {
    let mut stored = BTreeMap::new();
    for partition in 0..partitions {
        stored.insert(partition, read_partition(client, topic, partition).await?);
    }
    verify_stored(acked, &stored, partitions)
}

fn three_by_three() -> ClusterSpec {
    ClusterSpec::new(3, 3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_partition_leader_fails_over_and_keyed_produce_resumes_exactly_once()
-> anyhow::Result<()> {
    Cluster::run(three_by_three(), async |cluster| {
        let client = cluster.client();
        create_topic(cluster, &client, "orders", PARTITIONS).await?;

        // Leaders follow the placement's preferred replicas: two partitions per broker.
        wait_until("leaders spread evenly", Duration::from_secs(30), || async {
            let brokers = client.list_brokers().await.ok()?;
            brokers.iter().all(|b| b.leaders == 2).then_some(())
        })
        .await?;

        let produce = Produce::start(&client, "orders", PARTITIONS, 20);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let victim = cluster
            .leader_of(&client, "orders", 0, Duration::from_secs(10))
            .await?;
        let led: Vec<u32> = client
            .describe_topic("orders")
            .await?
            .partitions
            .iter()
            .filter(|p| p.leader_id == Some(victim))
            .map(|p| p.partition)
            .collect();
        let killed_at = Instant::now();
        cluster.broker(victim).kill9()?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let (acked, errors) = produce.finish().await?;

        anyhow::ensure!(errors.is_empty(), "produce errors: {errors:?}");
        for partition in &led {
            let first_after = acked
                .iter()
                .filter(|(at, a)| a.partition == *partition && *at > killed_at)
                .map(|(at, _)| at.duration_since(killed_at))
                .min();
            let Some(first_after) = first_after else {
                anyhow::bail!(
                    "produce to partition {partition} did not resume after its leader died"
                );
            };
            eprintln!(
                "partition {partition}: first ack {first_after:?} after its leader was killed"
            );
        }
        let acked: Vec<Acked> = acked.into_iter().map(|(_, a)| a).collect();
        anyhow::ensure!(acked.len() > 1000, "only {} messages acked", acked.len());
        verify(&client, "orders", PARTITIONS, &acked).await?;

        // The killed broker comes back, catches up, and leads its preferred partitions again.
        Cluster::restart(cluster.broker(victim)).await?;
        cluster
            .wait_fully_replicated(&client, "orders", Duration::from_secs(30))
            .await?;
        wait_until("leaders spread back", Duration::from_secs(30), || async {
            let brokers = client.list_brokers().await.ok()?;
            brokers.iter().all(|b| b.leaders == 2).then_some(())
        })
        .await?;
        verify(&client, "orders", PARTITIONS, &acked).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_to_a_frozen_leader_move_to_its_successor_while_it_stays_frozen() -> anyhow::Result<()>
{
    Cluster::run(three_by_three(), async |cluster| {
        // A frozen leader keeps its connections open and answers nothing: only the attempt
        // timeout gets a send off it, long before the request timeout.
        let client = Client::new(ClientConfig {
            request_timeout: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(1),
            ..ClientConfig::new(cluster.broker_addresses())
        })?;
        create_topic(cluster, &client, "orders", 1).await?;
        let first = client
            .produce("orders", 0, vec![Record::keyed("k", "0")])
            .await?;
        let leader = cluster
            .leader_of(&client, "orders", 0, Duration::from_secs(10))
            .await?;
        cluster.broker(leader).pause()?;
        let frozen_at = Instant::now();
        let sends = tokio::time::timeout(Duration::from_secs(30), async {
            let mut offsets = Vec::new();
            for i in 1..=20 {
                let record = Record::keyed("k", i.to_string());
                offsets.push(client.produce("orders", 0, vec![record]).await?);
            }
            Ok::<_, mq_client::ClientError>(offsets)
        })
        .await;
        let took = frozen_at.elapsed();
        cluster.broker(leader).resume()?;
        let offsets = sends
            .map_err(|_| anyhow::anyhow!("sends did not leave the frozen leader within 30 s"))??;
        eprintln!("20 sends acknowledged {took:?} after the leader froze");
        anyhow::ensure!(
            offsets == (first + 1..=first + 20).collect::<Vec<_>>(),
            "offsets not contiguous after the first: {offsets:?}"
        );
        let stored = read_partition(&client, "orders", 0).await?;
        let values: Vec<Option<&[u8]>> = stored.iter().map(|r| r.record.value.as_deref()).collect();
        let expected: Vec<String> = (0..=20).map(|i| i.to_string()).collect();
        anyhow::ensure!(
            values
                == expected
                    .iter()
                    .map(|v| Some(v.as_bytes()))
                    .collect::<Vec<_>>(),
            "stored {values:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_manager_leader_loss_stops_neither_admin_nor_data() -> anyhow::Result<()> {
    Cluster::run(three_by_three(), async |cluster| {
        let client = cluster.client();
        create_topic(cluster, &client, "prices", 2).await?;
        let produce = Produce::start(&client, "prices", 2, 10);
        let mut subscription = client
            .subscribe("prices", 0, mq_client::StartAt::Earliest)
            .await?;

        tokio::time::sleep(Duration::from_secs(1)).await;
        let leader = cluster.manager_leader(Duration::from_secs(10)).await?;
        cluster.managers[leader].kill9()?;
        let killed_at = Instant::now();
        // Topic creation works again once another voter leads (retried by the client meanwhile).
        client
            .create_topic(
                "stock",
                NewTopic::default().partitions(1).replication_factor(3),
            )
            .await?;
        let recovered = killed_at.elapsed();
        eprintln!(
            "topic create succeeded {recovered:?} after the cluster-manager leader was killed"
        );
        anyhow::ensure!(
            recovered < Duration::from_secs(10),
            "topic create took {recovered:?}"
        );
        let new_leader = cluster.manager_leader(Duration::from_secs(10)).await?;
        anyhow::ensure!(new_leader != leader, "the dead voter still leads");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (acked, errors) = produce.finish().await?;
        anyhow::ensure!(errors.is_empty(), "produce errors: {errors:?}");
        let after: usize = acked.iter().filter(|(at, _)| *at > killed_at).count();
        anyhow::ensure!(
            after > 0,
            "nothing was produced after the manager leader died"
        );

        // The subscriber saw every message of partition 0, in order.
        let expected: Vec<&Acked> = acked
            .iter()
            .map(|(_, a)| a)
            .filter(|a| a.partition == 0)
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for expected in expected {
            let record = tokio::time::timeout_at(deadline, subscription.next())
                .await
                .map_err(|_| {
                    anyhow::anyhow!("the subscriber stopped at offset {}", expected.offset)
                })?
                .ok_or_else(|| anyhow::anyhow!("the subscription ended"))??;
            anyhow::ensure!(
                record.offset == expected.offset,
                "subscriber skipped to {}",
                record.offset
            );
            anyhow::ensure!(
                record.record == expected.record,
                "subscriber got another record at {}",
                record.offset
            );
        }
        let acked: Vec<Acked> = acked.into_iter().map(|(_, a)| a).collect();
        verify(&client, "prices", 2, &acked).await?;
        Ok(())
    })
    .await
}

/// The partitions of `topic` the broker at `address` leads, with their terms, as it reports.
async fn led_by(address: &str, topic: &str) -> anyhow::Result<BTreeMap<u32, u64>> {
    Ok(replica_status(&connect(address).await?)
        .await?
        .into_iter()
        .filter(|r| r.topic == topic && r.leader_node_id == Some(r.node_id))
        .map(|r| (r.partition, r.term))
        .collect())
}

/// What the other brokers reported while broker `id` went through its SIGTERM shutdown.
struct Stopped {
    status: std::process::ExitStatus,
    /// When the exit was seen.
    exited_at: Instant,
    /// Per partition of the topic: the first other broker seen leading it at a higher term
    /// than the given one, before the process exited.
    led_before_exit: BTreeMap<u32, NewLeader>,
}

struct NewLeader {
    broker: u32,
    term: u64,
    seen_at: Instant,
}

/// Sends SIGTERM to broker `id` and, until its process exits, polls the other brokers'
/// replicas of `led` (partition -> the term broker `id` led it in). A replica that reports
/// leading one of them is recorded only when the process was still running after the report
/// came back.
async fn stop_watching_leaders(
    cluster: &mut Cluster,
    id: u32,
    topic: &str,
    led: &BTreeMap<u32, u64>,
) -> anyhow::Result<Stopped> {
    const EXIT_WITHIN: Duration = Duration::from_secs(30);
    let mut others = Vec::new();
    for (index, broker) in cluster.brokers.iter().enumerate() {
        if index as u32 + 1 != id {
            others.push(connect(&broker.address()).await?);
        }
    }
    cluster.broker(id).send_terminate()?;
    let deadline = Instant::now() + EXIT_WITHIN;
    let mut led_before_exit = BTreeMap::new();
    loop {
        let mut reports = Vec::new();
        for channel in &others {
            // A broker that does not answer this round simply reports nothing.
            if let Ok(replicas) = replica_status(channel).await {
                reports.extend(replicas);
            }
        }
        if let Some(status) = cluster.broker(id).exit_status()? {
            return Ok(Stopped {
                status,
                exited_at: Instant::now(),
                led_before_exit,
            });
        }
        // Still running: every report above was made while broker `id` was alive.
        for replica in reports {
            let Some(term) = led.get(&replica.partition) else {
                continue;
            };
            if replica.topic == topic
                && replica.leader_node_id == Some(replica.node_id)
                && replica.term > *term
            {
                led_before_exit
                    .entry(replica.partition)
                    .or_insert(NewLeader {
                        broker: mq_common::ids::broker_of_node(replica.node_id).0,
                        term: replica.term,
                        seen_at: Instant::now(),
                    });
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "broker {id} did not exit within {EXIT_WITHIN:?} of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A broker stopped with SIGTERM hands its leaderships to other replicas before it exits: each
/// partition it led is led elsewhere one term later (a transfer) while the process still runs,
/// not elected after it died. Producers see no error and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_surfaces_no_error_and_loses_nothing() -> anyhow::Result<()> {
    Cluster::run(three_by_three(), async |cluster| {
        let client = cluster.client();
        create_topic(cluster, &client, "events", 3).await?;
        let produce = Produce::start(&client, "events", 3, 10);
        for id in 1..=3 {
            // Each broker leads its preferred partition (the one before came back to lead
            // its own), so every stop hands off a leadership.
            wait_until(
                "each broker leading one partition",
                Duration::from_secs(30),
                || async {
                    let brokers = client.list_brokers().await.ok()?;
                    brokers.iter().all(|b| b.leaders == 1).then_some(())
                },
            )
            .await?;
            let led = led_by(&cluster.broker(id).address(), "events").await?;
            anyhow::ensure!(!led.is_empty(), "broker {id} leads nothing to hand off");
            let stopped = stop_watching_leaders(cluster, id, "events", &led).await?;
            anyhow::ensure!(
                stopped.status.success(),
                "broker {id} exited with {}",
                stopped.status
            );
            for (partition, term) in &led {
                let Some(new) = stopped.led_before_exit.get(partition) else {
                    anyhow::bail!(
                        "events/{partition}: no other broker led it before broker {id} exited \
                         (it led it in term {term}): not handed off"
                    );
                };
                anyhow::ensure!(
                    new.term == term + 1,
                    "events/{partition}: broker {} led it in term {} after broker {id}'s term \
                     {term}: an election, not one transfer",
                    new.broker,
                    new.term
                );
                eprintln!(
                    "events/{partition}: handed from broker {id} to broker {} (term {term} -> \
                     {}), seen {:?} before broker {id}'s exit was",
                    new.broker,
                    new.term,
                    stopped.exited_at.duration_since(new.seen_at)
                );
            }
            Cluster::restart(cluster.broker(id)).await?;
            cluster
                .wait_fully_replicated(&client, "events", Duration::from_secs(30))
                .await?;
        }
        let (acked, errors) = produce.finish().await?;
        anyhow::ensure!(
            errors.is_empty(),
            "errors surfaced to the producer: {errors:?}"
        );
        let acked: Vec<Acked> = acked.into_iter().map(|(_, a)| a).collect();
        verify(&client, "events", 3, &acked).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cluster_requests_are_refused_and_change_nothing() -> anyhow::Result<()> {
    Cluster::run(three_by_three(), async |cluster| {
        let client = cluster.client();

        client
            .create_topic(
                "three",
                NewTopic::default().partitions(2).replication_factor(3),
            )
            .await?;
        let err = client.decommission_broker(9).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::BrokerNotFound, "{err}");
        assert!(err.to_string().contains("broker_id"), "{err}");
        // Three brokers, replication factor 3: nowhere to move broker 3's replicas.
        let err = client.decommission_broker(3).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotEnoughBrokers, "{err}");
        assert!(client.list_brokers().await?.iter().all(|b| !b.draining));

        let err = client
            .create_topic("too-many", NewTopic::default().replication_factor(4))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotEnoughBrokers, "{err}");
        assert!(err.to_string().contains("replication_factor"), "{err}");
        assert_eq!(client.list_topics().await?.len(), 1);

        // A second broker claiming id 1 from another address is refused while broker 1 lives.
        let before = client.list_brokers().await?;
        let managers = cluster
            .managers
            .iter()
            .map(mq_tests::Node::address)
            .collect::<Vec<_>>()
            .join(",");
        let mut impostor = mq_tests::Node::new(
            "impostor",
            "mq-broker",
            mq_tests::reserve_port(),
            vec![
                "--broker-id".into(),
                "1".into(),
                "--cluster-manager".into(),
                managers,
            ],
        )?;
        impostor.spawn()?;
        wait_until(
            "the impostor to be refused",
            Duration::from_secs(20),
            || async { impostor.log().contains("is registered at").then_some(()) },
        )
        .await?;
        assert_eq!(client.list_brokers().await?.len(), before.len());
        assert_eq!(
            client.list_brokers().await?[0].broker.address,
            cluster.brokers[0].address()
        );
        impostor.kill9()?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_broker_is_replaced_and_every_replica_converges() -> anyhow::Result<()> {
    Cluster::run(fast_healing(ClusterSpec::new(3, 4)), async |cluster| {
        let client = cluster.client();
        create_topic(cluster, &client, "ledger", 4).await?;
        let mut acked = produce_keyed(&client, "ledger", 0..3_000, 40, 50).await?;

        // Broker 1 holds replicas of 3 of the 4 partitions; it dies for good.
        cluster.broker(1).kill9()?;
        let healed = wait_until(
            "every partition back to 3 replicas off broker 1",
            Duration::from_secs(60),
            || async {
                let topic = client.describe_topic("ledger").await.ok()?;
                topic
                    .partitions
                    .iter()
                    .all(|p| {
                        p.leader_id.is_some()
                            && p.replicas.len() == 3
                            && p.replicas.iter().all(|r| r.broker_id != 1 && r.in_sync)
                    })
                    .then_some(topic)
            },
        )
        .await?;
        eprintln!("healed: {healed:?}");

        acked.extend(produce_keyed(&client, "ledger", 3_000..4_000, 40, 50).await?);
        verify(&client, "ledger", 4, &acked).await?;
        let counts =
            replicas_identical(cluster, &client, "ledger", Duration::from_secs(30)).await?;
        assert_eq!(counts.iter().sum::<usize>(), acked.len());

        // Back after being replaced: it drops its stale replicas and takes no part.
        Cluster::restart(cluster.broker(1)).await?;
        wait_until(
            "broker 1 to drop its stale replicas",
            Duration::from_secs(30),
            || async {
                (cluster.brokers[0].log().matches("replica removed").count() >= 3).then_some(())
            },
        )
        .await?;
        verify(&client, "ledger", 4, &acked).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decommissioned_broker_ends_empty_under_load_and_nothing_is_lost() -> anyhow::Result<()> {
    Cluster::run(fast_healing(ClusterSpec::new(3, 4)), async |cluster| {
        let client = cluster.client();
        create_topic(cluster, &client, "moves", 4).await?;
        let produce = Produce::start(&client, "moves", 4, 10);
        tokio::time::sleep(Duration::from_secs(1)).await;

        client.decommission_broker(2).await?;
        wait_until("broker 2 drained", Duration::from_secs(60), || async {
            let brokers = client.list_brokers().await.ok()?;
            let drained = brokers
                .iter()
                .find(|b| b.broker.broker_id == 2)
                .is_some_and(|b| b.draining && b.replicas == 0 && b.leaders == 0);
            let topic = client.describe_topic("moves").await.ok()?;
            let settled = topic.partitions.iter().all(|p| {
                p.leader_id.is_some_and(|l| l != 2)
                    && p.replicas.len() == 3
                    && p.replicas.iter().all(|r| r.broker_id != 2 && r.in_sync)
            });
            (drained && settled).then_some(())
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (acked, errors) = produce.finish().await?;
        anyhow::ensure!(errors.is_empty(), "produce errors: {errors:?}");
        let acked: Vec<Acked> = acked.into_iter().map(|(_, a)| a).collect();
        verify(&client, "moves", 4, &acked).await?;

        // Stopping it now leaves nothing under-replicated.
        cluster.broker(2).terminate().await?;
        wait_until(
            "every partition led and in sync without broker 2",
            Duration::from_secs(10),
            || async {
                let status = client.cluster_status().await.ok()?;
                (status.under_replicated.is_empty() && status.offline.is_empty()).then_some(())
            },
        )
        .await?;
        replicas_identical(cluster, &client, "moves", Duration::from_secs(30)).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebalance_moves_replicas_and_leaders_onto_an_added_broker() -> anyhow::Result<()> {
    Cluster::run(fast_healing(ClusterSpec::new(3, 3)), async |cluster| {
        let client = cluster.client();
        create_topic(cluster, &client, "spread", 6).await?;
        let acked = produce_keyed(&client, "spread", 0..2_000, 30, 50).await?;

        let added = cluster.add_broker().await?;
        let moves = client.rebalance().await?;
        // 18 replicas over 4 brokers: the new one gets 4 or 5.
        anyhow::ensure!((4..=5).contains(&moves.len()), "moves: {moves:?}");
        assert!(moves.iter().all(|m| m.to_broker_id == added), "{moves:?}");
        wait_until(
            "the added broker to hold and lead its share",
            Duration::from_secs(60),
            || async {
                let brokers = client.list_brokers().await.ok()?;
                let counts: Vec<u32> = brokers.iter().map(|b| b.replicas).collect();
                let even = counts.iter().max()? - counts.iter().min()? <= 1;
                let leads = brokers.iter().all(|b| b.leaders >= 1);
                let topic = client.describe_topic("spread").await.ok()?;
                let in_sync = topic
                    .partitions
                    .iter()
                    .all(|p| p.leader_id.is_some() && p.replicas.iter().all(|r| r.in_sync));
                (even && leads && in_sync).then_some(())
            },
        )
        .await?;
        assert!(
            client.rebalance().await?.is_empty(),
            "a second rebalance moves nothing"
        );
        verify(&client, "spread", 6, &acked).await?;
        replicas_identical(cluster, &client, "spread", Duration::from_secs(30)).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_down_during_thousands_of_writes_catches_up_to_an_identical_log()
-> anyhow::Result<()> {
    Cluster::run(three_by_three(), async |cluster| {
        let client = cluster.client();
        create_topic(cluster, &client, "catchup", 2).await?;
        wait_until("leaders spread", Duration::from_secs(30), || async {
            let topic = client.describe_topic("catchup").await.ok()?;
            let leaders: Vec<u32> = topic
                .partitions
                .iter()
                .filter_map(|p| p.leader_id)
                .collect();
            (leaders.len() == 2 && !leaders.contains(&3)).then_some(())
        })
        .await?;
        // Broker 3 leads nothing here: it is a follower of both partitions while it is down.
        cluster.broker(3).kill9()?;
        let acked = produce_keyed(&client, "catchup", 0..20_000, 100, 10).await?;
        Cluster::restart(cluster.broker(3)).await?;
        let counts =
            replicas_identical(cluster, &client, "catchup", Duration::from_secs(60)).await?;
        assert_eq!(counts.iter().sum::<usize>(), acked.len());
        verify(&client, "catchup", 2, &acked).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqctl_shows_the_cluster_and_drains_brokers() -> anyhow::Result<()> {
    Cluster::run(fast_healing(ClusterSpec::new(3, 4)), async |cluster| {
        let client = cluster.client();
        create_topic(cluster, &client, "shown", 2).await?;
        let server = cluster.brokers[1].address();
        let mqctl = |args: &[&str]| {
            let output = mq_tests::mqctl(&server, args).expect("run mqctl");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        };
        let (ok, status, _) = mqctl(&["cluster", "status"]);
        assert!(ok, "{status}");
        assert!(
            status.contains("CLUSTER MANAGER") && status.contains("leader"),
            "{status}"
        );
        assert!(status.contains("UNDER-REPLICATED 0  OFFLINE 0"), "{status}");
        let (ok, json, _) = mqctl(&["broker", "list", "--output", "json"]);
        assert!(ok, "{json}");
        let brokers: serde_json::Value = serde_json::from_str(&json)?;
        assert_eq!(brokers.as_array().map(Vec::len), Some(4), "{json}");
        assert!(brokers[0]["alive"].as_bool().unwrap_or(false), "{json}");
        let (ok, describe, _) = mqctl(&["topic", "describe", "shown"]);
        assert!(ok && describe.contains(":yes:"), "{describe}");

        let (ok, out, _) = mqctl(&["broker", "decommission", "4"]);
        assert!(ok, "{out}");
        let (ok, _, err) = mqctl(&["broker", "decommission", "42"]);
        assert!(!ok && err.contains("no broker 42"), "{err}");
        wait_until("broker 4 drained", Duration::from_secs(60), || async {
            let brokers = client.list_brokers().await.ok()?;
            brokers
                .iter()
                .any(|b| b.broker.broker_id == 4 && b.draining && b.replicas == 0)
                .then_some(())
        })
        .await?;
        let (ok, list, _) = mqctl(&["broker", "list"]);
        assert!(ok && list.contains("draining"), "{list}");
        Ok(())
    })
    .await
}

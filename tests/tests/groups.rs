//! Consumer groups end to end (real processes, real gRPC, RocksDB): incremental assignment
//! while members join, leave and die; static membership; commit fencing and the refusals of bad
//! input; committed offsets across the loss of the consumer-manager leader; `mqctl group`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mq_client::{
    Client, ClientError, CommittedOffset, ErrorCode, Heartbeat, NewTopic, OffsetCommit, Record,
    ResetTo, TopicPartition,
};
use mq_consumer::{Consumer, ConsumerConfig, GroupConfig};
use mq_proto::v1 as pb;
use mq_tests::cluster::{Cluster, ClusterSpec};
use mq_tests::{Node, wait_until};
use tokio::task::JoinHandle;

/// One processed record: who, which partition and offset, and a global order.
#[derive(Debug, Clone)]
struct Processed {
    consumer: String,
    partition: u32,
    offset: u64,
    seq: u64,
}

type Log = Arc<Mutex<Vec<Processed>>>;

fn group_config(group: &str, topic: &str) -> GroupConfig {
    let mut config = GroupConfig::new(group, [topic]);
    config.session_timeout = Duration::from_secs(2);
    config.auto_commit = Some(Duration::from_millis(200));
    config
}

/// A consumer task that records every record it yields in `log`, until aborted or until
/// `stop` says so (then it closes: commit + leave).
fn spawn_consumer(
    name: &str,
    server: String,
    config: GroupConfig,
    log: Log,
    seq: Arc<AtomicU64>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<anyhow::Result<()>> {
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut consumer = Consumer::new(ConsumerConfig::new([server]))?;
        consumer.subscribe(config).await?;
        let mut stop = stop;
        loop {
            tokio::select! {
                next = consumer.next() => {
                    let record = next.expect("group streams never end")?;
                    log.lock().expect("log").push(Processed {
                        consumer: name.clone(),
                        partition: record.partition,
                        offset: record.offset,
                        seq: seq.fetch_add(1, Ordering::SeqCst),
                    });
                }
                _ = stop.changed() => break,
            }
        }
        consumer.close().await?;
        Ok(())
    })
}

async fn produce(
    client: &Client,
    topic: &str,
    partitions: u32,
    per_partition: u32,
) -> anyhow::Result<()> {
    for partition in 0..partitions {
        let records: Vec<Record> = (0..per_partition)
            .map(|i| Record::unkeyed(format!("p{partition}-{i}")))
            .collect();
        client.produce(topic, partition, records).await?;
    }
    Ok(())
}

/// All committed offsets of `group`.
async fn committed(client: &Client, group: &str) -> Result<Vec<CommittedOffset>, ClientError> {
    client.fetch_offsets(group, &[]).await
}

/// Members of `group` per the server, with what each owns (assignment + revoking).
async fn owners(client: &Client, group: &str) -> Option<BTreeMap<String, BTreeSet<(String, u32)>>> {
    let described = client.describe_group(group).await.ok()?;
    Some(
        described
            .members
            .into_iter()
            .map(|m| {
                let owned = m
                    .assignment
                    .iter()
                    .chain(m.revoking.iter())
                    .map(|r| (r.topic.clone(), r.partition))
                    .collect();
                (m.member_id, owned)
            })
            .collect(),
    )
}

/// What the ownership watcher saw of a group, sample by sample.
#[derive(Debug, Default)]
struct Ownership {
    /// Answers of the server sampled.
    samples: u32,
    /// Members -> samples in which those members together owned every partition.
    whole: BTreeMap<usize, u32>,
    /// The first sample with a partition owned by two members.
    violation: Option<String>,
}

/// The watcher runs through the whole test, which lasts longer than c1's 2 s session timeout
/// alone: at one sample per 25 ms plus a describe call that is 80 or more. Fewer than this
/// means it hardly watched.
const MIN_OWNERSHIP_SAMPLES: u32 = 40;

/// Samples who owns which partition of `group` (12 partitions of `orders`) every 25 ms until
/// `stop`, into `watched`; stops at the first partition owned twice.
async fn watch_ownership(
    client: Client,
    group: &'static str,
    watched: Arc<Mutex<Ownership>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Some(members) = owners(&client, group).await {
            let mut seen = BTreeSet::new();
            let twice = members
                .values()
                .flatten()
                .find(|tp| !seen.insert((*tp).clone()));
            let mut state = watched.lock().expect("watched");
            state.samples += 1;
            if let Some(tp) = twice {
                state.violation = Some(format!("{tp:?} owned twice: {members:?}"));
                return;
            }
            if seen.len() == 12 {
                *state.whole.entry(members.len()).or_default() += 1;
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(Duration::from_millis(25)) => {}
        }
    }
}

/// Waits until the watcher has sampled `members` members owning every partition since this
/// call (so it watched the group in this state), or fails with the violation it saw.
async fn watched_whole(watched: &Arc<Mutex<Ownership>>, members: usize) -> anyhow::Result<()> {
    let before = watched
        .lock()
        .expect("watched")
        .whole
        .get(&members)
        .copied()
        .unwrap_or(0);
    wait_until(
        &format!("the ownership watcher to sample {members} members owning all 12 partitions"),
        Duration::from_secs(10),
        || async {
            let watched = watched.lock().expect("watched");
            if watched.violation.is_some() {
                return Some(());
            }
            (watched.whole.get(&members).copied().unwrap_or(0) > before).then_some(())
        },
    )
    .await?;
    if let Some(violation) = &watched.lock().expect("watched").violation {
        anyhow::bail!("{violation}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_shares_partitions_while_members_join_leave_and_die() -> anyhow::Result<()> {
    let node = Node::start_standalone("groups").await?;
    let client = node.client();
    client
        .create_topic("orders", NewTopic::default().partitions(12))
        .await?;
    produce(&client, "orders", 12, 50).await?;

    let log: Log = Arc::default();
    let seq = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // Watches the server's view: no partition ever owned by two members.
    let (watcher_stop_tx, watcher_stop) = tokio::sync::watch::channel(false);
    let watched: Arc<Mutex<Ownership>> = Arc::default();
    let watcher = tokio::spawn(watch_ownership(
        client.clone(),
        "billing",
        watched.clone(),
        watcher_stop,
    ));
    let config = group_config("billing", "orders");
    let server = node.address();
    let mut c1 = spawn_consumer(
        "c1",
        server.clone(),
        config.clone(),
        log.clone(),
        seq.clone(),
        stop.clone(),
    );
    let (c2_stop_tx, c2_stop) = tokio::sync::watch::channel(false);
    let c2 = spawn_consumer(
        "c2",
        server.clone(),
        config.clone(),
        log.clone(),
        seq.clone(),
        c2_stop,
    );
    let c3 = spawn_consumer(
        "c3",
        server.clone(),
        config.clone(),
        log.clone(),
        seq.clone(),
        stop.clone(),
    );
    let members = |n: usize| {
        let client = client.clone();
        move || {
            let client = client.clone();
            async move {
                let described = client.describe_group("billing").await.ok()?;
                (described.members.len() == n && described.state == "stable").then_some(())
            }
        }
    };
    wait_until("3 members, stable", Duration::from_secs(30), members(3)).await?;
    watched_whole(&watched, 3).await?;
    produce(&client, "orders", 12, 50).await?;

    // A fourth joins.
    let c4 = spawn_consumer(
        "c4",
        server.clone(),
        config.clone(),
        log.clone(),
        seq.clone(),
        stop.clone(),
    );
    wait_until("4 members, stable", Duration::from_secs(30), members(4)).await?;
    watched_whole(&watched, 4).await?;
    produce(&client, "orders", 12, 50).await?;

    // c2 leaves cleanly.
    c2_stop_tx.send(true)?;
    c2.await??;
    wait_until(
        "3 members after a leave",
        Duration::from_secs(30),
        members(3),
    )
    .await?;
    watched_whole(&watched, 3).await?;
    produce(&client, "orders", 12, 50).await?;

    // c1 dies: its task is aborted (no leave, no last commit); its session times out.
    c1.abort();
    let _ = (&mut c1).await;
    wait_until(
        "2 members after a death",
        Duration::from_secs(30),
        members(2),
    )
    .await?;
    watched_whole(&watched, 2).await?;
    produce(&client, "orders", 12, 50).await?;

    // Everything produced (12 × 250) is processed at least once.
    wait_until("every record processed", Duration::from_secs(60), || {
        let log = log.clone();
        async move {
            let seen: BTreeSet<(u32, u64)> = log
                .lock()
                .expect("log")
                .iter()
                .map(|p| (p.partition, p.offset))
                .collect();
            (seen.len() == 12 * 250).then_some(())
        }
    })
    .await?;
    stop_tx.send(true)?;
    c3.await??;
    c4.await??;
    watcher_stop_tx.send(true)?;
    watcher.await?;
    let watched = std::mem::take(&mut *watched.lock().expect("watched"));
    if let Some(violation) = &watched.violation {
        anyhow::bail!("{violation}");
    }
    anyhow::ensure!(
        watched.samples >= MIN_OWNERSHIP_SAMPLES,
        "the ownership watcher took only {} samples",
        watched.samples
    );
    eprintln!(
        "ownership watcher: {} samples, all 12 partitions owned in {:?} (members -> samples)",
        watched.samples, watched.whole
    );

    // Per partition, in processing order: no gap, and a handover repeats records only when the
    // previous owner died (c1) without committing them. Two owners reading at once would
    // interleave and break the offset continuity checked here.
    let mut log = log.lock().expect("log").clone();
    log.sort_by_key(|p| p.seq);
    for partition in 0..12 {
        let events: Vec<&Processed> = log.iter().filter(|p| p.partition == partition).collect();
        let mut owner = events[0].consumer.clone();
        let mut last = events[0].offset;
        assert_eq!(last, 0, "partition {partition} did not start at 0");
        for event in &events[1..] {
            if event.consumer != owner {
                if owner == "c1" {
                    assert!(
                        event.offset <= last + 1,
                        "partition {partition}: gap after c1 died ({last} -> {})",
                        event.offset
                    );
                } else {
                    assert_eq!(
                        event.offset,
                        last + 1,
                        "partition {partition}: {owner} handed over to {} after {last}, which resumed at {}",
                        event.consumer,
                        event.offset
                    );
                }
                owner = event.consumer.clone();
            } else {
                assert_eq!(
                    event.offset,
                    last + 1,
                    "partition {partition}: {owner} skipped or repeated"
                );
            }
            last = event.offset;
        }
        assert_eq!(
            last, 249,
            "partition {partition}: the last record read was {last}"
        );
    }
    // After a clean stop every partition's committed offset is its end.
    let committed = committed(&client, "billing").await?;
    assert_eq!(committed.len(), 12);
    assert!(committed.iter().all(|o| o.offset == 250), "{committed:?}");
    node.assert_no_panic();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarts_without_a_rebalance_and_zombies_are_fenced() -> anyhow::Result<()>
{
    let node = Node::start_standalone("static").await?;
    let client = node.client();
    client
        .create_topic("prices", NewTopic::default().partitions(6))
        .await?;
    let mut config = group_config("cache", "prices");
    config.session_timeout = Duration::from_secs(20);
    let mut static_config = config.clone();
    static_config.instance_id = Some("pod-1".into());

    let mut other = Consumer::new(ConsumerConfig::new([node.address()]))?;
    other.subscribe(config.clone()).await?;
    let mut first = Consumer::new(ConsumerConfig::new([node.address()]))?;
    first.subscribe(static_config.clone()).await?;
    let describe = || {
        let client = client.clone();
        async move { client.describe_group("cache").await }
    };
    // Poll both streams so they apply assignments (no records: nothing is produced).
    let settle = |consumer: &mut Consumer| {
        let _ = futures::FutureExt::now_or_never(consumer.next());
    };
    let stable = wait_until("a stable group of 2", Duration::from_secs(30), || {
        settle(&mut other);
        settle(&mut first);
        let describe = describe();
        async move {
            let d = describe.await.ok()?;
            (d.state == "stable"
                && d.members.len() == 2
                && d.members.iter().all(|m| m.assignment.len() == 3))
            .then_some(d)
        }
    })
    .await?;
    let static_before = stable
        .members
        .iter()
        .find(|m| m.instance_id.is_some())
        .expect("static member")
        .clone();
    let other_before = stable
        .members
        .iter()
        .find(|m| m.instance_id.is_none())
        .expect("other")
        .clone();

    // Restart: leave (static: keeps its partitions), then join again with the same instance.
    first.close().await?;
    let away = describe().await?;
    assert_eq!(
        away.group_epoch, stable.group_epoch,
        "a static leave must not rebalance"
    );
    let mut second = Consumer::new(ConsumerConfig::new([node.address()]))?;
    second.subscribe(static_config).await?;
    let old_id = static_before.member_id.clone();
    let after = wait_until("the static member back", Duration::from_secs(10), || {
        settle(&mut second);
        let describe = describe();
        let old_id = old_id.clone();
        async move {
            let d = describe.await.ok()?;
            let back = d.members.iter().find(|m| m.instance_id.is_some())?;
            (back.member_id != old_id).then_some(d)
        }
    })
    .await?;
    assert_eq!(after.group_epoch, stable.group_epoch, "no rebalance");
    let back = after
        .members
        .iter()
        .find(|m| m.instance_id.is_some())
        .expect("static");
    assert_eq!(back.assignment, static_before.assignment, "same partitions");
    let other_after = after
        .members
        .iter()
        .find(|m| m.instance_id.is_none())
        .expect("other");
    assert_eq!(other_after.assignment, other_before.assignment);
    assert_eq!(
        other_after.member_epoch, other_before.member_epoch,
        "the other member was not disturbed"
    );

    // The old incarnation is a zombie: its commits are refused and change nothing.
    let tp = &static_before.assignment[0];
    let zombie = client
        .commit_offsets(
            OffsetCommit::new("cache")
                .member(static_before.member_id.clone(), static_before.member_epoch)
                .offset(tp.topic.clone(), tp.partition, 7),
        )
        .await
        .unwrap_err();
    assert_eq!(zombie.code(), ErrorCode::UnknownMember, "{zombie}");
    let committed = committed(&client, "cache").await?;
    assert!(committed.iter().all(|o| o.offset != 7), "{committed:?}");
    node.assert_no_panic();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_bad_input_is_refused_without_a_state_change() -> anyhow::Result<()> {
    let node = Node::start_standalone("group-bad").await?;
    let client = node.client();
    client
        .create_topic("t", NewTopic::default().partitions(2))
        .await?;
    let join = client
        .heartbeat(Heartbeat {
            group_id: "g".into(),
            topics: vec!["t".into()],
            ..Heartbeat::default()
        })
        .await?;
    assert_eq!(join.assignment.len(), 2);
    assert!(join.member_epoch >= 1);
    let commit = |member_id: &str, epoch: u32, partition: u32| {
        OffsetCommit::new("g")
            .member(member_id, epoch)
            .offset("t", partition, 1)
    };
    client
        .commit_offsets(commit(&join.member_id, join.member_epoch, 0))
        .await?;
    let before = committed(&client, "g").await?;

    let expect = |result: Result<(), ClientError>, code: ErrorCode, needle: &str| {
        let error = result.expect_err(needle);
        assert_eq!(error.code(), code, "{error}");
        assert!(
            error.to_string().contains(needle),
            "{error} should name {needle}"
        );
    };
    expect(
        client
            .commit_offsets(commit("nobody", 1, 0))
            .await
            .map(drop),
        ErrorCode::UnknownMember,
        "nobody",
    );
    expect(
        client
            .commit_offsets(commit(&join.member_id, join.member_epoch + 5, 0))
            .await
            .map(drop),
        ErrorCode::StaleMemberEpoch,
        "epoch",
    );
    expect(
        client
            .commit_offsets(commit(&join.member_id, join.member_epoch, 9))
            .await
            .map(drop),
        ErrorCode::FencedMember,
        "t/9",
    );
    expect(
        client.commit_offsets(commit("", 0, 0)).await.map(drop),
        ErrorCode::GroupNotEmpty,
        "members",
    );
    expect(
        client.describe_group("missing").await.map(drop),
        ErrorCode::GroupNotFound,
        "missing",
    );
    expect(
        client.describe_group("bad group").await.map(drop),
        ErrorCode::InvalidArgument,
        "group_id",
    );
    expect(
        client
            .heartbeat(Heartbeat {
                group_id: "g".into(),
                topics: vec!["t".into()],
                session_timeout: Duration::from_millis(5),
                ..Heartbeat::default()
            })
            .await
            .map(drop),
        ErrorCode::InvalidArgument,
        "session_timeout_ms",
    );
    expect(
        client
            .heartbeat(Heartbeat {
                group_id: "g".into(),
                ..Heartbeat::default()
            })
            .await
            .map(drop),
        ErrorCode::InvalidArgument,
        "topics",
    );
    expect(
        client
            .heartbeat(Heartbeat {
                group_id: "g".into(),
                member_id: "ghost".into(),
                topics: vec!["t".into()],
                ..Heartbeat::default()
            })
            .await
            .map(drop),
        ErrorCode::UnknownMember,
        "ghost",
    );
    expect(
        client
            .reset_offsets("g", "t", &[], ResetTo::Earliest)
            .await
            .map(drop),
        ErrorCode::GroupNotEmpty,
        "members",
    );
    expect(
        client.delete_group("g").await.map(drop),
        ErrorCode::GroupNotEmpty,
        "members",
    );
    let after = committed(&client, "g").await?;
    assert_eq!(before, after, "a refused request changed the offsets");
    let described = client.describe_group("g").await?;
    assert_eq!(described.members.len(), 1);

    // The consumer crate: commit without a group is refused locally.
    let consumer = Consumer::new(ConsumerConfig::new([node.address()]))?;
    assert!(matches!(
        consumer.commit().await,
        Err(ClientError::InvalidArgument(_))
    ));
    node.assert_no_panic();
    Ok(())
}

/// Commits from outside the membership (an empty group), one increasing offset after another,
/// while the consumer-manager leader is killed: every acknowledged commit survives, and the
/// committed offset never goes backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_offsets_survive_the_loss_of_the_consumer_manager_leader() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterSpec::new(3, 1)).await?;
    let client = cluster.client();
    client
        .create_topic(
            "events",
            NewTopic::default().partitions(1).replication_factor(1),
        )
        .await?;
    let acknowledged = Arc::new(AtomicU64::new(0));
    let committer = {
        let client = cluster.client();
        let acknowledged = acknowledged.clone();
        tokio::spawn(async move {
            let mut highest_read = 0u64;
            for offset in 1..=u64::MAX {
                let commit = OffsetCommit::new("ledger").offset("events", 0, offset);
                if client.commit_offsets(commit).await.is_ok() {
                    acknowledged.store(offset, Ordering::SeqCst);
                }
                let read = committed(&client, "ledger").await;
                if let Ok(read) = read {
                    let now = read[0].offset;
                    assert!(
                        now >= highest_read,
                        "committed offset went back from {highest_read} to {now}"
                    );
                    highest_read = now;
                }
                if offset % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    wait_until("commits under way", Duration::from_secs(30), || {
        let acknowledged = acknowledged.clone();
        async move { (acknowledged.load(Ordering::SeqCst) > 100).then_some(()) }
    })
    .await?;
    // Find the consumer manager's leader: the only manager that answers a read itself.
    let mut leader = None;
    for (i, manager) in cluster.managers.iter().enumerate() {
        let mut channel_only = pb::consumer_groups_client::ConsumerGroupsClient::connect(format!(
            "http://{}",
            manager.address()
        ))
        .await?;
        let answer = channel_only
            .fetch_offsets(pb::FetchOffsetsRequest {
                group_id: "ledger".into(),
                partitions: vec![],
            })
            .await;
        if answer.is_ok() {
            leader = Some(i);
        }
    }
    let leader = leader.expect("a consumer-manager leader");
    let before_kill = acknowledged.load(Ordering::SeqCst);
    cluster.managers[leader].kill9()?;
    wait_until(
        "commits acknowledged again after the kill",
        Duration::from_secs(30),
        || {
            let acknowledged = acknowledged.clone();
            async move { (acknowledged.load(Ordering::SeqCst) > before_kill + 100).then_some(()) }
        },
    )
    .await?;
    let last = acknowledged.load(Ordering::SeqCst);
    Cluster::restart(&mut cluster.managers[leader]).await?;
    committer.abort();
    let _ = committer
        .await
        .map_err(|e| assert!(e.is_cancelled(), "the committer failed: {e}"));
    let read = committed(&client, "ledger").await?;
    assert!(
        read[0].offset >= last,
        "acknowledged {last}, read {}",
        read[0].offset
    );
    cluster.assert_no_panic();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqctl_lists_describes_resets_and_deletes_groups() -> anyhow::Result<()> {
    let node = Node::start_standalone("mqctl-groups").await?;
    let client = node.client();
    client
        .create_topic("audit", NewTopic::default().partitions(2))
        .await?;
    produce(&client, "audit", 2, 10).await?;
    let mqctl = |args: &[&str]| mq_tests::mqctl(&node.address(), args);
    // consume --group reads its share (all, alone) and commits what it printed.
    let consumed = mqctl(&[
        "consume", "audit", "--group", "auditors", "-n", "20", "-f", "%p:%o",
    ])?;
    assert!(
        consumed.status.success(),
        "{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&consumed.stdout).lines().count(),
        20
    );

    let listed = mqctl(&["group", "list", "--output", "json"])?;
    let groups: serde_json::Value = serde_json::from_slice(&listed.stdout)?;
    assert_eq!(groups[0]["group"], "auditors");
    assert_eq!(groups[0]["state"], "empty");

    let described = mqctl(&["group", "describe", "auditors", "--output", "json"])?;
    let described: serde_json::Value = serde_json::from_slice(&described.stdout)?;
    for partition in &described["offsets"].as_array().expect("offsets")[..] {
        assert_eq!(partition["committed"], 10);
        assert_eq!(partition["lag"], 0);
    }

    let reset = mqctl(&[
        "group",
        "reset-offsets",
        "auditors",
        "--topic",
        "audit",
        "--shift-by",
        "-4",
    ])?;
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&reset.stdout),
        "audit/0 -> 6\naudit/1 -> 6\n"
    );
    let reset = mqctl(&[
        "group",
        "reset-offsets",
        "auditors",
        "--topic",
        "audit",
        "-p",
        "1",
        "--to-offset",
        "99",
    ])?;
    assert_eq!(
        String::from_utf8_lossy(&reset.stdout),
        "audit/1 -> 10\n",
        "clamped to the high watermark"
    );
    // The next member resumes from the reset offsets: 4 records of partition 0.
    let resumed = mqctl(&[
        "consume", "audit", "--group", "auditors", "-n", "4", "-f", "%p:%o",
    ])?;
    assert_eq!(
        String::from_utf8_lossy(&resumed.stdout),
        "0:6\n0:7\n0:8\n0:9\n"
    );

    let deleted = mqctl(&["group", "delete", "auditors"])?;
    assert!(deleted.status.success());
    let missing = mqctl(&["group", "describe", "auditors"])?;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("GROUP_NOT_FOUND"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    node.assert_no_panic();
    Ok(())
}

/// A member that keeps a partition it was asked to give up is removed after its rebalance
/// timeout (while it still heartbeats), and the partition goes to the member waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_holding_a_revoked_partition_past_its_rebalance_timeout_is_removed()
-> anyhow::Result<()> {
    let node = Node::start_standalone("group-rebalance-timeout").await?;
    let client = node.client();
    client
        .create_topic("t", NewTopic::default().partitions(4))
        .await?;
    let beat = |member_id: String, epoch: u32, owned: Vec<TopicPartition>| {
        client.heartbeat(Heartbeat {
            group_id: "g".into(),
            member_id,
            member_epoch: epoch,
            topics: vec!["t".into()],
            owned,
            session_timeout: Duration::from_secs(30),
            rebalance_timeout: Duration::from_secs(1),
            ..Heartbeat::default()
        })
    };
    let stubborn = beat(String::new(), 0, vec![]).await?;
    assert_eq!(stubborn.assignment.len(), 4);
    let all = stubborn.assignment.clone();
    let patient = beat(String::new(), 0, vec![]).await?;
    assert!(
        patient.assignment.is_empty(),
        "nothing is granted before it is released"
    );
    // The stubborn member is told to give up two, and keeps claiming all four.
    let told = beat(
        stubborn.member_id.clone(),
        stubborn.member_epoch,
        all.clone(),
    )
    .await?;
    assert_eq!(told.assignment.len(), 2);
    let removed = wait_until(
        "the stubborn member's removal",
        Duration::from_secs(10),
        || {
            let (all, id, epoch) = (all.clone(), stubborn.member_id.clone(), told.member_epoch);
            let beat = &beat;
            async move {
                match beat(id, epoch, all).await {
                    Err(error) if error.code() == ErrorCode::UnknownMember => Some(()),
                    _ => None,
                }
            }
        },
    )
    .await;
    removed?;
    let granted = beat(patient.member_id.clone(), patient.member_epoch, vec![]).await?;
    assert_eq!(
        granted.assignment.len(),
        4,
        "the patient member gets every partition"
    );
    Ok(())
}

/// Reset moves an empty group's committed offsets to the earliest, the latest, an offset (to
/// the stored range), the first record at a time, or by N, per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_offsets_moves_to_each_kind_of_position() -> anyhow::Result<()> {
    let node = Node::start_standalone("group-reset").await?;
    let client = node.client();
    client
        .create_topic("t", NewTopic::default().partitions(2))
        .await?;
    // Partition 0: ten records at timestamps 1000, 2000, ..., 10000; partition 1: five.
    let records = |n: i64| -> Vec<Record> {
        (1..=n)
            .map(|i| Record::unkeyed(format!("r{i}")).with_timestamp(i * 1000))
            .collect()
    };
    client.produce("t", 0, records(10)).await?;
    client.produce("t", 1, records(5)).await?;
    let reset = async |to: ResetTo, partitions: Vec<u32>| {
        client.reset_offsets("g", "t", &partitions, to).await
    };
    let offsets = |offsets: Vec<CommittedOffset>| -> BTreeMap<u32, u64> {
        offsets
            .into_iter()
            .map(|c| (c.partition, c.offset))
            .collect()
    };
    let at = |pairs: &[(u32, u64)]| pairs.iter().copied().collect::<BTreeMap<_, _>>();
    assert_eq!(
        offsets(reset(ResetTo::Latest, vec![]).await?),
        at(&[(0, 10), (1, 5)])
    );
    assert_eq!(
        offsets(reset(ResetTo::Earliest, vec![]).await?),
        at(&[(0, 0), (1, 0)])
    );
    assert_eq!(
        offsets(reset(ResetTo::Offset(7), vec![]).await?),
        at(&[(0, 7), (1, 5)])
    );
    assert_eq!(
        offsets(reset(ResetTo::ShiftBy(-3), vec![0]).await?),
        at(&[(0, 4)])
    );
    assert_eq!(
        offsets(reset(ResetTo::ShiftBy(100), vec![1]).await?),
        at(&[(1, 5)])
    );
    // The first record at or after 3500 ms is the 4th (offset 3); past the end: the end.
    assert_eq!(
        offsets(reset(ResetTo::Timestamp(3_500), vec![]).await?),
        at(&[(0, 3), (1, 3)])
    );
    assert_eq!(
        offsets(reset(ResetTo::Timestamp(60_000), vec![]).await?),
        at(&[(0, 10), (1, 5)])
    );
    let stored = committed(&client, "g").await?;
    let stored: BTreeMap<u32, u64> = stored
        .into_iter()
        .map(|c| (c.partition, c.offset))
        .collect();
    assert_eq!(stored, at(&[(0, 10), (1, 5)]));
    Ok(())
}

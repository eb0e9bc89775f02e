//! Queue subscriptions end to end (real processes, gRPC, RocksDB): five consumers share one
//! partition, each message is acked exactly once, nacked messages come back after their delay,
//! a lease that runs out is delivered again, poison messages land in the dead-letter topic
//! after `max_deliveries` with headers saying why and from where, and `mqctl dlq redrive`
//! brings them back; key-ordered mode keeps each key's order under nacks and never has a key in
//! flight twice; bad input is refused with typed errors and changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mq_client::{
    Client, ErrorCode, FetchOptions, NewQueue, NewTopic, QueueConfig, QueueStart, Record,
};
use mq_consumer::{ConsumerConfig, QueueConsumer, QueueMessage};
use mq_proto::v1 as pb;
use mq_tests::{Node, mqctl, wait_until};

fn value(message: &QueueMessage) -> String {
    String::from_utf8(message.record.value.clone().expect("a value").to_vec()).expect("utf-8")
}

fn header<'a>(record: &'a Record, key: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| std::str::from_utf8(&h.value).ok())
}

async fn create_queue(
    client: &Client,
    name: &str,
    topic: &str,
    queue: NewQueue,
) -> anyhow::Result<QueueConfig> {
    let queue = NewQueue {
        topic: topic.into(),
        start: QueueStart::Earliest,
        ..queue
    };
    Ok(client.create_queue(name, queue).await?)
}

/// Every record of partition 0 of `topic`.
async fn read_topic(client: &Client, topic: &str) -> anyhow::Result<Vec<Record>> {
    let batch = client.fetch(topic, 0, 0, FetchOptions::default()).await?;
    Ok(batch.records.into_iter().map(|r| r.record).collect())
}

#[derive(Debug, Default)]
struct Outcome {
    /// Value -> successful acks.
    acked: HashMap<String, u32>,
    /// Value -> when it was nacked (first time), and when it came back.
    nacked_at: HashMap<String, Instant>,
    returned_after: HashMap<String, Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_consumers_ack_each_message_once_nacks_return_and_poison_is_dead_lettered()
-> anyhow::Result<()> {
    const MESSAGES: usize = 500;
    const POISON: usize = 5;
    let node = Node::start_standalone("queues").await?;
    let client = node.client();
    client.create_topic("jobs", NewTopic::default()).await?;
    let config = create_queue(
        &client,
        "work",
        "jobs",
        NewQueue::default()
            .ack_deadline(Duration::from_millis(1_500))
            .max_deliveries(3),
    )
    .await?;
    assert_eq!(config.dead_letter_topic, "jobs.work.dlq");
    let mut records: Vec<Record> = (0..MESSAGES)
        .map(|i| Record::unkeyed(format!("m{i}")))
        .collect();
    records.extend((0..POISON).map(|i| Record::unkeyed(format!("poison{i}"))));
    client.produce("jobs", 0, records).await?;

    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let mut workers = Vec::new();
    for worker in 0..5 {
        let consumer = QueueConsumer::new(ConsumerConfig::new([node.address()]), "work")?;
        let outcome = outcome.clone();
        workers.push(tokio::spawn(async move {
            // Worker 0 "crashes" holding its first lease: it never answers for it.
            let mut dropped_one = worker != 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if outcome.lock().expect("outcome").acked.len() == MESSAGES {
                    return anyhow::Ok(());
                }
                anyhow::ensure!(Instant::now() < deadline, "worker {worker} timed out");
                let messages = consumer.receive(20, Duration::from_millis(200)).await?;
                let (mut ack, mut retry, mut poison) = (Vec::new(), Vec::new(), Vec::new());
                for message in messages {
                    let value = value(&message);
                    if !dropped_one && value.starts_with('m') && !value.ends_with('7') {
                        dropped_one = true;
                        continue;
                    }
                    let mut outcome = outcome.lock().expect("outcome");
                    if value.starts_with("poison") {
                        poison.push(message.lease_id);
                    } else if value.ends_with('7') && message.delivery_attempt == 1 {
                        outcome.nacked_at.insert(value, Instant::now());
                        retry.push(message.lease_id);
                    } else {
                        if let Some(at) = outcome.nacked_at.get(&value).copied() {
                            outcome
                                .returned_after
                                .entry(value.clone())
                                .or_insert(at.elapsed());
                        }
                        ack.push((value, message.lease_id));
                    }
                }
                if !poison.is_empty() {
                    consumer.nack(poison, Duration::from_millis(50)).await?;
                }
                if !retry.is_empty() {
                    consumer.nack(retry, Duration::from_millis(300)).await?;
                }
                if !ack.is_empty() {
                    let (values, leases): (Vec<String>, Vec<String>) = ack.into_iter().unzip();
                    consumer.ack(leases).await?;
                    let mut outcome = outcome.lock().expect("outcome");
                    for value in values {
                        *outcome.acked.entry(value).or_default() += 1;
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let outcome = std::mem::take(&mut *outcome.lock().expect("outcome"));
    let expected: BTreeSet<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    assert_eq!(
        outcome.acked.keys().cloned().collect::<BTreeSet<_>>(),
        expected
    );
    let twice: Vec<_> = outcome.acked.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "acked more than once: {twice:?}");
    assert_eq!(outcome.nacked_at.len(), MESSAGES / 10);
    // The server keeps time in whole wall-clock milliseconds: allow a few of them.
    for (value, after) in &outcome.returned_after {
        assert!(
            *after >= Duration::from_millis(295),
            "{value} came back after {after:?}"
        );
    }
    assert_eq!(outcome.returned_after.len(), outcome.nacked_at.len());

    // The poison messages, after 3 deliveries each, are in the dead-letter topic.
    let dead = wait_until("5 dead letters", Duration::from_secs(20), || async {
        let dead = read_topic(&client, "jobs.work.dlq").await.ok()?;
        (dead.len() >= POISON).then_some(dead)
    })
    .await?;
    assert_eq!(dead.len(), POISON);
    for (i, record) in dead.iter().enumerate() {
        let source: u64 = header(record, "mq.dlq.offset").expect("offset").parse()?;
        assert!(source >= MESSAGES as u64, "{record:?}");
        assert_eq!(header(record, "mq.dlq.queue"), Some("work"));
        assert_eq!(header(record, "mq.dlq.topic"), Some("jobs"));
        assert_eq!(header(record, "mq.dlq.partition"), Some("0"));
        assert_eq!(header(record, "mq.dlq.deliveries"), Some("3"));
        assert_eq!(header(record, "mq.dlq.reason"), Some("nacked"));
        assert!(
            record
                .value
                .as_deref()
                .is_some_and(|v| v.starts_with(b"poison")),
            "{i}"
        );
    }
    let described = client.describe_queue("work").await?;
    let partition = &described.partitions[0];
    assert_eq!(partition.settled_floor, (MESSAGES + POISON) as u64);
    assert_eq!(partition.in_flight, 0);

    // `mqctl dlq inspect` shows them; `redrive` puts them back on the topic, once.
    let mqctl = |args: &[&str]| {
        let output = mqctl(&node.address(), args).expect("run mqctl");
        assert!(
            output.status.success(),
            "mqctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let inspected = mqctl(&["dlq", "inspect", "work"]);
    assert_eq!(inspected.lines().count(), POISON, "{inspected}");
    assert!(
        inspected.contains("\"mq.dlq.reason\":\"nacked\""),
        "{inspected}"
    );
    let redriven = mqctl(&["dlq", "redrive", "work"]);
    assert!(
        redriven.contains(&format!("redrove {POISON}")),
        "{redriven}"
    );
    let again = mqctl(&["dlq", "redrive", "work"]);
    assert!(again.contains("redrove 0"), "{again}");
    let consumer = QueueConsumer::new(ConsumerConfig::new([node.address()]), "work")?;
    let mut back = Vec::new();
    while back.len() < POISON {
        let messages = consumer.receive(10, Duration::from_secs(5)).await?;
        anyhow::ensure!(
            !messages.is_empty(),
            "the redriven messages did not come back"
        );
        back.extend(messages);
    }
    let values: BTreeSet<String> = back.iter().map(value).collect();
    let poison: BTreeSet<String> = (0..POISON).map(|i| format!("poison{i}")).collect();
    assert_eq!(values, poison);
    assert!(
        back.iter()
            .all(|m| m.delivery_attempt == 1 && header(&m.record, "mq.dlq.queue").is_none())
    );
    consumer.ack(back.into_iter().map(|m| m.lease_id)).await?;
    node.assert_no_panic();
    Ok(())
}

/// Where a received message of a key-ordered queue is: handled by its consumer, or its ack or
/// nack sent and not answered yet.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flight {
    Handling,
    Settling,
}

/// The messages in flight per key, over every consumer: from when a receive answered with
/// the message until the answer to its ack (or nack) came back.
#[derive(Debug, Default)]
struct InFlight(Mutex<HashMap<String, HashMap<String, Flight>>>);

impl InFlight {
    /// A consumer received a message of `key` under `lease`. Refused while another message of
    /// the key is in flight and its ack not sent yet: the broker leased both at once. One
    /// whose ack was sent may have been settled already, and the broker may answer the next
    /// receive before the ack's answer reaches its consumer, so that one does not count.
    fn received(&self, key: &str, lease: &str) -> anyhow::Result<()> {
        let mut keys = self.0.lock().expect("in flight");
        let leases = keys.entry(key.to_owned()).or_default();
        if let Some((other, _)) = leases.iter().find(|(_, f)| **f == Flight::Handling) {
            anyhow::bail!("{key} delivered (lease {lease}) while lease {other} of it is in flight");
        }
        leases.insert(lease.to_owned(), Flight::Handling);
        Ok(())
    }

    /// Its ack or nack is about to be sent.
    fn settling(&self, key: &str, lease: &str) {
        let mut keys = self.0.lock().expect("in flight");
        if let Some(flight) = keys.get_mut(key).and_then(|leases| leases.get_mut(lease)) {
            *flight = Flight::Settling;
        }
    }

    /// Its ack or nack was answered.
    fn settled(&self, key: &str, lease: &str) {
        let mut keys = self.0.lock().expect("in flight");
        if let Some(leases) = keys.get_mut(key) {
            leases.remove(lease);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_ordered_queue_keeps_each_keys_order_under_nacks() -> anyhow::Result<()> {
    const KEYS: usize = 10;
    const PER_KEY: usize = 30;
    let node = Node::start_standalone("queues-keyed").await?;
    let client = node.client();
    client.create_topic("orders", NewTopic::default()).await?;
    create_queue(
        &client,
        "fulfil",
        "orders",
        NewQueue::default().key_ordered().max_deliveries(100),
    )
    .await?;
    let records: Vec<Record> = (0..PER_KEY)
        .flat_map(|seq| {
            (0..KEYS).map(move |key| Record::keyed(format!("k{key}"), format!("k{key}:{seq}")))
        })
        .collect();
    client.produce("orders", 0, records).await?;

    // Per key: the sequence numbers in the order they were acked, and its messages in flight.
    let acked: Arc<Mutex<BTreeMap<String, Vec<usize>>>> = Arc::default();
    let in_flight = Arc::new(InFlight::default());
    let mut workers = Vec::new();
    for _ in 0..5 {
        let consumer = QueueConsumer::new(ConsumerConfig::new([node.address()]), "fulfil")?;
        let (acked, in_flight) = (acked.clone(), in_flight.clone());
        workers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let done: usize = acked.lock().expect("acked").values().map(Vec::len).sum();
                if done == KEYS * PER_KEY {
                    return anyhow::Ok(());
                }
                anyhow::ensure!(Instant::now() < deadline, "timed out with {done} acked");
                let messages = consumer.receive(10, Duration::from_millis(200)).await?;
                // Every message of this answer is in flight from now on, before any is acked.
                let mut received = Vec::new();
                for message in messages {
                    let value = value(&message);
                    let (key, seq) = value.split_once(':').expect("key:seq");
                    let seq: usize = seq.parse()?;
                    in_flight.received(key, &message.lease_id)?;
                    received.push((key.to_owned(), seq, message));
                }
                for (key, seq, message) in received {
                    // Every fifth message fails once: it must not let the key's next one by.
                    let fail = seq.is_multiple_of(5) && message.delivery_attempt == 1;
                    in_flight.settling(&key, &message.lease_id);
                    if fail {
                        consumer
                            .nack([message.lease_id.clone()], Duration::from_millis(30))
                            .await?;
                    } else {
                        acked
                            .lock()
                            .expect("acked")
                            .entry(key.clone())
                            .or_default()
                            .push(seq);
                        consumer.ack([message.lease_id.clone()]).await?;
                    }
                    in_flight.settled(&key, &message.lease_id);
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let in_order: Vec<usize> = (0..PER_KEY).collect();
    for (key, seqs) in acked.lock().expect("acked").iter() {
        assert_eq!(seqs, &in_order, "key {key}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queue_input_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let node = Node::start_standalone("queues-bad").await?;
    let client = node.client();
    client.create_topic("jobs", NewTopic::default()).await?;
    let jobs = || NewQueue::on("jobs");
    for (name, queue, code, field) in [
        (
            "q",
            jobs().ack_deadline(Duration::from_millis(50)),
            ErrorCode::InvalidArgument,
            "config.ack_deadline_ms",
        ),
        (
            "q",
            jobs().max_deliveries(5000),
            ErrorCode::InvalidArgument,
            "config.max_deliveries",
        ),
        (
            "q",
            jobs().dead_letter_topic("jobs"),
            ErrorCode::InvalidArgument,
            "config.dead_letter_topic",
        ),
        ("bad name!", jobs(), ErrorCode::InvalidArgument, "name"),
        ("q", NewQueue::on("nope"), ErrorCode::TopicNotFound, "nope"),
    ] {
        let err = client.create_queue(name, queue).await.unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    // A request without a config, which mq-client's typed call cannot send.
    let status = pb::queues_client::QueuesClient::connect(format!("http://{}", node.address()))
        .await?
        .create_queue(pb::CreateQueueRequest {
            name: "q".into(),
            config: None,
        })
        .await
        .unwrap_err();
    let err = mq_client::ApiError::from_status(&status);
    assert_eq!(err.code, ErrorCode::InvalidArgument, "{err}");
    assert!(err.to_string().contains("config"), "config: {err}");
    assert!(client.list_queues().await?.is_empty());

    let queue = jobs()
        .ack_deadline(Duration::from_millis(500))
        .start(QueueStart::Earliest);
    client.create_queue("q", queue.clone()).await?;
    let err = client.create_queue("q", queue).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::QueueAlreadyExists, "{err}");
    let err = client
        .receive("nobody", 0, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::QueueNotFound, "{err}");

    client
        .produce("jobs", 0, vec![Record::unkeyed("only")])
        .await?;
    let consumer = QueueConsumer::new(ConsumerConfig::new([node.address()]), "q")?;
    let first = consumer.receive(1, Duration::from_secs(5)).await?.remove(0);
    let ack = |ids: Vec<&str>| client.ack("q", ids.into_iter().map(str::to_owned).collect());
    let err = ack(vec!["garbage"]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    assert!(err.to_string().contains("lease_ids[0]"), "{err}");
    let err = ack(vec![]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    // One unknown lease among good ones: nothing is acked.
    let err = ack(vec![&first.lease_id, "0:99:1"]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::LeaseExpired, "{err}");
    assert!(err.to_string().contains("0:99:1"), "{err}");

    // The lease runs out: the message comes back and the old lease is refused.
    let second = consumer.receive(1, Duration::from_secs(5)).await?.remove(0);
    assert_eq!((second.offset, second.delivery_attempt), (first.offset, 2));
    let err = consumer.ack([first.lease_id.clone()]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::LeaseExpired, "{err}");
    let err = client
        .extend_leases(
            "q",
            vec![second.lease_id.clone()],
            Duration::from_millis(10),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    // Extended, it outlives its first deadline; then acked once and for all.
    consumer
        .extend([second.lease_id.clone()], Duration::from_secs(5))
        .await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(consumer.receive(1, Duration::ZERO).await?.is_empty());
    consumer.ack([second.lease_id.clone()]).await?;
    consumer.ack([second.lease_id]).await?;
    let err = consumer.ack([first.lease_id]).await;
    assert!(
        err.is_ok(),
        "acking a settled message again succeeds: {err:?}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        consumer
            .receive(1, Duration::from_millis(300))
            .await?
            .is_empty()
    );
    client.delete_queue("q").await?;
    let err = client.delete_queue("q").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::QueueNotFound, "{err}");
    Ok(())
}

/// Two consumers work through a queue while the consumer manager's leader is killed: every
/// message is delivered and settled, and none is delivered by a receive that started after an
/// ack of it succeeded (acks survive the failover; in-flight leases are delivered again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_survive_the_loss_of_the_consumer_manager_leader() -> anyhow::Result<()> {
    const MESSAGES: usize = 400;
    mq_tests::cluster::Cluster::run(mq_tests::cluster::ClusterSpec::new(3, 1), async |cluster| {
        let client = cluster.client();
        client
            .create_topic("jobs", NewTopic::default().replication_factor(1))
            .await?;
        create_queue(
            &client,
            "work",
            "jobs",
            NewQueue::default()
                .ack_deadline(Duration::from_secs(2))
                .max_deliveries(100),
        )
        .await?;
        let records: Vec<Record> = (0..MESSAGES)
            .map(|i| Record::unkeyed(format!("m{i}")))
            .collect();
        client.produce("jobs", 0, records).await?;

        // value -> (receive started, value) deliveries, and the first successful ack's end.
        type Log = Arc<Mutex<(Vec<(Instant, String)>, HashMap<String, Instant>)>>;
        let log: Log = Arc::default();
        let mut workers = Vec::new();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for _ in 0..2 {
            let consumer =
                QueueConsumer::new(ConsumerConfig::new(cluster.broker_addresses()), "work")?;
            let (log, stop) = (log.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(90);
                loop {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return anyhow::Ok(());
                    }
                    anyhow::ensure!(Instant::now() < deadline, "timed out");
                    let started = Instant::now();
                    let messages = match consumer.receive(10, Duration::from_millis(200)).await {
                        Ok(messages) => messages,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    if messages.is_empty() {
                        continue;
                    }
                    let values: Vec<String> = messages.iter().map(value).collect();
                    log.lock()
                        .expect("log")
                        .0
                        .extend(values.iter().map(|v| (started, v.clone())));
                    let leases = messages.into_iter().map(|m| m.lease_id);
                    // A failed ack (delivered again meanwhile, or the call failed): the
                    // message will come back.
                    if consumer.ack(leases).await.is_ok() {
                        let done = Instant::now();
                        let mut log = log.lock().expect("log");
                        for value in values {
                            log.1.entry(value).or_insert(done);
                        }
                    }
                }
            }));
        }
        wait_until("acks under way", Duration::from_secs(30), || async {
            (log.lock().expect("log").1.len() > MESSAGES / 4).then_some(())
        })
        .await?;
        // The consumer manager's leader is the only manager that answers a queue read itself.
        let mut leader = None;
        for (i, manager) in cluster.managers.iter().enumerate() {
            let mut direct =
                pb::queues_client::QueuesClient::connect(format!("http://{}", manager.address()))
                    .await?;
            if direct.list_queues(pb::ListQueuesRequest {}).await.is_ok() {
                leader = Some(i);
            }
        }
        let leader = leader.expect("a consumer-manager leader");
        cluster.managers[leader].kill9()?;
        // An ack whose answer was lost in the kill may have been committed: the queue's
        // settled floor, not the answers, says when every message is done.
        wait_until("every message settled", Duration::from_secs(60), || async {
            let described = client.describe_queue("work").await.ok()?;
            (described.partitions[0].settled_floor == MESSAGES as u64).then_some(())
        })
        .await?;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for worker in workers {
            worker.await??;
        }
        let (deliveries, acked) = std::mem::take(&mut *log.lock().expect("log"));
        let delivered: std::collections::HashSet<&String> =
            deliveries.iter().map(|(_, v)| v).collect();
        assert_eq!(delivered.len(), MESSAGES, "every message was delivered");
        assert!(
            acked.len() > MESSAGES / 2,
            "most acks were answered: {}",
            acked.len()
        );
        let late: Vec<&(Instant, String)> = deliveries
            .iter()
            .filter(|(started, value)| acked.get(value).is_some_and(|done| started > done))
            .collect();
        assert!(late.is_empty(), "delivered again after an ack: {late:?}");
        eprintln!(
            "{} deliveries of {MESSAGES} messages across the failover",
            deliveries.len()
        );
        // Bad input through a broker gets its own error at once, also with a cluster-manager
        // node down (not the dead node's connection error, retried until the deadline).
        let started = Instant::now();
        let err = client.ack("work", vec![]).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        Ok(())
    })
    .await
}

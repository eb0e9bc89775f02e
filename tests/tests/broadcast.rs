//! Broadcast subscriptions end to end (real processes): every instance gets every record
//! published after it subscribed, nothing is left on the servers, and an instance reading with
//! latest-per-key coalescing gets each key's newest value from fewer records.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use mq_client::{NewTopic, Record};
use mq_consumer::{Consumer, ConsumerConfig};
use mq_tests::Node;

/// Reads `count` records from `consumer` (bounded in time): `(partition, offset, value)`.
async fn take(consumer: &mut Consumer, count: usize) -> anyhow::Result<Vec<(u32, u64, String)>> {
    let mut records = Vec::new();
    while records.len() < count {
        let record = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await?
            .expect("broadcast streams never end")?;
        let value = String::from_utf8(record.record.value.expect("a value").to_vec())?;
        records.push((record.partition, record.offset, value));
    }
    Ok(records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_instance_gets_every_record_published_after_it_subscribed() -> anyhow::Result<()> {
    let node = Node::start_standalone("broadcast").await?;
    let client = node.client();
    client
        .create_topic("invalidations", NewTopic::default().partitions(3))
        .await?;
    // Published before anyone listens: nobody gets these.
    client
        .produce("invalidations", 0, vec![Record::keyed("k", "early")])
        .await?;

    let mut instances = Vec::new();
    let mut published = Vec::new();
    for round in 0..3 {
        let mut instance = Consumer::new(ConsumerConfig::new([node.address()]))?;
        instance.broadcast(["invalidations"]).await?;
        instances.push(instance);
        let mut sent = Vec::new();
        for i in 0..30 {
            let value = format!("round{round}-{i}");
            client
                .produce(
                    "invalidations",
                    i % 3,
                    vec![Record::keyed(format!("key{}", i % 10), value.clone())],
                )
                .await?;
            sent.push(value);
        }
        published.push(sent);
    }
    for (joined, instance) in instances.iter_mut().enumerate() {
        let expected: BTreeSet<String> = published[joined..].iter().flatten().cloned().collect();
        let got = take(instance, expected.len()).await?;
        let values: BTreeSet<String> = got.iter().map(|(_, _, v)| v.clone()).collect();
        assert_eq!(values, expected, "instance {joined}");
        assert_eq!(
            values.len(),
            got.len(),
            "instance {joined} got a record twice"
        );
        // Per partition in offset order.
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        for (partition, offset, _) in &got {
            if let Some(previous) = last.insert(*partition, *offset) {
                assert!(
                    *offset > previous,
                    "instance {joined}: partition {partition} went back"
                );
            }
        }
        // Nothing more arrives.
        let more = tokio::time::timeout(Duration::from_millis(300), instance.next()).await;
        assert!(
            more.is_err(),
            "instance {joined} got more than was published"
        );
    }
    // No state on the servers: no group, nothing to clean up when instances go away.
    let groups = client.list_groups().await?;
    assert!(groups.is_empty(), "{groups:?}");
    drop(instances);
    node.assert_no_panic();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_instance_with_coalescing_gets_each_keys_latest_value() -> anyhow::Result<()> {
    const KEYS: usize = 10;
    const RECORDS: usize = 2_000;
    let node = Node::start_standalone("broadcast-coalesce").await?;
    let client = node.client();
    client.create_topic("prices", NewTopic::default()).await?;
    let mut config = ConsumerConfig::new([node.address()]);
    config.coalesce_by_key = true;
    let mut slow = Consumer::new(config)?;
    slow.broadcast(["prices"]).await?;
    let mut every = Consumer::new(ConsumerConfig::new([node.address()]))?;
    every.broadcast(["prices"]).await?;

    // Published while neither instance reads; the last value of key k is "k:last".
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(200) {
        let records = chunk
            .iter()
            .map(|i| {
                let value = match *i >= RECORDS - KEYS {
                    true => format!("key{}:last", i % KEYS),
                    false => format!("key{}:{i}", i % KEYS),
                };
                Record::keyed(format!("key{}", i % KEYS), value)
            })
            .collect();
        client.produce("prices", 0, records).await?;
    }

    assert_eq!(take(&mut every, RECORDS).await?.len(), RECORDS);
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    let mut received = 0;
    let mut last_offset = None;
    while latest.values().filter(|v| v.ends_with(":last")).count() < KEYS {
        let (_, offset, value) = take(&mut slow, 1).await?.remove(0);
        assert!(last_offset < Some(offset), "offsets go forward");
        last_offset = Some(offset);
        let key = value.split(':').next().expect("key").to_owned();
        latest.insert(key, value);
        received += 1;
    }
    assert_eq!(last_offset, Some(RECORDS as u64 - 1));
    assert!(
        received <= RECORDS / 4,
        "coalescing left {received} of {RECORDS} records"
    );
    eprintln!("coalesced: {received} of {RECORDS} records delivered");
    Ok(())
}

//! Guarantee: consumers waiting at the tail get new messages as soon as they are committed,
//! without polling: a long-poll fetch returns when data arrives (not when its wait ends), and a
//! subscription pushes each new batch, in order and without gaps, to a waiting consumer.

use std::time::{Duration, Instant};

use futures::StreamExt;
use mq_client::{FetchOptions, NewTopic, Record, StartAt};
use mq_tests::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_fetch_returns_as_soon_as_data_arrives() -> anyhow::Result<()> {
    let node = Node::start_standalone("long-poll").await?;
    let client = node.client();
    client.create_topic("prices", NewTopic::default()).await?;

    // Nothing to read: the fetch waits its whole max_wait and returns empty.
    let started = Instant::now();
    let empty = client
        .fetch(
            "prices",
            0,
            0,
            FetchOptions {
                max_wait: Duration::from_millis(300),
                ..Default::default()
            },
        )
        .await?;
    assert!(empty.records.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "returned before max_wait without data"
    );

    // A long wait ends when a record is committed, long before max_wait.
    let max_wait = Duration::from_secs(20);
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let batch = client
                .fetch(
                    "prices",
                    0,
                    0,
                    FetchOptions {
                        max_wait,
                        ..Default::default()
                    },
                )
                .await;
            (batch, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the fetch should be waiting for data"
    );
    client
        .produce("prices", 0, vec![Record::keyed("sku-1", "9.99")])
        .await?;
    let (batch, waited) = waiting.await?;
    let batch = batch?;
    assert_eq!(batch.records.len(), 1);
    assert_eq!(batch.records[0].record.value.as_deref(), Some(&b"9.99"[..]));
    assert!(
        waited < max_wait / 2,
        "fetch returned after {waited:?}, not when data arrived"
    );
    node.assert_no_panic();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_pushes_new_messages_to_a_waiting_consumer() -> anyhow::Result<()> {
    let node = Node::start_standalone("subscribe").await?;
    let client = node.client();
    client.create_topic("stock", NewTopic::default()).await?;
    client
        .produce("stock", 0, vec![Record::unkeyed("before")])
        .await?;

    // From LATEST: only what is produced after subscribing.
    let mut latest = client.subscribe("stock", 0, StartAt::Latest).await?;
    // From an offset: everything from there.
    let mut from_zero = client.subscribe("stock", 0, StartAt::Offset(0)).await?;

    let first = from_zero.next().await.expect("record")?;
    assert_eq!(
        (first.offset, first.record.value.as_deref()),
        (0, Some(&b"before"[..]))
    );

    for round in 0..5u64 {
        let values: Vec<Record> = (0..3)
            .map(|i| Record::unkeyed(format!("r{round}-{i}")))
            .collect();
        let base = client.produce("stock", 0, values.clone()).await?;
        for (i, expected) in values.iter().enumerate() {
            for subscription in [&mut latest, &mut from_zero] {
                let received = tokio::time::timeout(Duration::from_secs(10), subscription.next())
                    .await
                    .map_err(|_| anyhow::anyhow!("no push within 10 s in round {round}"))?
                    .expect("stream open")?;
                assert_eq!(received.offset, base + i as u64);
                assert_eq!(received.record.value, expected.value);
            }
        }
    }
    assert_eq!(latest.position(), Some(16));
    node.assert_no_panic();
    Ok(())
}

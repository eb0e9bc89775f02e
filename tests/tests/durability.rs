//! Guarantee: every message a standalone node acknowledged is durable. After `kill -9` (or a
//! SIGTERM shutdown) and a restart on the same data directory, each one is stored at the
//! partition and offset it was acknowledged with, with key, value, headers and timestamp
//! intact; messages of one key sit in one partition in send order; nothing unacknowledged
//! appears; and the node accepts writes again. A second node cannot take a data directory in
//! use.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mq_client::{Client, NewTopic};
use mq_tests::Node;
use mq_tests::workload::{produce_keyed, read_partition, verify_stored};

const TOPIC: &str = "orders";
const MESSAGES: usize = 10_000;
const KEYS: usize = 50;
const PARTITIONS: u32 = 3;

async fn stored(client: &Client) -> anyhow::Result<BTreeMap<u32, Vec<mq_client::ConsumedRecord>>> {
    let mut stored = BTreeMap::new();
    for partition in 0..PARTITIONS {
        stored.insert(partition, read_partition(client, TOPIC, partition).await?);
    }
    Ok(stored)
}

/// Produces the workload, stops the node with `stop`, restarts it, and checks the guarantee.
async fn survives(stop: impl AsyncFnOnce(&mut Node) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut node = Node::start_standalone("durability").await?;
    let client = node.client();
    client
        .create_topic(TOPIC, NewTopic::default().partitions(PARTITIONS))
        .await?;
    let mut acked = produce_keyed(&client, TOPIC, 0..MESSAGES, KEYS, 100).await?;
    assert_eq!(acked.len(), MESSAGES);

    stop(&mut node).await?;
    node.restart().await?;

    let client = node.client();
    verify_stored(&acked, &stored(&client).await?, PARTITIONS)?;

    // The node keeps going where it left off.
    acked.extend(produce_keyed(&client, TOPIC, MESSAGES..MESSAGES + 1_000, KEYS, 100).await?);
    verify_stored(&acked, &stored(&client).await?, PARTITIONS)?;
    node.assert_no_panic();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() -> anyhow::Result<()> {
    survives(async |node| node.kill9()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_a_sigterm_shutdown() -> anyhow::Result<()> {
    survives(async |node| {
        let status = node.terminate().await?;
        anyhow::ensure!(status.success(), "SIGTERM shutdown exited with {status}");
        anyhow::ensure!(node.log().contains("stopped"), "no clean stop in the log");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_a_data_dir_in_use_fails_clearly() -> anyhow::Result<()> {
    let node = Node::start_standalone("locked").await?;
    let mut second = node
        .command(mq_tests::reserve_port())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            second.kill()?;
            anyhow::bail!("the second node did not give up on the locked data directory");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("piped"), &mut stderr)?;
    assert!(!status.success(), "the second node must fail");
    assert!(
        stderr.contains("is in use by another running node")
            && stderr.contains(&node.data_dir().display().to_string()),
        "unclear error: {stderr}"
    );
    // The first node is unaffected.
    let client = node.client();
    client
        .create_topic("still-serving", NewTopic::default())
        .await?;
    node.assert_no_panic();
    Ok(())
}

/// An idempotent producer's retry after a restart is recognised: the partition remembers the
/// producer's recent batches durably (and refuses a gap in its sequence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_batches_are_deduplicated_across_kill_9() -> anyhow::Result<()> {
    use mq_proto::v1 as pb;
    let mut node = Node::start_standalone("idempotence").await?;
    node.client()
        .create_topic("payments", NewTopic::default().partitions(1))
        .await?;
    let batch = |base_sequence: u32, count: u32| pb::ProduceRequest {
        topic: "payments".into(),
        timeout_ms: 0,
        batches: vec![pb::PartitionBatch {
            partition: Some(0),
            records: (0..count)
                .map(|i| pb::Record {
                    key: Some(format!("k{i}").into()),
                    value: Some(format!("seq {}", base_sequence + i).into()),
                    headers: vec![],
                    timestamp_ms: 1,
                })
                .collect(),
            producer_id: 0xfeed,
            base_sequence,
            ..Default::default()
        }],
    };
    async fn send(
        address: &str,
        request: pb::ProduceRequest,
    ) -> anyhow::Result<pb::PartitionResult> {
        let mut broker =
            pb::broker_client::BrokerClient::connect(format!("http://{address}")).await?;
        let mut results = broker.produce(request).await?.into_inner().results;
        Ok(results.remove(0))
    }
    let first = send(&node.address(), batch(0, 5)).await?;
    let second = send(&node.address(), batch(5, 5)).await?;
    assert!(first.error.is_none() && second.error.is_none());
    assert_eq!((first.base_offset, second.base_offset), (0, 5));

    node.kill9()?;
    node.restart().await?;

    // Both retried after the restart: the original offsets, nothing appended.
    for (request, offset) in [(batch(0, 5), 0), (batch(5, 5), 5)] {
        let retried = send(&node.address(), request).await?;
        assert!(retried.error.is_none(), "{retried:?}");
        assert!(retried.duplicate, "{retried:?}");
        assert_eq!(retried.base_offset, offset);
    }
    // A gap is refused (retryable), the next batch appended.
    let gap = send(&node.address(), batch(20, 1)).await?;
    let error = gap.error.expect("a gap must be refused");
    assert_eq!(
        error.reason,
        pb::ErrorReason::OutOfOrderSequence as i32,
        "{error:?}"
    );
    assert!(error.retryable);
    let next = send(&node.address(), batch(10, 1)).await?;
    assert!(next.error.is_none() && !next.duplicate, "{next:?}");
    assert_eq!(next.base_offset, 10);
    let stored = read_partition(&node.client(), "payments", 0).await?;
    assert_eq!(stored.len(), 11);
    node.assert_no_panic();
    Ok(())
}

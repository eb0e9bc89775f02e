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

async fn stored(client: &Client) -> anyhow::Result<BTreeMap<u32, Vec<mq_client::ConsumedRecord>>> {
    let mut stored = BTreeMap::new();
    for partition in 0..3 {
        stored.insert(partition, read_partition(client, TOPIC, partition).await?);
    }
    Ok(stored)
}

/// Produces the workload, stops the node with `stop`, restarts it, and checks the guarantee.
async fn survives(stop: impl AsyncFnOnce(&mut Node) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut node = Node::start_standalone("durability").await?;
    let client = node.client();
    client
        .create_topic(TOPIC, NewTopic::default().partitions(3))
        .await?;
    let mut acked = produce_keyed(&client, TOPIC, 0..MESSAGES, KEYS, 100).await?;
    assert_eq!(acked.len(), MESSAGES);

    stop(&mut node).await?;
    node.restart().await?;

    let client = node.client();
    verify_stored(&acked, &stored(&client).await?)?;

    // The node keeps going where it left off.
    acked.extend(produce_keyed(&client, TOPIC, MESSAGES..MESSAGES + 1_000, KEYS, 100).await?);
    verify_stored(&acked, &stored(&client).await?)?;
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

//! Guarantee: a broker whose disk fills up refuses new data cleanly instead of failing: its
//! produce requests get RESOURCE_EXHAUSTED with reason DISK_FULL naming the reserve
//! (`storage.min_free_mib`), it takes no replicated entries (their leaders back off), it keeps
//! running, and partitions led elsewhere keep taking writes. When space returns it takes
//! writes again and catches up, every replica identical, and nothing acknowledged is lost.
//!
//! The broker's data directory is a small tmpfs; the disk is filled by another file (a log
//! gone wild, say), then freed by deleting it.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use mq_client::{Client, NewTopic, Record};
use mq_common::error::{ApiError, ErrorCode};
use mq_proto::v1 as pb;
use mq_proto::v1::broker_client::BrokerClient;
use mq_tests::cluster::{Cluster, ClusterSpec, read_replica, replicas_identical};
use mq_tests::wait_until;
use mq_tests::workload::read_partition;
use tonic::Code;

const TOPIC: &str = "stock";
const PARTITIONS: u32 = 6;
const SMALL_BROKER: u32 = 3;
const DISK_BYTES: u64 = 256 << 20;
const RESERVE_MIB: u64 = 96;
const TIMEOUT: Duration = Duration::from_secs(60);

/// What was acknowledged: (partition, offset) → value.
type Acked = BTreeMap<(u32, u64), String>;

async fn produce_to(
    client: &Client,
    partition: u32,
    values: impl Iterator<Item = String>,
    acked: &mut Acked,
) -> anyhow::Result<()> {
    for value in values {
        let offset = client
            .produce(TOPIC, partition, vec![Record::unkeyed(value.clone())])
            .await
            .map_err(|e| anyhow::anyhow!("produce {value} to partition {partition}: {e}"))?;
        acked.insert((partition, offset), value);
    }
    Ok(())
}

/// A produce of one record sent straight to `address`, as any client would: its outcome, the
/// whole call's or the partition's.
async fn raw_produce(address: &str, partition: u32) -> anyhow::Result<Result<(), ApiError>> {
    let mut broker = BrokerClient::connect(format!("http://{address}")).await?;
    let request = pb::ProduceRequest {
        topic: TOPIC.into(),
        batches: vec![pb::PartitionBatch {
            partition: Some(partition),
            records: vec![pb::Record {
                value: Some(Bytes::from_static(b"probe")),
                ..Default::default()
            }],
            ..Default::default()
        }],
        timeout_ms: 5_000,
    };
    Ok(match broker.produce(request).await {
        Err(status) => Err(ApiError::from_status(&status)),
        Ok(response) => match response.into_inner().results.pop().and_then(|r| r.error) {
            Some(error) => Err(ApiError::from_partition_error(&error)),
            None => Ok(()),
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_out_of_disk_refuses_writes_cleanly_and_recovers_when_space_returns()
-> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "a small disk is a tmpfs mount, which needs root"
    );
    let mut cluster = Cluster::start(
        ClusterSpec::new(1, 3)
            .broker_set(&format!("storage.min_free_mib={RESERVE_MIB}"))
            .broker_set("storage.write_buffer_mib=16")
            .broker_on_small_disk(SMALL_BROKER, DISK_BYTES),
    )
    .await?;
    let client = cluster.client();
    client
        .create_topic(
            TOPIC,
            NewTopic::default()
                .partitions(PARTITIONS)
                .replication_factor(3),
        )
        .await?;
    cluster
        .wait_fully_replicated(&client, TOPIC, TIMEOUT)
        .await?;
    let mut acked = Acked::new();
    for partition in 0..PARTITIONS {
        produce_to(
            &client,
            partition,
            (0..50).map(|i| format!("before-{partition}-{i}")),
            &mut acked,
        )
        .await?;
    }

    // Something else fills the disk, down to half the reserve.
    let small = cluster.broker(SMALL_BROKER);
    let address = small.address();
    let ballast_path = small.data_dir().join("ballast");
    let ballast_bytes = small.free_disk_bytes()? - (RESERVE_MIB << 20) / 2;
    {
        let mut ballast = std::fs::File::create(&ballast_path)?;
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..ballast_bytes >> 20 {
            ballast.write_all(&chunk)?;
        }
        ballast.sync_all()?;
    }
    // Partitions led elsewhere keep taking writes (their other two replicas are a majority);
    // those the small broker leads refuse them, writing nothing.
    // (The cluster manager moves leaders to their preferred brokers, spread over all three.)
    let leaders = wait_until("leaders on every broker", TIMEOUT, || async {
        let topic = client.describe_topic(TOPIC).await.ok()?;
        let leaders: BTreeMap<u32, u32> = topic
            .partitions
            .iter()
            .map(|p| Some((p.partition, p.leader_id?)))
            .collect::<Option<_>>()?;
        let brokers: std::collections::BTreeSet<_> = leaders.values().collect();
        (brokers.len() == 3).then_some(leaders)
    })
    .await?;
    let led: Vec<u32> = (0..PARTITIONS)
        .filter(|p| leaders[p] == SMALL_BROKER)
        .collect();
    let refusal = wait_until("the small broker to refuse writes", TIMEOUT, || async {
        raw_produce(&address, led[0]).await.ok()?.err()
    })
    .await?;
    anyhow::ensure!(
        refusal.code == ErrorCode::DiskFull
            && refusal.code.grpc_code() == Code::ResourceExhausted
            && refusal.message.contains("storage.min_free_mib"),
        "refused unclearly: {refusal:?}"
    );
    for (&partition, &leader) in &leaders {
        if leader == SMALL_BROKER {
            let outcome = raw_produce(&address, partition).await?;
            anyhow::ensure!(
                outcome
                    .as_ref()
                    .is_err_and(|e| e.code == ErrorCode::DiskFull),
                "partition {partition} led by the full broker: {outcome:?}"
            );
        } else {
            produce_to(
                &client,
                partition,
                (0..50).map(|i| format!("full-{partition}-{i}")),
                &mut acked,
            )
            .await?;
        }
    }
    // Its replicas of those partitions took none of it: replication to it waits.
    let elsewhere = (0..PARTITIONS)
        .find(|p| leaders[p] != SMALL_BROKER)
        .expect("some");
    let (_, replica) = read_replica(&address, TOPIC, elsewhere).await?;
    anyhow::ensure!(
        !replica
            .iter()
            .any(|(_, r)| r.value.as_deref().is_some_and(|v| v.starts_with(b"full-"))),
        "the full broker stored replicated records"
    );
    let small = cluster.broker(SMALL_BROKER);
    anyhow::ensure!(small.is_running(), "the full broker died");
    anyhow::ensure!(
        small.log().contains("disk below the reserve"),
        "the full broker did not log why it refuses"
    );

    // Space returns: the broker takes writes again, catches up, and nothing was lost.
    std::fs::remove_file(&ballast_path)?;
    wait_until("the small broker to take writes again", TIMEOUT, || async {
        raw_produce(&address, led[0]).await.ok()?.ok()
    })
    .await?;
    for partition in 0..PARTITIONS {
        produce_to(
            &client,
            partition,
            (0..50).map(|i| format!("after-{partition}-{i}")),
            &mut acked,
        )
        .await?;
    }
    let counts = replicas_identical(&cluster, &client, TOPIC, TIMEOUT).await?;
    let mut stored = BTreeMap::new();
    for partition in 0..PARTITIONS {
        for record in read_partition(&client, TOPIC, partition).await? {
            let value = String::from_utf8_lossy(record.record.value.as_deref().unwrap_or(b""));
            stored.insert((partition, record.offset), value.into_owned());
        }
    }
    for (position, value) in &acked {
        anyhow::ensure!(
            stored.get(position) == Some(value),
            "acknowledged {value} at {position:?} is not stored"
        );
    }
    let probes = stored.values().filter(|v| v.as_str() == "probe").count();
    eprintln!(
        "disk full on broker {SMALL_BROKER} (leading {:?}): refused with {:?}; {} acknowledged \
         records all stored, {probes} probes taken, replicas identical ({counts:?})",
        led,
        refusal.message,
        acked.len()
    );
    cluster.assert_no_panic();
    Ok(())
}

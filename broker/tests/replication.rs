//! Guarantee: a partition group replicates over the real gRPC transport. Three replicas, each
//! with its own RocksDB, transport server and channels, elect one leader; batches appended
//! through it are committed on every replica with identical offsets and records; when the
//! leader stops, the others elect a new one and keep accepting appends without losing any
//! acknowledged batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mq_broker::batch::{ProducerSeq, StoredBatch};
use mq_broker::config::RaftTimings;
use mq_broker::partition::read::ReadLimits;
use mq_broker::partition::{Member, Partition, PartitionContext, ReplicaSpec};
use mq_common::ids::{BrokerId, GroupId, PartitionId, TopicName, replica_node_id};
use mq_common::records::Record;
use mq_raft::transport::{GroupRegistry, Peers};
use mq_raft::{Store, StoreOptions};
use tokio_util::sync::CancellationToken;

struct Replica {
    partition: Arc<Partition>,
    stop_server: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_group() -> anyhow::Result<Vec<Replica>> {
    let timings = RaftTimings {
        heartbeat_interval: Duration::from_millis(200),
        election_timeout_min: Duration::from_millis(1000),
        election_timeout_max: Duration::from_millis(2000),
        ..RaftTimings::PARTITION
    };
    let raft_config = mq_raft::GroupConfig::partition(&timings)?;
    // Bind every server first: each replica's spec names all addresses.
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    }
    let members: BTreeMap<u64, Member> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let broker = i as u32 + 1;
            let address = l.local_addr().expect("bound").to_string();
            (
                replica_node_id(BrokerId(broker), 7),
                Member {
                    broker_id: broker,
                    address,
                },
            )
        })
        .collect();
    let mut replicas = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path(), &StoreOptions::default())?;
        let registry = GroupRegistry::default();
        let stop_server = CancellationToken::new();
        let stopped = stop_server.clone();
        let server = tonic::transport::Server::builder()
            .add_service(mq_raft::transport::server(registry.clone()))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move { stopped.cancelled().await },
            );
        tokio::spawn(server);
        let context = PartitionContext {
            group: mq_raft::GroupContext {
                store,
                peers: Arc::new(Peers::default()),
                registry,
            },
            raft_config: raft_config.clone(),
            retention_check_interval: Duration::from_secs(3600),
            disk: mq_raft::disk::DiskGuard::unlimited(),
        };
        let spec = ReplicaSpec {
            group: GroupId(2048),
            topic: TopicName::new("replicated").expect("valid"),
            topic_id: "t-1".into(),
            partition: PartitionId(0),
            partition_count: 1,
            node_id: replica_node_id(BrokerId(i as u32 + 1), 7),
            members: members.clone(),
            bootstrap: true,
            max_message_bytes: 1 << 20,
            retention: Default::default(),
            compaction: None,
        };
        let partition = Partition::start(&context, spec).await?;
        replicas.push(Replica {
            partition,
            stop_server,
            _dir: dir,
        });
    }
    Ok(replicas)
}

fn batch(round: usize) -> StoredBatch {
    let records: Vec<Record> = (0..10)
        .map(|i| Record::keyed(format!("k{i}"), format!("round-{round}-{i}")).with_timestamp(1 + i))
        .collect();
    StoredBatch::build(&records, 0, None, ProducerSeq::default()).expect("no checksum to mismatch")
}

async fn all_records(partition: &Arc<Partition>) -> Vec<(u64, Record)> {
    let limits = ReadLimits {
        max_records: 100_000,
        max_bytes: usize::MAX,
        coalesce_by_key: false,
    };
    partition.read(0, limits).await.expect("read").0.records
}

/// Appends on whichever replica leads, retrying while leadership moves (a loaded machine may
/// delay heartbeats past an election timeout). Only refusals that wrote nothing are retried.
async fn append_on_leader(
    replicas: &[&Replica],
    batch: StoredBatch,
) -> anyhow::Result<mq_broker::partition::types::Appended> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leader = wait_for("a leader", || {
            replicas.iter().position(|r| r.partition.is_leader())
        })
        .await;
        match replicas[leader]
            .partition
            .append(batch.clone(), Duration::from_secs(10))
            .await
        {
            Err(
                mq_broker::error::BrokerError::NotLeader { .. }
                | mq_broker::error::BrokerError::LeaderNotAvailable { .. },
            ) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return Ok(other?),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_replicate_and_fail_over_over_grpc() -> anyhow::Result<()> {
    let replicas = start_group().await?;
    let all: Vec<&Replica> = replicas.iter().collect();
    for round in 0..5 {
        let appended = append_on_leader(&all, batch(round)).await?;
        assert_eq!(appended.base_offset, round as u64 * 10);
    }
    let leader = wait_for("a leader", || {
        replicas.iter().position(|r| r.partition.is_leader())
    })
    .await;
    // Every replica applies the same 50 records at the same offsets.
    for replica in &replicas {
        wait_for("replication to every replica", || {
            (replica.partition.progress().high_watermark == 50).then_some(())
        })
        .await;
    }
    let reference = all_records(&replicas[leader].partition).await;
    assert_eq!(reference.len(), 50);
    for replica in &replicas {
        assert_eq!(all_records(&replica.partition).await, reference);
    }
    let status = replicas[leader].partition.status();
    assert_eq!(
        status.followers.len(),
        2,
        "the leader reports both followers: {status:?}"
    );

    // Stop the leader: its transport and its Raft group.
    replicas[leader].stop_server.cancel();
    replicas[leader].partition.shutdown().await;
    let survivors: Vec<&Replica> = replicas
        .iter()
        .enumerate()
        .filter_map(|(i, r)| (i != leader).then_some(r))
        .collect();
    let appended = append_on_leader(&survivors, batch(5)).await?;
    assert_eq!(
        appended.base_offset, 50,
        "no acknowledged batch was lost or repeated"
    );
    for replica in &survivors {
        wait_for("the new batch on both survivors", || {
            (replica.partition.progress().high_watermark == 60).then_some(())
        })
        .await;
        let records = all_records(&replica.partition).await;
        assert_eq!(&records[..50], &reference[..]);
    }
    for replica in &survivors {
        replica.partition.shutdown().await;
        replica.stop_server.cancel();
    }
    Ok(())
}

//! Guarantee: bad input gets the right gRPC code, an `ErrorInfo` reason, and a message naming
//! the offending field; a rejected request writes nothing; and the node keeps serving. Driven
//! through the raw generated stubs, as a client in any language would see it.

use std::collections::HashMap;

use bytes::Bytes;
use mq_common::error::{ApiError, ErrorCode};
use mq_proto::v1 as pb;
use mq_proto::v1::admin_client::AdminClient;
use mq_proto::v1::broker_client::BrokerClient;
use mq_tests::Node;
use tonic::Code;
use tonic::transport::Channel;

fn expect_error<T: std::fmt::Debug>(
    outcome: Result<T, tonic::Status>,
    code: Code,
    reason: ErrorCode,
    mentions: &str,
) {
    let status = outcome.expect_err("the request must be rejected");
    assert_eq!(status.code(), code, "{status:?}");
    let error = ApiError::from_status(&status);
    assert_eq!(error.code, reason, "{status:?}");
    assert!(
        status.message().contains(mentions),
        "message {:?} should mention {mentions:?}",
        status.message()
    );
}

fn record(value: &[u8]) -> pb::Record {
    pb::Record {
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::copy_from_slice(value)),
        headers: vec![],
        timestamp_ms: 0,
    }
}

fn produce(
    topic: &str,
    partition: Option<u32>,
    records: Vec<pb::Record>,
    crc32c: Option<u32>,
) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.into(),
        batches: vec![pb::PartitionBatch {
            partition,
            records,
            crc32c,
            ..Default::default()
        }],
        timeout_ms: 0,
    }
}

async fn clients(node: &Node) -> anyhow::Result<(AdminClient<Channel>, BrokerClient<Channel>)> {
    let channel = Channel::from_shared(format!("http://{}", node.address()))?
        .connect()
        .await?;
    Ok((
        AdminClient::new(channel.clone()),
        BrokerClient::new(channel).max_encoding_message_size(64 << 20),
    ))
}

fn create(
    name: &str,
    partitions: Option<u32>,
    replication_factor: Option<u32>,
) -> pb::CreateTopicRequest {
    pb::CreateTopicRequest {
        name: name.into(),
        partitions,
        replication_factor,
        configs: HashMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_are_validated() -> anyhow::Result<()> {
    let node = Node::start_standalone("bad-admin").await?;
    let (mut admin, _) = clients(&node).await?;

    expect_error(
        admin.create_topic(create("", None, None)).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "name: must not be empty",
    );
    expect_error(
        admin.create_topic(create("a/b", None, None)).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "name:",
    );
    expect_error(
        admin.create_topic(create("t", Some(0), None)).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "partitions",
    );
    expect_error(
        admin.create_topic(create("t", Some(10_001), None)).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "partitions",
    );
    expect_error(
        admin.create_topic(create("t", Some(1), Some(3))).await,
        Code::InvalidArgument,
        ErrorCode::NotEnoughBrokers,
        "replication_factor",
    );
    let mut unknown_config = create("t", None, None);
    unknown_config
        .configs
        .insert("retention.fortnights".into(), "2".into());
    expect_error(
        admin.create_topic(unknown_config).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "configs[retention.fortnights]",
    );

    admin.create_topic(create("t", Some(2), None)).await?;
    expect_error(
        admin.create_topic(create("t", Some(2), None)).await,
        Code::AlreadyExists,
        ErrorCode::TopicAlreadyExists,
        "'t'",
    );
    let describe = pb::DescribeTopicRequest {
        name: "missing".into(),
    };
    expect_error(
        admin.describe_topic(describe).await,
        Code::NotFound,
        ErrorCode::TopicNotFound,
        "'missing'",
    );
    let delete = pb::DeleteTopicRequest {
        name: "missing".into(),
    };
    expect_error(
        admin.delete_topic(delete).await,
        Code::NotFound,
        ErrorCode::TopicNotFound,
        "'missing'",
    );

    // None of that disturbed the topic that was created.
    let topic = admin
        .describe_topic(pb::DescribeTopicRequest { name: "t".into() })
        .await?
        .into_inner()
        .topic
        .expect("topic");
    assert_eq!(topic.partitions.len(), 2);
    node.assert_no_panic();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_requests_are_validated_and_write_nothing() -> anyhow::Result<()> {
    let node = Node::start_standalone("bad-data").await?;
    let (mut admin, mut broker) = clients(&node).await?;
    admin.create_topic(create("events", Some(3), None)).await?;
    let mut small = create("small", Some(1), None);
    small
        .configs
        .insert("max.message.bytes".into(), "1024".into());
    admin.create_topic(small).await?;

    // Missing and malformed fields.
    expect_error(
        broker
            .produce(produce("", Some(0), vec![record(b"v")], None))
            .await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "topic",
    );
    expect_error(
        broker
            .produce(pb::ProduceRequest {
                topic: "events".into(),
                batches: vec![],
                timeout_ms: 0,
            })
            .await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "batches",
    );
    expect_error(
        broker
            .produce(produce("events", Some(0), vec![], None))
            .await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "batches[0].records",
    );
    let mut long_timeout = produce("events", Some(0), vec![record(b"v")], None);
    long_timeout.timeout_ms = 3_600_000;
    expect_error(
        broker.produce(long_timeout).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "timeout_ms",
    );

    // Topics and partitions that do not exist.
    expect_error(
        broker
            .produce(produce("nope", Some(0), vec![record(b"v")], None))
            .await,
        Code::NotFound,
        ErrorCode::TopicNotFound,
        "'nope'",
    );
    expect_error(
        broker
            .produce(produce("events", Some(3), vec![record(b"v")], None))
            .await,
        Code::InvalidArgument,
        ErrorCode::PartitionNotFound,
        "partition",
    );

    // A record above max.message.bytes (default 1 MiB; 1 KiB on "small"), next to valid ones.
    let big = vec![
        record(b"ok"),
        record(&vec![7u8; (1 << 20) + 1]),
        record(b"ok"),
    ];
    expect_error(
        broker.produce(produce("events", Some(0), big, None)).await,
        Code::InvalidArgument,
        ErrorCode::RecordTooLarge,
        "batches[0].records[1]",
    );
    expect_error(
        broker
            .produce(produce("small", Some(0), vec![record(&[1u8; 2048])], None))
            .await,
        Code::InvalidArgument,
        ErrorCode::RecordTooLarge,
        "max.message.bytes",
    );

    // A batch whose checksum does not match its records.
    let records = vec![record(b"a"), record(b"b")];
    let domain: Vec<mq_common::records::Record> = records
        .iter()
        .map(|r| mq_common::records::Record {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: vec![],
            timestamp_ms: r.timestamp_ms,
        })
        .collect();
    let crc = mq_common::records::records_crc32c(&domain);
    expect_error(
        broker
            .produce(produce("events", Some(0), records.clone(), Some(crc ^ 0x1)))
            .await,
        Code::InvalidArgument,
        ErrorCode::CorruptBatch,
        "crc32c",
    );

    // The same when the server partitions the batch by key and splits it.
    let spread: Vec<pb::Record> = (0..10)
        .map(|i| pb::Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            ..record(b"v")
        })
        .collect();
    let spread_domain: Vec<mq_common::records::Record> = spread
        .iter()
        .map(|r| mq_common::records::Record {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: vec![],
            timestamp_ms: 0,
        })
        .collect();
    let spread_crc = mq_common::records::records_crc32c(&spread_domain);
    expect_error(
        broker
            .produce(produce(
                "events",
                None,
                spread.clone(),
                Some(spread_crc ^ 0x1),
            ))
            .await,
        Code::InvalidArgument,
        ErrorCode::CorruptBatch,
        "crc32c",
    );
    // (Accepted with the right checksum, on a topic of its own so the checks below hold.)
    admin.create_topic(create("spread", Some(3), None)).await?;
    let mut spread_ok = produce("spread", None, spread, Some(spread_crc));
    spread_ok.topic = "spread".into();
    let results = broker.produce(spread_ok).await?.into_inner().results;
    assert!(
        results.len() > 1,
        "10 keys over 3 partitions split the batch: {results:?}"
    );
    assert!(results.iter().all(|r| r.error.is_none()), "{results:?}");
    assert_eq!(results.iter().map(|r| r.record_count).sum::<u32>(), 10);

    // Records sent already encoded are checked as strictly.
    let encoded_batch =
        |partition: Option<u32>, encoded: Bytes, count: u32, crc: Option<u32>| pb::ProduceRequest {
            topic: "events".into(),
            batches: vec![pb::PartitionBatch {
                partition,
                crc32c: crc,
                encoded_records: encoded,
                record_count: count,
                ..Default::default()
            }],
            timeout_ms: 0,
        };
    let mut canonical = Vec::new();
    mq_common::records::encode_records(&domain, &mut canonical);
    let canonical = Bytes::from(canonical);
    let canonical_crc = crc32c::crc32c(&canonical);
    expect_error(
        broker
            .produce(encoded_batch(None, canonical.clone(), 2, None))
            .await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "batches[0].partition",
    );
    expect_error(
        broker
            .produce(encoded_batch(Some(0), canonical.clone(), 0, None))
            .await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "batches[0].record_count",
    );
    expect_error(
        broker
            .produce(encoded_batch(Some(0), canonical.clone(), 3, None))
            .await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "batches[0].encoded_records",
    );
    expect_error(
        broker
            .produce(encoded_batch(
                Some(0),
                canonical.slice(..canonical.len() - 1),
                2,
                None,
            ))
            .await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "batches[0].encoded_records",
    );
    expect_error(
        broker
            .produce(encoded_batch(
                Some(0),
                canonical.clone(),
                2,
                Some(canonical_crc ^ 1),
            ))
            .await,
        Code::InvalidArgument,
        ErrorCode::CorruptBatch,
        "crc32c",
    );
    // Compressed records: the codec must be known and needs encoded_records; the compressed
    // bytes' checksum is checked as sent, and their records as strictly as plain ones.
    let mut unknown_codec = encoded_batch(Some(0), canonical.clone(), 2, None);
    unknown_codec.batches[0].compression = 7;
    expect_error(
        broker.produce(unknown_codec).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "batches[0].compression",
    );
    let mut codec_without_encoded = produce("events", Some(0), vec![record(b"x")], None);
    codec_without_encoded.batches[0].compression = pb::Compression::Lz4.into();
    expect_error(
        broker.produce(codec_without_encoded).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "batches[0].compression",
    );
    let compressed = Bytes::from(mq_common::compression::Compression::Zstd.compress(&canonical));
    let mut bad_crc = encoded_batch(Some(0), compressed.clone(), 2, Some(canonical_crc));
    bad_crc.batches[0].compression = pb::Compression::Zstd.into();
    expect_error(
        broker.produce(bad_crc).await,
        Code::InvalidArgument,
        ErrorCode::CorruptBatch,
        "crc32c",
    );
    let mut wrong_count = encoded_batch(Some(0), compressed, 3, None);
    wrong_count.batches[0].compression = pb::Compression::Zstd.into();
    expect_error(
        broker.produce(wrong_count).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "batches[0].encoded_records",
    );
    let mut both = encoded_batch(Some(0), canonical.clone(), 2, None);
    both.batches[0].records = vec![record(b"x")];
    expect_error(
        broker.produce(both).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "exclusive",
    );
    let mut oversized = Vec::new();
    mq_common::records::encode_records(
        [&mq_common::records::Record::unkeyed(vec![0u8; 2048]).with_timestamp(5)],
        &mut oversized,
    );
    let mut small_topic = encoded_batch(Some(0), Bytes::from(oversized), 1, None);
    small_topic.topic = "small".into();
    expect_error(
        broker.produce(small_topic).await,
        Code::InvalidArgument,
        ErrorCode::RecordTooLarge,
        "max.message.bytes",
    );

    // Nothing of the rejected requests was written.
    let hw = |broker: &mut BrokerClient<Channel>| {
        let mut broker = broker.clone();
        async move {
            broker
                .fetch(pb::FetchRequest {
                    topic: "events".into(),
                    partition: 0,
                    offset: 0,
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().high_watermark)
        }
    };
    assert_eq!(hw(&mut broker).await?, 0);

    // The right checksum is accepted, in both forms.
    let accepted = broker
        .produce(produce("events", Some(0), records, Some(crc)))
        .await?
        .into_inner();
    assert!(accepted.results[0].error.is_none());
    assert_eq!(hw(&mut broker).await?, 2);
    let accepted = broker
        .produce(encoded_batch(Some(0), canonical, 2, Some(canonical_crc)))
        .await?
        .into_inner();
    assert!(accepted.results[0].error.is_none(), "{accepted:?}");
    assert_eq!(accepted.results[0].base_offset, 2);
    assert_eq!(hw(&mut broker).await?, 4);

    // Reads out of range, and malformed reads.
    let fetch = |offset, partition| pb::FetchRequest {
        topic: "events".into(),
        partition,
        offset,
        ..Default::default()
    };
    expect_error(
        broker.fetch(fetch(5, 0)).await,
        Code::OutOfRange,
        ErrorCode::OffsetOutOfRange,
        "offset 5",
    );
    expect_error(
        broker.fetch(fetch(0, 9)).await,
        Code::InvalidArgument,
        ErrorCode::PartitionNotFound,
        "partition",
    );
    let mut huge = fetch(0, 0);
    huge.max_bytes = u32::MAX;
    expect_error(
        broker.fetch(huge).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "max_bytes",
    );
    let mut forever = fetch(0, 0);
    forever.max_wait_ms = 3_600_000;
    expect_error(
        broker.fetch(forever).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "max_wait_ms",
    );
    let subscribe = pb::SubscribeRequest {
        topic: "events".into(),
        partition: 0,
        start: None,
        ..Default::default()
    };
    expect_error(
        broker.subscribe(subscribe).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "start",
    );
    let beyond = pb::SubscribeRequest {
        topic: "events".into(),
        partition: 0,
        start: Some(pb::subscribe_request::Start::Offset(99)),
        ..Default::default()
    };
    expect_error(
        broker.subscribe(beyond).await,
        Code::OutOfRange,
        ErrorCode::OffsetOutOfRange,
        "offset 99",
    );
    let no_queries = pb::ListOffsetsRequest {
        topic: "events".into(),
        queries: vec![],
    };
    expect_error(
        broker.list_offsets(no_queries).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "queries",
    );
    let no_spec = pb::ListOffsetsRequest {
        topic: "events".into(),
        queries: vec![pb::OffsetQuery {
            partition: 0,
            spec: 0,
            timestamp_ms: 0,
        }],
    };
    expect_error(
        broker.list_offsets(no_spec).await,
        Code::InvalidArgument,
        ErrorCode::InvalidArgument,
        "queries[0].spec",
    );

    // Still serving.
    let latest = pb::ListOffsetsRequest {
        topic: "events".into(),
        queries: vec![pb::OffsetQuery {
            partition: 0,
            spec: pb::OffsetSpec::Latest.into(),
            timestamp_ms: 0,
        }],
    };
    assert_eq!(
        broker.list_offsets(latest).await?.into_inner().results[0].offset,
        4
    );
    node.assert_no_panic();
    Ok(())
}

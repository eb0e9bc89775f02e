//! Guarantee: no request, however malformed, oversized or abusive, crashes a node, makes it
//! store what it did not acknowledge, or takes memory and service away from other clients.
//! Random produce requests (generated from the shape of the public API, seeded) get either an
//! acknowledgement at the next offsets or a clear error; hand-made broken gRPC frames get a
//! gRPC status; thousands of streams that never read leave the node's memory bounded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use mq_client::NewTopic;
use mq_common::compression::Compression;
use mq_common::error::ApiError;
use mq_common::records::proto::to_record;
use mq_common::records::{self, Record};
use mq_common::strategies;
use mq_proto::v1 as pb;
use mq_proto::v1::broker_client::BrokerClient;
use mq_tests::Node;
use mq_tests::workload::read_partition;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tonic::Code;
use tonic::transport::Channel;

const TOPIC: &str = "fuzz";
const PARTITIONS: u32 = 3;
/// Small enough that generated records exceed it now and then.
const MAX_MESSAGE_BYTES: usize = 100;
/// Requests generated (from a fixed seed: the same ones every run).
const CASES: u32 = 400;

/// How a generated batch carries its records, and how it may be wrong.
#[derive(Debug, Clone)]
enum Form {
    Decoded,
    Encoded {
        codec: i32,
        /// Added to the true record count.
        miscount: i32,
        /// A byte to flip in the sent bytes.
        damage: Option<(prop::sample::Index, u8)>,
    },
    Both,
    Neither,
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        8 => Just(Form::Decoded),
        8 => (
            prop_oneof![8 => 0..3i32, 1 => 3..9i32],
            prop_oneof![8 => Just(0), 1 => -1..=1i32],
            prop::option::weighted(0.1, (any::<prop::sample::Index>(), 1u8..=255)),
        )
            .prop_map(|(codec, miscount, damage)| Form::Encoded {
                codec,
                miscount,
                damage
            }),
        1 => Just(Form::Both),
        1 => Just(Form::Neither),
    ]
}

/// The checksum a batch carries: none, the right one, or a wrong one.
#[derive(Debug, Clone, Copy)]
enum Crc {
    Absent,
    Right,
    Wrong(u32),
}

fn batch() -> impl Strategy<Value = pb::PartitionBatch> {
    (
        prop_oneof![
            2 => Just(None),
            12 => (0..PARTITIONS).prop_map(Some),
            1 => (PARTITIONS..u32::MAX).prop_map(Some),
        ],
        strategies::records(5),
        form(),
        prop_oneof![
            4 => Just(Crc::Absent),
            4 => Just(Crc::Right),
            1 => any::<u32>().prop_map(Crc::Wrong)
        ],
        prop_oneof![8 => Just(0u64), 1 => any::<u64>()],
        any::<u32>(),
    )
        .prop_map(
            |(partition, records, form, crc, producer_id, base_sequence)| {
                let mut encoded = Vec::new();
                records::encode_records(&records, &mut encoded);
                let mut batch = pb::PartitionBatch {
                    partition,
                    producer_id,
                    base_sequence,
                    ..Default::default()
                };
                let mut sent = Bytes::from(encoded.clone());
                match form {
                    Form::Decoded => {
                        batch.records = records.iter().cloned().map(to_record).collect()
                    }
                    Form::Encoded {
                        codec,
                        miscount,
                        damage,
                    } => {
                        let mut bytes = match pb::Compression::try_from(codec) {
                            Ok(known) => Compression::from_proto(known).compress(&encoded),
                            Err(_) => encoded.clone(),
                        };
                        if let Some((at, flip)) = damage.filter(|_| !bytes.is_empty()) {
                            let i = at.index(bytes.len());
                            bytes[i] ^= flip;
                        }
                        sent = Bytes::from(bytes);
                        batch.encoded_records = sent.clone();
                        batch.compression = codec;
                        batch.record_count = (records.len() as i64 + i64::from(miscount)) as u32;
                    }
                    Form::Both => {
                        batch.records = records.iter().cloned().map(to_record).collect();
                        batch.encoded_records = sent.clone();
                        batch.record_count = records.len() as u32;
                    }
                    Form::Neither => {}
                }
                batch.crc32c = match crc {
                    Crc::Absent => None,
                    // The contract: the CRC-32C of the bytes sent (canonical encoding, or the
                    // compressed form).
                    Crc::Right => Some(crc32c::crc32c(&sent)),
                    Crc::Wrong(crc) => Some(crc),
                };
                batch
            },
        )
}

fn request() -> impl Strategy<Value = pb::ProduceRequest> {
    (
        prop_oneof![
            12 => Just(TOPIC.to_string()),
            1 => Just(String::new()),
            1 => Just("no-such-topic".to_string()),
            1 => "\\PC{1,20}",
            1 => Just("t".repeat(300)),
        ],
        prop::collection::vec(batch(), 0..3),
        // Never a short timeout: a timed-out write may still commit, and this test counts
        // exactly what was acknowledged.
        prop_oneof![8 => Just(0u32), 1 => Just(10_000), 1 => Just(u32::MAX)],
    )
        .prop_map(|(topic, batches, timeout_ms)| pb::ProduceRequest {
            topic,
            batches,
            timeout_ms,
        })
}

/// What a refused request or batch may be refused with: the client's mistakes, never the
/// server's.
const REFUSALS: [Code; 4] = [
    Code::InvalidArgument,
    Code::NotFound,
    Code::DataLoss,
    Code::FailedPrecondition,
];

#[test]
fn random_produce_requests_get_clear_errors_and_store_exactly_what_was_acknowledged()
-> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let _context = runtime.enter();
    let node = runtime.block_on(Node::start_standalone("fuzz"))?;
    let client = node.client();
    runtime.block_on(
        client.create_topic(
            TOPIC,
            NewTopic::default()
                .partitions(PARTITIONS)
                .config("max.message.bytes", MAX_MESSAGE_BYTES.to_string()),
        ),
    )?;
    let broker = runtime.block_on(async {
        let channel = Channel::from_shared(format!("http://{}", node.address()))?
            .connect()
            .await?;
        anyhow::Ok(BrokerClient::new(channel))
    })?;

    // Records acknowledged per partition: each acknowledgement must start where the last ended.
    let acked: Arc<Mutex<BTreeMap<u32, u64>>> = Arc::default();
    let outcomes: Mutex<BTreeMap<String, usize>> = Mutex::default();
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let result = runner.run(&request(), |request| {
        let outcome = runtime.block_on(broker.clone().produce(request.clone()));
        let label = match outcome {
            Ok(response) => {
                let mut acked = acked.lock().unwrap();
                for result in response.into_inner().results {
                    match &result.error {
                        None if result.duplicate => {}
                        None => {
                            let next = acked.entry(result.partition).or_default();
                            prop_assert_eq!(
                                result.base_offset,
                                *next,
                                "acknowledged at a gap or overlap: {:?}",
                                result
                            );
                            *next += u64::from(result.record_count);
                        }
                        Some(error) => prop_assert!(
                            !error.message.is_empty() && error.reason != 0,
                            "an unclear batch error: {:?}",
                            error
                        ),
                    }
                }
                "ok".to_string()
            }
            Err(status) => {
                prop_assert!(
                    REFUSALS.contains(&status.code()),
                    "refused with {:?}: {}",
                    status.code(),
                    status.message()
                );
                let reason = ApiError::from_status(&status).code;
                if status.code() == Code::InvalidArgument {
                    prop_assert!(
                        ["topic", "batches", "timeout_ms"]
                            .iter()
                            .any(|field| status.message().contains(field)),
                        "the message names no field: {}",
                        status.message()
                    );
                }
                format!("{reason:?}")
            }
        };
        *outcomes.lock().unwrap().entry(label).or_default() += 1;
        Ok(())
    });
    let outcomes = outcomes.into_inner().unwrap();
    eprintln!("outcomes of {CASES} requests: {outcomes:?}");
    if let Err(failure) = result {
        eprintln!("{}", node.log());
        anyhow::bail!("{failure}");
    }
    anyhow::ensure!(
        outcomes.len() >= 4,
        "the generator must reach acceptance and several refusals: {outcomes:?}"
    );

    // Stored is exactly what was acknowledged: nothing from refused requests or batches.
    let acked = acked.lock().unwrap().clone();
    for partition in 0..PARTITIONS {
        let stored = runtime.block_on(read_partition(&client, TOPIC, partition))?;
        let expected = acked.get(&partition).copied().unwrap_or(0);
        anyhow::ensure!(
            stored.len() as u64 == expected,
            "partition {partition}: {} records stored, {expected} acknowledged",
            stored.len()
        );
        for (i, record) in stored.iter().enumerate() {
            anyhow::ensure!(record.offset == i as u64, "a hole before {}", record.offset);
        }
    }
    node.assert_no_panic();
    Ok(())
}

/// What a raw HTTP/2 call got back: the HTTP status, and the gRPC status code and message
/// (from the headers of a trailers-only response, or from the trailers).
#[derive(Debug)]
struct RawOutcome {
    http: http::StatusCode,
    grpc_status: Option<i32>,
    grpc_message: String,
}

/// Sends `body` (already framed, or deliberately not) to `path` as a unary gRPC call over a
/// fresh HTTP/2 connection, the way a hand-written client in any language might.
async fn raw_call(address: &str, path: &str, body: Vec<u8>) -> anyhow::Result<RawOutcome> {
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let (client, connection) = h2::client::handshake(tcp).await?;
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
    let (response, mut send) = client.send_request(request, false)?;
    send.send_data(Bytes::from(body), true)?;
    let response = response.await?;
    let http = response.status();
    let header = |map: &http::HeaderMap, name: &str| {
        map.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut grpc_status = header(response.headers(), "grpc-status");
    let mut grpc_message = header(response.headers(), "grpc-message");
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len())?;
    }
    if let Some(trailers) = body.trailers().await? {
        grpc_status = grpc_status.or(header(&trailers, "grpc-status"));
        grpc_message = grpc_message.or(header(&trailers, "grpc-message"));
    }
    driver.abort();
    Ok(RawOutcome {
        http,
        grpc_status: grpc_status.and_then(|s| s.parse().ok()),
        grpc_message: grpc_message.unwrap_or_default(),
    })
}

/// A gRPC length-prefixed message frame: compressed flag, declared length, then `payload`.
fn frame(compressed: u8, declared: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![compressed];
    frame.extend_from_slice(&declared.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn valid_produce(value: &[u8]) -> Vec<u8> {
    let request = pb::ProduceRequest {
        topic: TOPIC.into(),
        batches: vec![pb::PartitionBatch {
            partition: Some(0),
            records: vec![to_record(Record::unkeyed(Bytes::copy_from_slice(value)))],
            ..Default::default()
        }],
        timeout_ms: 0,
    };
    prost::Message::encode_to_vec(&request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_truncated_and_oversized_frames_get_a_status_and_the_node_keeps_serving()
-> anyhow::Result<()> {
    let node = Node::start_standalone("frames").await?;
    let client = node.client();
    client
        .create_topic(TOPIC, NewTopic::default().partitions(1))
        .await?;
    let address = node.address();
    let produce = "/mq.v1.Broker/Produce";
    let valid = valid_produce(b"framed by hand");
    // (what is wrong, path, body, the gRPC codes that are right for it)
    let cases: Vec<(&str, &str, Vec<u8>, &[Code])> = vec![
        (
            "a well-formed frame (the control case)",
            produce,
            frame(0, valid.len() as u32, &valid),
            &[Code::Ok],
        ),
        (
            "a payload that is not protobuf",
            produce,
            frame(0, 6, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            &[Code::Internal, Code::InvalidArgument],
        ),
        (
            "a frame cut short of its declared length",
            produce,
            frame(0, valid.len() as u32 + 100, &valid),
            &[Code::Internal, Code::InvalidArgument],
        ),
        (
            "a frame prefix cut short",
            produce,
            vec![0, 0, 1],
            &[Code::Internal, Code::InvalidArgument],
        ),
        (
            "a declared length of 1 GiB",
            produce,
            frame(0, 1 << 30, &valid),
            // tonic answers OUT_OF_RANGE for a message over the decoding limit.
            &[Code::ResourceExhausted, Code::OutOfRange],
        ),
        (
            "the compressed flag without a grpc-encoding",
            produce,
            frame(1, valid.len() as u32, &valid),
            &[Code::Internal, Code::Unimplemented, Code::InvalidArgument],
        ),
        (
            "an unknown compressed-flag value",
            produce,
            frame(7, valid.len() as u32, &valid),
            &[Code::Internal, Code::InvalidArgument],
        ),
        (
            "two messages on a unary call",
            produce,
            [
                frame(0, valid.len() as u32, &valid),
                frame(0, valid.len() as u32, &valid),
            ]
            .concat(),
            &[
                Code::Ok,
                Code::Internal,
                Code::InvalidArgument,
                Code::Unimplemented,
            ],
        ),
        (
            "an empty body",
            produce,
            vec![],
            &[Code::Internal, Code::InvalidArgument, Code::Unimplemented],
        ),
        (
            "an unknown method",
            "/mq.v1.Broker/Nope",
            frame(0, valid.len() as u32, &valid),
            &[Code::Unimplemented],
        ),
    ];
    for (what, path, body, codes) in cases {
        let outcome = raw_call(&address, path, body)
            .await
            .map_err(|e| anyhow::anyhow!("{what}: no gRPC answer: {e:#}"))?;
        eprintln!("{what}: {outcome:?}");
        let code = outcome
            .grpc_status
            .map(Code::from_i32)
            .ok_or_else(|| anyhow::anyhow!("{what}: no grpc-status in {outcome:?}"))?;
        anyhow::ensure!(
            codes.contains(&code),
            "{what}: got {code:?} ({}), expected one of {codes:?}",
            outcome.grpc_message
        );
        anyhow::ensure!(outcome.http == http::StatusCode::OK, "{what}: {outcome:?}");
        // The node still serves a well-behaved client after each.
        client
            .produce(TOPIC, 0, vec![Record::unkeyed("after")])
            .await?;
    }

    // A real message one byte over the request limit, sent whole through a generated client.
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut broker = BrokerClient::new(channel).max_encoding_message_size(128 << 20);
    let limit = 64usize << 20;
    let oversized = pb::ProduceRequest {
        topic: TOPIC.into(),
        batches: vec![pb::PartitionBatch {
            partition: Some(0),
            records: vec![to_record(Record::unkeyed(vec![7u8; limit]))],
            ..Default::default()
        }],
        timeout_ms: 0,
    };
    let status = broker
        .produce(oversized)
        .await
        .expect_err("a request over the limit must be refused");
    anyhow::ensure!(
        [Code::ResourceExhausted, Code::OutOfRange].contains(&status.code()),
        "oversized request: {status:?}"
    );

    // Nothing the broken frames carried was stored: the control frame, then one "after" per
    // case (and maybe the second of the two-message call's frames, if it was taken).
    let stored = read_partition(&client, TOPIC, 0).await?;
    let by_hand = stored
        .iter()
        .filter(|r| r.record.value.as_deref() == Some(b"framed by hand".as_slice()))
        .count();
    anyhow::ensure!(
        (1..=2).contains(&by_hand),
        "{by_hand} hand-framed records stored"
    );
    anyhow::ensure!(node.is_running(), "the node died");
    node.assert_no_panic();
    Ok(())
}

/// Connections and streams of the abusive client.
const CONNECTIONS: usize = 40;
const STREAMS_PER_CONNECTION: usize = 50;
/// Messages the well-behaved client writes meanwhile (each is pushed to every idle stream).
const POLITE_PRODUCES: usize = 50;
/// The broker's default push budget, and what a stream may hold beyond it (see the test):
/// 1.5 MiB, measured about 0.85 MiB; without the budget a stream held 6.8 MiB.
const PUSH_BUDGET: u64 = 128 << 20;
const PER_STREAM_BOUND: u64 = 3 << 19;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_streams_that_never_read_leave_memory_bounded_and_others_served()
-> anyhow::Result<()> {
    let node = Node::start_standalone("streams").await?;
    let client = node.client();
    client
        .create_topic(TOPIC, NewTopic::default().partitions(1))
        .await?;
    // 32 MiB of data for every stream to be pushed from the start.
    let value = vec![b'x'; 16 << 10];
    for _ in 0..64 {
        let batch = (0..32).map(|_| Record::unkeyed(value.clone())).collect();
        client.produce(TOPIC, 0, batch).await?;
    }
    let pid = node.pid().expect("running");
    let before = mq_tests::rss_bytes(pid)?;

    // The abusive client: thousands of subscriptions from the earliest offset, none ever read.
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let channel = Channel::from_shared(format!("http://{}", node.address()))?
            .connect()
            .await?;
        let broker = BrokerClient::new(channel);
        let opened = (0..STREAMS_PER_CONNECTION).map(|_| {
            let mut broker = broker.clone();
            async move {
                broker
                    .subscribe(pb::SubscribeRequest {
                        topic: TOPIC.into(),
                        partition: 0,
                        start: Some(pb::subscribe_request::Start::Position(
                            pb::StartPosition::Earliest as i32,
                        )),
                        ..Default::default()
                    })
                    .await
            }
        });
        for stream in futures::future::join_all(opened).await {
            held.push(stream?.into_inner());
        }
    }
    // Measured once the node has pushed all it will: its memory stops growing.
    let during = settled_rss(pid).await?;

    // A well-behaved client is served meanwhile: it writes and reads back its own messages.
    let started = std::time::Instant::now();
    let mut sent = Vec::new();
    for i in 0..POLITE_PRODUCES {
        let value = format!("served-{i}");
        let offset = client
            .produce(TOPIC, 0, vec![Record::unkeyed(value.clone())])
            .await?;
        sent.push((offset, value));
    }
    let read = client
        .fetch(TOPIC, 0, sent[0].0, mq_client::FetchOptions::default())
        .await?;
    anyhow::ensure!(
        read.records.first().and_then(|r| r.record.value.as_deref()) == Some(sent[0].1.as_bytes()),
        "the well-behaved client read something else"
    );
    let served_in = started.elapsed();
    let after = mq_tests::rss_bytes(pid)?;
    let streams = held.len();
    drop(held);
    eprintln!(
        "{streams} idle streams over {CONNECTIONS} connections: rss {} MiB before, {} MiB with \
         them open, {} MiB after {POLITE_PRODUCES} more produces; the other client's produces and \
         fetch took {served_in:?}",
        before >> 20,
        during >> 20,
        after >> 20
    );
    // Pushes beyond the broker's push budget shrink to 16 KiB, so a stream that is never read
    // holds that and what HTTP/2 buffers for it (hyper's send buffer, 400 KiB), not a whole
    // response of its max_bytes (4 MiB here; before the budget, 2,000 streams took 13.7 GiB).
    let grown = during.saturating_sub(before);
    let bound = PUSH_BUDGET + streams as u64 * PER_STREAM_BOUND;
    anyhow::ensure!(
        grown < bound,
        "rss grew by {} MiB with {streams} idle streams (bound {} MiB)",
        grown >> 20,
        bound >> 20
    );
    anyhow::ensure!(node.is_running(), "the node died");
    node.assert_no_panic();
    Ok(())
}

/// The resident memory of process `pid` once it stops growing (two samples 500 ms apart
/// within 1 MiB), within 30 s.
async fn settled_rss(pid: u32) -> anyhow::Result<u64> {
    let interval = std::time::Duration::from_millis(500);
    let mut previous = mq_tests::rss_bytes(pid)?;
    for _ in 0..60 {
        tokio::time::sleep(interval).await;
        let now = mq_tests::rss_bytes(pid)?;
        if now.abs_diff(previous) < 1 << 20 {
            return Ok(now);
        }
        previous = now;
    }
    anyhow::bail!("the node's memory kept changing for 30 s")
}

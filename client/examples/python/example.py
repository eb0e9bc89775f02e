#!/usr/bin/env python3
"""Talks to an mq broker from Python over plain gRPC, with stubs generated from the proto.

It creates a topic with 3 partitions, produces keyed records (the server partitions them by
key; we compute the same partitions with the documented murmur2 key hash and check), fetches
them back, follows a subscription until it has seen them all, and reads the structured error
of a produce to a missing topic (gRPC NOT_FOUND with a google.rpc.ErrorInfo detail).

    pip install -r requirements.txt
    python example.py --server 127.0.0.1:7070

Exits 0 and prints a summary when everything round-trips, 1 with the reason otherwise.
"""

import argparse
import importlib.resources
import sys
import tempfile
import uuid
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parents[3] / "proto"
TIMEOUT_S = 10  # deadline of every call


class Mismatch(Exception):
    """The server answered something other than what the example expects."""


def check(condition, message):
    if not condition:
        raise Mismatch(message)


def generate_stubs(out_dir):
    """Compiles mq/v1/mq.proto into `out_dir` and imports the generated modules."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}", "mq/v1/mq.proto"]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO_ROOT / 'mq/v1/mq.proto'}")
    sys.path.insert(0, str(out_dir))
    from mq.v1 import mq_pb2, mq_pb2_grpc  # noqa: E402 (generated just now)
    return mq_pb2, mq_pb2_grpc


def murmur2(data: bytes, seed: int = 0x9747B28C) -> int:
    """Austin Appleby's 32-bit MurmurHash2, blocks read little-endian (Kafka's Utils.murmur2)."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (seed ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i:i + 4], "little") * m) & mask
        k = ((k ^ (k >> 24)) * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * m) & mask
    h = ((h ^ (h >> 13)) * m) & mask
    return h ^ (h >> 15)


def partition_for_key(key: bytes, partitions: int) -> int:
    """The standard partitioner, as documented above `message PartitionBatch`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def check_murmur2():
    """Kafka's test vectors (as signed 32-bit integers), so the hash is bit for bit the same."""
    for text, expected in [("21", -973932308), ("foobar", -790332482), ("abc", 479470107)]:
        h = murmur2(text.encode())
        signed = h - (1 << 32) if h >= 1 << 31 else h
        check(signed == expected, f"murmur2({text!r}) = {signed}, expected {expected}")


def error_info(error: grpc.RpcError):
    """The google.rpc.ErrorInfo detail of a failed call (from its grpc-status-details-bin)."""
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def record_tuple(record):
    """What must round-trip: key, value and headers."""
    return (record.key, record.value, [(h.key, h.value) for h in record.headers])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:7070", help="host:port of a node")
    parser.add_argument("--topic", default=f"py-example-{uuid.uuid4().hex[:8]}")
    args = parser.parse_args()
    check_murmur2()

    with tempfile.TemporaryDirectory(prefix="mq-stubs-") as out_dir, \
            grpc.insecure_channel(args.server) as channel:
        pb, rpc = generate_stubs(out_dir)
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
        admin, broker = rpc.AdminStub(channel), rpc.BrokerStub(channel)

        # 1. A topic with 3 partitions (or the existing one of that name).
        try:
            topic = admin.CreateTopic(pb.CreateTopicRequest(name=args.topic, partitions=3),
                                      timeout=TIMEOUT_S).topic
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            topic = admin.DescribeTopic(pb.DescribeTopicRequest(name=args.topic),
                                        timeout=TIMEOUT_S).topic
        partitions = len(topic.partitions)

        # 2. One batch of keyed records without a partition: the server partitions by key.
        records = [pb.Record(key=f"customer-{i % 5}".encode(), value=f"order-{i}".encode(),
                             headers=[pb.Header(key="source", value=b"python"),
                                      pb.Header(key="seq", value=str(i).encode())])
                   for i in range(12)]
        reply = broker.Produce(pb.ProduceRequest(topic=args.topic,
                                                 batches=[pb.PartitionBatch(records=records)]),
                               timeout=TIMEOUT_S)

        # Where each record should be: our own hash picks the partition, and the k-th record
        # of the batch that went to a partition has offset base_offset + k.
        expected = {}  # partition -> [record], in batch order
        for record in records:
            expected.setdefault(partition_for_key(record.key, partitions), []).append(record)
        check(sorted(r.partition for r in reply.results) == sorted(expected),
              f"records went to partitions {[r.partition for r in reply.results]}, "
              f"the key hash says {sorted(expected)}")
        placed = {}  # partition -> {offset: record}
        for result in reply.results:
            check(not result.HasField("error"), f"partition {result.partition}: {result.error}")
            mine = expected[result.partition]
            check(result.record_count == len(mine),
                  f"partition {result.partition}: {result.record_count} records appended, "
                  f"expected {len(mine)}")
            placed[result.partition] = {result.base_offset + k: r for k, r in enumerate(mine)}

        # 3. Fetch each partition from the first offset we wrote and compare.
        for partition, by_offset in placed.items():
            first = min(by_offset)
            fetched = broker.Fetch(pb.FetchRequest(topic=args.topic, partition=partition,
                                                   offset=first, max_records=len(by_offset)),
                                   timeout=TIMEOUT_S)
            check([r.offset for r in fetched.records] == sorted(by_offset),
                  f"partition {partition}: fetched offsets {[r.offset for r in fetched.records]}"
                  f", expected {sorted(by_offset)}")
            for got in fetched.records:
                check(record_tuple(got) == record_tuple(by_offset[got.offset]),
                      f"partition {partition} offset {got.offset}: fetched "
                      f"{record_tuple(got)}, produced {record_tuple(by_offset[got.offset])}")

        # 4. Subscribe to each partition from offset 0 and read until every record we wrote
        #    has streamed past (the stream follows the tail, so we cancel it ourselves).
        streamed = 0
        for partition, by_offset in placed.items():
            stream = broker.Subscribe(pb.SubscribeRequest(topic=args.topic, partition=partition,
                                                          offset=0), timeout=TIMEOUT_S)
            missing = set(by_offset)
            for message in stream:
                for got in message.records:
                    if got.offset in missing:
                        check(record_tuple(got) == record_tuple(by_offset[got.offset]),
                              f"partition {partition} offset {got.offset}: streamed "
                              f"{record_tuple(got)}")
                        missing.discard(got.offset)
                        streamed += 1
                if not missing:
                    stream.cancel()
                    break
            check(not missing, f"partition {partition}: stream ended before {sorted(missing)}")

        # 5. Errors are structured: a code plus an ErrorInfo whose reason names ErrorReason.
        missing_topic = f"no-such-topic-{uuid.uuid4().hex[:8]}"
        try:
            broker.Produce(pb.ProduceRequest(topic=missing_topic,
                                             batches=[pb.PartitionBatch(records=records[:1])]),
                           timeout=TIMEOUT_S)
            raise Mismatch(f"produce to missing topic {missing_topic} succeeded")
        except grpc.RpcError as error:
            check(error.code() == grpc.StatusCode.NOT_FOUND,
                  f"produce to a missing topic: {error.code()}, expected NOT_FOUND")
            info = error_info(error)
            check(info is not None, "NOT_FOUND status without a google.rpc.ErrorInfo detail")
            check((info.domain, info.reason, info.metadata.get("retryable")) ==
                  ("mq.v1", "TOPIC_NOT_FOUND", "false"), f"unexpected ErrorInfo: {info}")

    print(f"topic {args.topic}: produced {len(records)} records to partitions "
          f"{sorted(placed)} (as the key hash predicts), fetched them back, streamed "
          f"{streamed} via Subscribe; missing topic -> NOT_FOUND / {info.reason}")


if __name__ == "__main__":
    try:
        main()
    except Mismatch as mismatch:
        sys.exit(f"FAILED: {mismatch}")
    except grpc.RpcError as error:
        sys.exit(f"FAILED: unexpected gRPC error {error.code().name}: {error.details()}")
    except grpc.FutureTimeoutError:
        sys.exit("FAILED: could not connect to the server (is it running? see --server)")

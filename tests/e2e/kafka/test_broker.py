"""The broker's protocol contract on a live 3-node cluster, request by request.

The client tests show that stock clients work; these pin the answers those clients rely on:
error codes for the wrong broker, a bad batch or an unknown version, the high watermark as
the fetch limit, long polling, ListOffsets by time, OffsetForLeaderEpoch, compressed batches
stored as sent, acks=0, topic deletion and retention.
"""

from __future__ import annotations

import itertools
import struct
import threading
import time
from typing import Any

import pytest

from quorumdb.kafka.protocol import ApiKey, ErrorCode, decode_response, encode_request
from quorumdb.kafka.protocol.records import (
    Compression,
    Record,
    build_batch,
    decode_records,
    iter_batches,
)
from tests.e2e.harness import Cluster, wait_for
from tests.e2e.kafka.conftest import bootstrap, kafka_addrs
from tests.e2e.kafka.wire import (
    FETCH_VERSION,
    PRODUCE_VERSION,
    Addr,
    KafkaWire,
    create_topic,
    fetch,
    metadata,
    produce,
)

_names = itertools.count()


def _topic(cluster: Cluster, partitions: int = 1, **configs: str) -> str:
    name = f"broker-{next(_names)}-{time.monotonic_ns()}"
    addr = next(iter(kafka_addrs(cluster).values()))
    if configs:
        body = {
            "topics": [
                {
                    "name": name,
                    "num_partitions": partitions,
                    "replication_factor": 3,
                    "assignments": [],
                    "configs": [{"name": k, "value": v} for k, v in configs.items()],
                }
            ],
            "timeout_ms": 10_000,
            "validate_only": False,
        }
        with KafkaWire(addr, timeout_s=15.0) as w:
            (t,) = w.request(ApiKey.CREATE_TOPICS, 4, body)["topics"]
        assert t["error_code"] == 0, t
    else:
        create_topic(addr, name, partitions)
    _leader(cluster, name, 0)
    return name


def _leader(cluster: Cluster, topic: str, partition: int) -> Addr:
    """The address of the partition's leader, once every live node agrees on one."""
    addrs = kafka_addrs(cluster)
    found: list[int] = []

    def agreed() -> bool:
        seen = set()
        answered = 0
        for addr in addrs.values():
            try:
                (t,) = metadata(addr, [topic])["topics"]
            except ConnectionRefusedError:
                continue  # a node the test killed
            answered += 1
            if t["error_code"] != 0:
                return False
            seen.add(t["partitions"][partition]["leader_id"])
        found[:] = list(seen)
        return answered >= 2 and len(seen) == 1 and -1 not in seen

    wait_for(agreed, f"one leader for {topic}/{partition} on every live node", 30)
    return addrs[found[0]]


def _produce_on_leader(
    cluster: Cluster, topic: str, partition: int, records: bytes
) -> dict[str, Any]:
    """Produce acks=all, retrying while leadership moves (balancing happens after creation)."""
    row: dict[str, Any] = {}

    def done() -> bool:
        row.clear()
        row.update(produce(_leader(cluster, topic, partition), topic, partition, records))
        return row["error_code"] != ErrorCode.NOT_LEADER_OR_FOLLOWER

    wait_for(done, f"a produce to {topic}/{partition} to reach its leader", 30)
    return row


def _batch(values: list[bytes], timestamp_ms: int = 1_000) -> bytes:
    return build_batch([Record(value=v, timestamp_ms=timestamp_ms) for v in values])


def _fetch_leader(cluster: Cluster, topic: str, offset: int) -> dict[str, Any]:
    return fetch(_leader(cluster, topic, 0), topic, 0, offset)


def test_api_versions_beyond_the_supported_range_get_unsupported_version_and_the_table(
    shared_kafka_cluster: Cluster,
) -> None:
    addr = next(iter(kafka_addrs(shared_kafka_cluster).values()))
    # A v3 request relabelled v99, as a client newer than the broker sends it.
    frame = bytearray(encode_request(ApiKey.API_VERSIONS, 3, _API_VERSIONS_V3, correlation_id=5))
    struct.pack_into(">h", frame, 6, 99)
    with KafkaWire(addr) as w:
        w.send_bytes(bytes(frame))
        reply = w.read_frame()
        assert reply is not None, "the broker hung up on a newer ApiVersions"
        cid, r = decode_response(ApiKey.API_VERSIONS, 99, reply)
        assert cid == 5
        assert r["error_code"] == ErrorCode.UNSUPPORTED_VERSION
        keys = {row["api_key"]: (row["min_version"], row["max_version"]) for row in r["api_keys"]}
        assert keys[ApiKey.API_VERSIONS][0] == 0
        assert keys[ApiKey.PRODUCE][1] >= PRODUCE_VERSION
        # The connection stays usable for a supported version.
        assert w.request(ApiKey.API_VERSIONS, 3, _API_VERSIONS_V3)["error_code"] == 0


_API_VERSIONS_V3 = {"client_software_name": "quorumdb-test", "client_software_version": "1"}


def test_produce_on_a_follower_gets_not_leader_or_follower(shared_kafka_cluster: Cluster) -> None:
    topic = _topic(shared_kafka_cluster)
    addrs = kafka_addrs(shared_kafka_cluster)

    def a_follower_refused() -> bool:
        leader = _leader(shared_kafka_cluster, topic, 0)
        follower = next(a for a in addrs.values() if a != leader)
        row = produce(follower, topic, 0, _batch([b"x"]))
        return row["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER

    wait_for(a_follower_refused, "a follower to refuse a produce", 30)


def test_a_batch_with_a_bad_crc_is_corrupt_message_and_nothing_is_stored(
    shared_kafka_cluster: Cluster,
) -> None:
    topic = _topic(shared_kafka_cluster)
    good = _produce_on_leader(shared_kafka_cluster, topic, 0, _batch([b"a", b"b"]))
    assert good["error_code"] == 0
    bad = bytearray(_batch([b"c"]))
    bad[-1] ^= 0xFF  # the last record byte: covered by the CRC
    row = _produce_on_leader(shared_kafka_cluster, topic, 0, bytes(bad))
    assert row["error_code"] == ErrorCode.CORRUPT_MESSAGE
    got = _fetch_leader(shared_kafka_cluster, topic, 0)
    assert got["high_watermark"] == 2
    (h,) = list(iter_batches(got["records"]))
    assert (h.base_offset, h.record_count) == (0, 2)


def test_fetch_stops_at_the_high_watermark_and_beyond_it_is_out_of_range(
    shared_kafka_cluster: Cluster,
) -> None:
    topic = _topic(shared_kafka_cluster)
    for i in range(3):
        row = _produce_on_leader(shared_kafka_cluster, topic, 0, _batch([b"%d" % i] * 2))
        assert (row["error_code"], row["base_offset"]) == (0, 2 * i)
    got = _fetch_leader(shared_kafka_cluster, topic, 2)
    assert got["error_code"] == 0
    assert got["high_watermark"] == got["last_stable_offset"] == 6
    assert [h.base_offset for h in iter_batches(got["records"])] == [2, 4]
    at_end = _fetch_leader(shared_kafka_cluster, topic, 6)
    assert (at_end["error_code"], at_end["records"] or b"") == (0, b"")
    past = _fetch_leader(shared_kafka_cluster, topic, 7)
    assert past["error_code"] == ErrorCode.OFFSET_OUT_OF_RANGE


def test_a_long_poll_at_the_end_returns_the_record_produced_while_it_waits(
    shared_kafka_cluster: Cluster,
) -> None:
    topic = _topic(shared_kafka_cluster)
    leader = _leader(shared_kafka_cluster, topic, 0)
    body = {
        "replica_id": -1,
        "max_wait_ms": 20_000,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {
                        "partition": 0,
                        "current_leader_epoch": -1,
                        "fetch_offset": 0,
                        "log_start_offset": -1,
                        "partition_max_bytes": 1 << 20,
                    }
                ],
            }
        ],
        "forgotten_topics_data": [],
        "rack_id": "",
    }
    answer: list[dict[str, Any]] = []

    def poll() -> None:
        with KafkaWire(leader, timeout_s=60.0) as w:
            answer.append(w.request(ApiKey.FETCH, FETCH_VERSION, body))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        assert not answer, "the fetch at the log end answered before anything was produced"
        assert produce(leader, topic, 0, _batch([b"wake up"]))["error_code"] == 0
    finally:
        poller.join(timeout=60)
    assert not poller.is_alive()
    ((t,),) = [r["responses"] for r in answer]
    (p,) = t["partitions"]
    assert p["error_code"] == 0
    assert [h.record_count for h in iter_batches(p["records"])] == [1]


def _list_offsets(addr: Addr, topic: str, timestamp: int) -> dict[str, Any]:
    body = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [
            {
                "name": topic,
                "partitions": [
                    {"partition_index": 0, "current_leader_epoch": -1, "timestamp": timestamp}
                ],
            }
        ],
    }
    with KafkaWire(addr) as w:
        ((t,),) = [w.request(ApiKey.LIST_OFFSETS, 5, body)["topics"]]
    (p,) = t["partitions"]
    return dict(p)


def test_list_offsets_earliest_latest_and_by_timestamp(shared_kafka_cluster: Cluster) -> None:
    topic = _topic(shared_kafka_cluster)
    for i, ts in enumerate((1_000, 2_000, 3_000)):
        row = _produce_on_leader(shared_kafka_cluster, topic, 0, _batch([b"v"] * 2, ts))
        assert row["base_offset"] == 2 * i
    leader = _leader(shared_kafka_cluster, topic, 0)
    assert _list_offsets(leader, topic, -2)["offset"] == 0  # earliest
    assert _list_offsets(leader, topic, -1)["offset"] == 6  # latest
    by_time = _list_offsets(leader, topic, 1_500)
    assert (by_time["error_code"], by_time["offset"], by_time["timestamp"]) == (0, 2, 2_000)
    assert _list_offsets(leader, topic, 9_999)["offset"] == -1  # nothing that late


def test_offset_for_leader_epoch_of_the_current_epoch_is_the_log_end(
    shared_kafka_cluster: Cluster,
) -> None:
    topic = _topic(shared_kafka_cluster)
    row = _produce_on_leader(shared_kafka_cluster, topic, 0, _batch([b"e"] * 3))
    assert row["error_code"] == 0
    leader = _leader(shared_kafka_cluster, topic, 0)
    (t,) = metadata(leader, [topic])["topics"]
    epoch = t["partitions"][0]["leader_epoch"]
    body = {
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {"partition": 0, "current_leader_epoch": epoch, "leader_epoch": epoch}
                ],
            }
        ]
    }
    with KafkaWire(leader) as w:
        (rt,) = w.request(ApiKey.OFFSET_FOR_LEADER_EPOCH, 2, body)["topics"]
    (p,) = rt["partitions"]
    assert (p["error_code"], p["leader_epoch"], p["end_offset"]) == (0, epoch, 3)
    body["topics"][0]["partitions"][0]["current_leader_epoch"] = epoch + 1
    with KafkaWire(leader) as w:
        (rt,) = w.request(ApiKey.OFFSET_FOR_LEADER_EPOCH, 2, body)["topics"]
    assert rt["partitions"][0]["error_code"] == ErrorCode.UNKNOWN_LEADER_EPOCH
    if epoch > 0:
        body["topics"][0]["partitions"][0]["current_leader_epoch"] = epoch - 1
        with KafkaWire(leader) as w:
            (rt,) = w.request(ApiKey.OFFSET_FOR_LEADER_EPOCH, 2, body)["topics"]
        assert rt["partitions"][0]["error_code"] == ErrorCode.FENCED_LEADER_EPOCH


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_are_stored_as_sent_and_consumed_intact(
    shared_kafka_cluster: Cluster, codec: str
) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = _topic(shared_kafka_cluster)
    servers = ",".join(bootstrap(shared_kafka_cluster))
    producer = Producer(
        {
            "bootstrap.servers": servers,
            "compression.type": codec,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "log_level": 3,
        }
    )
    values = [b"%s-%04d-" % (codec.encode(), i) + b"z" * 80 for i in range(300)]
    for v in values:
        producer.produce(topic, v, partition=0)
    assert producer.flush(30) == 0
    got = _fetch_leader(shared_kafka_cluster, topic, 0)
    headers = list(iter_batches(got["records"]))
    assert headers
    assert {h.compression for h in headers} == {Compression[codec.upper()]}
    consumer = Consumer({"bootstrap.servers": servers, "group.id": f"g-{topic}", "log_level": 3})
    consumer.assign([TopicPartition(topic, 0, 0)])
    read: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(read) < len(values) and time.monotonic() < deadline:
        for m in consumer.consume(num_messages=500, timeout=0.5):
            assert m.error() is None, m.error()
            read.append(m.value())
    consumer.close()
    assert read == values


def test_acks_0_gets_no_answer_and_the_next_request_gets_its_own(
    shared_kafka_cluster: Cluster,
) -> None:
    topic = _topic(shared_kafka_cluster)
    leader = _leader(shared_kafka_cluster, topic, 0)
    body = {
        "transactional_id": None,
        "acks": 0,
        "timeout_ms": 10_000,
        "topic_data": [
            {"name": topic, "partition_data": [{"index": 0, "records": _batch([b"fire"])}]}
        ],
    }
    with KafkaWire(leader) as w:
        w.send_bytes(encode_request(ApiKey.PRODUCE, PRODUCE_VERSION, body, correlation_id=77))
        r = w.request(ApiKey.API_VERSIONS, 3, _API_VERSIONS_V3)  # asserts its correlation id
        assert r["error_code"] == 0
    wait_for(
        lambda: _fetch_leader(shared_kafka_cluster, topic, 0)["high_watermark"] == 1,
        "the acks=0 record to be committed",
        30,
    )


def test_a_deleted_topic_is_gone_from_metadata_everywhere(shared_kafka_cluster: Cluster) -> None:
    topic = _topic(shared_kafka_cluster, partitions=2)
    addrs = list(kafka_addrs(shared_kafka_cluster).values())
    with KafkaWire(addrs[0], timeout_s=15.0) as w:
        r = w.request(ApiKey.DELETE_TOPICS, 3, {"topic_names": [topic], "timeout_ms": 10_000})
    assert [(x["name"], x["error_code"]) for x in r["responses"]] == [(topic, 0)]

    def gone() -> bool:
        return all(
            metadata(a, [topic])["topics"][0]["error_code"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            for a in addrs
        )

    wait_for(gone, f"{topic} to disappear from every node's metadata", 30)
    with KafkaWire(addrs[0], timeout_s=15.0) as w:
        r = w.request(ApiKey.DELETE_TOPICS, 3, {"topic_names": [topic], "timeout_ms": 10_000})
    assert r["responses"][0]["error_code"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_retention_by_size_deletes_whole_old_segments(shared_kafka_cluster: Cluster) -> None:
    topic = _topic(shared_kafka_cluster, **{"segment.bytes": "1024", "retention.bytes": "2048"})
    for i in range(40):
        row = _produce_on_leader(shared_kafka_cluster, topic, 0, _batch([b"%03d" % i + b"r" * 200]))
        assert row["error_code"] == 0
    starts: list[int] = []

    def trimmed() -> bool:
        got = _fetch_leader(shared_kafka_cluster, topic, 39)
        starts.append(got["log_start_offset"])
        return got["log_start_offset"] > 0

    wait_for(trimmed, "retention to advance the log start offset", 30)
    start = starts[-1]
    assert 0 < start < 40
    assert _fetch_leader(shared_kafka_cluster, topic, 0)["error_code"] == (
        ErrorCode.OFFSET_OUT_OF_RANGE
    )
    got = _fetch_leader(shared_kafka_cluster, topic, start)
    assert next(iter_batches(got["records"])).base_offset == start


def _produce_acks(addr: Addr, topic: str, acks: int, records: bytes) -> dict[str, Any]:
    body = {
        "transactional_id": None,
        "acks": acks,
        "timeout_ms": 10_000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
    }
    with KafkaWire(addr, timeout_s=15.0) as w:
        ((t,),) = [w.request(ApiKey.PRODUCE, PRODUCE_VERSION, body)["responses"]]
    (p,) = t["partition_responses"]
    return dict(p)


def test_min_insync_replicas_refuses_acks_all_while_a_replica_is_down(
    kafka_cluster: Cluster,
) -> None:
    topic = _topic(kafka_cluster, **{"min.insync.replicas": "3"})
    assert _produce_on_leader(kafka_cluster, topic, 0, _batch([b"all three"]))["error_code"] == 0
    leader = _leader(kafka_cluster, topic, 0)
    addrs = kafka_addrs(kafka_cluster)
    victim = next(n for n, a in addrs.items() if a != leader)
    kafka_cluster.kill9(victim)
    codes: list[int] = []

    def refused() -> bool:
        row = _produce_acks(_leader(kafka_cluster, topic, 0), topic, -1, _batch([b"refused"]))
        codes.append(row["error_code"])
        return row["error_code"] == ErrorCode.NOT_ENOUGH_REPLICAS

    wait_for(refused, f"acks=all to be refused with node {victim} down", 30)
    # acks=1 is the documented unsafe setting: the leader alone takes it.
    row = _produce_acks(_leader(kafka_cluster, topic, 0), topic, 1, _batch([b"leader only"]))
    assert row["error_code"] == 0
    kafka_cluster.restart(victim)

    def accepted() -> bool:
        row = _produce_acks(_leader(kafka_cluster, topic, 0), topic, -1, _batch([b"back"]))
        return row["error_code"] == 0

    wait_for(accepted, f"acks=all to be accepted once node {victim} is back", 60)
    values = []
    got = _fetch_leader(kafka_cluster, topic, 0)
    for h in iter_batches(got["records"]):
        values += [r.value for r in decode_records(got["records"], h)]
    assert values[0] == b"all three" and b"leader only" in values and values[-1] == b"back"
    assert b"refused" not in values

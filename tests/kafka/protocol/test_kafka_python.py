"""Golden checks against kafka-python, a real client library: its bytes decode with our codec,
ours decode with its classes, for every API/version both implement; full frames (size +
header + body) from its request classes go through `KafkaConnection`; its record batch
builder and reader agree with `records.py`.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.protocol.consumer.fetch import FetchRequest, FetchResponse
from kafka.protocol.metadata.api_versions import ApiVersionsRequest, ApiVersionsResponse
from kafka.protocol.metadata.metadata import MetadataRequest, MetadataResponse
from kafka.protocol.producer.produce import ProduceRequest, ProduceResponse
from kafka.protocol.producer.transaction import InitProducerIdRequest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from quorumdb.kafka.protocol import (
    NEED_DATA,
    ApiKey,
    ErrorCode,
    KafkaConnection,
    Request,
    api_versions_body,
    decode,
    encode,
    supported_versions,
)
from quorumdb.kafka.protocol import records as rec
from quorumdb.kafka.protocol._schema import all_message_specs
from quorumdb.kafka.protocol.codec import MessageSpec
from tests.kafka.protocol import kafka_python as kp
from tests.kafka.protocol.schema_strategies import message_values

_SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _cases(have: Any) -> list[tuple[MessageSpec, int]]:
    return [
        (spec, v)
        for spec in all_message_specs()
        for v in range(spec.versions[0], spec.versions[1] + 1)
        if have(spec, v)
    ]


def _id(case: tuple[MessageSpec, int]) -> str:
    return f"{case[0].name}-v{case[1]}"


def _fixup(spec: MessageSpec, version: int, value: dict[str, Any]) -> dict[str, Any]:
    # kafka-python reads any ApiVersions response with an error as v0 (we only send a
    # non-zero error for UNSUPPORTED_VERSION, which is v0 anyway).
    if spec.api_key == ApiKey.API_VERSIONS and spec.kind == "response":
        value = dict(value, error_code=0)
    return value


OLD_CASES = _cases(lambda s, v: (s.api_key, v, s.kind.value) in kp.OLD)
NEW_CASES = _cases(lambda s, v: v >= kp.NEW[(s.api_key, s.kind.value)].valid_versions[0])


def test_the_cross_checks_cover_every_api_version_and_kind() -> None:
    every = {(s.name, v) for s, v in _cases(lambda s, v: True)}
    covered = {(s.name, v) for s, v in OLD_CASES + NEW_CASES}
    assert every == covered
    assert len(OLD_CASES) >= 200


@pytest.mark.parametrize("case", OLD_CASES, ids=_id)
@_SETTINGS
@given(data=st.data())
def test_hand_written_kafka_python_structs_agree(case: tuple[MessageSpec, int], data: Any) -> None:
    spec, version = case
    assert spec.api_key is not None
    cls = kp.OLD[(spec.api_key, version, spec.kind.value)]
    value = _fixup(spec, version, data.draw(message_values(spec, version)))
    for f in spec.fields:  # old structs keep tagged fields as raw bytes: use defaults
        if f.is_tagged(version):
            value[f.name] = f.scalar_default()
    ours = decode(spec.api_key, version, spec.kind, encode(spec.api_key, version, spec.kind, value))
    # ours -> theirs
    theirs = cls.decode(io.BytesIO(encode(spec.api_key, version, spec.kind, value)))
    got = kp.from_old(
        [getattr(theirs, n) for n in cls.SCHEMA.names], spec.fields, version, cls.SCHEMA
    )
    assert got == kp.untagged(ours, spec.fields, version)
    # theirs -> ours
    wire = cls(*kp.to_old(ours, spec.fields, version, cls.SCHEMA)).encode()
    assert decode(spec.api_key, version, spec.kind, wire) == ours


@pytest.mark.parametrize("case", NEW_CASES, ids=_id)
@_SETTINGS
@given(data=st.data())
def test_json_generated_kafka_python_classes_agree(
    case: tuple[MessageSpec, int], data: Any
) -> None:
    spec, version = case
    assert spec.api_key is not None
    cls = kp.NEW[(spec.api_key, spec.kind.value)]
    value = _fixup(spec, version, data.draw(message_values(spec, version)))
    wire = encode(spec.api_key, version, spec.kind, value)
    ours = decode(spec.api_key, version, spec.kind, wire)
    theirs = cls[version].decode(wire)
    assert kp.normalize(theirs.to_dict(json=False)) == kp.normalize(ours)
    back = decode(
        spec.api_key, version, spec.kind, bytes(kp.new_from_dict(cls, ours, version).encode())
    )
    assert kp.normalize(back) == kp.normalize(ours)


# --- whole frames through KafkaConnection -----------------------------------------------------


def _frame(msg: Any, correlation_id: int, client_id: str = "kafka-python") -> bytes:
    msg.with_header(correlation_id=correlation_id, client_id=client_id)
    return bytes(msg.encode(header=True, framed=True))


def _one_request(frame: bytes) -> Request:
    conn = KafkaConnection()
    conn.feed(frame)
    req = conn.next_request()
    assert isinstance(req, Request)
    assert conn.next_request() is NEED_DATA
    return req


def _batch(n: int, *, producer_id: int = -1, compression: int = 0) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=False,
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=0 if producer_id >= 0 else -1,
        batch_size=1 << 20,
    )
    for i in range(n):
        builder.append(
            i,
            timestamp=1_700_000_000_000 + i,
            key=b"k%d" % i,
            value=b"v" * i,
            headers=[("h", b"x")],
        )
    return bytes(builder.build())


@pytest.mark.parametrize("version", range(3, 9))
def test_produce_request_frames_from_kafka_python(version: int) -> None:
    records = _batch(3, producer_id=7)
    msg = ProduceRequest[version](
        transactional_id=None,
        acks=-1,
        timeout_ms=1500,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name="events",
                partition_data=[
                    ProduceRequest.TopicProduceData.PartitionProduceData(index=2, records=records)
                ],
            )
        ],
    )
    req = _one_request(_frame(msg, correlation_id=41))
    assert (req.api_key, req.api_version, req.correlation_id, req.client_id) == (
        ApiKey.PRODUCE,
        version,
        41,
        "kafka-python",
    )
    assert req.expects_response
    part = req.body["topic_data"][0]["partition_data"][0]
    assert (req.body["acks"], req.body["timeout_ms"], part["index"]) == (-1, 1500, 2)
    assert bytes(part["records"]) == records
    (header,) = rec.validate_batches(part["records"], check_records=True)
    assert (header.record_count, header.producer_id, header.base_sequence) == (3, 7, 0)


def test_produce_acks_0_expects_no_response() -> None:
    msg = ProduceRequest[3](transactional_id=None, acks=0, timeout_ms=1, topic_data=[])
    assert not _one_request(_frame(msg, correlation_id=1)).expects_response


@pytest.mark.parametrize("version", range(0, 9))
def test_metadata_request_frames_and_response_round_trip(version: int) -> None:
    topics = [
        MetadataRequest.MetadataRequestTopic(name="a"),
        MetadataRequest.MetadataRequestTopic(name="b"),
    ]
    req = _one_request(_frame(MetadataRequest[version](topics=topics), correlation_id=9))
    assert [t["name"] for t in req.body["topics"]] == ["a", "b"]
    body = {
        "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": 9092, "rack": None}],
        "cluster_id": "qdb",
        "controller_id": 1,
        "topics": [
            {
                "error_code": 0,
                "name": "a",
                "is_internal": False,
                "partitions": [
                    {
                        "error_code": 0,
                        "partition_index": 0,
                        "leader_id": 1,
                        "leader_epoch": 3,
                        "replica_nodes": [1, 2, 3],
                        "isr_nodes": [1, 2],
                        "offline_replicas": [],
                    }
                ],
            }
        ],
    }
    # One body for every version: fields a version lacks are ignorable in the spec, so they
    # are dropped for old clients, as Kafka's broker does.
    frame = KafkaConnection().encode_response(req, body)
    resp = MetadataResponse[version].decode(frame, header=True, framed=True)
    assert resp.header.correlation_id == 9
    assert resp.brokers[0].host == "127.0.0.1"
    assert resp.topics[0].partitions[0].replica_nodes == [1, 2, 3]


def test_fetch_response_carries_records_kafka_python_can_read() -> None:
    records = _batch(2) + _batch(1)
    msg = FetchRequest[11](
        replica_id=-1,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=1,
        session_id=0,
        session_epoch=-1,
        topics=[
            FetchRequest.FetchTopic(
                topic="t",
                partitions=[
                    FetchRequest.FetchTopic.FetchPartition(
                        partition=0,
                        current_leader_epoch=-1,
                        fetch_offset=0,
                        log_start_offset=-1,
                        partition_max_bytes=1 << 20,
                    )
                ],
            )
        ],
        forgotten_topics_data=[],
        rack_id="",
    )
    req = _one_request(_frame(msg, correlation_id=5))
    assert req.body["isolation_level"] == 1
    assert req.body["topics"][0]["partitions"][0]["fetch_offset"] == 0
    body = {
        "responses": [
            {
                "topic": "t",
                "partitions": [
                    {
                        "partition_index": 0,
                        "error_code": 0,
                        "high_watermark": 3,
                        "last_stable_offset": 3,
                        "log_start_offset": 0,
                        "aborted_transactions": [],
                        "preferred_read_replica": -1,
                        "records": [memoryview(records)[:10], memoryview(records)[10:]],
                    }
                ],
            }
        ]
    }
    frame = KafkaConnection().encode_response(req, body)
    resp = FetchResponse[11].decode(frame, header=True, framed=True)
    part = resp.responses[0].partitions[0]
    assert (part.high_watermark, part.last_stable_offset) == (3, 3)
    got = bytes(part.records if not hasattr(part.records, "buffer") else part.records.buffer())
    assert got == records


def test_api_versions_v3_flexible_request_header_and_v0_response_header() -> None:
    msg = ApiVersionsRequest[3](client_software_name="kafka-python", client_software_version="3.0")
    req = _one_request(_frame(msg, correlation_id=77))
    assert (req.header_version, req.client_id) == (2, "kafka-python")
    assert req.body == {"client_software_name": "kafka-python", "client_software_version": "3.0"}
    frame = KafkaConnection().encode_response(req, api_versions_body())
    resp = ApiVersionsResponse[3].decode(frame, header=True, framed=True)
    assert resp.header.correlation_id == 77
    advertised = {(k.api_key, k.min_version, k.max_version) for k in resp.api_keys}
    assert advertised == {(int(k), lo, hi) for k, lo, hi in supported_versions()}


def test_api_versions_v4_gets_a_v0_error_response_kafka_python_understands() -> None:
    msg = ApiVersionsRequest[4](client_software_name="kafka-python", client_software_version="3.0")
    conn = KafkaConnection()
    conn.feed(_frame(msg, correlation_id=3))
    req = conn.next_request()
    assert isinstance(req, Request)
    assert not req.is_version_supported
    assert req.body == {}
    frame = conn.encode_unsupported_version_response(req)
    resp = ApiVersionsResponse[4].decode(frame, header=True, framed=True)
    assert resp.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert resp.version == 0
    rows = {k.api_key: k.max_version for k in resp.api_keys}
    assert rows[ApiKey.API_VERSIONS] == 3


def test_init_producer_id_frame() -> None:
    msg = InitProducerIdRequest[1](transactional_id=None, transaction_timeout_ms=60000)
    req = _one_request(_frame(msg, correlation_id=2, client_id=""))
    assert req.client_id == ""
    assert req.body == {"transactional_id": None, "transaction_timeout_ms": 60000}


def test_produce_response_frames_kafka_python_reads() -> None:
    msg = ProduceRequest[8](transactional_id=None, acks=1, timeout_ms=1, topic_data=[])
    req = _one_request(_frame(msg, correlation_id=12))
    body = {
        "responses": [
            {
                "name": "t",
                "partition_responses": [
                    {
                        "index": 0,
                        "error_code": ErrorCode.NOT_LEADER_OR_FOLLOWER,
                        "base_offset": -1,
                        "log_append_time_ms": -1,
                        "log_start_offset": -1,
                        "record_errors": [{"batch_index": 0, "batch_index_error_message": None}],
                        "error_message": "moved",
                    }
                ],
            }
        ],
        "throttle_time_ms": 0,
    }
    resp = ProduceResponse[8].decode(
        KafkaConnection().encode_response(req, body), header=True, framed=True
    )
    part = resp.responses[0].partition_responses[0]
    assert (part.error_code, part.error_message) == (6, "moved")


# --- record batches ------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [0, 1])  # none, gzip (stdlib)
def test_kafka_python_batches_validate(compression: int) -> None:
    data = _batch(5, producer_id=3, compression=compression) + _batch(1)
    headers = rec.validate_batches(data, check_records=True)
    assert [h.record_count for h in headers] == [5, 1]
    assert headers[0].compression == compression
    if compression == 0:
        records = rec.decode_records(data, headers[0])
        assert [r.key for r in records] == [b"k0", b"k1", b"k2", b"k3", b"k4"]
        assert records[2].headers == (("h", b"x"),)
        assert records[4].timestamp_ms == 1_700_000_000_004
    else:
        with pytest.raises(rec.RemoteProtocolError):
            rec.decode_records(data, headers[0])


def test_our_batches_read_by_kafka_python() -> None:
    data = rec.build_batch(
        [
            rec.Record(key=b"a", value=b"1", timestamp_ms=10),
            rec.Record(key=None, value=None, timestamp_ms=12, headers=(("x", None),)),
        ],
        base_offset=100,
        producer_id=5,
        producer_epoch=1,
        base_sequence=9,
    )
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc()
    assert (batch.base_offset, batch.producer_id, batch.base_sequence, batch.max_timestamp) == (
        100,
        5,
        9,
        12,
    )
    got = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]
    assert got == [(100, 10, b"a", b"1", []), (101, 12, None, None, [("x", None)])]


def test_control_batch_read_by_kafka_python() -> None:
    data = rec.build_control_batch(
        rec.ControlRecordType.ABORT,
        producer_id=8,
        producer_epoch=2,
        coordinator_epoch=4,
        timestamp_ms=1,
    )
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc() and batch.is_control_batch and batch.is_transactional
    (marker,) = list(batch)
    assert marker.abort


def test_patched_batches_stay_valid_for_kafka_python() -> None:
    buf = bytearray(_batch(3))
    rec.patch_base_offset(buf, 0, 1234)
    rec.patch_partition_leader_epoch(buf, 0, 6)
    batch = DefaultRecordBatch(bytes(buf))
    assert batch.validate_crc()
    assert (batch.base_offset, batch.leader_epoch) == (1234, 6)
    rec.set_log_append_time(buf, 0, 1_800_000_000_000)
    batch = DefaultRecordBatch(bytes(buf))
    assert batch.validate_crc()
    assert batch.timestamp_type == 1
    assert [r.timestamp for r in batch] == [1_800_000_000_000] * 3

"""KafkaConnection: framing under any split, limits, EOF, unsupported APIs, response frames."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quorumdb.kafka.protocol import (
    CLOSED,
    NEED_DATA,
    ApiKey,
    ErrorCode,
    KafkaConnection,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Sentinel,
    UnsupportedRequestError,
    api_versions_body,
    decode_response,
    encode_request,
)
from quorumdb.kafka.protocol.connection import DEFAULT_MAX_REQUEST_BYTES

HEARTBEAT = {"group_id": "g", "generation_id": 3, "member_id": "m", "group_instance_id": None}


def _frames() -> list[bytes]:
    return [
        encode_request(ApiKey.METADATA, 5, {"topics": [{"name": "t"}]}, correlation_id=1),
        encode_request(ApiKey.HEARTBEAT, 3, HEARTBEAT, correlation_id=2, client_id=None),
        encode_request(
            ApiKey.API_VERSIONS,
            3,
            {"client_software_name": "x", "client_software_version": "1"},
            correlation_id=3,
        ),
    ]


def _drain(conn: KafkaConnection) -> list[Request]:
    out = []
    while True:
        ev = conn.next_request()
        if isinstance(ev, Sentinel):
            return out
        out.append(ev)


def test_one_byte_at_a_time() -> None:
    frame = _frames()[0]
    conn = KafkaConnection()
    for b in frame[:-1]:
        conn.feed(bytes([b]))
        assert conn.next_request() is NEED_DATA
    conn.feed(frame[-1:])
    req = conn.next_request()
    assert isinstance(req, Request)
    assert (req.api_key, req.api_version, req.correlation_id) == (ApiKey.METADATA, 5, 1)
    assert req.client_id == "quorumdb"
    assert req.body == {"topics": [{"name": "t"}], "allow_auto_topic_creation": True}
    assert req.size_bytes == len(frame) - 4
    assert conn.buffered_bytes == 0


@given(st.lists(st.integers(0, 200), max_size=6))
def test_pipelined_requests_survive_any_split(cuts: list[int]) -> None:
    stream = b"".join(_frames())
    points = sorted({min(c, len(stream)) for c in cuts})
    conn = KafkaConnection()
    got: list[Request] = []
    prev = 0
    for p in [*points, len(stream)]:
        if p == prev:
            continue  # feed(b"") would mean EOF
        conn.feed(stream[prev:p])
        got += _drain(conn)
        prev = p
    assert [r.correlation_id for r in got] == [1, 2, 3]
    assert got[1].client_id is None
    assert got[1].body == HEARTBEAT
    assert got[2].header_version == 2
    conn.feed(b"")
    assert conn.next_request() is CLOSED


def test_oversize_prefix_is_refused_before_the_body_arrives() -> None:
    conn = KafkaConnection(max_request_bytes=1000)
    conn.feed(struct.pack(">i", 1001))
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_request()
    assert info.value.code is ErrorCode.MESSAGE_TOO_LARGE
    assert conn.buffered_bytes == 4


def test_a_request_of_exactly_the_limit_is_accepted() -> None:
    frame = _frames()[0]
    conn = KafkaConnection(max_request_bytes=len(frame) - 4)
    conn.feed(frame)
    assert isinstance(conn.next_request(), Request)


@pytest.mark.parametrize("size", [-1, -(2**31), 0, 9])
def test_sizes_below_a_header_are_refused(size: int) -> None:
    conn = KafkaConnection()
    conn.feed(struct.pack(">i", size))
    with pytest.raises(RemoteProtocolError, match="smaller than a request header"):
        conn.next_request()


def test_errors_are_sticky() -> None:
    conn = KafkaConnection()
    conn.feed(struct.pack(">i", 3))
    with pytest.raises(RemoteProtocolError):
        conn.next_request()
    conn.feed(b"more")
    with pytest.raises(RemoteProtocolError, match="connection already failed"):
        conn.next_request()


def test_eof_inside_a_request_is_an_error_and_clean_eof_is_closed() -> None:
    conn = KafkaConnection()
    conn.feed(_frames()[0][:7])
    conn.feed(b"")
    with pytest.raises(RemoteProtocolError, match="stream closed inside a request"):
        conn.next_request()
    conn = KafkaConnection()
    conn.feed(b"")
    assert conn.next_request() is CLOSED
    with pytest.raises(LocalProtocolError, match="after end of stream"):
        conn.feed(b"x")


def test_feeding_without_draining_is_refused() -> None:
    frame = _frames()[0]
    conn = KafkaConnection(max_request_bytes=len(frame))
    conn.feed(frame + frame)
    with pytest.raises(LocalProtocolError, match="until NEED_DATA"):
        conn.feed(b"x")
    assert len(_drain(conn)) == 2
    conn.feed(b"x")


def _header_only(api_key: int, version: int, correlation_id: int) -> bytes:
    body = struct.pack(">hhih", api_key, version, correlation_id, -1)
    return struct.pack(">i", len(body)) + body


def test_unknown_api_key_closes_with_the_correlation_id() -> None:
    conn = KafkaConnection()
    conn.feed(_header_only(17, 1, 99))  # SaslHandshake: not served
    with pytest.raises(UnsupportedRequestError) as info:
        conn.next_request()
    assert (info.value.api_key, info.value.correlation_id) == (17, 99)
    assert info.value.code is ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize(("api_key", "version"), [(0, 2), (0, 9), (1, 3), (3, 9), (18, -1)])
def test_unsupported_versions_raise_for_every_api_but_apiversions(
    api_key: int, version: int
) -> None:
    conn = KafkaConnection()
    conn.feed(_header_only(api_key, version, 5))
    with pytest.raises(UnsupportedRequestError) as info:
        conn.next_request()
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION
    assert (info.value.api_key, info.value.api_version, info.value.correlation_id) == (
        api_key,
        version,
        5,
    )


@pytest.mark.parametrize("version", [4, 5, 32767])
def test_newer_apiversions_is_answered_with_a_v0_error_body(version: int) -> None:
    # a flexible header (v2) with an unknown tagged field and a body we never read
    body = struct.pack(">hhih", 18, version, 8, 1) + b"c" + b"\x01\x05\x01\x00" + b"\xde\xad"
    conn = KafkaConnection()
    conn.feed(struct.pack(">i", len(body)) + body)
    req = conn.next_request()
    assert isinstance(req, Request)
    assert (req.is_version_supported, req.response_version, req.client_id) == (False, 0, "c")
    frame = conn.encode_unsupported_version_response(req)
    correlation_id, resp = decode_response(18, version, frame)
    assert correlation_id == 8
    expected = api_versions_body(ErrorCode.UNSUPPORTED_VERSION)
    del expected["throttle_time_ms"]  # not in v0
    assert resp == expected
    assert {(r["api_key"], r["min_version"], r["max_version"]) for r in resp["api_keys"]} == set(
        conn.supported
    )
    # v0 body, v0 header: exactly size, correlation id, error, array
    assert frame[4:8] == struct.pack(">i", 8)
    assert frame[8:10] == struct.pack(">h", 35)


def test_unsupported_version_answer_is_only_for_apiversions() -> None:
    conn = KafkaConnection()
    conn.feed(_frames()[0])
    req = conn.next_request()
    assert isinstance(req, Request)
    with pytest.raises(LocalProtocolError):
        conn.encode_unsupported_version_response(req)


def test_a_narrower_supported_table_is_enforced_and_advertised() -> None:
    conn = KafkaConnection(supported=[(ApiKey.API_VERSIONS, 0, 3), (ApiKey.METADATA, 5, 8)])
    conn.feed(encode_request(ApiKey.METADATA, 4, {"topics": None}, correlation_id=1))
    with pytest.raises(UnsupportedRequestError):
        conn.next_request()
    conn = KafkaConnection(supported=[(ApiKey.API_VERSIONS, 0, 3)])
    conn.feed(encode_request(ApiKey.METADATA, 5, {"topics": None}, correlation_id=1))
    with pytest.raises(UnsupportedRequestError):
        conn.next_request()


def test_malformed_body_names_the_field() -> None:
    frame = bytearray(_frames()[1])
    frame[-2:] = b"\x00\x05"  # group_instance_id claims 5 bytes that are not there
    conn = KafkaConnection()
    conn.feed(bytes(frame))
    with pytest.raises(RemoteProtocolError, match=r"HeartbeatRequest v3: group_instance_id"):
        conn.next_request()


def test_malformed_header_is_refused() -> None:
    body = struct.pack(">hhih", 3, 5, 1, 50)  # client id claims 50 bytes
    conn = KafkaConnection()
    conn.feed(struct.pack(">i", len(body)) + body)
    with pytest.raises(RemoteProtocolError, match="RequestHeader v1: client_id"):
        conn.next_request()


def test_response_frames() -> None:
    conn = KafkaConnection()
    conn.feed(b"".join(_frames()))
    meta, heartbeat, versions = _drain(conn)
    frame = conn.encode_response(heartbeat, {"throttle_time_ms": 1, "error_code": 27})
    assert frame == struct.pack(">iiih", 10, 2, 1, 27)
    assert decode_response(12, 3, frame) == (2, {"throttle_time_ms": 1, "error_code": 27})
    # ApiVersions v3 has a flexible body but a v0 header (no tag byte after correlation id)
    frame = conn.encode_response(versions, api_versions_body())
    assert frame[4:8] == struct.pack(">i", 3)
    assert frame[8:10] == b"\x00\x00"
    _, body = decode_response(18, 3, frame)
    assert body["finalized_features_epoch"] == -1
    with pytest.raises(LocalProtocolError, match="unknown field"):
        conn.encode_response(meta, {"no_such_field": 1})


def test_large_records_are_not_copied_into_response_chunks() -> None:
    conn = KafkaConnection()
    conn.feed(encode_request(ApiKey.FETCH, 4, _fetch_body(), correlation_id=4))
    req = conn.next_request()
    assert isinstance(req, Request)
    big = memoryview(b"\x07" * 100_000)
    body = {"responses": [{"topic": "t", "partitions": [{"partition_index": 0, "records": big}]}]}
    chunks = conn.encode_response_chunks(req, body)
    assert any(c is big for c in chunks)
    assert len(chunks) == 2  # small pieces before the records merged with the size prefix
    assert b"".join(chunks) == conn.encode_response(req, body)
    _, resp = decode_response(1, 4, b"".join(chunks))
    assert resp["responses"][0]["partitions"][0]["records"] == big


def _fetch_body() -> dict[str, Any]:
    return {
        "replica_id": -1,
        "max_wait_ms": 100,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "isolation_level": 1,
        "topics": [{"topic": "t", "partitions": [{"partition": 0, "fetch_offset": 5}]}],
    }


def test_records_in_requests_stay_valid_after_more_data_arrives() -> None:
    value = {
        "acks": 1,
        "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": b"RECS"}]}],
    }
    frame = encode_request(ApiKey.PRODUCE, 3, value, correlation_id=1)
    conn = KafkaConnection()
    conn.feed(frame + frame[:5])
    req = conn.next_request()
    assert isinstance(req, Request)
    conn.feed(frame[5:])
    assert isinstance(conn.next_request(), Request)
    assert bytes(req.body["topic_data"][0]["partition_data"][0]["records"]) == b"RECS"


def test_decode_response_refuses_a_bad_size_prefix() -> None:
    with pytest.raises(RemoteProtocolError, match="bad size prefix"):
        decode_response(12, 0, struct.pack(">ii", 9, 1))


def test_constructor_validates_the_limit() -> None:
    with pytest.raises(ValueError, match="out of range"):
        KafkaConnection(max_request_bytes=3)
    assert KafkaConnection().max_request_bytes == DEFAULT_MAX_REQUEST_BYTES


def test_request_records_are_patchable_in_place() -> None:
    from quorumdb.kafka.protocol import records as rec

    batch = rec.build_batch([rec.Record(value=b"v")])
    value = {
        "acks": -1,
        "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": batch}]}],
    }
    conn = KafkaConnection()
    conn.feed(encode_request(ApiKey.PRODUCE, 8, value, correlation_id=1))
    req = conn.next_request()
    assert isinstance(req, Request)
    view = req.body["topic_data"][0]["partition_data"][0]["records"]
    assert not view.readonly
    (h,) = rec.validate_batches(view)
    rec.patch_base_offset(view, h.position, 42)
    assert rec.validate_batches(view)[0].base_offset == 42

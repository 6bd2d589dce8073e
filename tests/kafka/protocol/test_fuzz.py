"""Fuzz targets: hostile bytes into `decode`, `KafkaConnection` and `records` raise nothing but
`ProtocolError`, and the connection's buffer stays bounded. ("It didn't crash" is the point.)
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumdb.kafka.protocol import (
    ApiKey,
    KafkaConnection,
    ProtocolError,
    RemoteProtocolError,
    Request,
    Sentinel,
    decode,
    encode,
    encode_request,
    supported_versions,
)
from quorumdb.kafka.protocol import records as rec
from quorumdb.kafka.protocol._schema import MessageKind, all_message_specs, message_spec
from quorumdb.kafka.protocol.codec import MessageSpec
from tests.kafka.protocol.schema_strategies import message_values

ALL_VERSIONS = [
    (spec, version)
    for spec in all_message_specs()
    for version in range(spec.versions[0], spec.versions[1] + 1)
]
_FUZZ = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _id(case: tuple[MessageSpec, int]) -> str:
    return f"{case[0].name}-v{case[1]}"


@pytest.mark.parametrize("case", ALL_VERSIONS, ids=_id)
@_FUZZ
@given(data=st.binary(max_size=96))
def test_random_bytes_into_decode(case: tuple[MessageSpec, int], data: bytes) -> None:
    spec, version = case
    assert spec.api_key is not None
    with contextlib.suppress(ProtocolError):
        decode(spec.api_key, version, spec.kind, data)


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[MessageSpec, int, bytes]:
    spec, version = draw(st.sampled_from(ALL_VERSIONS))
    assert spec.api_key is not None
    wire = bytearray(encode(spec.api_key, version, spec.kind, draw(message_values(spec, version))))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "ff"]))
        at = draw(st.integers(0, len(wire)))
        if op == "flip" and at < len(wire):
            wire[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del wire[at:]
        elif op == "insert":
            wire[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "ff" and at < len(wire):
            wire[at : at + 4] = b"\xff\xff\xff\x7f"
    return spec, version, bytes(wire)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_mutated())
def test_mutated_valid_messages_into_decode(case: tuple[MessageSpec, int, bytes]) -> None:
    spec, version, wire = case
    assert spec.api_key is not None
    try:
        value = decode(spec.api_key, version, spec.kind, wire)
    except ProtocolError:
        return
    # whatever decodes must survive a round trip (bytes may differ: any non-zero byte is
    # a true bool, as in Kafka, and re-encodes as 1)
    again = encode(spec.api_key, version, spec.kind, value)
    assert decode(spec.api_key, version, spec.kind, again) == value


# --- the connection ---------------------------------------------------------------------------


def _served_request_specs() -> list[tuple[MessageSpec, int]]:
    out = []
    for key, lo, hi in supported_versions():
        spec = message_spec(key, MessageKind.REQUEST)
        assert spec is not None
        out += [(spec, v) for v in range(lo, hi + 1)]
    return out


SERVED = _served_request_specs()


@st.composite
def _frame(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["valid", "valid", "truncated", "random", "size", "header"]))
    if kind in ("valid", "truncated"):
        spec, version = draw(st.sampled_from(SERVED))
        assert spec.api_key is not None
        value = draw(message_values(spec, version))
        frame = encode_request(spec.api_key, version, value, correlation_id=draw(st.integers(0, 9)))
        if kind == "truncated":
            frame = frame[: draw(st.integers(0, len(frame)))]
        return frame
    if kind == "random":
        return draw(st.binary(max_size=64))
    if kind == "size":  # a size prefix of any value, then a little of anything
        return struct.pack(">i", draw(st.integers(-(2**31), 2**31 - 1))) + draw(
            st.binary(max_size=16)
        )
    header = struct.pack(
        ">hhih",
        draw(st.integers(-(2**15), 2**15 - 1)),
        draw(st.integers(-(2**15), 2**15 - 1)),
        draw(st.integers(-(2**31), 2**31 - 1)),
        draw(st.integers(-2, 8)),
    ) + draw(st.binary(max_size=24))
    return struct.pack(">i", len(header)) + header


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(_frame(), max_size=5),
    cuts=st.lists(st.integers(1, 64), max_size=8),
    limit=st.sampled_from([16, 64, 512, 1 << 20]),
    eof=st.booleans(),
)
def test_hostile_streams_into_the_connection(
    frames: list[bytes], cuts: list[int], limit: int, eof: bool
) -> None:
    stream = b"".join(frames)
    conn = KafkaConnection(max_request_bytes=limit)
    chunks = []
    pos = 0
    for n in cuts:
        chunks.append(stream[pos : pos + n])
        pos += n
    chunks.append(stream[pos:])
    try:
        for chunk in chunks:
            if chunk:
                conn.feed(chunk)
            while isinstance(conn.next_request(), Request):
                pass
            # bounded: after draining, at most one incomplete request is buffered
            assert conn.buffered_bytes < limit + 4
        if eof:
            conn.feed(b"")
            assert conn.next_request() is Sentinel.CLOSED
    except ProtocolError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_streams_parse_completely(data: Any) -> None:
    cases = data.draw(st.lists(st.sampled_from(SERVED), min_size=1, max_size=4))
    values = []
    stream = b""
    for i, (spec, version) in enumerate(cases):
        assert spec.api_key is not None
        value = data.draw(message_values(spec, version))
        values.append(value)
        stream += encode_request(spec.api_key, version, value, correlation_id=i)
    cut = data.draw(st.integers(0, len(stream)))
    conn = KafkaConnection()
    got: list[Request] = []
    for chunk in (stream[:cut], stream[cut:]):
        if chunk:
            conn.feed(chunk)
        while isinstance(req := conn.next_request(), Request):
            got.append(req)
    assert [r.correlation_id for r in got] == list(range(len(cases)))
    assert [r.body for r in got] == values
    assert [(r.api_key, r.api_version) for r in got] == [
        (ApiKey(s.api_key or 0), v) for s, v in cases
    ]


# --- record batches ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_into_validate_batches(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        rec.validate_batches(data, check_records=True)


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), min_size=1, max_size=3))
def test_flipped_batches_never_escape(flips: list[tuple[int, int]]) -> None:
    buf = bytearray(
        rec.build_batch([rec.Record(key=b"k", value=b"v" * 20, headers=(("h", b"1"),))] * 3)
    )
    for at, bit in flips:
        buf[at % len(buf)] ^= 1 << bit
    try:
        for h in rec.iter_batches(buf, verify_crc=False):
            rec.decode_records(buf, h)
    except RemoteProtocolError:
        pass

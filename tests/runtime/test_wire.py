"""Node-to-node framing: round trips, partial feeds, and every kind of bad frame."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quorumdb.raft import Entry, Message, MessageType
from quorumdb.runtime.wire import (
    VERSION,
    Batch,
    FrameError,
    FrameReader,
    GroupMessage,
    Hello,
    encode_batch,
    encode_hello,
)


def _batch() -> list[GroupMessage]:
    m = Message(
        type=MessageType.APP,
        to=2,
        from_=1,
        term=3,
        index=7,
        log_term=2,
        commit=6,
        entries=[Entry(term=3, index=8, data=b"x" * 10)],
    )
    return [GroupMessage(group=4, message=m), GroupMessage(group=0, message=m)]


def test_hello_and_batch_round_trip() -> None:
    r = FrameReader()
    r.feed(encode_hello("c", 1) + encode_batch(_batch()))
    assert r.next_frame() == Hello(cluster="c", node_id=1)
    assert r.next_frame() == Batch(messages=_batch())
    assert r.next_frame() is None


@given(st.lists(st.integers(min_value=1, max_value=17), min_size=1, max_size=40))
def test_any_split_of_the_stream_yields_the_same_frames(cuts: list[int]) -> None:
    data = encode_hello("c", 1) + encode_batch(_batch()) * 3
    r = FrameReader()
    frames = []
    pos = 0
    for n in [*cuts, len(data)]:
        r.feed(data[pos : pos + n])
        pos += n
        while (f := r.next_frame()) is not None:
            frames.append(f)
    assert frames == [Hello(cluster="c", node_id=1), *[Batch(messages=_batch())] * 3]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (struct.pack("<I", 0), "outside"),
        (struct.pack("<I", 1 << 30), "outside"),
        (struct.pack("<I", 2) + bytes((VERSION + 1, 0)), "version"),
        (struct.pack("<I", 4) + bytes((VERSION,)) + b"\xc1\xc1\xc1", "undecodable"),
        (struct.pack("<I", 3) + bytes((VERSION,)) + b"\x92\x01", "undecodable"),
    ],
)
def test_bad_frames_raise_frame_error(raw: bytes, fragment: str) -> None:
    r = FrameReader()
    r.feed(raw)
    with pytest.raises(FrameError, match=fragment):
        r.next_frame()


def test_frame_size_limit_is_enforced_on_read() -> None:
    r = FrameReader(frame_bytes_max=64)
    r.feed(encode_batch(_batch() * 5))
    with pytest.raises(FrameError, match="outside"):
        r.next_frame()

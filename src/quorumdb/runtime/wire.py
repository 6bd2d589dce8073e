"""Node-to-node framing: `length u32 | version u8 | msgpack payload`, one codec, a size limit.

A connection opens with a `Hello` frame (who is dialling, for which cluster); every later
frame is a `Batch` of Raft messages, each tagged with the Raft group it belongs to, or a
`ServiceMessage`: an opaque body for a service on the peer (e.g. the Kafka backend's
leadership reports and segment fetches), named by its channel. Decoding
validates structure and types (msgspec); anything else, a wrong version, or a frame above
`FRAME_BYTES_MAX` raises `FrameError`, and the caller closes that connection. Nothing here
does I/O: `FrameReader` is fed bytes and yields frames (h11's shape).
"""

from __future__ import annotations

import struct

import msgspec

from quorumdb.errors import QuorumError
from quorumdb.raft.messages import Message

__all__ = [
    "FRAME_BYTES_MAX",
    "VERSION",
    "Batch",
    "FrameError",
    "FrameReader",
    "GroupMessage",
    "Hello",
    "ServiceMessage",
    "encode_batch",
    "encode_hello",
    "encode_service",
]

VERSION = 1
FRAME_BYTES_MAX = 64 << 20
_LEN = struct.Struct("<I")


class FrameError(QuorumError):
    """A peer sent something that is not a valid frame: close the connection."""


class Hello(msgspec.Struct, frozen=True, array_like=True, tag="hello"):
    cluster: str
    node_id: int


class GroupMessage(msgspec.Struct, frozen=True, array_like=True, gc=False):
    group: int
    message: Message


class Batch(msgspec.Struct, frozen=True, array_like=True, tag="batch"):
    messages: list[GroupMessage]


class ServiceMessage(msgspec.Struct, frozen=True, array_like=True, tag="svc"):
    channel: str
    body: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Hello | Batch | ServiceMessage)


def _frame(payload: bytes) -> bytes:
    n = len(payload) + 1
    if n > FRAME_BYTES_MAX:
        raise FrameError(f"frame of {n} bytes exceeds the {FRAME_BYTES_MAX}-byte limit")
    return _LEN.pack(n) + bytes((VERSION,)) + payload


def encode_hello(cluster: str, node_id: int) -> bytes:
    return _frame(_encoder.encode(Hello(cluster=cluster, node_id=node_id)))


def encode_batch(messages: list[GroupMessage]) -> bytes:
    return _frame(_encoder.encode(Batch(messages=messages)))


def encode_service(msg: ServiceMessage) -> bytes:
    return _frame(_encoder.encode(msg))


class FrameReader:
    """Buffers bytes from a stream and returns complete, decoded frames."""

    __slots__ = ("_buf", "frame_bytes_max")

    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX) -> None:
        self._buf = bytearray()
        self.frame_bytes_max = frame_bytes_max

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> Hello | Batch | ServiceMessage | None:
        """The next frame, or None if more bytes are needed. Raises FrameError."""
        buf = self._buf
        if len(buf) < _LEN.size:
            return None
        (n,) = _LEN.unpack_from(buf, 0)
        if n == 0 or n > self.frame_bytes_max:
            raise FrameError(f"frame length {n} outside 1..{self.frame_bytes_max}")
        end = _LEN.size + n
        if len(buf) < end:
            return None
        version = buf[_LEN.size]
        if version != VERSION:
            raise FrameError(f"unsupported frame version {version} (speaking {VERSION})")
        payload = bytes(buf[_LEN.size + 1 : end])
        del buf[:end]
        try:
            frame: Hello | Batch | ServiceMessage = _decoder.decode(payload)
        except msgspec.DecodeError as exc:
            raise FrameError(f"undecodable frame: {exc}") from None
        return frame

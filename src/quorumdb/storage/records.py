"""Record framing for logs on disk: `length u32 | type u8 | crc u32 | header_crc u32 | payload`.

`crc` is the CRC-32C of the type byte and the payload; `header_crc` covers the first nine
header bytes, so a damaged length is recognised as damage instead of being trusted (a garbage
length could otherwise make the valid records after it look like a torn tail). Recovery
(`decode_records`) distinguishes two cases that must be treated differently (STYLE.md §5.4,
DESIGN "Durability is never faked"):

- a *torn tail*: the last record is incomplete (a short header, or a payload running past the
  end of the file), or is the last thing in the file and fails its payload CRC. A crash during
  a write leaves this; the record was never acknowledged (acks follow fsync), so it is dropped
  and the file truncated there.
- *corruption*: a complete header fails its own CRC, or a record fails its payload CRC and more
  data follows it. That record may have been acknowledged; dropping it silently could lose
  data, so recovery stops with `CorruptRecordError` naming the file and the offset.

NB: a bit flip in the payload of the very last record is indistinguishable from a torn write
and is truncated; the simulator's corruption fault therefore never targets the last record.
"""

from __future__ import annotations

import struct
from enum import IntEnum

import crc32c

from quorumdb.errors import QuorumError

__all__ = [
    "HEADER_BYTES",
    "RECORD_BYTES_MAX",
    "CorruptRecordError",
    "RecordType",
    "decode_records",
    "encode_record",
]

_HEADER = struct.Struct("<IBII")
_HEADER_PREFIX = struct.Struct("<IBI")
HEADER_BYTES = _HEADER.size
RECORD_BYTES_MAX = 64 << 20
"""Largest payload a record may declare; anything larger is a damaged header."""


class RecordType(IntEnum):
    ENTRIES = 1
    HARD_STATE = 2
    SNAPSHOT = 3


class CorruptRecordError(QuorumError):
    """A record before the end of a file failed validation: refuse to start."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"corrupt record in {path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


def _crc(rtype: int, payload: bytes | memoryview) -> int:
    return crc32c.crc32c(payload, crc32c.crc32c(bytes((rtype,))))


def encode_record(rtype: RecordType, payload: bytes) -> bytes:
    """Frame one record."""
    assert len(payload) <= RECORD_BYTES_MAX, f"record of {len(payload)} bytes is too large"
    prefix = _HEADER_PREFIX.pack(len(payload), rtype, _crc(rtype, payload))
    return prefix + crc32c.crc32c(prefix).to_bytes(4, "little") + payload


def decode_records(
    data: bytes | bytearray, path: str
) -> tuple[list[tuple[RecordType, bytes]], int]:
    """Parse every valid record; return them and the length of the valid prefix.

    A torn tail ends the list (the caller truncates the file to the returned length);
    corruption before the tail raises `CorruptRecordError`.
    """
    out: list[tuple[RecordType, bytes]] = []
    view = memoryview(data)
    off = 0
    n = len(data)
    while off < n:
        if n - off < HEADER_BYTES:
            return out, off  # torn header at the tail
        length, rtype, crc, header_crc = _HEADER.unpack_from(view, off)
        if crc32c.crc32c(view[off : off + _HEADER_PREFIX.size]) != header_crc:
            raise CorruptRecordError(path, off, "header CRC mismatch")
        if length > RECORD_BYTES_MAX or rtype not in _TYPES:
            raise CorruptRecordError(path, off, f"bad header (length {length}, type {rtype})")
        end = off + HEADER_BYTES + length
        if end > n:
            return out, off  # torn payload at the tail
        payload = view[off + HEADER_BYTES : end]
        if _crc(rtype, payload) != crc:
            if end == n:
                return out, off  # the final record failed its CRC: a torn write
            raise CorruptRecordError(path, off, "CRC mismatch")
        out.append((RecordType(rtype), bytes(payload)))
        off = end
    return out, off


_TYPES = frozenset(int(t) for t in RecordType)

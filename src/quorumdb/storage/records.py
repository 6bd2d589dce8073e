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

`scan_records` is the variant for files that may be preallocated (the WAL's segments): the data
ends at an all-zero header (no valid record has one: type 0 does not exist and the header CRC
of zeros is not zero), and the torn/corrupt decision looks at what follows a damaged record
instead of at the end of the file. It also knows whether the file is *closed* (fully synced
before anything was written after it), in which case every damaged record is corruption.
"""

from __future__ import annotations

import struct
from enum import IntEnum

import crc32c

from quorumdb.storage.errors import DurableStateError

__all__ = [
    "HEADER_BYTES",
    "RECORD_BYTES_MAX",
    "CorruptRecordError",
    "RecordType",
    "decode_records",
    "encode_record",
    "read_record",
    "scan_records",
    "seal_record",
]

_HEADER = struct.Struct("<IBII")
_HEADER_PREFIX = struct.Struct("<IBI")
HEADER_BYTES = _HEADER.size
RECORD_BYTES_MAX = 64 << 20
"""Largest payload a record may declare; anything larger is a damaged header."""


class RecordType(IntEnum):
    """What a record's payload holds. 0 is never a type: an all-zero header is "no record".

    1-3 are the simulator's single-file log; the segmented WAL's types start at 16 so that
    the small numbers stay free (4-15 are invalid today, and tests rely on that).
    """

    ENTRIES = 1
    HARD_STATE = 2
    SNAPSHOT = 3
    SEGMENT_HEADER = 16  # first record of a WAL segment (`storage.wal`)
    BATCH = 17  # one `WAL.save`: every group's writes of one group commit (`storage.wal`)
    SNAPSHOT_FILE = 18  # header of a snapshot file (`storage.snapshots`)


class CorruptRecordError(DurableStateError):
    """A record that may have been acknowledged failed validation: refuse to start."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(
            path, reason, message=f"corrupt record in {path} at offset {offset}: {reason}"
        )
        self.offset = offset


def _crc(rtype: int, payload: bytes | memoryview) -> int:
    return crc32c.crc32c(payload, crc32c.crc32c(bytes((rtype,))))


def encode_record(rtype: RecordType, payload: bytes) -> bytes:
    """Frame one record."""
    assert len(payload) <= RECORD_BYTES_MAX, f"record of {len(payload)} bytes is too large"
    prefix = _HEADER_PREFIX.pack(len(payload), rtype, _crc(rtype, payload))
    return prefix + crc32c.crc32c(prefix).to_bytes(4, "little") + payload


def seal_record(buf: bytearray, start: int, rtype: RecordType) -> None:
    """Fill in the header of a record whose payload was encoded in place.

    `buf[start : start + HEADER_BYTES]` is reserved for the header and the payload runs from
    there to the end of `buf`. This lets a writer encode straight into its write buffer (one
    copy less than `encode_record` for large batches); the bytes are identical.
    """
    length = len(buf) - start - HEADER_BYTES
    assert 0 <= length <= RECORD_BYTES_MAX, f"record of {length} bytes is too large"
    view = memoryview(buf)
    _HEADER_PREFIX.pack_into(buf, start, length, rtype, _crc(rtype, view[start + HEADER_BYTES :]))
    prefix_end = start + _HEADER_PREFIX.size
    header_crc = crc32c.crc32c(view[start:prefix_end])
    view.release()
    buf[prefix_end : start + HEADER_BYTES] = header_crc.to_bytes(4, "little")


def read_record(
    data: bytes | bytearray, path: str, offset: int = 0
) -> tuple[RecordType, memoryview, int]:
    """Decode the one record at `offset` of a complete file; any damage is corruption.

    For files that are never torn (written to a temporary name, synced, then renamed), such
    as snapshots. Returns the type, the payload (a view into `data`) and the record's end.
    """
    view = memoryview(data)
    if len(data) - offset < HEADER_BYTES:
        raise CorruptRecordError(path, offset, "truncated header")
    length, rtype, crc, header_crc = _HEADER.unpack_from(view, offset)
    if crc32c.crc32c(view[offset : offset + _HEADER_PREFIX.size]) != header_crc:
        raise CorruptRecordError(path, offset, "header CRC mismatch")
    if length > RECORD_BYTES_MAX or rtype not in _TYPES:
        raise CorruptRecordError(path, offset, f"bad header (length {length}, type {rtype})")
    end = offset + HEADER_BYTES + length
    if end > len(data):
        raise CorruptRecordError(path, offset, "record runs past the end of the file")
    payload = view[offset + HEADER_BYTES : end]
    if _crc(rtype, payload) != crc:
        raise CorruptRecordError(path, offset, "CRC mismatch")
    return RecordType(rtype), payload, end


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
_ZERO_HEADER = bytes(HEADER_BYTES)


def _zeros_from(data: bytes | bytearray, off: int) -> bool:
    """True if every byte from `off` to the end is zero (C speed, no copy)."""
    return off >= len(data) or data.count(0, off) == len(data) - off


def scan_records(
    data: bytes | bytearray, path: str, *, start: int = 0, final: bool
) -> tuple[list[tuple[int, RecordType, memoryview]], int]:
    """Parse a possibly preallocated file: its (offset, type, payload) records and their end.

    The data ends at the end of the file or at an all-zero header, after which every byte
    must be zero. A damaged record (short or bad header, payload past the end of the file,
    payload CRC mismatch) is a torn tail only when `final` is set and nothing but zeros
    follows what the record occupies (its header, if the header cannot be trusted); the
    caller truncates the file at the returned end. Anything else raises `CorruptRecordError`
    with the record's offset. Payloads are views into `data` (no copies).

    Args:
        data: the whole file.
        path: the file's name, for errors.
        start: where the first record begins.
        final: the file may end in a torn write (it is the last one written and was perhaps
            not synced); False for closed files, all of whose records were synced.
    """
    out: list[tuple[int, RecordType, memoryview]] = []
    view = memoryview(data)
    off = start
    n = len(data)

    def damaged(
        reason: str, occupied_end: int
    ) -> tuple[list[tuple[int, RecordType, memoryview]], int]:
        if final and _zeros_from(data, occupied_end):
            return out, off
        raise CorruptRecordError(path, off, reason)

    while off < n:
        if n - off < HEADER_BYTES:
            if _zeros_from(data, off):
                return out, off  # preallocated zeros too short for a header
            return damaged("truncated header", n)
        if view[off : off + HEADER_BYTES] == _ZERO_HEADER:
            if not _zeros_from(data, off):
                raise CorruptRecordError(path, off, "zeroed header followed by data")
            return out, off
        length, rtype, crc, header_crc = _HEADER.unpack_from(view, off)
        if crc32c.crc32c(view[off : off + _HEADER_PREFIX.size]) != header_crc:
            return damaged("header CRC mismatch", off + HEADER_BYTES)
        if length > RECORD_BYTES_MAX or rtype not in _TYPES:
            raise CorruptRecordError(path, off, f"bad header (length {length}, type {rtype})")
        end = off + HEADER_BYTES + length
        if end > n:
            return damaged("record runs past the end of the file", n)
        payload = view[off + HEADER_BYTES : end]
        if _crc(rtype, payload) != crc:
            return damaged("CRC mismatch", end)
        out.append((off, RecordType(rtype), payload))
        off = end
    return out, off

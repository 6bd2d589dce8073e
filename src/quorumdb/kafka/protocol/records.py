"""Kafka record batches v2 (magic 2, KIP-98): validate, patch in place, build, read back.

The broker never decodes records on the produce or fetch path: it validates each batch's
61-byte header and CRC, patches what Kafka's broker patches, and stores the bytes as sent
(compressed batches included - they are never decompressed). Layout, big-endian:

    offset  field                 notes
     0  baseOffset            int64   assigned by the broker: `patch_base_offset`
     8  batchLength           int32   bytes after this field
    12  partitionLeaderEpoch  int32   stamped by the broker: `patch_partition_leader_epoch`
    16  magic                 int8    2
    17  crc                   uint32  CRC-32C of bytes [21, end) - attributes onwards
    21  attributes            int16   bits 0-2 compression, 3 timestamp type (1 = LogAppendTime),
                                      4 transactional, 5 control, 6 delete horizon
    23  lastOffsetDelta       int32
    27  baseTimestamp         int64
    35  maxTimestamp          int64
    43  producerId            int64
    51  producerEpoch         int16
    53  baseSequence          int32
    57  recordCount           int32
    61  records ...

Because the CRC starts at `attributes`, base offset and leader epoch can be patched without
recomputing it; switching to LogAppendTime (attributes + maxTimestamp) must recompute it.

Records inside an uncompressed batch (for tests and internal topics): length varint,
attributes int8, timestampDelta varlong, offsetDelta varint, key (varint length, -1 = null),
value (likewise), header count varint, then (key string, value bytes) pairs. A control batch
holds one control record: key = (version int16 0, type int16: 0 ABORT, 1 COMMIT), value =
(version int16 0, coordinatorEpoch int32).

All failures on input are `RemoteProtocolError(CORRUPT_MESSAGE)` (INVALID_RECORD for a
control batch sent by a producer), with a message saying which batch and what is wrong.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import crc32c as _crc32c

from quorumdb.kafka.protocol._varint import (
    VarintError,
    read_varint,
    read_varlong,
    varint_bytes,
)
from quorumdb.kafka.protocol.errors import ErrorCode, RemoteProtocolError

__all__ = [
    "BATCH_HEADER_BYTES",
    "LOG_OVERHEAD_BYTES",
    "BatchHeader",
    "Compression",
    "ControlRecordType",
    "DecodedRecord",
    "Record",
    "TimestampType",
    "build_batch",
    "build_control_batch",
    "crc_of",
    "decode_records",
    "iter_batches",
    "parse_control_record",
    "patch_base_offset",
    "patch_partition_leader_epoch",
    "read_batch_header",
    "set_log_append_time",
    "validate_batches",
]

_HEADER: Final = struct.Struct(">qiibIhiqqqhii")
BATCH_HEADER_BYTES: Final = _HEADER.size
LOG_OVERHEAD_BYTES: Final = 12  # baseOffset + batchLength: what batchLength does not count
_BATCH_LENGTH_MIN: Final = BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES
_CRC_AT: Final = 17
_ATTRIBUTES_AT: Final = 21
_MAX_TIMESTAMP_AT: Final = 35
_PARTITION_LEADER_EPOCH_AT: Final = 12
_MAGIC: Final = 2
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_I64: Final = struct.Struct(">q")
_U32: Final = struct.Struct(">I")
_CONTROL_KEY: Final = struct.Struct(">hh")
_CONTROL_VALUE: Final = struct.Struct(">hi")
_COMPRESSION_MASK: Final = 0x07
_TIMESTAMP_TYPE_BIT: Final = 0x08
_TRANSACTIONAL_BIT: Final = 0x10
_CONTROL_BIT: Final = 0x20
_INT32_MAX: Final = 0x7FFFFFFF


class Compression(IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(IntEnum):
    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class ControlRecordType(IntEnum):
    ABORT = 0
    COMMIT = 1


def crc_of(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli), as record batches v2 use it."""
    return _crc32c.crc32c(data)


def _corrupt(message: str, code: ErrorCode = ErrorCode.CORRUPT_MESSAGE) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=code)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchHeader:
    """The header of one v2 batch found at `position` of a buffer."""

    position: int
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size_bytes(self) -> int:
        return LOG_OVERHEAD_BYTES + self.batch_length

    @property
    def end(self) -> int:
        """Position just after this batch."""
        return self.position + self.size_bytes

    @property
    def compression(self) -> int:
        """The compression codec id (a `Compression` value for valid batches)."""
        return self.attributes & _COMPRESSION_MASK

    @property
    def timestamp_type(self) -> TimestampType:
        return TimestampType(1 if self.attributes & _TIMESTAMP_TYPE_BIT else 0)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def last_sequence(self) -> int:
        """Sequence of the last record (-1 without idempotence); wraps at int32 like Kafka."""
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) & _INT32_MAX


def read_batch_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the header of the batch at `pos`; checks sizes and magic, not the CRC.

    Raises:
        RemoteProtocolError: CORRUPT_MESSAGE for a truncated header, a batch length that is
            too small or runs past the buffer, or a magic other than 2.
    """
    left = len(buf) - pos
    if left < LOG_OVERHEAD_BYTES:
        raise _corrupt(f"batch at byte {pos}: {left} trailing bytes are not a batch")
    batch_length = _I32.unpack_from(buf, pos + 8)[0]
    if batch_length < _BATCH_LENGTH_MIN:
        raise _corrupt(f"batch at byte {pos}: batchLength {batch_length} is too small")
    if batch_length > left - LOG_OVERHEAD_BYTES:
        raise _corrupt(
            f"batch at byte {pos}: batchLength {batch_length} exceeds the "
            f"{left - LOG_OVERHEAD_BYTES} bytes left"
        )
    magic = buf[pos + 16]
    if magic != _MAGIC:
        raise _corrupt(f"batch at byte {pos}: magic {magic} (only v2 batches are accepted)")
    v = _HEADER.unpack_from(buf, pos)
    return BatchHeader(
        position=pos,
        base_offset=v[0],
        batch_length=v[1],
        partition_leader_epoch=v[2],
        magic=v[3],
        crc=v[4],
        attributes=v[5],
        last_offset_delta=v[6],
        base_timestamp=v[7],
        max_timestamp=v[8],
        producer_id=v[9],
        producer_epoch=v[10],
        base_sequence=v[11],
        record_count=v[12],
    )


def _check_crc(buf: bytes | bytearray | memoryview, h: BatchHeader) -> None:
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    actual = crc_of(view[h.position + _ATTRIBUTES_AT : h.end])
    if actual != h.crc:
        raise _corrupt(
            f"batch at byte {h.position}: CRC mismatch (stored {h.crc:#010x}, "
            f"computed {actual:#010x})"
        )


def iter_batches(
    buf: bytes | bytearray | memoryview, *, verify_crc: bool = True
) -> Iterator[BatchHeader]:
    """Walk the batches of `buf` (a produce payload or a log segment), back to back.

    Raises:
        RemoteProtocolError: CORRUPT_MESSAGE on the first bad batch or trailing bytes.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        h = read_batch_header(buf, pos)
        if verify_crc:
            _check_crc(buf, h)
        yield h
        pos = h.end


def validate_batches(
    data: bytes | bytearray | memoryview, *, check_records: bool = False
) -> list[BatchHeader]:
    """Validate a produce payload and return its batch headers.

    Checks, for every batch: sizes fit, magic 2, CRC-32C, a known compression codec,
    recordCount >= 1 and lastOffsetDelta == recordCount - 1, not a control batch (only
    coordinators write those); and that nothing trails the last batch. With
    `check_records`, uncompressed batches are also walked record by record (structure,
    count and offset deltas 0..n-1), as Kafka's LogValidator does.

    Raises:
        RemoteProtocolError: CORRUPT_MESSAGE (INVALID_RECORD for a control batch).
    """
    headers = []
    for h in iter_batches(data, verify_crc=True):
        where = f"batch at byte {h.position}"
        if h.compression > Compression.ZSTD:
            raise _corrupt(f"{where}: unknown compression codec {h.compression}")
        if h.record_count < 1:
            raise _corrupt(f"{where}: recordCount {h.record_count} (must be >= 1)")
        if h.last_offset_delta != h.record_count - 1:
            raise _corrupt(
                f"{where}: lastOffsetDelta {h.last_offset_delta} does not match "
                f"recordCount {h.record_count}"
            )
        if h.is_control:
            raise _corrupt(
                f"{where}: producers may not send control batches", ErrorCode.INVALID_RECORD
            )
        if (
            check_records
            and h.compression == Compression.NONE
            and not _records_well_formed(data, h)
        ):
            # The fast walk found something wrong (or could not decide): the full decode
            # says what, or accepts the batch after all.
            records = decode_records(data, h)
            for i, r in enumerate(records):
                if r.offset != h.base_offset + i:
                    raise _corrupt(
                        f"{where}: record {i} has offset delta {r.offset - h.base_offset}"
                    )
        headers.append(h)
    return headers


def _records_well_formed(data: bytes | bytearray | memoryview, h: BatchHeader) -> bool:
    """True if every record of the uncompressed batch `h` is well formed with offset deltas
    0..n-1, exactly what `decode_records` plus the offset check accept; False when in doubt.

    The produce hot path: a librdkafka batch holds up to 10,000 records, and decoding them
    into objects blocked the event loop for hundreds of milliseconds (long enough for Raft
    elections to fire). This walk builds nothing and reads varints inline (one- and two-byte
    fast paths); anything unusual (record headers, long varints, any error) returns False
    and is left to the full decode, which accepts it or says what is wrong.
    """
    buf = bytes(data[h.position + BATCH_HEADER_BYTES : h.end])
    end = len(buf)
    pos = 0
    n = 0
    try:
        while pos < end:
            # length (zigzag varint)
            raw = buf[pos]
            if raw < 0x80:
                pos += 1
            elif buf[pos + 1] < 0x80:
                raw = (raw & 0x7F) | (buf[pos + 1] << 7)
                pos += 2
            else:
                return False
            rec_end = pos + ((raw >> 1) ^ -(raw & 1))
            if rec_end < pos or rec_end > end:
                return False
            # attributes, then timestampDelta (varlong; up to 2 bytes here)
            if buf[pos + 1] < 0x80:
                pos += 2
            elif buf[pos + 2] < 0x80:
                pos += 3
            else:
                return False
            # offsetDelta (varint) must be the record's index
            raw = buf[pos]
            if raw < 0x80:
                pos += 1
            elif buf[pos + 1] < 0x80:
                raw = (raw & 0x7F) | (buf[pos + 1] << 7)
                pos += 2
            elif buf[pos + 2] < 0x80:
                raw = (raw & 0x7F) | ((buf[pos + 1] & 0x7F) << 7) | (buf[pos + 2] << 14)
                pos += 3
            else:
                return False
            if (raw >> 1) ^ -(raw & 1) != n:
                return False
            # key, then value: null (-1) or a length within the record
            raw = buf[pos]
            if raw < 0x80:
                pos += 1
            elif buf[pos + 1] < 0x80:
                raw = (raw & 0x7F) | (buf[pos + 1] << 7)
                pos += 2
            else:
                return False
            if raw != 1:  # 1 is zigzag(-1), a null key
                if raw & 1:
                    return False
                pos += raw >> 1
            raw = buf[pos]
            if raw < 0x80:
                pos += 1
            elif buf[pos + 1] < 0x80:
                raw = (raw & 0x7F) | (buf[pos + 1] << 7)
                pos += 2
            else:
                return False
            if raw != 1:
                if raw & 1:
                    return False
                pos += raw >> 1
            # no record headers (a zero count) and nothing left over
            if pos + 1 != rec_end or buf[pos] != 0:
                return False
            pos = rec_end
            n += 1
    except IndexError:
        return False
    return n == h.record_count


# --- patching in place ------------------------------------------------------------------------


def patch_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    """Set the baseOffset of the batch at `pos` (the CRC does not cover it)."""
    _I64.pack_into(buf, pos, base_offset)


def patch_partition_leader_epoch(buf: bytearray | memoryview, pos: int, epoch: int) -> None:
    """Set the partitionLeaderEpoch of the batch at `pos` (the CRC does not cover it)."""
    _I32.pack_into(buf, pos + _PARTITION_LEADER_EPOCH_AT, epoch)


def set_log_append_time(buf: bytearray | memoryview, pos: int, timestamp_ms: int) -> None:
    """Switch the batch at `pos` to LogAppendTime: maxTimestamp + attribute bit, new CRC.

    The records' own timestamps stay as sent; with LogAppendTime, consumers take every
    record's timestamp from the batch's maxTimestamp (Kafka does the same).
    """
    h = read_batch_header(buf, pos)
    _I16.pack_into(buf, pos + _ATTRIBUTES_AT, h.attributes | _TIMESTAMP_TYPE_BIT)
    _I64.pack_into(buf, pos + _MAX_TIMESTAMP_AT, timestamp_ms)
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    _U32.pack_into(buf, pos + _CRC_AT, crc_of(view[pos + _ATTRIBUTES_AT : h.end]))


# --- building batches -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """A record to put into a batch built by `build_batch`."""

    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedRecord:
    """A record read back from an uncompressed batch (absolute offset and timestamp)."""

    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


def _varbytes(b: bytes | None) -> bytes:
    return varint_bytes(-1) if b is None else varint_bytes(len(b)) + b


def _encode_record(r: Record, offset_delta: int, base_timestamp: int) -> bytes:
    body = bytearray(b"\x00")  # attributes: unused, always 0
    body += varint_bytes(r.timestamp_ms - base_timestamp)
    body += varint_bytes(offset_delta)
    body += _varbytes(r.key)
    body += _varbytes(r.value)
    body += varint_bytes(len(r.headers))
    for hkey, hvalue in r.headers:
        body += _varbytes(hkey.encode("utf-8"))
        body += _varbytes(hvalue)
    return varint_bytes(len(body)) + bytes(body)


def _seal(
    records: bytes,
    *,
    count: int,
    attributes: int,
    base_offset: int,
    partition_leader_epoch: int,
    base_timestamp: int,
    max_timestamp: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
) -> bytes:
    header = bytearray(
        _HEADER.pack(
            base_offset,
            BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + len(records),
            partition_leader_epoch,
            _MAGIC,
            0,  # crc, filled below
            attributes,
            count - 1,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            count,
        )
    )
    crc = _crc32c.crc32c(records, _crc32c.crc32c(header[_ATTRIBUTES_AT:]))
    _U32.pack_into(header, _CRC_AT, crc)
    return bytes(header) + records


def build_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    partition_leader_epoch: int = -1,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
) -> bytes:
    """An uncompressed v2 batch holding `records` (offset deltas 0..n-1).

    Used by tests and by the broker for its internal topics. Timestamps come from the
    records (no clock is read here); the batch's base/max timestamps are their min/max.
    """
    if not records:
        raise ValueError("a record batch needs at least one record")
    base_timestamp = min(r.timestamp_ms for r in records)
    body = b"".join(_encode_record(r, i, base_timestamp) for i, r in enumerate(records))
    attributes = _TRANSACTIONAL_BIT if is_transactional else 0
    if timestamp_type is TimestampType.LOG_APPEND_TIME:
        attributes |= _TIMESTAMP_TYPE_BIT
    return _seal(
        body,
        count=len(records),
        attributes=attributes,
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        base_timestamp=base_timestamp,
        max_timestamp=max(r.timestamp_ms for r in records),
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
    )


def build_control_batch(
    control_type: ControlRecordType,
    *,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp_ms: int,
    base_offset: int = 0,
    partition_leader_epoch: int = -1,
) -> bytes:
    """A transaction marker: a transactional control batch with one COMMIT/ABORT record."""
    record = Record(
        key=_CONTROL_KEY.pack(0, control_type),
        value=_CONTROL_VALUE.pack(0, coordinator_epoch),
        timestamp_ms=timestamp_ms,
    )
    return _seal(
        _encode_record(record, 0, timestamp_ms),
        count=1,
        attributes=_TRANSACTIONAL_BIT | _CONTROL_BIT,
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        base_timestamp=timestamp_ms,
        max_timestamp=timestamp_ms,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=-1,
    )


# --- reading records back ---------------------------------------------------------------------


def _read_varbytes(buf: memoryview, pos: int, end: int) -> tuple[bytes | None, int]:
    n, pos = read_varint(buf, pos)
    if n < 0:
        if n != -1:
            raise _corrupt(f"invalid length {n}")
        return None, pos
    if pos + n > end:
        raise _corrupt(f"length {n} runs past the record")
    return bytes(buf[pos : pos + n]), pos + n


def _read_record(view: memoryview, pos: int, h: BatchHeader) -> tuple[DecodedRecord, int]:
    length, pos = read_varint(view, pos)
    end = pos + length
    if length < 0 or end > h.end:
        raise _corrupt(f"record length {length} runs past the batch")
    pos += 1  # attributes: unused
    ts_delta, pos = read_varlong(view, pos)
    offset_delta, pos = read_varint(view, pos)
    key, pos = _read_varbytes(view, pos, end)
    value, pos = _read_varbytes(view, pos, end)
    n_headers, pos = read_varint(view, pos)
    if not 0 <= n_headers <= end - pos:
        raise _corrupt(f"record header count {n_headers}")
    headers = []
    for _ in range(n_headers):
        hkey, pos = _read_varbytes(view, pos, end)
        if hkey is None:
            raise _corrupt("null record header key")
        hvalue, pos = _read_varbytes(view, pos, end)
        headers.append((hkey.decode("utf-8"), hvalue))
    if pos != end:
        raise _corrupt(f"record declares {length} bytes but holds {length - (end - pos)}")
    timestamp = (
        h.max_timestamp
        if h.timestamp_type is TimestampType.LOG_APPEND_TIME
        else (h.base_timestamp + ts_delta)
    )
    record = DecodedRecord(
        offset=h.base_offset + offset_delta,
        timestamp_ms=timestamp,
        key=key,
        value=value,
        headers=tuple(headers),
    )
    return record, end


def decode_records(buf: bytes | bytearray | memoryview, header: BatchHeader) -> list[DecodedRecord]:
    """The records of an uncompressed batch (tests, internal topics, control markers).

    Raises:
        RemoteProtocolError: CORRUPT_MESSAGE for a compressed batch, malformed records, or a
            record count that disagrees with the header.
    """
    where = f"batch at byte {header.position}"
    if header.compression != Compression.NONE:
        raise _corrupt(f"{where}: compressed batches are not decoded here")
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    view = view[: header.end]
    pos = header.position + BATCH_HEADER_BYTES
    out = []
    try:
        while pos < header.end:
            record, pos = _read_record(view, pos, header)
            out.append(record)
    except (VarintError, IndexError, UnicodeDecodeError) as e:
        raise _corrupt(f"{where}: record {len(out)}: {e}") from None
    except RemoteProtocolError as e:
        raise _corrupt(f"{where}: record {len(out)}: {e.message}") from None
    if len(out) != header.record_count:
        raise _corrupt(f"{where}: holds {len(out)} records, header says {header.record_count}")
    return out


def parse_control_record(record: DecodedRecord) -> tuple[ControlRecordType, int]:
    """(COMMIT or ABORT, coordinator epoch) of a transaction marker's control record.

    Raises:
        RemoteProtocolError: CORRUPT_MESSAGE if it is not a version-0 control record.
    """
    if record.key is None or len(record.key) != _CONTROL_KEY.size:
        raise _corrupt("control record key is not 4 bytes")
    version, kind = _CONTROL_KEY.unpack(record.key)
    if version != 0 or kind not in (ControlRecordType.ABORT, ControlRecordType.COMMIT):
        raise _corrupt(f"control record version {version} type {kind} is unknown")
    if record.value is None or len(record.value) < _CONTROL_VALUE.size:
        raise _corrupt("control record value is shorter than 6 bytes")
    _, coordinator_epoch = _CONTROL_VALUE.unpack_from(record.value)
    return ControlRecordType(kind), coordinator_epoch

"""Durable state: record framing shared by the WAL and the simulator's disk model."""

from quorumdb.storage.records import (
    HEADER_BYTES,
    CorruptRecordError,
    RecordType,
    decode_records,
    encode_record,
)

__all__ = [
    "HEADER_BYTES",
    "CorruptRecordError",
    "RecordType",
    "decode_records",
    "encode_record",
]

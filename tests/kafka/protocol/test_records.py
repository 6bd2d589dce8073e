"""Record batches v2: validation (sizes, magic, CRC-32C, counts), in-place patches, builders."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quorumdb.kafka.protocol import ErrorCode, RemoteProtocolError
from quorumdb.kafka.protocol import records as rec

_ATTRIBUTES_AT = 21


def _batch(n: int = 3, **kw: int | bool) -> bytes:
    records = [
        rec.Record(key=b"k%d" % i, value=b"v%d" % i, timestamp_ms=1000 + i, headers=(("h", b"x"),))
        for i in range(n)
    ]
    return rec.build_batch(records, **kw)  # type: ignore[arg-type]


def _reseal(buf: bytearray, pos: int = 0) -> None:
    """Recompute the CRC after a deliberate edit, so that a later check is the one to fire."""
    end = pos + 12 + struct.unpack_from(">i", buf, pos + 8)[0]
    struct.pack_into(">I", buf, pos + 17, rec.crc_of(bytes(buf[pos + _ATTRIBUTES_AT : end])))


def _corrupt(
    data: bytes | bytearray, match: str, code: ErrorCode = ErrorCode.CORRUPT_MESSAGE
) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        rec.validate_batches(data, check_records=True)
    assert info.value.code is code


def test_header_fields() -> None:
    data = _batch(
        3,
        base_offset=10,
        producer_id=4,
        producer_epoch=2,
        base_sequence=7,
        is_transactional=True,
        partition_leader_epoch=5,
    )
    (h,) = rec.validate_batches(data)
    assert (h.base_offset, h.last_offset, h.next_offset, h.record_count) == (10, 12, 13, 3)
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.last_sequence) == (4, 2, 7, 9)
    assert (h.base_timestamp, h.max_timestamp, h.partition_leader_epoch) == (1000, 1002, 5)
    assert h.is_transactional and not h.is_control
    assert h.compression == rec.Compression.NONE
    assert h.timestamp_type is rec.TimestampType.CREATE_TIME
    assert (h.magic, h.size_bytes, h.end) == (2, len(data), len(data))


def test_last_sequence_wraps_like_kafka() -> None:
    (h,) = rec.validate_batches(_batch(3, producer_id=1, base_sequence=2**31 - 2))
    assert h.last_sequence == 0
    (h,) = rec.validate_batches(_batch(3))
    assert h.last_sequence == -1


@given(
    st.lists(
        st.tuples(
            st.none() | st.binary(max_size=20),
            st.none() | st.binary(max_size=20),
            st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=5)), max_size=2),
            st.integers(0, 2**40),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 2**40),
)
def test_build_then_decode_round_trip(
    items: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]],
    base_offset: int,
) -> None:
    records = [rec.Record(key=k, value=v, headers=tuple(h), timestamp_ms=t) for k, v, h, t in items]
    data = rec.build_batch(records, base_offset=base_offset)
    (h,) = rec.validate_batches(data, check_records=True)
    got = rec.decode_records(data, h)
    assert [(r.offset, r.key, r.value, list(r.headers), r.timestamp_ms) for r in got] == [
        (base_offset + i, k, v, h_, t) for i, (k, v, h_, t) in enumerate(items)
    ]


def test_several_batches_back_to_back() -> None:
    data = _batch(2) + _batch(1) + _batch(4)
    assert [h.record_count for h in rec.validate_batches(data)] == [2, 1, 4]
    assert [h.position for h in rec.iter_batches(data)] == [
        0,
        len(_batch(2)),
        len(_batch(2)) + len(_batch(1)),
    ]


def test_empty_payload_has_no_batches() -> None:
    assert rec.validate_batches(b"") == []


@pytest.mark.parametrize("at", range(_ATTRIBUTES_AT, len(_batch(1))))
def test_any_flipped_byte_under_the_crc_is_corrupt(at: int) -> None:
    data = bytearray(_batch(1))
    data[at] ^= 0x40
    _corrupt(data, "CRC mismatch")


@pytest.mark.parametrize("at", [*range(0, 8), *range(12, 16)])
def test_base_offset_and_leader_epoch_are_outside_the_crc(at: int) -> None:
    data = bytearray(_batch(1))
    data[at] ^= 0x40
    rec.validate_batches(data)


def test_tampered_crc_field_is_corrupt() -> None:
    data = bytearray(_batch(1))
    data[18] ^= 1
    _corrupt(data, "CRC mismatch")


def test_size_and_magic_errors() -> None:
    data = _batch(1)
    _corrupt(data[:11], "11 trailing bytes are not a batch")
    _corrupt(data[:-1], r"batchLength \d+ exceeds the \d+ bytes left")
    _corrupt(data + b"\x00" * 5, "5 trailing bytes")
    small = bytearray(data)
    struct.pack_into(">i", small, 8, 48)
    _corrupt(small, "batchLength 48 is too small")
    for magic in (0, 1, 3):
        bad = bytearray(data)
        bad[16] = magic
        _corrupt(bad, f"magic {magic}")


def test_count_and_delta_must_agree() -> None:
    bad = bytearray(_batch(3))
    struct.pack_into(">i", bad, 57, 4)  # recordCount
    _reseal(bad)
    _corrupt(bad, "lastOffsetDelta 2 does not match recordCount 4")
    empty = bytearray(_batch(1))
    struct.pack_into(">i", empty, 57, 0)
    struct.pack_into(">i", empty, 23, -1)
    _reseal(empty)
    _corrupt(empty, r"recordCount 0 \(must be >= 1\)")


def test_record_walk_finds_a_count_the_header_lies_about() -> None:
    bad = bytearray(_batch(3))
    struct.pack_into(">i", bad, 57, 2)  # recordCount 2 ...
    struct.pack_into(">i", bad, 23, 1)  # ... consistent with lastOffsetDelta
    _reseal(bad)
    rec.validate_batches(bad)  # header-only validation cannot see it
    _corrupt(bad, "holds 3 records, header says 2")


def test_unknown_compression_codec() -> None:
    bad = bytearray(_batch(1))
    bad[22] |= 0x07
    _reseal(bad)
    _corrupt(bad, "unknown compression codec 7")


def test_producers_may_not_send_control_batches() -> None:
    marker = rec.build_control_batch(
        rec.ControlRecordType.COMMIT,
        producer_id=1,
        producer_epoch=0,
        coordinator_epoch=0,
        timestamp_ms=0,
    )
    _corrupt(marker, "control batches", ErrorCode.INVALID_RECORD)
    (h,) = list(rec.iter_batches(marker))  # ... but the log reads them fine
    assert h.is_control and h.is_transactional


def test_control_markers() -> None:
    for kind in rec.ControlRecordType:
        data = rec.build_control_batch(
            kind,
            producer_id=9,
            producer_epoch=3,
            coordinator_epoch=17,
            timestamp_ms=55,
            base_offset=8,
        )
        (h,) = list(rec.iter_batches(data))
        assert (h.producer_id, h.producer_epoch, h.base_offset, h.record_count) == (9, 3, 8, 1)
        (record,) = rec.decode_records(data, h)
        assert rec.parse_control_record(record) == (kind, 17)
        assert record.timestamp_ms == 55


def test_bad_control_records() -> None:
    with pytest.raises(RemoteProtocolError, match="not 4 bytes"):
        rec.parse_control_record(rec.DecodedRecord(offset=0, timestamp_ms=0, key=b"x", value=None))
    with pytest.raises(RemoteProtocolError, match="type 7 is unknown"):
        rec.parse_control_record(
            rec.DecodedRecord(offset=0, timestamp_ms=0, key=b"\x00\x00\x00\x07", value=b"\x00" * 6)
        )
    with pytest.raises(RemoteProtocolError, match="shorter than 6"):
        rec.parse_control_record(
            rec.DecodedRecord(offset=0, timestamp_ms=0, key=b"\x00\x00\x00\x01", value=b"")
        )


def test_patch_base_offset_and_epoch_keep_the_crc_valid() -> None:
    data = bytearray(_batch(2) + _batch(3))
    second = len(_batch(2))
    rec.patch_base_offset(data, 0, 500)
    rec.patch_base_offset(data, second, 502)
    rec.patch_partition_leader_epoch(data, second, 9)
    h1, h2 = rec.validate_batches(data, check_records=True)
    assert (h1.base_offset, h2.base_offset, h2.partition_leader_epoch) == (500, 502, 9)
    assert [r.offset for r in rec.decode_records(data, h2)] == [502, 503, 504]


def test_patches_work_through_a_memoryview() -> None:
    data = bytearray(_batch(1))
    rec.patch_base_offset(memoryview(data), 0, 7)
    assert rec.read_batch_header(data).base_offset == 7


def test_log_append_time_rewrites_max_timestamp_and_crc() -> None:
    data = bytearray(_batch(3))
    before = rec.read_batch_header(data).crc
    rec.set_log_append_time(data, 0, 9_999)
    (h,) = rec.validate_batches(data, check_records=True)
    assert h.crc != before
    assert h.timestamp_type is rec.TimestampType.LOG_APPEND_TIME
    assert h.max_timestamp == 9_999
    assert [r.timestamp_ms for r in rec.decode_records(data, h)] == [9_999] * 3


def test_compressed_batches_are_validated_but_not_decoded() -> None:
    data = bytearray(_batch(2))
    data[22] |= rec.Compression.ZSTD  # header claims zstd; bytes stay as sent
    _reseal(data)
    (h,) = rec.validate_batches(data, check_records=True)
    assert h.compression == rec.Compression.ZSTD
    with pytest.raises(RemoteProtocolError, match="compressed batches are not decoded"):
        rec.decode_records(data, h)


def test_malformed_records_inside_a_valid_crc() -> None:
    data = bytearray(_batch(1))
    data[61] = 0x7E  # first record's length varint: 63 bytes, past the batch
    _reseal(data)
    _corrupt(data, "record 0: record length 63 runs past the batch")


def test_build_batch_needs_records() -> None:
    with pytest.raises(ValueError, match="at least one record"):
        rec.build_batch([])


def _accepted_by_full_decode(data: bytes, h: rec.BatchHeader) -> bool:
    try:
        records = rec.decode_records(data, h)
    except RemoteProtocolError:
        return False
    return all(r.offset == h.base_offset + i for i, r in enumerate(records))


@given(
    values=st.lists(st.one_of(st.none(), st.binary(max_size=300)), min_size=1, max_size=80),
    keyed=st.booleans(),
    edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=3),
)
def test_fast_record_walk_accepts_only_what_the_full_decode_accepts(
    values: list[bytes | None], keyed: bool, edits: list[tuple[int, int]]
) -> None:
    records = [
        rec.Record(key=b"k%d" % i if keyed else None, value=v, timestamp_ms=1000 + 7 * i)
        for i, v in enumerate(values)
    ]
    data = bytearray(rec.build_batch(records))
    for at, byte in edits:
        data[61 + at % (len(data) - 61)] = byte
    (h,) = rec.iter_batches(data, verify_crc=False)
    fast = rec._records_well_formed(bytes(data), h)
    assert fast <= _accepted_by_full_decode(bytes(data), h)
    if not edits:
        assert fast


def test_fast_record_walk_on_a_large_producer_batch() -> None:
    records = [rec.Record(value=bytes(100), timestamp_ms=i // 100) for i in range(10_000)]
    data = rec.build_batch(records, producer_id=1, producer_epoch=0, base_sequence=0)
    (h,) = rec.iter_batches(data)
    assert rec._records_well_formed(data, h)
    bad = bytearray(data)
    struct.pack_into(">i", bad, 57, 9_999)  # recordCount one short ...
    struct.pack_into(">i", bad, 23, 9_998)  # ... consistent with lastOffsetDelta
    _reseal(bad)
    _corrupt(bad, "holds 10000 records, header says 9999")

"""WAL record framing: the round-trip table, torn tails versus corruption, and a WAL model.

`decode_records` must keep two cases apart (see `storage/records.py`): a torn tail (a crash
during a write; dropped and truncated) and corruption (a damaged record with data after it;
recovery refuses). The property tests cut, flip and extend encoded files; the state machine
drives a WAL on `SimDisk` through appends, syncs, crashes and corruption and checks what
recovery gives back against a list of what was written.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from quorumdb.errors import QuorumError
from quorumdb.sim.disk import WAL_DIR, SimDisk
from quorumdb.storage.records import (
    HEADER_BYTES,
    RECORD_BYTES_MAX,
    CorruptRecordError,
    RecordType,
    decode_records,
    encode_record,
)

PATH = "n1/wal"

Record = tuple[RecordType, bytes]

records_st = st.tuples(st.sampled_from(RecordType), st.binary(max_size=40))
files_st = st.lists(records_st, min_size=1, max_size=6)

FAST = settings(max_examples=60, derandomize=True, deadline=None)


def _crc32c_reference(data: bytes) -> int:
    # A bit-at-a-time CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): a dumb
    # alternative implementation to check the framing against, independent of `crc32c`.
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _encode_all(records: list[Record]) -> tuple[bytes, list[int]]:
    """The file and the start offset of every record, then the end of the file."""
    data = b""
    starts = [0]
    for rtype, payload in records:
        data += encode_record(rtype, payload)
        starts.append(len(data))
    return data, starts


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# -- round trip ------------------------------------------------------------------------------

ROUND_TRIP = [
    # (type, payload, encoded bytes as hex: length | type | crc | header_crc | payload)
    (RecordType.ENTRIES, b"raft", "0400000001dc9ed28b061f71d572616674"),
    (RecordType.HARD_STATE, b"", "0000000002a62346b35155f0b6"),
    (RecordType.SNAPSHOT, b"\x00", None),
    (RecordType.ENTRIES, bytes(range(256)) * 300, None),
]


@pytest.mark.parametrize(("rtype", "payload", "encoded_hex"), ROUND_TRIP)
def test_round_trip(rtype: RecordType, payload: bytes, encoded_hex: str | None) -> None:
    encoded = encode_record(rtype, payload)
    if encoded_hex is not None:
        assert encoded.hex() == encoded_hex
    assert len(encoded) == HEADER_BYTES + len(payload)
    length, type_byte, crc, header_crc = struct.unpack_from("<IBII", encoded)
    assert length == len(payload)
    assert type_byte == rtype
    assert crc == _crc32c_reference(bytes((rtype,)) + payload)
    assert header_crc == _crc32c_reference(encoded[:9])
    assert encoded[HEADER_BYTES:] == payload
    assert decode_records(encoded, PATH) == ([(rtype, payload)], len(encoded))


def test_reference_crc_matches_the_published_check_value() -> None:
    assert _crc32c_reference(b"123456789") == 0xE3069283


def test_the_whole_table_decodes_as_one_file_in_order() -> None:
    records = [(rtype, payload) for rtype, payload, _ in ROUND_TRIP]
    data, starts = _encode_all(records)
    decoded, valid = decode_records(data, PATH)
    assert decoded == records
    assert valid == starts[-1] == len(data)
    assert all(isinstance(t, RecordType) for t, _ in decoded)


def test_an_empty_file_has_no_records() -> None:
    assert decode_records(b"", PATH) == ([], 0)
    assert decode_records(bytearray(), PATH) == ([], 0)


def test_corrupt_record_error_names_path_and_offset() -> None:
    err = CorruptRecordError("n3/wal", 42, "CRC mismatch")
    assert isinstance(err, QuorumError)
    assert (err.path, err.offset, err.reason) == ("n3/wal", 42, "CRC mismatch")
    assert str(err) == "corrupt record in n3/wal at offset 42: CRC mismatch"


# -- (a) truncation is a torn tail ------------------------------------------------------------


@FAST
@given(files_st)
def test_a_file_cut_at_any_offset_keeps_exactly_the_records_before_the_cut(
    records: list[Record],
) -> None:
    data, starts = _encode_all(records)
    for cut in range(len(data) + 1):
        whole = sum(1 for end in starts[1:] if end <= cut)
        decoded, valid = decode_records(data[:cut], PATH)
        assert decoded == records[:whole], f"cut at {cut}"
        assert valid == starts[whole], f"cut at {cut}"


# -- (b) a flipped bit before the last record is corruption -----------------------------------


@FAST
@given(st.lists(records_st, min_size=2, max_size=6), st.data())
def test_a_flipped_bit_in_any_record_but_the_last_is_corruption_at_its_offset(
    records: list[Record], data: st.DataObject
) -> None:
    encoded, starts = _encode_all(records)
    victim = data.draw(st.integers(0, len(records) - 2), label="victim")
    bit = data.draw(st.integers(starts[victim] * 8, starts[victim + 1] * 8 - 1), label="bit")
    with pytest.raises(CorruptRecordError) as err:
        decode_records(_flip(encoded, bit), PATH)
    assert err.value.offset == starts[victim]
    assert err.value.path == PATH


# -- (c) the last record: payload damage looks torn, header damage is corruption ------------


@FAST
@given(
    st.lists(records_st, max_size=5),
    st.tuples(st.sampled_from(RecordType), st.binary(min_size=1, max_size=40)),
    st.data(),
)
def test_a_flipped_bit_in_the_last_records_payload_is_treated_as_a_torn_tail(
    before: list[Record], last: Record, data: st.DataObject
) -> None:
    # NB in records.py: such a flip is indistinguishable from a torn write, so the record is
    # dropped (and the simulator's corruption fault never targets the last record).
    encoded, starts = _encode_all([*before, last])
    lo = starts[-2]
    bit = data.draw(st.integers((lo + HEADER_BYTES) * 8, len(encoded) * 8 - 1), label="bit")
    assert decode_records(_flip(encoded, bit), PATH) == (before, lo)


@FAST
@given(st.lists(records_st, min_size=1, max_size=5), st.integers(0, HEADER_BYTES * 8 - 1))
def test_a_flipped_bit_in_the_last_records_header_is_corruption(
    records: list[Record], bit: int
) -> None:
    # The header CRC covers length, type and the payload CRC, so even the last record's
    # header is checked before anything in it is trusted.
    encoded, starts = _encode_all(records)
    lo = starts[-2]
    with pytest.raises(CorruptRecordError) as err:
        decode_records(_flip(encoded, lo * 8 + bit), PATH)
    assert err.value.offset == lo
    assert err.value.reason == "header CRC mismatch"


# -- (d) bytes after the valid records --------------------------------------------------------


@FAST
@given(files_st, st.binary(min_size=1, max_size=HEADER_BYTES - 1))
def test_a_partial_header_after_valid_records_is_a_torn_tail(
    records: list[Record], garbage: bytes
) -> None:
    data, starts = _encode_all(records)
    assert decode_records(data + garbage, PATH) == (records, starts[-1])


@FAST
@given(files_st, records_st, st.data())
def test_a_complete_header_with_a_short_payload_is_a_torn_tail(
    records: list[Record], torn: Record, data: st.DataObject
) -> None:
    encoded, starts = _encode_all(records)
    tail = encode_record(*torn)
    keep = data.draw(st.integers(HEADER_BYTES, len(tail) - 1), label="keep") if torn[1] else 0
    assert decode_records(encoded + tail[:keep], PATH) == (records, starts[-1])


@FAST
@given(files_st, st.binary(min_size=HEADER_BYTES, max_size=40))
def test_a_complete_garbage_header_after_valid_records_is_corruption(
    records: list[Record], garbage: bytes
) -> None:
    assume(_crc32c_reference(garbage[:9]) != int.from_bytes(garbage[9:13], "little"))
    data, starts = _encode_all(records)
    with pytest.raises(CorruptRecordError) as err:
        decode_records(data + garbage, PATH)
    assert err.value.offset == starts[-1]


# -- (e) the header CRC protects the length ---------------------------------------------------


@FAST
@given(st.lists(records_st, min_size=2, max_size=6), st.integers(0, 2**32 - 1))
def test_a_damaged_length_is_caught_by_the_header_crc(
    records: list[Record], new_length: int
) -> None:
    # Without the header CRC a longer length would run past the end of the file and make
    # every later (acknowledged) record look like a torn tail.
    data, _ = _encode_all(records)
    assume(new_length != len(records[0][1]))
    damaged = new_length.to_bytes(4, "little") + data[4:]
    with pytest.raises(CorruptRecordError) as err:
        decode_records(damaged, PATH)
    assert err.value.offset == 0
    assert err.value.reason == "header CRC mismatch"


def _header(length: int, type_byte: int, payload: bytes) -> bytes:
    prefix = struct.pack(
        "<IBI", length, type_byte, _crc32c_reference(bytes((type_byte,)) + payload)
    )
    return prefix + _crc32c_reference(prefix).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("length", "type_byte", "reason"),
    [
        (RECORD_BYTES_MAX + 1, int(RecordType.ENTRIES), "bad header (length 67108865, type 1)"),
        (0, 0, "bad header (length 0, type 0)"),
        (0, 4, "bad header (length 0, type 4)"),
    ],
)
def test_a_header_with_a_valid_crc_but_impossible_fields_is_corruption(
    length: int, type_byte: int, reason: str
) -> None:
    good = encode_record(RecordType.ENTRIES, b"x")
    with pytest.raises(CorruptRecordError) as err:
        decode_records(good + _header(length, type_byte, b""), PATH)
    assert err.value.offset == len(good)
    assert err.value.reason == reason


# -- a WAL on SimDisk --------------------------------------------------------------------------

# A one-file log where `SimDisk.corrupt` looks for one: the WAL directory.
_FILE = f"{WAL_DIR}/000000000001.seg"
_FILE_PATH = f"n1/{_FILE}"


class WalOnSimDisk(RuleBasedStateMachine):
    """A write-ahead log on `SimDisk` against a model: the list of records written.

    Recovery after a crash must return a prefix of what was written that holds every synced
    record and nothing damaged, and truncate the torn rest; after a corruption it must
    refuse with the damaged record's offset.
    """

    def __init__(self) -> None:
        super().__init__()
        self.disk = SimDisk("n1", random.Random(0))
        self.written: list[Record] = []
        self.synced = 0  # how many of `written` the last sync covered
        self.corrupt_index: int | None = None

    @initialize(seed=st.integers(0, 2**32 - 1))
    def seed_disk(self, seed: int) -> None:
        self.disk = SimDisk("n1", random.Random(seed))

    def _starts(self) -> list[int]:
        return _encode_all(self.written)[1]

    @rule(records=st.lists(records_st, min_size=1, max_size=3))
    def append(self, records: list[Record]) -> None:
        for record in records:
            self.disk.append(_FILE, encode_record(*record))
            self.written.append(record)

    @rule()
    def sync(self) -> None:
        self.disk.sync(_FILE)
        self.synced = len(self.written)

    @precondition(lambda self: self.corrupt_index is None)
    @rule()
    def corrupt(self) -> None:
        where = self.disk.corrupt()
        if self.synced < 2:
            assert where is None
            return
        assert where is not None
        path, offset = where
        assert path == _FILE_PATH
        starts = self._starts()
        assert offset in starts[: self.synced - 1], "never the last synced record"
        self.corrupt_index = starts.index(offset)

    @rule(tear=st.booleans())
    def crash_and_recover(self, tear: bool) -> None:
        self.disk.crash(tear=tear)
        data = self.disk.read(_FILE)
        if self.corrupt_index is not None:
            offset = self._starts()[self.corrupt_index]
            with pytest.raises(CorruptRecordError) as err:
                decode_records(data, _FILE_PATH)
            assert err.value.offset == offset
            # An operator restores the log up to the damaged record; carry on from there.
            self.disk.truncate(_FILE, offset)
            del self.written[self.corrupt_index :]
            self.synced = len(self.written)
            self.corrupt_index = None
            return
        records, valid = decode_records(data, _FILE_PATH)
        assert records == self.written[: len(records)], "recovered records are a prefix"
        assert len(records) >= self.synced, "every synced record survives"
        if not tear:
            assert len(records) == self.synced, "without a tear nothing unsynced survives"
        assert valid == self._starts()[len(records)]
        self.disk.truncate(_FILE, valid)
        self.written = records
        self.synced = len(records)

    @invariant()
    def unsynced_bytes_are_the_unsynced_records(self) -> None:
        starts = self._starts()
        assert self.disk.unsynced_bytes() == starts[-1] - starts[self.synced]

    @invariant()
    def the_disk_holds_what_was_written(self) -> None:
        if self.corrupt_index is None:
            assert self.disk.read(_FILE) == _encode_all(self.written)[0]


WalOnSimDisk.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, derandomize=True, deadline=None
)
TestWalOnSimDisk = WalOnSimDisk.TestCase

"""The partition log: dense offsets, reads by offset and time, truncation, retention, reopen."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumdb.storage.fs import OsFileSystem
from quorumdb.storage.partition_log import BATCH_HEADER_BYTES, FillError
from quorumdb.storage.partition_log import PartitionLog as _PartitionLog

_HEAD = struct.Struct(">qiibIhiqq")


def batch(base: int, records: int, ts: int, payload: bytes = b"") -> bytes:
    """A v2 batch header + opaque body (the log never looks past the header)."""
    body = struct.pack(">qhii", -1, -1, -1, records) + payload  # producer id/epoch/seq, count
    length = _HEAD.size - 12 + len(body)  # batchLength counts what follows it
    assert _HEAD.size + 18 == BATCH_HEADER_BYTES
    return _HEAD.pack(base, length, 0, 2, 0, 0, records - 1, ts, ts) + body


def PartitionLog(path: Path, **kw: int) -> _PartitionLog:
    return _PartitionLog(OsFileSystem(), str(path), **kw)


def _fill(log: _PartitionLog, sizes: list[int], ts0: int = 1000) -> list[tuple[int, int]]:
    spans = []
    for i, n in enumerate(sizes):
        base = log.next_offset
        log.append(batch(base, n, ts0 + i, b"x" * 50), base)
        spans.append((base, base + n - 1))
    return spans


def _bases(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        out.append(base)
        pos += 12 + length
    return out


def test_dense_offsets_and_reads(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path / "p0", segment_bytes_max=400, index_interval_bytes=100)
    spans = _fill(log, [1, 3, 2, 5, 1, 1, 4])
    assert log.next_offset == 17
    assert len(log.segments) > 1
    assert _bases(log.read(0, 1 << 20, 17)) == [s[0] for s in spans]
    assert _bases(log.read(5, 1 << 20, 17))[0] == 4  # the batch containing offset 5
    assert _bases(log.read(0, 1 << 20, 6)) == [0, 1, 4]  # never at or past `upto`
    assert _bases(log.read(0, 1, 17)) == [0]  # at least one batch even if over max_bytes
    assert log.read(17, 1 << 20, 17) == b""


def test_reopen_rebuilds_indexes_and_drops_a_torn_batch(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path / "p0", segment_bytes_max=1 << 20)
    _fill(log, [2, 2, 2])
    log.close()
    seg = sorted((tmp_path / "p0").glob("*.log"))[-1]
    with seg.open("ab") as f:
        f.write(batch(6, 2, 5000)[:30])  # torn append
    again = PartitionLog(tmp_path / "p0")
    assert again.next_offset == 6
    again.append(batch(6, 1, 6000), 6)
    assert _bases(again.read(0, 1 << 20, 7)) == [0, 2, 4, 6]


def test_truncate_and_reset_and_retention(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path / "p0", segment_bytes_max=300)
    _fill(log, [1] * 10)
    log.truncate_to(6)
    assert log.next_offset == 6
    assert _bases(log.read(0, 1 << 20, 100)) == list(range(6))
    deleted = log.drop_below(4)
    assert deleted >= 1 and log.log_start_offset <= 4
    log.reset(100)
    assert log.next_offset == 100 and log.log_start_offset == 100
    log.append(batch(100, 2, 1), 100)
    assert log.next_offset == 102


def test_offset_for_time(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path / "p0", segment_bytes_max=250, index_interval_bytes=1)
    _fill(log, [1, 1, 1, 1, 1], ts0=100)  # timestamps 100..104
    assert log.offset_for_time(0) == (0, 100)
    assert log.offset_for_time(102) == (2, 102)
    assert log.offset_for_time(104) == (4, 104)
    assert log.offset_for_time(105) is None


def test_append_must_be_dense(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path / "p0")
    with pytest.raises(AssertionError):
        log.append(batch(5, 1, 0), 5)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=30),
    seg=st.integers(150, 2000),
    cut=st.integers(0, 200),
)
def test_any_history_reads_back_and_truncates_at_batch_boundaries(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], seg: int, cut: int
) -> None:
    d = tmp_path_factory.mktemp("p")
    log = PartitionLog(d, segment_bytes_max=seg, index_interval_bytes=64)
    spans = _fill(log, sizes)
    assert _bases(log.read(0, 1 << 30, log.next_offset)) == [s[0] for s in spans]
    boundaries = [s[0] for s in spans] + [log.next_offset]
    cut_at = boundaries[cut % len(boundaries)]
    log.truncate_to(cut_at)
    assert log.next_offset == cut_at
    log.close()
    reopened = PartitionLog(d, segment_bytes_max=seg)
    assert reopened.next_offset == cut_at
    assert _bases(reopened.read(0, 1 << 30, cut_at)) == [b for b in boundaries if b < cut_at]


def test_retention_by_size_and_time_keeps_the_active_segment(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path / "p0", segment_bytes_max=300)
    _fill(log, [1] * 12, ts0=1_000)  # timestamps 1000..1011, several segments
    segments = len(log.segments)
    assert segments >= 3
    assert log.enforce_retention(now_ms=10_000, retention_ms=-1, retention_bytes=-1) == 0
    # By size: keep at most ~2 segments' worth.
    gone = log.enforce_retention(now_ms=10_000, retention_ms=-1, retention_bytes=600)
    assert gone >= 1 and log.size_bytes - log.segments[0].size < 600
    assert log.next_offset == 12
    # By time: everything is older than a 1 ms retention, but the active segment stays.
    log.enforce_retention(now_ms=1_000_000, retention_ms=1, retention_bytes=-1)
    assert len(log.segments) == 1 and log.next_offset == 12
    assert _bases(log.read(log.log_start_offset, 1 << 20, 12))[-1] == 11


def test_holes_are_skipped_filled_and_never_read_across(tmp_path: Path) -> None:
    src = PartitionLog(tmp_path / "src", segment_bytes_max=400)
    _fill(src, [2, 3, 1, 4, 2, 2, 3])  # offsets 0..16
    log = PartitionLog(tmp_path / "dst", segment_bytes_max=400)
    log.skip_to(10)  # installed a snapshot ending at 10 with nothing of its own
    log.append(batch(10, 2, 5000), 10)
    assert log.next_offset == 12
    assert log.holes() == []  # nothing before the first segment is a hole of the log's own
    assert log.log_start_offset == 10
    assert log.fill(src.read(0, 1 << 20, 6), 0) == 6  # [0, 6): batches 0, 2, 5
    assert log.holes() == [(6, 10)]
    assert log.read(6, 1 << 20, 12) == b""
    assert _bases(log.read(0, 1 << 20, 12)) == [0, 2, 5]  # stops at the hole
    with pytest.raises(FillError):
        log.fill(src.read(6, 1 << 20, 12), 6)  # runs past 10, into what the log has
    log.fill(src.read(6, 1 << 20, 10), 6)
    assert log.holes() == []
    assert _bases(log.read(0, 1 << 20, 12)) == [0, 2, 5, 6, 10]
    log.close()
    again = PartitionLog(tmp_path / "dst", segment_bytes_max=400)
    assert again.holes() == [] and again.next_offset == 12
    assert _bases(again.read(0, 1 << 20, 12)) == [0, 2, 5, 6, 10]


def test_truncating_into_a_hole_keeps_what_is_below(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path / "p", segment_bytes_max=400)
    _fill(log, [2, 2])
    log.skip_to(10)
    log.append(batch(10, 2, 1), 10)
    log.truncate_to(7)  # inside the hole [4, 10)
    assert log.next_offset == 4
    log.skip_to(7)
    assert log.holes() == [(4, 7)] and log.next_offset == 7


def test_a_fill_into_an_empty_segment_uses_it_even_when_it_does_not_fit(tmp_path: Path) -> None:
    # A snapshot installed over another one before anything was appended leaves an empty
    # segment where the hole starts. A fill there bigger than a segment must go into that
    # segment (as `append` does into an empty one), not into a second segment at the same
    # base: that one's file is the same file, which deleting the empty one then removes.
    log = PartitionLog(tmp_path / "p", segment_bytes_max=100)
    log.skip_to(5)
    log.skip_to(9)
    assert log.holes() == [(5, 9)]
    data = batch(5, 4, 1000, b"x" * 200)
    assert log.fill(data, 5) == 9
    log.enforce_retention(now_ms=0, retention_ms=-1, retention_bytes=len(data))
    assert _bases(log.read(5, 1 << 20, 9)) == [5]
    assert [(s.base_offset, s.next_offset) for s in log.segments] == [(5, 9), (9, 9)]

"""SimDisk's fault model: sync is the line between kept and lost, tears keep a strict prefix,
corruption only hits a synced record of the WAL directory's log that is not its last."""

from __future__ import annotations

import random

import pytest

from quorumdb.sim.disk import WAL_DIR, SimDisk
from quorumdb.storage.records import RecordType, encode_record


def _disk(seed: int = 0) -> SimDisk:
    return SimDisk("n1", random.Random(seed))


def _record(i: int) -> bytes:
    return encode_record(RecordType.ENTRIES, bytes([i]) * (i + 3))


def test_a_new_file_reads_empty_and_paths_carry_the_disk_name() -> None:
    disk = _disk()
    assert disk.read("wal") == b""
    assert disk.path("wal") == "n1/wal"
    assert disk.unsynced_bytes() == 0


def test_unsynced_data_is_lost_on_crash() -> None:
    disk = _disk()
    disk.append("wal", b"hello")
    disk.append("wal", b" world")
    assert disk.read("wal") == b"hello world"
    assert disk.unsynced_bytes() == 11
    disk.crash(tear=False)
    assert disk.read("wal") == b""
    assert disk.unsynced_bytes() == 0
    assert disk.stats["lost_bytes"] == 11
    assert disk.stats["torn"] == 0


def test_synced_data_survives_a_crash_and_later_appends_do_not() -> None:
    disk = _disk()
    disk.append("wal", b"kept")
    disk.sync("wal")
    disk.append("wal", b"lost")
    assert disk.unsynced_bytes() == 4
    disk.crash(tear=False)
    assert disk.read("wal") == b"kept"
    assert disk.stats == {"writes": 2, "syncs": 1, "torn": 0, "lost_bytes": 4, "corrupted": 0}


def test_a_crash_hits_every_file_and_sync_is_per_file() -> None:
    disk = _disk()
    disk.append("a", b"aa")
    disk.append("b", b"bb")
    disk.sync("a")
    disk.crash(tear=False)
    assert disk.read("a") == b"aa"
    assert disk.read("b") == b""


@pytest.mark.parametrize("seed", range(40))
def test_a_tear_keeps_a_strict_prefix_of_the_unsynced_bytes(seed: int) -> None:
    disk = _disk(seed)
    synced, unsynced = b"S" * 7, bytes(range(1, 30))
    disk.append("wal", synced)
    disk.sync("wal")
    disk.append("wal", unsynced)
    disk.crash(tear=True)
    data = disk.read("wal")
    kept = len(data) - len(synced)
    assert data.startswith(synced)
    assert 0 <= kept < len(unsynced), "a tear never keeps the whole unsynced write"
    assert data[len(synced) :] == unsynced[:kept]
    assert disk.stats["torn"] == (1 if kept else 0)
    assert disk.stats["lost_bytes"] == len(unsynced) - kept
    # What survived a crash is on disk now: a second crash keeps it.
    disk.crash(tear=True)
    assert disk.read("wal") == data


def test_tears_keep_prefixes_of_varying_length() -> None:
    kept = set()
    for seed in range(40):
        disk = _disk(seed)
        disk.append("wal", bytes(50))
        disk.crash(tear=True)
        kept.add(len(disk.read("wal")))
    assert len(kept) > 10
    assert max(kept) < 50


def test_a_tear_with_nothing_unsynced_changes_nothing() -> None:
    disk = _disk()
    disk.append("wal", b"abc")
    disk.sync("wal")
    disk.crash(tear=True)
    assert disk.read("wal") == b"abc"
    assert disk.stats["torn"] == 0
    assert disk.stats["lost_bytes"] == 0


def test_truncate_cuts_the_file_and_is_durable() -> None:
    disk = _disk()
    disk.append("wal", b"0123456789")
    disk.sync("wal")
    disk.truncate("wal", 4)
    assert disk.read("wal") == b"0123"
    disk.append("wal", b"xy")
    disk.crash(tear=False)
    assert disk.read("wal") == b"0123"


def test_truncate_inside_the_unsynced_tail_keeps_the_synced_part() -> None:
    disk = _disk()
    disk.append("wal", b"012345")
    disk.sync("wal")
    disk.append("wal", b"6789")
    disk.truncate("wal", 8)
    assert disk.read("wal") == b"01234567"
    assert disk.unsynced_bytes() == 2
    disk.crash(tear=False)
    assert disk.read("wal") == b"012345"


def _segment(disk: SimDisk, name: str, count: int, *, first: int = 0, zeros: int = 64) -> None:
    """A segment-shaped file: `count` synced records, then a preallocated zero tail."""
    file = f"{WAL_DIR}/{name}"
    for i in range(first, first + count):
        disk.append(file, _record(i))
    disk.append(file, bytes(zeros))
    disk.sync(file)


def _spans(disk: SimDisk) -> list[tuple[str, int, int]]:
    """(path, start, end) of every record of the WAL directory, in log order."""
    out: list[tuple[str, int, int]] = []
    for name in disk.list_dir(WAL_DIR):
        data = disk.read(f"{WAL_DIR}/{name}")
        off = 0
        while off < len(data) and data[off]:
            end = off + len(_record(0)) + data[off] - 3  # _record(i) has i + 3 payload bytes
            out.append((disk.path(f"{WAL_DIR}/{name}"), off, end))
            off = end
    return out


@pytest.mark.parametrize(
    ("synced_records", "unsynced_records"),
    [(0, 0), (0, 3), (1, 0), (1, 4)],
    ids=["empty", "nothing-synced", "one-synced", "one-synced-more-unsynced"],
)
def test_corrupt_returns_none_with_fewer_than_two_synced_records(
    synced_records: int, unsynced_records: int
) -> None:
    disk = _disk()
    file = f"{WAL_DIR}/000000000001.seg"
    for i in range(synced_records):
        disk.append(file, _record(i))
    disk.sync(file)
    for i in range(unsynced_records):
        disk.append(file, _record(10 + i))
    before = disk.read(file)
    assert disk.corrupt() is None
    assert disk.read(file) == before
    assert disk.stats["corrupted"] == 0


@pytest.mark.parametrize("seed", range(40))
def test_corrupt_flips_one_bit_in_a_synced_record_that_is_not_the_logs_last(seed: int) -> None:
    disk = _disk(seed)
    _segment(disk, "000000000001.seg", 2)
    _segment(disk, "000000000002.seg", 2, first=2)
    disk.append(f"{WAL_DIR}/000000000002.seg", _record(9))  # unsynced: never a target either
    spans = _spans(disk)
    assert len(spans) == 4
    files = [f"{WAL_DIR}/{n}" for n in disk.list_dir(WAL_DIR)]
    before = {f: disk.read(f) for f in files}
    where = disk.corrupt()
    assert where is not None
    assert where in [(path, lo) for path, lo, _ in spans[:-1]], "never the log's last record"
    path, lo, hi = next(s for s in spans if (s[0], s[1]) == where)
    diffs = [
        (f, i)
        for f in files
        for i, (a, b) in enumerate(zip(before[f], disk.read(f), strict=True))
        if a != b
    ]
    assert len(diffs) == 1, diffs
    file, off = diffs[0]
    assert disk.path(file) == path
    assert lo <= off < hi, "the flipped bit lies inside the reported record"
    assert bin(before[file][off] ^ disk.read(file)[off]).count("1") == 1
    assert disk.stats["corrupted"] == 1


def test_corrupt_targets_the_last_record_of_an_older_segment_but_never_the_zeros() -> None:
    # A closed segment is wholly synced: damage to its last record is corruption, not a tear.
    hits: set[tuple[str, int]] = set()
    for seed in range(60):
        disk = _disk(seed)
        _segment(disk, "000000000001.seg", 2, zeros=500)
        _segment(disk, "000000000002.seg", 1, first=2, zeros=500)
        where = disk.corrupt()
        assert where is not None
        hits.add(where)
    first = f"n1/{WAL_DIR}/000000000001.seg"
    assert hits == {(first, 0), (first, len(_record(0)))}


def test_corrupt_ignores_files_outside_the_wal_directory() -> None:
    disk = _disk()
    for i in range(3):
        disk.append("snap/0/snapshot", _record(i))
        disk.append("other", _record(i))
    disk.sync("snap/0/snapshot")
    disk.sync("other")
    assert disk.corrupt() is None
    _segment(disk, "000000000001.seg", 2)
    where = disk.corrupt()
    assert where == (f"n1/{WAL_DIR}/000000000001.seg", 0)


def test_corrupt_stops_at_a_torn_record() -> None:
    # After a crash with a tear, the log may end in a damaged record; nothing after the
    # damage is a target, and neither is the last valid record before it.
    disk = _disk()
    file = f"{WAL_DIR}/000000000001.seg"
    for i in range(3):
        disk.append(file, _record(i))
    disk.sync(file)
    disk.append(file, _record(7)[:-2] + b"\xff\xff")  # a record that fails its CRC
    disk.append(file, bytes(40))
    disk.sync(file)
    for seed in range(20):
        disk.rng.seed(seed)
        data = disk.read(file)
        where = disk.corrupt()
        assert where is not None
        assert where[1] in (0, len(_record(0))), where
        disk.write(file, 0, data)  # undo the flip
        disk.sync(file)

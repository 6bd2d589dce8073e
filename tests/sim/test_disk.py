"""SimDisk's fault model: sync is the line between kept and lost, tears keep a strict prefix,
replace is atomic and durable, corruption only hits a synced record that is not the last."""

from __future__ import annotations

import random

import pytest

from quorumdb.sim.disk import SimDisk
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


def test_replace_is_atomic_and_durable() -> None:
    disk = _disk()
    disk.append("state", b"old contents, unsynced")
    disk.replace("state", b"new")
    assert disk.unsynced_bytes() == 0
    disk.crash(tear=True)
    assert disk.read("state") == b"new"


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


@pytest.mark.parametrize(
    ("synced_records", "unsynced_records"),
    [(0, 0), (0, 3), (1, 0), (1, 4)],
    ids=["empty", "nothing-synced", "one-synced", "one-synced-more-unsynced"],
)
def test_corrupt_returns_none_with_fewer_than_two_synced_records(
    synced_records: int, unsynced_records: int
) -> None:
    disk = _disk()
    for i in range(synced_records):
        disk.append("wal", _record(i))
    disk.sync("wal")
    for i in range(unsynced_records):
        disk.append("wal", _record(10 + i))
    before = disk.read("wal")
    assert disk.corrupt() is None
    assert disk.read("wal") == before
    assert disk.stats["corrupted"] == 0


@pytest.mark.parametrize("seed", range(30))
def test_corrupt_flips_one_bit_in_a_synced_record_that_is_not_the_last(seed: int) -> None:
    disk = _disk(seed)
    records = [_record(i) for i in range(4)]
    for r in records[:3]:
        disk.append("wal", r)
    disk.sync("wal")
    disk.append("wal", records[3])  # unsynced: never a target either
    before = disk.read("wal")
    where = disk.corrupt()
    assert where is not None
    path, offset = where
    assert path == "n1/wal"
    starts = [0, len(records[0]), len(records[0]) + len(records[1])]
    assert offset in starts[:2], "the last synced record is never the target"
    after = disk.read("wal")
    diff = [i for i in range(len(before)) if before[i] != after[i]]
    assert len(diff) == 1
    assert bin(before[diff[0]] ^ after[diff[0]]).count("1") == 1
    end = starts[starts.index(offset) + 1]
    assert offset <= diff[0] < end, "the flipped bit lies inside the reported record"
    assert disk.stats["corrupted"] == 1


def test_corrupt_skips_files_without_two_synced_records() -> None:
    disk = _disk()
    disk.append("a", _record(1))
    disk.sync("a")
    for i in range(3):
        disk.append("b", _record(i))
    disk.sync("b")
    where = disk.corrupt()
    assert where is not None
    assert where[0] == "n1/b"
    assert disk.read("a") == _record(1)

"""The node-wide WAL: round trips, rotation, compaction, oversized and split batches, the
preallocated zero tail, many interleaved groups, reconciliation with snapshots, and the
inconsistencies recovery must refuse."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from quorumdb.raft import Entry, HardState, Snapshot, SnapshotMetadata
from quorumdb.sim.disk import SimDisk
from quorumdb.storage import wal as wal_module
from quorumdb.storage.errors import DurableStateError
from quorumdb.storage.fs import FileSystem, WritableFile
from quorumdb.storage.records import RecordType, scan_records
from quorumdb.storage.wal import Batch, GroupWrite, SegmentHeader, SnapshotMark
from tests.storage.wal_helpers import WAL_DIR, ents, open_os, open_sim, sim_fs


def _hs(term: int, commit: int = 0, vote: int = 0) -> HardState:
    return HardState(term=term, vote=vote, commit=commit)


def _snap(index: int, term: int, data: bytes = b"state") -> Snapshot:
    return Snapshot(metadata=SnapshotMetadata(index=index, term=term), data=data)


def _records(fs: FileSystem, path: str) -> list[tuple[RecordType, bytes]]:
    recs, _ = scan_records(fs.read(path), path, final=True)
    return [(t, bytes(p)) for _, t, p in recs]


def _header(fs: FileSystem, path: str) -> SegmentHeader:
    rtype, payload = _records(fs, path)[0]
    assert rtype == RecordType.SEGMENT_HEADER
    return msgspec.msgpack.decode(payload, type=SegmentHeader)


# -- round trips ------------------------------------------------------------------------------


def test_a_new_wal_recovers_nothing_and_starts_segment_one() -> None:
    _, fs = sim_fs()
    wal, _, recovered = open_sim(fs)
    assert recovered == {}
    assert wal.segment_paths() == [f"{WAL_DIR}/000000000001.seg"]


def test_one_group_round_trips_entries_and_hard_state() -> None:
    disk, fs = sim_fs()
    wal, _, _ = open_sim(fs)
    wal.save([GroupWrite(group=7, entries=ents(1, 3), hard_state=_hs(1, 2, vote=3))], sync=True)
    wal.save([GroupWrite(group=7, entries=ents(4, 2))], sync=True)
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs)
    assert recovered[7].entries == ents(1, 5)
    assert recovered[7].hard_state == _hs(1, 2, vote=3)
    assert recovered[7].snapshot is None


def test_many_groups_interleaved_come_back_each_exactly() -> None:
    rng = random.Random(4)
    disk, fs = sim_fs()
    wal, _, _ = open_sim(fs, segment_bytes_max=2048)
    want: dict[int, list[Entry]] = {g: [] for g in range(1, 21)}
    hs: dict[int, HardState] = {}
    for _ in range(200):
        writes = []
        for g in rng.sample(sorted(want), rng.randint(1, 6)):
            new = ents(len(want[g]) + 1, rng.randint(1, 3), tag=g)
            want[g] += new
            hs[g] = _hs(1, commit=len(want[g]) - 1)
            writes.append(GroupWrite(group=g, entries=new, hard_state=hs[g]))
        wal.save(writes, sync=True)
    assert len(wal.segment_paths()) > 5, "the workload rotates"
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs, segment_bytes_max=2048)
    assert sorted(recovered) == sorted(g for g in want if want[g])
    for g, rec in recovered.items():
        assert rec.entries == want[g]
        assert rec.hard_state == hs[g]


def test_a_later_append_replaces_the_conflicting_suffix() -> None:
    disk, fs = sim_fs()
    wal, _, _ = open_sim(fs)
    wal.save([GroupWrite(group=1, entries=ents(1, 5, term=1))], sync=True)
    wal.save([GroupWrite(group=1, entries=ents(3, 1, term=2, tag=9))], sync=True)
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs)
    assert recovered[1].entries == [*ents(1, 2, term=1), *ents(3, 1, term=2, tag=9)]


def test_unsynced_saves_are_lost_in_a_crash_and_synced_ones_kept() -> None:
    disk, fs = sim_fs()
    wal, _, _ = open_sim(fs)
    wal.save([GroupWrite(group=1, entries=ents(1, 2), hard_state=_hs(1, 1))], sync=True)
    wal.save([GroupWrite(group=1, entries=ents(3, 2), hard_state=_hs(2, 3))], sync=False)
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs)
    assert recovered[1].entries == ents(1, 2)
    assert recovered[1].hard_state == _hs(1, 1)


def test_one_save_is_one_write_and_at_most_one_sync() -> None:
    disk, fs = sim_fs()
    wal, _, _ = open_sim(fs, segment_bytes_max=1 << 20)
    writes_before, syncs_before = disk.stats["writes"], disk.stats["syncs"]
    wal.save(
        [GroupWrite(group=g, entries=ents(1, 10), hard_state=_hs(1)) for g in range(1, 50)],
        sync=True,
    )
    assert disk.stats["writes"] - writes_before == 1
    assert disk.stats["syncs"] - syncs_before == 1
    wal.save([GroupWrite(group=1, hard_state=_hs(2))], sync=False)
    assert disk.stats["syncs"] - syncs_before == 1
    wal.save([], sync=True)  # a sync of what is pending
    assert disk.stats["syncs"] - syncs_before == 2
    wal.save([], sync=True)  # nothing pending: nothing to do
    assert disk.stats["syncs"] - syncs_before == 2


# -- segments ---------------------------------------------------------------------------------


def test_rotation_writes_every_groups_latest_hard_state_first() -> None:
    _, fs = sim_fs()
    wal, _, _ = open_sim(fs, segment_bytes_max=1024)
    wal.save([GroupWrite(group=1, hard_state=_hs(3, vote=2))], sync=True)
    wal.save([GroupWrite(group=2, entries=ents(1, 1), hard_state=_hs(5))], sync=True)
    while len(wal.segment_paths()) == 1:
        wal.save([GroupWrite(group=2, entries=ents(2, 1), hard_state=_hs(5))], sync=True)
    header = _header(fs, wal.segment_paths()[1])
    assert header.segment == 2
    assert [(w.group, w.hard_state) for w in header.hard_states] == [
        (1, _hs(3, vote=2)),
        (2, _hs(5)),
    ]


def test_hard_state_survives_rotation_and_compaction_of_its_segment() -> None:
    disk, fs = sim_fs()
    wal, snaps, _ = open_sim(fs, segment_bytes_max=1024)
    wal.save([GroupWrite(group=1, hard_state=_hs(9, vote=3, commit=0))], sync=True)
    for i in range(1, 60):
        wal.save([GroupWrite(group=2, entries=ents(i, 1), hard_state=_hs(1, i - 1))], sync=True)
    first = wal.segment_paths()[0]
    snaps.save(2, _snap(40, 1))
    removed = wal.compact(2, 40)
    assert first in removed, "group 1's only hard state record was in a deleted segment"
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs, segment_bytes_max=1024)
    assert recovered[1].hard_state == _hs(9, vote=3)


def _rotated_unsynced_and_covered() -> tuple[SimDisk, FileSystem, wal_module.WAL, int]:
    """Group 1's hard state in segment 1; a rotation whose header went out unsynced; group
    2's entries (all there is in segment 1 besides) covered by a snapshot."""
    disk, fs = sim_fs()
    wal, snaps, _ = open_sim(fs, segment_bytes_max=1024)
    wal.save([GroupWrite(group=1, hard_state=_hs(5, vote=2))], sync=True)
    i = 0
    while len(wal.segment_paths()) == 1:
        i += 1
        wal.save([GroupWrite(group=2, entries=ents(i, 1))], sync=False)
    snaps.save(2, _snap(i, 1))
    return disk, fs, wal, i


def test_a_covered_segment_waits_for_the_next_header_to_be_durable() -> None:
    # Found by a long run of the crash state machine: the new segment's header (the only
    # other copy of group 1's hard state) went out unsynced, the old segment was deleted as
    # covered, and a crash lost the hard state.
    disk, fs, wal, i = _rotated_unsynced_and_covered()
    first = wal.segment_paths()[0]
    assert wal.compact(2, i) == [], "the new header is not durable yet"
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs, segment_bytes_max=1024)
    assert recovered[1].hard_state == _hs(5, vote=2)

    disk, fs, wal, i = _rotated_unsynced_and_covered()
    assert wal.compact(2, i) == []
    wal.sync()
    assert first not in wal.segment_paths(), "deleted after the sync that made the header durable"
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs, segment_bytes_max=1024)
    assert recovered[1].hard_state == _hs(5, vote=2)


def test_compaction_deletes_exactly_the_covered_segments_oldest_first() -> None:
    _, fs = sim_fs()
    wal, _, _ = open_sim(fs, segment_bytes_max=1024)
    # Group 2 writes once, in segment 1; group 1 fills segments 1..n.
    wal.save([GroupWrite(group=2, entries=ents(1, 1, tag=2))], sync=True)
    index = 0
    last_in: dict[str, int] = {}
    while len(wal.segment_paths()) < 5:
        index += 1
        wal.save([GroupWrite(group=1, entries=ents(index, 1))], sync=True)
        last_in[wal.segment_paths()[-1]] = index
    paths = wal.segment_paths()
    # Group 1 covers segments 1 and 2, but group 2 pins segment 1 (and so everything after).
    assert wal.compact(1, last_in[paths[1]]) == []
    assert wal.pinned_by() == {1: last_in[paths[0]], 2: 1}
    # Once group 2 is covered too, segments 1 and 2 go; 3 holds a group-1 entry not covered.
    assert wal.compact(2, 1) == paths[:2]
    assert wal.segment_paths() == paths[2:]
    assert fs.list_dir(WAL_DIR) == [p.rsplit("/", 1)[1] for p in paths[2:]]
    # Covering everything never deletes the segment being written.
    wal.compact(1, index)
    assert wal.segment_paths() == paths[-1:]


def test_a_segment_is_deleted_when_it_closes_already_covered() -> None:
    _, fs = sim_fs()
    wal, _, _ = open_sim(fs, segment_bytes_max=1024)
    for i in range(1, 6):
        wal.save([GroupWrite(group=1, entries=ents(i, 1))], sync=True)
    wal.compact(1, 1000)  # covered beyond what is written: the first segment is still open
    first = wal.segment_paths()[0]
    i = 6
    while first in wal.segment_paths() and len(wal.segment_paths()) == 1:
        wal.save([GroupWrite(group=1, entries=ents(i, 1))], sync=True)
        i += 1
    assert first not in wal.segment_paths()


def test_an_oversized_batch_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    wal, _, _ = open_os(tmp_path, segment_bytes_max=4096)
    wal.save([GroupWrite(group=1, entries=ents(1, 2))], sync=True)
    big = ents(3, 100, size=200)  # ~20 KiB, five segments' worth
    wal.save([GroupWrite(group=1, entries=big, hard_state=_hs(1, 50))], sync=True)
    wal.save([GroupWrite(group=1, entries=ents(103, 1))], sync=True)
    paths = wal.segment_paths()
    assert len(paths) == 3
    sizes = [Path(p).stat().st_size for p in paths]
    assert sizes[0] == 4096 and sizes[2] == 4096, "ordinary segments are preallocated"
    assert sizes[1] > 20_000, "the oversized one holds the whole batch"
    assert [t for t, _ in _records(wal_fs(wal), paths[1])] == [
        RecordType.SEGMENT_HEADER,
        RecordType.BATCH,
    ]
    wal.close()
    _, _, recovered = open_os(tmp_path, segment_bytes_max=4096)
    assert recovered[1].entries == [*ents(1, 2), *big, *ents(103, 1)]


def wal_fs(wal: wal_module.WAL) -> FileSystem:
    return wal._fs  # white box: the file system the WAL was opened on


def test_a_batch_larger_than_a_record_is_split_into_consecutive_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wal_module, "_BATCH_BYTES_MAX", 2000)
    disk, fs = sim_fs()
    wal, snaps, _ = open_sim(fs, segment_bytes_max=1 << 16)
    snaps.save(1, Snapshot(metadata=SnapshotMetadata(index=10, term=2), data=b"s"))
    mark = SnapshotMark(index=10, term=2)
    big = ents(11, 60, term=2, size=50)
    small = ents(1, 2, tag=7)
    wal.save(
        [
            GroupWrite(group=1, entries=big, hard_state=_hs(2, 40), snapshot=mark),
            GroupWrite(group=2, entries=small, hard_state=_hs(1, 1)),
        ],
        sync=True,
    )
    batches = [
        msgspec.msgpack.decode(p, type=Batch)
        for t, p in _records(fs, wal.segment_paths()[0])
        if t == RecordType.BATCH
    ]
    assert len(batches) > 2
    assert [b.seq for b in batches] == list(range(1, len(batches) + 1))
    assert all(len(msgspec.msgpack.encode(b)) <= 2000 for b in batches)
    g1 = [w for b in batches for w in b.writes if w.group == 1]
    assert g1[0].snapshot == mark and not g1[0].entries, "the mark goes first"
    assert [e for w in g1 for e in w.entries] == big
    assert [w.hard_state for w in g1 if w.hard_state] == [_hs(2, 40)], "hard state last"
    assert g1[-1].hard_state == _hs(2, 40)
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs, segment_bytes_max=1 << 16)
    assert recovered[1].entries == big
    assert recovered[2].entries == small


# -- the preallocated tail ----------------------------------------------------------------------


def test_the_preallocated_zero_tail_is_the_end_of_the_data(tmp_path: Path) -> None:
    wal, _, _ = open_os(tmp_path, segment_bytes_max=1 << 16)
    wal.save([GroupWrite(group=1, entries=ents(1, 3), hard_state=_hs(1))], sync=True)
    path = Path(wal.segment_paths()[0])
    assert path.stat().st_size == 1 << 16
    data = path.read_bytes()
    _, end = scan_records(data, str(path), final=False)
    assert data.count(0, end) == len(data) - end
    wal.close()  # closing is not needed for durability: recovery must not care
    wal, _, recovered = open_os(tmp_path, segment_bytes_max=1 << 16)
    assert recovered[1].entries == ents(1, 3)
    wal.save([GroupWrite(group=1, entries=ents(4, 1))], sync=True)  # appends at the end
    wal.close()
    _, _, recovered = open_os(tmp_path, segment_bytes_max=1 << 16)
    assert recovered[1].entries == ents(1, 4)
    assert path.stat().st_size == 1 << 16


def test_a_segment_created_but_never_written_is_removed_at_recovery() -> None:
    disk, fs = sim_fs()
    wal, _, _ = open_sim(fs, segment_bytes_max=1024)
    for i in range(1, 200):
        wal.save([GroupWrite(group=1, entries=ents(i, 1))], sync=True)
        if len(wal.segment_paths()) == 2:
            break
    wal._rotate()  # white box: a rotation whose first write never happened
    assert len(wal.segment_paths()) == 3
    disk.crash(tear=True)
    wal, _, recovered = open_sim(fs, segment_bytes_max=1024)
    assert recovered[1].entries == ents(1, i)
    # The empty segment was removed and the writer started it afresh.
    assert len(wal.segment_paths()) == 3
    assert _records(fs, wal.segment_paths()[2]) == []
    wal.save([GroupWrite(group=1, entries=ents(i + 1, 1))], sync=True)
    disk.crash(tear=True)
    _, _, recovered = open_sim(fs, segment_bytes_max=1024)
    assert recovered[1].entries == ents(1, i + 1)


# -- snapshots --------------------------------------------------------------------------------


def test_a_snapshot_mark_resets_the_group_log_so_stale_entries_never_return() -> None:
    disk, fs = sim_fs()
    wal, snaps, _ = open_sim(fs)
    wal.save([GroupWrite(group=1, entries=ents(1, 10, term=1))], sync=True)
    snaps.save(1, _snap(5, 3))  # a leader's snapshot: our entry 5 has term 1, not 3
    wal.save([GroupWrite(group=1, snapshot=SnapshotMark(index=5, term=3))], sync=True)
    wal.save([GroupWrite(group=1, entries=ents(6, 2, term=3), hard_state=_hs(3, 5))], sync=True)
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs)
    assert recovered[1].snapshot == _snap(5, 3)
    assert recovered[1].entries == ents(6, 2, term=3)
    assert recovered[1].hard_state == _hs(3, 5)


def test_a_snapshot_matching_the_log_keeps_the_entries_after_it() -> None:
    # Raft §7: "if an existing entry has the same index and term as the snapshot's last
    # included entry, retain log entries following it".
    disk, fs = sim_fs()
    wal, snaps, _ = open_sim(fs)
    wal.save([GroupWrite(group=1, entries=ents(1, 10, term=2), hard_state=_hs(2, 4))], sync=True)
    snaps.save(1, _snap(4, 2))
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs)
    assert recovered[1].entries == ents(5, 6, term=2)
    assert recovered[1].hard_state == _hs(2, 4)


@pytest.mark.parametrize(
    ("snap_index", "snap_term"), [(4, 3), (15, 3)], ids=["conflicting", "ahead-of-log"]
)
def test_a_snapshot_the_wal_never_recorded_replaces_the_log_durably(
    snap_index: int, snap_term: int
) -> None:
    # The snapshot file was durable but the crash lost the WAL write that recorded its
    # installation. Recovery discards the log, and records that, so the entries appended
    # next are neither a "gap" nor discarded with the old log at the next recovery.
    disk, fs = sim_fs()
    wal, snaps, _ = open_sim(fs)
    wal.save([GroupWrite(group=1, entries=ents(1, 10, term=2), hard_state=_hs(2, 3))], sync=True)
    snaps.save(1, _snap(snap_index, snap_term))
    disk.crash(tear=False)
    wal, _, recovered = open_sim(fs)
    assert recovered[1].entries == []
    assert recovered[1].hard_state == _hs(2, snap_index), "commit raised to the snapshot"
    wal.save(
        [
            GroupWrite(
                group=1, entries=ents(snap_index + 1, 2, term=3), hard_state=_hs(3, snap_index)
            )
        ],
        sync=True,
    )
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs)
    assert recovered[1].entries == ents(snap_index + 1, 2, term=3)


def test_a_group_known_only_from_its_snapshot_is_recovered() -> None:
    disk, fs = sim_fs()
    _, snaps, _ = open_sim(fs)
    snaps.save(4, _snap(30, 2))
    disk.crash(tear=False)
    _, _, recovered = open_sim(fs)
    assert recovered[4].snapshot == _snap(30, 2)
    assert recovered[4].entries == []
    assert recovered[4].hard_state == _hs(0, 30)


# -- refusals ---------------------------------------------------------------------------------


def test_a_missing_middle_segment_refuses_to_start() -> None:
    _, fs = sim_fs()
    wal, _, _ = open_sim(fs, segment_bytes_max=1024)
    i = 0
    while len(wal.segment_paths()) < 3:
        i += 1
        wal.save([GroupWrite(group=1, entries=ents(i, 1))], sync=True)
    middle = wal.segment_paths()[1]
    fs.remove(middle)
    fs.fsync_dir(WAL_DIR)
    with pytest.raises(DurableStateError, match=r"000000000002\.seg is missing"):
        open_sim(fs, segment_bytes_max=1024)


def test_entries_starting_past_the_end_of_the_log_refuse_to_start() -> None:
    _, fs = sim_fs()
    wal, _, _ = open_sim(fs)
    wal.save([GroupWrite(group=1, entries=ents(1, 2))], sync=True)
    wal.save([GroupWrite(group=1, entries=ents(5, 2))], sync=True)
    with pytest.raises(DurableStateError, match="entries jump from 2 to 5"):
        open_sim(fs)


def test_a_log_that_starts_after_index_one_without_a_snapshot_refuses() -> None:
    _, fs = sim_fs()
    wal, _, _ = open_sim(fs)
    wal.save([GroupWrite(group=1, entries=ents(7, 2))], sync=True)
    with pytest.raises(DurableStateError, match="starts at index 7 but there is no snapshot"):
        open_sim(fs)


def test_a_commit_beyond_the_log_refuses() -> None:
    _, fs = sim_fs()
    wal, _, _ = open_sim(fs)
    wal.save([GroupWrite(group=1, entries=ents(1, 2), hard_state=_hs(1, 5))], sync=True)
    with pytest.raises(DurableStateError, match="commits 5, log ends at 2"):
        open_sim(fs)


class _FailingSync:
    """A file whose fdatasync fails (EIO), as a dying disk's would."""

    def __init__(self, inner: WritableFile) -> None:
        self._inner = inner
        self.path = inner.path

    @property
    def position(self) -> int:
        return self._inner.position

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)

    def sync(self) -> None:
        raise DurableStateError(self.path, "fdatasync failed: Input/output error")

    def preallocate(self, length_bytes: int) -> None:
        self._inner.preallocate(length_bytes)

    def close(self) -> None:
        self._inner.close()


def test_after_a_failed_fsync_the_wal_refuses_all_work() -> None:
    _, fs = sim_fs()
    wal, _, _ = open_sim(fs)
    wal._file = _FailingSync(wal._file)  # type: ignore[arg-type]  # white box
    with pytest.raises(DurableStateError, match="Input/output error"):
        wal.save([GroupWrite(group=1, entries=ents(1, 1))], sync=True)
    with pytest.raises(DurableStateError, match="unusable after an earlier failure"):
        wal.save([GroupWrite(group=1, entries=ents(2, 1))], sync=False)
    with pytest.raises(DurableStateError, match="unusable"):
        wal.compact(1, 1)


def test_a_closed_wal_refuses_writes() -> None:
    _, fs = sim_fs()
    wal, _, _ = open_sim(fs)
    wal.close()
    with pytest.raises(DurableStateError, match="closed"):
        wal.save([GroupWrite(group=1, entries=ents(1, 1))], sync=True)


def test_invariants_of_writes_are_asserted() -> None:
    _, fs = sim_fs()
    wal, _, _ = open_sim(fs)
    with pytest.raises(AssertionError, match="not contiguous"):
        wal.save([GroupWrite(group=1, entries=[*ents(1, 1), *ents(3, 1)])], sync=True)
    wal.save([GroupWrite(group=1, entries=ents(1, 1), hard_state=_hs(3, 1))], sync=True)
    with pytest.raises(AssertionError, match="term 3 -> 2"):
        wal.save([GroupWrite(group=1, hard_state=_hs(2, 1))], sync=True)
    with pytest.raises(AssertionError, match="commit 1 -> 0"):
        wal.save([GroupWrite(group=1, hard_state=_hs(3, 0))], sync=True)

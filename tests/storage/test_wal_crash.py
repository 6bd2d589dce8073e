"""Crash recovery of the WAL + snapshot store on the simulator's disk, against a model.

What must hold after any crash (DESIGN: "durability is never faked"): per group, recovery
returns the state after some prefix of the saves, a prefix that includes every synced save
(and, batches being atomic, the same prefix for every group); it never returns anything
that was not written, and never raises unless corruption was injected. Injected corruption
of a record that may have been acknowledged raises `CorruptRecordError` naming the file and
the record's offset.

Three angles: a hypothesis state machine (random saves, syncs, installs, snapshots,
compactions, crashes with and without torn writes); a crash at every file system operation
of a fixed workload; and bit flips in every kind of record.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from quorumdb.sim.disk import SimDisk
from quorumdb.storage.errors import DurableStateError
from quorumdb.storage.fs import FileSystem, WritableFile
from quorumdb.storage.records import HEADER_BYTES, CorruptRecordError, RecordType, scan_records
from tests.storage.wal_helpers import (
    NODE,
    WAL_DIR,
    Driver,
    GroupPlan,
    assert_recovered,
    open_sim,
    sim_fs,
)

GROUPS = [1, 2, 3]

plans_st = st.lists(
    st.builds(
        GroupPlan,
        group=st.sampled_from(GROUPS),
        back=st.integers(0, 4),
        n=st.integers(0, 6),
        new_term=st.booleans(),
        commit_step=st.one_of(st.none(), st.integers(0, 6)),
        vote=st.integers(0, 3),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda p: p.group,
)


class DurableNode(RuleBasedStateMachine):
    """Three groups sharing one WAL on a SimDisk; small segments so that rotation, compaction
    and segment deletion happen often."""

    driver: Driver
    disk: SimDisk

    @initialize(seed=st.integers(0, 2**32 - 1), segment=st.sampled_from([512, 2048, 8192]))
    def start(self, seed: int, segment: int) -> None:
        self.disk, fs = sim_fs(seed)
        self.driver = Driver(fs, GROUPS, segment_bytes_max=segment)

    @rule(plans=plans_st, sync=st.booleans())
    def ready(self, plans: list[GroupPlan], sync: bool) -> None:
        self.driver.ready(plans, sync=sync)

    @rule(
        group=st.sampled_from(GROUPS),
        ahead=st.integers(1, 8),
        new_term=st.booleans(),
        sync=st.booleans(),
    )
    def install_snapshot(self, group: int, ahead: int, new_term: bool, sync: bool) -> None:
        self.driver.install(group, ahead, new_term=new_term, sync=sync)

    @rule(group=st.sampled_from(GROUPS), keep=st.sampled_from([0, 0, 2, 10]))
    def snapshot_and_compact(self, group: int, keep: int) -> None:
        self.driver.snapshot(group, keep)

    @rule(tear=st.booleans())
    def crash(self, tear: bool) -> None:
        d = self.driver
        synced = d.candidates[0]
        self.disk.crash(tear=tear)
        recovered = d.recover_and_check()
        if not tear:
            # Without a torn write nothing unsynced survives: exactly the synced state.
            assert_recovered(recovered, synced, d.snaps)

    @rule()
    def clean_restart(self) -> None:
        d = self.driver
        d.wal.close()
        d.candidates = d.candidates[-1:]  # close synced everything
        d.recover_and_check()

    @invariant()
    def snapshots_are_bounded(self) -> None:
        d = self.driver
        for g in GROUPS:
            assert len(d.snaps.list_files(g)) <= d.keep

    @invariant()
    def segments_are_deleted_once_covered(self) -> None:
        wal = self.driver.wal
        paths = wal.segment_paths()
        # White box: the segment before the current one waits for the current one's header
        # (every group's hard state) to be durable.
        if len(paths) > 2 or (len(paths) == 2 and wal._header_synced):
            pinned = wal.pinned_by()
            compacted = wal._compacted  # white box: the WAL's own view
            assert any(mx > compacted.get(g, 0) for g, mx in pinned.items()), (
                f"{paths[0]} is covered for every group but was not deleted"
            )


DurableNode.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, derandomize=True, deadline=None
)
TestDurableNode = DurableNode.TestCase


# -- a crash at every file system operation ---------------------------------------------------


class _CrashError(Exception):
    """The power went out."""


class _CrashingFile:
    def __init__(self, inner: WritableFile, fs: CrashingFileSystem) -> None:
        self._inner = inner
        self._fs = fs

    @property
    def path(self) -> str:
        return self._inner.path

    @property
    def position(self) -> int:
        return self._inner.position

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._fs.tick()
        self._inner.write(data)

    def sync(self) -> None:
        self._fs.tick()
        self._inner.sync()

    def preallocate(self, length_bytes: int) -> None:
        self._fs.tick()
        self._inner.preallocate(length_bytes)

    def close(self) -> None:
        self._inner.close()


class CrashingFileSystem:
    """Counts operations that change the disk and crashes right before the `crash_at`-th."""

    def __init__(self, inner: FileSystem, crash_at: int | None) -> None:
        self.inner = inner
        self.crash_at = crash_at
        self.ops = 0

    def tick(self) -> None:
        self.ops += 1
        if self.crash_at is not None and self.ops == self.crash_at:
            raise _CrashError

    def make_dirs(self, path: str) -> None:
        self.inner.make_dirs(path)

    def create(self, path: str) -> WritableFile:
        self.tick()
        return _CrashingFile(self.inner.create(path), self)

    def open_append(self, path: str, *, position: int) -> WritableFile:
        return _CrashingFile(self.inner.open_append(path, position=position), self)

    def read(self, path: str) -> bytes:
        return self.inner.read(path)

    def truncate(self, path: str, length_bytes: int) -> None:
        self.tick()
        self.inner.truncate(path, length_bytes)

    def rename(self, src: str, dst: str) -> None:
        self.tick()
        self.inner.rename(src, dst)

    def fsync_dir(self, path: str) -> None:
        self.tick()
        self.inner.fsync_dir(path)

    def list_dir(self, path: str) -> list[str]:
        return self.inner.list_dir(path)

    def remove(self, path: str) -> None:
        self.tick()
        self.inner.remove(path)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)


def _workload(d: Driver, seed: int) -> None:
    """A fixed mix of group commits, syncs, installs, snapshots and compactions."""
    rng = random.Random(seed)
    for step in range(80):
        roll = rng.random()
        if roll < 0.7:
            plans = [
                GroupPlan(
                    group=g,
                    back=rng.randint(0, 3),
                    n=rng.randint(0, 5),
                    new_term=rng.random() < 0.1,
                    commit_step=rng.choice([None, 0, 2, 5]),
                    vote=rng.randint(0, 3),
                )
                for g in rng.sample(GROUPS, rng.randint(1, 3))
            ]
            d.ready(plans, sync=rng.random() < 0.6)
        elif roll < 0.8:
            d.install(rng.choice(GROUPS), rng.randint(1, 6), new_term=step % 2 == 0, sync=True)
        else:
            d.snapshot(rng.choice(GROUPS), rng.choice([0, 3]))


def _count_ops(seed: int) -> int:
    _, fs = sim_fs(seed)
    crashing = CrashingFileSystem(fs, None)
    d = Driver(crashing, GROUPS, segment_bytes_max=1024)
    crashing.ops = 0
    _workload(d, seed)
    return crashing.ops


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_crash_before_any_file_operation_recovers_a_synced_prefix(seed: int) -> None:
    total = _count_ops(seed)
    assert total > 150, f"the workload exercises only {total} operations"
    for crash_at in range(1, total + 1):
        for tear in (False, True):
            disk, fs = sim_fs(seed * 100_000 + crash_at)
            crashing = CrashingFileSystem(fs, None)
            d = Driver(crashing, GROUPS, segment_bytes_max=1024)
            crashing.ops, crashing.crash_at = 0, crash_at
            with pytest.raises(_CrashError):
                _workload(d, seed)
            disk.crash(tear=tear)
            crashing.crash_at = None
            d.recover_and_check(exact_snapshot=False)
            # The recovered node keeps working and survives a clean restart.
            d.ready([GroupPlan(group=g, n=2, commit_step=1) for g in GROUPS], sync=True)
            disk.crash(tear=False)
            d.recover_and_check(exact_snapshot=False)


# -- corruption -------------------------------------------------------------------------------


def _synced_node(seed: int) -> tuple[SimDisk, Driver]:
    disk, fs = sim_fs(seed)
    d = Driver(fs, GROUPS, segment_bytes_max=1024)
    rng = random.Random(seed)
    for _ in range(30):
        plans = [
            GroupPlan(group=g, n=rng.randint(1, 4), commit_step=rng.randint(0, 3))
            for g in rng.sample(GROUPS, rng.randint(1, 3))
        ]
        d.ready(plans, sync=True)
    d.snapshot(1, 0)
    d.ready([GroupPlan(group=2, n=3, commit_step=1)], sync=True)
    return disk, d


def _records(disk: SimDisk) -> list[tuple[str, int, int, RecordType]]:
    """(file, start, end, type) of every record of every live segment, in log order."""
    out: list[tuple[str, int, int, RecordType]] = []
    names = sorted(n for n in disk.list_dir("wal"))
    for i, name in enumerate(names):
        file = f"wal/{name}"
        data = disk.read(file)
        recs, end = scan_records(data, disk.path(file), final=i == len(names) - 1)
        starts = [off for off, _, _ in recs] + [end]
        out += [(file, starts[j], starts[j + 1], recs[j][1]) for j in range(len(recs))]
    return out


def _flip(disk: SimDisk, file: str, offset: int, bit: int) -> None:
    byte = disk.read(file)[offset]
    disk.write(file, offset, bytes([byte ^ (1 << bit)]))
    disk.sync(file)


@given(seed=st.integers(0, 1000), pick=st.integers(0, 10**6), bit=st.integers(0, 7))
@settings(max_examples=150, derandomize=True, deadline=None)
def test_a_flipped_bit_in_any_record_but_the_last_refuses_with_path_and_offset(
    seed: int, pick: int, bit: int
) -> None:
    disk, d = _synced_node(seed % 20)
    d.wal.close()
    records = _records(disk)[:-1]  # the very last record is the torn-tail exception
    file, start, end, rtype = records[pick % len(records)]
    offset = start + (pick // len(records)) % (end - start)
    _flip(disk, file, offset, bit)
    with pytest.raises(CorruptRecordError) as err:
        open_sim(d.fs, segment_bytes_max=1024)
    assert err.value.path == disk.path(file), f"{rtype.name} record at {start}"
    assert err.value.offset == start, f"{rtype.name} record at {start}, flipped {offset}"


@pytest.mark.parametrize("seed", range(10))
def test_a_flipped_bit_in_the_last_payload_loses_only_that_unconfirmable_batch(seed: int) -> None:
    # NB of storage.records: damage to the very last payload looks like a torn write. (The
    # batch was synced here, but recovery cannot tell it from one that was not.)
    disk, d = _synced_node(seed)
    d.wal.close()
    file, start, end, rtype = _records(disk)[-1]
    assert rtype == RecordType.BATCH
    payload_start = start + HEADER_BYTES
    _flip(disk, file, payload_start + (seed * 7919) % (end - payload_start), seed % 8)
    _, _, recovered = open_sim(d.fs, segment_bytes_max=1024)
    assert recovered[2].entries[-1].index == d.models[2].last - 3, "the last batch is dropped"
    data = disk.read(file)
    assert data.count(0, start) == len(data) - start, "the damaged tail was cut"


@pytest.mark.parametrize("seed", range(10))
def test_a_flipped_bit_in_the_last_header_is_corruption(seed: int) -> None:
    # A damaged header with its payload after it is not what a torn write leaves.
    disk, d = _synced_node(seed)
    d.wal.close()
    file, start, _end, _ = _records(disk)[-1]
    _flip(disk, file, start + seed % HEADER_BYTES, seed % 8)
    with pytest.raises(CorruptRecordError) as err:
        open_sim(d.fs, segment_bytes_max=1024)
    assert (err.value.path, err.value.offset) == (disk.path(file), start)


@pytest.mark.parametrize("seed", range(20))
def test_simdisk_corruption_is_always_detected(seed: int) -> None:
    disk, d = _synced_node(seed)
    d.wal.close()
    where = disk.corrupt()
    assert where is not None
    with pytest.raises(CorruptRecordError) as err:
        open_sim(d.fs, segment_bytes_max=1024)
    assert (err.value.path, err.value.offset) == where


def test_a_zeroed_record_in_a_closed_segment_is_a_gap_not_an_end() -> None:
    # A lost write (the disk dropped a synced sector) leaves zeros where a batch was; the
    # batch sequence of the next segment catches what a zero scan alone would call an end.
    disk, d = _synced_node(5)
    d.wal.close()
    records = _records(disk)
    first_file = records[0][0]
    file, start, _end, _ = [r for r in records if r[0] == first_file][-1]
    size = len(disk.read(file))
    disk.write(file, start, bytes(size - start))
    disk.sync(file)
    with pytest.raises(DurableStateError, match="previous segment ended before batch"):
        open_sim(d.fs, segment_bytes_max=1024)


def test_zeros_then_data_inside_a_segment_is_corruption() -> None:
    disk, d = _synced_node(6)
    d.wal.close()
    file, start, _end, _ = _records(disk)[2]
    disk.write(file, start, bytes(13))
    disk.sync(file)
    with pytest.raises(CorruptRecordError) as err:
        open_sim(d.fs, segment_bytes_max=1024)
    assert (err.value.path, err.value.offset) == (disk.path(file), start)
    assert err.value.reason == "zeroed header followed by data"


def test_disk_paths_name_the_node() -> None:
    disk, fs = sim_fs()
    assert disk.path("wal") == f"{NODE}/wal"
    assert WAL_DIR.startswith(NODE)
    assert fs.list_dir(WAL_DIR) == []


def _crashed_node(
    seed: int, crash_at: int, tear: bool
) -> tuple[SimDisk, Driver, CrashingFileSystem]:
    disk, fs = sim_fs(seed * 7 + crash_at)
    crashing = CrashingFileSystem(fs, None)
    d = Driver(crashing, GROUPS, segment_bytes_max=1024)
    crashing.ops, crashing.crash_at = 0, crash_at
    with pytest.raises(_CrashError):
        _workload(d, seed)
    disk.crash(tear=tear)
    crashing.ops, crashing.crash_at = 0, None
    return disk, d, crashing


@pytest.mark.parametrize("seed", [1, 2])
def test_a_crash_during_recovery_recovers_the_same_way(seed: int) -> None:
    total = _count_ops(seed)
    exercised = 0
    for workload_crash in range(total // 7, total, total // 7):
        _, d, crashing = _crashed_node(seed, workload_crash, tear=True)
        d.recover_and_check(exact_snapshot=False)
        recovery_ops = crashing.ops  # truncation, re-preallocation, marks, deletions
        exercised += recovery_ops
        for crash_at in range(1, recovery_ops + 1):
            disk, d, crashing = _crashed_node(seed, workload_crash, tear=True)
            crashing.crash_at = crash_at
            with pytest.raises(_CrashError):
                d.recover_and_check(exact_snapshot=False)
            crashing.crash_at = None
            disk.crash(tear=crash_at % 2 == 0)
            d.recover_and_check(exact_snapshot=False)
    assert exercised > 20, f"recoveries did only {exercised} file operations in all"

"""Failures found while the simulator and the core were being developed, kept as tests.

Seeds are only stable for one version of the simulator (any change in how it draws random
numbers reshuffles every run), so each bug the sweep found is pinned twice: by the seed that
found it, replayed with today's swarm, and by a test of the exact mechanism that was wrong.
"""

from __future__ import annotations

import random

import pytest

from quorumdb.raft import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from quorumdb.sim.disk import WAL_DIR, SimDisk
from quorumdb.sim.disk_fs import SimFileSystem
from quorumdb.sim.loop import EventLoop
from quorumdb.sim.network import SimNet
from quorumdb.sim.options import ALL_FAULTS, SimOptions
from quorumdb.sim.simulator import run
from quorumdb.sim.sweep import run_seed
from quorumdb.storage.durable import DurableStorage
from quorumdb.storage.records import CorruptRecordError
from quorumdb.storage.snapshots import SnapshotStore
from quorumdb.storage.wal import WAL, GroupWrite, RecoveredGroup

REGRESSION_SEEDS = {
    22: "corruption of the final WAL record looked like a torn tail (leader completeness)",
    31: "corruption of the final WAL record looked like a torn tail (leader completeness)",
}


@pytest.mark.parametrize("seed", sorted(REGRESSION_SEEDS), ids=lambda s: f"seed-{s}")
def test_regression_seed_passes(seed: int) -> None:
    outcome = run_seed(seed, ALL_FAULTS, frozenset())
    assert outcome.ok, f"{REGRESSION_SEEDS[seed]}: {outcome.first_violation}"


def _wal_on_disk(seed: int) -> tuple[SimDisk, SimFileSystem, int]:
    """A node's WAL after a few synced saves (small segments: several of them); the last
    index written."""
    rng = random.Random(seed)
    disk = SimDisk("n1", random.Random(seed))
    fs = SimFileSystem(disk)
    wal, _ = _open_wal(fs)
    index = 0
    for term in range(1, rng.randint(2, 12)):
        n = rng.randint(1, 6)
        entries = [
            Entry(term=term, index=index + i, data=b"x" * rng.randint(0, 90))
            for i in range(1, n + 1)
        ]
        index += n
        hs = HardState(term=term, vote=1, commit=index - rng.randint(0, n))
        wal.save([GroupWrite(group=0, entries=entries, hard_state=hs)], sync=rng.random() < 0.8)
    wal.sync()
    return disk, fs, index


def _open_wal(fs: SimFileSystem) -> tuple[WAL, dict[int, RecoveredGroup]]:
    snaps = SnapshotStore(fs, "n1/snap")
    return WAL.open(fs, f"n1/{WAL_DIR}", snapshots=snaps, segment_bytes_max=512)


@pytest.mark.parametrize("seed", range(200))
def test_disk_corruption_is_always_detected_never_truncated(seed: int) -> None:
    # Found by seeds 22 and 31 (single-file WAL days): a flipped bit in the final record is
    # indistinguishable from a torn write, so the fault must never target it; every
    # corruption must be *detected*. Now the log is the WAL's segments: the last record of
    # the newest one is the exception, the last record of a closed segment is not.
    disk, fs, _ = _wal_on_disk(seed)
    disk.crash(tear=False)
    where = disk.corrupt()
    assert where is not None
    with pytest.raises(CorruptRecordError) as err:
        _open_wal(fs)
    assert (err.value.path, err.value.offset) == where


@pytest.mark.parametrize("seed", range(20))
def test_an_intact_wal_recovers_everything_it_synced(seed: int) -> None:
    # The other half of the recovery check: a node refuses to start only on corruption.
    disk, fs, last = _wal_on_disk(seed)
    disk.crash(tear=seed % 2 == 0)
    _, recovered = _open_wal(fs)
    assert recovered[0].entries[-1].index == last


def test_a_run_without_faults_advances_time_and_commits() -> None:
    # Found by the first smoke run: the tick timer rescheduled itself at the current instant
    # forever (virtual time never advanced).
    opts = SimOptions(seed=1, faults=frozenset(), fault_phase_us=500_000)
    result = run(opts)
    assert result.ok
    assert result.stats["sim_us"] >= 500_000
    assert result.stats["committed"] > 0


def test_client_links_never_duplicate() -> None:
    # Found by the commit-previous-term sweep (seed 135 at the time): a duplicated client
    # request was proposed after its first copy had been refused, so the client recorded
    # "fail" for a write that took effect. Clients talk over TCP-like links.
    loop = EventLoop()
    net = SimNet(
        loop,
        random.Random(1),
        latency_min_us=1,
        latency_mean_us=10,
        loss=0.0,
        duplicate=1.0,
        fifo=False,
    )
    got: list[int] = []
    for i in range(100):
        net.send(-1, 1, got.append, i, partitionable=False)
    loop.run_until(10_000_000)
    assert sorted(got) == list(range(100))


def _open_group(disk: SimDisk) -> tuple[WAL, DurableStorage]:
    fs = SimFileSystem(disk)
    snaps = SnapshotStore(fs, "n1/snap")
    wal, recovered = WAL.open(fs, f"n1/{WAL_DIR}", snapshots=snaps, segment_bytes_max=4096)
    st = DurableStorage(0, wal, snaps, recovered.get(0), conf_state=ConfState(voters=(1, 2, 3)))
    return wal, st


@pytest.mark.parametrize("synced", [True, False], ids=["mark-synced", "mark-lost"])
def test_installed_snapshot_never_leaves_an_older_commit_on_disk(synced: bool) -> None:
    # Found by the sweep after crash-in-sync was added (single-file WAL days): installing a
    # leader's snapshot rewrote the WAL with the old hard state (commit below the snapshot
    # index); a crash before the new hard state was synced then made the node refuse its
    # own WAL. Now: the snapshot file is durable before the WAL records the installation,
    # and recovery raises the commit to the snapshot's index, whether or not that record
    # (here without a hard state) reached the disk.
    disk = SimDisk("n1", random.Random(1))
    wal, st = _open_group(disk)
    w = st.persist(
        [Entry(term=1, index=i) for i in range(1, 5)], HardState(term=2, vote=1, commit=3), None
    )
    assert w is not None
    wal.save([w], sync=True)
    snap = Snapshot(
        metadata=SnapshotMetadata(conf_state=ConfState(voters=(1, 2, 3)), index=10, term=2)
    )
    w = st.persist([], None, snap)
    assert w is not None
    assert w.hard_state is None
    wal.save([w], sync=synced)
    disk.crash(tear=False)
    _, st = _open_group(disk)
    hs, _ = st.initial_state()
    assert hs.commit == 10
    assert st.snapshot().metadata.index == 10
    assert st.last_index() == 10  # nothing of the old log after the snapshot

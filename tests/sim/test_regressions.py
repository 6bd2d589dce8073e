"""Failures found while the simulator and the core were being developed, kept as tests.

Seeds are only stable for one version of the simulator (any change in how it draws random
numbers reshuffles every run), so each bug the sweep found is pinned twice: by the seed that
found it, replayed with today's swarm, and by a test of the exact mechanism that was wrong.
"""

from __future__ import annotations

import random

import pytest

from quorumdb.raft import ConfState, Entry, HardState
from quorumdb.sim.disk import SimDisk
from quorumdb.sim.loop import EventLoop
from quorumdb.sim.network import SimNet
from quorumdb.sim.options import ALL_FAULTS, SimOptions
from quorumdb.sim.simulator import run
from quorumdb.sim.sweep import run_seed
from quorumdb.storage.records import CorruptRecordError, RecordType, decode_records, encode_record

REGRESSION_SEEDS = {
    22: "corruption of the final WAL record looked like a torn tail (leader completeness)",
    31: "corruption of the final WAL record looked like a torn tail (leader completeness)",
}


@pytest.mark.parametrize("seed", sorted(REGRESSION_SEEDS), ids=lambda s: f"seed-{s}")
def test_regression_seed_passes(seed: int) -> None:
    outcome = run_seed(seed, ALL_FAULTS, frozenset())
    assert outcome.ok, f"{REGRESSION_SEEDS[seed]}: {outcome.first_violation}"


@pytest.mark.parametrize("seed", range(200))
def test_disk_corruption_is_always_detected_never_truncated(seed: int) -> None:
    # Found by seeds 22 and 31: a flipped bit in the final record is indistinguishable from a
    # torn write, so the fault must never target it; every corruption must be *detected*.
    disk = SimDisk("n1", random.Random(seed))
    for i in range(random.Random(seed).randint(2, 6)):
        disk.append("wal", encode_record(RecordType.ENTRIES, bytes([i]) * (i + 3)))
    disk.sync("wal")
    where = disk.corrupt()
    assert where is not None
    with pytest.raises(CorruptRecordError) as err:
        decode_records(disk.read("wal"), disk.path("wal"))
    assert err.value.offset == where[1]


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


def test_installed_snapshot_never_leaves_an_older_commit_on_disk() -> None:
    # Found by the sweep after crash-in-sync was added: installing a leader's snapshot
    # rewrote the WAL with the old hard state (commit below the snapshot index); a crash
    # before the new hard state was synced then made the node refuse its own WAL.
    from quorumdb.raft import Snapshot, SnapshotMetadata
    from quorumdb.sim.node import SimNode

    class Host:
        loop = EventLoop()

    opts = SimOptions(seed=1, nodes=3)
    node = SimNode(Host(), 1, (1, 2, 3), opts, 1)  # type: ignore[arg-type]
    assert node.start()
    node.storage.set_hard_state(HardState(term=2, vote=1, commit=3))
    node.storage.append([Entry(term=1, index=i) for i in range(1, 5)])
    snap = Snapshot(
        metadata=SnapshotMetadata(conf_state=ConfState(voters=(1, 2, 3)), index=10, term=2)
    )
    node.storage.apply_snapshot(snap)
    node._rewrite_wal()
    node.crash(tear=False)
    assert node.start(), node.failed_reason
    assert node.raw is not None
    assert node.raw.raft.raft_log.committed == 10

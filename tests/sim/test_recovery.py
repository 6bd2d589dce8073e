"""Recovery on the real storage code, as scenarios (STYLE §3.7): a node refuses to start if and
only if its disk was corrupted, and the simulator flags either half of that going wrong.

Each scenario runs a fault-free 3-node cluster with clients for a while (small WAL segments,
frequent snapshots: several segments and snapshot files exist), then does one thing to one
node by hand.
"""

from __future__ import annotations

import pytest

from quorumdb.sim.disk import WAL_DIR
from quorumdb.sim.options import US_PER_S, SimOptions
from quorumdb.sim.simulator import Simulation


def _running_cluster() -> Simulation:
    opts = SimOptions(
        seed=3,
        faults=frozenset(),
        wal_segment_bytes_max=1024,
        snapshot_every=30,
        snapshot_keep=5,
    )
    sim = Simulation(opts)
    for i in sorted(sim.nodes):
        sim.restart(i)
    for c in sim.clients.values():
        c.start()
    sim.loop.run_until(2 * US_PER_S)
    assert not sim.violations
    return sim


def _segments(sim: Simulation, node: int) -> list[str]:
    return sim.nodes[node].disk.list_dir(WAL_DIR)


def test_cluster_recovery_every_node_restarts_from_its_wal_and_snapshots() -> None:
    sim = _running_cluster()
    node = sim.nodes[1]
    assert len(_segments(sim, 1)) >= 2
    assert node.disk.list_dir("snap/0"), "local snapshots were written"
    assert node.storage is not None
    # Crash between syncs, so every entry in memory is also on disk.
    sim.loop.run_until(sim.loop.now + US_PER_S, stop=lambda: not node.syncing)
    assert not node.syncing
    before = node.log_entries()
    node.crash(tear=False)
    sim.restart(1)
    assert node.up
    assert node.applied >= node.snapshot_index > 0
    # Entries the snapshot covers may stay compacted; everything after it is recovered as it was.
    after = node.log_entries()
    assert after, "the WAL held entries past the snapshot"
    assert after[0][0] == node.snapshot_index + 1
    assert after == [e for e in before if e[0] > node.snapshot_index]
    sim.loop.run_until(sim.loop.now + US_PER_S)
    assert not sim.violations


@pytest.mark.parametrize("seed", range(5))
def test_cluster_recovery_a_corrupted_wal_record_makes_the_node_refuse_to_start(seed: int) -> None:
    sim = _running_cluster()
    node = sim.nodes[2]
    node.crash(tear=False)
    node.disk.rng.seed(seed)
    where = node.disk.corrupt()
    assert where is not None
    sim.nemesis.corrupted.add(2)
    sim.restart(2)
    assert not node.up
    assert node.failed_reason is not None
    assert f"corrupt record in {where[0]} at offset {where[1]}" in node.failed_reason
    sim.loop.run_until(sim.loop.now + US_PER_S)
    assert not sim.violations, "a majority is left: the cluster carries on"


def test_cluster_recovery_a_node_starting_from_a_corrupted_disk_is_a_violation() -> None:
    # Undetected corruption, played by a nemesis that believes it corrupted the disk.
    sim = _running_cluster()
    sim.nodes[3].crash(tear=False)
    sim.nemesis.corrupted.add(3)
    sim.restart(3)
    assert sim.caught_by == ["corruption-detection"]


def test_cluster_recovery_a_node_refusing_an_intact_disk_is_a_violation() -> None:
    # A lost segment is not a fault the simulator injects: refusing to start is then a bug.
    sim = _running_cluster()
    node = sim.nodes[1]
    node.crash(tear=False)
    segments = _segments(sim, 1)
    assert len(segments) >= 3, segments
    node.disk.remove(f"{WAL_DIR}/{segments[1]}")
    sim.restart(1)
    assert not node.up
    assert sim.caught_by == ["recovery"]
    assert "is missing" in sim.violations[0]

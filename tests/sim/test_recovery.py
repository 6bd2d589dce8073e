"""Cluster-level recovery in the simulator: the real host restarts from its WAL and snapshots,
refuses a corrupted disk (naming the file and offset), and the run's recovery checks fire
exactly when they should (a refusal of an intact disk, a start from a corrupted one)."""

from __future__ import annotations

import pytest

from quorumdb.host.node_host import NodeHost
from quorumdb.sim.disk import WAL_DIR
from quorumdb.sim.options import US_PER_S, SimOptions
from quorumdb.sim.simulator import Simulation


def _running_cluster(snapshot_entries: int = 30) -> Simulation:
    opts = SimOptions(
        seed=3, faults=frozenset(), wal_segment_bytes=4096, snapshot_entries=snapshot_entries
    )
    sim = Simulation(opts)
    for i in sorted(sim.nodes):
        sim.restart(i)
    for c in sim.clients:
        sim._schedule_client(c, 10_000)
    sim.loop.run_until(2 * US_PER_S)
    assert not sim.violations
    return sim


def _segments(sim: Simulation, node: int) -> list[str]:
    return sim.nodes[node].disk.list_dir(WAL_DIR)


def _logs(host: NodeHost) -> dict[int, list[tuple[int, int, bytes]]]:
    out = {}
    for gid, glog in host.logs.items():
        st = glog.storage
        entries = st.entries(st.first_index(), st.last_index() + 1, 1 << 62)
        out[gid] = [(e.index, e.term, e.data) for e in entries]
    return out


def test_cluster_recovery_every_node_restarts_from_its_wal_and_snapshots() -> None:
    sim = _running_cluster()
    node = sim.nodes[1]
    # Segments rotated, and those the snapshots made useless were deleted.
    assert int(_segments(sim, 1)[0].removesuffix(".seg")) > 1
    assert node.disk.list_dir("snap"), "local snapshots were written"
    host = node.host
    assert host is not None
    # Crash between WAL writes, so every entry in memory is also on disk.
    sim.loop.run_until(sim.loop.now + US_PER_S, stop=lambda: host._writing is None)
    assert host._writing is None
    before = _logs(host)
    snapshot_index = {gid: g.snapshot_index for gid, g in host.groups.items()}
    assert any(snapshot_index.values()), "some group was snapshotted"
    node.crash(tear=False)
    sim.restart(1)
    restarted = node.host
    assert restarted is not None
    after = _logs(restarted)
    for gid, entries in before.items():
        # Entries a snapshot covers may stay compacted; everything after it is recovered.
        snap = restarted.groups[gid].snapshot_index
        assert snap >= snapshot_index[gid]
        assert after[gid] == [e for e in entries if e[0] > snap]
        assert restarted.groups[gid].sm.applied >= snap
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
    assert node.refused is not None
    assert f"corrupt record in {where[0]} at offset {where[1]}" in node.refused
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
    sim = _running_cluster(snapshot_entries=100_000)
    node = sim.nodes[1]
    sim.loop.run_until(sim.loop.now + US_PER_S, stop=lambda: len(_segments(sim, 1)) >= 3)
    node.crash(tear=False)
    segments = _segments(sim, 1)
    assert len(segments) >= 3, segments
    node.disk.remove(f"{WAL_DIR}/{segments[1]}")
    sim.restart(1)
    assert not node.up
    assert sim.caught_by == ["recovery"]
    assert "missing" in sim.violations[0]

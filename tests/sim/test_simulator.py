"""The simulator runs real nodes (`NodeHost` with the KV store, and Kafka in some seeds) under
the swarm's faults; its checkers pass on the real code and the fault kinds do happen."""

from __future__ import annotations

import pytest

from quorumdb.sim.options import SimOptions, swarm_options
from quorumdb.sim.simulator import Simulation, run


@pytest.mark.parametrize("seed", [9, 12, 16, 23])
def test_swarm_seeds_pass_on_the_real_node_and_do_work(seed: int) -> None:
    result = run(swarm_options(seed))
    assert result.ok, result.violations
    assert result.stats["ops_ok"] > 20, "the clients got almost nothing done"
    assert result.stats["committed"] > 0


def test_membership_changes_run_to_completion() -> None:
    """Seed 9 adds a node to every group and removes it again, twice, under faults."""
    result = run(swarm_options(9))
    assert result.ok, result.violations
    assert result.stats["membership_changes"] >= 2


def test_kafka_runs_in_some_swarm_seeds() -> None:
    result = run(swarm_options(16))
    assert result.options.kafka
    assert result.ok, result.violations
    assert result.stats["kafka_acked"] > 100


def test_the_mid_flight_path_runs() -> None:
    """Entries are applied while this node's own WAL write runs (the host's mid-flight path,
    through the core's storage channel): pinned by a seed, so the path stays exercised."""
    result = run(swarm_options(12))
    assert result.ok, result.violations
    assert result.stats["midflight_applied"] > 0


def test_a_paused_node_does_nothing_until_it_resumes() -> None:
    sim = Simulation(SimOptions(seed=1, faults=frozenset()))
    for i in sorted(sim.nodes):
        sim.restart(i)
    sim.loop.run_until(500_000)
    node = sim.nodes[2]
    host = node.host
    assert host is not None
    rounds = host.rounds
    node.pause(1_000_000)
    sim.loop.run_until(1_400_000)
    assert host.rounds == rounds, "a paused process runs no rounds"
    sim.loop.run_until(1_600_000)
    assert node.host is host
    assert host.rounds > rounds, "it resumed where it stopped"
    assert not sim.violations

"""Kafka in the simulation: every node runs the real Kafka backend; idempotent producers and
consumers go through its produce and read paths; `check_delivery` judges the history."""

from __future__ import annotations

from dataclasses import replace

import pytest

from quorumdb.raft import PlantedBug
from quorumdb.sim.options import SimOptions, swarm_options
from quorumdb.sim.simulator import run

SEEDS = range(1, 4)  # a bounded subset for CI; `quorumdb sim sweep` runs Kafka in 40% of seeds


def _kafka(seed: int, bugs: frozenset[PlantedBug] = frozenset()) -> SimOptions:
    # Kafka alone: the transaction workloads would share the run's time with the producers.
    options = swarm_options(seed, planted_bugs=bugs)
    return replace(options, kafka=True, bank=False, list_append=False)


@pytest.mark.parametrize("seed", SEEDS)
def test_kafka_on_the_real_host_delivers_under_faults(seed: int) -> None:
    result = run(_kafka(seed))
    assert result.ok, f"seed {seed}: {result.violations}"
    assert result.stats["kafka_acked"] > 20, "the producers got almost nothing acknowledged"


def test_a_kafka_run_replays_exactly_from_its_seed() -> None:
    a = run(_kafka(11))
    b = run(_kafka(11))
    assert a.trace_digest == b.trace_digest
    assert a.stats == b.stats
    assert run(replace(_kafka(11), kafka=False)).trace_digest != a.trace_digest


def _first_catch(bug: PlantedBug, seeds: range) -> tuple[int, list[str]] | None:
    for seed in seeds:
        result = run(_kafka(seed, frozenset({bug})))
        if not result.ok:
            return seed, result.caught_by
    return None


def test_records_served_above_the_commit_index_are_caught() -> None:
    """PlantedBug.KAFKA_ABOVE_COMMIT: the read path serves the leader's Raft log beyond what
    was applied; records read there and then truncated, deduplicated or renumbered show up
    as duplicates or inconsistent offsets in the delivery check."""
    caught = _first_catch(PlantedBug.KAFKA_ABOVE_COMMIT, range(1, 21))
    assert caught is not None, "not caught in 20 Kafka seeds"
    seed, checkers = caught
    assert "kafka-delivery" in checkers
    # Without the bug, the same seed passes: the checker reacts to the bug, not the workload.
    assert run(_kafka(seed)).ok

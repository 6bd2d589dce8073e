"""Kafka in the host simulation: every node runs the real Kafka backend; idempotent producers
and consumers go through its produce and read paths; `check_delivery` judges the history."""

from __future__ import annotations

import pytest

from quorumdb.raft import PlantedBug
from quorumdb.sim.host_sim import HostSimOptions, run_host_sim

SEEDS = range(1, 4)  # a bounded subset for CI; `quorumdb sim host --kafka` sweeps more
KAFKA_ABOVE_COMMIT_SEED = 1  # the first seed of 1..500 whose run catches the planted bug


@pytest.mark.parametrize("seed", SEEDS)
def test_kafka_on_the_real_host_delivers_under_faults(seed: int) -> None:
    result = run_host_sim(HostSimOptions(seed=seed, kafka=True))
    assert result.ok, f"seed {seed}: {result.violations}"
    assert result.kafka_acked > 20, "the producers got almost nothing acknowledged"
    assert result.crashes > 0, "the nemesis crashed no node"


def test_a_kafka_run_replays_exactly_from_its_seed() -> None:
    a = run_host_sim(HostSimOptions(seed=11, kafka=True))
    b = run_host_sim(HostSimOptions(seed=11, kafka=True))
    assert a.digest == b.digest
    assert (a.operations, a.events, a.kafka_acked) == (b.operations, b.events, b.kafka_acked)
    assert run_host_sim(HostSimOptions(seed=11)).digest != a.digest


def test_records_served_above_the_commit_index_are_caught() -> None:
    """PlantedBug.KAFKA_ABOVE_COMMIT: the read path serves the leader's Raft log beyond what
    was applied; records read there and then truncated, deduplicated or renumbered show up
    as duplicates or inconsistent offsets in the delivery check."""
    bug = frozenset({PlantedBug.KAFKA_ABOVE_COMMIT})
    result = run_host_sim(
        HostSimOptions(seed=KAFKA_ABOVE_COMMIT_SEED, kafka=True, planted_bugs=bug)
    )
    assert not result.ok
    assert any(v.startswith("kafka delivery: ") for v in result.violations), result.violations
    # Without the bug, the same seed passes: the checker reacts to the bug, not the workload.
    assert run_host_sim(HostSimOptions(seed=KAFKA_ABOVE_COMMIT_SEED, kafka=True)).ok

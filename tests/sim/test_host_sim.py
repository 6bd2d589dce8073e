"""The simulator runs the real NodeHost (KV shards, controller, WAL, snapshots, mid-flight
work) under crashes and partitions; the checkers must pass, and must catch planted bugs."""

from __future__ import annotations

import pytest

from quorumdb.raft import PlantedBug
from quorumdb.sim.host_sim import HostSimOptions, run_host_sim

SEEDS = range(1, 7)  # a bounded subset for CI; sweeps run many more


@pytest.mark.parametrize("seed", SEEDS)
def test_the_real_host_stays_safe_and_live_under_faults(seed: int) -> None:
    result = run_host_sim(HostSimOptions(seed=seed))
    assert result.ok, f"seed {seed}: {result.violations}"
    assert result.ok_operations > 20, "the clients got almost nothing done"
    assert result.crashes > 0, "the nemesis crashed no node"


def test_a_run_replays_exactly_from_its_seed() -> None:
    a = run_host_sim(HostSimOptions(seed=11))
    b = run_host_sim(HostSimOptions(seed=11))
    assert a.digest == b.digest
    assert (a.operations, a.events) == (b.operations, b.events)
    assert run_host_sim(HostSimOptions(seed=12)).digest != a.digest


def test_the_mid_flight_path_runs_when_the_disk_is_slow_sometimes() -> None:
    """Entries are applied while a WAL write runs (the host's mid-flight path) in a run whose
    disk latency has a slow tail: pinned by a seed, so the path stays exercised."""
    result = run_host_sim(HostSimOptions(seed=6))
    assert result.ok, result.violations
    assert result.midflight_applied > 0


@pytest.mark.parametrize(
    ("bug", "seeds"),
    [
        (PlantedBug.STALE_LOCAL_READS, range(1, 6)),
        (PlantedBug.APPEND_WITHOUT_PREV_TERM_CHECK, range(30, 34)),
    ],
)
def test_planted_bugs_in_the_real_host_are_caught(bug: PlantedBug, seeds: range) -> None:
    for seed in seeds:
        result = run_host_sim(HostSimOptions(seed=seed, planted_bugs=frozenset({bug})))
        if not result.ok:
            return
    pytest.fail(f"{bug.value} was not caught in seeds {seeds.start}..{seeds.stop - 1}")

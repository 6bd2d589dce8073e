"""The checks must be able to fail: each planted Raft bug is caught by the seed sweep.

Each test sweeps swarm seeds 1, 2, ... with one `PlantedBug` switched on and stops at the
first violation; it must come within `SEEDS_MAX` seeds and from a checker that can see that
kind of bug. The seed that first caught each bug when this test was written is noted beside
it (it moves whenever the simulator draws its random numbers differently).
"""

from __future__ import annotations

import pytest

from quorumdb.raft import PlantedBug
from quorumdb.sim.options import ALL_FAULTS
from quorumdb.sim.sweep import SeedOutcome, run_seed

SEEDS_MAX = 500

EXPECTED: dict[PlantedBug, tuple[frozenset[str], int]] = {
    # bug: (checkers that may catch it, first catching seed when written)
    PlantedBug.COMMIT_PREVIOUS_TERM_BY_COUNT: (
        frozenset({"leader-completeness", "state-machine-safety", "linearizability"}),
        56,
    ),
    PlantedBug.VOTE_BEFORE_PERSIST: (
        frozenset({"election-safety", "leader-completeness", "state-machine-safety"}),
        170,
    ),
    PlantedBug.STALE_LOCAL_READS: (frozenset({"linearizability"}), 2),
    PlantedBug.LEASE_WITHOUT_QUORUM: (frozenset({"linearizability"}), 38),
    PlantedBug.APPEND_WITHOUT_PREV_TERM_CHECK: (
        frozenset(
            {"state-machine-safety", "log-matching", "leader-completeness", "invariant-assertion"}
        ),
        5,
    ),
    PlantedBug.ACK_BEFORE_SYNC: (
        frozenset(
            {"leader-completeness", "state-machine-safety", "election-safety", "linearizability"}
        ),
        26,
    ),
}


def _first_failure(bug: PlantedBug) -> SeedOutcome | None:
    for seed in range(1, SEEDS_MAX + 1):
        outcome = run_seed(seed, ALL_FAULTS, frozenset({bug}))
        if not outcome.ok:
            return outcome
    return None


@pytest.mark.parametrize("bug", list(PlantedBug), ids=lambda b: b.value)
def test_sweep_catches_planted_bug(bug: PlantedBug) -> None:
    checkers, _first_seed_when_written = EXPECTED[bug]
    caught = _first_failure(bug)
    assert caught is not None, f"{bug.value}: not caught within {SEEDS_MAX} seeds"
    assert set(caught.caught_by) & checkers, (
        f"{bug.value} caught at seed {caught.seed} by {caught.caught_by}, "
        f"expected one of {sorted(checkers)}: {caught.first_violation}"
    )


def test_every_planted_bug_has_an_expectation() -> None:
    assert set(EXPECTED) == set(PlantedBug)

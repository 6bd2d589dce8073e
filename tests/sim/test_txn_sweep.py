"""The bounded CI subset of the transaction soak: swarm seeds with the bank and list-append
workloads forced on (every fault kind allowed) all pass: no balance drift, no anomaly Elle
forbids at serializable, and live after the heal. The soak is
`quorumdb sim sweep --seeds 1-1000 --workload bank --workload list-append`."""

from __future__ import annotations

import pytest

from quorumdb.sim.options import ALL_FAULTS
from quorumdb.sim.sweep import run_seed

SEEDS = range(1, 21)
_TXN = frozenset({"bank", "list-append"})


@pytest.mark.parametrize("seed", SEEDS)
def test_transactions_keep_their_guarantees_under_faults(seed: int) -> None:
    outcome = run_seed(seed, ALL_FAULTS, frozenset(), _TXN)
    assert outcome.ok, f"seed {seed}: {outcome.first_violation}"
    assert "bank" in outcome.options and "list-append" in outcome.options.replace("_", "-")


def test_seed_617_a_duplicated_conflicted_commit_does_not_apply_later() -> None:
    """Found by the soak: a one-shard commit answered CONFLICT (not remembered by the session
    then); a duplicate of its entry applied later and wrote, while the coordinator, told
    CONFLICT, retried, failed validation against that very write and reported a failure:
    Elle saw a read of a failed transaction's append (G1a). Sessions now remember a CONFLICT
    for copies of the request; a deliberate retry counts up `Command.attempt`."""
    outcome = run_seed(617, ALL_FAULTS, frozenset(), _TXN)
    assert outcome.ok, outcome.first_violation

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

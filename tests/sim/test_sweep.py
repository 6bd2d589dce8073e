"""The CI slice of the seed sweep: 240 swarm seeds, every fault kind, zero violations.

The soak (`quorumdb sim sweep --seeds 1-10000`) is the long version; see the README.
"""

from __future__ import annotations

import pytest

from quorumdb.sim.options import ALL_FAULTS
from quorumdb.sim.sweep import run_seed

CHUNKS = 12
SEEDS_PER_CHUNK = 20


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_swarm_seeds_have_no_violations_and_recover(chunk: int) -> None:
    seeds = range(1 + chunk * SEEDS_PER_CHUNK, 1 + (chunk + 1) * SEEDS_PER_CHUNK)
    failed = []
    committed = 0
    for seed in seeds:
        outcome = run_seed(seed, ALL_FAULTS, frozenset())
        committed += outcome.stats["committed"]
        if not outcome.ok:
            failed.append(
                f"seed {seed} ({', '.join(outcome.caught_by)}): {outcome.first_violation}"
            )
    assert not failed, "\n".join(failed)
    # The runs did real work: entries were committed and applied.
    assert committed > 10 * SEEDS_PER_CHUNK

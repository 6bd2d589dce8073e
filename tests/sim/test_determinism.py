"""The same seed gives the same run: equal trace digests and equal histories."""

from __future__ import annotations

import pytest

from quorumdb.sim.options import swarm_options
from quorumdb.sim.simulator import run


@pytest.mark.parametrize("seed", [1, 7, 42, 1234])
def test_same_seed_same_trace_digest_and_history(seed: int) -> None:
    first = run(swarm_options(seed))
    second = run(swarm_options(seed))
    assert first.trace_digest == second.trace_digest
    assert first.history == second.history
    assert first.stats == second.stats


def test_different_seeds_give_different_runs() -> None:
    digests = {run(swarm_options(seed)).trace_digest for seed in (1, 2, 3)}
    assert len(digests) == 3


def test_kept_trace_hashes_to_the_same_digest() -> None:
    plain = run(swarm_options(5))
    traced = run(swarm_options(5), keep_trace=True)
    assert traced.trace_lines
    assert plain.trace_digest == traced.trace_digest

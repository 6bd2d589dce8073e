"""Generated histories: real registers must pass, planted anomalies must be caught, and on tiny
arbitrary histories the checker must agree with a brute-force oracle."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings

from quorumdb.check import Verdict, check_linearizable, history_from_events
from tests.check.generate import (
    RegisterRun,
    plant_impossible_read,
    plant_stale_read,
    register_history,
)
from tests.check.oracle import is_linearizable
from tests.check.strategies import tiny_histories

SHAPES = [
    # (operations, processes, keys, info_percent, value_pool)
    (300, 3, 1, 0, 0),
    (300, 5, 2, 5, 0),
    (300, 8, 1, 10, 3),
    (500, 5, 4, 3, 2),
    (200, 12, 1, 15, 0),
]


def _generate(seed: int, shape: tuple[int, int, int, int, int]) -> RegisterRun:
    operations, processes, keys, info_percent, pool = shape
    return register_history(
        random.Random(seed),
        operations=operations,
        processes=processes,
        keys=keys,
        info_percent=info_percent,
        value_pool=pool,
    )


def _assert_caught(run: RegisterRun, planted: int) -> None:
    result = check_linearizable(history_from_events(run.events))
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    cx = result.counterexample
    assert cx is not None
    # The planted read is the first completion nothing explains, so it is the one named.
    assert cx.key == run.events[planted]["key"]
    assert cx.operation.complete_index == planted
    assert cx.operation in cx.window


_SHAPE_IDS = "ops{}-p{}-k{}-info{}-pool{}".format


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: _SHAPE_IDS(*s))
def test_a_real_register_is_linearizable(seed: int, shape: tuple[int, int, int, int, int]) -> None:
    result = check_linearizable(history_from_events(_generate(seed, shape).events))
    assert result.verdict is Verdict.LINEARIZABLE, result.counterexample


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: _SHAPE_IDS(*s))
def test_a_planted_impossible_read_is_caught(
    seed: int, shape: tuple[int, int, int, int, int]
) -> None:
    run = _generate(seed, shape)
    _assert_caught(run, plant_impossible_read(random.Random(seed), run))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("shape", [s for s in SHAPES if s[4] == 0], ids=lambda s: _SHAPE_IDS(*s))
def test_a_planted_stale_read_is_caught(seed: int, shape: tuple[int, int, int, int, int]) -> None:
    # Fresh values only: with a value pool, an overwritten value may always come back.
    run = _generate(seed, shape)
    planted = plant_stale_read(random.Random(seed), run)
    assert planted is not None, "every shape here has overwritten values to read"
    _assert_caught(run, planted)


def test_a_large_history_with_many_orphans_is_linearizable() -> None:
    run = register_history(
        random.Random(7), operations=3_000, processes=10, keys=1, info_percent=20, value_pool=4
    )
    result = check_linearizable(history_from_events(run.events))
    assert result.verdict is Verdict.LINEARIZABLE


@settings(max_examples=1500, derandomize=True, deadline=None)
@given(tiny_histories())
def test_the_checker_agrees_with_brute_force(events: list[dict[str, object]]) -> None:
    history = history_from_events(events)
    expected = is_linearizable(history.operations)
    result = check_linearizable(history)
    assert result.verdict is (Verdict.LINEARIZABLE if expected else Verdict.NOT_LINEARIZABLE)

"""Hand-written histories with known answers: classic anomalies, and their harmless cousins."""

from __future__ import annotations

import pytest

from quorumdb.check import Verdict, check_linearizable
from tests.check.rows import history

LINEARIZABLE: dict[str, tuple[str, ...]] = {
    "empty": (),
    "sequential write then read": (
        "1 invoke write x 1",
        "1 ok write x 1",
        "2 invoke read x",
        "2 ok read x 1",
    ),
    "read of an absent key is null": ("1 invoke read x", "1 ok read x null"),
    "a read concurrent with a write may see the old value": (
        "1 invoke write x 1",
        "2 invoke read x",
        "2 ok read x null",
        "1 ok write x 1",
    ),
    "a read concurrent with a write may see the new value": (
        "1 invoke write x 1",
        "2 invoke read x",
        "2 ok read x 1",
        "1 ok write x 1",
    ),
    # The long write must take effect before the short one for the read to see 2 ... or after
    # it, for a read of 1: one order each.
    "concurrent writes ordered the only way the read allows": (
        "1 invoke write x 1",
        "2 invoke write x 2",
        "2 ok write x 2",
        "3 invoke read x",
        "3 ok read x 1",
        "1 ok write x 1",
    ),
    "an info write that later appears": (
        "1 invoke write x 1",
        "1 info write x 1",
        "2 invoke read x",
        "2 ok read x null",
        "2 invoke read x",
        "2 ok read x 1",
    ),
    "an info write that never appears": (
        "1 invoke write x 1",
        "1 info write x 1",
        "2 invoke read x",
        "2 ok read x null",
    ),
    "a write with no completion takes effect long after": (
        "1 invoke write x 1",
        "2 invoke write x 2",
        "2 ok write x 2",
        "2 invoke read x",
        "2 ok read x 2",
        "2 invoke read x",
        "2 ok read x 1",
    ),
    "an info cas that took effect": (
        "1 invoke write x 0",
        "1 ok write x 0",
        "2 invoke cas x [0, 1]",
        "2 info cas x [0, 1]",
        "3 invoke read x",
        "3 ok read x 0",
        "3 invoke read x",
        "3 ok read x 1",
    ),
    "a failed write did not take effect": (
        "1 invoke write x 1",
        "1 fail write x 1",
        "2 invoke read x",
        "2 ok read x null",
    ),
    "a failed cas leaves the value": (
        "1 invoke write x 0",
        "1 ok write x 0",
        "2 invoke cas x [5, 6]",
        "2 fail cas x [5, 6]",
        "2 invoke read x",
        "2 ok read x 0",
    ),
    "an info read constrains nothing": (
        "1 invoke write x 1",
        "1 ok write x 1",
        "2 invoke read x",
        "2 info read x",
    ),
    "delete makes the key absent, and cas from null then succeeds": (
        "1 invoke write x 1",
        "1 ok write x 1",
        "1 invoke delete x",
        "1 ok delete x",
        "2 invoke read x",
        "2 ok read x null",
        "2 invoke cas x [null, 5]",
        "2 ok cas x [null, 5]",
        "2 invoke read x",
        "2 ok read x 5",
    ),
    "numbers compare as JSON numbers": (
        "1 invoke write x 1",
        "1 ok write x 1",
        "2 invoke read x",
        "2 ok read x 1.0",
    ),
    "independent keys": (
        "1 invoke write x 1",
        "2 invoke write y 2",
        "1 ok write x 1",
        "2 ok write y 2",
        "3 invoke read y",
        "3 ok read y 2",
        "3 invoke read x",
        "3 ok read x 1",
    ),
    "a reused process id after an info": (
        "1 invoke write x 1",
        "1 info write x 1",
        "1 invoke write x 2",
        "1 ok write x 2",
        "2 invoke read x",
        "2 ok read x 1",
    ),
}

NOT_LINEARIZABLE: dict[str, tuple[str, ...]] = {
    "stale read: a completed write is not seen": (
        "1 invoke write x 1",
        "1 ok write x 1",
        "2 invoke read x",
        "2 ok read x null",
    ),
    "lost write: the value goes back after an acknowledged write": (
        "1 invoke write x 1",
        "1 ok write x 1",
        "2 invoke write x 2",
        "3 invoke read x",
        "3 ok read x 2",
        "2 ok write x 2",
        "3 invoke read x",
        "3 ok read x 1",
    ),
    "two cas(0, 1) both succeed": (
        "1 invoke write x 0",
        "1 ok write x 0",
        "1 invoke cas x [0, 1]",
        "2 invoke cas x [0, 1]",
        "2 ok cas x [0, 1]",
        "1 ok cas x [0, 1]",
    ),
    "a read of a value never written": (
        "1 invoke write x 1",
        "2 invoke read x",
        "2 ok read x 3",
        "1 ok write x 1",
    ),
    "reads see two concurrent writes in both orders": (
        "1 invoke write x 1",
        "2 invoke write x 2",
        "3 invoke read x",
        "3 ok read x 1",
        "3 invoke read x",
        "3 ok read x 2",
        "3 invoke read x",
        "3 ok read x 1",
        "1 ok write x 1",
        "2 ok write x 2",
    ),
    "an info write appears, disappears and appears again": (
        "1 invoke write x 1",
        "1 info write x 1",
        "2 invoke read x",
        "2 ok read x 1",
        "2 invoke read x",
        "2 ok read x null",
    ),
    "an info cas applied twice": (
        "1 invoke write x 0",
        "1 ok write x 0",
        "2 invoke cas x [0, 1]",
        "2 info cas x [0, 1]",
        "3 invoke read x",
        "3 ok read x 1",
        "1 invoke write x 0",
        "1 ok write x 0",
        "3 invoke read x",
        "3 ok read x 1",
    ),
    "a read after a completed delete sees the old value": (
        "1 invoke write x 1",
        "1 ok write x 1",
        "1 invoke delete x",
        "1 ok delete x",
        "2 invoke read x",
        "2 ok read x 1",
    ),
    "a cas from null succeeds on a present key": (
        "1 invoke write x 1",
        "1 ok write x 1",
        "2 invoke cas x [null, 2]",
        "2 ok cas x [null, 2]",
    ),
    "a failed write is seen": (
        "1 invoke write x 1",
        "1 fail write x 1",
        "2 invoke read x",
        "2 ok read x 1",
    ),
    "true is not 1": (
        "1 invoke write x true",
        "1 ok write x true",
        "2 invoke read x",
        "2 ok read x 1",
    ),
    "a string is not a number": (
        "1 invoke write x 1",
        "1 ok write x 1",
        "2 invoke read x",
        '2 ok read x "1"',
    ),
}


@pytest.mark.parametrize("rows", LINEARIZABLE.values(), ids=LINEARIZABLE.keys())
def test_linearizable_history(rows: tuple[str, ...]) -> None:
    result = check_linearizable(history(*rows))
    assert result.verdict is Verdict.LINEARIZABLE
    assert result.ok
    assert result.counterexample is None


@pytest.mark.parametrize("rows", NOT_LINEARIZABLE.values(), ids=NOT_LINEARIZABLE.keys())
def test_not_linearizable_history(rows: tuple[str, ...]) -> None:
    result = check_linearizable(history(*rows))
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert not result.ok
    assert result.counterexample is not None
    assert result.counterexample.key == "x"


def test_only_the_broken_key_fails() -> None:
    result = check_linearizable(
        history(
            "1 invoke write x 1",
            "1 ok write x 1",
            "2 invoke write y 1",
            "2 ok write y 1",
            "3 invoke read x",
            "3 ok read x 1",
            "3 invoke read y",
            "3 ok read y null",
        )
    )
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert {k.key: k.verdict for k in result.keys} == {
        "x": Verdict.LINEARIZABLE,
        "y": Verdict.NOT_LINEARIZABLE,
    }
    assert result.counterexample is not None
    assert result.counterexample.key == "y"
    assert [k.operation_count for k in result.keys] == [2, 2]


def _concurrent_writes_then_impossible_read(writes: int) -> tuple[str, ...]:
    """Writes that all overlap, each read in turn, then the first again: exponential search."""
    rows = [f"{p} invoke write x {p}" for p in range(writes)]
    for value in [*range(writes), 0]:
        rows += ["99 invoke read x", f"99 ok read x {value}"]
    rows += [f"{p} ok write x {p}" for p in range(writes)]
    return tuple(rows)


def test_an_exhausted_budget_is_unknown_not_linearizable() -> None:
    hard = history(*_concurrent_writes_then_impossible_read(12))
    result = check_linearizable(hard, max_states=500)
    assert result.verdict is Verdict.UNKNOWN
    assert not result.ok
    assert result.counterexample is None
    assert result.keys[0].explored_states == 501
    # With enough budget the same history gets a definite answer.
    assert check_linearizable(hard).verdict is Verdict.NOT_LINEARIZABLE


def test_a_definite_failure_wins_over_an_unknown_key() -> None:
    rows = (
        *_concurrent_writes_then_impossible_read(12),
        "100 invoke write y 1",
        "100 ok write y 1",
        "100 invoke read y",
        "100 ok read y 2",
    )
    result = check_linearizable(history(*rows), max_states=500)
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert [k.verdict for k in result.keys] == [Verdict.UNKNOWN, Verdict.NOT_LINEARIZABLE]


def test_many_identical_info_writes_cost_linear_states() -> None:
    # 40 interchangeable info writes per value: without symmetry breaking, 2^40 subsets.
    rows = [f"{p} invoke write x {p % 2}" for p in range(80)]
    for i in range(81):
        rows += ["99 invoke read x", f"99 ok read x {i % 2}"]
    result = check_linearizable(history(*rows), max_states=10_000)
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert result.keys[0].explored_states < 1_000


def test_max_states_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_states must be positive"):
        check_linearizable(history(), max_states=0)

"""Linearizability of register histories: is there one order of the operations, consistent with
real time, in which every read returns the latest write?

The checker partitions the history by key (P-compositionality, Herlihy & Wing 1990: a history
of independent objects is linearizable iff each object's subhistory is), compiles each key to
the register model (`_register`), and runs the Wing & Gong search with Lowe's memo and
Porcupine's linked list (`_search`). A key that fails gets a counterexample (`_window`).

Operations whose outcome is unknown (``info``, or never completed) may take effect at any point
after their invoke, or never; ``fail`` operations and reads without an ``ok`` are dropped.

Before searching, one cheap test: an operation that needs a value no operation invoked before
its completion writes (garbage, or a read from the future) fails in every order. Then only the
history before it is searched, to learn whether an earlier failure comes first: no exhaustive
search is spent proving what is plain.

The search is exponential in the worst case (the problem is NP-complete, Gibbons & Korach
1997), so every key gets a budget of explored states; a key that exhausts it is ``UNKNOWN``,
which is reported as such and never as linearizable.
"""

from __future__ import annotations

from collections.abc import Sequence

from quorumdb.check._register import ABSENT, Register, compile_register
from quorumdb.check._result import Counterexample, KeyResult, LinearizabilityResult, Verdict
from quorumdb.check._search import search
from quorumdb.check._window import find_counterexample, impossible_counterexample
from quorumdb.check.history import History, Operation

__all__ = [
    "DEFAULT_MAX_STATES",
    "Counterexample",
    "KeyResult",
    "LinearizabilityResult",
    "Verdict",
    "check_linearizable",
]

DEFAULT_MAX_STATES = 1_000_000
"""States explored per key before giving up: a few seconds of CPython. Valid histories with up
to ~20 concurrent clients per key need about one to thirty per operation. The memo keeps a
bitset per state, so memory grows with states x operations-per-key / 8 bytes."""


def check_linearizable(
    history: History, *, max_states: int = DEFAULT_MAX_STATES
) -> LinearizabilityResult:
    """Check that a history of register operations is linearizable, key by key.

    Args:
        history: a validated history (`parse_history`, `history_from_events`).
        max_states: the search budget per key; building a counterexample for a failing key
            gets the same budget again.

    Returns:
        The overall verdict, one `KeyResult` per key (sorted), and a counterexample for each
        key that is not linearizable.
    """
    if max_states < 1:
        raise ValueError(f"max_states must be positive, got {max_states}")
    keys = tuple(
        _check_key(key, ops, max_states=max_states) for key, ops in history.by_key().items()
    )
    verdicts = {result.verdict for result in keys}
    if Verdict.NOT_LINEARIZABLE in verdicts:
        verdict = Verdict.NOT_LINEARIZABLE
    elif Verdict.UNKNOWN in verdicts:
        verdict = Verdict.UNKNOWN
    else:
        verdict = Verdict.LINEARIZABLE
    return LinearizabilityResult(
        verdict=verdict,
        keys=keys,
        operation_count=len(history.operations),
        max_states=max_states,
    )


def _check_key(key: str, operations: Sequence[Operation], *, max_states: int) -> KeyResult:
    register = compile_register(operations)
    impossible = register.first_impossible()
    if impossible is not None:
        return _check_impossible(key, register, impossible, len(operations), max_states)
    outcome = search(register.steps, ABSENT, max_states=max_states)
    counterexample = None
    if outcome.found is None:
        verdict = Verdict.UNKNOWN
    elif outcome.found:
        verdict = Verdict.LINEARIZABLE
    else:
        verdict = Verdict.NOT_LINEARIZABLE
        counterexample = find_counterexample(key, register, outcome.stuck, max_states=max_states)
    return KeyResult(
        key=key,
        verdict=verdict,
        operation_count=len(operations),
        explored_states=outcome.explored,
        counterexample=counterexample,
    )


def _check_impossible(
    key: str, register: Register, culprit: int, operation_count: int, max_states: int
) -> KeyResult:
    """A key with an operation no state explains: certainly not linearizable. Search only the
    history before its completion, to know whether it is the first failure or an earlier one
    is (the search then names that one)."""
    completion = register.steps[culprit].ret
    outcome = search(register.before(completion), ABSENT, max_states=max_states)
    if outcome.found is False:
        counterexample = find_counterexample(key, register, outcome.stuck, max_states=max_states)
    else:
        through = completion - 1 if outcome.found else None
        counterexample = impossible_counterexample(
            key, register, culprit, linearizable_through=through
        )
    return KeyResult(
        key=key,
        verdict=Verdict.NOT_LINEARIZABLE,
        operation_count=operation_count,
        explored_states=outcome.explored,
        counterexample=counterexample,
    )

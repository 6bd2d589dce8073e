"""A brute-force linearizability oracle for tiny histories, written independently of the checker.

It tries every order of the operations (with a memo, so ten operations stay fast), reading
the history's `Operation` values directly: none of `_register`, `_search` or `_window` is used,
so agreeing with it means something.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

from quorumdb.check import Function, Operation, Outcome
from quorumdb.check.history import Value

__all__ = ["configs_at", "is_linearizable", "same_value"]


def same_value(a: object, b: object) -> bool:
    """JSON equality: true is not 1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def is_linearizable(
    ops: Sequence[Operation],
    *,
    initial: Value = None,
    required: Iterable[int] | None = None,
) -> bool:
    """Whether some real-time-respecting order of ``ops`` explains them from ``initial``.

    ``required``: ids that must take effect; default: the ok operations. Others may or may not.
    """
    live = [op for op in ops if _counts(op)]
    must = (
        frozenset(op.id for op in live if op.outcome is Outcome.OK)
        if required is None
        else (frozenset(required) & {op.id for op in live})
    )

    @cache
    def search(done: frozenset[int], state_key: tuple[bool, Value]) -> bool:
        state = state_key[1]
        if must <= done:
            return True
        for op in live:
            if op.id not in done and _may_go(op, live, done, must):
                legal, after = _apply(op, state)
                if legal and search(done | {op.id}, (isinstance(after, bool), after)):
                    return True
        return False

    return search(frozenset(), (isinstance(initial, bool), initial))


def configs_at(
    ops: Sequence[Operation], cut: int
) -> set[tuple[frozenset[int], tuple[bool, Value]]]:
    """Every (applied ids, value) the register can be in just before event ``cut``.

    Only operations invoked before the cut take part; those that completed ok before it must
    have been applied, the others may have been.
    """
    live = [op for op in ops if _counts(op) and op.invoke_index < cut]
    must = frozenset(
        op.id
        for op in live
        if op.outcome is Outcome.OK and op.complete_index is not None and op.complete_index < cut
    )
    found: set[tuple[frozenset[int], tuple[bool, Value]]] = set()
    seen: set[tuple[frozenset[int], tuple[bool, Value]]] = set()

    def walk(done: frozenset[int], state: Value) -> None:
        key = (done, (isinstance(state, bool), state))
        if key in seen:
            return
        seen.add(key)
        if must <= done:
            found.add(key)
        for op in live:
            if op.id not in done and _may_go(op, live, done, must):
                legal, after = _apply(op, state)
                if legal:
                    walk(done | {op.id}, after)

    walk(frozenset(), None)
    return found


def _counts(op: Operation) -> bool:
    return op.outcome is not Outcome.FAIL and not (
        op.f is Function.READ and op.outcome is not Outcome.OK
    )


def _may_go(
    op: Operation, live: Sequence[Operation], done: frozenset[int], must: frozenset[int]
) -> bool:
    # Every required operation that returned before op was invoked must already be applied.
    return all(
        other.id in done
        for other in live
        if other.id in must
        and other.complete_index is not None
        and other.complete_index < op.invoke_index
    )


def _apply(op: Operation, state: Value) -> tuple[bool, Value]:
    if op.f is Function.READ:
        return same_value(op.output, state), state
    if op.f is Function.WRITE:
        assert not isinstance(op.input, tuple)
        return True, op.input
    if op.f is Function.DELETE:
        return True, None
    assert isinstance(op.input, tuple)
    expected, new = op.input
    return same_value(expected, state), new

"""The register model, compiled to small ints so the search's inner loop only compares ints.

Each value a key ever holds gets an id (0 is "absent"); each operation becomes a `Step`: where it
starts, where it must have taken effect, the state it needs and the state it leaves. Reads,
writes, cas and delete then share one rule: legal iff ``need < 0 or state == need``, and the new
state is ``result`` (``result < 0``: unchanged). Nothing else about the model exists at search
time, which is what keeps the search fast and generic.

What is dropped here, because it constrains nothing: ``fail`` operations (they did not take
effect) and reads that did not complete ``ok`` (nobody saw their value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from quorumdb.check.history import Function, Operation, Outcome, Value

__all__ = ["ABSENT", "FREE", "OPTIONAL", "Register", "Step", "compile_register"]

ABSENT = 0
"""The state id of an absent key (JSON null)."""

OPTIONAL = -1
"""`Step.ret` of an operation that may take effect at any time after its call, or never."""

FREE = -2
"""`Step.ret` of an operation that may or may not take effect within the searched stretch of
history, where *which* matters beyond it: an operation still in flight at a cut of the history
(see `_window`). Unlike `OPTIONAL` ones, the search tries these freely, without the shortcuts
that only hold for operations that may never happen at all."""

_ANY = -1
_UNCHANGED = -1
_NEVER = 1 << 62


class Step(NamedTuple):
    """One operation, as the search sees it. A tuple: cheap to build and to slice into windows."""

    call: int
    """Index of the invoke event: the operation takes effect after it."""
    ret: int
    """Index of the event by which it took effect, or `OPTIONAL`, or `FREE`."""
    need: int
    """The state it requires, or -1 for any."""
    result: int
    """The state it leaves, or -1 for unchanged."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Register:
    """One key's operations compiled for the search; ``steps[i]`` is ``operations[i]``."""

    operations: tuple[Operation, ...]
    """The operations that constrain the outcome, in invoke order."""
    steps: tuple[Step, ...]
    values: tuple[Value, ...]
    """``values[state]`` is the value a state id stands for; ``values[ABSENT]`` is None."""

    def first_impossible(self) -> int | None:
        """The required operation that completes first among those that need a value no
        operation invoked before that completion writes (a read of garbage or of a value from
        the future, a cas expecting one), or None.

        No search can place such an operation, so the checker need not prove it by exhausting
        every order of the history before it (which can take forever).
        """
        first_write = {ABSENT: -1}  # the initial state is there from the start
        for step in self.steps:
            if step.result >= 0 and step.call < first_write.get(step.result, _NEVER):
                first_write[step.result] = step.call
        impossible = [
            i
            for i, step in enumerate(self.steps)
            if step.ret >= 0 and step.need >= 0 and first_write.get(step.need, _NEVER) > step.ret
        ]
        return min(impossible, key=lambda i: self.steps[i].ret, default=None)

    def before(self, event: int) -> list[Step]:
        """The operations invoked before ``event``; those not completed by then optional."""
        return [
            step if 0 <= step.ret < event else step._replace(ret=OPTIONAL)
            for step in self.steps
            if step.call < event
        ]


def compile_register(operations: Sequence[Operation]) -> Register:
    """Compile one key's operations (in invoke order), dropping those that constrain nothing."""
    ids: dict[object, int] = {_canonical(None): ABSENT}
    values: list[Value] = [None]

    def state_of(value: Value) -> int:
        canonical = _canonical(value)
        state = ids.get(canonical)
        if state is None:
            state = ids[canonical] = len(values)
            values.append(value)
        return state

    kept: list[Operation] = []
    steps: list[Step] = []
    for op in operations:
        if op.outcome is Outcome.FAIL or (op.f is Function.READ and op.outcome is not Outcome.OK):
            continue
        ret = OPTIONAL if op.return_index is None else op.return_index
        if op.f is Function.READ:
            assert not isinstance(op.output, tuple), op
            step = Step(op.invoke_index, ret, state_of(op.output), _UNCHANGED)
        elif op.f is Function.WRITE:
            assert not isinstance(op.input, tuple), op
            step = Step(op.invoke_index, ret, _ANY, state_of(op.input))
        elif op.f is Function.CAS:
            assert isinstance(op.input, tuple), op
            expected, new = op.input
            step = Step(op.invoke_index, ret, state_of(expected), state_of(new))
        else:
            assert op.f is Function.DELETE, op
            step = Step(op.invoke_index, ret, _ANY, ABSENT)
        kept.append(op)
        steps.append(step)
    return Register(operations=tuple(kept), steps=tuple(steps), values=tuple(values))


def _canonical(value: Value) -> object:
    # JSON equality: Python's True == 1 (and hash(True) == hash(1)), JSON's true is not 1.
    # 1 == 1.0 in both, so numbers need no tag.
    return (bool, value) if isinstance(value, bool) else value

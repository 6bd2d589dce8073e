"""What the linearizability checker returns: a verdict per key and overall, and counterexamples."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from quorumdb.check.history import Operation, Value

__all__ = ["Counterexample", "KeyResult", "LinearizabilityResult", "Verdict"]


class Verdict(StrEnum):
    """The answer for a key or a whole history."""

    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not linearizable"
    UNKNOWN = "unknown"
    """The search budget ran out: no answer, which is not the same as "linearizable"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Counterexample:
    """Why one key is not linearizable, small enough to read in a few seconds.

    Claim: just before event ``window_start`` the key held one of ``start_values`` (in every
    order of the earlier operations that explains them), and from each of those, no order of
    ``window`` explains what its operations returned. ``operation`` is the one that cannot be
    placed: the key's history through event ``linearizable_through`` is linearizable, and its
    completion, the next event, is the first that no order explains.

    When ``unwritten`` is set, ``operation`` needs a value that no operation invoked before its
    completion writes: it cannot be placed from any state, so the window is just that
    operation and there are no start values.
    """

    key: str
    operation: Operation
    window: tuple[Operation, ...]
    """Operations that cannot be ordered, in invoke order; includes ``operation``. Those
    invoked before ``window_start`` were still in flight there."""
    window_start: int
    """Event index at which the window opens."""
    start_values: tuple[Value, ...]
    """Values the key could hold when the window opens; empty when not computed (or not
    needed: ``unwritten``)."""
    sources: tuple[Operation | None, ...]
    """Per start value: the last operation invoked before the window that writes it (None:
    no such operation, the value is the initial absent state)."""
    value_source: Operation | None
    """The last operation invoked before ``operation`` that writes the value it needs (what a
    read returned, what a cas expected); None if there is none or it needs no value."""
    unwritten: bool
    """``operation`` needs a value (reads it, or cas expects it) that no operation invoked
    before its completion writes: garbage, or a read from the future. Worth saying outright."""
    linearizable_through: int | None
    """Event index: the key's history up to and including it is linearizable. None when the
    search budget ran out before that was established (only with ``unwritten``: the
    failure is certain, whether it is the first is not)."""
    minimised: bool
    """False when the search budget stopped the shrinking early: the window is still a valid
    counterexample, only maybe not the smallest (or, with no start values, just the operations
    concurrent with ``operation``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyResult:
    """The verdict for one key (one independent register)."""

    key: str
    verdict: Verdict
    operation_count: int
    """Operations on this key in the history, failed ones included."""
    explored_states: int
    counterexample: Counterexample | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LinearizabilityResult:
    """The verdict for a whole history: not linearizable if any key is not, else unknown if
    any key ran out of budget, else linearizable."""

    verdict: Verdict
    keys: tuple[KeyResult, ...]
    """One per key, sorted by key."""
    operation_count: int
    max_states: int
    """The search budget each key had."""

    @property
    def ok(self) -> bool:
        """Whether the history is known to be linearizable."""
        return self.verdict is Verdict.LINEARIZABLE

    @property
    def explored_states(self) -> int:
        """States the searches visited over all keys (not counting counterexample shrinking)."""
        return sum(key.explored_states for key in self.keys)

    @property
    def counterexample(self) -> Counterexample | None:
        """The counterexample of the first key that is not linearizable, if any."""
        return next((k.counterexample for k in self.keys if k.counterexample), None)

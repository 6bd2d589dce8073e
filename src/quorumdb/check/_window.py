"""Turning a failed search into a counterexample a person can read: a small window of operations.

Theory of operation. The failed search names the first completion no order explains (event R,
of operation X; see `_search`). Cut the key's history at X's invoke, event C:

1. *Configurations at the cut.* Search the operations invoked before C, in collect mode, with
   those that had not completed by C free to take effect or not. Each result is a
   configuration: the state, and which of the still-in-flight operations already took effect.
2. *The window.* The operations still in flight at C plus those invoked in [C, R]; those that
   complete after R are optional. From every configuration, no order of the window explains it:
   otherwise that configuration's order followed by the window's would explain the history
   through R. So "the key held one of these values at C, then these operations happened" is
   already a valid counterexample, and usually a small one (X and what overlapped it).
3. *Shrinking.* Drop operations from the window, in chunks and then one at a time, while (a)
   it still fails from every configuration and (b) without X it is still explained from some
   configuration. Rule (b) keeps the story about X: dropping, say, the write whose value a
   read returned would fail too, but for a reason (a value never written) that is not the
   real one.

Every search here draws on one state budget; when it runs out the best window so far is
returned (still valid), marked as not minimised.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from quorumdb.check._register import ABSENT, FREE, OPTIONAL, Register, Step
from quorumdb.check._result import Counterexample
from quorumdb.check._search import Config, Outcome, search
from quorumdb.check.history import Operation

__all__ = ["find_counterexample", "impossible_counterexample"]


class _BudgetExhaustedError(Exception):
    """Control flow only: unwinds the shrinking when the shared budget is spent."""


class _Budget:
    __slots__ = ("left",)

    def __init__(self, states: int) -> None:
        self.left = states

    def search(
        self,
        steps: Sequence[Step],
        initial: int,
        *,
        collect: bool = False,
        needed_later: frozenset[int] = frozenset(),
    ) -> Outcome:
        outcome = search(
            steps, initial, max_states=self.left, collect=collect, needed_later=needed_later
        )
        self.left -= outcome.explored
        if outcome.found is None:
            raise _BudgetExhaustedError
        return outcome

    def found(self, steps: Sequence[Step], initial: int) -> bool:
        return bool(self.search(steps, initial).found)


def find_counterexample(
    key: str, register: Register, stuck: int, *, max_states: int
) -> Counterexample:
    """Build the counterexample for a key whose search failed at completion event ``stuck``."""
    steps = register.steps
    culprit = next(i for i, step in enumerate(steps) if step.ret == stuck)
    cut = steps[culprit].call
    budget = _Budget(max_states)
    try:
        # What the window's own operations need (nothing after it matters to the window).
        later = frozenset(s.need for s in steps[culprit:] if s.call <= stuck and s.need >= 0)
        configs = _configs_at(steps[:culprit], cut, budget, needed_later=later)
    except _BudgetExhaustedError:
        return _concurrent_only(key, register, culprit, stuck)
    # An optional operation whose result nothing needs is never applied (`_search`, rule 2):
    # it cannot matter, so it does not enter the window.
    needed = {step.need for step in steps if step.need >= 0}
    window = [
        i
        for i in range(culprit)
        if not 0 <= steps[i].ret < cut and (steps[i].ret != OPTIONAL or steps[i].result in needed)
    ]
    window += [j for j in range(culprit, len(steps)) if steps[j].call <= stuck]
    shrinker = _Shrinker(steps, configs, culprit=culprit, stuck=stuck, budget=budget)
    window, minimised = shrinker.shrink(window)
    states = sorted({s for _, s in configs})
    return Counterexample(
        key=key,
        operation=register.operations[culprit],
        window=tuple(register.operations[i] for i in window),
        window_start=cut,
        start_values=tuple(register.values[s] for s in states),
        sources=tuple(_source(register, culprit, s) for s in states),
        value_source=_source(register, culprit, steps[culprit].need),
        linearizable_through=stuck - 1,
        minimised=minimised,
        unwritten=False,
    )


def impossible_counterexample(
    key: str, register: Register, culprit: int, *, linearizable_through: int | None
) -> Counterexample:
    """The counterexample for an operation that needs a value nothing wrote in time.

    It fails from any state on its own, so the window is just that operation.
    """
    op = register.operations[culprit]
    return Counterexample(
        key=key,
        operation=op,
        window=(op,),
        window_start=op.invoke_index,
        start_values=(),
        sources=(),
        value_source=None,
        linearizable_through=linearizable_through,
        minimised=True,
        unwritten=True,
    )


def _source(register: Register, culprit: int, state: int) -> Operation | None:
    if state < 0:
        return None
    writers = (i for i in range(culprit) if register.steps[i].result == state)
    last = max(writers, default=None)
    return None if last is None else register.operations[last]


def _configs_at(
    prefix: Sequence[Step], cut: int, budget: _Budget, *, needed_later: frozenset[int]
) -> list[Config]:
    # Still in flight at the cut: operations that completed ok later are FREE (whether they
    # took effect before the cut decides what the window must still explain); info ones stay
    # OPTIONAL (they may never take effect, before or after). An info write may land just
    # before the cut to feed a read after it: ``needed_later`` keeps those configurations, so
    # the window need not keep that write to stay true.
    in_flight = [
        s if 0 <= s.ret < cut or s.ret == OPTIONAL else s._replace(ret=FREE) for s in prefix
    ]
    outcome = budget.search(in_flight, ABSENT, collect=True, needed_later=needed_later)
    # The history through the completion before the stuck one is linearizable, so is this cut.
    assert outcome.found, f"no configuration at cut {cut}"
    optional = sum(1 << i for i, step in enumerate(prefix) if step.ret == OPTIONAL)
    return _undominated(outcome.configs, optional)


def _undominated(configs: Iterable[Config], optional: int) -> list[Config]:
    """Drop each configuration that another one dominates: same state, same in-flight ok
    operations applied, and a subset of its optional ones. Whatever the window does from the
    dominated one, it can do from the other (skipping the extra optional operations), so a
    window that fails from the others fails from it too."""
    groups: dict[tuple[int, int], list[int]] = {}
    for lin, state in configs:
        groups.setdefault((lin & ~optional, state), []).append(lin & optional)
    kept: list[Config] = []
    for (fixed, state), used in groups.items():
        # A subset has no more bits: by size, each set need only be checked against the
        # minimal ones kept so far.
        minimal: list[int] = []
        for u in sorted(set(used), key=int.bit_count):
            if not any(v & u == v for v in minimal):
                minimal.append(u)
        kept += [(fixed | u, state) for u in minimal]
    return kept


def _concurrent_only(key: str, register: Register, culprit: int, stuck: int) -> Counterexample:
    cut = register.steps[culprit].call
    concurrent = tuple(
        op
        for op, step in zip(register.operations, register.steps, strict=True)
        if step.call <= stuck and (step.ret == OPTIONAL or step.ret >= cut)
    )
    return Counterexample(
        key=key,
        operation=register.operations[culprit],
        window=concurrent,
        window_start=cut,
        start_values=(),
        sources=(),
        value_source=_source(register, culprit, register.steps[culprit].need),
        linearizable_through=stuck - 1,
        minimised=False,
        unwritten=False,
    )


class _Shrinker:
    """Removal from the window, in chunks and then one by one, to a fixed point or the budget.

    Chunks first (delta debugging's complement step, Zeller 2002): most of a large window is
    usually noise, and removing it a half or a quarter at a time costs a few searches instead
    of one per operation.
    """

    __slots__ = ("_budget", "_configs", "_culprit", "_steps", "_stuck")

    def __init__(
        self,
        steps: Sequence[Step],
        configs: Sequence[Config],
        *,
        culprit: int,
        stuck: int,
        budget: _Budget,
    ) -> None:
        # Seen from the window, an operation that completes after the stuck one is optional.
        self._steps = [s if 0 <= s.ret <= stuck else s._replace(ret=OPTIONAL) for s in steps]
        self._configs = configs
        self._culprit = culprit
        self._stuck = stuck
        self._budget = budget

    def shrink(self, window: list[int]) -> tuple[list[int], bool]:
        try:
            fails = self._fails(window)
            assert fails, f"window {window} is explained from some configuration"
            chunks = 2
            while True:
                order = self._removal_order(window)
                if not order:
                    break
                size = max(1, len(order) // chunks)
                removed = False
                for start in range(0, len(order), size):
                    drop = set(order[start : start + size])
                    trial = [i for i in window if i not in drop]
                    if self._fails(trial) and self._explained_without_culprit(trial):
                        window, removed = trial, True
                if size == 1 and not removed:
                    break
                if not removed:
                    chunks *= 2
        except _BudgetExhaustedError:
            return window, False
        return window, True

    def _removal_order(self, window: list[int]) -> list[int]:
        # Optional operations first (usually noise), then the farthest from the culprit.
        culprit_call = self._steps[self._culprit].call

        def rank(i: int) -> tuple[bool, int]:
            step = self._steps[i]
            return (step.ret != OPTIONAL, -abs(step.call - culprit_call))

        return sorted((i for i in window if i != self._culprit), key=rank)

    def _fails(self, window: list[int]) -> bool:
        return not any(self._budget.found(steps, s) for steps, s in self._problems(window))

    def _explained_without_culprit(self, window: list[int]) -> bool:
        rest = [i for i in window if i != self._culprit]
        return any(self._budget.found(steps, s) for steps, s in self._problems(rest))

    def _problems(self, window: list[int]) -> Iterable[tuple[list[Step], int]]:
        """The window as seen from each distinct configuration at the cut."""
        in_flight = 0
        for i in window:
            if i < self._culprit:
                in_flight |= 1 << i
        seen: set[tuple[int, int]] = set()
        for lin, state in self._configs:
            pending = in_flight & ~lin
            if (pending, state) in seen:
                continue
            seen.add((pending, state))
            steps = self._steps
            yield [steps[i] for i in window if i >= self._culprit or pending >> i & 1], state

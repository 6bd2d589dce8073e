"""Depth-first search for a linearization of one register's operations.

Theory of operation (Wing & Gong 1993; Lowe 2017, "Testing for linearizability"; Porcupine's
``checkSingle``). A *required* operation (completed ``ok``) contributes a *call* entry at its
invoke and a *return* entry at its completion; the entries sit in a doubly linked list in event
order. The search walks the list from the head:

- at a call entry, it tries to *linearize* the operation now: if the model allows it from the
  current state, and the resulting configuration was never seen before, it pushes the choice,
  *lifts* the call and return entries out of the list, and starts again from the head;
- at a return entry, some operation had to take effect before this point. The search first
  tries the optional operations (below); when none fits either, no order tried so far works:
  it pops the last choice, puts its entries back (dancing links: a removed entry keeps its own
  pointers, and removals are undone in LIFO order) and tries the next candidate after it;
- when no required operation is left, the history is linearizable.

The memo is sound because the future of a configuration depends only on the model state and on
which operations are linearized (an int used as a bitset); state ids are small ints (see
`_register`), so the loop compares ints and allocates one tuple and a few ints per new state.

*Optional* operations (``info``, or never completed) may take effect at any time after their
invoke, or never. They are where the search explodes (k of them: 2^k subsets, each at many
points), so they get their own list, sorted by invoke, and four rules:

1. *Required first.* They are tried only after the required calls before the first return
   entry, and only those invoked before that return (real-time order).
2. *Only when needed.* An optional operation is applied only if the very next operation applied
   *needs* the state it leaves (a read of its value, a cas expecting it). Nothing is lost: in
   any linearization, an applied optional operation followed by one that ignores the state (a
   write, a delete, or nothing) can be deleted and the rest stays legal; repeat until every one
   feeds the next. An ``info`` write whose value nobody reads is never tried.
3. *Twins in order.* Optional operations with the same need and result are interchangeable,
   except that an earlier invoke can go anywhere a later one can; so one is tried only once its
   earlier twin is linearized. n identical ``info`` writes cost n states, not 2^n.
4. *Fewer is better.* Two configurations with the same state and the same required operations
   linearized, where one has used a subset of the other's optional operations: the first can
   do everything the second can (it may skip the extra ones forever). So the memo keeps, per
   (required set, state), the optional sets seen, and a configuration using a superset of one
   of them is not explored again.

The deepest return entry the walk ever reaches is the first completion that no linearization of
the history before it explains: the history up to that event is linearizable, the history
including it is not (linearizability is prefix-closed). `Outcome.stuck` reports it.

In *collect* mode the search does not stop at the first success: it records every reachable
configuration in which all required operations are linearized (except those rule 4 shows to be
dominated: same state, more optional operations used). The counterexample minimiser uses them
as the register's possible configurations at a cut of the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from quorumdb.check._register import OPTIONAL, Step

__all__ = ["Config", "Outcome", "search"]

Config = tuple[int, int]
"""(bitset of linearized operations, model state)."""

_FAR = 1 << 62  # the position of the list tails: after every event
_CALL = 0
_OPTIONAL_CALL = 1
_RETURN = 2  # also the tail of the main list
_END = 3  # the tail of the optional list


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one search found."""

    found: bool | None
    """True: linearizable; False: not; None: the state budget ran out first."""
    explored: int
    """Configurations visited."""
    stuck: int
    """On failure: event index of the first completion no order explains; else -1."""
    configs: tuple[Config, ...] = ()
    """Collect mode only: the reachable configurations with all required operations done."""


def search(
    steps: Sequence[Step], initial: int, *, max_states: int, collect: bool = False
) -> Outcome:
    """Search for a linearization of ``steps`` starting from model state ``initial``.

    Args:
        steps: the operations; bit ``i`` of a configuration's bitset is ``steps[i]``.
        initial: the model state before any of them.
        max_states: give up (``found=None``) after visiting this many configurations.
        collect: explore everything and return the configurations where all required
            operations are linearized (``found`` tells whether there is any).
    """
    return _walk(_Links.build(steps), initial, max_states=max_states, collect=collect)


@dataclass(frozen=True, slots=True)
class _Links:
    """Both entry lists as parallel arrays indexed by entry id (cheaper than an object each).

    Ids: 0 is the head of the main list, then its entries in event order, then its tail; then
    the head of the optional list, its entries in invoke order, its tail.
    """

    nxt: list[int]
    prv: list[int]
    kind: list[int]
    position: list[int]
    """Event index of the entry."""
    need: list[int]
    result: list[int]
    bit: list[int]
    """Call entries: ``1 << i`` for ``steps[i]``."""
    mate: list[int]
    """Required call entries: their return entry."""
    twin: list[int]
    """Optional call entries: the bit of the previous optional operation with the same need
    and result (0: none)."""
    optional_head: int

    @staticmethod
    def build(steps: Sequence[Step]) -> _Links:
        required = [(s.call, i, True) for i, s in enumerate(steps) if s.ret != OPTIONAL]
        required += [(s.ret, i, False) for i, s in enumerate(steps) if s.ret != OPTIONAL]
        optional = [(s.call, i, True) for i, s in enumerate(steps) if s.ret == OPTIONAL]
        main = [(-1, -1, False), *sorted(required), (_FAR, -1, False)]
        side = [(-1, -1, False), *sorted(optional), (_FAR, -1, False)]
        size = len(main) + len(side)
        links = _Links(
            nxt=[*range(1, size), size - 1],
            prv=[0, *range(size - 1)],
            kind=[_CALL] * size,
            position=[pos for pos, _, _ in main + side],
            need=[0] * size,
            result=[0] * size,
            bit=[0] * size,
            mate=[0] * size,
            twin=[0] * size,
            optional_head=len(main),
        )
        # Close each list on its own tail.
        links.nxt[len(main) - 1] = len(main) - 1
        links.prv[len(main)] = len(main)
        call_entry = [0] * len(steps)
        for entry, (_, i, is_call) in enumerate(main):
            if not is_call:
                links.kind[entry] = _RETURN
                if i >= 0:
                    links.mate[call_entry[i]] = entry
                continue
            links.fill_call(entry, steps[i], i)
            call_entry[i] = entry
        last_twin: dict[tuple[int, int], int] = {}
        for entry, (_, i, is_call) in enumerate(side, start=len(main)):
            links.kind[entry] = _OPTIONAL_CALL if is_call else _END
            if is_call:
                links.fill_call(entry, steps[i], i)
                kind = (steps[i].need, steps[i].result)
                links.twin[entry] = last_twin.get(kind, 0)
                last_twin[kind] = 1 << i
        return links

    def fill_call(self, entry: int, step: Step, i: int) -> None:
        self.need[entry] = step.need
        self.result[entry] = step.result
        self.bit[entry] = 1 << i


def _dominated(optional: int, seen: list[int]) -> bool:
    """Whether a seen optional set is a subset of ``optional`` (rule 4); if not, remember it."""
    if optional in seen:
        return True
    for old in seen:
        if old & optional == old:
            return True
    seen.append(optional)
    return False


def _walk(links: _Links, initial: int, *, max_states: int, collect: bool) -> Outcome:
    # Locals, not attribute lookups, in the loop below: it is the whole cost of a check.
    nxt, prv, kind, position = links.nxt, links.prv, links.kind, links.position
    need, result, bit, mate, twin = links.need, links.result, links.bit, links.mate, links.twin
    optional_head = links.optional_head
    main_tail = optional_head - 1
    remaining = sum(1 for r in mate if r)
    # (required bitset, state; ~state when hungry) -> optional bitsets seen with it (rule 4).
    memo: dict[Config, int | list[int]] = {}
    explored = 0
    configs: list[Config] = []
    stack: list[int] = []  # flat frames: entry, state, hungry, limit (all as before it)
    lin_req = lin_opt = 0
    state = initial
    hungry = 0  # 1 right after an optional operation: the next one must need its result
    limit = _FAR  # position of the first return entry: optional calls must precede it
    stuck = -1
    if remaining == 0:
        if not collect:
            return Outcome(found=True, explored=0, stuck=-1)
        configs.append((0, state))
    e = nxt[0]
    while True:
        k = kind[e]
        if k == _OPTIONAL_CALL and position[e] > limit:
            k = _END
        if k <= _OPTIONAL_CALL:
            nd = need[e]
            if nd == state or (nd < 0 and not hungry):
                ns = result[e]
                if ns < 0:
                    ns = state
                if k == _CALL:
                    nr, no, key = lin_req | bit[e], lin_opt, (lin_req | bit[e], ns)
                else:
                    tw = twin[e]
                    if tw and not lin_opt & tw:
                        e = nxt[e]  # its earlier twin is unused: that one goes first
                        continue
                    nr, no, key = lin_req, lin_opt | bit[e], (lin_req, ~ns)
                seen = memo.get(key)
                if seen is None:
                    memo[key] = no  # an int until a second set shows up: fewer objects for gc
                elif isinstance(seen, int):
                    if seen & no == seen:
                        e = nxt[e]
                        continue
                    memo[key] = [seen, no]
                elif _dominated(no, seen):
                    e = nxt[e]
                    continue
                explored += 1
                if explored > max_states:
                    return Outcome(found=None, explored=explored, stuck=-1)
                stack += (e, state, hungry, limit)
                lin_req, lin_opt, state = nr, no, ns
                p, q = prv[e], nxt[e]
                nxt[p], prv[q] = q, p
                if k == _CALL:
                    hungry = 0
                    r = mate[e]
                    p, q = prv[r], nxt[r]
                    nxt[p], prv[q] = q, p
                    remaining -= 1
                    if remaining == 0:
                        if not collect:
                            return Outcome(found=True, explored=explored, stuck=-1)
                        configs.append((nr | no, ns))
                else:
                    hungry = 1
                    if remaining == 0:
                        configs.append((nr | no, ns))
                e = nxt[0]
                continue
            e = nxt[e]
            continue
        if k == _RETURN:
            # The main scan is over: now the optional calls invoked before this point.
            limit = position[e]
            if e != main_tail and limit > stuck:
                stuck = limit
            e = nxt[optional_head]
            continue
        # Every candidate of this configuration failed: backtrack.
        if not stack:
            break
        limit = stack.pop()
        hungry = stack.pop()
        state = stack.pop()
        e = stack.pop()
        if kind[e] == _CALL:
            lin_req ^= bit[e]
            r = mate[e]
            p, q = prv[r], nxt[r]
            nxt[p] = prv[q] = r
            remaining += 1
        else:
            lin_opt ^= bit[e]
        p, q = prv[e], nxt[e]
        nxt[p] = prv[q] = e
        e = nxt[e]
    if collect:
        return Outcome(found=bool(configs), explored=explored, stuck=-1, configs=tuple(configs))
    return Outcome(found=False, explored=explored, stuck=stuck)

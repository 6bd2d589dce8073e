"""Depth-first search for a linearization of one register's operations.

Theory of operation (Wing & Gong 1993; Lowe 2017, "Testing for linearizability"; Porcupine's
``checkSingle``): every operation contributes a *call* entry at its invoke and, if it must have
taken effect, a *return* entry at its completion; entries sit in a doubly linked list in event
order. The search walks the list from the head:

- at a call entry, it tries to *linearize* the operation now: if the model allows it from the
  current state, and the pair (set of linearized operations, new state) was never seen before,
  it pushes (entry, old state), *lifts* the call and return entries out of the list, and starts
  again from the head;
- at a return entry, some operation had to take effect before this point but none of the orders
  tried so far allows it, so it pops the last choice, puts its entries back (dancing links:
  a removed entry keeps its own pointers, and removals are undone in LIFO order) and tries the
  next call after it;
- when no required operation is left, the history is linearizable. Operations that may never
  take effect (``info``) have no return entry; whatever of them is left at the end "never
  happened", which is always allowed.

Optional operations are where the search explodes: k concurrent ``info`` writes can be applied
in 2^k subsets, each at many points. So the search applies an optional operation only when the
very next operation it applies *needs* the state it leaves (a read of its value, a cas expecting
it). That loses nothing: in any linearization, an applied optional operation followed by one
that does not care about the state (a write, a delete, or nothing) can be deleted and the rest
stays legal; repeat until every applied optional operation feeds the next. In particular an
``info`` write whose value nobody ever reads is never tried.

Optional operations with the same effect (same need, same result) are interchangeable, except
that an earlier invoke can go anywhere a later one can. So the search uses them in invoke order
(an optional operation is tried only once its earlier twin is linearized): n identical ``info``
writes cost n states, not 2^n subsets.

The memo is sound because the future of a search state depends only on which operations are
linearized and on the model state. The set is an int used as a bitset, the state a small int
(see `_register`), so the inner loop allocates one tuple and one int per new state.

The deepest return entry the walk ever reaches is the first completion that no linearization of
the history before it can explain: the history up to that event is linearizable, the history
including it is not (linearizability is prefix-closed). `Outcome.stuck` reports it.

In *collect* mode the search does not stop at the first success: it records every reachable
(linearized set, state) in which all required operations are linearized. The counterexample
minimiser uses that to know the register's possible configurations at a cut of the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from quorumdb.check._register import OPTIONAL, Step

__all__ = ["Config", "Outcome", "search"]

Config = tuple[int, int]
"""(bitset of linearized operations, model state) — also the memo key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one search found."""

    found: bool | None
    """True: linearizable; False: not; None: the state budget ran out first."""
    explored: int
    """Distinct (linearized set, state) pairs visited."""
    stuck: int
    """On failure: event index of the first completion no order explains; else -1."""
    configs: tuple[Config, ...] = ()
    """Collect mode only: every reachable configuration with all required operations done."""


def search(
    steps: Sequence[Step], initial: int, *, max_states: int, collect: bool = False
) -> Outcome:
    """Search for a linearization of ``steps`` starting from model state ``initial``.

    Args:
        steps: the operations; bit ``i`` of a configuration's bitset is ``steps[i]``.
        initial: the model state before any of them.
        max_states: give up (``found=None``) after visiting this many distinct states.
        collect: explore everything and return the configurations where all required
            operations are linearized (``found`` tells whether there is any).
    """
    return _walk(_links(steps), initial, max_states=max_states, collect=collect)


@dataclass(frozen=True, slots=True)
class _Links:
    """The entry list as parallel arrays indexed by entry id (cheaper than an object each)."""

    nxt: list[int]
    prv: list[int]
    is_call: list[bool]
    position: list[int]
    """Event index of the entry."""
    need: list[int]
    result: list[int]
    bit: list[int]
    """Call entries: ``1 << i`` for ``steps[i]``."""
    mate: list[int]
    """Call entries: their return entry, or 0 when the operation is optional."""
    twin: list[int]
    """Optional call entries: the bit of the previous optional operation with the same need
    and result, in invoke order (0: none)."""


def _links(steps: Sequence[Step]) -> _Links:
    entries = sorted(
        [(step.call, i, True) for i, step in enumerate(steps)]
        + [(step.ret, i, False) for i, step in enumerate(steps) if step.ret != OPTIONAL]
    )
    # Entry ids: 0 is the head, 1..m the entries in event order, m + 1 the tail.
    m = len(entries)
    size = m + 2
    links = _Links(
        nxt=[*range(1, m + 2), m + 1],
        prv=[0, *range(m + 1)],
        is_call=[False] * size,
        position=[-1] * size,
        need=[0] * size,
        result=[0] * size,
        bit=[0] * size,
        mate=[0] * size,
        twin=[0] * size,
    )
    call_entry = [0] * len(steps)
    last_twin: dict[tuple[int, int], int] = {}
    for entry, (pos, i, calls) in enumerate(entries, start=1):
        assert pos >= 0, f"event index {pos} of {steps[i]}"
        links.position[entry] = pos
        if calls:
            links.is_call[entry] = True
            links.need[entry] = steps[i].need
            links.result[entry] = steps[i].result
            links.bit[entry] = 1 << i
            call_entry[i] = entry
            if steps[i].ret == OPTIONAL:
                kind = (steps[i].need, steps[i].result)
                links.twin[entry] = last_twin.get(kind, 0)
                last_twin[kind] = 1 << i
        else:
            links.mate[call_entry[i]] = entry
    return links


def _walk(links: _Links, initial: int, *, max_states: int, collect: bool) -> Outcome:
    # Locals, not attribute lookups, in the loop below: it is the whole cost of a check.
    nxt, prv, is_call, position = links.nxt, links.prv, links.is_call, links.position
    need, result, bit, mate, twin = links.need, links.result, links.bit, links.mate, links.twin
    tail = len(nxt) - 1
    remaining = sum(1 for r in mate if r)
    cache: set[Config] = set()
    configs: list[Config] = []
    stack: list[int] = []  # flat triples: entry, state before it, hungry before it
    lin = 0
    state = initial
    hungry = 0  # 1 right after an optional operation: the next one must need its result
    stuck = -1
    if remaining == 0:
        if not collect:
            return Outcome(found=True, explored=0, stuck=-1)
        configs.append((lin, state))
    e = nxt[0]
    while True:
        if is_call[e]:
            nd = need[e]
            if nd == state or (nd < 0 and not hungry):
                ns = result[e]
                if ns < 0:
                    ns = state
                r = mate[e]
                if not r and twin[e] and not lin & twin[e]:
                    e = nxt[e]  # its earlier twin is unused: take that one first
                    continue
                nl = lin | bit[e]
                # A hungry state has other futures than a fed one: keep them apart in the memo.
                key = (nl, ns) if r else (nl, ~ns)
                if key not in cache:
                    cache.add(key)
                    if len(cache) > max_states:
                        return Outcome(found=None, explored=len(cache), stuck=-1)
                    stack.append(e)
                    stack.append(state)
                    stack.append(hungry)
                    lin = nl
                    state = ns
                    p, q = prv[e], nxt[e]
                    nxt[p], prv[q] = q, p
                    if r:
                        hungry = 0
                        p, q = prv[r], nxt[r]
                        nxt[p], prv[q] = q, p
                        remaining -= 1
                    else:
                        hungry = 1
                    if remaining == 0:
                        if not collect:
                            return Outcome(found=True, explored=len(cache), stuck=-1)
                        configs.append((nl, ns))
                    e = nxt[0]
                    continue
            e = nxt[e]
            continue
        # A return entry (or the tail, reachable only in collect mode): backtrack.
        if e != tail and position[e] > stuck:
            stuck = position[e]
        if not stack:
            break
        hungry = stack.pop()
        state = stack.pop()
        e = stack.pop()
        lin ^= bit[e]
        r = mate[e]
        if r:
            p, q = prv[r], nxt[r]
            nxt[p] = prv[q] = r
            remaining += 1
        p, q = prv[e], nxt[e]
        nxt[p] = prv[q] = e
        e = nxt[e]
    if collect:
        return Outcome(found=bool(configs), explored=len(cache), stuck=-1, configs=tuple(configs))
    return Outcome(found=False, explored=len(cache), stuck=stuck)

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
Every rule below only skips configurations that another one explored, or will, is at least as
good as; `tests/check` holds the checker to a brute-force oracle on thousands of histories.

(``FREE`` operations, used only by the counterexample minimiser, also sit in the list, as calls
with no return entry: they may or may not take effect, and none of the shortcuts below apply.)

*Optional* operations (``info``, or never completed) may take effect at any time after their
invoke, or never. They are where the search explodes (k of them: 2^k subsets, each at many
points), so they are not in the list; four rules govern them instead:

1. *Required first.* They are tried only after the required calls before the first return
   entry, and only those invoked before that return (real-time order).
2. *Only when needed.* An optional operation is applied only if the very next operation applied
   *needs* the state it leaves (a read of its value, a cas expecting it). Nothing is lost: in
   any linearization, an applied optional operation followed by one that ignores the state (a
   write, a delete, or nothing) can be deleted and the rest stays legal; repeat until every one
   feeds the next. An ``info`` write whose value nobody reads is never tried.
3. *Twins in order.* Optional operations with the same need and result (a *class*) are
   interchangeable, except that an earlier invoke can go anywhere a later one can; so each
   class is used in invoke order, and its only candidate is its first unused member. n
   identical ``info`` writes cost n states, not 2^n, and finding the candidates costs one look
   per class that fits the current state, however many operations are pending.
4. *Fewer is better.* Two configurations with the same state and the same required operations
   linearized, where one has used a subset of the other's optional operations: the first can
   do everything the second can (it may skip the extra ones forever). So the memo keeps, per
   (required set, state), the optional sets seen, and a configuration using a superset of one
   of them is not explored again. Optional bits are numbered class by class, in invoke order,
   so a set is a prefix per class and "subset" is "used no more of any class".

Required operations get one rule of their own:

5. *Reads go at once.* A pending read of the current value is linearized now, and no
   alternative to it is tried (see `_read_now`). Concurrent reads then cost nothing, and a
   workload of reads and writes branches on the writes alone.

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
"""(bitset of linearized operations, bit ``i`` for ``steps[i]``; model state)."""

_FAR = 1 << 62  # the position of the list tail: after every event
_CALL = 0
_RETURN = 1  # also the head and the tail
_FORCED = -2  # a frame's rank for a read that went without alternatives (rule 5)


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
    steps: Sequence[Step],
    initial: int,
    *,
    max_states: int,
    collect: bool = False,
    needed_later: frozenset[int] = frozenset(),
) -> Outcome:
    """Search for a linearization of ``steps`` starting from model state ``initial``.

    Args:
        steps: the operations; bit ``i`` of a configuration's bitset is ``steps[i]``.
        initial: the model state before any of them.
        max_states: give up (``found=None``) after visiting this many configurations.
        collect: explore everything and return the configurations where all required
            operations are linearized (``found`` tells whether there is any).
        needed_later: collect mode: states that operations after ``steps`` need. An optional
            operation may end a configuration to feed one of them (rule 2 looks past the end).
    """
    return _walk(
        _Required.build(steps),
        _Classes.build(steps, needed_later),
        initial,
        max_states=max_states,
        collect=collect,
    )


@dataclass(frozen=True, slots=True)
class _Required:
    """The list of required calls and returns, as parallel arrays indexed by entry id (cheaper
    than an object each). Entry 0 is the head, then the entries in event order, then the tail.
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
    """Call entries: their return entry (0 for `FREE` operations, which have none)."""

    @staticmethod
    def build(steps: Sequence[Step]) -> _Required:
        entries = sorted(
            [(s.call, i, True) for i, s in enumerate(steps) if s.ret != OPTIONAL]
            + [(s.ret, i, False) for i, s in enumerate(steps) if s.ret >= 0]
        )
        entries = [(-1, -1, False), *entries, (_FAR, -1, False)]
        size = len(entries)
        required = _Required(
            nxt=[*range(1, size), size - 1],
            prv=[0, *range(size - 1)],
            kind=[_CALL if is_call else _RETURN for _, _, is_call in entries],
            position=[pos for pos, _, _ in entries],
            need=[0] * size,
            result=[0] * size,
            bit=[0] * size,
            mate=[0] * size,
        )
        call_entry = [0] * len(steps)
        for entry, (_, i, is_call) in enumerate(entries):
            if is_call:
                required.need[entry] = steps[i].need
                required.result[entry] = steps[i].result
                required.bit[entry] = 1 << i
                call_entry[i] = entry
            elif i >= 0:
                required.mate[call_entry[i]] = entry
        return required


@dataclass(frozen=True, slots=True)
class _Classes:
    """Optional operations grouped by (need, result), each class in invoke order (rule 3)."""

    need: list[int]
    result: list[int]
    calls: list[list[int]]
    """Per class: the members' invoke event indices, ascending."""
    bits: list[list[int]]
    """Per class: the members' bits in the optional bitset (contiguous per class)."""
    steps: list[list[int]]
    """Per class: the members' indices in ``steps``."""
    by_result: dict[int, list[int]]
    """Per state: the classes that leave it."""
    needed_later: frozenset[int]

    @staticmethod
    def build(steps: Sequence[Step], needed_later: frozenset[int]) -> _Classes:
        members: dict[tuple[int, int], list[int]] = {}
        # By rule 2 an optional operation is applied only to feed one that needs its result:
        # if nothing ever needs it (or it changes nothing, like a read), it never matters.
        needed = needed_later | {s.need for s in steps if s.need >= 0}
        optional = (i for i, s in enumerate(steps) if s.ret == OPTIONAL and s.result in needed)
        for i in sorted(optional, key=lambda i: steps[i].call):
            members.setdefault((steps[i].need, steps[i].result), []).append(i)
        kinds = sorted(members)
        classes = _Classes(
            need=[need for need, _ in kinds],
            result=[result for _, result in kinds],
            calls=[[steps[i].call for i in members[kind]] for kind in kinds],
            bits=[],
            steps=[members[kind] for kind in kinds],
            by_result={},
            needed_later=needed_later,
        )
        offset = 0
        for c, kind in enumerate(kinds):
            size = len(members[kind])
            classes.bits.append([1 << (offset + m) for m in range(size)])
            offset += size
            classes.by_result.setdefault(kind[1], []).append(c)
        return classes

    def candidates(
        self, wanted: list[int], used: list[int], *, state: int, hungry: int, limit: int
    ) -> list[tuple[int, int]]:
        """(invoke, class) of the classes that may go next, oldest first.

        A class may go next if it fits the state (needs it, or anything unless hungry), its
        first unused member was invoked before ``limit`` (rule 1) and its result is *wanted*:
        needed by one of the pending required calls, or after the searched operations, or by an
        optional class whose result is wanted in turn (rule 2). Oldest first is the order
        Porcupine's single list gives; it finds the linearization of histories with many
        orphaned operations far sooner.
        """
        seen = set(self.needed_later)
        seen.update(wanted)
        work = list(seen)
        while work:
            for c in self.by_result.get(work.pop(), ()):
                need = self.need[c]
                if need >= 0 and need not in seen:
                    seen.add(need)
                    work.append(need)
        out = []
        for value in seen:
            for c in self.by_result.get(value, ()):
                need = self.need[c]
                if need == state or (need < 0 and not hungry):
                    u = used[c]
                    if u < len(self.calls[c]) and self.calls[c][u] < limit:
                        out.append((self.calls[c][u], c))
        out.sort()
        return out

    def as_steps(self, used: list[int]) -> int:
        """The bitset, over ``steps``, of the first ``used[c]`` members of each class."""
        lin = 0
        for c, count in enumerate(used):
            for i in self.steps[c][:count]:
                lin |= 1 << i
        return lin


def _dominated(optional: int, seen: list[int]) -> bool:
    """Whether a seen optional set is a subset of ``optional`` (rule 4); if not, remember it."""
    for old in seen:
        if old & optional == old:
            return True
    seen.append(optional)
    return False


def _pending_needs(nxt: list[int], kind: list[int], need: list[int]) -> list[int]:
    """The states the required calls before the first return entry need (rule 2's consumers)."""
    out = []
    e = nxt[0]
    while kind[e] == _CALL:
        if need[e] >= 0:
            out.append(need[e])
        e = nxt[e]
    return out


def _read_now(
    nxt: list[int], kind: list[int], need: list[int], result: list[int], state: int
) -> int:
    """A pending required call that needs the current state and leaves it unchanged (a read
    of the current value), or 0.

    Such a call goes now, with no alternative tried (rule 5): in any order that works from
    here, moving it to the front still works, since it changes nothing and every operation
    that had to precede it (returned before its invoke) already has.
    """
    e = nxt[0]
    while kind[e] == _CALL:
        if need[e] == state and (result[e] < 0 or result[e] == state):
            return e
        e = nxt[e]
    return 0


def _walk(
    required: _Required, classes: _Classes, initial: int, *, max_states: int, collect: bool
) -> Outcome:
    # One long loop on purpose: it is the whole cost of a check, so it keeps everything in
    # locals and allocates only the memo's tuple and the bitsets' ints per new configuration.
    nxt, prv, kind, position = required.nxt, required.prv, required.kind, required.position
    need, result, bit, mate = required.need, required.result, required.bit, required.mate
    c_result, c_bits = classes.result, classes.bits
    used = [0] * len(c_result)
    main_tail = len(nxt) - 1
    remaining = sum(1 for r in mate if r)
    # (required bitset, state; ~state when hungry) -> optional bitsets seen with it (rule 4).
    memo: dict[Config, int | list[int]] = {}
    explored = 0
    configs: list[Config] = []
    # Frames: choice (a required call entry, or ~class for an optional one), the candidate's
    # rank j among the optional candidates, then state, hungry and limit as before the choice.
    stack: list[int] = []
    lin_req = lin_opt = 0
    state = initial
    hungry = 0  # 1 right after an optional operation: the next one must need its result
    limit = _FAR  # position of the first return entry: optional calls must precede it
    stuck = -1
    if remaining == 0:
        if not collect:
            return Outcome(found=True, explored=0, stuck=-1)
        configs.append((0, state))
    e = _read_now(nxt, kind, need, result, state)
    forced = e > 0
    e = e or nxt[0]
    j = -1  # -1: scanning the required list at e; else the j-th optional candidate
    candidates: list[tuple[int, int]] = []  # (invoke of the first unused member, class)
    while True:
        if j < 0:
            if kind[e] == _CALL:
                nd = need[e]
                if nd == state or (nd < 0 and not hungry):
                    ns = result[e]
                    if ns < 0:
                        ns = state
                    nr = lin_req | bit[e]
                    key = (nr, ns)
                    seen = memo.get(key)
                    if seen is None:
                        memo[key] = lin_opt  # an int until a second set shows up
                    elif isinstance(seen, int):
                        if seen & lin_opt == seen:
                            if forced:  # the one child is done: so is this configuration
                                j, candidates = 0, []
                                continue
                            e = nxt[e]
                            continue
                        memo[key] = [seen, lin_opt]
                    elif _dominated(lin_opt, seen):
                        if forced:
                            j, candidates = 0, []
                            continue
                        e = nxt[e]
                        continue
                    explored += 1
                    if explored > max_states:
                        return Outcome(found=None, explored=explored, stuck=-1)
                    stack += (e, _FORCED if forced else 0, state, hungry, limit)
                    lin_req, state, hungry = nr, ns, 0
                    p, q = prv[e], nxt[e]
                    nxt[p], prv[q] = q, p
                    r = mate[e]
                    if r:
                        p, q = prv[r], nxt[r]
                        nxt[p], prv[q] = q, p
                        remaining -= 1
                    if remaining == 0:
                        if not collect:
                            return Outcome(found=True, explored=explored, stuck=-1)
                        configs.append((nr | classes.as_steps(used), ns))
                    e = _read_now(nxt, kind, need, result, state)
                    forced = e > 0
                    e = e or nxt[0]
                    continue
                e = nxt[e]
                continue
            # The first return entry (or the tail): now the optional candidates (rule 1).
            limit = position[e]
            if e != main_tail and limit > stuck:
                stuck = limit
            candidates = classes.candidates(
                _pending_needs(nxt, kind, need), used, state=state, hungry=hungry, limit=limit
            )
            j = 0
        if j < len(candidates):
            c = candidates[j][1]
            u = used[c]
            ns = c_result[c]
            no = lin_opt | c_bits[c][u]
            key = (lin_req, ~ns)
            seen = memo.get(key)
            if seen is None:
                memo[key] = no
            elif isinstance(seen, int):
                if seen & no == seen:
                    j += 1
                    continue
                memo[key] = [seen, no]
            elif _dominated(no, seen):
                j += 1
                continue
            explored += 1
            if explored > max_states:
                return Outcome(found=None, explored=explored, stuck=-1)
            stack += (~c, j, state, hungry, limit)
            used[c] = u + 1
            lin_opt, state, hungry = no, ns, 1
            if remaining == 0:
                configs.append((lin_req | classes.as_steps(used), ns))
            e = _read_now(nxt, kind, need, result, state)
            forced = e > 0
            e, j = e or nxt[0], -1
            continue
        # Every candidate of this configuration failed: backtrack.
        if not stack:
            break
        limit = stack.pop()
        hungry = stack.pop()
        state = stack.pop()
        j = stack.pop()
        choice = stack.pop()
        if choice >= 0:
            lin_req ^= bit[choice]
            r = mate[choice]
            if r:
                p, q = prv[r], nxt[r]
                nxt[p] = prv[q] = r
                remaining += 1
            p, q = prv[choice], nxt[choice]
            nxt[p] = prv[q] = choice
            if j == _FORCED:  # no alternatives to a forced read: keep backtracking
                j, candidates = 0, []
                continue
            e, j, forced = nxt[choice], -1, False
        else:
            c = ~choice
            used[c] -= 1
            lin_opt ^= c_bits[c][used[c]]
            # The same configuration as when the choice was made: the same candidates.
            candidates = classes.candidates(
                _pending_needs(nxt, kind, need), used, state=state, hungry=hungry, limit=limit
            )
            j += 1
    if collect:
        return Outcome(found=bool(configs), explored=explored, stuck=-1, configs=tuple(configs))
    return Outcome(found=False, explored=explored, stuck=stuck)

"""Inference for list-append histories: version orders from reads, then ww, wr and rw edges.

Every key is a list; transactions append unique elements and read whole lists. A read of
``[1, 2, 3]`` tells the key's whole version history up to it: ``[]``, ``[1]``, ``[1, 2]``,
``[1, 2, 3]``. So (as Elle's ``elle.list-append`` does):

- the version order of a key is its longest read; every other read must be a prefix of it,
  else the reads are an ``incompatible-order`` (no single order of appends explains both).
  Edges are still inferred from the longest read, as Elle does;
- ww: the writer of element i precedes the writer of element i+1;
- wr: the writer of a read's last element precedes the reader;
- rw: a reader of the prefix that ends at element i (or of the empty list) precedes the writer
  of element i+1 (of the first element).

An append no read observed, by a transaction that committed, still tells something: it came
after every observed element (else the longest read would hold it). Like Elle, it gets a ww
edge from the writer of the last observed element and rw edges from that version's readers.
A transaction that ended ``info`` is in the graph only if a committed read observed one of
its elements (then it committed, and all its appends with it); its own reads are never used.

Found without any cycle: G1a (a read holds an element a failed transaction appended), G1b (a
read ends at an element its writer later followed with another append to the key),
duplicate elements, garbage reads (an element nobody appended), internal inconsistency (a
read that disagrees with the transaction's own earlier reads and appends of the key, or holds
an element the transaction appends later) and lost updates (two committed transactions read
the same version of a key and both appended to it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import cast

from quorumdb.check.elle.graph import DepGraph, Inference
from quorumdb.check.elle.history import ElleHistory, Key, Txn
from quorumdb.check.elle.levels import EdgeKind, Kind
from quorumdb.check.elle.result import Anomaly
from quorumdb.check.history import Outcome

__all__ = ["infer_list_append"]

_WW, _WR, _RW = int(EdgeKind.WW), int(EdgeKind.WR), int(EdgeKind.RW)


def infer_list_append(history: ElleHistory) -> Inference:
    """The data edges and non-cycle anomalies of a list-append history."""
    txns = history.txns
    graph = DepGraph(len(txns))
    index = _Index(txns, graph)
    anomalies: list[Anomaly] = []
    index.per_key(anomalies)
    index.include_observed_info()
    index.add_edges()
    _internal_and_lost_updates(txns, anomalies)
    return Inference(graph=graph, anomalies=anomalies, explainer=_Explainer(index))


class _Index:
    """Who appended what, who read what, and each key's inferred order of appends."""

    def __init__(self, txns: Sequence[Txn], graph: DepGraph) -> None:
        self.txns = txns
        self.graph = graph
        self.writer: dict[Key, dict[int, int]] = {}
        self.intermediate: dict[Key, dict[int, int]] = {}
        self.reads: dict[Key, list[tuple[int, tuple[int, ...]]]] = {}
        self.order: dict[Key, tuple[int, ...]] = {}
        self.pos: dict[Key, dict[int, int]] = {}
        self.readers: dict[Key, dict[int | None, list[int]]] = {}
        self.also_observed: dict[Key, set[int]] = {}
        committed = graph.committed
        ok = Outcome.OK
        writer, reads = self.writer, self.reads
        for txn in txns:
            tid = txn.id
            is_ok = txn.outcome is ok
            if is_ok:
                committed[tid] = True
            last: dict[Key, int] | None = None
            for f, k, v in txn.mops:
                if f == "append":
                    e = cast(int, v)
                    by_element = writer.get(k)
                    if by_element is None:
                        writer[k] = {e: tid}
                    else:
                        by_element[e] = tid
                    if last is None:
                        last = {k: e}
                        continue
                    previous = last.get(k)
                    if previous is not None:
                        self.intermediate.setdefault(k, {})[previous] = tid
                    last[k] = e
                elif is_ok:
                    seen = cast("tuple[int, ...] | None", v) or ()
                    of_key = reads.get(k)
                    if of_key is None:
                        reads[k] = [(tid, seen)]
                    else:
                        of_key.append((tid, seen))

    def per_key(self, anomalies: list[Anomaly]) -> None:
        """Version orders, readers, and the anomalies visible in one key's reads."""
        txns = self.txns
        for k, reads in self.reads.items():
            longest = max(reads, key=lambda read: len(read[1]))[1]
            readers: dict[int | None, list[int]] = {}
            incompatible: list[tuple[int, tuple[int, ...]]] = []
            intermediate = self.intermediate.get(k, {})
            writer = self.writer.get(k, {})
            for tid, seen in reads:
                if seen:
                    last: int | None = seen[-1]
                    if len(seen) < len(longest):
                        if seen != longest[: len(seen)]:
                            incompatible.append((tid, seen))
                    elif seen != longest:
                        incompatible.append((tid, seen))
                    if len(seen) > 1 and len(set(seen)) != len(seen):
                        anomalies.append(_duplicates(txns[tid], k, seen))
                    w = intermediate.get(seen[-1])
                    if w is not None and w != tid:
                        anomalies.append(_intermediate_read(txns[tid], txns[w], k, seen))
                else:
                    last = None
                of_last = readers.get(last)
                if of_last is None:
                    readers[last] = [tid]
                else:
                    of_last.append(tid)
            self.readers[k] = readers
            order = longest if len(set(longest)) == len(longest) else tuple(dict.fromkeys(longest))
            self.order[k] = order
            self.pos[k] = {e: i for i, e in enumerate(order)}
            observed: Sequence[int] = order
            if incompatible:
                holder = next(tid for tid, seen in reads if seen == longest)
                anomalies.append(_incompatible(txns, k, incompatible, holder, longest))
                union = {e for _, seen in reads for e in seen}
                self.also_observed[k] = union
                observed = sorted(union)
            bad = [
                (e, w)
                for e in observed
                if (w := writer.get(e)) is None or txns[w].outcome is Outcome.FAIL
            ]
            if bad:
                clean = not incompatible and len(order) == len(longest)
                sightings = _Sightings(reads, order, prefixes=clean)
                for e, w in bad:
                    anomalies.append(self._bad_element(k, e, sightings.of(e), w))

    def _bad_element(
        self, k: Key, e: int, sighting: tuple[int, tuple[int, ...], int], w: int | None
    ) -> Anomaly:
        first_reader, first, count = sighting
        txns = self.txns
        reader = txns[first_reader]
        others = f" ({count} reads saw it)" if count > 1 else ""
        if w is None:
            return Anomaly(
                kind=Kind.GARBAGE_READ,
                ops=(reader,),
                cycle=(),
                key=k,
                explanation=(
                    f"T1 read {_key(k)} = {_list(first)}, which holds {e}, an element no "
                    f"transaction appended{others}"
                ),
            )
        return Anomaly(
            kind=Kind.G1A,
            ops=(reader, txns[w]),
            cycle=(),
            key=k,
            explanation=(
                f"T1 read {_key(k)} = {_list(first)}, which holds {e}, appended by T2, which "
                f"failed{others}"
            ),
        )

    def include_observed_info(self) -> None:
        """An ``info`` transaction whose element a committed read holds did commit."""
        committed = self.graph.committed
        info = Outcome.INFO
        for txn in self.txns:
            if txn.outcome is not info:
                continue
            for f, k, v in txn.mops:
                if f != "append":
                    continue
                pos = self.pos.get(k)
                extra = self.also_observed.get(k)
                if (pos is not None and v in pos) or (extra is not None and v in extra):
                    committed[txn.id] = True
                    break

    def add_edges(self) -> None:
        """ww, wr and rw edges between committed transactions."""
        graph = self.graph
        succ = graph.succ  # graph.add, inlined: this loop runs once per micro-op
        committed = graph.committed
        order, pos, writer, readers = self.order, self.pos, self.writer, self.readers
        ok = Outcome.OK
        empty: tuple[int, ...] = ()
        unread: dict[Key, dict[int, None]] = {}  # appenders of elements no read observed
        for txn in self.txns:
            tid = txn.id
            if not committed[tid]:
                continue
            is_ok = txn.outcome is ok
            for f, k, v in txn.mops:
                if f == "append":
                    of_pos = pos.get(k)
                    read = of_pos is not None and v in of_pos
                    if not read:
                        unread.setdefault(k, {})[tid] = None
                    previous = _previous(order.get(k, empty), of_pos, cast(int, v))
                    if previous is not None:
                        w = writer[k].get(previous)
                        if w is not None and w != tid and committed[w]:
                            edges = succ[w]
                            edges[tid] = edges.get(tid, 0) | _WW
                    of_key = readers.get(k)
                    if of_key is not None and read:
                        for r in of_key.get(previous, empty):
                            if r != tid:
                                edges = succ[r]
                                edges[tid] = edges.get(tid, 0) | _RW
                elif is_ok and isinstance(v, tuple) and v:
                    by_element = writer.get(k)
                    if by_element is not None:
                        w = by_element.get(v[-1])
                        if w is not None and w != tid and committed[w]:
                            edges = succ[w]
                            edges[tid] = edges.get(tid, 0) | _WR
        # Unread appends all follow the last element read: its readers precede every one.
        for k, appenders in unread.items():
            of_key = readers.get(k)
            if of_key is not None:
                last = order[k][-1] if order.get(k) else None
                graph.add_all(of_key.get(last, empty), list(appenders), _RW)


class _Sightings:
    """Which reads of a key hold a given element: the first (reader, read) and how many.

    When every read is a prefix of the order, a read holds the element at position p iff it
    is longer than p, so one pass over the reads answers for every element; otherwise each
    question scans the reads.
    """

    def __init__(
        self, reads: list[tuple[int, tuple[int, ...]]], order: tuple[int, ...], *, prefixes: bool
    ) -> None:
        self.reads = reads
        self.prefixes = prefixes
        self.pos = {e: i for i, e in enumerate(order)}
        self.first: list[int] = []  # first[p]: index of the first read longer than p
        longer = [0] * (len(order) + 1)  # longer[p]: reads of length exactly p
        if prefixes:
            for n, (_, seen) in enumerate(reads):
                while len(self.first) < min(len(seen), len(order)):
                    self.first.append(n)
                longer[min(len(seen), len(order))] += 1
            total = 0
            self.count = [0] * len(order)
            for p in range(len(order) - 1, -1, -1):
                total += longer[p + 1]
                self.count[p] = total

    def of(self, e: int) -> tuple[int, tuple[int, ...], int]:
        """(first reader's txn id, its read, number of reads) for element ``e``."""
        if self.prefixes:
            p = self.pos[e]
            tid, seen = self.reads[self.first[p]]
            return tid, seen, self.count[p]
        saw = [(tid, seen) for tid, seen in self.reads if e in seen]
        return saw[0][0], saw[0][1], len(saw)


def _previous(order: tuple[int, ...], pos: dict[int, int] | None, e: int) -> int | None:
    """The element appended just before ``e`` (None: e was first). For an element no read
    observed: the last observed one, since e came after all of them."""
    i = pos.get(e) if pos is not None else None
    if i is None:
        return order[-1] if order else None
    return order[i - 1] if i > 0 else None


def _internal_and_lost_updates(txns: Sequence[Txn], anomalies: list[Anomaly]) -> None:
    """Internal consistency of each committed transaction, and lost updates across them."""
    lost: dict[tuple[Key, tuple[int, ...]], list[int]] = {}
    ok = Outcome.OK
    for txn in txns:
        mops = txn.mops
        if txn.outcome is not ok or len(mops) < 2:
            continue
        if len({k for _, k, _ in mops}) == len(mops):
            continue  # both need a key touched twice
        problem = _internal(txn)
        if problem is not None:
            anomalies.append(problem)
        first_read: dict[Key, tuple[int, ...]] = {}
        wrote: set[Key] = set()
        for f, k, v in txn.mops:
            if f == "append":
                if k not in wrote:
                    wrote.add(k)
                    if k in first_read:
                        lost.setdefault((k, first_read[k]), []).append(txn.id)
            elif k not in first_read and k not in wrote:
                first_read[k] = cast("tuple[int, ...] | None", v) or ()
    for (k, seen), ids in lost.items():
        if len(ids) > 1:
            ops = tuple(txns[i] for i in ids)
            names = ", ".join(f"T{n + 1}" for n in range(len(ops)))
            anomalies.append(
                Anomaly(
                    kind=Kind.LOST_UPDATE,
                    ops=ops,
                    cycle=(),
                    key=k,
                    explanation=(
                        f"{names} all read {_key(k)} = {_list(seen)} and appended to it: each "
                        "append was made without the others', so one of them is lost"
                    ),
                )
            )


def _internal(txn: Txn) -> Anomaly | None:
    """The first read that disagrees with the transaction's own earlier micro-ops, if any."""
    known: dict[Key, list[int]] = {}
    tail: dict[Key, list[int]] = {}
    appends_of: dict[Key, list[tuple[int, int]]] = {}
    for n, (f, k, v) in enumerate(txn.mops):
        if f == "append":
            appends_of.setdefault(k, []).append((n, cast(int, v)))
    for n, (f, k, v) in enumerate(txn.mops):
        if f == "append":
            e = cast(int, v)
            if k in known:
                known[k] = [*known[k], e]
            else:
                tail[k] = [*tail.get(k, []), e]
            continue
        seen = list(cast("tuple[int, ...] | None", v) or ())
        expected: str | None = None
        if k in known and seen != known[k]:
            expected = _list(known[k])
        elif k in tail:
            suffix = tail[k]
            if len(seen) < len(suffix) or seen[len(seen) - len(suffix) :] != suffix:
                expected = "[..., " + ", ".join(json.dumps(e) for e in suffix) + "]"
        if expected is not None:
            return Anomaly(
                kind=Kind.INTERNAL,
                ops=(txn,),
                cycle=(),
                key=k,
                explanation=(
                    f"T1's micro-op {n + 1} read {_key(k)} = {_list(seen)}, but its own earlier "
                    f"micro-ops say {expected}"
                ),
            )
        later = [e for m, e in appends_of.get(k, ()) if m > n and e in seen]
        if later:
            return Anomaly(
                kind=Kind.INTERNAL,
                ops=(txn,),
                cycle=(),
                key=k,
                explanation=(
                    f"T1's micro-op {n + 1} read {_key(k)} = {_list(seen)}, which holds "
                    f"{later[0]}, an element T1 appends only later (a future read)"
                ),
            )
        known[k] = seen
        tail.pop(k, None)
    return None


def _duplicates(reader: Txn, k: Key, seen: tuple[int, ...]) -> Anomaly:
    counts: dict[int, int] = {}
    for e in seen:
        counts[e] = counts.get(e, 0) + 1
    twice = ", ".join(f"{e} ({n} times)" for e, n in counts.items() if n > 1)
    return Anomaly(
        kind=Kind.DUPLICATE_ELEMENTS,
        ops=(reader,),
        cycle=(),
        key=k,
        explanation=f"T1 read {_key(k)} = {_list(seen)}, which repeats {twice}",
    )


def _intermediate_read(reader: Txn, writer: Txn, k: Key, seen: tuple[int, ...]) -> Anomaly:
    return Anomaly(
        kind=Kind.G1B,
        ops=(reader, writer),
        cycle=(),
        key=k,
        explanation=(
            f"T1 read {_key(k)} = {_list(seen)}, which ends at {seen[-1]}: T2 appended it and "
            f"then appended again to {_key(k)}, so T1 saw T2's intermediate state"
        ),
    )


def _incompatible(
    txns: Sequence[Txn],
    k: Key,
    bad: list[tuple[int, tuple[int, ...]]],
    holder: int,
    longest: tuple[int, ...],
) -> Anomaly:
    tid, seen = bad[0]
    more = f" ({len(bad)} reads of {_key(k)} disagree with it)" if len(bad) > 1 else ""
    return Anomaly(
        kind=Kind.INCOMPATIBLE_ORDER,
        ops=(txns[tid], txns[holder]),
        cycle=(),
        key=k,
        explanation=(
            f"T1 read {_key(k)} = {_list(seen)} and T2 read {_list(longest)}: neither is a "
            f"prefix of the other, so no single order of appends explains both{more}"
        ),
    )


class _Explainer:
    """Says which key and elements put a data edge between two transactions."""

    def __init__(self, index: _Index) -> None:
        self.index = index

    def explain(
        self, source: Txn, target: Txn, kind: EdgeKind, a: str, b: str
    ) -> tuple[Key | None, str]:
        index = self.index
        if kind is EdgeKind.WR:
            for f, k, v in target.mops:
                seen = cast("tuple[int, ...] | None", v)
                if f == "r" and seen and index.writer.get(k, {}).get(seen[-1]) == source.id:
                    return k, f"{b} observed {a}'s append of {seen[-1]} to {_key(k)}"
        for f, k, v in target.mops:
            if f != "append":
                continue
            e = cast(int, v)
            previous = _previous(index.order.get(k, ()), index.pos.get(k), e)
            if (
                kind is EdgeKind.WW
                and previous is not None
                and index.writer[k].get(previous) == source.id
            ):
                return k, f"{b} appended {e} after {a} appended {previous} to {_key(k)}"
            if kind is EdgeKind.RW and source.id in index.readers.get(k, {}).get(previous, ()):
                if previous is None:
                    return k, (
                        f"{a} read the initial (empty) state of {_key(k)}, which {b} changed "
                        f"by appending {e}"
                    )
                return k, (
                    f"{a} read {_key(k)} up to {previous} and did not observe {b}'s append of {e}"
                )
        raise AssertionError(f"no {kind.label} edge from txn {source.id} to txn {target.id}")


def _key(k: Key) -> str:
    return json.dumps(k)


def _list(elements: Sequence[int]) -> str:
    return json.dumps(list(elements))

"""Inference for read-write register histories: what can be known of version orders, soundly.

Every key is a register; transactions write unique values and read them. A read names the
one transaction that wrote its value, but unlike a list it says nothing of older versions,
so the version order is only partly known. What is inferred, and nothing more (Elle's
``elle.rw-register`` with its writes-follow-reads rule on, and without assuming keys are
sequential or linearizable):

- the initial state (nil) precedes every version;
- writes follow reads: a committed transaction that read x = v before writing x, and whose
  last write of x was w, installed w after v, so v < w;
- only a transaction's last write of a key is a version; a read of an earlier one is G1b.

Edges: wr from the writer of the value a read returned; ww from the writer of v to the writer
of w for each inferred v < w; rw from each reader of v to the writer of w for each inferred
v < w (whoever wrote v: the readers saw it, the writer of w read it first), and from each
reader of nil to the writer of every version with no other inferred predecessor. An edge
from v to a later but not next version stands for a path of one rw (or ww) edge and ww
edges through the versions between, so a cycle keeps its class.

Reads are external when the transaction has not written the key yet; a read after its own
write must return that write, and a repeated read must repeat (else: ``internal``). A
transaction that ended ``info`` is in the graph only if a committed read returned one of its
values; its own reads are never used. Found without cycles: G1a, G1b, garbage reads (a value
nobody wrote), internal inconsistency, lost updates (two committed transactions read the
same value of a key and both wrote it) and cyclic version orders (the key is then left out
of ww and rw inference).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import cast

from quorumdb.check.elle.graph import DepGraph, Inference
from quorumdb.check.elle.history import ElleHistory, Key, Txn
from quorumdb.check.elle.levels import EdgeKind, Kind
from quorumdb.check.elle.result import Anomaly
from quorumdb.check.elle.scc import strongly_connected_components
from quorumdb.check.history import Outcome

__all__ = ["infer_rw_register"]

_WW, _WR, _RW = int(EdgeKind.WW), int(EdgeKind.WR), int(EdgeKind.RW)


def infer_rw_register(history: ElleHistory) -> Inference:
    """The data edges and non-cycle anomalies of a read-write register history."""
    index = _Index(history.txns)
    anomalies: list[Anomaly] = []
    index.scan(anomalies)
    index.cyclic_versions(anomalies)
    index.add_edges()
    return Inference(graph=index.graph, anomalies=anomalies, explainer=_Explainer(index))


class _Index:
    """Writers, external readers and the inferred version order of every key."""

    def __init__(self, txns: Sequence[Txn]) -> None:
        self.txns = txns
        self.graph = DepGraph(len(txns))
        self.writer: dict[Key, dict[int, int]] = {}
        self.intermediate: dict[Key, set[int]] = {}
        self.readers: dict[Key, dict[int | None, list[int]]] = {}
        self.later: dict[Key, dict[int | None, list[int]]] = {}
        """Version successors: later[k][v] are the values some transaction wrote after
        reading v."""
        self.minimal: dict[Key, list[int]] = {}
        self.cyclic: set[Key] = set()
        self.wr: list[tuple[int, int]] = []
        for txn in txns:
            last: dict[Key, int] | None = None
            for f, k, v in txn.mops:
                if f != "w":
                    continue
                value = cast(int, v)
                by_value = self.writer.get(k)
                if by_value is None:
                    self.writer[k] = {value: txn.id}
                else:
                    by_value[value] = txn.id
                if last is None:
                    last = {}
                previous = last.get(k)
                if previous is not None:
                    self.intermediate.setdefault(k, set()).add(previous)
                last[k] = value

    def scan(self, anomalies: list[Anomaly]) -> None:
        """One pass over committed transactions: reads, version edges, read anomalies."""
        txns = self.txns
        committed = self.graph.committed
        ok = Outcome.OK
        lost: dict[tuple[Key, int | None], list[int]] = {}
        for txn in txns:
            if txn.outcome is not ok:
                continue
            tid = txn.id
            committed[tid] = True
            wrote: dict[Key, int] = {}
            first: dict[Key, int | None] = {}
            internal: Anomaly | None = None
            for n, (f, k, v) in enumerate(txn.mops):
                if f == "w":
                    wrote[k] = cast(int, v)
                    continue
                value = cast("int | None", v)
                if k in wrote:
                    if value != wrote[k] and internal is None:
                        internal = _internal(txn, n, k, value=value, expected=wrote[k], how="wrote")
                    continue
                if k in first:
                    if value != first[k] and internal is None:
                        internal = _internal(txn, n, k, value=value, expected=first[k], how="read")
                    continue
                first[k] = value
                self._observe(txn, n, k, value, anomalies)
            if internal is not None:
                anomalies.append(internal)
            for k, value in first.items():
                final = wrote.get(k)
                if final is None:
                    continue
                self.later.setdefault(k, {}).setdefault(value, []).append(final)
                lost.setdefault((k, value), []).append(tid)
        for (k, value), ids in lost.items():
            if len(ids) > 1:
                anomalies.append(_lost_update(txns, ids, k, value))
        info = Outcome.INFO
        for w, _ in self.wr:
            if txns[w].outcome is info:
                committed[w] = True

    def _observe(
        self, txn: Txn, n: int, k: Key, value: int | None, anomalies: list[Anomaly]
    ) -> None:
        tid = txn.id
        readers = self.readers.get(k)
        if readers is None:
            self.readers[k] = {value: [tid]}
        else:
            readers.setdefault(value, []).append(tid)
        if value is None:
            return
        w = self.writer.get(k, {}).get(value)
        if (
            w is not None
            and w != tid
            and value not in self.intermediate.get(k, ())
            and self.txns[w].outcome is not Outcome.FAIL
        ):
            self.wr.append((w, tid))
            return
        self._bad_read(txn, n, k, value=value, writer=w, anomalies=anomalies)

    def _bad_read(
        self, txn: Txn, n: int, k: Key, *, value: int, writer: int | None, anomalies: list[Anomaly]
    ) -> None:
        """A read of a value nobody wrote, its own later write, a failed or intermediate one."""
        txns = self.txns
        w = writer
        shown = f"{_key(k)} = {value}"
        if w is None:
            anomalies.append(
                _anomaly(
                    Kind.GARBAGE_READ, (txn,), k, f"T1 read {shown}, a value no transaction wrote"
                )
            )
        elif w == txn.id:
            anomalies.append(
                _anomaly(
                    Kind.INTERNAL,
                    (txn,),
                    k,
                    f"T1's micro-op {n + 1} read {shown}, a value T1 writes only later "
                    "(a future read)",
                )
            )
        elif txns[w].outcome is Outcome.FAIL:
            anomalies.append(
                _anomaly(
                    Kind.G1A, (txn, txns[w]), k, f"T1 read {shown}, written by T2, which failed"
                )
            )
        else:
            anomalies.append(
                _anomaly(
                    Kind.G1B,
                    (txn, txns[w]),
                    k,
                    f"T1 read {shown}, which T2 wrote and then overwrote: T1 saw T2's "
                    "intermediate state",
                )
            )

    def cyclic_versions(self, anomalies: list[Anomaly]) -> None:
        """Keys whose inferred version order has a cycle (and each key's first versions)."""
        ids: dict[tuple[Key, int], int] = {}
        succ: list[list[int]] = []

        def vertex(k: Key, value: int) -> int:
            found = ids.get((k, value))
            if found is None:
                found = ids[(k, value)] = len(succ)
                succ.append([])
            return found

        for k, later in self.later.items():
            for value, after in later.items():
                if value is not None:
                    source = vertex(k, value)
                    succ[source].extend(vertex(k, w) for w in after)
        if succ:
            names = list(ids)
            for group in strongly_connected_components(succ).cyclic():
                k = names[group[0]][0]
                if k in self.cyclic:
                    continue
                self.cyclic.add(k)
                values = sorted(names[v][1] for v in group)
                writers = tuple(dict.fromkeys(self.txns[self.writer[k][value]] for value in values))
                anomalies.append(
                    _anomaly(
                        Kind.CYCLIC_VERSIONS,
                        writers,
                        k,
                        f"reads followed by writes order the values {_values(values)} of "
                        f"{_key(k)} in a cycle",
                    )
                )
        committed = self.graph.committed
        for k, by_value in self.writer.items():
            preceded = {
                w
                for value, after in self.later.get(k, {}).items()
                if value is not None
                for w in after
            }
            self.minimal[k] = [
                value
                for value, tid in by_value.items()
                if committed[tid]
                and value not in preceded
                and value not in self.intermediate.get(k, ())
            ]

    def add_edges(self) -> None:
        """wr, ww and rw edges between committed transactions."""
        graph = self.graph
        add = graph.add
        committed = graph.committed
        succ = graph.succ
        for w, r in self.wr:
            edges = succ[w]
            edges[r] = edges.get(r, 0) | _WR
        for k, later in self.later.items():
            if k in self.cyclic:
                continue
            writer = self.writer[k]
            readers = self.readers.get(k, {})
            intermediate = self.intermediate.get(k, ())
            for value, after in later.items():
                if value is None:
                    continue
                source = writer.get(value)
                if source is not None and (not committed[source] or value in intermediate):
                    source = None  # not a version anyone installed: no ww edge from it
                targets = [writer[w] for w in after]
                if source is not None:
                    for target in targets:
                        add(source, target, _WW)
                graph.add_all(readers.get(value, ()), targets, _RW)
        for k, readers in self.readers.items():
            initial = readers.get(None)
            if not initial or k in self.cyclic:
                continue
            writer = self.writer.get(k, {})
            graph.add_all(initial, [writer[value] for value in self.minimal.get(k, ())], _RW)


def _lost_update(txns: Sequence[Txn], ids: list[int], k: Key, value: int | None) -> Anomaly:
    ops = tuple(txns[i] for i in ids)
    names = ", ".join(f"T{n + 1}" for n in range(len(ops)))
    shown = "nil" if value is None else str(value)
    return _anomaly(
        Kind.LOST_UPDATE,
        ops,
        k,
        f"{names} all read {_key(k)} = {shown} and then wrote {_key(k)}: each write was made "
        "without the others', so one of them is lost",
    )


def _internal(
    txn: Txn, n: int, k: Key, *, value: int | None, expected: int | None, how: str
) -> Anomaly:
    got = "nil" if value is None else str(value)
    want = "nil" if expected is None else str(expected)
    return _anomaly(
        Kind.INTERNAL,
        (txn,),
        k,
        f"T1's micro-op {n + 1} read {_key(k)} = {got}, but T1 {how} {want} there before",
    )


def _anomaly(kind: Kind, ops: tuple[Txn, ...], k: Key, explanation: str) -> Anomaly:
    return Anomaly(kind=kind, ops=ops, cycle=(), key=k, explanation=explanation)


class _Explainer:
    """Says which key and values put a data edge between two transactions."""

    def __init__(self, index: _Index) -> None:
        self.index = index

    def explain(
        self, source: Txn, target: Txn, kind: EdgeKind, a: str, b: str
    ) -> tuple[Key | None, str]:
        index = self.index
        if kind is EdgeKind.WR:
            for k, value in _external_reads(target):
                if value is not None and index.writer.get(k, {}).get(value) == source.id:
                    return k, f"{b} read {_key(k)} = {value}, written by {a}"
        finals = _final_writes(target)
        for k, w in finals.items():
            later = index.later.get(k, {})
            if kind is EdgeKind.WW:
                for value, after in later.items():
                    if value is not None and w in after and index.writer[k].get(value) == source.id:
                        return k, (
                            f"{a} wrote {_key(k)} = {value}, and a read of it preceded the write "
                            f"of {w} by {b}, so {value} < {w}"
                        )
            if kind is EdgeKind.RW:
                for k2, value in _external_reads(source):
                    if k2 != k:
                        continue
                    if value is None and w in index.minimal.get(k, ()):
                        return k, (
                            f"{a} read the initial (nil) state of {_key(k)}, which {b} "
                            f"overwrote with {w}"
                        )
                    if value is not None and w in later.get(value, ()):
                        return k, (
                            f"{a} read {_key(k)} = {value}, a version before {b}'s write of {w}"
                        )
        raise AssertionError(f"no {kind.label} edge from txn {source.id} to txn {target.id}")


def _external_reads(txn: Txn) -> list[tuple[Key, int | None]]:
    wrote: set[Key] = set()
    seen: list[tuple[Key, int | None]] = []
    for f, k, v in txn.mops:
        if f == "w":
            wrote.add(k)
        elif k not in wrote:
            seen.append((k, cast("int | None", v)))
    return seen


def _final_writes(txn: Txn) -> dict[Key, int]:
    return {k: cast(int, v) for f, k, v in txn.mops if f == "w"}


def _key(k: Key) -> str:
    return json.dumps(k)


def _values(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values)

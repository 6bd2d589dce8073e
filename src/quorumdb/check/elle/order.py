"""Process and real-time order edges, for strict serializability.

Real time: a transaction precedes every transaction invoked after it completed. All those
pairs are O(n^2); a transitive reduction is enough for cycles, and it is what Elle computes:
walking the events in order, keep the "frontier" of completed transactions no later
completion has yet covered, and link each new invoke to the frontier. When a transaction
completes it joins the frontier and evicts its own predecessors (reachable through it).

With timestamps on every event, "completed before" means a completion time strictly less
than the invoke time; without, it means earlier in the file.

Process: each process's transactions in the order it ran them. Only ``ok`` transactions have
outgoing order edges: an ``info`` one may have taken effect at any later time.
"""

from __future__ import annotations

from collections.abc import Sequence

from quorumdb.check.elle.graph import DepGraph
from quorumdb.check.elle.history import Txn
from quorumdb.check.elle.levels import EdgeKind
from quorumdb.check.history import Outcome

__all__ = ["add_order_edges", "explain_order"]


def add_order_edges(graph: DepGraph, txns: Sequence[Txn], event_count: int, timed: bool) -> None:
    """Add process and real-time edges between the committed transactions of ``graph``."""
    committed = graph.committed
    at: list[tuple[bool, Txn] | None] = [None] * event_count
    for txn in txns:
        if committed[txn.id]:
            at[txn.invoke_index] = (True, txn)
            if txn.outcome is Outcome.OK and txn.complete_index is not None:
                at[txn.complete_index] = (False, txn)
    process, realtime = int(EdgeKind.PROCESS), int(EdgeKind.REALTIME)
    add = graph.add
    last_ok: dict[int, int] = {}
    frontier: set[int] = set()
    predecessors: dict[int, tuple[int, ...]] = {}
    pending: list[Txn] = []  # completed, timed, not yet in the frontier
    admitted = 0
    for event in at:
        if event is None:
            continue
        is_invoke, txn = event
        if not is_invoke:
            last_ok[txn.process] = txn.id
            if timed:
                pending.append(txn)
            else:
                _admit(frontier, predecessors, txn.id)
            continue
        if timed:
            now = txn.invoke_time
            assert now is not None
            while admitted < len(pending):
                done = pending[admitted]
                assert done.complete_time is not None
                if done.complete_time >= now:
                    break
                _admit(frontier, predecessors, done.id)
                admitted += 1
        before = tuple(frontier)
        predecessors[txn.id] = before
        for p in before:
            add(p, txn.id, realtime)
        previous = last_ok.get(txn.process)
        if previous is not None:
            add(previous, txn.id, process)


def _admit(frontier: set[int], predecessors: dict[int, tuple[int, ...]], txn_id: int) -> None:
    frontier.difference_update(predecessors.pop(txn_id, ()))
    frontier.add(txn_id)


def explain_order(source: Txn, target: Txn, kind: EdgeKind, a: str, b: str) -> str:
    """Why an order edge joins ``source`` (named ``a``) to ``target`` (named ``b``)."""
    done = f"event #{(source.complete_index or 0) + 1}"
    began = f"event #{target.invoke_index + 1}"
    if kind is EdgeKind.PROCESS:
        return f"process {source.process} completed {a} ({done}) before it invoked {b} ({began})"
    timing = ""
    if source.complete_time is not None and target.invoke_time is not None:
        timing = f", time {source.complete_time} < {target.invoke_time}"
    return f"{a} completed ({done}) before {b} was invoked ({began}{timing})"

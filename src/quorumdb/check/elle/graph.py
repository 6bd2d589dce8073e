"""The dependency graph: transactions as vertices, a bit set of edge kinds per ordered pair.

One dict of successor -> `EdgeKind` bits per transaction, rather than an object per edge: a
100,000-transaction history has about a million edges, and the cycle search only needs to
ask "which successors, through which kinds".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from quorumdb.check.elle.history import Key, Txn
from quorumdb.check.elle.levels import EdgeKind
from quorumdb.check.elle.result import Anomaly

__all__ = ["DepGraph", "Explainer", "Inference"]


class DepGraph:
    """Edges between transactions, by transaction id; ``committed[t]`` marks the vertices.

    Only committed transactions take part: ``ok`` ones, and ``info`` ones whose writes some
    committed read observed (the models decide which). The others keep empty successor maps.
    """

    __slots__ = ("committed", "succ")

    def __init__(self, txn_count: int) -> None:
        self.succ: list[dict[int, int]] = [{} for _ in range(txn_count)]
        self.committed = [False] * txn_count

    def add(self, source: int, target: int, kind: int) -> None:
        """Add ``kind`` to the edge source -> target (self-edges are ignored)."""
        if source != target:
            edges = self.succ[source]
            edges[target] = edges.get(target, 0) | kind

    def kinds(self, source: int, target: int) -> EdgeKind:
        """The kinds of the edge source -> target (empty if there is none)."""
        return EdgeKind(self.succ[source].get(target, 0))

    def edge_count(self) -> int:
        """Ordered pairs with at least one edge."""
        return sum(len(edges) for edges in self.succ)


class Explainer(Protocol):
    """Says why an edge of a given kind joins two transactions (each model has its own)."""

    def explain(
        self, source: Txn, target: Txn, kind: EdgeKind, a: str, b: str
    ) -> tuple[Key | None, str]:
        """The key a data edge is about, and a sentence calling the transactions ``a`` and
        ``b``. Only asked about kinds the model put on that edge (ww, wr or rw)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Inference:
    """What a model's inference yields: the data edges, the anomalies found without cycles,
    and how to explain an edge."""

    graph: DepGraph
    anomalies: list[Anomaly]
    explainer: Explainer

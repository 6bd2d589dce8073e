"""The dependency graph: transactions as vertices, a bit set of edge kinds per ordered pair.

One dict of successor -> `EdgeKind` bits per transaction, rather than an object per edge: a
100,000-transaction history has about a million edges, and the cycle search only needs to
ask "which successors, through which kinds".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from quorumdb.check.elle.history import Key, Txn
from quorumdb.check.elle.levels import EdgeKind
from quorumdb.check.elle.result import Anomaly

__all__ = ["HUB", "DepGraph", "Explainer", "Inference"]


HUB = 32
"""The edge kind from a hub to the writers it stands for (never shown: see `DepGraph`)."""


class DepGraph:
    """Edges between transactions, by transaction id; ``committed[t]`` marks the vertices.

    Only committed transactions take part: ``ok`` ones, and ``info`` ones whose writes some
    committed read observed (the models decide which). The others keep empty successor maps.

    Vertices from ``txn_count`` on are hubs. When m transactions read a version that n
    others overwrote, the m * n rw edges between them become m rw edges into one hub and n
    `HUB` edges out of it: a store that answers 10,000 reads with the initial state while
    10,000 blind writes happen would otherwise need 10^8 edges. A path reader -rw-> hub
    -hub-> writer is one rw edge; the cycle search collapses it before classifying.
    """

    __slots__ = ("committed", "succ", "txn_count")

    def __init__(self, txn_count: int) -> None:
        self.txn_count = txn_count
        self.succ: list[dict[int, int]] = [{} for _ in range(txn_count)]
        self.committed = [False] * txn_count

    def is_hub(self, vertex: int) -> bool:
        """Whether ``vertex`` is a hub rather than a transaction."""
        return vertex >= self.txn_count

    def add_all(self, sources: Sequence[int], targets: Sequence[int], kind: int) -> None:
        """An edge of ``kind`` from every source to every other target, through hubs when
        that takes fewer edges (``kind`` must then be rw: only anti-dependencies fan out).

        A transaction that is both a source and a target (it read the version, then wrote
        a successor) must reach every other target but not itself, so those get their own
        routes: a hub for the targets that are not sources, and two hub chains over the
        rest in order, each reaching the transactions before it (prefix) or after it
        (suffix). Every route stays linear in size.
        """
        m, n = len(sources), len(targets)
        if m < 2 or n < 2 or m * n <= m + n:
            succ = self.succ
            for source in sources:
                edges = succ[source]
                for target in targets:
                    if source != target:
                        edges[target] = edges.get(target, 0) | kind
            return
        assert kind == EdgeKind.RW, kind
        both = set(sources).intersection(targets)
        if not both:
            hub = self._hub(targets)
            for source in sources:
                self._link(source, hub, kind)
            return
        shared = sorted(both)
        last = len(shared) - 1
        others = self._hub([t for t in targets if t not in both])
        prefix: list[int] = []  # prefix[i] reaches shared[0..i]
        for i, t in enumerate(shared):
            prefix.append(self._hub([t, prefix[i - 1]] if i > 0 else [t]))
        suffix = [0] * len(shared)  # suffix[i] reaches shared[i..last]
        for i in range(last, -1, -1):
            t = shared[i]
            suffix[i] = self._hub([t, suffix[i + 1]] if i < last else [t])
        for i, t in enumerate(shared):
            self._link(t, others, kind)
            if i > 0:
                self._link(t, prefix[i - 1], kind)
            if i < last:
                self._link(t, suffix[i + 1], kind)
        everyone = self._hub([others, prefix[last]])
        for source in sources:
            if source not in both:
                self._link(source, everyone, kind)

    def _hub(self, targets: Sequence[int]) -> int:
        hub = len(self.succ)
        self.succ.append(dict.fromkeys(targets, HUB))
        self.committed.append(False)
        return hub

    def _link(self, source: int, target: int, kind: int) -> None:
        edges = self.succ[source]
        edges[target] = edges.get(target, 0) | kind

    def add(self, source: int, target: int, kind: int) -> None:
        """Add ``kind`` to the edge source -> target (self-edges are ignored)."""
        if source != target:
            edges = self.succ[source]
            edges[target] = edges.get(target, 0) | kind

    def kinds(self, source: int, target: int) -> EdgeKind:
        """The kinds of the edge source -> target (empty if there is none)."""
        return EdgeKind(self.succ[source].get(target, 0))

    def edge_count(self) -> int:
        """Ordered pairs with at least one edge (hub edges included)."""
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

"""Cycles in the dependency graph: find them, classify them, explain them.

The graph is split into strongly connected components (Tarjan); only components of two or
more transactions hold cycles. Inside each, one witness per class is searched for, most
severe first, in subgraphs chosen so that existence is decided exactly and in linear time:

- G0: a component of the ww-only subgraph;
- G1c: a wr edge inside a component of the ww+wr subgraph (the path back closes a cycle);
- G-single or G-nonadjacent (the cycles snapshot isolation forbids: every rw edge preceded
  by a ww or wr edge, Cerone & Gotsman's characterization, Elle's PL-SI "sequential
  extension"): a component of the product graph whose states are (transaction, "the last
  edge was rw"), where an rw edge may leave only a state reached by a non-rw edge;
- G2-item: when none of those exists, any cycle (it has two adjacent rw edges).

Each witness is a shortest cycle through a starting transaction (BFS). The product search
may return a G-nonadjacent cycle while a G-single also exists; a G-single is then looked
for edge by edge (one BFS per rw edge), which is the only part that is not linear: it stops
after a budget of edge visits (deterministic: no clock), and then the G-nonadjacent stands
(the level verdicts do not change: snapshot isolation forbids both).

Hubs (see `DepGraph`) are searched through like any vertex, with rw edges only, and
removed from each witness before it is classified: reader -rw-> hub -> writer is one rw edge.

With strict serializability the process and real-time edges join the graph. Each search
runs first over the data edges, then with process edges, then with real-time ones, so a
cycle is reported with the fewest order edges it needs, named ``-process`` or ``-realtime``
after them as Elle names them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

from quorumdb.check.elle.graph import HUB, DepGraph, Explainer
from quorumdb.check.elle.history import Txn
from quorumdb.check.elle.levels import VARIANTS, EdgeKind, Kind
from quorumdb.check.elle.order import explain_order
from quorumdb.check.elle.result import Anomaly, Step
from quorumdb.check.elle.scc import Components, shortest_path, strongly_connected_components

__all__ = ["DEFAULT_MAX_SEARCH_STEPS", "classify", "find_cycles"]

DEFAULT_MAX_SEARCH_STEPS = 2_000_000
"""Edge visits the whole check may spend looking for a G-single behind a G-nonadjacent."""

_WW, _WR, _RW = int(EdgeKind.WW), int(EdgeKind.WR), int(EdgeKind.RW)
_PROCESS, _REALTIME = int(EdgeKind.PROCESS), int(EdgeKind.REALTIME)
_DATA = _WW | _WR | _RW
_PRIORITY = (EdgeKind.WW, EdgeKind.WR, EdgeKind.PROCESS, EdgeKind.REALTIME, EdgeKind.RW)

_Cycle = tuple[list[int], list[EdgeKind]]
"""Vertices ``[v0, v1, ..., v0]`` (local ids) and the kind of each edge between them."""

_Walk = tuple[list[int], list[int]]
"""A cycle as searched: hubs may be among its vertices and `HUB` among its edge kinds."""


def find_cycles(
    graph: DepGraph,
    txns: Sequence[Txn],
    explainer: Explainer,
    order_edges: EdgeKind,
    max_search_steps: int = DEFAULT_MAX_SEARCH_STEPS,
) -> tuple[list[Anomaly], int]:
    """The cycle anomalies of ``graph``, and how many components hold cycles.

    ``order_edges`` are the order edge kinds the graph holds (none, or process and real
    time), which decides the variants searched.
    """
    variants = [0]
    if order_edges & EdgeKind.PROCESS:
        variants.append(_PROCESS)
    if order_edges & EdgeKind.REALTIME:
        variants.append(_PROCESS | _REALTIME)
    budget = [max_search_steps]
    anomalies: list[Anomaly] = []
    cyclic = strongly_connected_components(graph.succ).cyclic()
    for members in cyclic:
        component = _Component(graph, sorted(members))
        for cycle in component.witnesses(variants, budget):
            anomalies.append(_anomaly(component, cycle, txns, explainer))
    return anomalies, len(cyclic)


class _Component:
    """One strongly connected component, its vertices renumbered ``0..n-1``."""

    def __init__(self, graph: DepGraph, members: list[int]) -> None:
        self.members = members
        self.hub = [graph.is_hub(v) for v in members]
        local = {v: i for i, v in enumerate(members)}
        self.edges: list[list[tuple[int, int]]] = [
            [(local[w], kinds) for w, kinds in graph.succ[v].items() if w in local] for v in members
        ]
        self._succ: dict[int, list[list[int]]] = {}
        self._components: dict[int, Components] = {}

    def succ(self, mask: int) -> list[list[int]]:
        """Successor lists over the edges with a kind in ``mask``."""
        if mask & _RW:
            mask |= HUB  # a path through a hub is an rw edge
        found = self._succ.get(mask)
        if found is None:
            found = [[j for j, kinds in out if kinds & mask] for out in self.edges]
            self._succ[mask] = found
        return found

    def components(self, mask: int) -> Components:
        """Strongly connected components of the subgraph of ``mask`` edges."""
        if mask & _RW:
            mask |= HUB
        found = self._components.get(mask)
        if found is None:
            found = strongly_connected_components(self.succ(mask))
            self._components[mask] = found
        return found

    def witnesses(self, variants: list[int], budget: list[int]) -> list[_Cycle]:
        """One cycle per class found, most severe first, each with the fewest order edges."""
        out: list[_Cycle] = []
        found: set[str] = set()
        anything = False
        searches: list[tuple[str, Callable[[int, list[int]], _Cycle | None]]] = [
            ("G0", self._g0),
            ("G1c", self._g1c),
            ("SI", self._si),
        ]
        for variant in variants:
            if not self.components(_DATA | variant).cyclic():
                continue
            here = False
            for name, search in searches:
                if name in found:
                    continue
                cycle = search(variant, budget)
                if cycle is not None:
                    out.append(cycle)
                    found.add(name)
                    here = True
            if not here and not anything:
                out.append(self._any(variant))
                here = True
            anything = anything or here
        return out

    def _g0(self, variant: int, budget: list[int]) -> _Cycle | None:
        mask = _WW | variant
        for group in self.components(mask).cyclic():
            return self._closed(mask, group[0])
        return None

    def _g1c(self, variant: int, budget: list[int]) -> _Cycle | None:
        mask = _WW | _WR | variant
        of = self.components(mask).of
        succ = self.succ(mask)
        for i, out in enumerate(self.edges):
            for j, kinds in out:
                if kinds & _WR and of[i] == of[j]:
                    path = shortest_path(succ.__getitem__, j, i)
                    assert path is not None, "a component holds a path back"
                    return self._collapsed(self._close(i, _WR, path, mask))
        return None

    def _si(self, variant: int, budget: list[int]) -> _Cycle | None:
        """A cycle whose rw edges are never adjacent, preferably with exactly one."""
        a = _WW | _WR | variant
        product: list[list[int]] = []
        for i, out in enumerate(self.edges):
            if self.hub[i]:
                # Reached by an rw edge, so "last edge rw" holds through it.
                product.append([])
                product.append([2 * j + 1 for j, _ in out])
                continue
            after_a = [2 * j for j, kinds in out if kinds & a]
            product.append([*after_a, *(2 * j + 1 for j, kinds in out if kinds & _RW)])
            product.append(after_a)
        components = strongly_connected_components(product)
        hub = self.hub
        for group in components.cyclic():
            start = next((state for state in group if state & 1 and not hub[state // 2]), None)
            if start is None:
                continue
            states = shortest_path(product.__getitem__, start, start)
            assert states is not None, "a component holds a path back"
            vertices = [state // 2 for state in states]
            kinds = [
                HUB if hub[before] else _RW if after & 1 else self._label(before, after // 2, a)
                for before, after in zip(vertices, states[1:], strict=False)
            ]
            cycle = _shortened(self._collapsed((vertices, kinds)))
            if cycle[1].count(EdgeKind.RW) == 1:
                return cycle
            return self._single(variant, budget) or cycle
        return None

    def _single(self, variant: int, budget: list[int]) -> _Cycle | None:
        """A cycle with exactly one rw edge, searched rw edge by rw edge within ``budget``."""
        a = _WW | _WR | variant
        of = self.components(a).of
        succ = self.succ(a)
        same: list[tuple[int, int]] = []
        across: list[tuple[int, int]] = []
        hub = self.hub
        through_hubs: list[tuple[int, int]] = []
        for i, out in enumerate(self.edges):
            if hub[i]:
                continue
            for j, kinds in out:
                if kinds & _RW:
                    if hub[j]:
                        through_hubs.append((i, j))
                    elif of[i] == of[j]:
                        same.append((i, j))
                    elif of[j] > of[i]:
                        # j's component can only reach components numbered lower than it.
                        across.append((i, j))
        hub_out = [[j for j, _ in out] if hub[v] else [] for v, out in enumerate(self.edges)]
        for i, j in [*same, *across, *through_hubs]:
            if budget[0] <= 0:
                return None
            floor = of[i]

            def forward(v: int, floor: int = floor) -> list[int]:
                if hub[v]:
                    return hub_out[v]
                return [w for w in succ[v] if of[w] >= floor]

            path = shortest_path(forward, j, i, budget=budget)
            if path is not None:
                return self._collapsed(self._close(i, _RW, path, a))
        return None

    def _any(self, variant: int) -> _Cycle:
        mask = _DATA | variant
        group = self.components(mask).cyclic()[0]
        return self._closed(mask, next(v for v in group if not self.hub[v]))

    def _closed(self, mask: int, start: int) -> _Cycle:
        path = shortest_path(self.succ(mask).__getitem__, start, start)
        assert path is not None, "a vertex of a cyclic component lies on a cycle"
        kinds = [self._label(u, v, mask) for u, v in pairwise(path)]
        return self._collapsed((path, kinds))

    def _close(self, i: int, kind: int, path: list[int], mask: int) -> _Walk:
        """The cycle ``i -kind-> path[0] ... path[-1] == i``."""
        kinds = [kind, *(self._label(u, v, mask) for u, v in pairwise(path))]
        return [i, *path], kinds

    def _label(self, u: int, v: int, mask: int) -> int:
        if self.hub[u]:
            return HUB
        kinds = next(k for w, k in self.edges[u] if w == v) & mask
        return next(kind for kind in _PRIORITY if kinds & kind)

    def _collapsed(self, walk: _Walk) -> _Cycle:
        """The cycle without its hubs: reader -rw-> hub ... -hub-> writer is reader -rw->
        writer."""
        vertices, kinds = walk
        hub = self.hub
        if not any(hub[v] for v in vertices):
            return vertices, [EdgeKind(k) for k in kinds]
        start = next(n for n, v in enumerate(vertices) if not hub[v])
        ring = vertices[start:-1] + vertices[:start]
        ring_kinds = kinds[start:] + kinds[:start]
        out_vertices = [ring[0]]
        out_kinds: list[EdgeKind] = []
        for v, kind in zip(ring[1:] + ring[:1], ring_kinds, strict=True):
            if kind != HUB:
                out_kinds.append(EdgeKind(kind))
            if not hub[v]:
                out_vertices.append(v)
        assert len(out_vertices) == len(out_kinds) + 1, (vertices, kinds)
        return out_vertices, out_kinds


def _shortened(cycle: _Cycle) -> _Cycle:
    """A closed walk that visits a transaction twice, cut down to a simple cycle that keeps
    an rw edge and no two adjacent (when one of its pieces does)."""
    vertices, kinds = cycle
    while True:
        first: dict[int, int] = {}
        split = None
        for n, v in enumerate(vertices[:-1]):
            if v in first:
                split = (first[v], n)
                break
            first[v] = n
        if split is None:
            return vertices, kinds
        a, b = split
        inner = (vertices[a : b + 1], kinds[a:b])
        outer = (vertices[: a + 1] + vertices[b + 1 :], kinds[:a] + kinds[b:])
        good = [piece for piece in (inner, outer) if _snapshot_forbidden(piece[1])]
        if not good:
            return vertices, kinds
        vertices, kinds = min(good, key=lambda piece: len(piece[1]))


def _snapshot_forbidden(kinds: list[EdgeKind]) -> bool:
    rw = [k is EdgeKind.RW for k in kinds]
    return any(rw) and not any(rw[n] and rw[n - 1] for n in range(len(rw)))


def classify(kinds: Sequence[EdgeKind]) -> Kind:
    """The class of a cycle from the kinds of its edges, as Elle classifies."""
    rw = [k is EdgeKind.RW for k in kinds]
    count = sum(rw)
    if count == 0:
        base = Kind.G1C if EdgeKind.WR in kinds else Kind.G0
    elif count == 1:
        base = Kind.G_SINGLE
    elif any(rw[n] and rw[n - 1] for n in range(len(rw))):
        base = Kind.G2_ITEM
    else:
        base = Kind.G_NONADJACENT
    suffix = ""
    if EdgeKind.REALTIME in kinds:
        suffix = "-realtime"
    elif EdgeKind.PROCESS in kinds:
        suffix = "-process"
    return VARIANTS[(base, suffix)]


def _anomaly(
    component: _Component, cycle: _Cycle, txns: Sequence[Txn], explainer: Explainer
) -> Anomaly:
    vertices, kinds = _rotated(component, cycle)
    walk = [txns[component.members[v]] for v in vertices]
    ops = tuple(dict.fromkeys(walk[:-1]))
    names = {txn.id: f"T{n + 1}" for n, txn in enumerate(ops)}
    steps = []
    chain = [names[walk[0].id]]
    for source, target, kind in zip(walk, walk[1:], kinds, strict=False):
        a, b = names[source.id], names[target.id]
        if kind in (EdgeKind.PROCESS, EdgeKind.REALTIME):
            key = None
            text = explain_order(source, target, kind, a, b)
        else:
            key, text = explainer.explain(source, target, kind, a, b)
        steps.append(Step(source=source, target=target, kind=kind, key=key, explanation=text))
        label = kind.label if key is None else f"{kind.label}({_short(key)})"
        chain.append(f"-{label}-> {b}")
    return Anomaly(
        kind=classify(kinds),
        ops=ops,
        cycle=tuple(steps),
        key=None,
        explanation=" ".join(chain),
    )


def _rotated(component: _Component, cycle: _Cycle) -> _Cycle:
    """The same cycle, starting at its earliest-invoked transaction (a canonical form)."""
    vertices, kinds = cycle
    assert len(vertices) == len(kinds) + 1 and vertices[0] == vertices[-1], cycle
    start = min(range(len(kinds)), key=lambda n: component.members[vertices[n]])
    body = vertices[start:-1] + vertices[:start]
    return [*body, body[0]], kinds[start:] + kinds[:start]


def _short(key: object) -> str:
    return key if isinstance(key, str) else str(key)

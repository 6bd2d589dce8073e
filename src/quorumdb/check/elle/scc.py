"""Strongly connected components (Tarjan's algorithm, iterative) and shortest cycles (BFS).

A dependency graph has a cycle iff one of its strongly connected components has more than one
vertex (no graph here has self-loops), so the checker first splits the graph into components
and searches for cycles only inside the non-trivial ones. Histories have 10^5 transactions
and more; recursion would hit Python's limit, so both searches keep explicit stacks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence

__all__ = ["Components", "shortest_path", "strongly_connected_components"]


class Components:
    """The components of a graph: ``of[v]`` is v's component id, ``members[c]`` its vertices.

    Ids are in the order Tarjan's algorithm completes the components, a reverse topological
    order of the condensation: if component a reaches component b != a, then b < a.
    """

    __slots__ = ("members", "of")

    def __init__(self, of: list[int], members: list[list[int]]) -> None:
        self.of = of
        self.members = members

    def cyclic(self) -> list[list[int]]:
        """The components with more than one vertex, in id order."""
        return [m for m in self.members if len(m) > 1]


def strongly_connected_components(succ: Sequence[Iterable[int]]) -> Components:
    """The strongly connected components of the graph on vertices ``0..len(succ)-1``.

    ``succ[v]`` are v's successors (duplicates are harmless). Runs in O(V + E) with explicit
    stacks, so it is safe for any graph size.
    """
    n = len(succ)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    of = [-1] * n
    members: list[list[int]] = []
    stack: list[int] = []
    counter = 0
    for root in range(n):
        if index[root] != -1:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, iter(succ[root]))]
        while work:
            v, successors = work[-1]
            descended = False
            for w in successors:
                if index[w] == -1:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, iter(succ[w])))
                    descended = True
                    break
                if on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                component = len(members)
                group = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    of[w] = component
                    group.append(w)
                    if w == v:
                        break
                members.append(group)
    return Components(of, members)


def shortest_path(
    succ: Callable[[int], Iterable[int]],
    source: int,
    target: int,
    *,
    budget: list[int] | None = None,
) -> list[int] | None:
    """The shortest path ``[source, ..., target]`` of at least one edge, or None.

    With ``source == target`` this is the shortest cycle through ``source``. ``budget``, when
    given, is a one-element list of edge visits left; the search stops (returns None) once it
    reaches 0, and the visits are subtracted from it.
    """
    parent: dict[int, int] = {}
    queue = deque([source])
    visits = 0
    limit = budget[0] if budget is not None else -1
    found = False
    while queue and not found:
        v = queue.popleft()
        for w in succ(v):
            visits += 1
            if w == target:
                parent[w] = v
                found = True
                break
            if w not in parent and w != source:
                parent[w] = v
                queue.append(w)
        if limit >= 0 and visits >= limit:
            break
    if budget is not None:
        budget[0] = max(0, budget[0] - visits)
    if not found:
        return None
    path = [target]
    v = parent[target]
    while v != source:
        path.append(v)
        v = parent[v]
    path.append(source)
    path.reverse()
    return path

"""Tarjan's components and the BFS cycle search, on graphs small enough to check by hand and
large enough that recursion would fail."""

from __future__ import annotations

import random
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from quorumdb.check.elle.cycles import classify
from quorumdb.check.elle.graph import DepGraph
from quorumdb.check.elle.levels import EdgeKind, Kind
from quorumdb.check.elle.scc import shortest_path, strongly_connected_components


def _groups(succ: list[list[int]]) -> set[frozenset[int]]:
    return {frozenset(m) for m in strongly_connected_components(succ).members}


def test_components_of_a_small_graph() -> None:
    # 0 -> 1 -> 2 -> 0 is a cycle; 2 -> 3; 3 <-> 4; 5 alone.
    succ = [[1], [2], [0, 3], [4], [3], []]
    assert _groups(succ) == {frozenset({0, 1, 2}), frozenset({3, 4}), frozenset({5})}
    components = strongly_connected_components(succ)
    # Reverse topological ids: {0,1,2} reaches {3,4}, so it completes later.
    assert components.of[0] > components.of[3]
    assert sorted(map(sorted, components.cyclic())) == [[0, 1, 2], [3, 4]]


def test_a_chain_far_deeper_than_the_recursion_limit() -> None:
    n = 20 * sys.getrecursionlimit()
    chain = [[v + 1] for v in range(n - 1)] + [[]]
    assert strongly_connected_components(chain).cyclic() == []
    chain[-1] = [0]  # close it: one component of every vertex
    (whole,) = strongly_connected_components(chain).cyclic()
    assert len(whole) == n


@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.integers(1, 12), st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11))))
def test_components_agree_with_mutual_reachability(n: int, pairs: list[tuple[int, int]]) -> None:
    succ: list[list[int]] = [[] for _ in range(n)]
    for a, b in pairs:
        if a < n and b < n and a != b:
            succ[a].append(b)
    reach = [_reachable(succ, v) for v in range(n)]
    of = strongly_connected_components(succ).of
    for a in range(n):
        for b in range(n):
            assert (of[a] == of[b]) == (a == b or (b in reach[a] and a in reach[b]))
            if of[a] != of[b] and b in reach[a]:
                assert of[b] < of[a]  # reverse topological order


def _reachable(succ: list[list[int]], start: int) -> set[int]:
    seen: set[int] = set()
    stack = list(succ[start])
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack.extend(succ[v])
    return seen


def test_shortest_path_and_shortest_cycle() -> None:
    succ = [[1, 3], [2], [0], [0]]
    assert shortest_path(succ.__getitem__, 0, 0) in ([0, 3, 0],)
    assert shortest_path(succ.__getitem__, 1, 0) == [1, 2, 0]
    assert shortest_path(succ.__getitem__, 3, 2) == [3, 0, 1, 2]
    assert shortest_path([[1], []].__getitem__, 1, 0) is None


def test_a_search_stops_when_its_budget_runs_out() -> None:
    rng = random.Random(7)
    n = 2000
    succ = [[rng.randrange(n) for _ in range(3)] for _ in range(n)]
    succ[0] = [1]
    target = n  # unreachable: the search must explore everything, then give up
    succ.append([])
    budget = [50]
    assert shortest_path(succ.__getitem__, 0, target, budget=budget) is None
    assert budget == [0]
    unlimited = [10**9]
    assert shortest_path(succ.__getitem__, 0, target, budget=unlimited) is None
    assert 50 < 10**9 - unlimited[0] <= 3 * n + 1


def test_classification_follows_elle() -> None:
    ww, wr, rw = EdgeKind.WW, EdgeKind.WR, EdgeKind.RW
    assert classify([ww, ww]) is Kind.G0
    assert classify([ww, wr]) is Kind.G1C
    assert classify([rw, wr]) is Kind.G_SINGLE
    assert classify([rw, wr, rw, wr]) is Kind.G_NONADJACENT
    assert classify([rw, rw]) is Kind.G2_ITEM
    assert classify([rw, wr, rw]) is Kind.G2_ITEM  # the last and first rw are adjacent
    assert classify([rw, EdgeKind.PROCESS]) is Kind.G_SINGLE_PROCESS
    assert classify([ww, EdgeKind.PROCESS, EdgeKind.REALTIME]) is Kind.G0_REALTIME


def test_fan_out_through_hubs_reaches_exactly_the_other_targets() -> None:
    """`DepGraph.add_all`: from every source to every target but itself, through hubs when
    there are many, in a linear number of edges (brute force over random cases)."""
    rng = random.Random(3)
    for _ in range(300):
        n = 12
        graph = DepGraph(n)
        sources = rng.sample(range(n), rng.randint(0, 8))
        targets = rng.sample(range(n), rng.randint(0, 8))
        graph.add_all(sources, targets, int(EdgeKind.RW))
        for v in range(n):
            expected = {t for t in targets if t != v} if v in sources else set()
            assert _through_hubs(graph, v) == expected
    big = DepGraph(4000)
    readers, writers = list(range(2000)), list(range(1000, 3000))  # 1,000 do both
    big.add_all(readers, writers, int(EdgeKind.RW))
    assert big.edge_count() < 10 * 4000  # not 2000 * 2000
    assert _through_hubs(big, 1500) == set(writers) - {1500}


def _through_hubs(graph: DepGraph, v: int) -> set[int]:
    out: set[int] = set()
    seen: set[int] = set()
    stack = list(graph.succ[v])
    while stack:
        w = stack.pop()
        if w in seen:
            continue
        seen.add(w)
        if graph.is_hub(w):
            stack.extend(graph.succ[w])
        else:
            out.add(w)
    return out

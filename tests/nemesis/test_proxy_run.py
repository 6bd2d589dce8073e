"""`quorumdb test` with partitions through the proxy network, on real node processes.

A correct cluster stays linearizable while links are cut, delayed or split around a
bridge, on 3 and 5 nodes; the proxies only dropped frames on links the logged faults
named, and nothing (thread, listening port, node) is left after the run. With the planted
bug `stale-local-reads` (a follower answers reads from its own state), cutting a node off
is enough for the checker to catch a stale read.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from quorumdb.nemesis.proxy import link_modes
from quorumdb.nemesis.run import RunOptions, RunResult, run_test
from quorumdb.nemesis.schedule import Nemesis
from tests.nemesis.sockets import listening, processes_using


def _run(
    tmp_path: Path,
    *,
    nodes: int,
    seed: int,
    bugs: tuple[str, ...] = (),
    nemesis: tuple[Nemesis, ...] = (Nemesis.PARTITION,),
) -> RunResult:
    opts = RunOptions(
        out=tmp_path / "run",
        nemesis=nemesis,
        net="proxy",
        nodes=nodes,
        time_s=10.0,
        rate=60,
        seed=seed,
        bugs=bugs,
    )
    return run_test(opts)


def _faults(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]


def _check_links_and_leftovers(out: Path, nodes: int) -> dict[str, dict[str, int]]:
    """The proxies dropped frames only on links a logged fault changed, and nothing of the
    run is left: no proxy thread, no proxy listening, no node process."""
    links: dict[str, dict[str, int]] = json.loads((out / "net" / "links.json").read_text())
    faulted = set()
    for f in _faults(out):
        if f["kind"] != "partition":
            continue
        changed = link_modes(f["variant"], tuple(f["nodes"]), range(1, nodes + 1), f["amount"])
        faulted |= {f"{i}->{j}" for i, j in changed}
    dropped = {name for name, c in links.items() if c["dropped_cut"] or c["dropped_loss"]}
    assert dropped <= faulted, f"frames dropped on links no fault touched: {dropped - faulted}"
    assert not [t for t in threading.enumerate() if t.name == "quorumdb-proxy"]
    assert not listening([c["port"] for c in links.values()]), "a proxy still listens"
    assert not processes_using(out / "cluster"), "nodes left running after the run"
    return links


def test_a_register_run_under_partitions_through_the_proxies_is_linearizable(
    tmp_path: Path,
) -> None:
    # Seed 10's schedule: a delay on node 1, a bridge through node 1, node 3 isolated.
    result = _run(tmp_path, nodes=3, seed=10)
    out = tmp_path / "run"
    assert result.valid, result.summary
    assert result.ops["ok"] > 100, result.ops
    faults = _faults(out)
    assert [f["variant"] for f in faults] == ["delay", "bridge", "isolate"], faults
    assert all(f["kind"] == "partition" for f in faults)
    links = _check_links_and_leftovers(out, 3)
    assert sum(c["dropped_cut"] for c in links.values()) > 0, links
    assert sum(c["held"] for c in links.values()) > 0, links
    assert json.loads((out / "verdict.json").read_text())["options"]["net"] == "proxy"


def test_five_nodes_survive_a_minority_cut_off_and_a_bridge(tmp_path: Path) -> None:
    # Seed 36 on five nodes: {1, 4} cut off, 5 -> 4 cut one way, a bridge through node 2.
    result = _run(tmp_path, nodes=5, seed=36)
    out = tmp_path / "run"
    assert result.valid, result.summary
    variants = [f["variant"] for f in _faults(out)]
    assert variants == ["majority-minority", "one-way", "bridge"], variants
    links = _check_links_and_leftovers(out, 5)
    assert len(links) == 20 and sum(c["dropped_cut"] for c in links.values()) > 0


def test_a_node_killed_behind_the_proxies_is_redialled_when_it_restarts(tmp_path: Path) -> None:
    # Seed 20 with kills and partitions: node 2 killed for ~2.5 s, then node 3 isolated.
    result = _run(tmp_path, nodes=3, seed=20, nemesis=(Nemesis.KILL, Nemesis.PARTITION))
    out = tmp_path / "run"
    assert result.valid, result.summary
    faults = [(f["kind"], f["variant"], f["nodes"]) for f in _faults(out)]
    assert faults == [("kill", "node", [2]), ("partition", "isolate", [3])], faults
    links = _check_links_and_leftovers(out, 3)
    for peer in (1, 3):
        into, out_of = links[f"{peer}->2"], links[f"2->{peer}"]
        assert into["refused"] >= 1, "the proxy found node 2 down"
        assert into["connections"] >= 2 and out_of["connections"] >= 2, "and joined it again"
    assert links["1->3"]["dropped_cut"] + links["2->3"]["dropped_cut"] > 0, links


def test_a_node_cut_off_serves_stale_reads_under_the_planted_bug(tmp_path: Path) -> None:
    # Seed 5: node 1 cut off from the majority at ~1.7 s, isolated again at ~5.6 s. The same
    # seed with the bug and no faults was linearizable: on loopback, followers lag too little.
    result = _run(tmp_path, nodes=3, seed=5, bugs=("stale-local-reads",))
    out = tmp_path / "run"
    assert not result.valid, "the stale reads of a partitioned follower went unnoticed"
    assert result.verdict.anomalies and all(
        a["kind"] == "not-linearizable" and a["operation"]["f"] == "read"
        for a in result.verdict.anomalies
    )
    # The impossible reads began while a node was cut off (or just after, before it caught up).
    windows = [(f["start_s"], f["end_s"] + 1.0) for f in _faults(out)]
    at_s = [a["operation"]["time"] / 1e9 for a in result.verdict.anomalies]
    assert any(lo <= t <= hi for t in at_s for lo, hi in windows), (at_s, windows)
    _check_links_and_leftovers(out, 3)

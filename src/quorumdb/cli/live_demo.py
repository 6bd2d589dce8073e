"""The live demo: a short workload against the local cluster, with a kill -9 of a leader.

It writes keys, shows who leads what, kills the busiest leader with SIGKILL while a writer
keeps going, reports how long writes stalled and that every acknowledged write is still
there, restarts the killed node and shows it catching up. The cluster keeps running after.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from quorumdb.cli.local_cluster import (
    LocalCluster,
    load_cluster,
    restart_node,
    wait_ready,
)
from quorumdb.kv.client import Client, RetryPolicy, UnavailableError

__all__ = ["run_live_demo"]

_RETRY = RetryPolicy(attempts_max=60, backoff_min_s=0.005, backoff_max_s=0.1)


def _leaders(client: Client) -> dict[int, int]:
    return {g["group"]: g["leader"] for g in client.cluster()["groups"]}


def _table(console: Console, client: Client, title: str) -> None:
    st = client.cluster()
    table = Table(title=title)
    for col in ("group", "leader", "term", "commit", "voters"):
        table.add_column(col, justify="right")
    for g in st["groups"]:
        table.add_row(
            "controller" if g["group"] == 0 else f"shard {g['group']}",
            str(g["leader"]),
            str(g["term"]),
            str(g["commit"]),
            ",".join(map(str, g["voters"])),
        )
    console.print(table)


def run_live_demo(cluster_dir: Path, console: Console) -> None:
    cluster = load_cluster(cluster_dir)
    client = Client(cluster.http_urls, retry=_RETRY, seed=2026)
    console.rule("[bold]1. writes and linearizable reads[/bold]")
    started = time.perf_counter()
    acked: dict[str, str] = {}
    for i in range(200):
        key = f"order-{i:04d}"
        client.put(key, f"pizza #{i}")
        acked[key] = f"pizza #{i}"
    elapsed = time.perf_counter() - started
    console.print(f"200 acknowledged writes (each fsynced on a quorum) in {elapsed:.2f} s")
    console.print(f"read order-0042 → {client.get('order-0042')}")
    _table(console, client, "who leads what")

    console.rule("[bold]2. kill -9 the busiest leader while a client keeps writing[/bold]")
    counts: dict[int, int] = {}
    leaders = _leaders(client)
    for lead in leaders.values():
        counts[lead] = counts.get(lead, 0) + 1
    victim = max(counts, key=lambda n: (counts[n], -n))
    stalls: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        c = Client([u for i, u in _urls(cluster) if i != victim], retry=_RETRY, seed=7)
        n = 0
        while not stop.is_set():
            n += 1
            t0 = time.perf_counter()
            try:
                c.put(f"during-{n}", str(n))
            except UnavailableError:
                continue
            acked[f"during-{n}"] = str(n)
            stalls.append(time.perf_counter() - t0)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(0.5)
    os.kill(cluster.pids[victim], signal.SIGKILL)
    killed_at = time.perf_counter()
    console.print(f"SIGKILL node {victim} (it led {counts[victim]} of {len(leaders)} groups)")
    survivors = Client([u for i, u in _urls(cluster) if i != victim], retry=_RETRY, seed=3)
    while any(lead in (0, victim) for lead in _leaders(survivors).values()):
        time.sleep(0.01)
    failover = time.perf_counter() - killed_at
    time.sleep(1.0)
    stop.set()
    thread.join(10)
    console.print(
        f"every group has a new leader {failover * 1000:.0f} ms after the kill; "
        f"slowest write during the failover took {max(stalls, default=0) * 1000:.0f} ms"
    )
    missing = [k for k, v in acked.items() if (survivors.get(k) or ("",))[0] != v]
    console.print(
        f"acknowledged writes checked: {len(acked)}, missing: {len(missing)}"
        + (" [green]✔[/green]" if not missing else " [red]✘[/red]")
    )
    _table(console, survivors, "after the failover")

    console.rule(f"[bold]3. restart node {victim}: it recovers from its WAL and catches up[/bold]")
    pid = restart_node(cluster_dir, victim)
    wait_ready(load_cluster(cluster_dir))
    node = Client([cluster.nodes[victim].http_url], retry=_RETRY, seed=4)
    last = max(
        (k for k in acked if k.startswith("during-")),
        key=lambda k: int(k.split("-")[1]),
        default="order-0199",
    )
    while node.get(last, consistency="stale") is None:
        time.sleep(0.05)
    console.print(f"node {victim} is back (pid {pid}) and serves {last} from its own replica")
    console.print(
        "the cluster keeps running: try 'quorumdb status', 'quorumdb kv get order-0042', "
        "'quorumdb cluster add-node', and stop it with 'quorumdb down'"
    )


def _urls(cluster: LocalCluster) -> list[tuple[int, str]]:
    return [(i, m.http_url) for i, m in sorted(cluster.nodes.items())]

"""Raft core throughput, in process: a 3-node cluster on the sans-IO core, no I/O at all.

Committed entries per second with proposals of 100-byte entries batched 1, 10, 100 and 1000
to a proposal; the batch-of-1 row is the baseline measured in the same run. An entry counts
once every node has applied it. Target: >= 200,000 entries/s.

    python bench/raft_bench.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from quorumdb.raft import Config
from quorumdb.raft.testing import Cluster

ENTRY_BYTES = 100
TARGET = 200_000


def measure(batch: int, seconds: float) -> tuple[float, int]:
    """Return (entries/s, entries) for proposals of `batch` entries, all nodes applying."""
    c = Cluster([1, 2, 3], config=lambda i: Config(id=i, max_inflight_msgs=256))
    c.campaign(1)
    applied = dict.fromkeys(c.ids, 0)

    def count(node: int, entries: list[object]) -> None:
        applied[node] += len(entries)

    c.apply_hook = count  # type: ignore[assignment]
    for i in c.ids:
        c.applied[i].clear()
    payload = [b"x" * ENTRY_BYTES] * batch
    leader = c.nodes[1]
    start_applied = min(applied.values())
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(max(1, 1000 // batch)):
            leader.propose_batch(payload)
            c.stabilize()
        for i in c.ids:
            c.applied[i].clear()  # keep memory flat: the harness records applied entries
    elapsed = time.perf_counter() - started
    done = min(applied.values()) - start_applied
    return done / elapsed, done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    table = Table(title="Raft core, 3 nodes in process, 100-byte entries (no I/O)")
    for col in ("entries per proposal", "committed entries/s", "entries", "vs batch 1"):
        table.add_column(col, justify="right")
    base = 0.0
    best = 0.0
    for batch in (1, 10, 100, 1000):
        rate, n = measure(batch, args.seconds)
        base = base or rate
        best = max(best, rate)
        table.add_row(str(batch), f"{rate:,.0f}", f"{n:,}", f"{rate / base:.1f}x")
    console = Console(width=120)
    console.print(table)
    verdict = "meets" if best >= TARGET else "MISSES"
    console.print(f"best {best:,.0f} entries/s: {verdict} the target of {TARGET:,} entries/s")


if __name__ == "__main__":
    main()

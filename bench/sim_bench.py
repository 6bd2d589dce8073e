"""Simulator speed: simulated messages/s, events/s and seeds/minute for the default fault mix.

One process, seeds run back to back (a sweep divides the wall time by the number of workers).
The "no faults" row is the baseline measured in the same run.

    python bench/sim_bench.py [--seeds 100]
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from quorumdb.sim.options import swarm_options
from quorumdb.sim.simulator import run


def measure(seeds: int, *, faults: bool) -> dict[str, float]:
    totals = {"messages": 0.0, "events": 0.0, "sim_us": 0.0, "committed": 0.0}
    failures = 0
    started = time.perf_counter()
    for seed in range(1, seeds + 1):
        opts = swarm_options(seed)
        if not faults:
            opts = swarm_options(seed, allowed=frozenset())
        r = run(opts)
        failures += not r.ok
        for k in totals:
            totals[k] += r.stats[k]
    wall = time.perf_counter() - started
    return {**totals, "wall": wall, "failures": failures, "seeds": seeds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=100)
    args = ap.parse_args()
    table = Table(title=f"simulator, {args.seeds} swarm seeds, one process")
    for col in (
        "fault mix",
        "seeds/min",
        "sim msgs/s",
        "events/s",
        "sim s per wall s",
        "committed/seed",
        "violations",
    ):
        table.add_column(col, justify="right")
    for label, faults in (("no faults (baseline)", False), ("default swarm", True)):
        m = measure(args.seeds, faults=faults)
        wall = m["wall"]
        table.add_row(
            label,
            f"{m['seeds'] / wall * 60:,.0f}",
            f"{m['messages'] / wall:,.0f}",
            f"{m['events'] / wall:,.0f}",
            f"{m['sim_us'] / 1e6 / wall:,.0f}",
            f"{m['committed'] / m['seeds']:,.0f}",
            f"{m['failures']:.0f}",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()

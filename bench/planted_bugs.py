"""Planted bugs: for each `PlantedBug`, how many swarm seeds of 1..N catch it, the first seed
that does, and which checkers fired. The README's table comes from this script.

    python bench/planted_bugs.py                 # 500 seeds per bug, every CPU
    python bench/planted_bugs.py --seeds 100 --bug ack-before-sync

Every seed is a full simulation of real nodes (`quorumdb sim sweep --bug B` runs the same).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

from rich.console import Console
from rich.table import Table

from quorumdb.raft import PlantedBug
from quorumdb.sim.options import ALL_FAULTS
from quorumdb.sim.sweep import run_seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=500)
    ap.add_argument("--bug", action="append", default=None, help="only these bugs")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    bugs = [PlantedBug(b) for b in args.bug] if args.bug else list(PlantedBug)
    seeds = list(range(1, args.seeds + 1))
    table = Table(title=f"planted bugs over swarm seeds 1-{args.seeds}")
    for col in ("bug", "caught in", "first seed", "checkers (count)"):
        table.add_column(col, justify="left" if col in ("bug", "checkers (count)") else "right")
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        for bug in bugs:
            caught: list[int] = []
            by: Counter[str] = Counter()
            outcomes = pool.map(
                run_seed,
                seeds,
                [ALL_FAULTS] * len(seeds),
                [frozenset({bug})] * len(seeds),
                chunksize=8,
            )
            for o in outcomes:
                if not o.ok:
                    caught.append(o.seed)
                    by.update(o.caught_by)
            first = str(caught[0]) if caught else "-"
            checkers = ", ".join(f"{k} ({v})" for k, v in by.most_common())
            table.add_row(bug.value, f"{len(caught)}/{len(seeds)}", first, checkers)
            print(f"{bug.value}: {len(caught)} of {len(seeds)}, first {first}", flush=True)
    Console().print(table)
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

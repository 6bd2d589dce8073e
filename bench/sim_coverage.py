"""What the simulators reach: line coverage per package over a number of seeds.

    python bench/sim_coverage.py              # 50 seeds of each simulation (~4 minutes)
    python bench/sim_coverage.py --seeds 10   # quicker

Two rows per package: the Raft-only swarm (`quorumdb sim sweep`, its own node) and the
real-host simulation (`quorumdb sim host`, the NodeHost users run). Runs in this process,
one seed after another, under coverage.py (branch coverage off: line percentages).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import coverage
from rich.console import Console
from rich.table import Table

import quorumdb

PACKAGES = ("host", "kv", "kafka", "runtime", "storage", "raft", "sim", "check")


def _measure(name: str, run: Callable[[int], object], seeds: int) -> dict[str, tuple[int, int]]:
    src = Path(quorumdb.__file__).parent
    cov = coverage.Coverage(source=[str(src)], data_file=None)
    cov.start()
    started = time.perf_counter()
    for seed in range(1, seeds + 1):
        run(seed)
    cov.stop()
    print(f"{name}: {seeds} seeds in {time.perf_counter() - started:.0f} s (under coverage)")
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        pkg = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        _, statements, _, missing, _ = cov.analysis2(str(path))
        per[pkg][0] += len(statements) - len(missing)
        per[pkg][1] += len(statements)
    return {k: (v[0], v[1]) for k, v in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    args = ap.parse_args()

    from quorumdb.sim.host_sim import HostSimOptions, run_host_sim
    from quorumdb.sim.options import swarm_options
    from quorumdb.sim.simulator import run

    old = _measure("Raft-only swarm", lambda s: run(swarm_options(s)), args.seeds)
    new = _measure("real host", lambda s: run_host_sim(HostSimOptions(seed=s)), args.seeds)
    table = Table(title=f"line coverage over {args.seeds} seeds")
    table.add_column("package")
    table.add_column("lines")
    table.add_column("Raft-only swarm", justify="right")
    table.add_column("real host", justify="right")
    for pkg in PACKAGES:
        covered_old, total = old.get(pkg, (0, 0))
        covered_new, _ = new.get(pkg, (0, 0))
        if total:
            table.add_row(
                pkg,
                str(total),
                f"{100 * covered_old / total:.0f}%",
                f"{100 * covered_new / total:.0f}%",
            )
    Console().print(table)


if __name__ == "__main__":
    main()

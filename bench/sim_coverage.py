"""What the simulator reaches: line coverage per package and per key module over N seeds.

    python bench/sim_coverage.py              # 50 swarm seeds (~3 minutes under coverage)
    python bench/sim_coverage.py --seeds 10   # quicker

The simulator (`quorumdb sim run|sweep`) runs the real node: `NodeHost` with the KV store and,
in 40% of seeds, the Kafka backend. Seeds run in this process, one after another, under
coverage.py (line percentages). Before issue 10 the simulator ran a node of its own; over 20
seeds it reached 0-3% of `host/` (imports only) and 0% of `kv/`, `kafka/` and `runtime/`.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import coverage
from rich.console import Console
from rich.table import Table

import quorumdb

PACKAGES = ("host", "kv", "kafka", "runtime", "storage", "raft", "sim", "check")
MODULES = (
    "host/node_host.py",
    "host/group.py",
    "kv/state_machine.py",
    "kv/sessions.py",
    "kv/node_kv.py",
    "kafka/backend.py",
    "kafka/partition.py",
    "kafka/catch_up.py",
    "storage/wal.py",
    "raft/core.py",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    args = ap.parse_args()
    src = Path(quorumdb.__file__).parent
    cov = coverage.Coverage(source=[str(src)], data_file=None)
    cov.start()
    from quorumdb.sim.options import swarm_options
    from quorumdb.sim.simulator import run

    started = time.perf_counter()
    failed = 0
    for seed in range(1, args.seeds + 1):
        failed += not run(swarm_options(seed)).ok
    cov.stop()
    wall = time.perf_counter() - started
    print(f"{args.seeds} seeds in {wall:.0f} s under coverage, {failed} failed")
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    mods: dict[str, tuple[int, int]] = {}
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        pkg = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        _, statements, _, missing, _ = cov.analysis2(str(path))
        covered = len(statements) - len(missing)
        per[pkg][0] += covered
        per[pkg][1] += len(statements)
        mods[str(rel)] = (covered, len(statements))
    table = Table(title=f"line coverage of the simulator over {args.seeds} swarm seeds")
    table.add_column("package / module")
    table.add_column("lines", justify="right")
    table.add_column("covered", justify="right")
    for pkg in PACKAGES:
        covered, total = per.get(pkg, [0, 0])
        if total:
            table.add_row(pkg, str(total), f"{100 * covered / total:.0f}%")
    for mod in MODULES:
        covered, total = mods.get(mod, (0, 0))
        if total:
            table.add_row(f"  {mod}", str(total), f"{100 * covered / total:.0f}%")
    Console().print(table)


if __name__ == "__main__":
    main()

"""`quorumdb test soak`: many runs, cycling workloads and fault mixes, and one results table.

Run i takes workload i mod 4 and fault mix (i div 4) mod 4, so 16 runs cover every pair;
its seed is the soak's seed plus i, so any run can be replayed alone with `quorumdb test`.
Each run keeps its own run directory; the soak writes `soak.json` (a row per run) and
`soak.md` (the summary table the README shows). What is counted:

- operations: completed ok, plus those of unknown outcome (`info`);
- faults injected: from each run's fault log;
- acknowledged writes lost: the checkers' anomalies of a "lost" kind (an acknowledged Kafka
  record or list append that a later complete read does not have); a register that loses a
  write shows up as a linearizability violation instead, which has its own column;
- violations, per checker: runs whose history the checker rejected;
- failover: `recovery.failover_times` over every fault that took the leader away.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quorumdb.nemesis.recovery import failover_times, percentile
from quorumdb.nemesis.run import RunOptions, run_test
from quorumdb.nemesis.schedule import Nemesis

__all__ = ["MIXES", "SOAK_WORKLOADS", "SoakRow", "run_soak", "summary_table"]

SOAK_WORKLOADS = ("register", "kafka", "bank", "list-append")
MIXES: tuple[tuple[Nemesis, ...], ...] = (
    (Nemesis.KILL, Nemesis.PAUSE),
    (Nemesis.PARTITION,),
    (Nemesis.CLOCK, Nemesis.DISK),
    (Nemesis.KILL, Nemesis.PAUSE, Nemesis.PARTITION, Nemesis.CLOCK, Nemesis.DISK),
)


@dataclass(slots=True)
class SoakRow:
    run: int
    workload: str
    nemesis: list[str]
    seed: int
    valid: bool
    checker: str
    summary: str
    ops_ok: int
    ops_info: int
    faults: int
    lost: int
    failovers: list[float] = field(default_factory=list)
    dir: str = ""


def _lost(verdict: dict[str, Any]) -> int:
    declared = verdict.get("details", {}).get("lost_acked")
    if isinstance(declared, int):
        return declared
    return sum(1 for a in verdict.get("anomalies", []) if "lost" in str(a.get("kind", "")))


def run_soak(
    *,
    runs: int,
    out: Path,
    time_s: float,
    nodes: int,
    rate: float,
    seed: int,
    net: str,
    workloads: tuple[str, ...] = SOAK_WORKLOADS,
    progress: Callable[[str], None] = lambda _: None,
) -> list[SoakRow]:
    out.mkdir(parents=True, exist_ok=True)
    rows: list[SoakRow] = []
    for i in range(runs):
        workload = workloads[i % len(workloads)]
        mix = MIXES[(i // len(workloads)) % len(MIXES)]
        run_dir = out / f"{i:03d}-{workload}-{'+'.join(n.value for n in mix)}"
        progress(f"soak run {i + 1}/{runs}: {workload} under {','.join(n.value for n in mix)}")
        opts = RunOptions(
            out=run_dir,
            workload=workload,
            nemesis=mix,
            nodes=nodes,
            net=net,
            time_s=time_s,
            rate=rate,
            seed=seed + i,
        )
        result = run_test(opts, progress=lambda line: progress("  " + line))
        verdict = json.loads((run_dir / "verdict.json").read_text())
        events = json.loads((run_dir / "history.json").read_text())
        row = SoakRow(
            run=i,
            workload=workload,
            nemesis=[n.value for n in mix],
            seed=seed + i,
            valid=result.valid,
            checker=result.verdict.checker,
            summary=result.summary,
            ops_ok=result.ops["ok"],
            ops_info=result.ops["info"],
            faults=len(result.faults),
            lost=_lost(verdict),
            failovers=failover_times(events, result.faults),
            dir=str(run_dir),
        )
        rows.append(row)
        progress(f"  {'VALID' if row.valid else 'INVALID'}: {row.summary}")
        (out / "soak.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        (out / "soak.md").write_text(summary_table(rows))
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def summary_table(rows: list[SoakRow]) -> str:
    """The README's table: one line per workload and a total."""
    lines = [
        "| workload | runs | operations (ok + info) | faults | acked writes lost | "
        "violations | failover p50 / p99 / max |",
        "|---|---|---|---|---|---|---|",
    ]
    names = dict.fromkeys(r.workload for r in rows)
    groups = [(w, [r for r in rows if r.workload == w]) for w in names]
    for name, group in [*groups, ("**all**", rows)]:
        failovers = [t for r in group for t in r.failovers]
        checkers = sorted({r.checker for r in group})
        bad = sum(1 for r in group if not r.valid)
        lines.append(
            f"| {name} | {len(group)} | {sum(r.ops_ok + r.ops_info for r in group):,} | "
            f"{sum(r.faults for r in group)} | {sum(r.lost for r in group)} | "
            f"{bad} ({', '.join(checkers)}) | "
            f"{_ms(percentile(failovers, 0.5))} / {_ms(percentile(failovers, 0.99))} / "
            f"{_ms(max(failovers, default=None))} |"
        )
    return "\n".join(lines) + "\n"

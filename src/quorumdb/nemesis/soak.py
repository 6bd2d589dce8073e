"""`quorumdb test soak`: many runs, cycling workloads and fault mixes, and one results table.

Run i takes workload i mod 4 and fault mix (i div 4) mod 4, so 16 runs cover every pair;
its seed is the soak's seed plus i, so any run can be replayed alone with `quorumdb test`.
Each run keeps its own run directory; the soak writes `soak.json` (a row per run) and
`soak.md` (the summary table the README shows). What is counted:

- operations: completed ok, plus those of unknown outcome (`info`);
- faults injected: from each run's fault log;
- acknowledged writes lost: the integer every workload's `check()` puts in
  ``details["lost_acked"]`` (Kafka: acknowledged records its checker reports lost, plus
  those nobody read when the final read reached the end of the log). The transactional and
  register workloads cannot name a lost write, so they put 0: a register that loses one
  shows up as a linearizability violation, a bank transfer as a broken total, a list append
  as an Elle anomaly, all in the violations column;
- violations: runs whose history their checker rejected, with the checkers that judged the
  workload's runs in parentheses;
- failover: `recovery.failover_times` over every fault that took the leader away.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quorumdb.cli.local_cluster import fresh_dir
from quorumdb.errors import QuorumError
from quorumdb.nemesis.recovery import failover_times
from quorumdb.nemesis.run import RunOptions, run_test
from quorumdb.nemesis.schedule import Nemesis
from quorumdb.nemesis.series import percentile
from quorumdb.nemesis.workloads import WORKLOADS

__all__ = ["MIXES", "SOAK_WORKLOADS", "SoakRow", "run_soak", "summary_table"]

SOAK_WORKLOADS = WORKLOADS  # in this order: register, kafka, bank, list-append
assert SOAK_WORKLOADS == ("register", "kafka", "bank", "list-append"), SOAK_WORKLOADS
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
    """The run's ``details["lost_acked"]``, which every workload's `check()` sets (0 if it is
    absent: a verdict written by no workload). Anomaly kinds are not counted, since "lost"
    in a kind's name does not mean an acknowledged write went missing (Elle's
    ``lost-update`` is an isolation anomaly)."""
    details = verdict.get("details")
    declared = details.get("lost_acked") if isinstance(details, dict) else None
    return declared if isinstance(declared, int) and not isinstance(declared, bool) else 0


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
    fresh_dir(out, "soak dir")
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
        try:
            result = run_test(opts, progress=lambda line: progress("  " + line))
        except QuorumError as exc:  # e.g. a node that would not start: the soak goes on
            rows.append(
                _failed_row(
                    i, workload=workload, mix=mix, seed=seed + i, run_dir=run_dir, why=str(exc)
                )
            )
            progress(f"  ERROR: {exc}")
            _write_tables(out, rows)
            continue
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
        _write_tables(out, rows)
    return rows


def _failed_row(
    i: int, *, workload: str, mix: tuple[Nemesis, ...], seed: int, run_dir: Path, why: str
) -> SoakRow:
    return SoakRow(
        run=i, workload=workload, nemesis=[n.value for n in mix], seed=seed, valid=False,
        checker="run", summary=f"the run failed: {why}", ops_ok=0, ops_info=0, faults=0,
        lost=0, dir=str(run_dir),
    )  # fmt: skip


def _write_tables(out: Path, rows: list[SoakRow]) -> None:
    (out / "soak.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    (out / "soak.md").write_text(summary_table(rows))


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

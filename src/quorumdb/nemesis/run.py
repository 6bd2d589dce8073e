"""One `quorumdb test` run: a fresh local cluster, a workload, a seeded nemesis, a verdict.

The run directory gets `cluster/` (the nodes' data and logs), `history.json` (Jepsen events),
`faults.jsonl` (each fault with its start and heal times), `verdict.json` and `summary.txt`.
Faults are healed and the cluster stopped on the way out whatever happens (Ctrl-C and
errors included), so nothing is left running or stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorumdb.check.history import history_from_events
from quorumdb.check.linearizable import check_linearizable
from quorumdb.check.report import summary_line
from quorumdb.cli.local_cluster import (
    load_cluster,
    port_free,
    start_cluster,
    stop_cluster,
    wait_ready,
)
from quorumdb.nemesis.processes import ProcessFaults
from quorumdb.nemesis.register import RegisterWorkload
from quorumdb.nemesis.schedule import Fault, Nemesis, plan
from quorumdb.runtime.node import PLANTED_BUGS_ENV

__all__ = ["RunOptions", "RunResult", "run_test"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    out: Path
    workload: str = "register"
    nemesis: tuple[Nemesis, ...] = (Nemesis.KILL, Nemesis.PAUSE)
    nodes: int = 3
    time_s: float = 20.0
    rate: float = 100.0
    clients: int = 4
    keys: int = 3
    seed: int = 0
    bugs: tuple[str, ...] = ()  # TEST ONLY: planted bugs every node runs with


@dataclass(slots=True)
class RunResult:
    valid: bool
    summary: str
    ops: dict[str, int]
    faults: list[dict[str, Any]] = field(default_factory=list)


def _free_base(nodes: int) -> int:
    for base in range(23_000, 32_000, 200):
        ports = [base + off + i for off in (0, 100, 2000) for i in range(1, nodes + 1)]
        if all(port_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range on loopback")


def run_test(opts: RunOptions, progress: Callable[[str], None] = lambda _: None) -> RunResult:
    """Run the test; node processes (started and restarted) inherit `opts.bugs`."""
    saved = os.environ.get(PLANTED_BUGS_ENV)
    os.environ[PLANTED_BUGS_ENV] = ",".join(opts.bugs)
    try:
        return _run(opts, progress)
    finally:
        if saved is None:
            os.environ.pop(PLANTED_BUGS_ENV, None)
        else:
            os.environ[PLANTED_BUGS_ENV] = saved


def _run(opts: RunOptions, progress: Callable[[str], None]) -> RunResult:
    opts.out.mkdir(parents=True, exist_ok=True)
    cluster_dir = opts.out / "cluster"
    cluster = start_cluster(
        cluster_dir, nodes=opts.nodes, base_port=_free_base(opts.nodes), shards=2, fsync=True
    )
    faults = ProcessFaults(cluster_dir)
    log: list[dict[str, Any]] = []
    try:
        wait_ready(cluster)
        urls = [m.http_url for _, m in sorted(cluster.nodes.items())]
        workload = RegisterWorkload(
            urls, clients=opts.clients, keys=opts.keys, rate=opts.rate, seed=opts.seed
        )
        schedule = plan(opts.seed, list(opts.nemesis), sorted(cluster.nodes), opts.time_s)
        progress(f"{opts.nodes} nodes up; {len(schedule)} faults planned over {opts.time_s:g} s")
        asyncio.run(
            _drive(
                workload,
                faults,
                schedule=schedule,
                time_s=opts.time_s,
                log=log,
                progress=progress,
            )
        )
        faults.heal()
        wait_ready(load_cluster(cluster_dir))  # restarted nodes have new pids
        asyncio.run(workload.final_reads())
    finally:
        faults.heal()
        stop_cluster(cluster_dir)
    result = check_linearizable(history_from_events(workload.history))
    verdict = RunResult(
        valid=result.ok, summary=summary_line(result), ops=workload.counts(), faults=log
    )
    _write(opts, workload.history, verdict)
    return verdict


async def _drive(
    workload: RegisterWorkload,
    faults: ProcessFaults,
    *,
    schedule: list[Fault],
    time_s: float,
    log: list[dict[str, Any]],
    progress: Callable[[str], None],
) -> None:
    started = time.monotonic()
    clients = asyncio.create_task(workload.run(started + time_s))
    for fault in schedule:
        await asyncio.sleep(max(0.0, started + fault.at_s - time.monotonic()))
        begin = time.monotonic() - started
        if fault.kind == Nemesis.KILL:
            await asyncio.to_thread(faults.kill, fault.node)
        else:
            faults.pause(fault.node)
        progress(
            f"t={begin:5.1f}s {fault.kind.value} node {fault.node} for {fault.duration_s:.1f} s"
        )
        await asyncio.sleep(fault.duration_s)
        if fault.kind == Nemesis.KILL:
            await asyncio.to_thread(faults.restart, fault.node)
        else:
            faults.resume(fault.node)
        log.append(
            {"kind": fault.kind.value, "node": fault.node, "start_s": round(begin, 3),
             "end_s": round(time.monotonic() - started, 3)}
        )  # fmt: skip
    await clients


def _write(opts: RunOptions, history: list[dict[str, Any]], verdict: RunResult) -> None:
    (opts.out / "history.json").write_text(json.dumps(history))
    (opts.out / "faults.jsonl").write_text("".join(json.dumps(f) + "\n" for f in verdict.faults))
    doc = {
        "valid": verdict.valid,
        "checker": "linearizable",
        "summary": verdict.summary,
        "ops": verdict.ops,
        "faults": len(verdict.faults),
        "options": {
            "workload": opts.workload,
            "nemesis": [n.value for n in opts.nemesis],
            "nodes": opts.nodes,
            "time_s": opts.time_s,
            "rate": opts.rate,
            "seed": opts.seed,
            "planted_bugs": list(opts.bugs),
        },
    }
    (opts.out / "verdict.json").write_text(json.dumps(doc, indent=2) + "\n")
    (opts.out / "summary.txt").write_text(
        f"{'VALID' if verdict.valid else 'INVALID'}: {verdict.summary}\n"
        f"ops ok {verdict.ops['ok']}, info {verdict.ops['info']}; faults {len(verdict.faults)}\n"
    )

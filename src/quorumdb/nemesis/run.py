"""One `quorumdb test` run: a fresh local cluster, a workload, a seeded nemesis, a verdict.

The run directory gets `cluster/` (the nodes' data and logs), `history.json` (Jepsen events,
times in ns since the workload started), `faults.jsonl` (each fault: kind, variant, nodes,
start and heal times on the same clock), `verdict.json` and `summary.txt`, and the report
(`report.html` and its plots). Faults are healed, the network torn down and the cluster
stopped on the way out whatever happens (Ctrl-C and errors included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorumdb.cli.local_cluster import (
    LocalCluster,
    fresh_dir,
    load_cluster,
    node_environment,
    start_cluster,
    stop_cluster,
    wait_ready,
)
from quorumdb.cli.port_range import reserve_base_port
from quorumdb.errors import UserError
from quorumdb.nemesis.faults import Injector, Injectors
from quorumdb.nemesis.network import open_network
from quorumdb.nemesis.processes import ProcessFaults
from quorumdb.nemesis.report import write_report
from quorumdb.nemesis.schedule import Fault, Nemesis, plan
from quorumdb.nemesis.workload import Verdict, Workload
from quorumdb.nemesis.workloads import make_workload
from quorumdb.runtime.node import PLANTED_BUGS_ENV

__all__ = ["RunOptions", "RunResult", "run_test"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    out: Path
    workload: str = "register"
    nemesis: tuple[Nemesis, ...] = (Nemesis.KILL, Nemesis.PAUSE)
    nodes: int = 3
    faulty: int | None = None  # the most nodes one fault takes away (default: a minority)
    net: str = "proxy"  # proxy | netns (resolved: see network.resolve_mode)
    time_s: float = 20.0
    rate: float = 100.0
    clients: int = 4
    keys: int = 3
    seed: int = 0
    bugs: tuple[str, ...] = ()  # TEST ONLY: planted bugs every node runs with


@dataclass(slots=True)
class RunResult:
    verdict: Verdict
    ops: dict[str, int]
    faults: list[dict[str, Any]] = field(default_factory=list)
    exited: list[int] = field(default_factory=list)  # nodes found stopped by themselves

    @property
    def valid(self) -> bool:
        return self.verdict.valid

    @property
    def summary(self) -> str:
        return self.verdict.summary


def run_test(opts: RunOptions, progress: Callable[[str], None] = lambda _: None) -> RunResult:
    """Run the test; node processes (started and restarted) inherit `opts.bugs`."""
    with node_environment({PLANTED_BUGS_ENV: ",".join(opts.bugs)}):
        return _run(opts, progress)


def _run(opts: RunOptions, progress: Callable[[str], None]) -> RunResult:
    fresh_dir(opts.out, "run dir")
    cluster_dir = opts.out / "cluster"
    processes = ProcessFaults(cluster_dir)
    # Healed in this order: clock and disk files cleared first (a node restarted while its
    # file still says "fsyncs fail" would stop again), then the network, then processes.
    injectors: list[Injector] = []
    layout = None
    with contextlib.ExitStack() as stack:
        try:
            base_port, port_lock = reserve_base_port(opts.nodes)
        except RuntimeError as exc:
            raise UserError(str(exc)) from None
        stack.callback(port_lock.close)  # held until the nodes are stopped
        if Nemesis.CLOCK in opts.nemesis or Nemesis.DISK in opts.nemesis:
            from quorumdb.nemesis.node_faults import NodeFaults

            node_faults = NodeFaults(cluster_dir)
            stack.enter_context(node_environment(node_faults.node_env()))
            injectors.append(node_faults)
        if Nemesis.PARTITION in opts.nemesis:
            network = open_network(
                opts.net, opts.out / "net", opts.nodes, base_port, seed=opts.seed
            )
            stack.callback(network.close)
            injectors.append(network)
            layout = network.layout()
        injectors.append(processes)
        # Registered before the start: a start that fails half-way stops what it started.
        stack.callback(_stop_if_started, cluster_dir)
        cluster = start_cluster(
            cluster_dir,
            nodes=opts.nodes,
            base_port=base_port,
            shards=2,
            fsync=True,
            layout=layout,
        )
        faults = Injectors(injectors)
        stack.callback(faults.heal)
        wait_ready(cluster)
        workload = make_workload(
            opts.workload,
            cluster,
            clients=opts.clients,
            keys=opts.keys,
            rate=opts.rate,
            seed=opts.seed,
        )
        schedule = plan(
            opts.seed, list(opts.nemesis), sorted(cluster.nodes), opts.time_s, opts.faulty
        )
        progress(f"{opts.nodes} nodes up; {len(schedule)} faults planned over {opts.time_s:g} s")
        log: list[dict[str, Any]] = []
        asyncio.run(
            _drive(workload, faults, cluster, schedule=schedule, time_s=opts.time_s, log=log,
                   progress=progress)
        )  # fmt: skip
        not_recovered = _heal_and_wait(faults, cluster_dir, progress)
        asyncio.run(workload.final_reads())  # bounded: a cluster still down makes them info
    verdict = workload.check()
    if not_recovered is not None:
        verdict.valid = False
        verdict.summary = f"{not_recovered}; {verdict.summary}"
        verdict.anomalies.insert(0, {"kind": "liveness", "message": not_recovered, "ops": []})
    result = RunResult(
        verdict=verdict, ops=workload.history.counts(), faults=log, exited=processes.exited
    )
    _write(opts, workload, result)
    try:
        write_report(opts.out)
    except Exception as exc:  # the verdict stands without its pictures
        progress(f"the report could not be drawn ({exc!r}); `quorumdb test report` redraws it")
    return result


def _stop_if_started(cluster_dir: Path) -> None:
    if (cluster_dir / "cluster.json").exists():
        stop_cluster(cluster_dir)


def _heal_and_wait(
    faults: Injectors, cluster_dir: Path, progress: Callable[[str], None]
) -> str | None:
    """Heal every fault and wait for the whole cluster; what went wrong if it did not come
    back (a liveness finding of the run, not bad input: the evidence is still written)."""
    try:
        faults.heal()
        wait_ready(load_cluster(cluster_dir), timeout_s=60.0)  # restarted nodes: new pids
    except (UserError, OSError) as exc:
        why = f"the cluster did not recover after the heal: {exc}"
        progress(why)
        return why
    return None


def leader_of(cluster: LocalCluster) -> int | None:
    """The node most groups name as leader, by the first node that answers."""
    votes: dict[int, int] = {}
    for url in cluster.http_urls:
        try:
            with urllib.request.urlopen(url + "/v1/cluster", timeout=0.5) as resp:
                status = json.loads(resp.read())
        except (OSError, ValueError):
            continue
        for g in status.get("groups", []):
            if g.get("leader"):
                votes[int(g["leader"])] = votes.get(int(g["leader"]), 0) + 1
        if votes:
            break
    return max(votes, key=lambda n: votes[n]) if votes else None


async def _report_progress(
    workload: Workload, t0: float, progress: Callable[[str], None], every_s: float = 5.0
) -> None:
    """A line every few seconds while the clients run: how the operations are going."""
    while True:
        await asyncio.sleep(every_s)
        c = workload.history.counts()
        progress(
            f"t={time.monotonic() - t0:5.1f}s ops ok {c['ok']}, info {c['info']}, fail {c['fail']}"
        )


async def _drive(
    workload: Workload,
    faults: Injectors,
    cluster: LocalCluster,
    *,
    schedule: list[Fault],
    time_s: float,
    log: list[dict[str, Any]],
    progress: Callable[[str], None],
) -> None:
    t0 = workload.history.t0_ns / 1e9
    clients = asyncio.create_task(workload.run(time.monotonic() + time_s))
    ticker = asyncio.create_task(_report_progress(workload, t0, progress))
    clients.add_done_callback(lambda _: ticker.cancel())
    try:
        for fault in schedule:
            await asyncio.wait([clients], timeout=max(0.0, t0 + fault.at_s - time.monotonic()))
            if clients.done() or time.monotonic() - t0 + fault.duration_s > time_s - 1.0:
                break  # the clients ended early, or a slow kill pushed the schedule too late
            # The leader when the fault starts: the target of the leader variants, and what
            # tells a failover (the leader lost) from a fault the leader never noticed.
            leader = await asyncio.to_thread(leader_of, load_cluster(cluster.dir))
            targets = fault.nodes or (leader if leader is not None else min(cluster.nodes),)
            injector = faults.for_kind(fault.kind)
            begin = time.monotonic() - t0
            await asyncio.to_thread(injector.start, fault, targets)
            progress(
                f"t={begin:5.1f}s {fault.kind.value} {fault.variant} nodes "
                f"{','.join(map(str, targets))} for {fault.duration_s:.1f} s"
            )
            await asyncio.sleep(fault.duration_s)
            await asyncio.to_thread(injector.stop, fault, targets)
            log.append(
                {"kind": fault.kind.value, "variant": fault.variant, "nodes": list(targets),
                 "amount": fault.amount, "leader": leader, "start_s": round(begin, 3),
                 "end_s": round(time.monotonic() - t0, 3)}
            )  # fmt: skip
    except BaseException:  # Ctrl-C (the task is cancelled) or an injector's error
        clients.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await clients
        raise
    await clients


def _write(opts: RunOptions, workload: Workload, result: RunResult) -> None:
    (opts.out / "history.json").write_text(json.dumps(workload.history.events))
    (opts.out / "faults.jsonl").write_text("".join(json.dumps(f) + "\n" for f in result.faults))
    v = result.verdict
    doc = {
        "valid": v.valid,
        "unknown": v.unknown,
        "checker": v.checker,
        "summary": v.summary,
        "anomalies": v.anomalies,
        "details": v.details,
        "ops": result.ops,
        "faults": len(result.faults),
        "nodes_exited": result.exited,
        "options": {
            "workload": opts.workload,
            "nemesis": [n.value for n in opts.nemesis],
            "nodes": opts.nodes,
            "faulty": opts.faulty,
            "net": opts.net,
            "time_s": opts.time_s,
            "rate": opts.rate,
            "clients": opts.clients,
            "keys": opts.keys,
            "seed": opts.seed,
            "planted_bugs": list(opts.bugs),
        },
    }
    (opts.out / "verdict.json").write_text(json.dumps(doc, indent=2) + "\n")
    (opts.out / "summary.txt").write_text(
        f"{'VALID' if v.valid else 'INVALID'}: {v.summary}\n"
        f"ops ok {result.ops['ok']}, info {result.ops['info']}, fail {result.ops['fail']}; "
        f"faults {len(result.faults)}"
        + (f"; nodes that stopped by themselves: {result.exited}" if result.exited else "")
        + "\n"
    )

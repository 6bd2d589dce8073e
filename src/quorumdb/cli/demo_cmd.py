"""`quorumdb demo`: the README's first command.

By default it starts (or reuses) the local 3-node cluster and runs a short live workload with
a kill -9 of a leader (`cli.live_demo`); the cluster keeps running afterwards. With `--sim` it
narrates a deterministic simulation of a 5-node cluster under every fault kind and shows the
verdict of every checker; with `--sim --bug B`, the same story with a known Raft mistake
planted and the checker that catches it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from quorumdb.cli.live_demo import run_live_demo
from quorumdb.cli.local_cluster import (
    alive as _alive,
)
from quorumdb.cli.local_cluster import (
    load_cluster,
    start_cluster,
    stop_if_stale,
    wait_ready,
    wait_ready_or_stop,
)
from quorumdb.errors import UserError
from quorumdb.raft import PlantedBug
from quorumdb.sim.options import ALL_FAULTS, US_PER_MS, SimOptions, swarm_options
from quorumdb.sim.simulator import SimResult, run
from quorumdb.sim.sweep import parse_bugs

__all__ = ["demo"]

_SHOWN = (
    "nemesis",
    " leads g0 ",
    " crash",
    " up #",
    "refuses",
    "heal",
    " pause ",
    "membership",
)


@click.command()
@click.option("--sim", is_flag=True, help="Simulated 5-node cluster under every fault kind.")
@click.option("--seed", type=click.IntRange(min=0), default=2026, show_default=True)
@click.option(
    "--bug", "bugs", multiple=True, help="With --sim: plant a known Raft bug to watch it caught."
)
@click.option("--quiet", is_flag=True, help="With --sim: only the summary tables.")
@click.option(
    "--dir",
    "cluster_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".quorumdb"),
    show_default=True,
    help="Local cluster directory (live demo).",
)
def demo(sim: bool, seed: int, bugs: tuple[str, ...], quiet: bool, cluster_dir: Path) -> None:
    """A live local cluster with a kill -9 of a leader (or, with --sim, a simulated storm)."""
    if not sim:
        if bugs:
            raise UserError("--bug works with --sim only")
        _live(cluster_dir)
        return
    _simulated(seed, bugs, quiet)


def _live(cluster_dir: Path) -> None:
    console = Console()
    try:
        cluster = load_cluster(cluster_dir)
        if not all(_alive(pid) for pid in cluster.pids.values()):
            raise UserError("stale")
        console.print(f"reusing the local cluster in {cluster_dir}/")
        wait_ready(cluster)
    except UserError:
        stop_if_stale(cluster_dir)
        cluster = start_cluster(cluster_dir, nodes=3, base_port=7000, shards=4, fsync=True)
        console.print(f"started a 3-node cluster in {cluster_dir}/ (HTTP {cluster.http_urls})")
        wait_ready_or_stop(cluster)
    run_live_demo(cluster_dir, console)


def _simulated(seed: int, bugs: tuple[str, ...], quiet: bool) -> None:
    try:
        planted = parse_bugs(bugs)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    console = Console()
    opts = _demo_options(seed, planted)
    console.rule(f"[bold]quorumdb demo[/bold]: 5 Raft nodes, seed {seed}")
    console.print(f"fault mix: {opts.describe()}", markup=False, highlight=False)
    result = run(opts, keep_trace=True)
    if not quiet:
        _timeline(console, result)
    _summary(console, result)
    replay = f"quorumdb demo --sim --seed {seed}" + "".join(f" --bug {b}" for b in bugs)
    if result.ok:
        console.print(
            "[green]verdict: every safety checker passed and the cluster recovered after the "
            "heal.[/green]"
        )
        console.print(f"replay this exact run: {replay}", markup=False, highlight=False)
        return
    console.print(f"[red]verdict: {len(result.violations)} violation(s)[/red]")
    for v in result.violations[:3]:
        console.print(v.splitlines()[0], markup=False, highlight=False)
    console.print(f"caught by: {', '.join(result.caught_by)}; replay: {replay}", markup=False)
    raise SystemExit(1)


def _demo_options(seed: int, planted: frozenset[PlantedBug]) -> SimOptions:
    """Every fault kind at moderate intensity, so one run shows the whole repertoire."""
    base = swarm_options(seed, planted_bugs=planted)
    return replace(
        base,
        nodes=5,
        faults=ALL_FAULTS,
        loss=0.02,
        duplicate=0.01,
        fifo_links=False,
        latency_mean_us=2_000,
        drift_max=0.01,
        nemesis_interval_us=500 * US_PER_MS,
        crash_in_sync=0.02,
        crash_after_commit=0.01,
        snapshot_entries=20,
        clients=4,
        keys=3,
    )


def _timeline(console: Console, result: SimResult) -> None:
    shown = 0
    for line in result.trace_lines or []:
        if not any(k in line for k in _SHOWN) and "VIOLATION" not in line:
            continue
        t_us, _, what = line.strip().partition(" ")
        console.print(f"{int(t_us) / 1000:>9.1f} ms  {what}", markup=False, highlight=False)
        shown += 1
        if shown >= 60:
            console.print("          ...  (full trace: quorumdb sim run --seed N --trace)")
            break


def _summary(console: Console, result: SimResult) -> None:
    s = result.stats
    table = Table(title="what happened")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("simulated time", f"{s['sim_us'] / 1e6:.1f} s"),
        ("leaders elected", f"{s['leaders']}"),
        ("log entries committed", f"{s['committed']:,}"),
        (
            "client operations ok / fail / unknown",
            f"{s['ops_ok']} / {s['ops_fail']} / {s['ops_info']}",
        ),
        ("messages sent / lost", f"{s['messages']:,} / {s['dropped']:,}"),
    ]
    rows += [
        (k.removeprefix("nemesis_") + " faults", str(v))
        for k, v in s.items()
        if k.startswith("nemesis_")
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    checks = Table(title="checkers")
    checks.add_column("checker")
    checks.add_column("verdict")
    for name in (
        "election-safety",
        "leader-completeness",
        "state-machine-safety",
        "log-matching",
        "linearizability",
        "applied-durable",
        "kafka-delivery",
        "liveness",
        "recovery",
        "node-failure",
    ):
        verdict = "[red]VIOLATED[/red]" if name in result.caught_by else "[green]ok[/green]"
        checks.add_row(name, verdict)
    console.print(checks)

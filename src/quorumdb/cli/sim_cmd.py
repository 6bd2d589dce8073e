"""`quorumdb sim run|sweep`: the deterministic simulator from the command line.

Both simulate clusters of the real node (`sim.simulator`: the `NodeHost` that `quorumdb up`
starts, over simulated time, network and disk), each seed with its own swarm fault mix.

Exit status: 0 when every run passed, 1 when any run found a violation (its replay command
and artifact folder are printed), 2 on bad arguments.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from quorumdb.errors import UserError
from quorumdb.raft import PlantedBug
from quorumdb.sim.options import WORKLOADS, FaultKind, parse_workloads, swarm_options
from quorumdb.sim.simulator import run
from quorumdb.sim.sweep import (
    SeedOutcome,
    parse_bugs,
    parse_faults,
    parse_seeds,
    replay_command,
    run_seed,
    write_failure,
)

__all__ = ["sim"]

_FAULT_HELP = "Comma-separated fault kinds to allow: " + ", ".join(
    sorted(f.value for f in FaultKind)
)
_BUG_HELP = "TEST ONLY: plant a known Raft bug (repeatable): " + ", ".join(
    sorted(b.value for b in PlantedBug)
)


_WORKLOAD_HELP = "Run this workload in every seed (repeatable): " + ", ".join(WORKLOADS)


def _parse(
    faults: str | None, bugs: tuple[str, ...]
) -> tuple[frozenset[FaultKind], frozenset[PlantedBug]]:
    try:
        return parse_faults(faults), parse_bugs(bugs)
    except ValueError as exc:
        raise UserError(str(exc), hint="see 'quorumdb sim --help'") from None


def _workloads(names: tuple[str, ...]) -> frozenset[str]:
    try:
        return parse_workloads(names)
    except ValueError as exc:
        raise UserError(str(exc), hint="see 'quorumdb sim run --help'") from None


@click.group()
def sim() -> None:
    """Deterministic simulation of a cluster of real nodes under faults."""


@sim.command("run")
@click.option("--seed", type=click.IntRange(min=0), required=True, help="The run's seed.")
@click.option("--faults", default=None, help=_FAULT_HELP)
@click.option("--bug", "bugs", multiple=True, help=_BUG_HELP)
@click.option("--workload", "workloads", multiple=True, help=_WORKLOAD_HELP)
@click.option("--trace", "show_trace", is_flag=True, help="Print the full event trace.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sim-failures"),
    show_default=True,
    help="Where a failing run writes its trace and history.",
)
def run_cmd(  # noqa: PLR0917  (click passes options positionally)
    seed: int,
    faults: str | None,
    bugs: tuple[str, ...],
    workloads: tuple[str, ...],
    show_trace: bool,
    out: Path,
) -> None:
    """Run one seed and print what happened; replaying a seed gives the same trace digest."""
    allowed, planted = _parse(faults, bugs)
    forced = _workloads(workloads)
    console = Console()
    opts = swarm_options(seed, allowed=allowed, planted_bugs=planted, workloads=forced)
    started = time.perf_counter()
    result = run(opts, keep_trace=True)
    elapsed = time.perf_counter() - started
    if show_trace and result.trace_lines:
        for line in result.trace_lines:
            console.print(line, markup=False, highlight=False)
    table = Table(title=f"seed {seed}: {opts.describe()}", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, count in result.stats.items():
        table.add_row(name, f"{count:,}")
    table.add_row("wall seconds", f"{elapsed:.2f}")
    table.add_row("trace digest", result.trace_digest)
    console.print(table)
    if result.ok:
        console.print(f"[green]seed {seed}: OK[/green] (0 violations, live after heal)")
        return
    replay = replay_command(seed, allowed, planted, forced)
    folder = write_failure(result, out, replay)
    console.print(f"[red]seed {seed}: {len(result.violations)} violation(s)[/red]")
    for violation in result.violations[:5]:
        console.print(violation, markup=False, highlight=False)
    console.print(f"caught by: {', '.join(result.caught_by)}")
    # soft_wrap: never break the command or the path across lines (they must be copyable).
    console.print(f"replay:    {replay}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"artifacts: {folder}", markup=False, highlight=False, soft_wrap=True)
    raise SystemExit(1)


@sim.command("sweep")
@click.option("--seeds", "seed_spec", required=True, help="Seeds to run, e.g. 1-1000 or 1-5,9.")
@click.option("--faults", default=None, help=_FAULT_HELP)
@click.option("--bug", "bugs", multiple=True, help=_BUG_HELP)
@click.option("--workload", "workloads", multiple=True, help=_WORKLOAD_HELP)
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=256),
    default=None,
    help="Worker processes (default: one per CPU).",
)
@click.option(
    "--stop-on-failure", is_flag=True, help="Stop at the first failing seed (for bug hunts)."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sim-failures"),
    show_default=True,
    help="Where failing seeds write their trace and history.",
)
def sweep_cmd(  # noqa: PLR0917  (click passes options positionally)
    seed_spec: str,
    faults: str | None,
    bugs: tuple[str, ...],
    workloads: tuple[str, ...],
    jobs: int | None,
    stop_on_failure: bool,
    out: Path,
) -> None:
    """Run many seeds (each a different swarm fault mix) and summarise."""
    try:
        seeds = parse_seeds(seed_spec)
    except ValueError as exc:
        raise UserError(str(exc), hint="e.g. --seeds 1-1000") from None
    allowed, planted = _parse(faults, bugs)
    forced = _workloads(workloads)
    workers = jobs or os.cpu_count() or 1
    console = Console()
    started = time.perf_counter()
    failures: list[SeedOutcome] = []
    totals: dict[str, int] = {}
    done = 0
    with (
        Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failures: {task.fields[failures]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress,
        ProcessPoolExecutor(workers) as pool,
    ):
        task = progress.add_task("sweep", total=len(seeds), failures=0)
        results = pool.map(
            run_seed,
            seeds,
            [allowed] * len(seeds),
            [planted] * len(seeds),
            [forced] * len(seeds),
            chunksize=max(1, min(8, len(seeds) // (workers * 4) or 1)),
        )
        for outcome in results:
            done += 1
            for k in ("events", "sim_us", "messages", "committed", "ops_ok", "midflight_applied"):
                totals[k] = totals.get(k, 0) + outcome.stats.get(k, 0)
            if not outcome.ok:
                failures.append(outcome)
            progress.update(task, advance=1, failures=len(failures))
            if failures and stop_on_failure:
                pool.shutdown(wait=False, cancel_futures=True)
                break
    elapsed = time.perf_counter() - started
    _summary(console, done, failures, totals, elapsed)
    if not failures:
        return
    for f in failures[:20]:
        replay = replay_command(f.seed, allowed, planted, forced)
        options = swarm_options(f.seed, allowed=allowed, planted_bugs=planted, workloads=forced)
        result = run(options, keep_trace=True)
        folder = write_failure(result, out, replay)
        console.print(f"[red]seed {f.seed}[/red] caught by {', '.join(f.caught_by)}: ", end="")
        console.print(f.first_violation.splitlines()[0][:200], markup=False, highlight=False)
        console.print(
            f"  replay: {replay}   artifacts: {folder}",
            markup=False,
            highlight=False,
            soft_wrap=True,  # the command must stay on one line to be copyable
        )
    raise SystemExit(1)


def _summary(
    console: Console,
    done: int,
    failures: list[SeedOutcome],
    totals: dict[str, int],
    elapsed: float,
) -> None:
    table = Table(title="simulation sweep")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = (
        ("seeds run", f"{done:,}"),
        ("passed", f"{done - len(failures):,}"),
        ("failed", f"{len(failures):,}"),
        ("simulated seconds", f"{totals.get('sim_us', 0) / 1e6:,.0f}"),
        ("events", f"{totals.get('events', 0):,}"),
        ("simulated messages", f"{totals.get('messages', 0):,}"),
        ("entries committed", f"{totals.get('committed', 0):,}"),
        ("client operations ok", f"{totals.get('ops_ok', 0):,}"),
        ("entries applied mid-flight", f"{totals.get('midflight_applied', 0):,}"),
        ("wall seconds", f"{elapsed:,.1f}"),
        ("seeds per minute", f"{done / elapsed * 60:,.0f}" if elapsed > 0 else "-"),
    )
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if failures:
        by: dict[str, int] = {}
        for f in failures:
            for c in f.caught_by or ("?",):
                by[c] = by.get(c, 0) + 1
        console.print(
            "failures by checker: " + ", ".join(f"{k}={v}" for k, v in sorted(by.items()))
        )

"""`quorumdb sim run|sweep|host`: the deterministic simulator from the command line.

`run` and `sweep` simulate the Raft core in a node of the simulator's own; `host` simulates
the real node (`sim.host_sim`), the one `quorumdb up` starts.

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
from quorumdb.sim.host_sim import HostSimOptions, HostSimResult, run_host_sim
from quorumdb.sim.options import FaultKind, swarm_options
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


def _parse(
    faults: str | None, bugs: tuple[str, ...]
) -> tuple[frozenset[FaultKind], frozenset[PlantedBug]]:
    try:
        return parse_faults(faults), parse_bugs(bugs)
    except ValueError as exc:
        raise UserError(str(exc), hint="see 'quorumdb sim --help'") from None


@click.group()
def sim() -> None:
    """Deterministic simulation of a Raft cluster under faults."""


@sim.command("run")
@click.option("--seed", type=click.IntRange(min=0), required=True, help="The run's seed.")
@click.option("--faults", default=None, help=_FAULT_HELP)
@click.option("--bug", "bugs", multiple=True, help=_BUG_HELP)
@click.option("--trace", "show_trace", is_flag=True, help="Print the full event trace.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sim-failures"),
    show_default=True,
    help="Where a failing run writes its trace and history.",
)
def run_cmd(
    seed: int, faults: str | None, bugs: tuple[str, ...], show_trace: bool, out: Path
) -> None:
    """Run one seed and print what happened; replaying a seed gives the same trace digest."""
    allowed, planted = _parse(faults, bugs)
    console = Console()
    opts = swarm_options(seed, allowed=allowed, planted_bugs=planted)
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
    replay = replay_command(seed, allowed, planted)
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
            chunksize=max(1, min(8, len(seeds) // (workers * 4) or 1)),
        )
        for outcome in results:
            done += 1
            for k in ("events", "sim_us", "messages", "committed", "ops_ok"):
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
        replay = replay_command(f.seed, allowed, planted)
        result = run(swarm_options(f.seed, allowed=allowed, planted_bugs=planted), keep_trace=True)
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


@sim.command("host")
@click.option("--seeds", "seed_spec", required=True, help="Seeds to run, e.g. 1-200 or 3,7.")
@click.option("--bug", "bugs", multiple=True, help=_BUG_HELP)
@click.option("--no-crash", is_flag=True, help="Do not crash nodes.")
@click.option("--no-partition", is_flag=True, help="Do not partition the network.")
@click.option(
    "--kafka",
    is_flag=True,
    help="Also run a Kafka topic with idempotent producers and consumers, checked for delivery.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=256),
    default=None,
    help="Worker processes (default: one per CPU).",
)
def host_cmd(
    *,
    seed_spec: str,
    bugs: tuple[str, ...],
    no_crash: bool,
    no_partition: bool,
    kafka: bool,
    jobs: int | None,
) -> None:
    """Simulate a cluster of the real node (NodeHost: controller, KV shards, WAL, snapshots)
    under crashes and partitions; check linearizability, Raft safety per group, liveness."""
    try:
        seeds = parse_seeds(seed_spec)
    except ValueError as exc:
        raise UserError(str(exc), hint="e.g. --seeds 1-200") from None
    _, planted = _parse(None, bugs)
    options = [
        HostSimOptions(
            seed=s,
            crash=not no_crash,
            partition=not no_partition,
            planted_bugs=planted,
            kafka=kafka,
        )
        for s in seeds
    ]
    console = Console()
    started = time.perf_counter()
    failed: list[HostSimResult] = []
    ok_ops = midflight = kafka_acked = 0
    with (
        Progress(
            TextColumn("[bold]host sim"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failures: {task.fields[failures]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
        ProcessPoolExecutor(jobs or os.cpu_count() or 1) as pool,
    ):
        task = progress.add_task("host sim", total=len(options), failures=0)
        for result in pool.map(run_host_sim, options):
            ok_ops += result.ok_operations
            midflight += result.midflight_applied
            kafka_acked += result.kafka_acked
            if not result.ok:
                failed.append(result)
            progress.update(task, advance=1, failures=len(failed))
    elapsed = time.perf_counter() - started
    table = Table(title="real-host simulation")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in (
        ("seeds run", f"{len(options):,}"),
        ("failed", f"{len(failed):,}"),
        ("client operations ok", f"{ok_ops:,}"),
        ("entries applied mid-flight", f"{midflight:,}"),
        *((("kafka records acknowledged", f"{kafka_acked:,}"),) if kafka else ()),
        ("wall seconds", f"{elapsed:,.1f}"),
        ("seeds per minute", f"{len(options) / elapsed * 60:,.0f}" if elapsed > 0 else "-"),
    ):
        table.add_row(name, value)
    console.print(table)
    for r in failed[:20]:
        bug_flags = "".join(f" --bug {b.value}" for b in sorted(planted, key=lambda b: b.value))
        bug_flags += " --kafka" if kafka else ""
        console.print(f"[red]seed {r.seed}[/red]: ", end="")
        console.print(r.violations[0].splitlines()[0][:200], markup=False, highlight=False)
        console.print(
            f"  replay: quorumdb sim host --seeds {r.seed}{bug_flags}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if failed:
        raise SystemExit(1)

"""`quorumdb test`: a Jepsen-style run on real node processes, with a verdict and a run dir.

`test` is a group that runs a test itself when given no subcommand (`quorumdb test
--workload register ...`), and has subcommands: `report DIR` draws a run dir's report again,
`soak` runs many tests in a row into one results table. A new subcommand is one more
`@test.command(...)` below; the run options belong to the group, and giving them with a
subcommand is a usage error, not ignored.

Bad options are one error line and exit 2 (click's usage errors and `UserError`); a run
exits 0 when the checker finds the history valid, 1 when it does not, 3 when it cannot tell.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import click

from quorumdb.errors import UserError
from quorumdb.nemesis.network import NET_MODES, resolve_mode
from quorumdb.nemesis.report import REPORT_FILE, RunDirError, write_report
from quorumdb.nemesis.run import RunOptions, run_test
from quorumdb.nemesis.schedule import NEMESES, Nemesis
from quorumdb.nemesis.soak import run_soak, summary_table
from quorumdb.nemesis.workloads import WORKLOADS
from quorumdb.raft import PlantedBug
from quorumdb.runtime.node import planted_bugs_from_env

__all__ = ["test"]


def _seconds(raw: str) -> float:
    text = raw.strip().lower().removesuffix("s")
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--time must be seconds like 30 or 30s, not {raw!r}") from None
    if not 5 <= value <= 3600:
        raise UserError(f"--time must be within 5..3600 s, not {raw!r}")
    return value


def _interrupt_on_sigterm() -> None:
    """SIGTERM (`timeout`, `kill`, a CI cancel) unwinds like Ctrl-C, so the run heals its
    faults, removes its network and stops its nodes instead of leaving them behind."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _nemeses(raw: str) -> tuple[Nemesis, ...]:
    names = [n.strip() for n in raw.split(",") if n.strip()] if raw != "none" else []
    unknown = [n for n in names if n not in NEMESES]
    if unknown:
        raise UserError(f"unknown nemesis {unknown[0]!r} (known: {', '.join(NEMESES)}, none)")
    return tuple(Nemesis(n) for n in names)


@click.group("test", invoke_without_command=True)
@click.option(
    "--workload", default="register", show_default=True, help=f"One of: {', '.join(WORKLOADS)}."
)
@click.option(
    "--nemesis",
    default="kill,pause",
    show_default=True,
    help=f"Comma-separated faults: {', '.join(NEMESES)} (or none).",
)
@click.option("--nodes", type=click.IntRange(3, 9), default=3, show_default=True)
@click.option(
    "--faulty",
    type=click.IntRange(min=1),
    default=None,
    help="Most nodes one fault takes away (default: a minority).",
)
@click.option(
    "--net",
    type=click.Choice(NET_MODES),
    default="auto",
    show_default=True,
    help="Partitions through namespaces (root) or a TCP proxy per node pair; auto picks.",
)
@click.option("--time", "time_", default="20s", show_default=True, help="Workload duration.")
@click.option(
    "--rate", type=click.FloatRange(1, 10_000), default=100, show_default=True, help="Ops/s."
)
@click.option(
    "--clients", type=click.IntRange(1, 64), default=4, show_default=True, help="Client processes."
)
@click.option(
    "--keys",
    type=click.IntRange(2, 100),
    default=3,
    show_default=True,
    help="Registers, accounts, list keys, or Kafka partitions.",
)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Fault schedule seed.")
@click.option(
    "--bug",
    "bugs",
    multiple=True,
    help="TEST ONLY: nodes run with this planted bug (repeatable), e.g. stale-local-reads.",
)
@click.option(
    "--dir",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (default: runs/<time>-seed<N>).",
)
@click.pass_context
def test(  # noqa: PLR0917  (click passes options positionally)
    ctx: click.Context,
    workload: str,
    nemesis: str,
    nodes: int,
    faulty: int | None,
    net: str,
    time_: str,
    rate: float,
    clients: int,
    keys: int,
    seed: int | None,
    bugs: tuple[str, ...],
    out: Path | None,
) -> None:
    """Run a workload on a fresh local cluster under faults, then check its history.

    With a subcommand (report), work on the run directory of an earlier run instead.

    \b
    Exit status: 0 the history is valid; 1 the checker found an anomaly; 2 bad input;
    3 the checker could not decide (its search budget ran out).
    """
    if ctx.invoked_subcommand is not None:
        _refuse_run_options(ctx)
        return
    if workload not in WORKLOADS:
        raise UserError(f"unknown workload {workload!r} (known: {', '.join(WORKLOADS)})")
    kinds = _nemeses(nemesis)
    if faulty is not None and faulty > nodes:
        raise UserError(f"--faulty {faulty} is more faulty nodes than exist (--nodes {nodes})")
    net_mode = resolve_mode(net) if Nemesis.PARTITION in kinds else "none"
    try:  # refuse unknown names before starting anything
        planted_bugs_from_env(",".join(bugs))
    except UserError:
        known = ", ".join(sorted(b.value for b in PlantedBug))
        raise UserError(f"unknown --bug in {', '.join(bugs)} (known: {known})") from None
    seconds = _seconds(time_)
    seed = seed if seed is not None else time.time_ns() % 1_000_000
    out = out or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"
    opts = RunOptions(
        out=out,
        workload=workload,
        nemesis=kinds,
        nodes=nodes,
        faulty=faulty,
        net=net_mode,
        time_s=seconds,
        rate=rate,
        clients=clients,
        keys=keys,
        seed=seed,
        bugs=bugs,
    )
    _interrupt_on_sigterm()
    result = run_test(opts, progress=click.echo)
    undecided = not result.valid and result.verdict.unknown
    verdict = "VALID" if result.valid else ("UNKNOWN" if undecided else "INVALID")
    click.echo(f"{verdict}: {result.summary}")
    click.echo(
        f"ops ok {result.ops['ok']}, info {result.ops['info']}, fail {result.ops['fail']}; "
        f"faults {len(result.faults)}; "
        f"run dir {out} (replay the faults: --seed {seed})"
    )
    click.echo(f"report: {out / REPORT_FILE}")
    if not result.valid:
        raise SystemExit(3 if undecided else 1)


def _refuse_run_options(ctx: click.Context) -> None:
    """Run options given with a subcommand would be silently ignored: say so instead."""
    given = [
        param.opts[0]
        for param in ctx.command.params
        if isinstance(param, click.Option)
        and param.name is not None
        and ctx.get_parameter_source(param.name) is not click.core.ParameterSource.DEFAULT
    ]
    if given:
        raise click.UsageError(
            f"{given[0]} is an option of a test run, not of '{ctx.invoked_subcommand}'", ctx=ctx
        )


@test.command("report")
@click.argument("run_dir", metavar="DIR", type=click.Path(path_type=Path))
def report(run_dir: Path) -> None:
    """Draw the report of the run in DIR again (report.html, its plots, timeline.html).

    Reads only DIR's history.json, faults.jsonl and verdict.json, so any finished run can be
    re-rendered.

    \b
    Exit status: 0 written; 2 DIR is missing, not a run directory, or has a malformed file.
    """
    try:
        path = write_report(run_dir)
    except RunDirError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write the report into {run_dir}: {exc.strerror or exc}") from None
    click.echo(f"report: {path}")


@test.command("soak")
@click.option("--runs", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--time", "time_", default="20s", show_default=True, help="Each run's duration.")
@click.option("--nodes", type=click.IntRange(3, 9), default=3, show_default=True)
@click.option(
    "--rate", type=click.FloatRange(1, 10_000), default=100, show_default=True, help="Ops/s."
)
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--net", type=click.Choice(NET_MODES), default="auto", show_default=True)
@click.option(
    "--dir",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Soak directory (default: runs/soak-<time>).",
)
def soak(  # noqa: PLR0917  (click passes options positionally)
    runs: int, time_: str, nodes: int, rate: float, seed: int, net: str, out: Path | None
) -> None:
    """Run many tests in a row, cycling workloads (register, kafka, bank, list-append) and
    fault mixes (kill+pause, partition, clock+disk, all), into one table (soak.md).

    Run i uses seed SEED+i: replay it alone with `quorumdb test --seed`.

    \b
    Exit status: 0 every run valid; 1 some run found an anomaly; 2 bad input.
    """
    seconds = _seconds(time_)
    net_mode = resolve_mode(net)
    out = out or Path("runs") / f"soak-{time.strftime('%Y%m%d-%H%M%S')}"
    _interrupt_on_sigterm()
    rows = run_soak(
        runs=runs, out=out, time_s=seconds, nodes=nodes, rate=rate, seed=seed, net=net_mode,
        progress=click.echo,
    )  # fmt: skip
    click.echo(summary_table(rows))
    bad = [r for r in rows if not r.valid]
    for r in bad:
        click.echo(f"INVALID run {r.run} ({r.workload}, seed {r.seed}): {r.summary} [{r.dir}]")
    click.echo(f"soak dir {out} ({len(rows)} runs, {len(bad)} invalid)")
    if bad:
        raise SystemExit(1)

"""Benchmark of the Elle checker: `python bench/elle_bench.py [--seed N] [--txns N] [--profile]`.

Cases (serial executions, so valid at every level; 10 processes, 4 micro-ops per
transaction, half reads, 1,000 keys in play, a key retired after 32 writes as Elle's
generator does):
  la-ser   list-append, checked at serializable (data edges only);
  la-sser  the same history at strict-serializable (plus process and real-time edges);
  la-long  list-append without key retirement: 1,000 keys for the whole run, so lists grow
           to ~200 elements and every read carries a long prefix;
  rw-ser   rw-register at serializable;
  rw-sser  the same at strict-serializable.

Each row shows the time to validate the events into a history (parse), the check itself,
transactions checked per second (parse + check), and the peak memory Python allocated during
parse + check (tracemalloc, in a second run: it slows the code it watches). No assertions on
time: numbers go in the README.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.check.elle_generate

from tests.check.elle_generate import serial_history

from quorumdb.check import ElleResult, check_elle, elle_history_from_events

TARGET_S = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    case: str
    what: str
    model: str
    isolation: str
    events: list[dict[str, object]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    row: Row
    result: ElleResult
    parse_s: float
    check_s: float
    peak_mb: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--txns", type=int, default=100_000)
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--profile", action="store_true", help="cProfile each case's check")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 150))
    console.print(f"elle_bench: seed {args.seed}, {args.txns:,} transactions per history")
    rows = _rows(args.seed, args.txns)
    if args.only:
        wanted = set(args.only.split(","))
        rows = [row for row in rows if row.case in wanted]
    measured = []
    for row in rows:
        m = _measure(row, profile=args.profile)
        console.print(f"  {row.case}: {m.parse_s + m.check_s:.2f} s")
        measured.append(m)
    console.print(_table(measured))


def _rows(seed: int, txns: int) -> list[Row]:
    def generate(model: str, **extra: int) -> list[dict[str, object]]:
        return serial_history(
            random.Random(seed), model=model, txns=txns, processes=10, keys=1000, **extra
        ).events

    appends = generate("list-append")
    long_lists = generate("list-append", max_writes_per_key=1 << 30)
    registers = generate("rw-register")
    return [
        Row(
            case="la-ser",
            what="list-append",
            model="list-append",
            isolation="serializable",
            events=appends,
        ),
        Row(
            case="la-sser",
            what="list-append",
            model="list-append",
            isolation="strict-serializable",
            events=appends,
        ),
        Row(
            case="la-long",
            what="list-append, lists of ~200",
            model="list-append",
            isolation="serializable",
            events=long_lists,
        ),
        Row(
            case="rw-ser",
            what="rw-register",
            model="rw-register",
            isolation="serializable",
            events=registers,
        ),
        Row(
            case="rw-sser",
            what="rw-register",
            model="rw-register",
            isolation="strict-serializable",
            events=registers,
        ),
    ]


def _measure(row: Row, *, profile: bool) -> Measured:
    start = time.perf_counter()
    history = elle_history_from_events(row.events, row.model)
    parsed = time.perf_counter()
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
    result = check_elle(history, isolation=row.isolation)
    checked = time.perf_counter()
    if profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    tracemalloc.start()
    check_elle(elle_history_from_events(row.events, row.model), isolation=row.isolation)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Measured(
        row=row,
        result=result,
        parse_s=parsed - start,
        check_s=checked - parsed,
        peak_mb=peak / 2**20,
    )


def _table(measured: list[Measured]) -> Table:
    table = Table(
        title="Elle checker (CPython, one core)",
        caption="peak MB: tracemalloc peak during parse + check (a separate run)",
    )
    for name in ("case", "what", "level", "txns", "verdict", "edges", "parse s", "check s"):
        left = name in ("case", "what", "level", "verdict")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    table.add_column("txns/s", justify="right", no_wrap=True)
    table.add_column("peak MB", justify="right", no_wrap=True)
    table.add_column("target", justify="left", no_wrap=True)
    for m in measured:
        total = m.parse_s + m.check_s
        met = "met" if total < TARGET_S else "MISSED"
        table.add_row(
            m.row.case,
            m.row.what,
            m.row.isolation,
            f"{m.result.txn_count:,}",
            "valid" if m.result.valid else f"INVALID ({len(m.result.anomalies)})",
            f"{m.result.edge_count:,}",
            f"{m.parse_s:.2f}",
            f"{m.check_s:.2f}",
            f"{m.result.txn_count / total:,.0f}",
            f"{m.peak_mb:,.0f}",
            f"< {TARGET_S:g} s: {met}",
        )
    return table


if __name__ == "__main__":
    main()

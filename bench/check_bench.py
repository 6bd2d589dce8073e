"""Benchmark of the linearizability checker: `python bench/check_bench.py [--seed N]`.

Cases (one key is one independent register; P-compositionality checks keys separately):
  a      a valid 10,000-operation history, 5 clients, 10 keys (target: under 5 s);
  b1-b3  one key under 40 clients and 30% `info` operations (timeouts that may land at any
         time later, or never): valid; with an impossible (never written) read; with a
         stale read (fresh values, 10 clients), which only an exhaustive search refutes;
  b4-b5  adversarial: 20 concurrent writes read one by one, then the first again. Every subset
         of the writes is a search state (n * 2^n): the budget ends it, as "unknown";
  c      a 10,000-operation history with one planted stale read, counterexample included.

Each row also shows the time to parse and validate the same history: the baseline measured in
the same run, so the ratio is comparable across machines.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.check.generate

from tests.check.generate import (
    RegisterRun,
    plant_impossible_read,
    plant_stale_read,
    register_history,
)

from quorumdb.check import (
    LinearizabilityResult,
    check_linearizable,
    history_from_events,
    render_counterexample,
)

TARGET_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    case: str
    what: str
    events: list[dict[str, object]]
    max_states: int = 1_000_000
    target_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    row: Row
    result: LinearizabilityResult
    parse_s: float
    check_s: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    seed = parser.parse_args().seed
    console = Console(width=max(Console().width, 160))
    console.print(f"check_bench: seed {seed}")
    measured = [_measure(row) for row in _rows(seed)]
    console.print(_table(measured))
    for m in measured:
        cx = m.result.counterexample
        if cx is not None and m.row.case == "c":
            console.print(f"\n{m.row.case} ({m.row.what}): the counterexample", style="bold")
            console.print(render_counterexample(cx), markup=False, highlight=False)


def _rows(seed: int) -> list[Row]:
    def info_heavy(*, processes: int, pool: int) -> RegisterRun:
        return register_history(
            random.Random(seed),
            operations=5_000,
            processes=processes,
            keys=1,
            info_percent=30,
            value_pool=pool,
            orphan_apply_percent=2,
        )

    valid = register_history(random.Random(seed), operations=10_000, processes=5, keys=10)
    garbage = info_heavy(processes=40, pool=3)
    plant_impossible_read(random.Random(seed), garbage)
    stale = info_heavy(processes=10, pool=0)
    _plant_stale(seed, stale)
    broken = register_history(random.Random(seed), operations=10_000, processes=5, keys=10)
    _plant_stale(seed, broken)
    return [
        Row(case="a", what="valid, 5 clients, 10 keys", events=valid.events, target_s=TARGET_S),
        Row(
            case="b1",
            what="1 key, 40 clients, 30% info",
            events=info_heavy(processes=40, pool=3).events,
        ),
        Row(case="b2", what="b1 + a never-written read", events=garbage.events),
        Row(case="b3", what="1 key, 10 clients, 30% info, stale read", events=stale.events),
        Row(case="b4", what="20 concurrent writes, adversarial", events=_adversarial(20)),
        Row(
            case="b5",
            what="b4 with a budget of 20,000 states",
            events=_adversarial(20),
            max_states=20_000,
        ),
        Row(case="c", what="10,000 ops, 5 clients, one stale read", events=broken.events),
    ]


def _plant_stale(seed: int, run: RegisterRun) -> None:
    planted = plant_stale_read(random.Random(seed), run)
    assert planted is not None, "fresh values always leave an overwritten one to read"


def _adversarial(writes: int) -> list[dict[str, object]]:
    """Writes that all overlap, each read in turn, then the first again: not linearizable,
    and every subset of the writes is a distinct search state (n * 2^n)."""
    events: list[dict[str, object]] = [
        {"process": p, "type": "invoke", "f": "write", "key": "x", "value": p}
        for p in range(writes)
    ]
    for value in [*range(writes), 0]:
        events.append({"process": writes, "type": "invoke", "f": "read", "key": "x"})
        events.append({"process": writes, "type": "ok", "f": "read", "key": "x", "value": value})
    events += [
        {"process": p, "type": "ok", "f": "write", "key": "x", "value": p} for p in range(writes)
    ]
    return events


def _measure(row: Row) -> Measured:
    start = time.perf_counter()
    history = history_from_events(row.events)
    parsed = time.perf_counter()
    result = check_linearizable(history, max_states=row.max_states)
    checked = time.perf_counter()
    return Measured(row=row, result=result, parse_s=parsed - start, check_s=checked - parsed)


def _table(measured: list[Measured]) -> Table:
    table = Table(
        title="Linearizability checker (CPython, one core)",
        caption="parse s: parse and validate the same history, the baseline of this run",
    )
    for name in ("case", "what", "ops", "keys", "verdict", "states", "parse s", "check s"):
        left = name in ("case", "what", "verdict")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    table.add_column("check / parse", justify="right", no_wrap=True)
    table.add_column("target", justify="left", no_wrap=True)
    for m in measured:
        target = ""
        if m.row.target_s is not None:
            met = "met" if m.check_s < m.row.target_s else "MISSED"
            target = f"< {m.row.target_s:g} s: {met}"
        table.add_row(
            m.row.case,
            m.row.what,
            f"{m.result.operation_count:,}",
            str(len(m.result.keys)),
            m.result.verdict.value,
            f"{m.result.explored_states:,}",
            f"{m.parse_s:.3f}",
            f"{m.check_s:.3f}",
            f"{m.check_s / m.parse_s:.1f}x",
            target,
        )
    return table


if __name__ == "__main__":
    main()

"""Operations out of any workload's history, and the per-second series the plots draw.

Works for every workload's events (registers, Kafka sends and polls, transactions): all it
uses is Jepsen's shape. A process has at most one operation outstanding, so an invoke's
completion is the next event of the same process; ``f`` may be any string; ``time`` is ns
since the workload started (events without an integer time still pair, but have no place on
a time axis). Pure functions: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OUTCOMES",
    "EventLocator",
    "LatencyBucket",
    "Op",
    "latency_buckets",
    "operations",
    "percentile",
    "run_seconds",
    "throughput",
]

OUTCOMES = ("ok", "info", "fail")
_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """An invoke and its completion (event indexes from 0)."""

    process: Any
    f: str
    invoke_index: int
    complete_index: int | None
    outcome: str  # ok, info, fail; "pending" when it never completed
    invoke_ns: int | None
    complete_ns: int | None

    @property
    def latency_ms(self) -> float | None:
        if self.invoke_ns is None or self.complete_ns is None:
            return None
        return (self.complete_ns - self.invoke_ns) / _NS_PER_MS


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyBucket:
    """Latency percentiles (ms) of the ok operations invoked in one second of the run."""

    second: int
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


def _time(event: dict[str, Any]) -> int | None:
    t = event.get("time")
    return t if isinstance(t, int) and not isinstance(t, bool) else None


def operations(events: Sequence[dict[str, Any]]) -> list[Op]:
    """Pair each invoke with the next event of its process; in invoke order.

    A completion with no outstanding invoke (a malformed history) is skipped: the report
    shows what it can rather than refusing a run it is asked to explain.
    """
    open_: dict[str, tuple[int, dict[str, Any]]] = {}
    pairs: list[tuple[int, int | None]] = []
    for index, event in enumerate(events):
        process = repr(event.get("process"))
        if event.get("type") == "invoke":
            if process in open_:
                pairs.append((open_[process][0], None))
            open_[process] = (index, event)
        elif process in open_:
            pairs.append((open_.pop(process)[0], index))
    pairs += [(index, None) for index, _ in open_.values()]
    pairs.sort()
    return [_op(events, invoke, complete) for invoke, complete in pairs]


def _op(events: Sequence[dict[str, Any]], invoke: int, complete: int | None) -> Op:
    start = events[invoke]
    end = None if complete is None else events[complete]
    outcome = "pending" if end is None else str(end.get("type"))
    return Op(
        process=start.get("process"),
        f=str(start.get("f")),
        invoke_index=invoke,
        complete_index=complete,
        outcome=outcome,
        invoke_ns=_time(start),
        complete_ns=None if end is None else _time(end),
    )


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def throughput(ops: Sequence[Op], seconds: int) -> dict[str, list[int]]:
    """Completions per second of the run, per outcome (ok, info, fail), by completion time."""
    counts = {outcome: [0] * seconds for outcome in OUTCOMES}
    for op in ops:
        if op.complete_ns is None or op.outcome not in counts:
            continue
        second = op.complete_ns // _NS_PER_S
        if 0 <= second < seconds:
            counts[op.outcome][second] += 1
    return counts


def latency_buckets(ops: Sequence[Op]) -> list[LatencyBucket]:
    """p50/p95/p99 of ok operations per second of invoke time; seconds with none left out.

    Only ok operations: an info one's "latency" is the client's timeout, not the system's
    (the latency plot marks those separately).
    """
    per_second: dict[int, list[float]] = {}
    for op in ops:
        latency = op.latency_ms
        if op.outcome != "ok" or latency is None or op.invoke_ns is None:
            continue
        per_second.setdefault(op.invoke_ns // _NS_PER_S, []).append(latency)
    out = []
    for second in sorted(per_second):
        values = per_second[second]
        p50, p95, p99 = (percentile(values, q) for q in (0.50, 0.95, 0.99))
        assert p50 is not None and p95 is not None and p99 is not None, "a second with no op"
        out.append(
            LatencyBucket(second=second, count=len(values), p50_ms=p50, p95_ms=p95, p99_ms=p99)
        )
    return out


def run_seconds(ops: Sequence[Op], faults: Sequence[dict[str, Any]]) -> int:
    """Whole seconds the time axis needs: the last completion or fault end, rounded up."""
    last_ns = max(
        (t for op in ops for t in (op.invoke_ns, op.complete_ns) if t is not None), default=0
    )
    last_s = max([last_ns / _NS_PER_S, *(float(f["end_s"]) for f in faults)])
    return max(1, math.ceil(last_s))


class EventLocator:
    """Finds a verdict's copies of history events (anomalies carry events, not indexes)."""

    def __init__(self, events: Sequence[dict[str, Any]]) -> None:
        self._indexes: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            self._indexes.setdefault(_canonical(event), []).append(index)

    def index(self, event: Any) -> int | None:
        """The first index of an event equal to `event`, or None (not an event of this run)."""
        if not isinstance(event, dict):
            return None
        found = self._indexes.get(_canonical(event))
        return found[0] if found else None


def _canonical(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, default=str)

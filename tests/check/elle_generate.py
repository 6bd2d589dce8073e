"""Generated transaction histories for the Elle checker: serial executions of a model.

A serial execution applies each transaction atomically at its commit point, one after
another, to a model of the keys (lists or registers), and records what its clients saw. Such
a history is strict serializable by construction, so the checker must accept it at every
level, however concurrent its timings look: each transaction's interval ``[invoke,
complete]`` contains its commit point, and intervals may overlap, but commit points are in
order, so real time never contradicts the serial order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["SerialRun", "serial_history"]


@dataclass(slots=True, kw_only=True)
class SerialRun:
    """A generated history and what the generator knows about it."""

    events: list[dict[str, object]]
    txns: list[list[list[object]]] = field(default_factory=list)
    """Each transaction's micro-ops as its clients saw them, in commit order."""
    keys_used: int = 0


def serial_history(
    rng: random.Random,
    *,
    model: str,
    txns: int,
    processes: int = 10,
    keys: int = 1000,
    mops_per_txn: int = 4,
    read_percent: int = 50,
    max_writes_per_key: int = 32,
    overlap: int = 0,
    fail_percent: int = 0,
    info_percent: int = 0,
    timed: bool = True,
) -> SerialRun:
    """A serial execution of ``txns`` random transactions, recorded as a history.

    Args:
        model: ``"list-append"`` or ``"rw-register"``.
        keys: keys in play at any time; a key written ``max_writes_per_key`` times is retired
            for a fresh one (Elle's generator does the same), which keeps lists short.
        overlap: how far (in time units, 10 per commit) an interval may stretch before and
            after its commit point: 0 records one transaction after another; more makes
            transactions look concurrent.
        fail_percent: transactions that take no effect and are reported ``fail``.
        info_percent: transactions reported ``info``; half of them took effect, half did not,
            and half of all ``info`` ones never complete in the history.
        timed: give every event a ``time``.
    """
    write_f = "append" if model == "list-append" else "w"
    state: dict[int, list[int] | int] = {}
    written: dict[int, int] = {}
    active = list(range(keys))
    next_key = keys
    next_value = 1
    recorded: list[tuple[int, int, int, str, list[list[object]], list[list[object]]]] = []
    run = SerialRun(events=[])
    for n in range(txns):
        mops: list[list[object]] = []
        for _ in range(mops_per_txn):
            key = rng.choice(active)
            if rng.randrange(100) < read_percent:
                mops.append(["r", key, None])
            else:
                mops.append([write_f, key, next_value])
                next_value += 1
        roll = rng.randrange(100)
        outcome = "ok"
        applies = True
        if roll < fail_percent:
            outcome, applies = "fail", False
        elif roll < fail_percent + info_percent:
            outcome, applies = "info", rng.random() < 0.5
        seen = [list(m) for m in mops]
        if applies:
            for mop in seen:
                f, key, value = mop
                assert isinstance(key, int)
                if f == "r":
                    current = state.get(key)
                    mop[2] = list(current) if isinstance(current, list) else current
                elif f == "append":
                    listed = state.setdefault(key, [])
                    assert isinstance(listed, list)
                    listed.append(value)  # type: ignore[arg-type]
                else:
                    state[key] = value  # type: ignore[assignment]
                if f != "r":
                    written[key] = written.get(key, 0) + 1
                    if written[key] >= max_writes_per_key and key in active:
                        active[active.index(key)] = next_key
                        next_key += 1
            run.txns.append(seen)
        commit = 10 * (n + 1)
        start = commit - (rng.randint(0, overlap) if overlap else 0)
        end = commit + 1 + (rng.randint(0, overlap) if overlap else 0)
        recorded.append((start, end, n, outcome, mops, seen))
    run.keys_used = next_key
    run.events = _events(rng, recorded, processes, timed)
    return run


def _events(
    rng: random.Random,
    recorded: list[tuple[int, int, int, str, list[list[object]], list[list[object]]]],
    processes: int,
    timed: bool,
) -> list[dict[str, object]]:
    """Invokes and completions in time order, each transaction on a process that is free."""
    busy_until = dict.fromkeys(range(processes), -1)
    timeline: list[tuple[int, int, int, dict[str, object]]] = []
    next_process = processes
    for start, end, n, outcome, mops, seen in sorted(recorded, key=lambda r: (r[0], r[2])):
        free = [p for p, until in busy_until.items() if until < start]
        if free:
            process = rng.choice(free)
        else:
            process = next_process
            next_process += 1
        busy_until[process] = end
        invoke: dict[str, object] = {
            "process": process,
            "type": "invoke",
            "f": "txn",
            "value": mops,
        }
        timeline.append((start, 1, n, invoke))
        if outcome == "info" and rng.random() < 0.5:
            busy_until[process] = 1 << 62  # never completes: the process is gone
            continue
        done: dict[str, object] = {
            "process": process,
            "type": outcome,
            "f": "txn",
            "value": seen if outcome == "ok" else mops,
        }
        timeline.append((end, 0, n, done))
    timeline.sort(key=lambda t: (t[0], t[1], t[2]))
    events = []
    for time, _, _, event in timeline:
        if timed:
            event["time"] = time
        events.append(event)
    return events

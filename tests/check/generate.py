"""Random histories of a real (atomic) register, for tests and `bench/check_bench.py`.

Each operation takes effect at one random moment inside its [invoke, complete] interval,
against one true register per key, so every history made here is linearizable by
construction. Some operations end as ``info``: the client gave up, yet the operation may still
take effect later (an orphan), or never; some never complete at all, and their process goes
on with a new operation (the format allows reusing the id). `plant_impossible_read` then breaks
exactly one ok read in a way no order can explain.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["RegisterRun", "plant_impossible_read", "plant_stale_read", "register_history"]

_FUNCTIONS = ("read", "write", "cas", "delete")
_WEIGHTS = (50, 30, 15, 5)


@dataclass(slots=True)
class _Pending:
    key: str
    f: str
    value: object
    applied: bool = False
    result: object = None


@dataclass(slots=True)
class RegisterRun:
    """A generated history and what the generator knows about it."""

    events: list[dict[str, object]] = field(default_factory=list)
    writer_invokes: dict[tuple[str, object], int] = field(default_factory=dict)
    """(key, value) -> index of the first invoke of an operation that may write value."""


def register_history(
    rng: random.Random,
    *,
    operations: int,
    processes: int,
    keys: int,
    info_percent: int = 3,
    value_pool: int = 0,
    orphan_apply_percent: int = 5,
) -> RegisterRun:
    """Generate a linearizable history of ``operations`` invokes.

    Args:
        rng: the only source of randomness.
        info_percent: chance per step that a pending operation ends as ``info`` (or, once
            all operations are invoked, ends with no completion at all).
        value_pool: 0 writes fresh values (1, 2, 3, ...); n > 0 reuses values 1..n.
        orphan_apply_percent: chance per step that an abandoned operation takes effect.
    """
    gen = _Generator(rng, keys=keys, value_pool=value_pool)
    pending: dict[int, _Pending] = {}
    orphans: list[_Pending] = []
    invoked = 0
    while invoked < operations or pending:
        if orphans and rng.randrange(100) < orphan_apply_percent:
            gen.apply(orphans.pop(rng.randrange(len(orphans))))
        process = rng.randrange(processes)
        op = pending.get(process)
        if op is None:
            if invoked < operations:
                pending[process] = gen.invoke(process)
                invoked += 1
        elif invoked >= operations and rng.randrange(100) < info_percent:
            del pending[process]  # never completes: the history ends with it outstanding
        elif rng.randrange(100) < info_percent:
            del pending[process]
            gen.emit(process, "info", op, _echo(op))
            if not op.applied:
                orphans.append(op)
        elif not op.applied:
            gen.apply(op)
        else:
            del pending[process]
            gen.complete(process, op)
    return gen.run


def plant_impossible_read(rng: random.Random, run: RegisterRun) -> int:
    """Make one ok read return a value no order can explain; returns its event index.

    The value is one first written after the read completed (a read from the future) when the
    history has such a value for some read, else one never written at all. Either way it was
    never current at any moment of the read's interval, in any order.
    """
    reads = [
        i for i, event in enumerate(run.events) if event["type"] == "ok" and event["f"] == "read"
    ]
    assert reads, "the history has no ok read to break"
    futures: list[tuple[int, object]] = []
    for index in reads:
        key = run.events[index]["key"]
        futures += [
            (index, value)
            for (k, value), first in run.writer_invokes.items()
            if k == key and first > index and value is not None
        ]
    index, value = rng.choice(futures) if futures else (rng.choice(reads), "never-written")
    run.events[index] = {**run.events[index], "value": value}
    return index


def plant_stale_read(rng: random.Random, run: RegisterRun) -> int | None:
    """Make one ok read return a value that was certainly overwritten before it began.

    The value's only writer completed before another ok write to the key began, and that one
    completed before the read was invoked: a classic stale read, which no order explains and
    which only a search can refute (the value was written, and in time). Returns the read's
    event index, or None when the history has no such (write, overwrite, read) triple.
    """
    ops = _operations(run.events)
    writers: dict[tuple[object, object], int] = {}
    for op in ops:
        if op.f in ("write", "cas"):
            new = op.value[1] if isinstance(op.value, list) else op.value
            writers[op.key, new] = writers.get((op.key, new), 0) + 1
    candidates: list[tuple[int, object]] = []
    for read in (op for op in ops if op.f == "read" and op.type == "ok"):
        overwrites = [
            op
            for op in ops
            if op.key == read.key
            and op.type == "ok"
            and op.f in ("write", "delete")
            and op.complete < read.invoke
        ]
        for old in overwrites:
            if (
                old.f == "write"
                and writers[old.key, old.value] == 1
                and any(new.invoke > old.complete and new.value != old.value for new in overwrites)
            ):
                candidates.append((read.complete, old.value))
    if not candidates:
        return None
    index, value = rng.choice(candidates)
    run.events[index] = {**run.events[index], "value": value}
    return index


@dataclass(frozen=True, slots=True)
class _Op:
    key: object
    f: object
    value: object
    type: object
    invoke: int
    complete: int


def _operations(events: list[dict[str, object]]) -> list[_Op]:
    """Completed operations, paired per process (invokes with no completion are left out)."""
    open_invokes: dict[object, int] = {}
    ops = []
    for index, event in enumerate(events):
        if event["type"] == "invoke":
            open_invokes[event["process"]] = index
            continue
        start = open_invokes.pop(event["process"])
        invoke = events[start]
        ops.append(_Op(invoke["key"], invoke["f"], invoke["value"], event["type"], start, index))
    return ops


class _Generator:
    __slots__ = ("_counter", "_keys", "_pool", "_register", "_rng", "run")

    def __init__(self, rng: random.Random, *, keys: int, value_pool: int) -> None:
        self._rng = rng
        self._keys = keys
        self._pool = value_pool
        self._counter = 0
        self._register: dict[str, object] = {}
        self.run = RegisterRun()

    def invoke(self, process: int) -> _Pending:
        rng = self._rng
        self._counter += 1
        key = f"k{rng.randrange(self._keys)}"
        f = rng.choices(_FUNCTIONS, _WEIGHTS)[0]
        fresh = rng.randint(1, self._pool) if self._pool else self._counter
        value: object = None
        if f == "write":
            value = fresh
        elif f == "cas":
            expected = rng.choice([None, fresh - 1, rng.randint(1, self._pool or self._counter)])
            value = [expected, fresh]
        if f in ("write", "cas"):
            self.run.writer_invokes.setdefault((key, fresh), len(self.run.events))
        op = _Pending(key, f, value)
        self.emit(process, "invoke", op, value)
        return op

    def apply(self, op: _Pending) -> None:
        current = self._register.get(op.key)
        op.applied = True
        if op.f == "read":
            op.result = current
        elif op.f == "write":
            self._register[op.key] = op.value
        elif op.f == "delete":
            self._register.pop(op.key, None)
        else:
            assert isinstance(op.value, list)
            expected, new = op.value
            op.result = current == expected
            if op.result:
                self._register[op.key] = new

    def complete(self, process: int, op: _Pending) -> None:
        if op.f == "read":
            self.emit(process, "ok", op, op.result)
        elif op.f == "cas" and not op.result:
            self.emit(process, "fail", op, op.value)
        else:
            self.emit(process, "ok", op, _echo(op))

    def emit(self, process: int, type_: str, op: _Pending, value: object) -> None:
        events = self.run.events
        events.append(
            {
                "process": process,
                "type": type_,
                "f": op.f,
                "key": op.key,
                "value": value,
                "time": len(events) * 10,
            }
        )


def _echo(op: _Pending) -> object:
    return None if op.f == "read" else op.value

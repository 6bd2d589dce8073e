"""Transactional histories for the Elle checkers: the format, its validation, the transactions.

A transaction history records what clients saw of their transactions, Jepsen style, and
nothing else: the checkers infer the database's version orders from it (see `list_append` and
`rw_register`), never from the database itself.

Format
------
A JSON array of event objects, or JSON lines (one event object per line; blank lines are
skipped), in real-time order. Events are numbered from 1 in file order, and error messages use
those numbers::

    {"process": 1, "type": "invoke", "f": "txn", "value": [["append", "x", 1], ["r", "y", null]]}
    {"process": 1, "type": "ok",     "f": "txn", "value": [["append", "x", 1], ["r", "y", [1]]]}

- ``process`` (int): who ran the transaction. A process has at most one transaction
  outstanding: its next event after an invoke is that transaction's completion.
- ``type``: ``"invoke"`` starts a transaction; ``"ok"`` says it committed, ``"fail"`` that it
  certainly did not, ``"info"`` that nobody knows (a timeout, a crash). An invoke never
  completed by the end of the history counts as ``info``.
- ``f`` (optional): ``"txn"`` when present.
- ``value``: the transaction, a list of micro-operations ``[f, key, value]``. Keys are integers
  or strings (``1`` and ``"1"`` are different keys). For the ``list-append`` model they are
  ``["append", key, int]`` and ``["r", key, [ints...]]``; for ``rw-register``,
  ``["w", key, int]`` and ``["r", key, int]``. A read's value is null in the invoke and what
  it returned in the ``ok`` completion (null there means the initial state: the empty list,
  or the register's nil). An ``ok`` completion must repeat its invoke's micro-operations in
  order, reads filled in; a ``fail`` or ``info`` completion may leave its value out.
- ``time`` (int, optional): a timestamp (say, nanoseconds). Where present it must not
  decrease. When every event has one, one transaction precedes another in real time iff it
  completed at a time strictly before the other's invoke; otherwise file order decides.

Written values must be unique per key: no two appends put the same element on one key and no
two writes store the same value in one register (both Elle checkers assume so; it is what
lets a read name the transaction whose write it saw).

Anything else (bad JSON, a wrong shape, a micro-operation the model does not have, a
completion without an invoke, a second invoke while one is outstanding, a completion that
disagrees with its invoke, a repeated written value, a decreasing time) raises
`ElleHistoryError` naming the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from quorumdb.check._gc import paused_gc
from quorumdb.check._json_text import json_type as _json_type
from quorumdb.check._json_text import show
from quorumdb.check.history import Outcome
from quorumdb.check.json_events import read_json_events

__all__ = [
    "ElleHistory",
    "ElleHistoryError",
    "Key",
    "Model",
    "Mop",
    "MopValue",
    "Txn",
    "elle_history_from_events",
    "parse_elle_history",
]

Key: TypeAlias = int | str
"""A key: an integer or a string."""

MopValue: TypeAlias = int | tuple[int, ...] | None
"""What a micro-operation carries: an appended element or written value (int), a list read
(tuple of ints), a register read (int), or None (a read's invoke; a read of the initial
state)."""

Mop: TypeAlias = tuple[str, Key, MopValue]
"""A micro-operation ``(f, key, value)``, f one of ``"append"``, ``"w"`` or ``"r"``."""


class ElleHistoryError(ValueError):
    """A transaction history that does not follow the format in this module's docstring."""


class Model(StrEnum):
    """What the keys are, which decides the micro-operations and how versions are inferred."""

    LIST_APPEND = "list-append"
    """Each key is a list; transactions append unique elements and read whole lists."""
    RW_REGISTER = "rw-register"
    """Each key is a register; transactions write unique values and read them."""

    @classmethod
    def parse(cls, name: Model | str) -> Model:
        """The model called ``name``; ValueError names the choices."""
        try:
            return cls(name)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown model {name!r} (expected one of: {choices})") from None


_WRITE_F = {Model.LIST_APPEND: "append", Model.RW_REGISTER: "w"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Txn:
    """One transaction: an invoke paired with its completion.

    ``mops`` are the completion's micro-operations for an ``ok`` transaction (reads filled
    in), and the invoke's otherwise: what a failed or indeterminate transaction read is
    unknown, so its reads are None and the checkers never use them.
    """

    id: int
    """Position in `ElleHistory.txns` (transactions are in invoke order)."""
    process: int
    outcome: Outcome
    mops: tuple[Mop, ...]
    invoke_index: int
    """Index of the invoke event, from 0 (text and JSON show ``index + 1``)."""
    complete_index: int | None
    """Index of the completion event; None when the transaction never completed."""
    invoke_time: int | None
    complete_time: int | None

    def value_json(self) -> list[list[object]]:
        """The micro-operations as JSON-ready lists (``[f, key, value]``)."""
        return [[f, k, list(v) if isinstance(v, tuple) else v] for f, k, v in self.mops]


@dataclass(frozen=True, slots=True, kw_only=True)
class ElleHistory:
    """A validated transaction history of one model."""

    model: Model
    txns: tuple[Txn, ...]
    event_count: int
    timed: bool
    """Every event has a ``time``: real-time order compares times, not file positions."""


def parse_elle_history(text: str, model: Model | str) -> ElleHistory:
    """Parse and validate a transaction history written as a JSON array or as JSON lines.

    Raises:
        ElleHistoryError: the text is not valid JSON or breaks a rule of the format.
        ValueError: ``model`` names no model.
    """
    return elle_history_from_events(read_json_events(text, ElleHistoryError), model)


def elle_history_from_events(events: Iterable[object], model: Model | str) -> ElleHistory:
    """Validate events already decoded from JSON (or built in memory) into an `ElleHistory`.

    Raises:
        ElleHistoryError: an event breaks a rule of this module's format.
        ValueError: ``model`` names no model.
    """
    builder = _Builder(Model.parse(model))
    with paused_gc():  # hundreds of thousands of small objects, no cycles among them
        for index, raw in enumerate(events):
            builder.add(index, raw)
        return builder.finish()


class _Open:
    """An invoke waiting for its completion."""

    __slots__ = ("id", "index", "mops", "process", "time")

    def __init__(
        self, txn_id: int, process: int, index: int, mops: tuple[Mop, ...], time: int | None
    ) -> None:
        self.id = txn_id
        self.process = process
        self.index = index
        self.mops = mops
        self.time = time


_TYPES = frozenset({"invoke", "ok", "fail", "info"})
_INT = frozenset({int})
_OUTCOMES = {"ok": Outcome.OK, "fail": Outcome.FAIL, "info": Outcome.INFO}


class _Builder:
    """Validates events one by one and pairs invokes with completions."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.write_f = _WRITE_F[model]
        self.open: dict[int, _Open] = {}
        self.done: list[Txn | None] = []
        self.written: dict[Key, dict[int, int]] = {}
        self.events = 0
        self.timed = True
        self.last_time: tuple[int, int] | None = None

    def add(self, index: int, raw: object) -> None:
        where = f"event {index + 1}"
        self.events = index + 1
        if not isinstance(raw, Mapping):
            raise ElleHistoryError(f"{where}: expected a JSON object, got {_json_type(raw)}")
        process = _integer(_field(raw, "process", where), "process", where)
        kind = _field(raw, "type", where)
        if not isinstance(kind, str) or kind not in _TYPES:
            raise ElleHistoryError(
                f"{where}: unknown type {_show(kind)} (expected one of: invoke, ok, fail, info)"
            )
        f = raw.get("f", "txn")
        if f != "txn":
            raise ElleHistoryError(f"{where}: 'f' must be \"txn\", got {_show(f)}")
        time = self._time(raw, index, where)
        if kind == "invoke":
            self._invoke(index, process, raw, time, where)
        else:
            self._complete(index=index, process=process, kind=kind, raw=raw, time=time, where=where)

    def finish(self) -> ElleHistory:
        for pending in self.open.values():
            self.done[pending.id] = _txn(pending, Outcome.INFO, pending.mops, None, None)
        txns = tuple(t for t in self.done if t is not None)
        assert len(txns) == len(self.done)
        return ElleHistory(
            model=self.model,
            txns=txns,
            event_count=self.events,
            timed=self.timed and self.events > 0,
        )

    def _time(self, raw: Mapping[object, object], index: int, where: str) -> int | None:
        time = raw.get("time")
        if time is None:
            self.timed = False
            return None
        time = _integer(time, "time", where)
        if self.last_time is not None and time < self.last_time[0]:
            earlier, at = self.last_time
            raise ElleHistoryError(
                f"{where}: time {time} is earlier than time {earlier} of event {at + 1} "
                "(times must be non-decreasing)"
            )
        self.last_time = (time, index)
        return time

    def _invoke(
        self, index: int, process: int, raw: Mapping[object, object], time: int | None, where: str
    ) -> None:
        pending = self.open.get(process)
        if pending is not None:
            raise ElleHistoryError(
                f"{where}: process {process} invoked a transaction while its transaction from "
                f"event {pending.index + 1} is still outstanding"
            )
        if "value" not in raw:
            raise ElleHistoryError(f"{where}: missing field 'value' (an invoke needs one)")
        mops = self._mops(raw["value"], where, invoke=True)
        txn_id = len(self.done)
        for n, (f, key, value) in enumerate(mops):
            if f != "r":
                assert isinstance(value, int)
                self._unique(key, value, index, n, where)
        self.open[process] = _Open(txn_id, process, index, mops, time)
        self.done.append(None)

    def _unique(self, key: Key, value: int, index: int, n: int, where: str) -> None:
        seen = self.written.get(key)
        if seen is None:
            self.written[key] = {value: index}
            return
        earlier = seen.get(value)
        if earlier is not None:
            verb = "appends" if self.model is Model.LIST_APPEND else "writes"
            raise ElleHistoryError(
                f"{where}: micro-op {n + 1} {verb} {value} to key {_show(key)}, which event "
                f"{earlier + 1} already {verb} (written values must be unique per key)"
            )
        seen[value] = index

    def _complete(
        self,
        *,
        index: int,
        process: int,
        kind: str,
        raw: Mapping[object, object],
        time: int | None,
        where: str,
    ) -> None:
        pending = self.open.pop(process, None)
        if pending is None:
            raise ElleHistoryError(
                f"{where}: {kind} completion for process {process}, which has no outstanding invoke"
            )
        outcome = _OUTCOMES[kind]
        value = raw.get("value")
        if value is None:
            if outcome is Outcome.OK:
                raise ElleHistoryError(
                    f"{where}: an ok completion needs a 'value' (the transaction, reads filled in)"
                )
            mops = pending.mops
        else:
            completed = self._mops(value, where, invoke=False)
            _match(completed, pending, where)
            mops = completed if outcome is Outcome.OK else pending.mops
        self.done[pending.id] = _txn(pending, outcome, mops, index, time)

    def _mops(self, value: object, where: str, *, invoke: bool) -> tuple[Mop, ...]:
        if not isinstance(value, list):
            raise ElleHistoryError(
                f"{where}: 'value' must be a list of micro-operations, got {_show(value)}"
            )
        return tuple(self._mop(raw, n, where, invoke=invoke) for n, raw in enumerate(value))

    def _mop(self, raw: object, n: int, where: str, *, invoke: bool) -> Mop:
        if not isinstance(raw, list) or len(raw) != 3:
            raise ElleHistoryError(
                f"{where}: micro-op {n + 1} must be a list [f, key, value], got {_show(raw)}"
            )
        f, key, value = raw
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise ElleHistoryError(
                f"{where}: micro-op {n + 1}: a key must be an integer or a string, got {_show(key)}"
            )
        if f == self.write_f:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ElleHistoryError(
                    f"{where}: micro-op {n + 1}: {f} needs an integer value, got {_show(value)}"
                )
            return (f, key, value)
        if f != "r":
            raise ElleHistoryError(
                f"{where}: micro-op {n + 1}: unknown micro-op {_show(f)} for model {self.model} "
                f'(expected "{self.write_f}" or "r")'
            )
        if value is None:
            return ("r", key, None)
        if invoke:
            raise ElleHistoryError(
                f"{where}: micro-op {n + 1}: a read's value must be null in the invoke, "
                f"got {_show(value)}"
            )
        if self.model is Model.RW_REGISTER:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ElleHistoryError(
                    f"{where}: micro-op {n + 1}: a register read returns an integer or null, "
                    f"got {_show(value)}"
                )
            return ("r", key, value)
        # type(e) is int, so booleans are refused; map(type) keeps the loop in C.
        if not isinstance(value, list) or not set(map(type, value)) <= _INT:
            raise ElleHistoryError(
                f"{where}: micro-op {n + 1}: a list read returns a list of integers or null, "
                f"got {_show(value)}"
            )
        return ("r", key, tuple(value))


def _match(completed: Sequence[Mop], pending: _Open, where: str) -> None:
    """A completion repeats its invoke's micro-operations: same f, key and written value."""
    invoked = pending.mops
    if len(completed) != len(invoked):
        raise ElleHistoryError(
            f"{where}: the completion has {len(completed)} micro-ops, its invoke "
            f"(event {pending.index + 1}) has {len(invoked)}"
        )
    for n, (done, asked) in enumerate(zip(completed, invoked, strict=True)):
        same = done[0] == asked[0] and done[1] == asked[1] and type(done[1]) is type(asked[1])
        if same and done[0] != "r":
            same = done[2] == asked[2]
        if not same:
            raise ElleHistoryError(
                f"{where}: micro-op {n + 1} {_show(_mop_json(done))} does not match "
                f"{_show(_mop_json(asked))} of its invoke (event {pending.index + 1})"
            )


def _txn(
    pending: _Open,
    outcome: Outcome,
    mops: tuple[Mop, ...],
    complete_index: int | None,
    complete_time: int | None,
) -> Txn:
    return Txn(
        id=pending.id,
        process=pending.process,
        outcome=outcome,
        mops=mops,
        invoke_index=pending.index,
        complete_index=complete_index,
        invoke_time=pending.time,
        complete_time=complete_time,
    )


def _mop_json(mop: Mop) -> list[object]:
    f, key, value = mop
    return [f, key, list(value) if isinstance(value, tuple) else value]


def _field(raw: Mapping[object, object], name: str, where: str) -> object:
    if name not in raw:
        raise ElleHistoryError(f"{where}: missing field '{name}'")
    return raw[name]


def _integer(value: object, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ElleHistoryError(f"{where}: '{name}' must be an integer, got {_show(value)}")
    return value


def _show(value: object) -> str:
    return show(value, limit=60)

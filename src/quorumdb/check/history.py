"""Recorded histories of register operations: the format, its validation, and operations per key.

A history is what clients saw, nothing more: which process asked for what, and what came back.
Checkers read it; they never look inside the system that produced it, so the simulator, the
real-process nemesis runs and histories recorded by other tools are checked alike.

Format (the Jepsen convention)
------------------------------
A JSON array of event objects, or JSON lines (one event object per line; blank lines are
skipped). Events appear in real-time order: an event earlier in the file happened before every
event after it. Events are numbered from 1 in that order, and error messages use those numbers::

    {"process": 1, "type": "invoke", "f": "write", "key": "x", "value": 3, "time": 1000}
    {"process": 1, "type": "ok",     "f": "write", "key": "x", "value": 3, "time": 1450}

- ``process`` (int): who issued the operation. A process has at most one operation outstanding.
- ``type``: ``"invoke"`` starts an operation; its completion is the next event of the same
  process: ``"ok"`` (it took effect), ``"fail"`` (it certainly did not take effect; the checker
  drops it) or ``"info"`` (it may or may not have taken effect: a timeout, a crash). An invoke
  with no completion by the end of the history counts as ``info``.
- ``f``: ``"read"``, ``"write"``, ``"cas"`` (compare-and-set) or ``"delete"``.
- ``key`` (str): the register. Every key starts absent (null); keys are independent registers.
- ``value``: a read's value is the value read (null when the key is absent) on its ``ok``
  completion, and null on its invoke. A write's value is the value written. A cas's value is
  ``[expected, new]``: it succeeds iff the current value equals ``expected`` (null: the key is
  absent) and then stores ``new``; a cas that found another value is reported as ``fail``, so
  an ``ok`` cas took effect. A completion of a write or cas repeats the invoke's value or
  leaves it null/absent. Register values are JSON scalars (string, number, boolean, null) and
  compare as JSON values: ``1`` and ``1.0`` are the same number, ``true`` is not ``1``.
- ``time`` (int, optional): a timestamp (say, nanoseconds). It is informative only (file
  order is the real-time order), but where present it must be non-decreasing.
- Other fields (``"error"``, ``"node"``, ...) are ignored.

Extension for key-value stores: ``"f": "delete"`` (value null) makes the key absent again. A
later read returns null and a ``cas`` with ``expected`` null succeeds.

After an ``info`` Jepsen retires the process and continues under a new process id. A later
invoke from the same id is accepted here too: process ids only pair invokes with completions,
and the checker never assumes two operations of one process were ordered beyond what their
[invoke, complete] intervals say, so reusing an id is as safe as a fresh one.

Validation: anything else (bad JSON, a missing or mistyped field, an unknown ``type`` or ``f``,
a completion with no outstanding invoke, an invoke while the process still has one outstanding,
a completion whose ``f``, ``key`` or value disagrees with its invoke, a cas value that is not a
two-element list, a decreasing ``time``) raises `HistoryError` naming the event and the problem.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias, TypeVar

from quorumdb.check._json_text import json_type as _json_type
from quorumdb.check._json_text import show as _show
from quorumdb.check.json_events import read_json_events

__all__ = [
    "CasInput",
    "Event",
    "EventType",
    "Function",
    "History",
    "HistoryError",
    "Operation",
    "Outcome",
    "Value",
    "history_from_events",
    "parse_history",
]

Value: TypeAlias = str | int | float | bool | None
"""A register value: a JSON scalar. Floats are finite (JSON has no NaN or infinity)."""

CasInput: TypeAlias = tuple[Value, Value]
"""A cas operation's input: (expected, new)."""

_E = TypeVar("_E", bound=StrEnum)


class HistoryError(ValueError):
    """A history that does not follow the format in this module's docstring."""


class EventType(StrEnum):
    """What an event says about its operation."""

    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


class Function(StrEnum):
    """The register operation an event belongs to."""

    READ = "read"
    WRITE = "write"
    CAS = "cas"
    DELETE = "delete"


class Outcome(StrEnum):
    """How an operation ended, from the client's point of view."""

    OK = "ok"
    """It took effect, exactly once, between its invoke and its completion."""
    FAIL = "fail"
    """It did not take effect."""
    INFO = "info"
    """Unknown: it took effect at most once, at some point after its invoke, or never."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One validated line of a history."""

    index: int
    """Position in the history, from 0 (messages show ``index + 1``)."""
    process: int
    type: EventType
    f: Function
    key: str
    value: Value | CasInput
    time: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """An invoke paired with its completion: what a checker orders.

    ``input`` is the written value (write), ``(expected, new)`` (cas), or None (read, delete);
    ``output`` is the value an ``ok`` read returned, else None.
    """

    id: int
    """Position in `History.operations` (operations are in invoke order)."""
    process: int
    key: str
    f: Function
    input: Value | CasInput
    output: Value
    outcome: Outcome
    invoke_index: int
    complete_index: int | None
    """Index of the completion event; None when the operation never completed."""
    invoke_time: int | None
    complete_time: int | None

    @property
    def return_index(self) -> int | None:
        """The event by which the operation certainly took effect; None if it may never have."""
        return self.complete_index if self.outcome is Outcome.OK else None


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """A validated history: its events, and the operations they form."""

    events: tuple[Event, ...]
    operations: tuple[Operation, ...]

    def by_key(self) -> dict[str, tuple[Operation, ...]]:
        """Operations grouped per key, keys sorted, each group in invoke order."""
        groups: dict[str, list[Operation]] = {}
        for op in self.operations:
            groups.setdefault(op.key, []).append(op)
        return {key: tuple(groups[key]) for key in sorted(groups)}


def parse_history(text: str) -> History:
    """Parse and validate a history written as a JSON array or as JSON lines.

    Args:
        text: the whole file. A first non-blank character ``[`` means a JSON array.

    Returns:
        The validated `History`.

    Raises:
        HistoryError: the text is not valid JSON or breaks a rule of the format.
    """
    return history_from_events(read_json_events(text, HistoryError))


def history_from_events(events: Iterable[object]) -> History:
    """Validate events already decoded from JSON (or built in memory) into a `History`.

    Args:
        events: mappings with the fields of this module's docstring, in real-time order.

    Raises:
        HistoryError: an event breaks a rule of the format.
    """
    builder = _Builder()
    for index, raw in enumerate(events):
        builder.add(_event(index, raw))
    return builder.finish()


def _event(index: int, raw: object) -> Event:
    where = f"event {index + 1}"
    if not isinstance(raw, Mapping):
        raise HistoryError(f"{where}: expected a JSON object, got {_json_type(raw)}")
    process = _integer(_field(raw, "process", where), "process", where)
    event_type = _enum(EventType, _field(raw, "type", where), "type", where)
    f = _enum(Function, _field(raw, "f", where), "f", where)
    key = _field(raw, "key", where)
    if not isinstance(key, str):
        raise HistoryError(f"{where}: 'key' must be a string, got {_show(key)}")
    time = raw.get("time")
    if time is not None:
        time = _integer(time, "time", where)
    value = _value(raw, f, event_type, where)
    return Event(
        index=index, process=process, type=event_type, f=f, key=key, value=value, time=time
    )


def _field(raw: Mapping[object, object], name: str, where: str) -> object:
    if name not in raw:
        raise HistoryError(f"{where}: missing field '{name}'")
    return raw[name]


def _enum(enum: type[_E], raw: object, name: str, where: str) -> _E:
    if isinstance(raw, str):
        try:
            return enum(raw)
        except ValueError:
            pass
    allowed = ", ".join(member.value for member in enum)
    raise HistoryError(f"{where}: unknown {name} {_show(raw)} (expected one of: {allowed})")


def _value(
    raw: Mapping[object, object], f: Function, event_type: EventType, where: str
) -> Value | CasInput:
    needs_value = (f in (Function.WRITE, Function.CAS) and event_type is EventType.INVOKE) or (
        f is Function.READ and event_type is EventType.OK
    )
    if needs_value and "value" not in raw:
        raise HistoryError(f"{where}: missing field 'value' ({event_type} {f} needs one)")
    value = raw.get("value")
    if f is Function.CAS and value is not None:
        if not isinstance(value, list) or len(value) != 2:
            raise HistoryError(
                f"{where}: a cas value must be a 2-element list [expected, new], got {_show(value)}"
            )
        return (_scalar(value[0], where), _scalar(value[1], where))
    if f is Function.DELETE and value is not None:
        raise HistoryError(f"{where}: a delete's value must be null, got {_show(value)}")
    if f is Function.READ and event_type is EventType.INVOKE and value is not None:
        raise HistoryError(f"{where}: a read's invoke must have value null, got {_show(value)}")
    return _scalar(value, where)


def _scalar(value: object, where: str) -> Value:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise HistoryError(
        f"{where}: a register value must be a string, number, boolean or null, got {_show(value)}"
    )


def _integer(value: object, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise HistoryError(f"{where}: '{name}' must be an integer, got {_show(value)}")
    return value


def _same_value(a: Value | CasInput, b: Value | CasInput) -> bool:
    """Equality as JSON values: ``true`` is not ``1`` (Python says it is)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, tuple) or isinstance(b, tuple):
        return False
    return isinstance(a, bool) == isinstance(b, bool) and a == b


class _Builder:
    """Pairs invokes with completions, one outstanding operation per process."""

    __slots__ = ("_events", "_last_time", "_open", "_pairs")

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._open: dict[int, Event] = {}
        self._pairs: list[tuple[Event, Event | None]] = []
        self._last_time: tuple[int, int] | None = None

    def add(self, event: Event) -> None:
        self._check_time(event)
        self._events.append(event)
        if event.type is EventType.INVOKE:
            self._invoke(event)
        else:
            self._complete(event)

    def finish(self) -> History:
        pairs = self._pairs + [(invoke, None) for invoke in self._open.values()]
        pairs.sort(key=lambda pair: pair[0].index)
        operations = tuple(_operation(i, invoke, end) for i, (invoke, end) in enumerate(pairs))
        return History(events=tuple(self._events), operations=operations)

    def _check_time(self, event: Event) -> None:
        if event.time is None:
            return
        if self._last_time is not None and event.time < self._last_time[0]:
            time, index = self._last_time
            raise HistoryError(
                f"event {event.index + 1}: time {event.time} is earlier than time {time} "
                f"of event {index + 1} (times must be non-decreasing)"
            )
        self._last_time = (event.time, event.index)

    def _invoke(self, event: Event) -> None:
        pending = self._open.get(event.process)
        if pending is not None:
            raise HistoryError(
                f"event {event.index + 1}: process {event.process} invoked {event.f} while its "
                f"{pending.f} from event {pending.index + 1} is still outstanding"
            )
        self._open[event.process] = event

    def _complete(self, event: Event) -> None:
        where = f"event {event.index + 1}"
        invoke = self._open.pop(event.process, None)
        if invoke is None:
            raise HistoryError(
                f"{where}: {event.type} completion for process {event.process}, "
                "which has no outstanding invoke"
            )
        if event.f is not invoke.f:
            raise HistoryError(
                f"{where}: completion f '{event.f}' does not match f '{invoke.f}' "
                f"of its invoke (event {invoke.index + 1})"
            )
        if event.key != invoke.key:
            raise HistoryError(
                f"{where}: completion key {event.key!r} does not match key {invoke.key!r} "
                f"of its invoke (event {invoke.index + 1})"
            )
        if (
            event.f in (Function.WRITE, Function.CAS)
            and event.value is not None
            and not _same_value(event.value, invoke.value)
        ):
            raise HistoryError(
                f"{where}: completion value {_show(event.value)} differs from value "
                f"{_show(invoke.value)} of its invoke (event {invoke.index + 1})"
            )
        self._pairs.append((invoke, event))


def _operation(op_id: int, invoke: Event, end: Event | None) -> Operation:
    outcome = Outcome.INFO if end is None else Outcome(end.type.value)
    output = end.value if end is not None and invoke.f is Function.READ else None
    if outcome is not Outcome.OK:
        output = None
    assert not isinstance(output, tuple), output
    return Operation(
        id=op_id,
        process=invoke.process,
        key=invoke.key,
        f=invoke.f,
        input=None if invoke.f is Function.READ else invoke.value,
        output=output,
        outcome=outcome,
        invoke_index=invoke.index,
        complete_index=None if end is None else end.index,
        invoke_time=invoke.time,
        complete_time=None if end is None else end.time,
    )

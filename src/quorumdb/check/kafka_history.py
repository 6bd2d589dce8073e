"""Recorded histories of Kafka sends and polls: the format, its validation, and operations.

A history is what Kafka clients saw, nothing more: which process sent which value to which
partition and at what offset the send was acknowledged, what each consumer's polls returned, and
where consumers were told to start over (assign, seek). `quorumdb.check.kafka_delivery` reads
it; it never looks inside the system that produced it. The model is Jepsen's Kafka workload
(``jepsen.tests.kafka``), flattened to one send or one poll per operation.

Format
------
A JSON array of event objects, or JSON lines (one event object per line; blank lines are
skipped). Events appear in real-time order and are numbered from 1 in that order; error
messages use those numbers::

    {"process": 1, "type": "invoke", "f": "send",
     "value": {"topic": "t", "partition": 0, "value": "1-7"}}
    {"process": 1, "type": "ok", "f": "send",
     "value": {"topic": "t", "partition": 0, "value": "1-7", "offset": 42}}
    {"process": 9, "type": "invoke", "f": "poll"}
    {"process": 9, "type": "ok", "f": "poll",
     "value": [{"topic": "t", "partition": 0, "offset": 42, "value": "1-7"}]}

(wrapped here; in a JSON lines file each event is one line).

Fields every event has, as in `quorumdb.check.history`:

- ``process`` (int): who issued the operation. A process has at most one operation outstanding.
- ``type``: ``"invoke"`` starts an operation; its completion is the next event of the same
  process: ``"ok"`` (it took effect), ``"fail"`` (it certainly did not) or ``"info"`` (unknown:
  a timeout, a crash). An invoke with no completion by the end of the history counts as info.
- ``f``: ``"send"``, ``"poll"``, ``"assign"``, ``"seek"`` or ``"commit"`` (below).
- ``time`` (int, optional): informative only (file order is the real-time order); where
  present it must be non-decreasing.
- Other fields (``"error"``, ``"node"``, ...) are ignored, except ``aborted`` and ``rebalance``.

A *partition object* is ``{"topic": str, "partition": int}`` (topic non-empty, partition >= 0),
sometimes with an ``"offset"`` (int >= 0). A *record value* is a string or an integer (not a
boolean, not a float); ``"1"`` and ``1`` are different values.

``send``: produce one record.
  The invoke's ``value`` is a partition object plus ``"value"``: the record value. A completion
  may leave ``value`` null or absent, or repeat the invoke's fields, which must then match. An
  ``ok`` completion must carry ``"offset"`` (int >= 0) in its value: the offset the broker
  acknowledged. A ``fail`` or ``info`` completion must not carry one. Record values are unique
  per partition: no two sends to one partition send the same value (to retry after an error,
  send a new value). The checker identifies records by value, as Jepsen's does; producer-level
  retries (the idempotent producer's) are invisible here and must not duplicate records.
  ``"aborted": true`` on the invoke or the completion marks a send that belonged to a
  transaction that was aborted: a ``read_committed`` consumer must never see it.
``poll``: one poll of a consumer.
  The invoke's ``value`` is null or absent. An ``ok`` completion's ``value`` is an array
  (possibly empty) of records, each a partition object with ``"offset"`` and ``"value"``, in the
  order the consumer received them. A ``fail`` completion consumed nothing; an ``info`` one may
  have consumed records that were not recorded, so the consumer's positions are unknown after
  it. Both have ``value`` null or absent. ``"rebalance": true`` on a completion says the
  consumer's assignment changed during the poll (a group rebalance): it acts as an ``assign``
  just before the poll's records.
``assign``: the consumer's partitions were replaced (``assign()``, or a rebalance recorded as
  its own operation). ``value``: a partition object or an array of them (offsets optional,
  informative). Afterwards the positions of *all* of the process's partitions are unknown: its
  next poll may start anywhere.
``seek``: the consumer moved its position (``seek()``, ``seek_to_beginning()``, ...).
  ``value``: a partition object or an array of them; ``"offset"`` is the target, or absent or
  null for the beginning or the end. The positions of the named partitions become unknown.
``commit``: the consumer committed offsets. ``value``: null, or a partition object or array of
  them each with ``"offset"``. Validated; the delivery checker does not use it yet.

A completion of an ``assign``, ``seek`` or ``commit`` leaves ``value`` null or absent, or repeats
the invoke's. Whatever their outcome, ``assign`` and ``seek`` are taken to have moved the
consumer (a conservative reading: it can only hide an anomaly, never invent one).

Validation: anything else (bad JSON, a missing or mistyped field, an unknown ``type`` or ``f``,
a completion with no outstanding invoke, an invoke while the process has one outstanding, a
completion whose ``f`` or send fields disagree with its invoke, an ``ok`` send without an offset,
a repeated send value, ``aborted`` or ``rebalance`` where they do not belong, a decreasing
``time``) raises `KafkaHistoryError` naming the event and the problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, TypeAlias, TypeVar

from quorumdb.check._gc import paused_gc
from quorumdb.check._json_text import json_type as _json_type
from quorumdb.check._json_text import show as _show
from quorumdb.check.history import EventType, Outcome
from quorumdb.check.json_events import read_json_events

__all__ = [
    "Assign",
    "Commit",
    "KafkaFunction",
    "KafkaHistory",
    "KafkaHistoryError",
    "KafkaOperation",
    "Poll",
    "Position",
    "Record",
    "RecordValue",
    "Seek",
    "Send",
    "TopicPartition",
    "kafka_history_from_events",
    "parse_kafka_history",
]

RecordValue: TypeAlias = str | int
"""A record's value: a string or an integer, unique per partition among sends."""


class KafkaHistoryError(ValueError):
    """A Kafka history that does not follow the format in this module's docstring."""


class KafkaFunction(StrEnum):
    """The client call an event belongs to."""

    SEND = "send"
    POLL = "poll"
    ASSIGN = "assign"
    SEEK = "seek"
    COMMIT = "commit"


# NamedTuples, not dataclasses, for the three types made once per record: a history of 100k
# events holds hundreds of thousands of them, and tuple creation and hashing are much cheaper.
class TopicPartition(NamedTuple):
    """A partition of a topic; sorts by topic, then partition number."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}"


class Record(NamedTuple):
    """One record as a poll returned it."""

    topic_partition: TopicPartition
    offset: int
    value: RecordValue


class Position(NamedTuple):
    """A partition named by an assign, seek or commit, with its offset if one was given."""

    topic_partition: TopicPartition
    offset: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """A send operation: one record produced to one partition."""

    process: int
    topic_partition: TopicPartition
    value: RecordValue
    outcome: Outcome
    offset: int | None
    """The acknowledged offset: set exactly when ``outcome`` is OK."""
    aborted: bool
    """Part of an aborted transaction: never visible to a read_committed consumer."""
    invoke_index: int
    complete_index: int | None
    invoke_time: int | None
    complete_time: int | None

    @property
    def may_be_visible(self) -> bool:
        """False when no consumer may ever read the record: it failed, or its txn aborted."""
        return not self.aborted and self.outcome is not Outcome.FAIL

    @property
    def last_index(self) -> int:
        """The completion event, or the invoke when the send never completed."""
        return self.invoke_index if self.complete_index is None else self.complete_index


@dataclass(frozen=True, slots=True, kw_only=True)
class Poll:
    """A poll operation and the records it returned (only an OK poll returns any)."""

    process: int
    outcome: Outcome
    records: tuple[Record, ...]
    rebalance: bool
    """The assignment changed during the poll: positions were reset before its records."""
    invoke_index: int
    complete_index: int | None
    invoke_time: int | None
    complete_time: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Assign:
    """The consumer's partitions were replaced: all its positions become unknown."""

    process: int
    outcome: Outcome
    positions: tuple[Position, ...]
    invoke_index: int
    complete_index: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Seek:
    """The consumer moved its position on ``positions``' partitions."""

    process: int
    outcome: Outcome
    positions: tuple[Position, ...]
    invoke_index: int
    complete_index: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    """The consumer committed offsets (recorded, not checked yet)."""

    process: int
    outcome: Outcome
    positions: tuple[Position, ...]
    invoke_index: int
    complete_index: int | None


KafkaOperation: TypeAlias = Send | Poll | Assign | Seek | Commit


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaHistory:
    """A validated Kafka history: its operations in invoke order."""

    event_count: int
    operations: tuple[KafkaOperation, ...]

    @property
    def sends(self) -> tuple[Send, ...]:
        return tuple(op for op in self.operations if isinstance(op, Send))

    @property
    def polls(self) -> tuple[Poll, ...]:
        return tuple(op for op in self.operations if isinstance(op, Poll))


def parse_kafka_history(text: str) -> KafkaHistory:
    """Parse and validate a Kafka history written as a JSON array or as JSON lines.

    Args:
        text: the whole file. A first non-blank character ``[`` means a JSON array.

    Returns:
        The validated `KafkaHistory`.

    Raises:
        KafkaHistoryError: the text is not valid JSON or breaks a rule of the format.
    """
    return kafka_history_from_events(read_json_events(text, KafkaHistoryError))


def kafka_history_from_events(events: Iterable[object]) -> KafkaHistory:
    """Validate events already decoded from JSON (or built in memory) into a `KafkaHistory`.

    Args:
        events: mappings with the fields of this module's docstring, in real-time order.

    Raises:
        KafkaHistoryError: an event breaks a rule of the format.
    """
    builder = _Builder()
    with paused_gc():
        for index, raw in enumerate(events):
            builder.add(index, raw)
        return builder.finish()


class _SendValue(NamedTuple):
    """A send event's value; a completion that does not repeat the record has no
    ``topic_partition`` and no ``value``."""

    topic_partition: TopicPartition | None
    value: RecordValue | None
    offset: int | None


class _Event(NamedTuple):
    """One validated event; only the payload field of its ``f`` is set."""

    number: int
    """Position in the history, from 0 (``index`` is taken by tuple)."""
    process: int
    type: EventType
    f: KafkaFunction
    time: int | None
    send: _SendValue | None
    records: tuple[Record, ...]
    positions: tuple[Position, ...] | None
    aborted: bool
    rebalance: bool


_C = TypeVar("_C")
_RECORD_FIELDS = ("topic", "partition", "value")
_TYPES = {t.value: t for t in EventType}
_FUNCTIONS = {f.value: f for f in KafkaFunction}
# Record(...) without the Python-level __new__ NamedTuple adds: once per record, it shows.
_new_tuple = tuple.__new__
_OUTCOMES = {t: Outcome(t.value) for t in (EventType.OK, EventType.FAIL, EventType.INFO)}


class _Builder:
    """Validates events one by one and pairs invokes with completions."""

    __slots__ = ("_count", "_last_time", "_open", "_operations", "_sent", "_topic_partitions")

    def __init__(self) -> None:
        self._count = 0
        self._last_time: tuple[int, int] | None = None
        self._open: dict[int, _Event] = {}
        self._operations: list[tuple[int, KafkaOperation]] = []
        self._sent: dict[tuple[TopicPartition, RecordValue], int] = {}
        # Interned: every record of a partition shares one TopicPartition.
        self._topic_partitions: dict[tuple[str, int], TopicPartition] = {}

    def add(self, index: int, raw: object) -> None:
        event = self._event(index, raw)
        self._count += 1
        self._check_time(event)
        if event.type is EventType.INVOKE:
            self._invoke(event)
        else:
            self._complete(event)

    def finish(self) -> KafkaHistory:
        pairs = self._operations + [
            (invoke.number, _operation(invoke, None)) for invoke in self._open.values()
        ]
        pairs.sort(key=lambda pair: pair[0])
        return KafkaHistory(event_count=self._count, operations=tuple(op for _, op in pairs))

    def _event(self, index: int, raw: object) -> _Event:
        # Each field has a fast check (exact types: a bool is not an int here) and falls back
        # to the helper that says what is wrong.
        where = f"event {index + 1}"
        if not isinstance(raw, Mapping):
            raise KafkaHistoryError(f"{where}: expected a JSON object, got {_json_type(raw)}")
        process = raw.get("process")
        if type(process) is not int:
            process = _integer(_field(raw, "process", where), "process", where)
        event_type = _lookup(_TYPES, raw.get("type"))
        if event_type is None:
            event_type = _choice(_TYPES, _field(raw, "type", where), "type", where)
        f = _lookup(_FUNCTIONS, raw.get("f"))
        if f is None:
            f = _choice(_FUNCTIONS, _field(raw, "f", where), "f", where)
        time = raw.get("time")
        if time is not None and type(time) is not int:
            time = _integer(time, "time", where)
        aborted = rebalance = False
        if "aborted" in raw:
            aborted = _flag(raw, "aborted", where, allowed=f is KafkaFunction.SEND)
        if "rebalance" in raw:
            rebalance = _flag(
                raw,
                "rebalance",
                where,
                allowed=f is KafkaFunction.POLL and event_type is not EventType.INVOKE,
            )
        value = raw.get("value")
        send = records = positions = None
        if f is KafkaFunction.SEND:
            send = self._send_value(value, event_type, where)
        elif f is KafkaFunction.POLL:
            records = self._poll_value(value, event_type, where)
        elif value is not None:
            positions = self._positions(value, f, where)
        elif f is not KafkaFunction.COMMIT and event_type is EventType.INVOKE:
            raise KafkaHistoryError(
                f"{where}: missing field 'value' ({f} needs a partition object or an array)"
            )
        return _Event(
            number=index,
            process=process,
            type=event_type,
            f=f,
            time=time,
            send=send,
            records=records or (),
            positions=positions,
            aborted=aborted,
            rebalance=rebalance,
        )

    def _poll_value(
        self, value: object, event_type: EventType, where: str
    ) -> tuple[Record, ...] | None:
        if event_type is EventType.OK:
            return self._records(value, where)
        if value is not None:
            raise KafkaHistoryError(
                f"{where}: a poll's {event_type} must have value null, got {_show(value)}"
            )
        return None

    def _send_value(self, value: object, event_type: EventType, where: str) -> _SendValue | None:
        if value is None and event_type is not EventType.OK:
            if event_type is EventType.INVOKE:
                raise KafkaHistoryError(f"{where}: missing field 'value' (a send needs one)")
            return None
        if not isinstance(value, Mapping):
            raise KafkaHistoryError(
                f"{where}: a send's value must be an object, got {_show(value)}"
            )
        offset = value.get("offset")
        if offset is not None:
            offset = _offset(offset, where)
        if event_type is EventType.OK and offset is None:
            raise KafkaHistoryError(
                f"{where}: an ok send must carry the acknowledged 'offset' in its value"
            )
        if event_type is not EventType.OK and offset is not None:
            raise KafkaHistoryError(
                f"{where}: only an ok send has an offset (this is a send {event_type})"
            )
        if event_type is EventType.INVOKE or any(k in value for k in _RECORD_FIELDS):
            topic_partition = self._topic_partition(value, where)
            record_value = _record_value(_field(value, "value", where), where)
            return _SendValue(topic_partition, record_value, offset)
        return _SendValue(None, None, offset)

    def _records(self, value: object, where: str) -> tuple[Record, ...]:
        if type(value) is not list:
            return self._records_checked(value, where)
        interned = self._topic_partitions
        records: list[Record] = []
        for raw in value:
            # The fast path: a well-formed record of a partition seen before. Anything else
            # (not an object, a missing field, a new partition) goes the checked way.
            try:
                partition = raw["partition"]
                topic_partition = interned[(raw["topic"], partition)]
                offset = raw["offset"]
                record_value = raw["value"]
            except (KeyError, TypeError):
                return self._records_checked(value, where)
            if (
                type(partition) is not int  # True and 1.0 would find partition 1
                or type(offset) is not int
                or offset < 0
                or (type(record_value) is not str and type(record_value) is not int)
            ):
                return self._records_checked(value, where)
            records.append(_new_tuple(Record, (topic_partition, offset, record_value)))
        return tuple(records)

    def _records_checked(self, value: object, where: str) -> tuple[Record, ...]:
        if not isinstance(value, list):
            raise KafkaHistoryError(
                f"{where}: an ok poll's value must be an array of records, got {_show(value)}"
            )
        records: list[Record] = []
        for n, raw in enumerate(value, start=1):
            item = f"{where}, record {n}"
            if not isinstance(raw, Mapping):
                raise KafkaHistoryError(f"{item}: expected an object, got {_show(raw)}")
            records.append(
                Record(
                    self._topic_partition(raw, item),
                    _offset(_field(raw, "offset", item), item),
                    _record_value(_field(raw, "value", item), item),
                )
            )
        return tuple(records)

    def _positions(self, value: object, f: KafkaFunction, where: str) -> tuple[Position, ...]:
        items = value if isinstance(value, list) else [value]
        positions: list[Position] = []
        for n, raw in enumerate(items, start=1):
            item = f"{where}, partition {n}" if isinstance(value, list) else where
            if not isinstance(raw, Mapping):
                raise KafkaHistoryError(f"{item}: a {f} names partition objects, got {_show(raw)}")
            offset = raw.get("offset")
            if offset is not None:
                offset = _offset(offset, item)
            elif f is KafkaFunction.COMMIT:
                raise KafkaHistoryError(f"{item}: a commit needs an 'offset' per partition")
            positions.append(Position(self._topic_partition(raw, item), offset))
        return tuple(positions)

    def _topic_partition(self, raw: Mapping[object, object], where: str) -> TopicPartition:
        topic = _field(raw, "topic", where)
        if not isinstance(topic, str) or not topic:
            raise KafkaHistoryError(
                f"{where}: 'topic' must be a non-empty string, got {_show(topic)}"
            )
        partition = _integer(_field(raw, "partition", where), "partition", where)
        if partition < 0:
            raise KafkaHistoryError(f"{where}: 'partition' must be >= 0, got {partition}")
        key = (topic, partition)
        interned = self._topic_partitions.get(key)
        if interned is None:
            interned = self._topic_partitions[key] = TopicPartition(topic, partition)
        return interned

    def _check_time(self, event: _Event) -> None:
        if event.time is None:
            return
        if self._last_time is not None and event.time < self._last_time[0]:
            time, index = self._last_time
            raise KafkaHistoryError(
                f"event {event.number + 1}: time {event.time} is earlier than time {time} "
                f"of event {index + 1} (times must be non-decreasing)"
            )
        self._last_time = (event.time, event.number)

    def _invoke(self, event: _Event) -> None:
        pending = self._open.get(event.process)
        if pending is not None:
            raise KafkaHistoryError(
                f"event {event.number + 1}: process {event.process} invoked {event.f} while its "
                f"{pending.f} from event {pending.number + 1} is still outstanding"
            )
        if event.send is not None:
            assert event.send.topic_partition is not None, event
            assert event.send.value is not None, event
            key = (event.send.topic_partition, event.send.value)
            earlier = self._sent.setdefault(key, event.number)
            if earlier != event.number:
                raise KafkaHistoryError(
                    f"event {event.number + 1}: value {_show(key[1])} was already sent to "
                    f"{key[0]} at event {earlier + 1} (send values must be unique per partition)"
                )
        self._open[event.process] = event

    def _complete(self, event: _Event) -> None:
        where = f"event {event.number + 1}"
        invoke = self._open.pop(event.process, None)
        if invoke is None:
            raise KafkaHistoryError(
                f"{where}: {event.type} completion for process {event.process}, "
                "which has no outstanding invoke"
            )
        if event.f is not invoke.f:
            raise KafkaHistoryError(
                f"{where}: completion f '{event.f}' does not match f '{invoke.f}' "
                f"of its invoke (event {invoke.number + 1})"
            )
        _check_repeats(event, invoke, where)
        self._operations.append((invoke.number, _operation(invoke, event)))


def _check_repeats(event: _Event, invoke: _Event, where: str) -> None:
    """A completion may repeat its invoke's value; if it does, it must say the same thing."""
    if event.send is not None and event.send.topic_partition is not None:
        mine, theirs = event.send, invoke.send
        assert theirs is not None, invoke
        assert mine.value is not None, event
        assert theirs.value is not None, invoke
        if mine.topic_partition != theirs.topic_partition or not _same_value(
            mine.value, theirs.value
        ):
            raise KafkaHistoryError(
                f"{where}: completion sends {_show(mine.value)} to {mine.topic_partition}, "
                f"its invoke (event {invoke.number + 1}) {_show(theirs.value)} to "
                f"{theirs.topic_partition}"
            )
    if event.positions is not None and event.positions != invoke.positions:
        raise KafkaHistoryError(
            f"{where}: completion value differs from the value of its invoke "
            f"(event {invoke.number + 1})"
        )


def _operation(invoke: _Event, end: _Event | None) -> KafkaOperation:
    outcome = Outcome.INFO if end is None else _OUTCOMES[end.type]
    complete_index = None if end is None else end.number
    complete_time = None if end is None else end.time
    if invoke.f is KafkaFunction.SEND:
        send = invoke.send
        assert send is not None, invoke
        assert send.topic_partition is not None, invoke
        assert send.value is not None, invoke
        offset = None if end is None or end.send is None else end.send.offset
        assert (offset is not None) == (outcome is Outcome.OK), (offset, outcome)
        return Send(
            process=invoke.process,
            topic_partition=send.topic_partition,
            value=send.value,
            outcome=outcome,
            offset=offset,
            aborted=invoke.aborted or (end is not None and end.aborted),
            invoke_index=invoke.number,
            complete_index=complete_index,
            invoke_time=invoke.time,
            complete_time=complete_time,
        )
    if invoke.f is KafkaFunction.POLL:
        return Poll(
            process=invoke.process,
            outcome=outcome,
            records=() if end is None else end.records,
            rebalance=end is not None and end.rebalance,
            invoke_index=invoke.number,
            complete_index=complete_index,
            invoke_time=invoke.time,
            complete_time=complete_time,
        )
    kind: type[Assign | Seek | Commit] = Commit
    if invoke.f is KafkaFunction.ASSIGN:
        kind = Assign
    elif invoke.f is KafkaFunction.SEEK:
        kind = Seek
    return kind(
        process=invoke.process,
        outcome=outcome,
        positions=invoke.positions or (),
        invoke_index=invoke.number,
        complete_index=complete_index,
    )


def _field(raw: Mapping[object, object], name: str, where: str) -> object:
    if name not in raw:
        raise KafkaHistoryError(f"{where}: missing field '{name}'")
    return raw[name]


def _lookup(choices: Mapping[str, _C], raw: object) -> _C | None:
    return choices.get(raw) if type(raw) is str else None


def _choice(choices: Mapping[str, _C], raw: object, name: str, where: str) -> _C:
    if isinstance(raw, str):
        choice = choices.get(raw)
        if choice is not None:
            return choice
    allowed = ", ".join(choices)
    raise KafkaHistoryError(f"{where}: unknown {name} {_show(raw)} (expected one of: {allowed})")


def _flag(raw: Mapping[object, object], name: str, where: str, *, allowed: bool) -> bool:
    value = raw.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise KafkaHistoryError(f"{where}: '{name}' must be true or false, got {_show(value)}")
    if not allowed:
        where_allowed = "sends" if name == "aborted" else "poll completions"
        raise KafkaHistoryError(f"{where}: '{name}' only applies to {where_allowed}")
    return value


def _integer(value: object, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KafkaHistoryError(f"{where}: '{name}' must be an integer, got {_show(value)}")
    return value


def _offset(value: object, where: str) -> int:
    offset = _integer(value, "offset", where)
    if offset < 0:
        raise KafkaHistoryError(f"{where}: 'offset' must be >= 0, got {offset}")
    return offset


def _record_value(value: object, where: str) -> RecordValue:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise KafkaHistoryError(
        f"{where}: a record value must be a string or an integer, got {_show(value)}"
    )


def _same_value(a: RecordValue, b: RecordValue) -> bool:
    """``1`` and ``"1"`` are different values (no booleans get this far)."""
    return type(a) is type(b) and a == b

"""Random Kafka histories from a simulated correct broker, and planted delivery anomalies.

The broker keeps one dense log per partition. Producers send unique values; a send ends ``ok``
(appended, acknowledged at its offset), ``fail`` (not appended), ``info`` (appended or not: a
retry the idempotent producer deduplicated, or a request that never arrived), or never ends.
Some sends are transactional: a committed one is followed by an invisible transaction marker,
an aborted one is itself invisible (``"aborted": true``) and followed by a marker, so logs have
gaps that no consumer ever reads. Consumers assign themselves partitions (at offset 0, at an old
position or anywhere in the log), seek backwards and forwards, commit, and poll; a poll may
report a rebalance (new assignment) or end ``info`` (records consumed but not recorded) or
``fail`` (nothing consumed). Every history made here is free of delivery failures by
construction; `KafkaRun.stats` counts the cases it went through, so tests can require them.

Each ``plant_*`` function then breaks a copy of the events in exactly one way, as a faulty
broker or client would, and returns a `Planted` naming the partition and the evidence expected.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "KafkaRun",
    "Planted",
    "kafka_history",
    "plant_aborted_read",
    "plant_ack_mismatch",
    "plant_failed_send_read",
    "plant_inconsistent_offset",
    "plant_lost",
    "plant_nonmonotonic_poll",
    "plant_nonmonotonic_send",
    "plant_poll_skip",
]

Event = dict[str, object]
TP = tuple[str, int]


@dataclass(slots=True)
class _Slot:
    value: str | int | None
    """None: a transaction marker."""
    visible: bool


@dataclass(slots=True)
class _Consumer:
    positions: dict[TP, int] = field(default_factory=dict)
    """The assignment: partition -> next offset to read."""


@dataclass(slots=True)
class _Pending:
    f: str
    value: object


@dataclass(frozen=True, slots=True)
class Planted:
    """Where an anomaly was planted, and what the checker should say about it."""

    topic: str
    partition: int
    value: str | int | None
    offsets: tuple[int, ...]
    processes: tuple[int, ...] = ()
    """Processes the finding's evidence must include."""


@dataclass(slots=True)
class KafkaRun:
    """A generated history and what the generator did on the way."""

    events: list[Event] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    duplicated: Planted | None = None
    """With ``duplicate_once``: the record appended twice, and both its offsets."""


def kafka_history(
    rng: random.Random,
    *,
    operations: int,
    producers: int = 3,
    consumers: int = 3,
    topics: tuple[str, ...] = ("t", "u"),
    partitions: int = 2,
    info_percent: int = 4,
    fail_percent: int = 4,
    txn_percent: int = 10,
    duplicate_once: bool = False,
) -> KafkaRun:
    """Generate a history of ``operations`` invokes against a correct broker.

    Args:
        rng: the only source of randomness.
        txn_percent: chance that a send is transactional (two in five of those abort).
        duplicate_once: a broker fault: the first plain ok send after the log holds a few
            records is appended twice (the acknowledgement names the first copy), as a
            producer retry without idempotence would. Recorded in ``stats["duplicated"]``.

    Returns:
        Events (dicts, ready for JSON) and stats of what happened.
    """
    gen = _Generator(rng, topics=topics, partitions=partitions)
    gen.info_percent, gen.fail_percent, gen.txn_percent = info_percent, fail_percent, txn_percent
    gen.duplicate_once = duplicate_once
    process_ids = list(range(producers)) + [100 + c for c in range(consumers)]
    pending: dict[int, _Pending] = {}
    invoked = 0
    while invoked < operations or pending:
        process = rng.choice(process_ids)
        if process in pending:
            # Only at the end: a process with an operation outstanding cannot invoke another.
            if invoked == operations and rng.randrange(100) < info_percent:
                gen.abandon(process, pending.pop(process))
            else:
                gen.complete(process, pending.pop(process))
        elif invoked < operations:
            pending[process] = gen.invoke(process, is_producer=process < 100)
            invoked += 1
    return gen.run


class _Generator:
    def __init__(self, rng: random.Random, *, topics: tuple[str, ...], partitions: int) -> None:
        self.rng = rng
        self.run = KafkaRun()
        self.tps: list[TP] = [(t, p) for t in topics for p in range(partitions)]
        self.logs: dict[TP, list[_Slot]] = {tp: [] for tp in self.tps}
        self.consumers: dict[int, _Consumer] = {}
        self.sent = 0
        self.info_percent = self.fail_percent = self.txn_percent = 0
        self.duplicate_once = False

    def emit(self, process: int, type_: str, f: str, value: object = None, **extra: object) -> None:
        event: Event = {"process": process, "type": type_, "f": f, "time": len(self.run.events)}
        if value is not None:
            event["value"] = value
        event.update(extra)
        self.run.events.append(event)

    # -- invokes -------------------------------------------------------------------------------

    def invoke(self, process: int, *, is_producer: bool) -> _Pending:
        if is_producer:
            return self.invoke_send(process)
        consumer = self.consumers.setdefault(process, _Consumer())
        roll = self.rng.randrange(100)
        if not consumer.positions or roll < 6:
            value: object = [{"topic": t, "partition": p} for t, p in self.new_assignment()]
            self.emit(process, "invoke", "assign", value)
            return _Pending("assign", value)
        if roll < 14:
            return self.invoke_seek(process, consumer)
        if roll < 18:
            value = [
                {"topic": t, "partition": p, "offset": o}
                for (t, p), o in consumer.positions.items()
            ]
            self.emit(process, "invoke", "commit", value)
            return _Pending("commit", value)
        self.emit(process, "invoke", "poll")
        return _Pending("poll", None)

    def invoke_send(self, process: int) -> _Pending:
        topic, partition = self.rng.choice(self.tps)
        self.sent += 1
        # Integer values on the second topic: the format allows both kinds.
        record_value: str | int = (
            f"{process}-{self.sent}" if topic == self.tps[0][0] else 1000 * self.sent + process
        )
        value = {"topic": topic, "partition": partition, "value": record_value}
        self.emit(process, "invoke", "send", value)
        return _Pending("send", value)

    def invoke_seek(self, process: int, consumer: _Consumer) -> _Pending:
        tp = self.rng.choice(sorted(consumer.positions))
        if self.rng.randrange(5) == 0:
            target = 0
            value: dict[str, object] = {"topic": tp[0], "partition": tp[1]}
        else:
            target = self.rng.randint(0, len(self.logs[tp]))
            value = {"topic": tp[0], "partition": tp[1], "offset": target}
        before = consumer.positions[tp]
        self.run.stats["backward seek" if target < before else "forward seek"] += 1
        consumer.positions[tp] = target
        self.emit(process, "invoke", "seek", value)
        return _Pending("seek", value)

    def new_assignment(self) -> list[TP]:
        count = self.rng.randint(1, len(self.tps))
        return sorted(self.rng.sample(self.tps, count))

    # -- completions ---------------------------------------------------------------------------

    def complete(self, process: int, pending: _Pending) -> None:
        if pending.f == "send":
            self.complete_send(process, pending)
        elif pending.f == "poll":
            self.complete_poll(process)
        else:
            if pending.f == "assign":
                self.assign(process, pending.value)
            self.emit(process, "ok", pending.f)

    def abandon(self, process: int, pending: _Pending) -> None:
        """Leave an operation with no completion; a send may still land."""
        if pending.f == "send" and self.rng.randrange(2) == 0:
            self.append(pending, visible=True)
        if pending.f == "assign":
            self.assign(process, pending.value)
        self.run.stats[f"{pending.f} never completed"] += 1

    def assign(self, process: int, value: object) -> None:
        assert isinstance(value, list)
        consumer = self.consumers[process]
        old = consumer.positions
        consumer.positions = {}
        for item in value:
            tp = (item["topic"], item["partition"])
            choice = self.rng.randrange(3)
            if choice == 0 and tp in old:
                consumer.positions[tp] = old[tp]
            elif choice == 1:
                consumer.positions[tp] = self.rng.randint(0, len(self.logs[tp]))
            else:
                consumer.positions[tp] = 0
        self.run.stats["assign"] += 1

    def append(self, pending: _Pending, *, visible: bool) -> int:
        assert isinstance(pending.value, dict)
        tp = (pending.value["topic"], pending.value["partition"])
        log = self.logs[tp]
        log.append(_Slot(pending.value["value"], visible))
        return len(log) - 1

    def complete_send(self, process: int, pending: _Pending) -> None:
        assert isinstance(pending.value, dict)
        roll = self.rng.randrange(100)
        if roll < self.fail_percent:
            self.run.stats["failed send"] += 1
            self.emit(process, "fail", "send", error="NOT_LEADER_OR_FOLLOWER")
            return
        if roll < self.fail_percent + self.info_percent:
            landed = self.rng.randrange(2) == 0
            if landed:
                self.append(pending, visible=True)
            self.run.stats["info send landed" if landed else "info send lost"] += 1
            self.emit(process, "info", "send", error="REQUEST_TIMED_OUT")
            return
        tp = (pending.value["topic"], pending.value["partition"])
        if self.rng.randrange(100) < self.txn_percent:
            aborted = self.rng.randrange(5) < 2
            offset = self.append(pending, visible=not aborted)
            self.logs[tp].append(_Slot(None, visible=False))
            self.run.stats["aborted send" if aborted else "committed send"] += 1
            extra = {"aborted": True} if aborted else {}
            self.emit(process, "ok", "send", {**pending.value, "offset": offset}, **extra)
            return
        offset = self.append(pending, visible=True)
        if self.duplicate_once and self.run.duplicated is None and offset >= 3:
            again = self.append(pending, visible=True)
            value = pending.value["value"]
            self.run.duplicated = Planted(tp[0], tp[1], value, (offset, again), (process,))
        self.emit(process, "ok", "send", {"offset": offset})

    def complete_poll(self, process: int) -> None:
        consumer = self.consumers[process]
        roll = self.rng.randrange(100)
        if roll < self.fail_percent:
            self.emit(process, "fail", "poll")
            return
        extra: dict[str, object] = {}
        if roll < self.fail_percent + 3:
            new = [{"topic": t, "partition": p} for t, p in self.new_assignment()]
            self.assign(process, new)
            self.run.stats["rebalance"] += 1
            extra["rebalance"] = True
        records = list(self.consume(consumer))
        if self.rng.randrange(100) < self.info_percent:
            self.run.stats["info poll"] += 1
            self.emit(process, "info", "poll", **extra)
            return
        self.emit(process, "ok", "poll", records, **extra)

    def consume(self, consumer: _Consumer) -> Iterator[Event]:
        tps = list(consumer.positions)
        self.rng.shuffle(tps)
        for tp in tps:
            log = self.logs[tp]
            budget = self.rng.randint(0, 6)
            position = consumer.positions[tp]
            while position < len(log) and budget:
                slot = log[position]
                if slot.visible:
                    yield {
                        "topic": tp[0],
                        "partition": tp[1],
                        "offset": position,
                        "value": slot.value,
                    }
                    budget -= 1
                else:
                    self.run.stats["gap passed"] += 1
                position += 1
            consumer.positions[tp] = position


# -- planting ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Read:
    event: int
    """Index of the poll completion in the events."""
    position: int
    """Index of the record in that poll's value."""
    process: int
    tp: TP
    offset: int
    value: object


def _records(events: list[Event]) -> list[_Read]:
    reads = []
    for n, event in enumerate(events):
        if event["f"] == "poll" and event["type"] == "ok":
            assert isinstance(event["value"], list)
            for k, r in enumerate(event["value"]):
                tp = (r["topic"], r["partition"])
                reads.append(_Read(n, k, _int(event["process"]), tp, r["offset"], r["value"]))
    return reads


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


@dataclass(frozen=True, slots=True)
class _Ack:
    invoke: int
    complete: int
    process: int
    tp: TP
    value: object
    offset: int
    aborted: bool


def _acks(events: list[Event]) -> list[_Ack]:
    open_sends: dict[object, int] = {}
    acks = []
    for n, event in enumerate(events):
        if event["f"] != "send":
            continue
        if event["type"] == "invoke":
            open_sends[event["process"]] = n
            continue
        invoke = open_sends.pop(event["process"])
        if event["type"] == "ok":
            value = events[invoke]["value"]
            assert isinstance(value, dict)
            done = event["value"]
            assert isinstance(done, dict)
            acks.append(
                _Ack(
                    invoke=invoke,
                    complete=n,
                    process=_int(event["process"]),
                    tp=(value["topic"], value["partition"]),
                    value=value["value"],
                    offset=done["offset"],
                    aborted=bool(event.get("aborted")),
                )
            )
    return acks


def _continuous(events: list[Event]) -> list[tuple[_Read, _Read, _Read]]:
    """Triples of one consumer's successive records of a partition (previous, this, next) read
    with no assign, seek, rebalance or info poll in between: where the checker compares."""
    last: dict[int, dict[TP, list[_Read]]] = {}
    by_event: dict[int, list[_Read]] = {}
    for read in _records(events):
        by_event.setdefault(read.event, []).append(read)
    triples = []
    for n, event in enumerate(events):
        process = _int(event["process"])
        mine = last.setdefault(process, {})
        reset = (
            event["f"] == "assign"
            or (event["f"] == "poll" and event["type"] == "info")
            or event.get("rebalance")
        )
        if reset:
            mine.clear()
        if event["f"] == "seek" and event["type"] == "invoke":
            value = event["value"]
            assert isinstance(value, dict)
            mine.pop((value["topic"], value["partition"]), None)
        for read in by_event.get(n, ()):
            run = mine.setdefault(read.tp, [])
            run.append(read)
            if len(run) >= 3:
                triples.append((run[-3], run[-2], run[-1]))
    return triples


def _readers(events: list[Event]) -> dict[tuple[TP, int], set[int]]:
    readers: dict[tuple[TP, int], set[int]] = {}
    for read in _records(events):
        readers.setdefault((read.tp, read.offset), set()).add(read.process)
    return readers


def _poll_value(events: list[Event], n: int) -> list[Event]:
    value = events[n]["value"]
    assert isinstance(value, list)
    return value


def plant_lost(rng: random.Random, events: list[Event]) -> tuple[list[Event], Planted]:
    """A record acknowledged, then gone: no consumer ever returns it, though one of them reads
    straight across its offset."""
    reads = _records(events)
    crossed = {(middle.tp, middle.value) for _, middle, _ in _continuous(events)}
    candidates = [
        ack for ack in _acks(events) if not ack.aborted and (ack.tp, ack.value) in crossed
    ]
    ack = rng.choice(candidates)
    out = copy.deepcopy(events)
    for read in reversed(reads):
        if read.tp == ack.tp and read.value == ack.value:
            del _poll_value(out, read.event)[read.position]
    return out, Planted(ack.tp[0], ack.tp[1], ack.value, (ack.offset,), (ack.process,))


def plant_inconsistent_offset(
    rng: random.Random, events: list[Event]
) -> tuple[list[Event], Planted]:
    """One consumer sees a different value at an offset others agree on."""
    readers = _readers(events)
    shared = [r for r in _records(events) if len(readers[(r.tp, r.offset)]) >= 2]
    read = rng.choice(shared)
    out = copy.deepcopy(events)
    # A fresh value: the checker will also list it as unsent-read (information).
    other = f"garbage-{read.offset}" if isinstance(read.value, str) else -1 - read.offset
    _poll_value(out, read.event)[read.position]["value"] = other
    planted = Planted(read.tp[0], read.tp[1], None, (read.offset,), (read.process,))
    return out, planted


def plant_ack_mismatch(rng: random.Random, events: list[Event]) -> tuple[list[Event], Planted]:
    """A send that consumers read at one offset was acknowledged at another, one that nothing
    else uses and that keeps its producer's acknowledgements increasing."""
    acks = _acks(events)
    reads = _records(events)
    read_values = {(read.tp, read.value) for read in reads}
    used = {(ack.tp, ack.offset) for ack in acks} | {(read.tp, read.offset) for read in reads}
    by_producer: dict[tuple[int, TP], list[_Ack]] = {}
    for ack in acks:
        by_producer.setdefault((ack.process, ack.tp), []).append(ack)
    candidates = []
    for mine in by_producer.values():
        for n, ack in enumerate(mine):
            if (ack.tp, ack.value) not in read_values or ack.aborted:
                continue
            low = mine[n - 1].offset if n else -1
            high = mine[n + 1].offset if n + 1 < len(mine) else 1_000_000 + ack.offset + 1
            candidates += [
                (ack, o) for o in range(low + 1, min(high, low + 1000)) if (ack.tp, o) not in used
            ]
            if high > 1_000_000:
                candidates.append((ack, high - 1))
    ack, wrong = rng.choice(candidates)
    out = copy.deepcopy(events)
    done = out[ack.complete]["value"]
    assert isinstance(done, dict)
    done["offset"] = wrong
    return out, Planted(ack.tp[0], ack.tp[1], ack.value, (wrong, ack.offset), (ack.process,))


def plant_poll_skip(rng: random.Random, events: list[Event]) -> tuple[list[Event], Planted]:
    """A consumer's poll leaves out one record that another consumer read."""
    readers = _readers(events)
    candidates = [
        middle
        for _, middle, _ in _continuous(events)
        if len(readers[(middle.tp, middle.offset)]) >= 2
    ]
    read = rng.choice(candidates)
    out = copy.deepcopy(events)
    del _poll_value(out, read.event)[read.position]
    return out, Planted(read.tp[0], read.tp[1], None, (read.offset,), (read.process,))


def plant_nonmonotonic_poll(rng: random.Random, events: list[Event]) -> tuple[list[Event], Planted]:
    """Right after a record, a consumer gets the previous record again, then this one again,
    and goes on: a rewind by one record without a seek."""
    previous, read, _ = rng.choice(_continuous(events))
    out = copy.deepcopy(events)
    records = _poll_value(out, read.event)
    again = [
        {
            "topic": previous.tp[0],
            "partition": previous.tp[1],
            "offset": previous.offset,
            "value": previous.value,
        },
        dict(records[read.position]),
    ]
    records[read.position + 1 : read.position + 1] = again
    planted = Planted(read.tp[0], read.tp[1], None, (read.offset, previous.offset), (read.process,))
    return out, planted


def plant_nonmonotonic_send(rng: random.Random, events: list[Event]) -> tuple[list[Event], Planted]:
    """Two successive sends of one producer to one partition land in the opposite order: the
    acknowledgements and every consumer agree on it."""
    previous: dict[tuple[int, TP], _Ack] = {}
    pairs = []
    for ack in _acks(events):
        key = (ack.process, ack.tp)
        if key in previous and not ack.aborted and not previous[key].aborted:
            pairs.append((previous[key], ack))
        previous[key] = ack
    first, second = rng.choice(pairs)
    out = copy.deepcopy(events)
    for ack, offset in ((first, second.offset), (second, first.offset)):
        done = out[ack.complete]["value"]
        assert isinstance(done, dict)
        done["offset"] = offset
    swap = {first.offset: second.value, second.offset: first.value}
    for read in _records(events):
        if read.tp == first.tp and read.offset in swap:
            _poll_value(out, read.event)[read.position]["value"] = swap[read.offset]
    planted = Planted(
        first.tp[0], first.tp[1], None, (second.offset, first.offset), (first.process,)
    )
    return out, planted


def _read_ack(rng: random.Random, events: list[Event]) -> _Ack:
    read_values = {(read.tp, read.value) for read in _records(events)}
    return rng.choice(
        [a for a in _acks(events) if (a.tp, a.value) in read_values and not a.aborted]
    )


def plant_aborted_read(rng: random.Random, events: list[Event]) -> tuple[list[Event], Planted]:
    """A send that consumers read turns out to belong to an aborted transaction."""
    ack = _read_ack(rng, events)
    out = copy.deepcopy(events)
    out[ack.complete]["aborted"] = True
    return out, Planted(ack.tp[0], ack.tp[1], ack.value, (ack.offset,), (ack.process,))


def plant_failed_send_read(rng: random.Random, events: list[Event]) -> tuple[list[Event], Planted]:
    """A send that consumers read was reported failed to its producer."""
    ack = _read_ack(rng, events)
    out = copy.deepcopy(events)
    out[ack.complete] = {
        "process": ack.process,
        "type": "fail",
        "f": "send",
        "time": out[ack.complete]["time"],
    }
    return out, Planted(ack.tp[0], ack.tp[1], ack.value, (ack.offset,), (ack.process,))

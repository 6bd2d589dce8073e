"""Kafka delivery: did every acknowledged record reach the consumers, once, in order, at one offset?

`check_delivery` judges a `KafkaHistory` (format in `quorumdb.check.kafka_history`) partition by
partition, in the spirit of Jepsen's Kafka workload (``jepsen.tests.kafka``). Records are known by
their value, which the format makes unique per partition. Every anomaly is a `Finding` carrying
its evidence: `Sighting`\\ s, each one observation of a value at an offset, either a send's
acknowledgement or a record a poll returned.

Anomalies (failures)
--------------------
``lost``
    An ``ok`` send, not aborted, acknowledged at offset *o*, whose value no poll ever returned,
    although a consumer went over *o*: it read another value at *o*, or its successive records
    of the partition were at *a* < *o* and then *b* > *o* with no assign, seek, rebalance or
    ``info`` poll of that process in between. It should have seen the record. Evidence: the
    acknowledgement, and the witness's record at *o*, or its records at *a* and *b*.
    (Jepsen's rule, "some consumer read at or past *o*", would also blame records that
    consumers jumped over by seeking forward, or by starting at a committed offset.)
``duplicate``
    One value read at two or more different offsets (by any consumers). Evidence: the first
    read at each offset, and the acknowledgement if there is one.
``inconsistent-offset``
    Two different values at one offset, as seen by any consumers or acknowledged to any
    producers (``value`` is None, ``offsets`` is that offset). Also: a send acknowledged at *o*
    whose value was read, but never at *o* (``value`` is the value, ``offsets`` starts with *o*,
    then the offsets it was read at).
``poll-skip``
    A consumer's successive records of a partition jump from offset *a* to *b* > *a* + 1, with
    no assign, seek, rebalance or ``info`` poll of that process in between, while some record
    between *a* and *b* is known to exist: another consumer read it (and it is not itself an
    aborted read). ``offsets`` are the known offsets skipped. A gap over offsets nobody read is
    not a skip: transaction markers, aborted records and compacted ones leave such gaps. An
    acknowledged record nobody read in such a gap is reported once, as ``lost``, not again per
    consumer that passed it.
``nonmonotonic-poll``
    A consumer's successive records of a partition go from offset *a* to *b* <= *a* with no
    assign, seek, rebalance or ``info`` poll in between (re-reading one offset counts). Each pair
    is judged alone, as Jepsen does: a rewind to *a* - 5 is one finding, not one per record
    re-read after it. ``offsets`` is ``(a, b)``.
``nonmonotonic-send``
    A process's successive acknowledged sends to a partition get offsets *a* then *b* <= *a*;
    ``offsets`` is ``(a, b)``. (Its later send started after the earlier one was acknowledged,
    so it must land later in the log.)
``aborted-read``
    A poll returned a value whose send is certainly not in the log: it failed, or it is marked
    ``aborted``. Evidence: the send, and the first read by each consumer that saw it.

Information (not failures)
--------------------------
``unread``
    An ``ok`` send, not aborted, whose value was never read, and that no consumer went over:
    they never got that far, or jumped past it by a seek, an assign or a rebalance. Not a
    loss, only not checked.
``unsent-read``
    A value read that no send in the history sent to that partition: the history may not record
    every producer. (A send ``info`` or never completed may or may not have landed, so reading
    it, or never reading it, is fine either way.)

Each kind is computed in one pass or with a binary search per item (dictionaries keyed by
offset and by value, sorted offset lists), so a history costs time linear in its records.

NB: the checker assumes no retention or compaction removed records while the run went on: a
record one consumer read and another consumer later jumped over after it was deleted would be
reported as a poll skip.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from quorumdb.check._gc import paused_gc
from quorumdb.check.history import Outcome
from quorumdb.check.kafka_history import (
    Assign,
    KafkaHistory,
    Poll,
    RecordValue,
    Seek,
    Send,
    TopicPartition,
)

__all__ = [
    "AnomalyKind",
    "DeliveryResult",
    "Finding",
    "PartitionResult",
    "Sighting",
    "SightingSource",
    "check_delivery",
]

SKIPPED_SIGHTINGS_MAX = 8
"""A poll skip's evidence shows the first records skipped, at most this many."""


class AnomalyKind(StrEnum):
    """What a finding says went wrong (or, for two kinds, is only worth knowing)."""

    LOST = "lost"
    DUPLICATE = "duplicate"
    INCONSISTENT_OFFSET = "inconsistent-offset"
    POLL_SKIP = "poll-skip"
    NONMONOTONIC_POLL = "nonmonotonic-poll"
    NONMONOTONIC_SEND = "nonmonotonic-send"
    ABORTED_READ = "aborted-read"
    UNREAD = "unread"
    UNSENT_READ = "unsent-read"

    @property
    def is_failure(self) -> bool:
        return self not in _INFORMATION


_INFORMATION = frozenset({AnomalyKind.UNREAD, AnomalyKind.UNSENT_READ})
_KIND_ORDER = {kind: n for n, kind in enumerate(AnomalyKind)}


class SightingSource(StrEnum):
    SEND = "send"
    """A send operation: its acknowledgement (``offset`` set), or its failure or unknown end."""
    POLL = "poll"
    """A record a poll returned."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Sighting:
    """One observation of a value, the evidence a finding rests on."""

    source: SightingSource
    value: RecordValue
    offset: int | None
    """None only for a send with no acknowledged offset."""
    process: int
    event_index: int
    """The event that shows it, from 0: the poll's or the send's completion (the send's invoke
    if it never completed)."""
    outcome: Outcome | None = None
    """A send's outcome; None for a poll's record."""
    aborted: bool = False
    """A send marked aborted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One anomaly on one partition; the module docstring says what each kind's fields hold."""

    kind: AnomalyKind
    topic_partition: TopicPartition
    value: RecordValue | None
    """The record the finding is about; None when it is about offsets (inconsistent values at
    one offset, skips, non-monotonic polls)."""
    offsets: tuple[int, ...]
    sightings: tuple[Sighting, ...]

    @property
    def processes(self) -> tuple[int, ...]:
        """The processes in the evidence, sorted."""
        return tuple(sorted({s.process for s in self.sightings}))

    @property
    def event_indexes(self) -> tuple[int, ...]:
        """The events in the evidence, sorted (from 0)."""
        return tuple(sorted({s.event_index for s in self.sightings}))


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionResult:
    """Findings and counts for one partition."""

    topic_partition: TopicPartition
    findings: tuple[Finding, ...]
    """By kind (in `AnomalyKind` order), then by offsets."""
    sent: int
    """Send operations, whatever their outcome."""
    acked: int
    failed: int
    indeterminate: int
    """Sends that ended ``info`` or never completed: they may or may not have landed."""
    aborted: int
    records_read: int
    """Records returned by polls, counting each time a record was returned."""
    values_read: int
    """Distinct values read."""
    max_offset_read: int | None

    @property
    def ok(self) -> bool:
        return not any(f.kind.is_failure for f in self.findings)

    def count(self, kind: AnomalyKind) -> int:
        return sum(1 for f in self.findings if f.kind is kind)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryResult:
    """The verdict on a whole history: ok when no partition has a failure."""

    partitions: tuple[PartitionResult, ...]
    """Every partition sent to or read from, sorted."""
    event_count: int
    operation_count: int

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.partitions)

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for p in self.partitions for f in p.findings)

    @property
    def failures(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind.is_failure)

    def counts(self) -> dict[AnomalyKind, int]:
        """Findings per kind, kinds with none left out, in `AnomalyKind` order."""
        counts = dict.fromkeys(AnomalyKind, 0)
        for finding in self.findings:
            counts[finding.kind] += 1
        return {kind: n for kind, n in counts.items() if n}

    @property
    def sent(self) -> int:
        return sum(p.sent for p in self.partitions)

    @property
    def acked(self) -> int:
        return sum(p.acked for p in self.partitions)

    @property
    def records_read(self) -> int:
        return sum(p.records_read for p in self.partitions)


def check_delivery(history: KafkaHistory) -> DeliveryResult:
    """Check a Kafka history for lost, duplicated, inconsistent, skipped and reordered records.

    Args:
        history: a validated history (`parse_kafka_history`, `kafka_history_from_events`).

    Returns:
        Per partition (sorted), every finding with its evidence, and counts; ``ok`` is False
        when any finding is a failure (`AnomalyKind.is_failure`).
    """
    with paused_gc():
        return _check(history)


def _check(history: KafkaHistory) -> DeliveryResult:
    partitions: dict[TopicPartition, _Partition] = {}
    consumers: dict[int, _Consumer] = {}
    for op in history.operations:
        if isinstance(op, Send):
            _partition(partitions, op.topic_partition).add_send(op)
    for op in history.operations:
        if isinstance(op, Poll):
            consumer = consumers.setdefault(op.process, _Consumer(op.process))
            consumer.poll(op, partitions)
        elif isinstance(op, Assign):
            consumers.setdefault(op.process, _Consumer(op.process)).forget_all()
        elif isinstance(op, Seek):
            consumer = consumers.setdefault(op.process, _Consumer(op.process))
            consumer.forget(position.topic_partition for position in op.positions)
    results = tuple(partitions[tp].result() for tp in sorted(partitions))
    return DeliveryResult(
        partitions=results,
        event_count=history.event_count,
        operation_count=len(history.operations),
    )


def _partition(partitions: dict[TopicPartition, _Partition], tp: TopicPartition) -> _Partition:
    partition = partitions.get(tp)
    if partition is None:
        partition = partitions[tp] = _Partition(tp)
    return partition


# (offset, value, process, event index): one record as one consumer read it. Plain tuples: the
# checker keeps one per distinct offset and value, and one per consumer per partition.
_Read = tuple[int, RecordValue, int, int]


class _Consumer:
    """One process's position per partition: the last record it read, None when unknown."""

    __slots__ = ("_last", "_process")

    def __init__(self, process: int) -> None:
        self._process = process
        self._last: dict[TopicPartition, _Read] = {}

    def forget_all(self) -> None:
        self._last.clear()

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._last.pop(tp, None)

    def poll(self, poll: Poll, partitions: dict[TopicPartition, _Partition]) -> None:
        if poll.rebalance or poll.outcome is Outcome.INFO:
            # Positions moved in ways the history does not show (a rebalance resumes from
            # committed offsets; an info poll may have consumed unrecorded records).
            self._last.clear()
        if not poll.records:
            return
        assert poll.complete_index is not None, poll
        event = poll.complete_index
        process = self._process
        last = self._last
        # The hot loop of the checker: once per record returned. Polls return records grouped
        # by partition, so the partition looked up last time is usually the right one.
        partition_tp: TopicPartition | None = None
        partition = None
        for tp, offset, value in poll.records:
            read = (offset, value, process, event)
            if tp is not partition_tp:
                partition, partition_tp = _partition(partitions, tp), tp
            assert partition is not None
            partition.add_read(read)
            previous = last.get(tp)
            if previous is not None and offset != previous[0] + 1:
                partition.add_step(previous, read)
            last[tp] = read


class _Partition:
    """Everything seen of one partition, then the findings derived from it."""

    __slots__ = (
        "_acked_at",
        "_first_offset_of",
        "_first_read_at",
        "_gaps",
        "_invisible",
        "_invisible_reads",
        "_last_ack",
        "_other_offsets_of",
        "_other_values_at",
        "_records_read",
        "_sends",
        "findings",
        "tp",
    )

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.findings: list[Finding] = []
        self._sends: dict[RecordValue, Send] = {}
        self._acked_at: dict[int, list[Send]] = {}
        self._last_ack: dict[int, Send] = {}
        self._records_read = 0
        # offset -> the first record read there; other values at that offset, first read each.
        self._first_read_at: dict[int, _Read] = {}
        self._other_values_at: dict[int, dict[RecordValue, _Read]] = {}
        # value -> the first record read with it; other offsets it was read at, first read each.
        self._first_offset_of: dict[RecordValue, _Read] = {}
        self._other_offsets_of: dict[RecordValue, dict[int, _Read]] = {}
        # Successive reads of one consumer that jump forward, judged once all reads are known.
        self._gaps: list[tuple[_Read, _Read]] = []
        # Values of sends that failed or aborted; for each, process -> its first read of it.
        self._invisible: set[RecordValue] = set()
        self._invisible_reads: dict[RecordValue, dict[int, _Read]] = {}

    def add_send(self, send: Send) -> None:
        assert send.topic_partition == self.tp, (send, self.tp)
        assert send.value not in self._sends, send
        self._sends[send.value] = send
        if not send.may_be_visible:
            self._invisible.add(send.value)
        if send.offset is None:
            return
        self._acked_at.setdefault(send.offset, []).append(send)
        previous = self._last_ack.get(send.process)
        if previous is not None:
            assert previous.offset is not None, previous
            if send.offset <= previous.offset:
                self._add(
                    AnomalyKind.NONMONOTONIC_SEND,
                    None,
                    (previous.offset, send.offset),
                    [_send_sighting(previous), _send_sighting(send)],
                )
        self._last_ack[send.process] = send

    def add_read(self, read: _Read) -> None:
        """Called after every `add_send`: a read's send, if any, is known by then."""
        offset, value, process, _ = read
        self._records_read += 1
        if value in self._invisible:
            self._invisible_reads.setdefault(value, {}).setdefault(process, read)
        first = self._first_read_at.setdefault(offset, read)
        if first is not read and first[1] != value:
            self._other_values_at.setdefault(offset, {}).setdefault(value, read)
        first = self._first_offset_of.setdefault(value, read)
        if first is not read and first[0] != offset:
            self._other_offsets_of.setdefault(value, {}).setdefault(offset, read)

    def add_step(self, previous: _Read, read: _Read) -> None:
        """A consumer read ``read`` right after ``previous``, and not at the next offset."""
        if read[0] > previous[0]:
            self._gaps.append((previous, read))
        else:
            self._add(
                AnomalyKind.NONMONOTONIC_POLL,
                None,
                (previous[0], read[0]),
                [_poll_sighting(previous), _poll_sighting(read)],
            )

    def result(self) -> PartitionResult:
        read_offsets = sorted(self._first_read_at)
        self._find_lost()
        self._find_duplicates()
        self._find_inconsistent_offsets()
        self._find_skips(read_offsets)
        self._find_invisible_reads()
        sends = self._sends.values()
        self.findings.sort(key=lambda f: (_KIND_ORDER[f.kind], f.offsets, f.event_indexes))
        return PartitionResult(
            topic_partition=self.tp,
            findings=tuple(self.findings),
            sent=len(sends),
            acked=sum(1 for s in sends if s.outcome is Outcome.OK),
            failed=sum(1 for s in sends if s.outcome is Outcome.FAIL),
            indeterminate=sum(1 for s in sends if s.outcome is Outcome.INFO),
            aborted=sum(1 for s in sends if s.aborted),
            records_read=self._records_read,
            values_read=len(self._first_offset_of),
            max_offset_read=read_offsets[-1] if read_offsets else None,
        )

    def _add(
        self,
        kind: AnomalyKind,
        value: RecordValue | None,
        offsets: tuple[int, ...],
        sightings: list[Sighting],
    ) -> None:
        assert sightings, kind
        self.findings.append(
            Finding(
                kind=kind,
                topic_partition=self.tp,
                value=value,
                offsets=offsets,
                sightings=tuple(sightings),
            )
        )

    def _find_lost(self) -> None:
        unread = [
            send
            for send in self._sends.values()
            if send.offset is not None
            and not send.aborted
            and send.value not in self._first_offset_of
        ]
        unread.sort(key=lambda send: (send.offset, send.last_index))
        if not unread:
            return
        # For each gap start, the gap reaching furthest among those starting there or before:
        # an offset o lies inside some gap iff that one for the last start below o passes it.
        gaps = sorted(self._gaps, key=lambda gap: gap[0][0])
        starts = [previous[0] for previous, _ in gaps]
        furthest: list[tuple[_Read, _Read]] = []
        for gap in gaps:
            if not furthest or gap[1][0] > furthest[-1][1][0]:
                furthest.append(gap)
            else:
                furthest.append(furthest[-1])
        for send in unread:
            offset = send.offset
            assert offset is not None, send
            witness = self._first_read_at.get(offset)
            if witness is not None:
                self._add_lost(send, [witness])
                continue
            at = bisect_left(starts, offset) - 1
            if at >= 0 and furthest[at][1][0] > offset:
                self._add_lost(send, list(furthest[at]))
            else:
                self._add(AnomalyKind.UNREAD, send.value, (offset,), [_send_sighting(send)])

    def _add_lost(self, send: Send, witness: list[_Read]) -> None:
        assert send.offset is not None, send
        sightings = [_send_sighting(send), *(_poll_sighting(read) for read in witness)]
        self._add(AnomalyKind.LOST, send.value, (send.offset,), sightings)

    def _reads_of(self, value: RecordValue) -> list[_Read]:
        """The first read of ``value`` at each offset it was read at, by offset."""
        first = self._first_offset_of[value]
        others = self._other_offsets_of.get(value, {})
        return sorted([first, *others.values()])

    def _find_duplicates(self) -> None:
        for value in self._other_offsets_of:
            reads = self._reads_of(value)
            assert len(reads) > 1, reads
            send = self._sends.get(value)
            sightings = [_poll_sighting(read) for read in reads]
            if send is not None and send.offset is not None:
                sightings.insert(0, _send_sighting(send))
            offsets = tuple(read[0] for read in reads)
            self._add(AnomalyKind.DUPLICATE, value, offsets, sightings)

    def _find_inconsistent_offsets(self) -> None:
        for offset in sorted(self._acked_at.keys() | self._other_values_at.keys()):
            if self._agrees(offset):
                continue
            seen: dict[RecordValue, Sighting] = {}
            for send in self._acked_at.get(offset, ()):
                seen.setdefault(send.value, _send_sighting(send))
            first = self._first_read_at.get(offset)
            reads = [] if first is None else [first]
            reads += self._other_values_at.get(offset, {}).values()
            for read in reads:
                seen.setdefault(read[1], _poll_sighting(read))
            if len(seen) > 1:
                self._add(AnomalyKind.INCONSISTENT_OFFSET, None, (offset,), list(seen.values()))
        for send in self._sends.values():
            first = self._first_offset_of.get(send.value)
            if send.offset is None or first is None or first[0] == send.offset:
                continue
            reads = self._reads_of(send.value)
            if all(read[0] != send.offset for read in reads):
                offsets = (send.offset, *(read[0] for read in reads))
                sightings = [_send_sighting(send), *(_poll_sighting(read) for read in reads)]
                self._add(AnomalyKind.INCONSISTENT_OFFSET, send.value, offsets, sightings)

    def _agrees(self, offset: int) -> bool:
        """The common case, cheaply: one value at ``offset``, however many saw it."""
        if offset in self._other_values_at:
            return False
        acks = self._acked_at.get(offset, ())
        if len(acks) > 1:
            return False
        first = self._first_read_at.get(offset)
        return not acks or first is None or first[1] == acks[0].value

    def _is_visible(self, value: RecordValue) -> bool:
        send = self._sends.get(value)
        return send is None or send.may_be_visible

    def _find_skips(self, read_offsets: list[int]) -> None:
        if not self._gaps:
            return
        known = [o for o in read_offsets if self._exists(o)]
        for previous, read in self._gaps:
            low = bisect_right(known, previous[0])
            high = bisect_left(known, read[0])
            if low == high:
                continue
            skipped = known[low:high]
            sightings = [_poll_sighting(previous), _poll_sighting(read)]
            sightings += [
                _poll_sighting(self._first_read_at[o]) for o in skipped[:SKIPPED_SIGHTINGS_MAX]
            ]
            self._add(AnomalyKind.POLL_SKIP, None, tuple(skipped), sightings)

    def _exists(self, offset: int) -> bool:
        """Some consumer read a record at ``offset`` that may rightly be there."""
        if self._is_visible(self._first_read_at[offset][1]):
            return True
        return any(self._is_visible(v) for v in self._other_values_at.get(offset, {}))

    def _find_invisible_reads(self) -> None:
        for value, first in self._first_offset_of.items():
            if value not in self._sends:
                self._add(AnomalyKind.UNSENT_READ, value, (first[0],), [_poll_sighting(first)])
        for value, by_process in self._invisible_reads.items():
            send = self._sends[value]
            reads = sorted(by_process.values(), key=lambda read: read[3])
            offsets = tuple(sorted({read[0] for read in reads}))
            sightings = [_send_sighting(send), *(_poll_sighting(read) for read in reads)]
            self._add(AnomalyKind.ABORTED_READ, value, offsets, sightings)


def _send_sighting(send: Send) -> Sighting:
    return Sighting(
        source=SightingSource.SEND,
        value=send.value,
        offset=send.offset,
        process=send.process,
        event_index=send.last_index,
        outcome=send.outcome,
        aborted=send.aborted,
    )


def _poll_sighting(read: _Read) -> Sighting:
    offset, value, process, event = read
    return Sighting(
        source=SightingSource.POLL, value=value, offset=offset, process=process, event_index=event
    )

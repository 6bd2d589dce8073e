"""Kafka evidence for the report: which offsets a finding is about, and who saw each offset.

A Kafka finding (lost, duplicate, poll-skip, ...) is about offsets of one partition; the
report links each to a row listing the acknowledged sends and the polls that saw that
offset, each linked in turn to its event. Read from the events alone (the shapes of
`quorumdb.check.kafka_history`), with the finding's own fields where the workload recorded
them (``topic``/``partition``, ``offsets``, ``value``, ``sightings``), so it works whatever
subset of those a workload chooses to keep. Malformed events are skipped: the checker
already judged them, this only points at them. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

__all__ = [
    "OffsetIndex",
    "OffsetRef",
    "finding_offsets",
    "finding_tp",
    "index_offsets",
    "is_kafka_run",
]

OffsetRef = tuple[str, int, int]
"""(topic, partition, offset)."""


@dataclass(slots=True)
class OffsetIndex:
    """Per offset, the events that show it: send acknowledgements and poll completions."""

    acked: dict[OffsetRef, list[tuple[int, Any]]] = field(default_factory=dict)
    """Event index and value of each ok send acknowledged at the offset."""
    read: dict[OffsetRef, list[tuple[int, Any]]] = field(default_factory=dict)
    """Event index and value of each record an ok poll returned at the offset."""


def is_kafka_run(verdict: dict[str, Any], events: Sequence[dict[str, Any]]) -> bool:
    """A Kafka workload's run: its checker says so, or its history sends and polls."""
    if str(verdict.get("checker", "")).startswith("kafka"):
        return True
    return any(e.get("f") in ("send", "poll") for e in events[:1000])


def _ref(obj: Any, default_tp: tuple[str, int] | None = None) -> OffsetRef | None:
    if not isinstance(obj, dict):
        return None
    offset, topic, partition = obj.get("offset"), obj.get("topic"), obj.get("partition")
    if not _is_int(offset):
        return None
    if isinstance(topic, str) and _is_int(partition):
        return (topic, partition, offset)
    if default_tp is not None:
        return (*default_tp, offset)
    return None


def _is_int(x: object) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def index_offsets(events: Sequence[dict[str, Any]]) -> OffsetIndex:
    """Every ok send's acknowledged offset and every record an ok poll returned."""
    index = OffsetIndex()
    for n, event in enumerate(events):
        if event.get("type") != "ok":
            continue
        value = event.get("value")
        if event.get("f") == "send" and isinstance(value, dict):
            ref = _ref(value)
            if ref is not None:
                index.acked.setdefault(ref, []).append((n, value.get("value")))
        elif event.get("f") == "poll" and isinstance(value, list):
            for record in value:
                ref = _ref(record)
                if ref is not None:
                    index.read.setdefault(ref, []).append((n, record.get("value")))
    return index


def finding_tp(anomaly: dict[str, Any]) -> tuple[str, int] | None:
    """The finding's partition, from ``topic`` + ``partition`` or a partition object."""
    topic, partition = anomaly.get("topic"), anomaly.get("partition")
    if isinstance(topic, str) and _is_int(partition):
        return (topic, partition)
    for name in ("partition", "topic_partition"):
        tp = anomaly.get(name)
        if (
            isinstance(tp, dict)
            and isinstance(tp.get("topic"), str)
            and _is_int(tp.get("partition"))
        ):
            return (tp["topic"], tp["partition"])
        if isinstance(tp, list) and len(tp) == 2 and isinstance(tp[0], str) and _is_int(tp[1]):
            return (tp[0], tp[1])
    return None


def finding_offsets(anomaly: dict[str, Any], ops: Sequence[dict[str, Any]]) -> list[OffsetRef]:
    """The offsets a finding is about, sorted: its ``offsets`` and sightings, the offsets its
    sends were acknowledged at, and where its polls read the finding's value."""
    tp = finding_tp(anomaly)
    refs: set[OffsetRef] = set()
    for event in ops:
        value = event.get("value")
        if event.get("f") == "send":
            ref = _ref(value)
            if ref is not None:
                refs.add(ref)
                tp = tp or ref[:2]
    wanted = anomaly.get("value")
    for event in ops:
        value = event.get("value")
        if event.get("f") == "poll" and isinstance(value, list) and wanted is not None:
            for record in value:
                ref = _ref(record, tp)
                if ref is not None and isinstance(record, dict) and record.get("value") == wanted:
                    refs.add(ref)
    if tp is not None:
        offsets = anomaly.get("offsets")
        if isinstance(offsets, list):
            refs.update((*tp, o) for o in offsets if _is_int(o))
        sightings = anomaly.get("sightings")
        if isinstance(sightings, list):
            refs.update(r for s in sightings if (r := _ref(s, tp)) is not None)
    return sorted(refs)

"""Renderings of a Kafka delivery result for people and programs.

Text and JSON number events from 1, as the history's error messages do (the Python API's
``*_index`` fields count from 0). Values appear as JSON (``"a"``, ``1``) so a string ``"1"``
and a number ``1`` never look alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from quorumdb.check.history import Outcome
from quorumdb.check.kafka_delivery import (
    AnomalyKind,
    DeliveryResult,
    Finding,
    PartitionResult,
    Sighting,
    SightingSource,
)
from quorumdb.check.kafka_history import RecordValue

__all__ = [
    "FINDINGS_SHOWN_PER_KIND",
    "delivery_summary_line",
    "delivery_to_json",
    "render_delivery",
    "render_partition",
]

FINDINGS_SHOWN_PER_KIND = 10
"""Text output lists at most this many findings of each kind per partition."""

_OFFSET_RUNS_SHOWN = 6
_PARTITIONS_NAMED = 5


def delivery_summary_line(result: DeliveryResult) -> str:
    """One line: the verdict, how much was checked, and which partitions failed."""
    size = (
        f"{_count(result.sent, 'send')} ({result.acked} acked) and "
        f"{_count(result.records_read, 'record')} read on "
        f"{_count(len(result.partitions), 'partition')}"
    )
    counts = result.counts()
    failures = {kind: n for kind, n in counts.items() if kind.is_failure}
    information = {kind: n for kind, n in counts.items() if not kind.is_failure}
    notes = f"; information: {_kinds(information)}" if information else ""
    if not failures:
        return f"delivery ok: {size}{notes}"
    failing = [str(p.topic_partition) for p in result.partitions if not p.ok]
    return f"delivery anomalies: {_kinds(failures)} on {_names(failing)}; {size}{notes}"


def render_partition(
    partition: PartitionResult, *, shown_per_kind: int = FINDINGS_SHOWN_PER_KIND
) -> str:
    """A header line and a table of the partition's findings, at most ``shown_per_kind`` of
    each kind (with a line saying how many more there are)."""
    p = partition
    header = (
        f"partition {p.topic_partition}: {_count(p.sent, 'send')} ({p.acked} acked, "
        f"{p.failed} failed, {p.indeterminate} indeterminate, {p.aborted} aborted), "
        f"{_count(p.records_read, 'record')} read ({_count(p.values_read, 'value')}"
        + ("" if p.max_offset_read is None else f", up to offset {p.max_offset_read}")
        + ")"
    )
    rows = [["kind", "value", "offsets", "evidence"]]
    more: list[str] = []
    for kind in AnomalyKind:
        findings = [f for f in p.findings if f.kind is kind]
        rows += [_row(f) for f in findings[:shown_per_kind]]
        if len(findings) > shown_per_kind:
            hidden = len(findings) - shown_per_kind
            more.append(f"  ... and {hidden} more {kind} (--format json lists them all)")
    if len(rows) == 1:
        return header
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    lines = [header]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append(("  " + "  ".join([*cells, row[-1]])).rstrip())
    return "\n".join(lines + more)


def render_delivery(
    result: DeliveryResult, *, shown_per_kind: int = FINDINGS_SHOWN_PER_KIND
) -> str:
    """The summary line, then each partition that has findings (failures or information)."""
    parts = [delivery_summary_line(result)]
    parts += [
        render_partition(p, shown_per_kind=shown_per_kind) for p in result.partitions if p.findings
    ]
    return "\n\n".join(parts)


def delivery_to_json(result: DeliveryResult) -> dict[str, object]:
    """The result as JSON-ready data (what ``quorumdb check kafka --format json`` prints)."""
    return {
        "ok": result.ok,
        "events": result.event_count,
        "operations": result.operation_count,
        "sent": result.sent,
        "acked": result.acked,
        "records_read": result.records_read,
        "failures": len(result.failures),
        "counts": {kind.value: n for kind, n in result.counts().items()},
        "partitions": [_partition_json(p) for p in result.partitions],
    }


def _partition_json(p: PartitionResult) -> dict[str, object]:
    counts = {kind.value: p.count(kind) for kind in AnomalyKind if p.count(kind)}
    return {
        "topic": p.topic_partition.topic,
        "partition": p.topic_partition.partition,
        "ok": p.ok,
        "sent": p.sent,
        "acked": p.acked,
        "failed": p.failed,
        "indeterminate": p.indeterminate,
        "aborted": p.aborted,
        "records_read": p.records_read,
        "values_read": p.values_read,
        "max_offset_read": p.max_offset_read,
        "counts": counts,
        "findings": [_finding_json(f) for f in p.findings],
    }


def _finding_json(f: Finding) -> dict[str, object]:
    return {
        "kind": f.kind.value,
        "failure": f.kind.is_failure,
        "value": f.value,
        "offsets": list(f.offsets),
        "processes": list(f.processes),
        "events": [index + 1 for index in f.event_indexes],
        "sightings": [_sighting_json(s) for s in f.sightings],
    }


def _sighting_json(s: Sighting) -> dict[str, object]:
    data: dict[str, object] = {
        "source": s.source.value,
        "value": s.value,
        "offset": s.offset,
        "process": s.process,
        "event": s.event_index + 1,
    }
    if s.source is SightingSource.SEND:
        data["outcome"] = None if s.outcome is None else s.outcome.value
        data["aborted"] = s.aborted
    return data


def _row(f: Finding) -> list[str]:
    value = "" if f.value is None else _show(f.value)
    return [f.kind.value, value, _offsets(f.offsets), _EVIDENCE[f.kind](f)]


def _lost(f: Finding) -> str:
    ack, *witness = f.sightings
    if len(witness) == 1:
        (read,) = witness
        return (
            f"acked to {_who(ack)}; {_who(read)} read {_show(read.value)} at {read.offset} "
            "instead; nobody read this value"
        )
    before, after = witness
    return (
        f"acked to {_who(ack)}; process {before.process} read {before.offset} {_at(before)} "
        f"then {after.offset} {_at(after)} with no seek between; nobody read this value"
    )


def _unread(f: Finding) -> str:
    (ack,) = f.sightings
    return f"acked to {_who(ack)}; no consumer read across offset {ack.offset}"


def _duplicate(f: Finding) -> str:
    reads = [s for s in f.sightings if s.source is SightingSource.POLL]
    text = "read " + ", ".join(f"at {s.offset} by {_who(s)}" for s in reads)
    acks = [s for s in f.sightings if s.source is SightingSource.SEND]
    return text + "".join(f"; acked at {s.offset} to {_who(s)}" for s in acks)


def _inconsistent(f: Finding) -> str:
    if f.value is None:
        return "; ".join(f"{_show(s.value)} {_seen(s)}" for s in f.sightings)
    ack, *reads = f.sightings
    where = ", ".join(f"at {s.offset} by {_who(s)}" for s in reads)
    return f"acked at {ack.offset} to {_who(ack)}, but read only {where}"


def _skip(f: Finding) -> str:
    before, after, *skipped = f.sightings
    shown = ", ".join(f"{s.offset} {_show(s.value)} read by {_who(s)}" for s in skipped)
    more = ", ..." if len(f.offsets) > len(skipped) else ""
    return (
        f"process {before.process} read {before.offset} {_at(before)} then {after.offset} "
        f"{_at(after)} with no seek between; skipped {_count(len(f.offsets), 'known record')}: "
        f"{shown}{more}"
    )


def _nonmonotonic_poll(f: Finding) -> str:
    before, after = f.sightings
    return (
        f"process {before.process} read {before.offset} {_at(before)} then {after.offset} "
        f"{_at(after)} with no seek between"
    )


def _nonmonotonic_send(f: Finding) -> str:
    before, after = f.sightings
    return (
        f"process {before.process}'s send of {_show(before.value)} was acked at "
        f"{before.offset} {_at(before)}, its next, {_show(after.value)}, at {after.offset} "
        f"{_at(after)}"
    )


def _aborted_read(f: Finding) -> str:
    send, *reads = f.sightings
    assert send.aborted or send.outcome is Outcome.FAIL, send
    why = "was aborted" if send.aborted else "failed"
    where = ", ".join(f"by {_who(s)} at {s.offset}" for s in reads)
    return f"sent by {_who(send)}, which {why}; read {where}"


def _unsent_read(f: Finding) -> str:
    (read,) = f.sightings
    return f"read by {_who(read)}; no send in the history sent it"


_EVIDENCE: dict[AnomalyKind, Callable[[Finding], str]] = {
    AnomalyKind.LOST: _lost,
    AnomalyKind.UNREAD: _unread,
    AnomalyKind.DUPLICATE: _duplicate,
    AnomalyKind.INCONSISTENT_OFFSET: _inconsistent,
    AnomalyKind.POLL_SKIP: _skip,
    AnomalyKind.NONMONOTONIC_POLL: _nonmonotonic_poll,
    AnomalyKind.NONMONOTONIC_SEND: _nonmonotonic_send,
    AnomalyKind.ABORTED_READ: _aborted_read,
    AnomalyKind.UNSENT_READ: _unsent_read,
}
assert set(_EVIDENCE) == set(AnomalyKind), set(AnomalyKind) - set(_EVIDENCE)


def _seen(s: Sighting) -> str:
    verb = "acked to" if s.source is SightingSource.SEND else "read by"
    return f"{verb} {_who(s)}"


def _who(s: Sighting) -> str:
    return f"process {s.process} {_at(s)}"


def _at(s: Sighting) -> str:
    return f"(#{s.event_index + 1})"


def _offsets(offsets: Sequence[int]) -> str:
    """Offsets as runs: ``3, 7-9, 12``; long lists end with the total."""
    runs: list[tuple[int, int]] = []
    for offset in offsets:
        if runs and offset == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], offset)
        else:
            runs.append((offset, offset))
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:_OFFSET_RUNS_SHOWN])
    if len(runs) > _OFFSET_RUNS_SHOWN:
        text += f", ... ({len(offsets)} offsets)"
    return text


def _kinds(counts: dict[AnomalyKind, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in counts.items())


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_PARTITIONS_NAMED])
    more = f" and {len(names) - _PARTITIONS_NAMED} more" if len(names) > _PARTITIONS_NAMED else ""
    return shown + more


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _show(value: RecordValue) -> str:
    return json.dumps(value)

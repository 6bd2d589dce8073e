"""The run's report page: one self-contained HTML file beside its plots in the run directory.

Sections, top to bottom: the verdict banner, the run's options, operation counts (per f and
outcome, with latencies), the two plots (referenced relatively, so the directory can be moved
or zipped whole), the fault table, the anomalies with their operations, and the events those
cite. Every event cited anywhere is a row of one "events" table with the anchor ``ev-N`` (N
numbered from 1, as the checkers' messages number them); for Kafka runs each offset a finding
is about is a row of an "offsets" table (anchor ``off-...``) listing the sends acknowledged
and the polls that read there. Register runs link their per-key timeline and embed the lanes
of each failing key. Plain HTML and CSS, no script; output is a pure function of the run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any, TypeGuard

from quorumdb.check.timeline_html import TIMELINE_CSS, key_anchor, legend_html
from quorumdb.nemesis.plots import fault_colour, fault_label
from quorumdb.nemesis.recovery import failover_times
from quorumdb.nemesis.report_kafka import (
    OffsetIndex,
    OffsetRef,
    finding_offsets,
    index_offsets,
    is_kafka_run,
)
from quorumdb.nemesis.report_timeline import TIMELINE_FILE, RegisterTimeline
from quorumdb.nemesis.run_dir import RunDir
from quorumdb.nemesis.series import OUTCOMES, EventLocator, Op, percentile

__all__ = ["ANOMALIES_MAX", "EVENTS_MAX", "PLOTS", "render_report"]

PLOTS = ("throughput.png", "latency.png")
ANOMALIES_MAX = 50
OPS_PER_ANOMALY_MAX = 40
EVENTS_MAX = 2000
READS_PER_OFFSET_MAX = 10
_VALUE_CHARS_MAX = 160
# Fields of an anomaly shown by their own renderer, not in its field list.
_OWN_FIELDS = {"kind", "message", "ops", "operation", "sightings", "events"}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 20px; color: #222; max-width: 1400px; }
.banner { padding: 12px 16px; border-radius: 6px; font-size: 1.2em; color: #fff; }
.banner.valid { background: #2e7d32; } .banner.invalid { background: #c62828; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.culprit td { background: #f3e5f5; font-weight: bold; }
tr:target td { background: #fff59d; }
code, td.json { font-family: monospace; font-size: 0.95em; }
figure { margin: 8px 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
span.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px;
  vertical-align: middle; border: 1px solid #888; }
div.anomaly { border-left: 4px solid #c62828; padding: 2px 12px; margin: 14px 0; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; }
p.note { color: #8a5a00; }
"""


def render_report(
    run: RunDir, ops: Sequence[Op], *, timeline: RegisterTimeline | None = None
) -> str:
    """The whole page, as text (the caller writes it, and the plots, into the run dir)."""
    page = _Page(run, ops)
    body = [
        _banner(run.verdict),
        _section("Options", _options(run.verdict)),
        _section("Operations", _op_counts(run.verdict, ops)),
        _section("Throughput and latency", _plots()),
        _section(f"Faults ({len(run.faults)})", _faults(run.faults, run.events)),
    ]
    if timeline is not None:
        body.append(_section("Per-key timeline", _timeline_link(timeline)))
    body.append(_section(f"Anomalies ({len(page.anomalies)})", page.anomalies_html(timeline)))
    if page.kafka:
        body.append(_section("Offsets", page.offsets_html(), anchor="offsets"))
    if page.cited_events:
        body.append(_section("Events cited", page.events_html(), anchor="events"))
    details = run.verdict.get("details")
    if details:
        body.append(_section("Checker details", f"<pre>{_h(json.dumps(details, indent=2))}</pre>"))
    title = f"quorumdb test: {run.path.name}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_h(title)}</title>",
            f"<style>{_CSS}{TIMELINE_CSS}</style></head><body>",
            f"<h1>{_h(title)}</h1>",
            *body,
            "</body></html>",
        ]
    )


class _Page:
    """The cross-references: which events and offsets the anomalies cite."""

    def __init__(self, run: RunDir, ops: Sequence[Op]) -> None:
        self.run = run
        self.events = run.events
        self.locate = EventLocator(run.events)
        self.op_at: dict[int, Op] = {}
        for op in ops:
            self.op_at[op.invoke_index] = op
            if op.complete_index is not None:
                self.op_at[op.complete_index] = op
        # `read_run_dir` checked the types: a list of objects, each one's ops a list of them.
        self.anomalies: list[dict[str, Any]] = run.verdict.get("anomalies") or []
        self.kafka = is_kafka_run(run.verdict, run.events)
        self.offsets: OffsetIndex = index_offsets(run.events) if self.kafka else OffsetIndex()
        self.cited_events: set[int] = set()
        self.cited_offsets: set[OffsetRef] = set()

    def _ev(self, index: int) -> str:
        """A link to event `index` (from 0), which joins the events table."""
        self.cited_events.add(index)
        return f'<a href="#ev-{index + 1}">#{index + 1}</a>'

    def _off(self, ref: OffsetRef) -> str:
        self.cited_offsets.add(ref)
        topic, partition, offset = ref
        return f'<a href="#{_offset_anchor(ref)}">{_h(topic)}/{partition}@{offset}</a>'

    def anomalies_html(self, timeline: RegisterTimeline | None) -> str:
        if not self.anomalies:
            return "<p>None: the checker found the history valid.</p>"
        parts = [
            self._anomaly(n, a, timeline)
            for n, a in enumerate(self.anomalies, start=1)
            if n <= ANOMALIES_MAX
        ]
        if len(self.anomalies) > ANOMALIES_MAX:
            more = len(self.anomalies) - ANOMALIES_MAX
            parts.append(f'<p class="note">... and {more} more (all in verdict.json).</p>')
        return "\n".join(parts)

    def _anomaly(self, n: int, anomaly: dict[str, Any], timeline: RegisterTimeline | None) -> str:
        ops_events: list[dict[str, Any]] = anomaly.get("ops") or []
        parts = [
            f'<div class="anomaly" id="anomaly-{n}">',
            f"<h3>{n}. {_h(anomaly.get('kind', 'anomaly'))}</h3>",
            self._fields(anomaly, ops_events),
        ]
        if anomaly.get("message"):
            parts.append(f"<pre>{_h(anomaly['message'])}</pre>")
        parts.append(self._ops_table(ops_events, anomaly.get("operation")))
        sightings = anomaly.get("sightings")
        if isinstance(sightings, list) and sightings:
            parts.append(self._sightings(sightings))
        key = anomaly.get("key")
        if timeline is not None and isinstance(key, str) and key in timeline.sections:
            parts.append(
                f'<p><a href="{TIMELINE_FILE}#{key_anchor(key)}">This key in the timeline '
                f"page</a>; its lanes around the counterexample:</p>"
            )
            parts.append(timeline.sections[key])
        parts.append("</div>")
        return "\n".join(parts)

    def _fields(self, anomaly: dict[str, Any], ops_events: list[dict[str, Any]]) -> str:
        rows = []
        for name, value in anomaly.items():
            if name in _OWN_FIELDS:
                continue
            if name == "linearizable_through" and _is_int(value) and value < len(self.events):
                # An event index from 0; the page numbers events from 1, as messages do.
                rows.append(f"<tr><th>linearizable through</th><td>{self._ev(value)}</td></tr>")
                continue
            rows.append(f"<tr><th>{_h(name)}</th><td class=json>{_short(value)}</td></tr>")
        events = anomaly.get("events")
        if isinstance(events, list) and events:
            links = ", ".join(
                self._ev(e - 1) for e in events if _is_int(e) and 1 <= e <= len(self.events)
            )
            rows.append(f"<tr><th>events</th><td>{links}</td></tr>")
        if self.kafka:
            refs = finding_offsets(anomaly, ops_events)
            if refs:
                links = ", ".join(self._off(r) for r in refs)
                rows.append(f"<tr><th>offsets involved</th><td>{links}</td></tr>")
        return f"<table>{''.join(rows)}</table>" if rows else ""

    def _ops_table(self, ops_events: list[dict[str, Any]], culprit_event: Any) -> str:
        culprit = self.locate.index(culprit_event)
        found: dict[int, Op] = {}
        unknown = 0
        for event in ops_events:
            index = self.locate.index(event)
            op = None if index is None else self.op_at.get(index)
            if op is None:
                unknown += 1
            else:
                found[op.invoke_index] = op
        if culprit is not None and culprit in self.op_at:
            found.setdefault(self.op_at[culprit].invoke_index, self.op_at[culprit])
        header = [
            "process",
            "f",
            "invoked with",
            "outcome",
            "returned",
            "events",
            "invoke s",
            "latency ms",
        ]
        rows = []
        for op in [found[i] for i in sorted(found)][:OPS_PER_ANOMALY_MAX]:
            is_culprit = culprit in (op.invoke_index, op.complete_index)
            rows.append((self._op_row(op), "culprit" if is_culprit else ""))
        notes = []
        if len(found) > OPS_PER_ANOMALY_MAX:
            notes.append(f"... and {len(found) - OPS_PER_ANOMALY_MAX} more operations.")
        if unknown:
            notes.append(f"{unknown} of the anomaly's events are not in history.json.")
        if not rows:
            return "".join(f'<p class="note">{_h(n)}</p>' for n in notes)
        return _table(header, rows) + "".join(f'<p class="note">{_h(n)}</p>' for n in notes)

    def _op_row(self, op: Op) -> list[str]:
        start = self.events[op.invoke_index]
        end = None if op.complete_index is None else self.events[op.complete_index]
        links = self._ev(op.invoke_index)
        links += "" if op.complete_index is None else " .. " + self._ev(op.complete_index)
        latency = op.latency_ms
        return [
            _h(op.process),
            _h(op.f) + (f" <code>{_h(start['key'])}</code>" if "key" in start else ""),
            _short(start.get("value")),
            _h(op.outcome),
            "" if end is None else _short(end.get("value")),
            links,
            "" if op.invoke_ns is None else f"{op.invoke_ns / 1e9:.3f}",
            "" if latency is None else f"{latency:.1f}",
        ]

    def _sightings(self, sightings: list[Any]) -> str:
        rows = []
        for s in sightings:
            if not isinstance(s, dict):
                continue
            event = s.get("event")
            link = self._ev(event - 1) if _is_int(event) and 1 <= event <= len(self.events) else ""
            cells = [_h(s.get(k, "")) for k in ("source", "process", "offset")]
            rows.append(([*cells, _short(s.get("value")), link], ""))
        return _table(["seen by", "process", "offset", "value", "event"], rows)

    def offsets_html(self) -> str:
        if not self.cited_offsets:
            return "<p>No finding names an offset.</p>"
        rows = []
        for ref in sorted(self.cited_offsets):
            acked = self.offsets.acked.get(ref, [])
            reads = self.offsets.read.get(ref, [])
            shown = reads[:READS_PER_OFFSET_MAX]
            read_cells = "<br>".join(f"{self._ev(i)} {_short(v)}" for i, v in shown)
            if len(reads) > len(shown):
                read_cells += f"<br>... and {len(reads) - len(shown)} more polls"
            cells = [
                _h(f"{ref[0]}/{ref[1]}"),
                str(ref[2]),
                "<br>".join(f"{self._ev(i)} {_short(v)}" for i, v in acked) or "none",
                read_cells or "none",
            ]
            rows.append((cells, "", _offset_anchor(ref)))
        return _table(["partition", "offset", "acknowledged sends", "read by polls"], rows)

    def events_html(self) -> str:
        if not self.cited_events:
            return "<p>No event is cited.</p>"
        cited = sorted(self.cited_events)[:EVENTS_MAX]
        keyed = any("key" in self.events[i] for i in cited)
        rows = []
        for index in cited:
            e = self.events[index]
            cells = [str(index + 1), _h(e.get("process")), _h(e.get("type")), _h(e.get("f"))]
            cells += [_h(e.get("key", ""))] if keyed else []
            cells += [_short(e.get("value")), _h(_seconds(e.get("time")))]
            rows.append((cells, "", f"ev-{index + 1}"))
        note = ""
        if len(self.cited_events) > EVENTS_MAX:
            note = (
                f'<p class="note">First {EVENTS_MAX} of {len(self.cited_events)} cited events.</p>'
            )
        header = ["#", "process", "type", "f", *(["key"] if keyed else []), "value", "time s"]
        return _table(header, rows) + note


def _banner(verdict: dict[str, Any]) -> str:
    valid = bool(verdict.get("valid"))
    word = "VALID" if valid else "INVALID"
    checker = _h(verdict.get("checker", "?"))
    return (
        f'<p class="banner {"valid" if valid else "invalid"}" id="verdict">'
        f"<b>{word}</b> ({checker}): {_h(verdict.get('summary', ''))}</p>"
    )


def _section(title: str, body: str, *, anchor: str = "") -> str:
    ident = f' id="{anchor}"' if anchor else ""
    return f"<h2{ident}>{_h(title)}</h2>\n{body}"


def _options(verdict: dict[str, Any]) -> str:
    options = verdict.get("options") or {}
    if not isinstance(options, dict) or not options:
        return "<p>Not recorded.</p>"
    rows = [([_h(k), _short(v)], "") for k, v in options.items()]
    return _table(["option", "value"], rows)


def _op_counts(verdict: dict[str, Any], ops: Sequence[Op]) -> str:
    recorded = verdict.get("ops") or {}
    line = ", ".join(f"{_h(k)} {_h(v)}" for k, v in recorded.items()) if recorded else ""
    per_f: dict[str, list[Op]] = {}
    for op in ops:
        per_f.setdefault(op.f, []).append(op)
    header = ["f", *OUTCOMES, "pending", "p50 ms (ok)", "p99 ms (ok)"]
    rows = []
    for f in sorted(per_f):
        group = per_f[f]
        latencies = [
            lat for op in group if op.outcome == "ok" and (lat := op.latency_ms) is not None
        ]
        counts = [sum(1 for op in group if op.outcome == o) for o in (*OUTCOMES, "pending")]
        p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
        p50_text = "" if p50 is None else f"{p50:.1f}"
        p99_text = "" if p99 is None else f"{p99:.1f}"
        rows.append(([_h(f), *map(str, counts), p50_text, p99_text], ""))
    summary = f"<p>Completions recorded by the run: {line}.</p>" if line else ""
    return summary + _table(header, rows, numeric_from=1)


def _plots() -> str:
    alts = {
        "throughput.png": "operations per second by outcome",
        "latency.png": "latency percentiles per second",
    }
    return "\n".join(f'<figure><img src="{name}" alt="{alts[name]}"></figure>' for name in PLOTS)


def _faults(faults: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]) -> str:
    """One row per fault; with the leader when it began and, for a fault that took that
    leader away, the failover time (`nemesis.recovery`: until every key was served again)."""
    if not faults:
        return "<p>No fault was injected.</p>"
    kinds = [str(f.get("kind", "?")) for f in faults]
    rows = []
    for n, (fault, kind) in enumerate(zip(faults, kinds, strict=True), start=1):
        start, end = float(fault["start_s"]), float(fault["end_s"])
        swatch = f'<span class="swatch" style="background:{fault_colour(kind, kinds)}"></span>'
        nodes = ", ".join(str(x) for x in fault.get("nodes") or [])
        cells = [
            str(n),
            swatch + _h(kind),
            _h(fault.get("variant", "")),
            _h(nodes),
            _h(fault.get("amount", "")),
            f"{start:.3f}",
            f"{end:.3f}",
            f"{end - start:.3f}",
            _h("" if fault.get("leader") is None else fault["leader"]),
            "".join(f"{t:.3f}" for t in failover_times(events, [fault])),
        ]
        rows.append((cells, "fault", f"fault-{n}"))
    header = [
        "#",
        "kind",
        "variant",
        "nodes",
        "amount",
        "start s",
        "end s",
        "duration s",
        "leader",
        "failover s",
    ]
    table = _table(header, rows)
    return f"<p>Labels on the plots: {_h('; '.join(fault_label(f) for f in faults))}.</p>{table}"


def _timeline_link(timeline: RegisterTimeline) -> str:
    if timeline.page is None:
        return f'<p class="note">{_h(timeline.note)}</p>'
    return (
        f'<p><a href="{TIMELINE_FILE}">{TIMELINE_FILE}</a>: every key, one lane per process, '
        "each operation from invoke to completion; failing keys first, their counterexamples "
        "outlined.</p>" + legend_html()
    )


Row = tuple[list[str], str] | tuple[list[str], str, str]


def _table(header: Sequence[str], rows: Iterable[Row], *, numeric_from: int | None = None) -> str:
    """Cells are HTML already; each row may carry a class and an id."""
    out = ["<table>", "<tr>" + "".join(f"<th>{_h(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells, cls = row[0], row[1]
        ident = f' id="{row[2]}"' if len(row) == 3 else ""
        klass = f' class="{cls}"' if cls else ""
        tds = "".join(
            f'<td class="num">{c}</td>'
            if numeric_from is not None and i >= numeric_from
            else f"<td>{c}</td>"
            for i, c in enumerate(cells)
        )
        out.append(f"<tr{klass}{ident}>{tds}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _offset_anchor(ref: OffsetRef) -> str:
    topic, partition, offset = ref
    return f"off-{key_anchor(topic).removeprefix('key-')}-{partition}-{offset}"


def _short(value: Any) -> str:
    """JSON of a value, cut to `_VALUE_CHARS_MAX` characters (the whole in a hover title)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= _VALUE_CHARS_MAX:
        return _h(text)
    return f'<span title="{_h(text[:4000])}">{_h(text[:_VALUE_CHARS_MAX])}...</span>'


def _seconds(t: Any) -> str:
    return f"{t / 1e9:.3f}" if _is_int(t) else ""


def _is_int(x: object) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _h(value: Any) -> str:
    return escape(str(value))

"""A register history drawn as lanes, Porcupine-visualizer style: one HTML page, inline SVG.

Per key, one lane per process; each operation is a bar from its invoke to its completion,
coloured by outcome (ok, info, fail) and labelled with its f and value; hovering shows the
details. A counterexample's operations are outlined, the one no order explains dashed, and
the key's linearizable prefix is closed by a vertical line at event ``linearizable_through``:
operations invoked after it are dimmed, as they played no part in the verdict.

The x axis is the key's own event order, not wall time: every invoke or completion of the key
gets one slot, so concurrency is shown exactly as the checker sees it (file order is the
real-time order) and histories without ``time`` draw the same. Output is a pure function of
its input: integer coordinates, sorted lanes, no timestamps, so two renders of one history
are byte-identical.

Large histories are cut to stay readable: at most `OPS_MAX` operations per key (a window around
the counterexample when there is one), `LANES_MAX` lanes per key and `KEYS_MAX` keys per page,
each cut said in a note above the lanes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

from quorumdb.check._result import LinearizabilityResult
from quorumdb.check.history import Function, History, Operation, Outcome, Value
from quorumdb.check.report import render_counterexample

__all__ = [
    "KEYS_MAX",
    "LANES_MAX",
    "OPS_MAX",
    "TIMELINE_CSS",
    "KeyMarks",
    "key_anchor",
    "key_section",
    "marks_from_result",
    "timeline_page",
]

OPS_MAX = 400
LANES_MAX = 32
KEYS_MAX = 50

_SLOT_PX = 24  # one invoke or completion event of the key
_LANE_PX = 26
_BAR_PX = 18
_LEFT_PX = 86  # lane labels
_TOP_PX = 34  # event-number axis and the prefix line's label
_RIGHT_PX = 40  # room for operations that never completed
_BOTTOM_PX = 8
_CHAR_PX = 6.2  # width of one character of the 10 px label font
_TICK_SLOTS = 10

_FILL = {Outcome.OK: "#a5d6a7", Outcome.INFO: "#ffe0b2", Outcome.FAIL: "#e0e0e0"}
_STROKE = {Outcome.OK: "#2e7d32", Outcome.INFO: "#ef6c00", Outcome.FAIL: "#9e9e9e"}
_MARK = "#6a1b9a"  # counterexample outline and the prefix line

TIMELINE_CSS = """
.timeline-legend span.sw { display: inline-block; width: 14px; height: 10px;
  border: 1px solid #555; margin: 0 4px 0 12px; vertical-align: middle; }
section.key { margin: 18px 0 28px; }
section.key h2 { font-size: 1.05em; }
div.lanes { overflow-x: auto; border: 1px solid #ddd; background: #fff; }
pre.counterexample { background: #f6f2fa; padding: 8px; overflow-x: auto; }
p.note { color: #8a5a00; font-size: 0.9em; }
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyMarks:
    """What to point out on one key's lanes (event indexes from 0, as in `History`).

    Built from a `Counterexample` (`marks_from_result`) or from what a run's verdict recorded,
    so a report can draw its run again without running the checker again.
    """

    verdict: str | None = None
    """Shown in the key's heading; None says nothing."""
    window: frozenset[int] = field(default_factory=frozenset)
    """Invoke indexes of the counterexample's operations."""
    culprit: int | None = None
    """Invoke index of the operation that no order explains."""
    linearizable_through: int | None = None
    """The key's history through this event is linearizable."""
    message: str = ""
    """The counterexample as text, shown above the lanes."""


def marks_from_result(result: LinearizabilityResult) -> dict[str, KeyMarks]:
    """The marks of each key the checker judged: verdicts, and counterexamples where found."""
    out = {}
    for key in result.keys:
        cx = key.counterexample
        if cx is None:
            out[key.key] = KeyMarks(verdict=key.verdict.value)
            continue
        out[key.key] = KeyMarks(
            verdict=key.verdict.value,
            window=frozenset(op.invoke_index for op in cx.window),
            culprit=cx.operation.invoke_index,
            linearizable_through=cx.linearizable_through,
            message=render_counterexample(cx),
        )
    return out


def key_anchor(key: str) -> str:
    """The HTML id of a key's section: letters and digits kept, anything else hex-escaped."""
    return "key-" + "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):x}_" for c in key)


def timeline_page(
    history: History, marks: Mapping[str, KeyMarks], *, title: str, summary: str = ""
) -> str:
    """A whole HTML page: summary, legend, and one section per key (failing keys first).

    Args:
        history: the validated history.
        marks: per key, what to point out; keys not in it are drawn unmarked.
        title: the page's heading.
        summary: one line under the heading (the checker's summary line).
    """
    by_key = history.by_key()
    failing = sorted(k for k in by_key if k in marks and marks[k].window)
    ordered = failing + [k for k in by_key if k not in set(failing)]
    shown = ordered[:KEYS_MAX]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{_PAGE_CSS}{TIMELINE_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if summary:
        parts.append(f'<p class="summary">{escape(summary)}</p>')
    parts.append(legend_html())
    if len(ordered) > len(shown):
        parts.append(
            f'<p class="note">Showing {len(shown)} of {len(ordered)} keys '
            f"(failing keys first, then in key order).</p>"
        )
    links = " ".join(f'<a href="#{key_anchor(k)}">{escape(json.dumps(k))}</a>' for k in shown)
    parts.append(f'<nav class="keys">Keys: {links}</nav>')
    parts += [key_section(k, by_key[k], marks.get(k, KeyMarks())) for k in shown]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


_PAGE_CSS = """
body { font-family: system-ui, sans-serif; margin: 20px; color: #222; }
"""


def legend_html() -> str:
    """The colour key shared by every section."""
    swatches = "".join(
        f'<span class="sw" style="background:{_FILL[o]};border-color:{_STROKE[o]}"></span>{o}'
        for o in Outcome
    )
    return (
        f'<p class="timeline-legend">{swatches}'
        f'<span class="sw" style="border:3px solid {_MARK}"></span>in the counterexample'
        f'<span class="sw" style="border:3px dashed {_MARK}"></span>cannot be placed'
        f'<span class="sw" style="background:#fff;opacity:0.4"></span>after the '
        "linearizable prefix. Time runs left to right in event order; hover for details.</p>"
    )


def key_section(
    key: str, operations: Sequence[Operation], marks: KeyMarks, *, ops_max: int = OPS_MAX
) -> str:
    """One key: heading, counterexample text, notes on what was cut, and the lanes (SVG).

    Args:
        ops_max: operations drawn at most; a window around the counterexample when there is
            one (most of it before: the prefix that led there), else the first ones.
    """
    assert ops_max >= 1, ops_max
    shown, notes = _select(operations, marks, ops_max)
    heading = escape(json.dumps(key)) + (f": {escape(marks.verdict)}" if marks.verdict else "")
    parts = [f'<section class="key" id="{key_anchor(key)}">', f"<h2>key {heading}</h2>"]
    if marks.message:
        parts.append(f'<pre class="counterexample">{escape(marks.message)}</pre>')
    parts += [f'<p class="note">{escape(n)}</p>' for n in notes]
    parts.append(f'<div class="lanes">{_svg(key, shown, marks)}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def _select(
    operations: Sequence[Operation], marks: KeyMarks, ops_max: int
) -> tuple[list[Operation], list[str]]:
    """At most `ops_max` operations (around the counterexample) on at most `LANES_MAX` lanes."""
    notes = []
    chosen = list(operations)
    if len(chosen) > ops_max:
        marked = [n for n, op in enumerate(chosen) if op.invoke_index in marks.window]
        anchor = marked[0] if marked else 0
        start = max(0, min(anchor - ops_max * 2 // 3, len(chosen) - ops_max))
        window = chosen[start : start + ops_max]
        extra = [op for op in chosen if op.invoke_index in marks.window and op not in window]
        notes.append(
            f"Showing operations {start + 1}..{start + len(window)} of {len(chosen)} on this "
            "key (in invoke order)"
            + (f", and {len(extra)} more of the counterexample." if extra else ".")
        )
        chosen = sorted(window + extra, key=lambda op: op.invoke_index)
    counts: dict[int, int] = {}
    for op in chosen:
        counts[op.process] = counts.get(op.process, 0) + 1
    if len(counts) > LANES_MAX:
        must = sorted({op.process for op in chosen if op.invoke_index in marks.window})
        rest = sorted((p for p in counts if p not in must), key=lambda p: (-counts[p], p))
        keep = set((must + rest)[:LANES_MAX])
        hidden = [op for op in chosen if op.process not in keep]
        notes.append(
            f"Showing {len(keep)} of {len(counts)} processes (those of the counterexample, "
            f"then the busiest); {len(hidden)} operations of the others are not drawn."
        )
        chosen = [op for op in chosen if op.process in keep]
    return chosen, notes


def _svg(key: str, ops: Sequence[Operation], marks: KeyMarks) -> str:
    lanes = sorted({op.process for op in ops})
    lane_of = {p: n for n, p in enumerate(lanes)}
    slots = sorted({i for op in ops for i in (op.invoke_index, op.complete_index) if i is not None})
    slot_of = {index: n for n, index in enumerate(slots)}
    width = _LEFT_PX + len(slots) * _SLOT_PX + _RIGHT_PX
    height = _TOP_PX + len(lanes) * _LANE_PX + _BOTTOM_PX
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" '
        f'font-size="10" data-key="{escape(key)}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for n, process in enumerate(lanes):
        y = _TOP_PX + n * _LANE_PX
        shade = "#f7f7f7" if n % 2 else "#ffffff"
        out.append(f'<rect x="0" y="{y}" width="{width}" height="{_LANE_PX}" fill="{shade}"/>')
        out.append(f'<text x="6" y="{y + 17}" fill="#555">process {process}</text>')
    for n in range(0, len(slots), _TICK_SLOTS):
        x = _LEFT_PX + n * _SLOT_PX
        out.append(f'<line x1="{x}" y1="12" x2="{x}" y2="{height}" stroke="#eee"/>')
        out.append(f'<text x="{x + 2}" y="10" fill="#999">#{slots[n] + 1}</text>')
    end_x = _LEFT_PX + len(slots) * _SLOT_PX
    if marks.linearizable_through is not None:  # under the bars: their labels stay readable
        out.append(_prefix_line(marks.linearizable_through, slots, height))
    out += [_bar(op, _TOP_PX + lane_of[op.process] * _LANE_PX, slot_of, end_x, marks) for op in ops]
    out.append("</svg>")
    return "\n".join(out)


def _prefix_line(through: int, slots: Sequence[int], height: int) -> str:
    x = _LEFT_PX + sum(1 for index in slots if index <= through) * _SLOT_PX
    label = f"linearizable through #{through + 1}"
    anchor = "end" if x > _LEFT_PX + 160 else "start"
    dx = -4 if anchor == "end" else 4
    return (
        f'<g class="linearizable-through" data-event="{through + 1}">'
        f"<title>{escape(label)}: the key's history up to here has a legal order; "
        "the next completion has none</title>"
        f'<line x1="{x}" y1="14" x2="{x}" y2="{height}" stroke="{_MARK}" stroke-width="2"/>'
        f'<text x="{x + dx}" y="24" fill="{_MARK}" text-anchor="{anchor}">{escape(label)}</text>'
        "</g>"
    )


def _bar(op: Operation, y: int, slot_of: Mapping[int, int], end_x: int, marks: KeyMarks) -> str:
    x0 = _LEFT_PX + slot_of[op.invoke_index] * _SLOT_PX + 1
    if op.complete_index is None:
        x1 = end_x + _RIGHT_PX - 6
    else:
        x1 = _LEFT_PX + (slot_of[op.complete_index] + 1) * _SLOT_PX - 1
    classes = ["op", f"op-{op.outcome.value}"]
    stroke, stroke_width, dash = _STROKE[op.outcome], 1, ""
    if op.invoke_index in marks.window or op.invoke_index == marks.culprit:
        classes.append("cx")
        stroke, stroke_width = _MARK, 3
    if op.invoke_index == marks.culprit:
        classes.append("culprit")
        dash = ' stroke-dasharray="6 3"'
    elif op.complete_index is None:
        dash = ' stroke-dasharray="3 2"'
    through = marks.linearizable_through
    dim = through is not None and op.invoke_index > through and "cx" not in classes
    if dim:
        classes.append("dim")
    opacity = ' opacity="0.35"' if dim else ""
    label = _fit(_label(op), x1 - x0 - 4)
    text = f'<text x="{x0 + 3}" y="{y + 17}" fill="#111">{escape(label)}</text>' if label else ""
    return (
        f'<g class="{" ".join(classes)}" data-invoke="{op.invoke_index + 1}"{opacity}>'
        f"<title>{escape(_title(op, marks))}</title>"
        f'<rect x="{x0}" y="{y + 4}" width="{x1 - x0}" height="{_BAR_PX}" rx="3" '
        f'fill="{_FILL[op.outcome]}" stroke="{stroke}" stroke-width="{stroke_width}"{dash}/>'
        f"{text}</g>"
    )


def _label(op: Operation) -> str:
    """Short: bars are narrow. Strings lose their quotes here; the hover title has JSON."""
    if op.f is Function.READ:
        return f"r {_short(op.output)}" if op.outcome is Outcome.OK else "r ?"
    if op.f is Function.WRITE:
        assert not isinstance(op.input, tuple), op
        return f"w {_short(op.input)}"
    if op.f is Function.CAS:
        assert isinstance(op.input, tuple), op
        return f"cas {_short(op.input[0])}>{_short(op.input[1])}"
    return "del"


def _short(value: Value) -> str:
    if isinstance(value, str) and value and value.isprintable() and " " not in value:
        return value
    return json.dumps(value)


def _fit(label: str, width_px: int) -> str:
    chars = int(width_px / _CHAR_PX)
    if len(label) <= chars:
        return label
    return label[: chars - 1] + "…" if chars >= 4 else ""


def _title(op: Operation, marks: KeyMarks) -> str:
    value = {
        Function.READ: json.dumps(op.output) if op.outcome is Outcome.OK else "(no value)",
        Function.WRITE: json.dumps(op.input),
        Function.CAS: json.dumps(list(op.input)) if isinstance(op.input, tuple) else "",
        Function.DELETE: "",
    }[op.f]
    end = "never completed" if op.complete_index is None else f"#{op.complete_index + 1}"
    lines = [
        f"process {op.process}: {op.f.value} {value} -> {op.outcome.value}",
        f"events #{op.invoke_index + 1} .. {end}",
    ]
    if op.invoke_time is not None:
        done = "" if op.complete_time is None else str(op.complete_time)
        lines.append(f"time {op.invoke_time} .. {done}")
    if op.invoke_index == marks.culprit:
        lines.append("no order of the counterexample explains this operation")
    elif op.invoke_index in marks.window:
        lines.append("in the counterexample")
    elif marks.linearizable_through is not None and op.invoke_index > marks.linearizable_through:
        lines.append("invoked after the linearizable prefix")
    return "\n".join(lines)

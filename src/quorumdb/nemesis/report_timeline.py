"""The per-key timeline of a register run, drawn from its verdict without checking again.

The verdict already names each failing key's operations, the one no order explains and the
linearizable prefix (`nemesis.register`); this turns them back into `KeyMarks` for
`check.timeline_html`, so re-rendering a report costs no search and shows exactly what the
run's checker found.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from quorumdb.check.history import HistoryError, history_from_events
from quorumdb.check.timeline_html import KeyMarks, key_section, timeline_page
from quorumdb.nemesis.run_dir import RunDir
from quorumdb.nemesis.series import EventLocator

__all__ = ["TIMELINE_FILE", "RegisterTimeline", "register_timeline"]

TIMELINE_FILE = "timeline.html"
EMBEDDED_OPS_MAX = 60  # the report shows a failing key's counterexample and what led to it


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterTimeline:
    page: str | None
    """The whole timeline page; None when the history is not a register history."""
    sections: dict[str, str] = field(default_factory=dict)
    """Failing key -> its lanes, to embed next to the anomaly."""
    note: str = ""
    """Why there is no page, if there is none."""


def register_timeline(run: RunDir) -> RegisterTimeline | None:
    """The timeline of a linearizability-checked run; None for other checkers."""
    if run.verdict.get("checker") != "linearizable":
        return None
    try:
        history = history_from_events(run.events)
    except HistoryError as exc:
        return RegisterTimeline(page=None, note=f"no timeline: {exc}")
    marks = _marks(run)
    page = timeline_page(
        history,
        marks,
        title=f"Per-key timeline of {run.path.name}",
        summary=str(run.verdict.get("summary", "")),
    )
    by_key = history.by_key()
    sections = {
        key: key_section(key, by_key[key], replace(m, message=""), ops_max=EMBEDDED_OPS_MAX)
        for key, m in marks.items()
        if m.window and key in by_key
    }
    return RegisterTimeline(page=page, sections=sections)


def _marks(run: RunDir) -> dict[str, KeyMarks]:
    locate = EventLocator(run.events)
    marks = {}
    # `read_run_dir` checked the types: a list of objects, each one's ops a list (or null).
    for anomaly in run.verdict.get("anomalies") or []:
        key = anomaly.get("key")
        if not isinstance(key, str):
            continue
        window = {locate.index(e) for e in anomaly.get("ops") or []}
        culprit = locate.index(anomaly.get("operation"))
        through = anomaly.get("linearizable_through")
        marks[key] = KeyMarks(
            verdict=str(anomaly.get("kind", "not linearizable")).replace("-", " "),
            window=frozenset(i for i in window | {culprit} if i is not None),
            culprit=culprit,
            linearizable_through=through if isinstance(through, int) else None,
            message=str(anomaly.get("message", "")),
        )
    return marks

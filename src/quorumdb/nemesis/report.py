"""The run's report: plots over time and an HTML page, written into the run directory.

`write_report` reads only the run directory's files (`nemesis.run_dir`), so the report of
any finished run can be drawn again (`quorumdb test report DIR`), after a fix to the report
or on another machine. It writes ``throughput.png``, ``latency.png``, ``report.html`` and,
for register runs, ``timeline.html``; each is replaced whole.
"""

from __future__ import annotations

from pathlib import Path

from quorumdb.nemesis.plots import plot_latency, plot_throughput
from quorumdb.nemesis.report_html import render_report
from quorumdb.nemesis.report_timeline import TIMELINE_FILE, register_timeline
from quorumdb.nemesis.run_dir import RunDirError, read_run_dir
from quorumdb.nemesis.series import operations, run_seconds

__all__ = ["REPORT_FILE", "RunDirError", "write_report"]

REPORT_FILE = "report.html"


def write_report(run_dir: Path) -> Path:
    """Render `report.html` and its plots from the files of a finished run.

    Returns:
        The path of `report.html`.

    Raises:
        RunDirError: `run_dir` is not a run directory, or one of its files is malformed.
        OSError: the directory cannot be written.
    """
    run = read_run_dir(run_dir)
    ops = operations(run.events)
    seconds = run_seconds(ops, run.faults)
    plot_throughput(ops, run.faults, seconds, run_dir / "throughput.png")
    plot_latency(ops, run.faults, seconds, run_dir / "latency.png")
    timeline = register_timeline(run)
    if timeline is not None and timeline.page is not None:
        (run_dir / TIMELINE_FILE).write_text(timeline.page, encoding="utf-8")
    out = run_dir / REPORT_FILE
    out.write_text(render_report(run, ops, timeline=timeline), encoding="utf-8")
    return out

"""The run's report: plots over time and an HTML summary page (filled in by the report work)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_report"]


def write_report(run_dir: Path) -> None:
    """Render `report.html` and its plots from the files of a finished run."""
    del run_dir
